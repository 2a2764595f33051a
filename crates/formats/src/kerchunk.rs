//! kerchunk JSON references (version 0 or 1) back into the Dataset model: the metadata
//! documents through the Zarr reader, the chunk keys into manifests. Combining per-file
//! references, and rebuilding a dataset from what is already known about it, start here.

use std::io::Read;
use std::sync::Arc;

use serde_json::Value;
use zarrstac_model::{Array, ChunkManifest, ChunkRef, Codec, Dataset, Group};

use crate::ScanError;

/// Largest references document read (a million chunks take about 70 MB).
pub const MAX_REFERENCES_BYTES: usize = 1 << 30;

fn corrupt(url: &str, detail: impl Into<String>) -> ScanError {
    ScanError::Corrupt {
        url: url.to_string(),
        format: "kerchunk references",
        detail: detail.into(),
    }
}

/// Reads a references document. `url` names it in errors and becomes the dataset's
/// source URL when the chunks point into a single file.
pub fn from_references(url: &str, bytes: &[u8]) -> Result<Dataset, ScanError> {
    if bytes.len() > MAX_REFERENCES_BYTES {
        return Err(corrupt(
            url,
            format!("larger than {MAX_REFERENCES_BYTES} bytes"),
        ));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(url, e.to_string()))?;
    let refs = match doc.get("version").and_then(Value::as_u64) {
        Some(1) => doc.get("refs"),
        Some(v) => return Err(corrupt(url, format!("unknown references version {v}"))),
        None => Some(&doc),
    }
    .and_then(Value::as_object)
    .ok_or_else(|| corrupt(url, "no 'refs' object"))?;
    if doc.get("templates").is_some() || doc.get("gen").is_some() {
        return Err(ScanError::Unsupported {
            url: url.to_string(),
            what: "references with templates or generators".into(),
        });
    }

    let mut metadata = Vec::new();
    let mut chunks: Vec<(&str, &str, &Value)> = Vec::new();
    for (key, value) in refs {
        let (path, last) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
        if last.starts_with(".z") {
            let text = value
                .as_str()
                .ok_or_else(|| corrupt(url, format!("{key} is not a JSON text")))?;
            let parsed = crate::zarr::parse_json(text.as_bytes())
                .map_err(|e| corrupt(url, format!("{key}: {e}")))?;
            metadata.push((key.clone(), parsed));
        } else {
            chunks.push((path, last, value));
        }
    }
    let mut dataset = crate::zarr::from_documents(url, metadata, crate::zarr::Layout::V2)?;

    // Attach chunk references to their arrays.
    let mut by_path: std::collections::HashMap<String, Vec<(&str, &Value)>> = Default::default();
    for (path, index, value) in chunks {
        by_path
            .entry(path.to_string())
            .or_default()
            .push((index, value));
    }
    let mut sources = std::collections::BTreeSet::new();
    attach(url, &mut dataset.root, "", &mut by_path, &mut sources)?;
    if let Some((path, _)) = by_path.iter().next() {
        return Err(corrupt(
            url,
            format!("chunks of '{path}', which has no .zarray"),
        ));
    }
    if sources.len() == 1 {
        dataset.source_url = sources.into_iter().next().unwrap_or_default();
    }
    dataset.format = zarrstac_model::SourceFormat::Zarr;
    Ok(dataset)
}

fn attach(
    url: &str,
    group: &mut Group,
    prefix: &str,
    chunks: &mut std::collections::HashMap<String, Vec<(&str, &Value)>>,
    sources: &mut std::collections::BTreeSet<String>,
) -> Result<(), ScanError> {
    for array in &mut group.arrays {
        let path = zarrstac_model::join_path(prefix, &array.name);
        let Some(list) = chunks.remove(&path) else {
            continue;
        };
        let ndim = array.shape.len();
        let grid = array.chunk_grid();
        let mut manifest = ChunkManifest::with_capacity(ndim, list.len());
        for (index, value) in list {
            let key: Vec<u64> = if ndim == 0 {
                Vec::new()
            } else {
                index
                    .split(['.', '/'])
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|_| corrupt(url, format!("'{path}/{index}' is not a chunk key")))?
            };
            let chunk = match value {
                Value::Array(parts) => match parts.as_slice() {
                    [Value::String(u), off, len] => {
                        let (Some(offset), Some(length)) = (off.as_u64(), len.as_u64()) else {
                            return Err(corrupt(
                                url,
                                format!("'{path}/{index}': offset and length must be integers"),
                            ));
                        };
                        sources.insert(u.clone());
                        ChunkRef::Range {
                            path: manifest.path_id(u),
                            offset,
                            length,
                        }
                    }
                    _ => {
                        return Err(ScanError::Unsupported {
                            url: url.to_string(),
                            what: format!(
                                "'{path}/{index}': whole-file references (no offset and length)"
                            ),
                        });
                    }
                },
                Value::String(s) => match s.strip_prefix("base64:") {
                    Some(b64) => {
                        use base64::Engine;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| corrupt(url, format!("'{path}/{index}': {e}")))?;
                        ChunkRef::Inline(Arc::from(bytes.into_boxed_slice()))
                    }
                    None => ChunkRef::Inline(Arc::from(s.as_bytes())),
                },
                _ => return Err(corrupt(url, format!("'{path}/{index}': not a reference"))),
            };
            manifest
                .push(&key, chunk)
                .map_err(|e| corrupt(url, format!("'{path}': {e}")))?;
        }
        manifest
            .finish(&grid)
            .map_err(|e| corrupt(url, format!("'{path}': {e}")))?;
        array.manifest = manifest;
        if array.wants_coordinate_values() {
            array.coordinate_values = inline_values(array);
        }
    }
    for child in &mut group.groups {
        let p = zarrstac_model::join_path(prefix, &child.name);
        attach(url, child, &p, chunks, sources)?;
    }
    Ok(())
}

/// The values of an array whose chunks are all inline and decodable here (no codec,
/// zlib, shuffle): what a coordinate written into references looks like.
fn inline_values(a: &Array) -> Option<Vec<f64>> {
    let item = a.dtype.item_size()? as usize;
    let chunk_len = a.chunk_shape.first().copied().unwrap_or(1) as usize;
    let mut out = Vec::with_capacity(a.shape.first().copied().unwrap_or(0) as usize);
    for (_, c) in a.manifest.iter() {
        let ChunkRef::Inline(bytes) = c else {
            return None;
        };
        let mut data = bytes.to_vec();
        for codec in a.codecs.iter().rev() {
            data = match codec {
                Codec::Zlib { .. } => {
                    let mut out = Vec::new();
                    flate2::read::ZlibDecoder::new(&data[..])
                        .take((chunk_len * item) as u64 + 1)
                        .read_to_end(&mut out)
                        .ok()?;
                    out
                }
                Codec::Shuffle { element_size } => unshuffle(&data, *element_size as usize),
                _ => return None,
            };
        }
        out.extend(zarrstac_model::decode_numbers(&data, &a.dtype)?);
    }
    out.truncate(a.shape.first().copied().unwrap_or(0) as usize);
    Some(out)
}

fn unshuffle(data: &[u8], size: usize) -> Vec<u8> {
    if size <= 1 || !data.len().is_multiple_of(size) {
        return data.to_vec();
    }
    let n = data.len() / size;
    let mut out = vec![0u8; data.len()];
    for b in 0..size {
        for i in 0..n {
            out[i * size + b] = data[b * n + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let text = r#"{"version":1,"refs":{
            ".zgroup":"{\"zarr_format\":2}",
            ".zattrs":"{\"title\":\"t\"}",
            "time/.zarray":"{\"chunks\":[2],\"compressor\":null,\"dtype\":\"<f8\",\"fill_value\":null,\"filters\":null,\"order\":\"C\",\"shape\":[2],\"zarr_format\":2}",
            "time/.zattrs":"{\"units\":\"days since 2000-01-01\",\"_ARRAY_DIMENSIONS\":[\"time\"]}",
            "time/0":"base64:AAAAAAAAAAAAAAAAAADwPw==",
            "tas/.zarray":"{\"chunks\":[1,3],\"compressor\":null,\"dtype\":\"<f4\",\"fill_value\":\"NaN\",\"filters\":[{\"id\":\"zlib\",\"level\":4}],\"order\":\"C\",\"shape\":[2,3],\"zarr_format\":2}",
            "tas/.zattrs":"{\"_ARRAY_DIMENSIONS\":[\"time\",\"x\"]}",
            "tas/0.0":["file:///data/a.nc",100,50],
            "tas/1.0":["file:///data/a.nc",150,50]
        }}"#;
        let d = from_references("file:///refs/a.json", text.as_bytes()).unwrap();
        assert_eq!(d.source_url, "file:///data/a.nc");
        let time = d.root.arrays.iter().find(|a| a.name == "time").unwrap();
        assert_eq!(time.coordinate_values.as_deref(), Some(&[0.0, 1.0][..]));
        let tas = d.root.arrays.iter().find(|a| a.name == "tas").unwrap();
        assert_eq!(tas.manifest.len(), 2);
        assert_eq!(tas.dimensions, vec!["time", "x"]);
        assert!(from_references("u", b"{\"version\":1,\"refs\":{\"x/0\":[\"f\",1,2]}}").is_err());
        assert!(from_references("u", b"[1]").is_err());
    }
}
