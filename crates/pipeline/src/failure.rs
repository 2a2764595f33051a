//! Why a source could not be ingested, and whether retrying may help.

/// Whether retrying a failed source may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network, throttling, an unavailable store or catalog.
    Transient,
    /// Corrupt or unsupported input, an item that violates the schemas.
    Permanent,
    /// The worker processing it stopped without finishing it, more than once (an abort,
    /// an out-of-memory kill): not run again until an operator replays it.
    Crashed,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Crashed => "crashed",
        }
    }
}

/// A source that could not be ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    pub fn permanent(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    pub fn crashed(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Crashed,
            message: message.into(),
        }
    }

    pub fn classify(transient: bool, message: String) -> Self {
        if transient {
            Failure::transient(message)
        } else {
            Failure::permanent(message)
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<zarrstac_io::IoError> for Failure {
    fn from(e: zarrstac_io::IoError) -> Self {
        Failure::classify(e.is_transient(), e.to_string())
    }
}

impl From<zarrstac_formats::ScanError> for Failure {
    fn from(e: zarrstac_formats::ScanError) -> Self {
        Failure::classify(e.is_transient(), e.to_string())
    }
}

impl From<zarrstac_catalog::CatalogError> for Failure {
    fn from(e: zarrstac_catalog::CatalogError) -> Self {
        Failure::classify(e.is_transient(), e.to_string())
    }
}

impl zarrstac_io::Retryable for Failure {
    fn is_transient(&self) -> bool {
        Failure::is_transient(self)
    }
}
