//! Catalog sinks: where validated STAC items go.
//!
//! One small trait, [`CatalogSink`], over three backends chosen by the catalog URL's
//! scheme ([`open`]):
//! - [`StaticCatalog`]: a self-contained static catalog (`catalog.json`, one
//!   `collection.json` per collection, one file per item, relative links) on any object
//!   store — a path or `s3://`, `gs://`, `az://`, `file://` URL;
//! - [`StacApi`]: any STAC API with the Transactions extension (`http://`, `https://`);
//! - [`Pgstac`]: a PostgreSQL database with pgstac, written directly (`postgresql://`).
//!
//! Every sink upserts (the same item twice leaves one item), creates collections when
//! missing, keeps collection extents and summaries current, and reports an outcome per
//! item so one bad item neither fails nor re-sends the rest of its batch.
//! [`BatchWriter`] gathers items from many concurrent callers into batches.

pub mod asset_table;
mod batch;
mod collection;
mod pgstac;
mod stac_api;
mod static_catalog;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use batch::BatchWriter;
pub use collection::{CollectionExtent, SUMMARIZED};
pub use pgstac::{Pgstac, PgstacConfig, connection_pool};

pub use stac_api::{StacApi, StacApiConfig};
pub use static_catalog::{DEFAULT_ASSET_PAGE_SIZE, StaticCatalog, WriteOutcome};
pub use zarrstac_io::RetryPolicy;

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
    /// The catalog service could not be reached or answered with a retryable status.
    #[error("{0}")]
    Unavailable(String),
    /// The catalog service refused the request for good (bad credentials, a collection
    /// it rejects): retrying the same request cannot help.
    #[error("{0}")]
    Refused(String),
    #[error("catalog {url}: {reason}")]
    Config { url: String, reason: String },
}

impl CatalogError {
    /// True when retrying may succeed. Failures of writing to the catalog are never the
    /// item's fault, so a store that cannot be written (unreachable, throttled, or a path
    /// made read-only during an outage) counts as transient.
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Store { .. } | CatalogError::Io(_) | CatalogError::Unavailable(_) => true,
            CatalogError::Invalid { .. }
            | CatalogError::MissingField(_)
            | CatalogError::Refused(_)
            | CatalogError::Config { .. } => false,
        }
    }
}

impl zarrstac_io::Retryable for CatalogError {
    fn is_transient(&self) -> bool {
        CatalogError::is_transient(self)
    }
}

/// The asset documents of an item, in order (by time). A dataset growing at its end
/// sends only what follows the documents it sent before: `unchanged` of them, the same
/// as then, precede `tail`.
#[derive(Debug, Clone, Default)]
pub struct AssetDocuments {
    pub unchanged: usize,
    pub tail: Vec<Value>,
}

impl AssetDocuments {
    pub fn all(documents: Vec<Value>) -> Self {
        AssetDocuments {
            unchanged: 0,
            tail: documents,
        }
    }

    pub fn len(&self) -> usize {
        self.unchanged + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What became of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored (created or replaced).
    Written,
    /// The catalog already held exactly this item.
    Unchanged,
    /// The catalog refused this item; the message is the catalog's own reason.
    Rejected(String),
}

/// A place items are published to.
#[async_trait::async_trait]
pub trait CatalogSink: Send + Sync {
    /// The catalog's URL, without credentials (safe to print).
    fn url(&self) -> String;

    /// Gives an item the links this catalog expects (static: relative links to root,
    /// parent and collection; APIs: a collection link the server resolves) and any
    /// properties the sink keeps (e.g. `updated`).
    fn prepare_item(&self, item: &mut Value);

    /// Whether items are better sent in batches (one request for many items).
    fn batches(&self) -> bool {
        true
    }

    /// Upserts `items` (of any collections, created when missing) and returns one outcome
    /// per item, in order. `Err` means the batch as a whole could not be written (the
    /// catalog is unreachable, say); no item of it is known to be stored.
    async fn upsert_items(&self, items: Vec<Value>) -> Result<Vec<ItemOutcome>, CatalogError>;

    /// The item as the catalog holds it, `None` when it holds none of that id.
    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<Value>, CatalogError>;

    /// Whether this catalog keeps asset documents beside an item (its files' assets), so
    /// that an item of many files can keep only its summary assets inline.
    fn holds_asset_documents(&self) -> bool {
        false
    }

    /// Stores the asset documents of the item `item_id` (those it held before beyond
    /// the new list are removed) and returns the `rel: "asset"` link the item carries to
    /// them and whether anything changed — or `None` when `documents` holds only a tail
    /// and the catalog needs the whole list. Only called when
    /// [`CatalogSink::holds_asset_documents`] says so.
    async fn put_asset_documents(
        &self,
        collection: &str,
        item_id: &str,
        documents: AssetDocuments,
    ) -> Result<Option<(Value, bool)>, CatalogError> {
        let _ = (collection, item_id, documents);
        Err(CatalogError::Config {
            url: self.url(),
            reason: "this catalog keeps no asset documents".into(),
        })
    }

    /// Removes an item (absent already: nothing to do). Used when a dataset's item is
    /// superseded by one with another id (a newer dataset version).
    async fn delete_item(&self, collection: &str, id: &str) -> Result<(), CatalogError>;

    /// Brings the collections' extents and summaries (and, for a static catalog, the root
    /// catalog) up to date after a load. Remote sinks already do this with every batch;
    /// for them it is cheap.
    async fn refresh(&self, collections: &[String]) -> Result<(), CatalogError>;
}

/// Settings shared by every sink; each backend's own settings live beside its code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SinkConfig {
    /// Items per request to a STAC API or pgstac.
    pub batch_size: usize,
    /// How long a partly filled batch waits for more items, in milliseconds.
    pub batch_linger_ms: u64,
    /// Items with more assets than this also publish them as paged asset documents
    /// (static catalog); set from `stac.asset_page_size`.
    #[serde(skip)]
    pub asset_page_size: usize,
    /// Where `zarrstac serve` answers (pgstac): items with more files than
    /// `stac.max_item_assets` link their asset documents there; set from
    /// `serve.public_url`.
    #[serde(skip)]
    pub asset_api_url: Option<String>,
    /// Retries of transient failures (unreachable catalog, 5xx, 429).
    pub retry: RetryPolicy,
    /// Seconds a single request to a STAC API may take.
    pub request_timeout_s: u64,
    /// Connections to pgstac.
    pub pool_size: usize,
    /// What a STAC API or pgstac sink does with an item without geometry (a file with no
    /// spatial coordinates): "world" gives it the whole globe, so that database-backed
    /// catalogs (pgstac requires a geometry) can hold and list it; "reject" refuses it.
    pub missing_geometry: MissingGeometry,
}

/// See [`SinkConfig::missing_geometry`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingGeometry {
    World,
    Reject,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            batch_size: 100,
            batch_linger_ms: 100,
            asset_page_size: DEFAULT_ASSET_PAGE_SIZE,
            asset_api_url: None,
            retry: RetryPolicy::default(),
            request_timeout_s: 60,
            pool_size: 4,
            missing_geometry: MissingGeometry::World,
        }
    }
}

/// The sink for a catalog URL: `http(s)://` a STAC API, `postgres(ql)://` pgstac, anything
/// else (a path or object-store URL) a static catalog.
pub async fn open(url: &str, config: &SinkConfig) -> Result<Arc<dyn CatalogSink>, CatalogError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    Ok(match scheme.as_deref() {
        Some("http" | "https") => Arc::new(StacApi::new(StacApiConfig::from_url(url, config)?)?),
        Some("postgres" | "postgresql") => {
            Arc::new(Pgstac::connect(PgstacConfig::from_url(url, config)?).await?)
        }
        _ => {
            let root = zarrstac_io::Location::parse(url).map_err(|e| CatalogError::Config {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            Arc::new(StaticCatalog::new(root).with_asset_page_size(config.asset_page_size))
        }
    })
}

/// A value as one segment of a URL path (percent-encoded).
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `url` with any password or user name replaced, for logs and messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Prepares an item for a database-backed catalog: links a STAC API resolves, the time
/// it was received, and the whole globe as geometry when it has none and the
/// configuration allows it.
pub(crate) fn prepare_for_database(item: &mut Value, missing: MissingGeometry) {
    link_for_api(item);
    stamp_updated(item);
    if missing == MissingGeometry::World && item["geometry"].is_null() {
        item["geometry"] = serde_json::json!({
            "type": "Polygon",
            "coordinates": [[[-180.0, -90.0], [180.0, -90.0], [180.0, 90.0], [-180.0, 90.0], [-180.0, -90.0]]]
        });
        item["bbox"] = serde_json::json!([-180.0, -90.0, 180.0, 90.0]);
    }
}

/// Why a database-backed catalog cannot hold an item, found before sending it: no
/// geometry, or a time before year 1 (a CF climatology's year 0), which PostgreSQL
/// timestamps cannot represent.
pub(crate) fn unstorable(item: &Value) -> Option<String> {
    if item["geometry"].is_null() {
        return Some(
            "the item has no geometry, which this catalog requires (catalog.missing_geometry = \"reject\")".into(),
        );
    }
    let p = &item["properties"];
    for key in ["datetime", "start_datetime", "end_datetime"] {
        if let Some(t) = p[key].as_str()
            && t.starts_with("0000")
        {
            return Some(format!(
                "{key} {t} lies in year 0 (a climatology's nominal year), which PostgreSQL-backed catalogs cannot store; the static catalog keeps such items"
            ));
        }
    }
    None
}

/// Outcomes for the items a database-backed catalog cannot take (refused up front, with
/// the reason) and, for the rest, their positions by collection.
pub(crate) fn sort_for_database(
    items: &[Value],
) -> (
    Vec<ItemOutcome>,
    std::collections::BTreeMap<String, Vec<usize>>,
) {
    let mut outcomes = vec![ItemOutcome::Unchanged; items.len()];
    let mut by_collection: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (k, item) in items.iter().enumerate() {
        match (item["collection"].as_str(), unstorable(item)) {
            (_, Some(reason)) => outcomes[k] = ItemOutcome::Rejected(reason),
            (Some(c), None) => by_collection.entry(c.to_string()).or_default().push(k),
            (None, None) => outcomes[k] = ItemOutcome::Rejected("item has no collection".into()),
        }
    }
    (outcomes, by_collection)
}

/// Sets the time the catalog received an item (`properties.updated`, STAC common
/// metadata), keeping `created` from the first time.
pub(crate) fn stamp_updated(item: &mut Value) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Some(props) = item["properties"].as_object_mut() {
        props.insert("updated".into(), Value::String(now));
    }
}

/// An item's links other than those placing it in a catalog (root, parent, collection,
/// self), which each sink sets its own way.
pub(crate) fn links_outside_catalog(item: &Value) -> Vec<Value> {
    item["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            !matches!(
                l["rel"].as_str(),
                Some("root" | "parent" | "collection" | "self")
            )
        })
        .cloned()
        .collect()
}

/// Replaces an item's root/parent/collection/self links by one collection link relative
/// to where a STAC API serves the item (`/collections/{c}/items/{id}`).
pub(crate) fn link_for_api(item: &mut Value) {
    let collection = item["collection"].as_str().unwrap_or_default().to_string();
    let mut links = links_outside_catalog(item);
    if !collection.is_empty() {
        links.push(serde_json::json!({
            "rel": "collection",
            "href": format!("../../{collection}"),
            "type": "application/json"
        }));
    }
    item["links"] = Value::Array(links);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redact("postgresql://user:secret@db:5432/stac"),
            "postgresql://***@db:5432/stac"
        );
        assert_eq!(
            redact("https://api.example/stac"),
            "https://api.example/stac"
        );
        assert!(!redact("https://u:p@api.example/").contains(":p@"));
    }

    #[test]
    fn api_links_point_at_the_collection() {
        let mut item = serde_json::json!({"collection": "c", "links": [
            {"rel": "root", "href": "../../catalog.json"},
            {"rel": "store", "href": "s3://b/r.json"}
        ]});
        link_for_api(&mut item);
        let rels: Vec<&str> = item["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["rel"].as_str().unwrap())
            .collect();
        assert_eq!(rels, ["store", "collection"]);
        assert_eq!(item["links"][1]["href"], "../../c");
    }
}
