//! Zarr v3 stores (EOPF GeoZarr conversions, any zarr-python 3 store) into the Dataset
//! model: metadata only.
//!
//! The root `zarr.json` is read first. When it carries inline consolidated metadata (what
//! zarr-python 3's `consolidate_metadata` writes) that one document describes the whole
//! store; otherwise the hierarchy is walked, one `zarr.json` per node, array folders
//! never listed. Every array document is parsed with the Zarr v3 metadata types of
//! `zarrs` (`zarrs_metadata`), so a document the specification rejects is refused with
//! zarrs' reason; data types and codecs are then mapped onto the model. The group tree
//! is built by the same code as for Zarr v2.

use bytes::Bytes;
use object_store::ObjectStoreExt;
use serde_json::Value;
use zarrs_metadata::Configuration;
use zarrs_metadata::v3::{ArrayMetadataV3, FillValueMetadataV3, GroupMetadataV3, MetadataV3};
use zarrstac_io::Location;
use zarrstac_model::{Array, ByteOrder, ChunkManifest, Codec, DataType, Dataset, FillValue};

use crate::ScanError;
use crate::zarr::{
    Layout, MAX_METADATA_BYTES, Walk, attributes, from_documents, parse_json, read_small,
    walk_children,
};

const FORMAT: &str = "Zarr v3";
const ROOT_DOCUMENT: &str = "zarr.json";

fn corrupt(url: &str, detail: String) -> ScanError {
    ScanError::Corrupt {
        url: url.to_string(),
        format: FORMAT,
        detail,
    }
}

/// Reads the metadata of the Zarr v3 store at `root` into a [`Dataset`].
///
/// `source_size` of the result is the size of the root document when it holds the
/// consolidated metadata, zero when the store had to be walked.
pub async fn scan_zarr_v3(root: Location) -> Result<Dataset, ScanError> {
    let url = root.url.trim_end_matches('/').to_string();
    let Some(root_doc) = read_small(&root.join(ROOT_DOCUMENT), MAX_METADATA_BYTES).await? else {
        let v2 = root.store.head(&root.join(".zgroup").path).await.is_ok()
            || root.store.head(&root.join(".zmetadata").path).await.is_ok();
        return Err(ScanError::Unsupported {
            url: root.url.clone(),
            what: if v2 {
                "Zarr v2 store read as Zarr v3 (no zarr.json)".into()
            } else {
                "location: no zarr.json found, not a Zarr v3 store".into()
            },
        });
    };
    let size = root_doc.len() as u64;
    let task_url = url.clone();
    let doc = root_doc.clone();
    let consolidated = tokio::task::spawn_blocking(move || consolidated(&task_url, &doc))
        .await
        .map_err(|e| ScanError::Internal(format!("Zarr metadata task failed: {e}")))??;
    let (documents, source_size) = match consolidated {
        Some(documents) => (documents, size),
        None => {
            let walk = Walk {
                out: vec![(ROOT_DOCUMENT.to_string(), root_doc)],
                budget: MAX_METADATA_BYTES - size,
            };
            let listed = walk_children(&root, walk, Layout::V3).await?;
            (Documents::Listed(listed), 0)
        }
    };
    let task_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = match documents {
            Documents::Parsed(m) => m,
            Documents::Listed(files) => files
                .into_iter()
                .map(|(key, bytes)| {
                    parse_json(&bytes)
                        .map(|v| (key.clone(), v))
                        .map_err(|e| corrupt(&task_url, format!("{key} is not valid JSON: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut dataset = from_documents(&task_url, metadata, Layout::V3)?;
        dataset.source_size = source_size;
        Ok(dataset)
    })
    .await
    .map_err(|e| ScanError::Internal(format!("Zarr metadata task failed: {e}")))?
}

enum Documents {
    /// `(key, document)` from the root's inline consolidated metadata.
    Parsed(Vec<(String, Value)>),
    /// `(key, bytes)` of every `zarr.json` found by walking.
    Listed(Vec<(String, Bytes)>),
}

/// The nodes the root document lists in its inline consolidated metadata, keyed as a walk
/// would find them (`path/zarr.json`); `None` when it has none.
fn consolidated(url: &str, bytes: &[u8]) -> Result<Option<Documents>, ScanError> {
    let mut root =
        parse_json(bytes).map_err(|e| corrupt(url, format!("zarr.json is not valid JSON: {e}")))?;
    let Some(object) = root.as_object_mut() else {
        return Err(corrupt(url, "zarr.json is not a JSON object".into()));
    };
    let inline = match object.remove("consolidated_metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            match c.get("kind").and_then(Value::as_str) {
                Some("inline") => {}
                other => {
                    return Err(ScanError::Unsupported {
                        url: url.to_string(),
                        what: format!("consolidated metadata of kind {other:?} (known: inline)"),
                    });
                }
            }
            match c.get("metadata") {
                Some(Value::Object(m)) => Some(m.clone()),
                _ => {
                    return Err(corrupt(
                        url,
                        "consolidated_metadata has no 'metadata' object".into(),
                    ));
                }
            }
        }
        Some(_) => {
            return Err(corrupt(
                url,
                "consolidated_metadata is not a JSON object".into(),
            ));
        }
    };
    let Some(nodes) = inline else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(nodes.len() + 1);
    out.push((ROOT_DOCUMENT.to_string(), root));
    for (path, mut doc) in nodes {
        // Nested groups repeat their part of the tree: the root's copy is the whole of it.
        if let Some(o) = doc.as_object_mut() {
            o.remove("consolidated_metadata");
        }
        out.push((format!("{}/{ROOT_DOCUMENT}", path.trim_matches('/')), doc));
    }
    Ok(Some(Documents::Parsed(out)))
}

/// True when a `zarr.json` document is a group's (the walk lists only groups' folders).
pub(crate) fn is_group_document(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct NodeType {
        node_type: String,
    }
    serde_json::from_slice::<NodeType>(bytes).is_ok_and(|n| n.node_type == "group")
}

/// A group document, checked against the specification by zarrs' group type.
pub(crate) fn check_group(url: &str, path: &str, doc: &Value) -> Result<(), ScanError> {
    let name = if path.is_empty() {
        "the root group"
    } else {
        path
    };
    match doc.get("zarr_format").and_then(Value::as_u64) {
        Some(3) => {}
        Some(v) => {
            return Err(ScanError::Unsupported {
                url: url.to_string(),
                what: format!("group '{name}' of zarr_format {v} inside a Zarr v3 store"),
            });
        }
        None => {
            return Err(corrupt(
                url,
                format!("{name}: zarr.json has no zarr_format"),
            ));
        }
    }
    let group: GroupMetadataV3 = serde_json::from_value(doc.clone())
        .map_err(|e| corrupt(url, format!("{name}: not a Zarr v3 group document: {e}")))?;
    if let Some((field, _)) = group
        .additional_fields
        .iter()
        .find(|(k, f)| f.must_understand() && k.as_str() != "consolidated_metadata")
    {
        return Err(ScanError::Unsupported {
            url: url.to_string(),
            what: format!("{name}: field '{field}' that readers must understand"),
        });
    }
    Ok(())
}

/// One array from its `zarr.json`. The outer error is a corrupt store; the inner one a
/// reason to refuse just this array.
pub(crate) fn array(
    url: &str,
    path: &str,
    name: &str,
    doc: &Value,
    attrs: Option<&Value>,
) -> Result<Result<Array, String>, ScanError> {
    // zarrs' message for a missing field names none: say which one is missing.
    const REQUIRED: [&str; 6] = [
        "shape",
        "data_type",
        "chunk_grid",
        "chunk_key_encoding",
        "fill_value",
        "codecs",
    ];
    if let Some(missing) = REQUIRED.iter().find(|k| doc.get(**k).is_none()) {
        return Ok(Err(format!("the array document has no '{missing}'")));
    }
    let meta: ArrayMetadataV3 = match serde_json::from_value(doc.clone()) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("not a Zarr v3 array document: {e}"))),
    };
    let attributes = attributes(url, path, attrs, true)?;
    Ok(describe(&meta).map(|mut a| {
        a.name = name.to_string();
        a.attributes = attributes;
        a
    }))
}

fn describe(meta: &ArrayMetadataV3) -> Result<Array, String> {
    if let Some(t) = meta.storage_transformers.first() {
        return Err(format!(
            "storage transformer '{}' is not supported",
            t.name()
        ));
    }
    if let Some((field, _)) = meta
        .additional_fields
        .iter()
        .find(|(_, f)| f.must_understand())
    {
        return Err(format!("field '{field}' that readers must understand"));
    }
    let shape = meta.shape.clone();
    let chunk_shape = regular_chunks(&meta.chunk_grid, shape.len())?;
    let mut order = None;
    let codecs = codecs(&meta.codecs, &mut order)?;
    let dtype = data_type(&meta.data_type, order.unwrap_or(ByteOrder::Little))?;
    let fill_value = fill_value(&meta.fill_value, &dtype);
    let dimensions = match &meta.dimension_names {
        Some(names) if names.len() == shape.len() => names
            .iter()
            .enumerate()
            .map(|(i, n)| n.clone().unwrap_or_else(|| format!("dim_{i}")))
            .collect(),
        Some(names) => {
            return Err(format!(
                "{} dimension names for {} dimensions",
                names.len(),
                shape.len()
            ));
        }
        None => (0..shape.len()).map(|i| format!("dim_{i}")).collect(),
    };
    Ok(Array {
        name: String::new(),
        dtype,
        manifest: ChunkManifest::new(shape.len()),
        shape,
        chunk_shape,
        dimensions,
        codecs,
        fill_value,
        attributes: Default::default(),
        materialized: None,
        coordinate_values: None,
        grid_extent: None,
    })
}

fn configuration(m: &MetadataV3) -> Value {
    m.configuration()
        .map_or(Value::Object(Default::default()), |c: &Configuration| {
            Value::Object((**c).clone())
        })
}

/// The chunk shape of a `regular` grid (the only grid of the core specification).
fn regular_chunks(grid: &MetadataV3, rank: usize) -> Result<Vec<u64>, String> {
    if grid.name() != "regular" {
        return Err(format!("chunk grid '{}' is not supported", grid.name()));
    }
    let config = configuration(grid);
    let chunks = crate::zarr::u64_list(config.get("chunk_shape"))
        .ok_or("the regular chunk grid has no list of chunk_shape integers")?;
    if chunks.len() != rank {
        return Err(format!(
            "chunk shape {chunks:?} does not match the array's {rank} dimensions"
        ));
    }
    if chunks.contains(&0) {
        return Err(format!("chunk shape {chunks:?} has a zero extent"));
    }
    Ok(chunks)
}

/// The codecs in encoding order; the `bytes` codec gives the byte order (inside a shard
/// too) and is not itself a model codec.
fn codecs(list: &[MetadataV3], order: &mut Option<ByteOrder>) -> Result<Vec<Codec>, String> {
    let mut out = Vec::new();
    for c in list {
        let config = configuration(c);
        let u32_of = |key: &str, default: u32| {
            config
                .get(key)
                .and_then(Value::as_u64)
                .map_or(default, |v| v.min(u32::MAX as u64) as u32)
        };
        match c.name() {
            "bytes" => {
                *order = match config.get("endian").and_then(Value::as_str) {
                    Some("little") => Some(ByteOrder::Little),
                    Some("big") => Some(ByteOrder::Big),
                    None => None,
                    Some(e) => return Err(format!("bytes codec with endian '{e}'")),
                };
            }
            "sharding_indexed" => {
                // The byte order of the inner chunks; the shard stays one opaque codec.
                let inner: Vec<MetadataV3> = config
                    .get("codecs")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| format!("sharding_indexed codecs: {e}"))?
                    .unwrap_or_default();
                codecs(&inner, order)?;
                out.push(generic(c, config));
            }
            "blosc" => out.push(Codec::Blosc {
                cname: config
                    .get("cname")
                    .and_then(Value::as_str)
                    .unwrap_or("lz4")
                    .to_string(),
                clevel: u32_of("clevel", 5),
                shuffle: match config.get("shuffle").and_then(Value::as_str) {
                    Some("noshuffle") => 0,
                    Some("shuffle") | None => 1,
                    Some("bitshuffle") => 2,
                    Some(s) => return Err(format!("blosc shuffle '{s}' is not known")),
                },
                blocksize: u32_of("blocksize", 0),
            }),
            "zstd" => out.push(Codec::Zstd {
                level: config
                    .get("level")
                    .and_then(Value::as_i64)
                    .map_or(0, |l| l.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
            }),
            "vlen-utf8" => out.push(Codec::VlenUtf8),
            "numcodecs.zlib" => out.push(Codec::Zlib {
                level: u32_of("level", 1),
            }),
            "numcodecs.shuffle" => out.push(Codec::Shuffle {
                element_size: u32_of("elementsize", 1),
            }),
            _ => out.push(generic(c, config)),
        }
    }
    Ok(out)
}

fn generic(c: &MetadataV3, configuration: Value) -> Codec {
    Codec::ZarrV3 {
        name: c.name().to_string(),
        configuration,
    }
}

/// A Zarr v3 data type as a model type; `order` comes from the `bytes` codec.
fn data_type(t: &MetadataV3, order: ByteOrder) -> Result<DataType, String> {
    let int = |bytes: u8, signed: bool| DataType::Int {
        bytes,
        signed,
        order: if bytes == 1 {
            ByteOrder::NotApplicable
        } else {
            order
        },
    };
    let float = |bytes: u8| DataType::Float { bytes, order };
    Ok(match t.name() {
        "bool" => DataType::Bool,
        "int8" => int(1, true),
        "int16" => int(2, true),
        "int32" => int(4, true),
        "int64" => int(8, true),
        "uint8" => int(1, false),
        "uint16" => int(2, false),
        "uint32" => int(4, false),
        "uint64" => int(8, false),
        "float16" => float(2),
        "float32" => float(4),
        "float64" => float(8),
        // zarr-python 3's variable-length and fixed-width text: readers see strings.
        "string" | "fixed_length_utf32" => DataType::VarString,
        name @ ("complex64" | "complex128") => {
            return Err(format!("data type '{name}' (complex) is not supported"));
        }
        name => return Err(format!("data type '{name}' is not supported")),
    })
}

fn fill_value(v: &FillValueMetadataV3, dtype: &DataType) -> Option<FillValue> {
    match dtype {
        DataType::Float { bytes: 4, .. } => v
            .as_f32()
            .map(f64::from)
            .or_else(|| v.as_f64())
            .map(FillValue::Float),
        DataType::Float { .. } => v.as_f64().map(FillValue::Float),
        DataType::Int { signed: true, .. } => v.as_i64().map(FillValue::Int),
        DataType::Int { signed: false, .. } => v.as_u64().map(FillValue::UInt),
        DataType::Bool => v.as_bool().map(|b| FillValue::UInt(u64::from(b))),
        DataType::VarString => v.as_str().map(|s| FillValue::Bytes(s.as_bytes().to_vec())),
        DataType::FixedBytes(_) | DataType::Compound { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use serde_json::json;
    use zarrstac_model::SourceFormat;

    use super::*;

    fn memory_store() -> Location {
        Location {
            store: Arc::new(InMemory::new()),
            path: "s.zarr".into(),
            url: "memory:///s.zarr".into(),
            local_path: None,
        }
    }

    async fn put(loc: &Location, key: &str, doc: &Value) {
        let at = loc.join(key);
        loc.store
            .put(&at.path, serde_json::to_vec(doc).unwrap().into())
            .await
            .unwrap();
    }

    fn band(endian: &str) -> Value {
        json!({
            "zarr_format": 3, "node_type": "array", "shape": [20, 30],
            "data_type": "uint16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [20, 30]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [10, 10],
                "codecs": [{"name": "bytes", "configuration": {"endian": endian}},
                           {"name": "zstd", "configuration": {"level": 3, "checksum": false}}],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                 {"name": "crc32c"}],
                "index_location": "end"}}],
            "attributes": {"units": "1", "scale_factor": 0.0001},
            "dimension_names": ["y", "x"]
        })
    }

    fn group(attrs: Value) -> Value {
        json!({"zarr_format": 3, "node_type": "group", "attributes": attrs})
    }

    #[tokio::test]
    async fn consolidated_and_walked_stores_give_the_same_tree() {
        let walked = memory_store();
        put(&walked, "zarr.json", &group(json!({"title": "t"}))).await;
        put(
            &walked,
            "m/zarr.json",
            &group(json!({"proj:code": "EPSG:32632"})),
        )
        .await;
        put(&walked, "m/b02/zarr.json", &band("big")).await;
        let bad = json!({"zarr_format": 3, "node_type": "array", "shape": [4],
            "data_type": "complex64",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": [0, 0],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]});
        put(&walked, "m/z/zarr.json", &bad).await;
        let a = scan_zarr_v3(walked).await.unwrap();
        assert_eq!(a.format, SourceFormat::ZarrV3);
        assert_eq!(a.source_size, 0);

        let consolidated = memory_store();
        let mut root = group(json!({"title": "t"}));
        root["consolidated_metadata"] = json!({"kind": "inline", "must_understand": false,
            "metadata": {"m": group(json!({"proj:code": "EPSG:32632"})),
                         "m/b02": band("big"), "m/z": bad}});
        put(&consolidated, "zarr.json", &root).await;
        let b = scan_zarr_v3(consolidated).await.unwrap();
        assert!(b.source_size > 0);

        for d in [&a, &b] {
            let m = &d.root.groups[0];
            assert_eq!(m.name, "m");
            let b02 = &m.arrays[0];
            assert_eq!(b02.name, "b02");
            assert_eq!(b02.shape, [20, 30]);
            assert_eq!(b02.dimensions, ["y", "x"]);
            // The byte order is the inner chunks' (inside the shard).
            assert_eq!(
                b02.dtype,
                DataType::Int {
                    bytes: 2,
                    signed: false,
                    order: ByteOrder::Big
                }
            );
            assert!(
                matches!(&b02.codecs[..], [Codec::ZarrV3 { name, .. }] if name == "sharding_indexed")
            );
            assert_eq!(d.refused.len(), 1);
            assert_eq!(d.refused[0].path, "m/z");
            assert!(d.refused[0].reason.contains("complex"), "{:?}", d.refused);
        }
        assert_eq!(
            format!("{:?}", a.root.groups),
            format!("{:?}", b.root.groups)
        );
    }

    #[tokio::test]
    async fn invalid_documents_are_refused_with_the_reason() {
        let s = memory_store();
        put(&s, "zarr.json", &group(json!({}))).await;
        let mut no_grid = band("little");
        no_grid.as_object_mut().unwrap().remove("chunk_grid");
        put(&s, "a/zarr.json", &no_grid).await;
        let mut rect = band("little");
        rect["chunk_grid"] = json!({"name": "rectilinear", "configuration": {}});
        put(&s, "b/zarr.json", &rect).await;
        let d = scan_zarr_v3(s).await.unwrap();
        let reasons: Vec<&str> = d.refused.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("chunk_grid"), "{reasons:?}");
        assert!(reasons[1].contains("rectilinear"), "{reasons:?}");

        let v2 = memory_store();
        put(&v2, ".zgroup", &json!({"zarr_format": 2})).await;
        let e = scan_zarr_v3(v2).await.unwrap_err().to_string();
        assert!(e.contains("Zarr v2 store"), "{e}");

        let wrong = memory_store();
        put(
            &wrong,
            "zarr.json",
            &json!({"zarr_format": 3, "node_type": "array"}),
        )
        .await;
        assert!(scan_zarr_v3(wrong).await.is_err());
    }
}
