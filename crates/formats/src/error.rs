use zarrstac_io::IoError;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{url}: empty file")]
    Empty { url: String },
    #[error("{url}: not a NetCDF or HDF5 file (no CDF or HDF5 signature)")]
    NotRecognized { url: String },
    #[error("{url}: unsupported {what}")]
    Unsupported { url: String, what: String },
    #[error("{url}: file is truncated or corrupt: {detail}")]
    Truncated { url: String, detail: String },
    #[error("{url}: corrupt or unreadable {format} metadata: {detail}")]
    Corrupt {
        url: String,
        format: &'static str,
        detail: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScanError {
    /// True when a retry may succeed (network trouble), false for bad input.
    pub fn is_transient(&self) -> bool {
        match self {
            ScanError::Io(e) => e.is_transient(),
            _ => false,
        }
    }
}
