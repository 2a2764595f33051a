//! Offline validation of STAC documents against the vendored official schemas: the
//! STAC 1.1.0 core schema for the document's type and the schema of every extension it
//! declares. No network: a schema that is not vendored is itself a problem.

use std::collections::HashMap;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use parking_lot::Mutex;
use serde_json::Value;

static SCHEMAS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/schemas");

const CORE: &str = "https://schemas.stacspec.org/v1.1.0/";

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The schema that found it.
    pub schema: String,
    /// JSON pointer into the document.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.schema)
    }
}

/// The published URL of a vendored schema file.
fn url_for(path: &str) -> Option<String> {
    if let Some(name) = path.strip_prefix("core/v1.1.0/") {
        let spec = match name {
            "catalog.json" => "catalog-spec",
            "collection.json" => "collection-spec",
            _ => "item-spec",
        };
        return Some(format!("{CORE}{spec}/json-schema/{name}"));
    }
    if let Some(name) = path.strip_prefix("geojson/") {
        return Some(format!("https://geojson.org/schema/{name}"));
    }
    if path.starts_with("projjson/") {
        return Some("https://proj.org/schemas/v0.7/projjson.schema.json".into());
    }
    path.strip_prefix("extensions/")
        .map(|rest| format!("https://stac-extensions.github.io/{rest}"))
}

/// Every vendored schema by each URL it is known under (its published URL and its `$id`).
fn schema_index() -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut stack = vec![&SCHEMAS];
    while let Some(dir) = stack.pop() {
        for file in dir.files() {
            let path = file.path().to_string_lossy().replace('\\', "/");
            if !path.ends_with(".json") {
                continue;
            }
            let Ok(doc) = serde_json::from_slice::<Value>(file.contents()) else {
                continue;
            };
            if let Some(url) = url_for(&path) {
                out.insert(url, doc.clone());
            }
            if let Some(id) = doc.get("$id").and_then(Value::as_str) {
                out.insert(id.trim_end_matches('#').to_string(), doc.clone());
            }
        }
        stack.extend(dir.dirs());
    }
    out
}

struct Vendored(Arc<HashMap<String, Value>>);

impl jsonschema::Retrieve for Vendored {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().trim_end_matches('#');
        if key.starts_with("http://json-schema.org/") {
            // Meta-schemas are built into the validator.
            return Err(format!("meta-schema {key} is not fetched").into());
        }
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| format!("schema {key} is not vendored (offline validation)").into())
    }
}

/// Error texts quote the offending value, which can be the whole document: keep the
/// line readable.
fn shorten(message: String) -> String {
    const MAX: usize = 240;
    if message.len() <= MAX {
        return message;
    }
    let mut cut = MAX;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &message[..cut])
}

/// The error that says most: a `oneOf`/`anyOf` failure only says "no branch matched",
/// so look inside the branches for the error deepest in the document (the property
/// that is actually wrong), as Python's `jsonschema.best_match` does.
fn deepest<'a>(e: &'a jsonschema::ValidationError<'a>) -> &'a jsonschema::ValidationError<'a> {
    use jsonschema::error::ValidationErrorKind as K;
    let context = match e.kind() {
        K::OneOfNotValid { context } | K::AnyOf { context } => context,
        _ => return e,
    };
    let depth =
        |x: &jsonschema::ValidationError<'_>| x.instance_path().to_string().matches('/').count();
    let mut best: Option<&jsonschema::ValidationError<'_>> = None;
    for branch in context {
        for sub in branch {
            let candidate = deepest(sub);
            if best.is_none_or(|b| depth(candidate) > depth(b)) {
                best = Some(candidate);
            }
        }
    }
    best.unwrap_or(e)
}

/// The `uri` format, read as a URI reference: a static catalog links its documents by
/// relative hrefs (`../collection.json`), and the one vendored schema that says `uri`
/// (cmip6 v3.0.2, on every link) means to constrain the links it names, not to forbid
/// self-contained catalogs; Python's `jsonschema`, the reference checker, does not assert
/// the format at all. What is still refused: whitespace, control characters, a bad scheme.
fn uri_reference(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    // A scheme is what comes before the first ':' when no '/', '?' or '#' comes first.
    match s.find([':', '/', '?', '#']) {
        Some(k) if s.as_bytes()[k] == b':' => {
            let scheme = &s[..k];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => true,
    }
}

/// Validates STAC documents; compiled schemas are cached.
pub struct Validator {
    schemas: Arc<HashMap<String, Value>>,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Default for Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Validator {
    pub fn new() -> Self {
        Validator {
            schemas: Arc::new(schema_index()),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// URLs of all vendored schemas.
    pub fn known_schemas(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.schemas.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    fn compiled(&self, url: &str) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.compiled.lock().get(url) {
            return Ok(v.clone());
        }
        let schema = self
            .schemas
            .get(url.trim_end_matches('#'))
            .ok_or_else(|| format!("schema {url} is not vendored; cannot validate offline"))?;
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_format("uri", uri_reference)
            .with_retriever(Vendored(self.schemas.clone()))
            .build(schema)
            .map_err(|e| format!("schema {url} does not compile: {e}"))?;
        let v = Arc::new(v);
        self.compiled.lock().insert(url.to_string(), v.clone());
        Ok(v)
    }

    /// Every problem of `doc` against its core schema and its declared extensions; empty
    /// when it is valid.
    pub fn validate(&self, doc: &Value) -> Vec<Problem> {
        let core = match doc.get("type").and_then(Value::as_str) {
            Some("Feature") => format!("{CORE}item-spec/json-schema/item.json"),
            Some("Collection") => format!("{CORE}collection-spec/json-schema/collection.json"),
            Some("Catalog") => format!("{CORE}catalog-spec/json-schema/catalog.json"),
            other => {
                return vec![Problem {
                    schema: "STAC".into(),
                    path: "/type".into(),
                    message: format!(
                        "not a STAC document: type {other:?} (expected Feature, Collection or Catalog)"
                    ),
                }];
            }
        };
        let mut urls = vec![core];
        if let Some(exts) = doc.get("stac_extensions").and_then(Value::as_array) {
            urls.extend(exts.iter().filter_map(Value::as_str).map(str::to_string));
        }
        let mut problems = Vec::new();
        for url in urls {
            match self.compiled(&url) {
                Ok(v) => problems.extend(v.iter_errors(doc).map(|e| {
                    let best = deepest(&e);
                    Problem {
                        schema: url.clone(),
                        path: best.instance_path().to_string(),
                        message: shorten(best.to_string()),
                    }
                })),
                Err(message) => problems.push(Problem {
                    schema: url.clone(),
                    path: String::new(),
                    message,
                }),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_uri_format_takes_references_and_refuses_what_no_uri_is() {
        for ok in [
            "https://cera-www.dkrz.de/WDCC/meta/CMIP6/x.json",
            "../collection.json",
            "s3://bucket/key.nc",
            "a/b:c",
        ] {
            assert!(uri_reference(ok), "{ok}");
        }
        for bad in ["", "has space", "1http://x", "ht tp://x", "a\u{7}b"] {
            assert!(!uri_reference(bad), "{bad}");
        }
    }

    fn item() -> Value {
        json!({
            "type": "Feature", "stac_version": "1.1.0", "id": "x",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
            "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}, "bbox": [1.0, 2.0, 1.0, 2.0],
            "properties": {"datetime": "2020-01-01T00:00:00Z", "proj:code": "EPSG:4326"},
            "links": [], "assets": {}
        })
    }

    #[test]
    fn accepts_a_valid_item_and_names_what_is_wrong() {
        let v = Validator::new();
        assert_eq!(v.validate(&item()), vec![]);
        let mut bad = item();
        bad["properties"]["proj:code"] = json!(4326);
        let problems = v.validate(&bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].schema.contains("projection/v2.0.0"));
        // The line names the property that is wrong, not just "no oneOf branch matched".
        assert_eq!(problems[0].path, "/properties/proj:code", "{problems:?}");
        assert!(problems[0].to_string().len() < 400);
        let mut no_dt = item();
        no_dt["properties"] = json!({});
        let problems = v.validate(&no_dt);
        assert!(
            problems.iter().any(|p| p.message.contains("datetime")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unknown_extension_is_a_problem() {
        let mut doc = item();
        doc["stac_extensions"] = json!(["https://example.com/nope/v1.0.0/schema.json"]);
        let problems = Validator::new().validate(&doc);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("not vendored"));
    }
}
