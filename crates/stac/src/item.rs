//! Pieces every item builder shares: ids, geometry, extension URLs, options.

use serde_json::{Value, json};

pub const STAC_VERSION: &str = "1.1.0";
pub const DATACUBE: &str = "https://stac-extensions.github.io/datacube/v2.3.0/schema.json";
pub const PROJECTION: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
pub const CF: &str = "https://stac-extensions.github.io/cf/v0.2.0/schema.json";
pub const FILE: &str = "https://stac-extensions.github.io/file/v2.1.0/schema.json";
pub const ZARR: &str = "https://stac-extensions.github.io/zarr/v1.1.0/schema.json";
pub const EO: &str = "https://stac-extensions.github.io/eo/v2.0.0/schema.json";
pub const RASTER: &str = "https://stac-extensions.github.io/raster/v2.0.0/schema.json";
pub const SAT: &str = "https://stac-extensions.github.io/sat/v1.1.0/schema.json";
pub const PROCESSING: &str = "https://stac-extensions.github.io/processing/v1.2.0/schema.json";
pub const PRODUCT: &str = "https://stac-extensions.github.io/product/v1.0.0/schema.json";
pub const SAR: &str = "https://stac-extensions.github.io/sar/v1.3.0/schema.json";

/// How the virtual store is described in items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStyle {
    /// `application/vnd.zarr+kerchunk`: references are provisional upstream; this names
    /// them for what they are.
    Kerchunk,
    /// `application/vnd+zarr; version=2; profile=virtualizarr`, as the seed notes had it.
    Virtualizarr,
}

impl StoreStyle {
    pub fn media_type(&self) -> &'static str {
        match self {
            StoreStyle::Kerchunk => "application/vnd.zarr+kerchunk",
            StoreStyle::Virtualizarr => "application/vnd+zarr; version=2; profile=virtualizarr",
        }
    }

    pub fn parse(s: &str) -> Option<StoreStyle> {
        match s {
            "kerchunk" => Some(StoreStyle::Kerchunk),
            "virtualizarr" => Some(StoreStyle::Virtualizarr),
            _ => None,
        }
    }
}

/// What the caller knows that the dataset does not.
#[derive(Debug, Clone)]
pub struct ItemOptions {
    /// Collection id; derived from the data when `None`.
    pub collection: Option<String>,
    /// URL of the references (the virtual store) for the store link and asset.
    pub refs_href: Option<String>,
    pub store_style: StoreStyle,
    /// Last modification of the source (RFC 3339): the item time when the data has none.
    pub source_modified: Option<String>,
    /// A dataset item with more files than this keeps only its summary assets inline;
    /// its files' assets become asset documents ([`crate::netcdf::asset_document`]).
    /// `None`: every file's asset stays inline.
    pub max_item_assets: Option<usize>,
}

impl Default for ItemOptions {
    fn default() -> Self {
        ItemOptions {
            collection: None,
            refs_href: None,
            store_style: StoreStyle::Kerchunk,
            source_modified: None,
            max_item_assets: None,
        }
    }
}

/// Why no item could be built.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("no time for the item: {0}")]
    NoTime(String),
    #[error("{0}")]
    Invalid(String),
}

/// An id safe in URLs and file names: letters, digits, `.`, `_` and `-`.
pub fn safe_id(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '.' || c == '_').to_string();
    if s.is_empty() { "item".into() } else { s }
}

/// The polygon of a bounding box (west, south, east, north). A box whose west is
/// greater than its east crosses the antimeridian: two polygons, one either side, as
/// RFC 7946 (section 3.1.9) asks, so that spatial searches find it on both.
pub fn bbox_polygon(b: [f64; 4]) -> Value {
    let [w, s, e, n] = b;
    let ring = |w: f64, e: f64| json!([[[w, s], [e, s], [e, n], [w, n], [w, s]]]);
    if w > e {
        json!({
            "type": "MultiPolygon",
            "coordinates": [ring(w, 180.0), ring(-180.0, e)]
        })
    } else {
        json!({"type": "Polygon", "coordinates": ring(w, e)})
    }
}

/// `datetime`, `start_datetime`, `end_datetime` for a time range.
pub fn time_properties(start: &str, end: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if start == end {
        m.insert("datetime".into(), json!(start));
    } else {
        m.insert("datetime".into(), Value::Null);
        m.insert("start_datetime".into(), json!(start));
        m.insert("end_datetime".into(), json!(end));
    }
    m
}
