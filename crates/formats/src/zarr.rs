//! Zarr v2 stores (EOPF products) into the Dataset model: metadata only.
//!
//! The consolidated `.zmetadata` document is read when the store has one (one request);
//! otherwise the hierarchy is walked group by group, reading each node's `.zgroup`,
//! `.zarray` and `.zattrs`. Chunks are never listed or read: the arrays come out with
//! empty manifests, since the store itself is already Zarr.
//!
//! The metadata is parsed with `serde_json` rather than the `zarrs` crate: `zarrs` reads
//! Zarr v2 node by node but not the v2 consolidated `.zmetadata` document, and its
//! default features build C codecs that a metadata reader does not need.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Map, Value};
use zarrstac_io::{IoError, Location};
use zarrstac_model::{
    Array, AttrValue, Attributes, ByteOrder, ChunkManifest, Codec, DataType, Dataset, FillValue,
    Group, Refusal, SourceFormat,
};

use crate::ScanError;

/// Largest metadata a store may have, consolidated or summed over its node documents:
/// real products carry a few MiB at most, and a hostile store must not exhaust memory.
pub const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;
/// Deepest group nesting accepted; keeps the tree walk and its recursion bounded.
const MAX_DEPTH: usize = 64;
/// Most nodes (groups and arrays) visited when walking a store without `.zmetadata`.
const MAX_LISTED_NODES: usize = 100_000;

const FORMAT: &str = "Zarr v2";

/// How a store spells its node metadata: Zarr v2's `.zgroup`/`.zarray`/`.zattrs`, or one
/// Zarr v3 `zarr.json` per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    V2,
    V3,
}

/// True when `root` looks like a Zarr v2 store: it has `.zmetadata` or `.zgroup`.
pub async fn is_zarr_store(root: &Location) -> bool {
    for name in [".zmetadata", ".zgroup"] {
        let probe = root.join(name);
        if root.store.head(&probe.path).await.is_ok() {
            return true;
        }
    }
    false
}

/// Reads the metadata of the Zarr v2 store at `root` into a [`Dataset`].
pub async fn scan_zarr(root: Location) -> Result<Dataset, ScanError> {
    let url = root.url.trim_end_matches('/').to_string();
    let consolidated = root.join(".zmetadata");
    let (documents, source_size) = match read_small(&consolidated, MAX_METADATA_BYTES).await? {
        Some(bytes) => {
            let size = bytes.len() as u64;
            (Documents::Consolidated(bytes), size)
        }
        None => (Documents::Listed(walk_store(&root).await?), 0),
    };
    // Parsing tens of MiB of JSON is CPU work: keep it off the runtime's workers.
    let task_url = url.clone();
    tokio::task::spawn_blocking(move || build(&task_url, documents, source_size))
        .await
        .map_err(|e| ScanError::Internal(format!("Zarr metadata task failed: {e}")))?
}

/// The raw metadata documents of a store.
enum Documents {
    /// The `.zmetadata` document.
    Consolidated(Bytes),
    /// `(key, bytes)` of every `.zgroup`, `.zarray` and `.zattrs` found by walking.
    Listed(Vec<(String, Bytes)>),
}

fn store_error(url: &str, source: object_store::Error) -> ScanError {
    ScanError::Io(IoError::Store {
        url: url.to_string(),
        source,
    })
}

/// The whole object at `loc`, `None` when it does not exist; refused beyond `limit` bytes
/// (what is left of [`MAX_METADATA_BYTES`]).
pub(crate) async fn read_small(loc: &Location, limit: u64) -> Result<Option<Bytes>, ScanError> {
    let result = match loc.store.get(&loc.path).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error(&loc.url, e)),
    };
    let too_big = |size: u64| ScanError::Unsupported {
        url: loc.url.clone(),
        what: format!(
            "store metadata beyond the {} MiB limit ({size} bytes in this document)",
            MAX_METADATA_BYTES / (1024 * 1024)
        ),
    };
    // The size is known before the body is read: refuse without downloading it.
    if result.meta.size > limit {
        return Err(too_big(result.meta.size));
    }
    let bytes = result.bytes().await.map_err(|e| store_error(&loc.url, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Documents read while walking a store, within one byte budget.
pub(crate) struct Walk {
    pub(crate) out: Vec<(String, Bytes)>,
    pub(crate) budget: u64,
}

impl Walk {
    /// Reads `loc` as the document `key`; false when it does not exist.
    async fn fetch(&mut self, loc: Location, key: String) -> Result<bool, ScanError> {
        match read_small(&loc, self.budget).await? {
            Some(bytes) => {
                self.budget -= bytes.len() as u64;
                self.out.push((key, bytes));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Walks a store without consolidated metadata: lists each group's sub-folders and probes
/// them for `.zgroup`/`.zarray`. Array folders are never listed (they hold the chunks).
async fn walk_store(root: &Location) -> Result<Vec<(String, Bytes)>, ScanError> {
    let mut walk = Walk {
        out: Vec::new(),
        budget: MAX_METADATA_BYTES,
    };
    if !walk.fetch(root.join(".zgroup"), ".zgroup".into()).await? {
        let exists = |name: &str| {
            let loc = root.join(name);
            async move { loc.store.head(&loc.path).await.is_ok() }
        };
        let what = if exists(".zarray").await {
            "Zarr store whose root is an array (a group is expected)"
        } else if exists("zarr.json").await {
            "Zarr v3 store (only Zarr v2 is read)"
        } else {
            "location: neither .zmetadata nor .zgroup found, not a Zarr v2 store"
        };
        return Err(ScanError::Unsupported {
            url: root.url.clone(),
            what: what.into(),
        });
    }
    walk.fetch(root.join(".zattrs"), ".zattrs".into()).await?;
    walk_children(root, walk, Layout::V2).await
}

/// Lists each group's sub-folders and reads the node metadata found in them, down the
/// hierarchy; `walk` already holds the root's documents.
pub(crate) async fn walk_children(
    root: &Location,
    mut walk: Walk,
    layout: Layout,
) -> Result<Vec<(String, Bytes)>, ScanError> {
    let base = root.url.trim_end_matches('/');
    // (key prefix, folder, depth) of groups still to list.
    let mut pending: Vec<(String, Path, usize)> = vec![(String::new(), root.path.clone(), 0)];
    let mut nodes = 1usize;
    while let Some((prefix, folder, depth)) = pending.pop() {
        let listing = root
            .store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(|e| store_error(&root.url, e))?;
        let mut children = listing.common_prefixes;
        children.sort();
        for child in children {
            let Some(name) = child.filename() else {
                continue;
            };
            let key = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let at = |file: &str| Location {
                store: root.store.clone(),
                path: child.clone().join(file),
                url: format!("{base}/{key}/{file}"),
                local_path: root.local_path.as_ref().map(|p| p.join(&key).join(file)),
            };
            nodes += 1;
            if nodes > MAX_LISTED_NODES {
                return Err(ScanError::Unsupported {
                    url: root.url.clone(),
                    what: format!("store with more than {MAX_LISTED_NODES} groups and arrays"),
                });
            }
            let is_group = match layout {
                Layout::V2 => {
                    let is_group = if walk.fetch(at(".zgroup"), format!("{key}/.zgroup")).await? {
                        true
                    } else if walk.fetch(at(".zarray"), format!("{key}/.zarray")).await? {
                        false
                    } else {
                        // A folder that is not a Zarr node (stray files): nothing to read.
                        continue;
                    };
                    walk.fetch(at(".zattrs"), format!("{key}/.zattrs")).await?;
                    is_group
                }
                Layout::V3 => {
                    if !walk
                        .fetch(at("zarr.json"), format!("{key}/zarr.json"))
                        .await?
                    {
                        continue;
                    }
                    // Only groups are listed further: an array's folder holds its chunks.
                    walk.out
                        .last()
                        .is_some_and(|(_, doc)| crate::zarr_v3::is_group_document(doc))
                }
            };
            if is_group {
                if depth + 1 >= MAX_DEPTH {
                    return Err(corrupt(
                        &root.url,
                        format!("groups nested deeper than {MAX_DEPTH} levels at '{key}'"),
                    ));
                }
                pending.push((key, child.clone(), depth + 1));
            }
        }
    }
    Ok(walk.out)
}

fn corrupt(url: &str, detail: String) -> ScanError {
    ScanError::Corrupt {
        url: url.to_string(),
        format: FORMAT,
        detail,
    }
}

impl Layout {
    fn format_name(self) -> &'static str {
        match self {
            Layout::V2 => FORMAT,
            Layout::V3 => "Zarr v3",
        }
    }

    fn corrupt(self, url: &str, detail: String) -> ScanError {
        ScanError::Corrupt {
            url: url.to_string(),
            format: self.format_name(),
            detail,
        }
    }
}

/// Parses JSON as Python writes it: `NaN`, `Infinity` and `-Infinity` appear bare in
/// attributes written by zarr-python, and strict JSON parsers reject them.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => match quote_non_finite(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed).map_err(|_| first),
            None => Err(first),
        },
    }
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens (outside strings) as the strings
/// Zarr uses for them; `None` when there are none.
fn quote_non_finite(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t.as_bytes()))
        {
            out.push(b'"');
            out.extend_from_slice(token.as_bytes());
            out.push(b'"');
            i += token.len();
            changed = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// Builds the dataset from the raw documents (blocking: JSON parsing).
fn build(url: &str, documents: Documents, source_size: u64) -> Result<Dataset, ScanError> {
    let metadata: Vec<(String, Value)> = match documents {
        Documents::Consolidated(bytes) => {
            let doc = parse_json(&bytes)
                .map_err(|e| corrupt(url, format!(".zmetadata is not valid JSON: {e}")))?;
            let Value::Object(mut doc) = doc else {
                return Err(corrupt(url, ".zmetadata is not a JSON object".into()));
            };
            match doc.get("zarr_consolidated_format") {
                Some(v) if v.as_u64() == Some(1) => {}
                Some(v) => {
                    return Err(ScanError::Unsupported {
                        url: url.to_string(),
                        what: format!("consolidated metadata format {v} (known: 1)"),
                    });
                }
                None => {
                    return Err(corrupt(
                        url,
                        ".zmetadata has no zarr_consolidated_format".into(),
                    ));
                }
            }
            match doc.remove("metadata") {
                Some(Value::Object(m)) => m.into_iter().collect(),
                _ => return Err(corrupt(url, ".zmetadata has no 'metadata' object".into())),
            }
        }
        Documents::Listed(files) => files
            .into_iter()
            .map(|(key, bytes)| {
                parse_json(&bytes)
                    .map(|v| (key.clone(), v))
                    .map_err(|e| corrupt(url, format!("{key} is not valid JSON: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut dataset = from_documents(url, metadata, Layout::V2)?;
    dataset.source_size = source_size;
    Ok(dataset)
}

/// The documents of one node.
#[derive(Default)]
struct Node {
    group: Option<Value>,
    array: Option<Value>,
    attrs: Option<Value>,
}

/// Builds the dataset from `(key, document)` pairs as `.zmetadata` lists them.
pub(crate) fn from_documents(
    url: &str,
    metadata: Vec<(String, Value)>,
    layout: Layout,
) -> Result<Dataset, ScanError> {
    let corrupt = |url: &str, detail: String| layout.corrupt(url, detail);
    // BTreeMap: children come out sorted by name, whichever way the documents were found.
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for (key, doc) in metadata {
        let (path, file) = match key.rsplit_once('/') {
            Some((p, f)) => (p.to_string(), f),
            None => (String::new(), key.as_str()),
        };
        if !path.is_empty()
            && path
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(corrupt(
                url,
                format!("metadata key '{key}' is not a valid node path"),
            ));
        }
        if path.split('/').count() > MAX_DEPTH {
            return Err(corrupt(
                url,
                format!("metadata key '{key}' nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let node = nodes.entry(path).or_default();
        match (layout, file) {
            (Layout::V2, ".zgroup") => node.group = Some(doc),
            (Layout::V2, ".zarray") => node.array = Some(doc),
            (Layout::V2, ".zattrs") => node.attrs = Some(doc),
            // One document per node: its attributes are part of it.
            (Layout::V3, "zarr.json") => {
                node.attrs = doc.get("attributes").cloned();
                match doc.get("node_type").and_then(Value::as_str) {
                    Some("array") => node.array = Some(doc),
                    Some("group") => node.group = Some(doc),
                    other => {
                        return Err(corrupt(
                            url,
                            format!("'{key}' has node_type {other:?} (group or array expected)"),
                        ));
                    }
                }
            }
            // Other keys (a nested .zmetadata, foreign tools' files) say nothing about nodes.
            _ => {}
        }
    }
    let root = nodes.remove("").unwrap_or_default();
    if root.array.is_some() {
        return Err(ScanError::Unsupported {
            url: url.to_string(),
            what: "Zarr store whose root is an array (a group is expected)".into(),
        });
    }
    if let Some(g) = &root.group {
        check_group(url, "", g, layout)?;
    }

    // Parent path → child names; ancestors without a .zgroup are implied groups.
    let mut children: HashMap<String, BTreeSet<String>> = HashMap::new();
    let paths: Vec<String> = nodes.keys().cloned().collect();
    for path in &paths {
        let mut child = path.as_str();
        while let Some((parent, _)) = child.rsplit_once('/') {
            children
                .entry(parent.to_string())
                .or_default()
                .insert(child.to_string());
            child = parent;
        }
        children
            .entry(String::new())
            .or_default()
            .insert(child.to_string());
    }

    let mut refused = Vec::new();
    let mut root_group = Group::new("");
    root_group.attributes = attributes(url, "", root.attrs.as_ref(), false)?;
    let tree = Tree {
        url,
        layout,
        children: &children,
        nodes: &nodes,
    };
    tree.fill_group(&mut root_group, "", &mut refused)?;
    Ok(Dataset {
        source_url: url.to_string(),
        source_size: 0,
        format: match layout {
            Layout::V2 => SourceFormat::Zarr,
            Layout::V3 => SourceFormat::ZarrV3,
        },
        root: root_group,
        refused,
    })
}

fn check_group(url: &str, path: &str, doc: &Value, layout: Layout) -> Result<(), ScanError> {
    if layout == Layout::V3 {
        return crate::zarr_v3::check_group(url, path, doc);
    }
    match doc.get("zarr_format").and_then(Value::as_u64) {
        Some(2) => Ok(()),
        Some(v) => Err(ScanError::Unsupported {
            url: url.to_string(),
            what: format!("group '{path}' of zarr_format {v} (only 2 is read)"),
        }),
        None => Err(corrupt(
            url,
            format!("group '{path}': .zgroup has no zarr_format"),
        )),
    }
}

/// The nodes of a store, indexed for building its group tree.
struct Tree<'a> {
    url: &'a str,
    layout: Layout,
    /// Parent path → child paths.
    children: &'a HashMap<String, BTreeSet<String>>,
    nodes: &'a BTreeMap<String, Node>,
}

impl Tree<'_> {
    /// Adds the child groups and arrays of the group at `path`; recursion depth is bounded
    /// by [`MAX_DEPTH`], checked on every key.
    fn fill_group(
        &self,
        group: &mut Group,
        path: &str,
        refused: &mut Vec<Refusal>,
    ) -> Result<(), ScanError> {
        let (url, children, nodes) = (self.url, self.children, self.nodes);
        let Some(names) = children.get(path) else {
            return Ok(());
        };
        for child_path in names {
            let name = child_path.rsplit('/').next().unwrap_or(child_path);
            let node = nodes.get(child_path);
            match node {
                Some(Node {
                    array: Some(doc),
                    group: also_group,
                    attrs,
                }) => {
                    // Nodes below an array are not part of the hierarchy: say so, once each.
                    for inner in children.get(child_path).into_iter().flatten() {
                        refused.push(Refusal {
                            path: inner.clone(),
                            reason: format!("lies inside the array '{child_path}'"),
                        });
                    }
                    if also_group.is_some() {
                        refused.push(Refusal {
                            path: child_path.clone(),
                            reason: "both .zgroup and .zarray at this path".into(),
                        });
                        continue;
                    }
                    let read = match self.layout {
                        Layout::V2 => array(url, child_path, name, doc, attrs.as_ref())?,
                        Layout::V3 => {
                            crate::zarr_v3::array(url, child_path, name, doc, attrs.as_ref())?
                        }
                    };
                    match read {
                        Ok(a) => group.arrays.push(a),
                        Err(reason) => refused.push(Refusal {
                            path: child_path.clone(),
                            reason,
                        }),
                    }
                }
                _ => {
                    let mut sub = Group::new(name);
                    if let Some(Node { group: Some(g), .. }) = node {
                        check_group(url, child_path, g, self.layout)?;
                    }
                    sub.attributes =
                        attributes(url, child_path, node.and_then(|n| n.attrs.as_ref()), false)?;
                    self.fill_group(&mut sub, child_path, refused)?;
                    group.groups.push(sub);
                }
            }
        }
        Ok(())
    }
}

/// A `.zattrs` document as model attributes; `_ARRAY_DIMENSIONS` is left out of arrays'.
pub(crate) fn attributes(
    url: &str,
    path: &str,
    doc: Option<&Value>,
    is_array: bool,
) -> Result<Attributes, ScanError> {
    let mut out = Attributes::new();
    let Some(doc) = doc else { return Ok(out) };
    let Value::Object(map) = doc else {
        return Err(corrupt(
            url,
            format!("'{path}/.zattrs' is not a JSON object"),
        ));
    };
    for (k, v) in map {
        if is_array && k == "_ARRAY_DIMENSIONS" {
            continue;
        }
        out.insert(k.clone(), attr_value(v));
    }
    Ok(out)
}

/// Strings and numbers become typed attributes; anything structured stays JSON.
pub fn attr_value(v: &Value) -> AttrValue {
    match v {
        Value::String(s) => AttrValue::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                AttrValue::Int(vec![i])
            } else if let Some(u) = n.as_u64() {
                AttrValue::UInt(vec![u])
            } else {
                AttrValue::Float {
                    values: vec![n.as_f64().unwrap_or(f64::NAN)],
                    bits: 64,
                }
            }
        }
        other => AttrValue::Json(other.clone()),
    }
}

/// One array from its `.zarray` and `.zattrs`. The outer error is a corrupt store; the
/// inner one a reason to refuse just this array.
fn array(
    url: &str,
    path: &str,
    name: &str,
    doc: &Value,
    attrs: Option<&Value>,
) -> Result<Result<Array, String>, ScanError> {
    let Value::Object(meta) = doc else {
        return Ok(Err(".zarray is not a JSON object".into()));
    };
    if meta.get("zarr_format").and_then(Value::as_u64) != Some(2) {
        return Ok(Err(format!(
            "zarr_format {} (only 2 is read)",
            meta.get("zarr_format").unwrap_or(&Value::Null)
        )));
    }
    let Some(shape) = u64_list(meta.get("shape")) else {
        return Ok(Err("shape is not a list of non-negative integers".into()));
    };
    let Some(chunk_shape) = u64_list(meta.get("chunks")) else {
        return Ok(Err("chunks is not a list of non-negative integers".into()));
    };
    if chunk_shape.len() != shape.len() {
        return Ok(Err(format!(
            "chunks {chunk_shape:?} do not match shape {shape:?}"
        )));
    }
    if chunk_shape.contains(&0) {
        return Ok(Err(format!(
            "chunk shape {chunk_shape:?} has a zero extent"
        )));
    }
    let dtype = match meta.get("dtype") {
        Some(Value::String(s)) => match parse_dtype(s) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        },
        Some(Value::Array(_)) => {
            return Ok(Err("structured (record) dtype is not supported".into()));
        }
        _ => return Ok(Err("no dtype".into())),
    };
    match meta.get("order").and_then(Value::as_str) {
        Some("C") | None => {}
        Some("F") => {
            return Ok(Err(
                "Fortran (column-major) chunk order cannot be described in the model".into(),
            ));
        }
        Some(o) => return Ok(Err(format!("unknown chunk order '{o}'"))),
    }
    let codecs = match codecs(meta, &dtype) {
        Ok(c) => c,
        Err(reason) => return Ok(Err(reason)),
    };
    let fill_value = fill_value(meta.get("fill_value").unwrap_or(&Value::Null), &dtype);

    let attributes = attributes(url, path, attrs, true)?;
    let declared = attrs
        .and_then(|a| a.get("_ARRAY_DIMENSIONS"))
        .and_then(Value::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|dims| dims.len() == shape.len());
    // Without usable names, xarray's convention for anonymous axes.
    let dimensions =
        declared.unwrap_or_else(|| (0..shape.len()).map(|i| format!("dim_{i}")).collect());
    Ok(Ok(Array {
        name: name.to_string(),
        dtype,
        manifest: ChunkManifest::new(shape.len()),
        shape,
        chunk_shape,
        dimensions,
        codecs,
        fill_value,
        attributes,
        materialized: None,
        coordinate_values: None,
        grid_extent: None,
    }))
}

pub(crate) fn u64_list(v: Option<&Value>) -> Option<Vec<u64>> {
    v?.as_array()?.iter().map(Value::as_u64).collect()
}

/// A NumPy type string (`<u2`, `|u1`, `<f8`, `|b1`, `|S10`, `<U7`, `|O`) as a model type.
pub fn parse_dtype(s: &str) -> Result<DataType, String> {
    let unsupported = || format!("dtype '{s}' is not supported");
    let mut chars = s.chars();
    let order = match chars.next() {
        Some('<') => ByteOrder::Little,
        Some('>') => ByteOrder::Big,
        Some('|') => ByteOrder::NotApplicable,
        // Native order: every platform zarr-python runs on is little-endian.
        Some('=') => ByteOrder::Little,
        _ => return Err(unsupported()),
    };
    let kind = chars.next().ok_or_else(unsupported)?;
    let size_text = chars.as_str();
    if kind == 'O' && size_text.is_empty() {
        return Ok(DataType::VarString);
    }
    if matches!(kind, 'M' | 'm') {
        return Err(format!(
            "dtype '{s}' (datetime64/timedelta64) is not supported"
        ));
    }
    let size: u32 = size_text.parse().map_err(|_| unsupported())?;
    let one_byte = |o: ByteOrder| {
        if size == 1 {
            ByteOrder::NotApplicable
        } else {
            o
        }
    };
    match (kind, size) {
        ('b', 1) => Ok(DataType::Bool),
        ('i', 1 | 2 | 4 | 8) | ('u', 1 | 2 | 4 | 8) => Ok(DataType::Int {
            bytes: size as u8,
            signed: kind == 'i',
            order: one_byte(order),
        }),
        ('f', 2 | 4 | 8) => Ok(DataType::Float {
            bytes: size as u8,
            order,
        }),
        ('S', n) if n > 0 => Ok(DataType::FixedBytes(n)),
        // Fixed-width UTF-32 text: readers see strings, which is what the model says.
        ('U', n) if n > 0 => Ok(DataType::VarString),
        ('c', _) => Err(format!("dtype '{s}' (complex) is not supported")),
        _ => Err(unsupported()),
    }
}

/// The fill value of a `.zarray` for `dtype`; `None` when null or not meaningful.
pub fn fill_value(v: &Value, dtype: &DataType) -> Option<FillValue> {
    let special = |s: &str| match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    };
    match dtype {
        DataType::Float { .. } => match v {
            Value::Number(n) => n.as_f64().map(FillValue::Float),
            Value::String(s) => special(s).map(FillValue::Float),
            _ => None,
        },
        DataType::Int { signed, .. } => {
            let n = v.as_number()?;
            let integral = n.as_f64().filter(|f| f.fract() == 0.0 && f.is_finite());
            if *signed {
                n.as_i64()
                    .or_else(|| integral.map(|f| f as i64))
                    .map(FillValue::Int)
            } else {
                n.as_u64()
                    .or_else(|| integral.filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(FillValue::UInt)
            }
        }
        DataType::Bool => match v {
            Value::Bool(b) => Some(FillValue::UInt(u64::from(*b))),
            Value::Number(n) => n.as_u64().map(|u| FillValue::UInt(u64::from(u != 0))),
            _ => None,
        },
        // Zarr v2 stores fixed-length byte fill values base64-encoded.
        DataType::FixedBytes(_) => match v {
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .map(FillValue::Bytes),
            _ => None,
        },
        DataType::VarString => match v {
            Value::String(s) => Some(FillValue::Bytes(s.as_bytes().to_vec())),
            _ => None,
        },
        DataType::Compound { .. } => None,
    }
}

/// Filters then compressor, in encoding order; a codec the model cannot name refuses the
/// array (references written from it would decode wrongly).
fn codecs(meta: &Map<String, Value>, dtype: &DataType) -> Result<Vec<Codec>, String> {
    let mut out = Vec::new();
    let mut configs: Vec<&Value> = match meta.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(f)) => f.iter().collect(),
        Some(_) => return Err("filters is not a list".into()),
    };
    match meta.get("compressor") {
        None | Some(Value::Null) => {}
        Some(c) => configs.push(c),
    }
    let item = dtype.item_size().unwrap_or(1) as u32;
    for c in configs {
        out.push(codec(c, item)?);
    }
    Ok(out)
}

fn codec(c: &Value, item_size: u32) -> Result<Codec, String> {
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("codec without an id: {c}"))?;
    let u32_of = |key: &str, default: u32| {
        c.get(key)
            .and_then(Value::as_u64)
            .map_or(default, |v| v.min(u32::MAX as u64) as u32)
    };
    match id {
        "blosc" => {
            let cname = c
                .get("cname")
                .and_then(Value::as_str)
                .unwrap_or("lz4")
                .to_string();
            // numcodecs' AUTOSHUFFLE (-1): bit shuffle for 1-byte items, byte shuffle otherwise.
            let shuffle = match c.get("shuffle").and_then(Value::as_i64) {
                Some(-1) if item_size == 1 => 2,
                Some(-1) => 1,
                Some(s) if (0..=2).contains(&s) => s as u32,
                None => 1,
                Some(s) => return Err(format!("blosc shuffle {s} is not known")),
            };
            Ok(Codec::Blosc {
                cname,
                clevel: u32_of("clevel", 5),
                shuffle,
                blocksize: u32_of("blocksize", 0),
            })
        }
        "zlib" => Ok(Codec::Zlib {
            level: u32_of("level", 1),
        }),
        "zstd" => Ok(Codec::Zstd {
            level: c
                .get("level")
                .and_then(Value::as_i64)
                .map_or(0, |l| l.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        }),
        "shuffle" => Ok(Codec::Shuffle {
            element_size: u32_of("elementsize", item_size),
        }),
        "fletcher32" => Ok(Codec::Fletcher32),
        "vlen-utf8" => Ok(Codec::VlenUtf8),
        other => Err(format!("codec '{other}' is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use serde_json::json;

    use super::*;

    #[test]
    fn numpy_type_strings() {
        let le = ByteOrder::Little;
        assert_eq!(
            parse_dtype("<u2"),
            Ok(DataType::Int {
                bytes: 2,
                signed: false,
                order: le
            })
        );
        assert_eq!(
            parse_dtype("|u1"),
            Ok(DataType::Int {
                bytes: 1,
                signed: false,
                order: ByteOrder::NotApplicable
            })
        );
        assert_eq!(
            parse_dtype("<f8"),
            Ok(DataType::Float {
                bytes: 8,
                order: le
            })
        );
        assert_eq!(
            parse_dtype(">i8"),
            Ok(DataType::Int {
                bytes: 8,
                signed: true,
                order: ByteOrder::Big
            })
        );
        assert_eq!(parse_dtype("|b1"), Ok(DataType::Bool));
        assert_eq!(parse_dtype("|S10"), Ok(DataType::FixedBytes(10)));
        assert_eq!(parse_dtype("<U7"), Ok(DataType::VarString));
        assert_eq!(parse_dtype("|O"), Ok(DataType::VarString));
        for bad in [
            "<M8[ns]",
            "<c16",
            "<f3",
            "x",
            "",
            "<u",
            "|V8",
            "<u99999999999",
        ] {
            assert!(parse_dtype(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fill_values_follow_the_dtype() {
        let f4 = DataType::Float {
            bytes: 4,
            order: ByteOrder::Little,
        };
        assert!(matches!(fill_value(&json!("NaN"), &f4), Some(FillValue::Float(f)) if f.is_nan()));
        assert_eq!(
            fill_value(&json!(65535.0), &f4),
            Some(FillValue::Float(65535.0))
        );
        let u2 = DataType::Int {
            bytes: 2,
            signed: false,
            order: ByteOrder::Little,
        };
        assert_eq!(fill_value(&json!(0), &u2), Some(FillValue::UInt(0)));
        assert_eq!(fill_value(&json!(null), &u2), None);
        let s3 = DataType::FixedBytes(3);
        assert_eq!(
            fill_value(&json!("YWJj"), &s3),
            Some(FillValue::Bytes(b"abc".to_vec()))
        );
    }

    #[test]
    fn bare_non_finite_numbers_are_read() {
        let v = parse_json(br#"{"a": NaN, "b": [-Infinity, 1], "c": "NaN inside"}"#).unwrap();
        assert_eq!(
            v,
            json!({"a": "NaN", "b": ["-Infinity", 1], "c": "NaN inside"})
        );
        assert!(parse_json(b"{\"a\": Nope}").is_err());
    }

    fn documents() -> Vec<(String, Value)> {
        vec![
            (".zgroup".into(), json!({"zarr_format": 2})),
            (
                ".zattrs".into(),
                json!({"title": "t", "n": 3, "list": [1, 2]}),
            ),
            ("a/b/.zgroup".into(), json!({"zarr_format": 2})),
            (
                "a/b/v/.zarray".into(),
                json!({"zarr_format": 2, "shape": [4, 6], "chunks": [2, 3], "dtype": "<u2",
                       "fill_value": 0, "order": "C", "filters": null,
                       "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1, "blocksize": 0}}),
            ),
            (
                "a/b/v/.zattrs".into(),
                json!({"_ARRAY_DIMENSIONS": ["y", "x"], "scale_factor": 0.5, "long_name": "v"}),
            ),
            (
                "a/c/.zarray".into(),
                json!({"zarr_format": 2, "shape": [2], "chunks": [2], "dtype": "<M8[ns]",
                       "fill_value": null, "order": "C", "filters": null, "compressor": null}),
            ),
        ]
    }

    #[test]
    fn builds_the_tree_and_refuses_what_it_cannot_describe() {
        let d = from_documents("memory:///s.zarr", documents(), Layout::V2).unwrap();
        assert_eq!(d.format, SourceFormat::Zarr);
        assert_eq!(d.root.attributes["title"], AttrValue::String("t".into()));
        assert_eq!(d.root.attributes["n"], AttrValue::Int(vec![3]));
        assert_eq!(d.root.attributes["list"], AttrValue::Json(json!([1, 2])));
        let arrays = d.arrays();
        assert_eq!(arrays.len(), 1);
        let (path, v) = &arrays[0];
        assert_eq!(path, "a/b/v");
        assert_eq!(v.dimensions, ["y", "x"]);
        assert!(!v.attributes.contains_key("_ARRAY_DIMENSIONS"));
        assert_eq!(v.chunk_shape, [2, 3]);
        assert_eq!(v.fill_value, Some(FillValue::UInt(0)));
        assert!(matches!(&v.codecs[..], [Codec::Blosc { cname, .. }] if cname == "zstd"));
        assert!(v.manifest.is_empty());
        // `a` has no .zgroup of its own: it is implied by its children.
        assert_eq!(d.root.groups[0].name, "a");
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.refused[0].path, "a/c");
        assert!(
            d.refused[0].reason.contains("datetime64"),
            "{}",
            d.refused[0].reason
        );
    }

    #[test]
    fn hostile_keys_are_refused() {
        let deep = format!("{}.zgroup", "g/".repeat(MAX_DEPTH + 1));
        assert!(from_documents("u", vec![(deep, json!({"zarr_format": 2}))], Layout::V2).is_err());
        assert!(
            from_documents(
                "u",
                vec![("a//b/.zgroup".into(), json!({"zarr_format": 2}))],
                Layout::V2
            )
            .is_err()
        );
        let nested = vec![
            (
                "a/.zarray".into(),
                json!({"zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "<i4"}),
            ),
            ("a/b/.zgroup".into(), json!({"zarr_format": 2})),
        ];
        let d = from_documents("u", nested, Layout::V2).unwrap();
        assert_eq!(d.arrays().len(), 1);
        assert_eq!(d.refused[0].path, "a/b");
        let bad_attrs = vec![("x/.zattrs".into(), json!([1]))];
        assert!(from_documents("u", bad_attrs, Layout::V2).is_err());
    }

    fn memory_store() -> Location {
        Location {
            store: Arc::new(InMemory::new()),
            path: Path::from("stores/s.zarr"),
            url: "memory:///stores/s.zarr/".into(),
            local_path: None,
        }
    }

    async fn put(loc: &Location, key: &str, doc: &Value) {
        let target = loc.join(key);
        loc.store
            .put(
                &target.path,
                PutPayload::from(serde_json::to_vec(doc).unwrap()),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn consolidated_and_walked_stores_give_the_same_tree() {
        let walked = memory_store();
        for (key, doc) in documents() {
            put(&walked, &key, &doc).await;
        }
        // Walking follows only folders with a .zgroup, as Zarr v2 requires of groups.
        put(&walked, "a/.zgroup", &json!({"zarr_format": 2})).await;
        // A chunk and a stray folder: neither is metadata.
        put(&walked, "a/b/v/0.0", &json!(0)).await;
        put(&walked, "notes/readme", &json!("x")).await;
        assert!(is_zarr_store(&walked).await);
        let a = scan_zarr(walked).await.unwrap();

        let consolidated = memory_store();
        let mut metadata = Map::new();
        for (key, doc) in documents() {
            metadata.insert(key, doc);
        }
        put(
            &consolidated,
            ".zmetadata",
            &json!({"metadata": metadata, "zarr_consolidated_format": 1}),
        )
        .await;
        let b = scan_zarr(consolidated).await.unwrap();
        assert_eq!(a.source_url, "memory:///stores/s.zarr");
        assert_eq!(a.source_size, 0);
        assert!(b.source_size > 0);
        let names = |d: &Dataset| d.arrays().into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_eq!(a.refused, b.refused);
    }

    #[tokio::test]
    async fn not_a_store_and_oversized_metadata_fail_cleanly() {
        let empty = memory_store();
        assert!(!is_zarr_store(&empty).await);
        let err = scan_zarr(empty).await.unwrap_err();
        assert!(err.to_string().contains("not a Zarr v2 store"), "{err}");

        let big = memory_store();
        let target = big.join(".zmetadata");
        let payload = vec![b' '; (MAX_METADATA_BYTES + 1) as usize];
        big.store
            .put(&target.path, PutPayload::from(payload))
            .await
            .unwrap();
        let err = scan_zarr(big).await.unwrap_err();
        assert!(err.to_string().contains("64 MiB"), "{err}");

        let garbage = memory_store();
        let target = garbage.join(".zmetadata");
        garbage
            .store
            .put(&target.path, PutPayload::from(b"{\"metadata\": [".to_vec()))
            .await
            .unwrap();
        let err = scan_zarr(garbage).await.unwrap_err();
        assert!(matches!(err, ScanError::Corrupt { .. }), "{err}");
    }
}
