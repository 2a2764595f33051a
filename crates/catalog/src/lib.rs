//! Catalog sinks. [`StaticCatalog`] writes a self-contained static STAC catalog
//! (`catalog.json`, one `collection.json` per collection, one file per item, relative
//! links) to any object store, keeping collection extents and summaries current.

mod static_catalog;

pub use static_catalog::{DEFAULT_ASSET_PAGE_SIZE, StaticCatalog, WriteOutcome};

/// Why a catalog write failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: not a STAC document: {reason}")]
    Invalid { url: String, reason: String },
    #[error(transparent)]
    Io(#[from] zarrstac_io::IoError),
    #[error("item has no {0}")]
    MissingField(&'static str),
}

impl CatalogError {
    /// True when retrying may succeed (the store was unreachable or throttled).
    pub fn is_transient(&self) -> bool {
        if let CatalogError::Io(e) = self {
            return e.is_transient();
        }
        matches!(
            self,
            CatalogError::Store { source, .. } if !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::InvalidPath { .. }
            )
        )
    }
}
