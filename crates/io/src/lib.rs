//! Object-store access for zarrstac.
//!
//! [`Location`] turns a local path or URL into an object store and a path in it;
//! [`RangeReader`] reads byte ranges of one object and counts requests and bytes;
//! [`BlockingReader`] serves synchronous parsers (run off the async runtime) from a
//! block cache with read-ahead, so a parser walking a file's metadata costs a few
//! large range requests instead of thousands of small ones.

mod blocking;
mod location;
mod reader;
mod retry;

pub use blocking::{BlockingReader, BlockingReaderConfig};
pub use location::{Location, LocationError};
pub use reader::{
    PREFETCH_LIMIT, RangeReader, ReadStats, total_bytes_read, total_requests, total_round_trips,
};
pub use retry::{RetryPolicy, Retryable};

/// FNV-1a: a stable short digest of bytes, for names of objects (a URL may be too long
/// for one) and change checks. Not for security.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Errors of reading from an object store.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: range {offset}..{end} lies beyond the end of the object ({size} bytes)")]
    OutOfBounds {
        url: String,
        offset: u64,
        end: u64,
        size: u64,
    },
    #[error("{url}: {source}")]
    Local {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the async runtime is gone; cannot read")]
    RuntimeGone { url: String },
}

impl IoError {
    /// True when the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            IoError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        ) || matches!(self, IoError::Local { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// True when retrying the same read may succeed (network trouble, throttling),
    /// false for errors a retry cannot fix (missing object, bad range).
    pub fn is_transient(&self) -> bool {
        match self {
            IoError::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            IoError::OutOfBounds { .. } => false,
            IoError::Local { .. } => false,
            IoError::RuntimeGone { .. } => true,
        }
    }
}
