//! kerchunk JSON v1: `{"version": 1, "refs": {key: value}}` where a value is the
//! JSON text of a Zarr v2 metadata document, `[url, offset, length]`, or
//! `"base64:..."` for inline chunk bytes.

use std::fmt::Write as _;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zarrstac_model::{
    Array, AttrValue, Attributes, ByteOrder, ChunkRef, Codec, DataType, Dataset, FillValue, Group,
    join_path,
};

#[derive(Debug, thiserror::Error)]
pub enum KerchunkError {
    #[error("writing references failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("array '{path}': {reason}")]
    Unrepresentable { path: String, reason: String },
}

/// Writes the references of `dataset` to `out`. Output is deterministic: the same
/// dataset always gives the same bytes.
pub fn write_kerchunk<W: Write>(dataset: &Dataset, out: W) -> Result<(), KerchunkError> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    write_document(&mut w, dataset)?;
    w.flush()?;
    Ok(())
}

fn write_document<W: Write>(w: &mut W, dataset: &Dataset) -> Result<(), KerchunkError> {
    w.write_all(b"{\"version\":1,\"refs\":{")?;
    let mut first = true;
    write_group(w, &dataset.root, "", &mut first)?;
    w.write_all(b"}}\n")?;
    Ok(())
}

/// The references of `dataset` as bytes, written into a buffer sized for its chunks
/// up front (combined datasets' references run to megabytes).
pub fn kerchunk_bytes(dataset: &Dataset) -> Result<Vec<u8>, KerchunkError> {
    // About what one chunk's entry takes, with its key and URL.
    const ENTRY: usize = 128;
    let chunks: usize = dataset.arrays().iter().map(|(_, a)| a.manifest.len()).sum();
    let mut out = Vec::with_capacity(16 * 1024 + chunks.saturating_mul(ENTRY));
    write_document(&mut out, dataset)?;
    Ok(out)
}

fn key(prefix: &str, name: &str) -> String {
    join_path(prefix, name)
}

fn write_entry_str<W: Write>(
    w: &mut W,
    first: &mut bool,
    k: &str,
    value: &str,
) -> std::io::Result<()> {
    if !*first {
        w.write_all(b",\n")?;
    }
    *first = false;
    serde_json::to_writer(&mut *w, k)?;
    w.write_all(b":")?;
    serde_json::to_writer(&mut *w, value)?;
    Ok(())
}

fn write_group<W: Write>(
    w: &mut W,
    group: &Group,
    prefix: &str,
    first: &mut bool,
) -> Result<(), KerchunkError> {
    write_entry_str(w, first, &key(prefix, ".zgroup"), "{\"zarr_format\":2}")?;
    if !group.attributes.is_empty() {
        write_entry_str(
            w,
            first,
            &key(prefix, ".zattrs"),
            &attrs_json(&group.attributes, None),
        )?;
    }
    for array in &group.arrays {
        write_array(w, array, &key(prefix, &array.name), first)?;
    }
    for child in &group.groups {
        write_group(w, child, &key(prefix, &child.name), first)?;
    }
    Ok(())
}

fn write_array<W: Write>(
    w: &mut W,
    array: &Array,
    path: &str,
    first: &mut bool,
) -> Result<(), KerchunkError> {
    let unrep = |reason: String| KerchunkError::Unrepresentable {
        path: path.to_string(),
        reason,
    };
    write_entry_str(
        w,
        first,
        &format!("{path}/.zarray"),
        &zarray_json(array).map_err(unrep)?,
    )?;
    write_entry_str(
        w,
        first,
        &format!("{path}/.zattrs"),
        &attrs_json(&array.attributes, Some(&array.dimensions)),
    )?;
    // Escaped once per array, not once per chunk: a variable can have millions.
    let escaped_prefix = {
        let quoted = serde_json::to_string(&format!("{path}/")).map_err(std::io::Error::from)?;
        quoted[..quoted.len() - 1].to_string() // without the closing quote
    };
    let escaped_urls: Vec<String> = array
        .manifest
        .paths()
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::from)?;
    let mut line = String::with_capacity(escaped_prefix.len() + 128);
    let mut num = itoa::Buffer::new();
    for (index, chunk) in array.manifest.iter() {
        line.clear();
        line.push_str(",\n");
        line.push_str(&escaped_prefix);
        if index.is_empty() {
            line.push('0');
        }
        for (i, n) in index.iter().enumerate() {
            if i > 0 {
                line.push('.');
            }
            line.push_str(num.format(*n));
        }
        line.push_str("\":");
        match chunk {
            ChunkRef::Range {
                path: p,
                offset,
                length,
            } => {
                let url = escaped_urls
                    .get(*p as usize)
                    .ok_or_else(|| unrep(format!("chunk refers to unknown path number {p}")))?;
                line.push('[');
                line.push_str(url);
                line.push(',');
                line.push_str(num.format(*offset));
                line.push(',');
                line.push_str(num.format(*length));
                line.push(']');
                w.write_all(line.as_bytes())?;
            }
            ChunkRef::Inline(bytes) => {
                line.push_str("\"base64:");
                w.write_all(line.as_bytes())?;
                w.write_all(B64.encode(bytes).as_bytes())?;
                w.write_all(b"\"")?;
            }
        }
    }
    Ok(())
}

/// The NumPy type string of a data type, as Zarr v2 `dtype` takes it.
pub fn numpy_dtype(dtype: &DataType) -> serde_json::Value {
    let order = |o: &ByteOrder| match o {
        ByteOrder::Little => '<',
        ByteOrder::Big => '>',
        ByteOrder::NotApplicable => '|',
    };
    match dtype {
        DataType::Bool => "|b1".into(),
        DataType::Int {
            bytes,
            signed,
            order: o,
        } => format!(
            "{}{}{bytes}",
            if *bytes == 1 { '|' } else { order(o) },
            if *signed { 'i' } else { 'u' }
        )
        .into(),
        DataType::Float { bytes, order: o } => format!("{}f{bytes}", order(o)).into(),
        DataType::FixedBytes(n) => format!("|S{n}").into(),
        DataType::VarString => "|O".into(),
        DataType::Compound { fields, .. } => serde_json::Value::Array(
            fields
                .iter()
                .map(|f| serde_json::json!([f.name, numpy_dtype(&f.dtype)]))
                .collect(),
        ),
    }
}

/// The numcodecs configuration of a codec; an error for a codec Zarr v2 cannot name.
fn codec_json(codec: &Codec) -> Result<serde_json::Value, String> {
    use serde_json::json;
    Ok(match codec {
        Codec::Zlib { level } => json!({"id": "zlib", "level": level}),
        Codec::Shuffle { element_size } => json!({"id": "shuffle", "elementsize": element_size}),
        Codec::Fletcher32 => json!({"id": "fletcher32"}),
        Codec::Blosc {
            cname,
            clevel,
            shuffle,
            blocksize,
        } => {
            json!({"id": "blosc", "cname": cname, "clevel": clevel, "shuffle": shuffle, "blocksize": blocksize})
        }
        Codec::Zstd { level } => json!({"id": "zstd", "level": level}),
        Codec::Bitshuffle {
            element_size,
            block_size,
        } => json!({"id": "bitshuffle", "elementsize": element_size, "blocksize": block_size}),
        Codec::Lz4Hdf5 => json!({"id": "imagecodecs_lz4h5"}),
        Codec::VlenUtf8 => json!({"id": "vlen-utf8"}),
        Codec::ZarrV3 { name, .. } => {
            return Err(format!(
                "the Zarr v3 codec '{name}' has no Zarr v2 (numcodecs) equivalent"
            ));
        }
    })
}

fn fill_json(fill: &Option<FillValue>, dtype: &DataType) -> serde_json::Value {
    match fill {
        None => serde_json::Value::Null,
        Some(FillValue::Int(i)) => match dtype {
            DataType::Float { .. } => float_json(*i as f64),
            _ => (*i).into(),
        },
        Some(FillValue::UInt(u)) => match dtype {
            DataType::Float { .. } => float_json(*u as f64),
            _ => (*u).into(),
        },
        Some(FillValue::Float(f)) => match dtype {
            DataType::Int { signed: true, .. } => (*f as i64).into(),
            DataType::Int { signed: false, .. } => (*f as u64).into(),
            _ => float_json(*f),
        },
        Some(FillValue::Bytes(b)) => match dtype {
            DataType::FixedBytes(_) | DataType::Compound { .. } => B64.encode(b).into(),
            _ => serde_json::Value::Null,
        },
    }
}

/// Zarr v2 spells non-finite fill values as strings.
fn float_json(f: f64) -> serde_json::Value {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
    }
}

pub(crate) fn zarray_json(array: &Array) -> Result<String, String> {
    if array.chunk_shape.len() != array.shape.len() {
        return Err(format!(
            "chunk shape {:?} does not match shape {:?}",
            array.chunk_shape, array.shape
        ));
    }
    let codecs: Vec<serde_json::Value> = array
        .codecs
        .iter()
        .map(codec_json)
        .collect::<Result<_, _>>()?;
    let doc = serde_json::json!({
        "chunks": array.chunk_shape,
        "compressor": null,
        "dtype": numpy_dtype(&array.dtype),
        "fill_value": fill_json(&array.fill_value, &array.dtype),
        "filters": if codecs.is_empty() { serde_json::Value::Null } else { codecs.into() },
        "order": "C",
        "shape": array.shape,
        "zarr_format": 2,
    });
    Ok(doc.to_string())
}

/// Attributes as JSON text. Non-finite floats are written as `NaN`/`Infinity`, which
/// Python's JSON reader (and so zarr and xarray) accepts where strict JSON has no
/// spelling; the enclosing references file stays strict JSON because this text is
/// itself a string in it.
pub fn attrs_json(attrs: &Attributes, dimensions: Option<&[String]>) -> String {
    let mut s = String::from("{");
    let mut first = true;
    for (k, v) in attrs {
        if k == "_ARRAY_DIMENSIONS" && dimensions.is_some() {
            continue;
        }
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(&serde_json::to_string(k).unwrap_or_default());
        s.push(':');
        attr_value_json(v, &mut s);
    }
    if let Some(dims) = dimensions {
        if !first {
            s.push(',');
        }
        s.push_str("\"_ARRAY_DIMENSIONS\":");
        s.push_str(&serde_json::to_string(dims).unwrap_or_default());
    }
    s.push('}');
    s
}

fn push_float(f: f64, bits: u8, s: &mut String) {
    if f.is_nan() {
        s.push_str("NaN");
    } else if f.is_infinite() {
        s.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if bits == 32 {
        // Shortest text that reads back as the same single-precision value.
        let short = format!("{:?}", f as f32);
        s.push_str(&short);
    } else {
        s.push_str(&serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string()));
    }
}

/// An attribute value as the JSON text written into `.zattrs`.
pub fn attr_text(v: &AttrValue) -> String {
    let mut s = String::new();
    attr_value_json(v, &mut s);
    s
}

fn attr_value_json(v: &AttrValue, s: &mut String) {
    fn list<T>(items: &[T], s: &mut String, mut one: impl FnMut(&T, &mut String)) {
        if items.len() == 1 {
            one(&items[0], s);
            return;
        }
        s.push('[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            one(x, s);
        }
        s.push(']');
    }
    match v {
        AttrValue::String(x) => s.push_str(&serde_json::to_string(x).unwrap_or_default()),
        AttrValue::Strings(xs) => list(xs, s, |x, s| {
            s.push_str(&serde_json::to_string(x).unwrap_or_default())
        }),
        AttrValue::Int(xs) => list(xs, s, |x, s| {
            let _ = write!(s, "{x}");
        }),
        AttrValue::UInt(xs) => list(xs, s, |x, s| {
            let _ = write!(s, "{x}");
        }),
        AttrValue::Float { values, bits } => list(values, s, |x, s| push_float(*x, *bits, s)),
        AttrValue::Json(j) => s.push_str(&j.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zarrstac_model::{ChunkManifest, SourceFormat};

    fn sample() -> Dataset {
        let mut manifest = ChunkManifest::new(2);
        let p = manifest.path_id("file:///data/a.nc");
        manifest
            .push(
                &[0, 1],
                ChunkRef::Range {
                    path: p,
                    offset: 100,
                    length: 50,
                },
            )
            .unwrap();
        manifest
            .push(
                &[0, 0],
                ChunkRef::Inline(std::sync::Arc::from(&b"\x01\x02"[..])),
            )
            .unwrap();
        let mut attrs = Attributes::new();
        attrs.insert(
            "scale_factor".into(),
            AttrValue::Float {
                values: vec![0.01f32 as f64],
                bits: 32,
            },
        );
        attrs.insert(
            "missing_value".into(),
            AttrValue::Float {
                values: vec![f64::NAN],
                bits: 64,
            },
        );
        attrs.insert("valid_range".into(), AttrValue::Int(vec![0, 10]));
        let array = Array {
            name: "t".into(),
            dtype: DataType::Int {
                bytes: 2,
                signed: true,
                order: ByteOrder::Big,
            },
            shape: vec![3, 4],
            chunk_shape: vec![3, 2],
            dimensions: vec!["y".into(), "x".into()],
            codecs: vec![Codec::Shuffle { element_size: 2 }, Codec::Zlib { level: 4 }],
            fill_value: Some(FillValue::Int(-32767)),
            attributes: attrs,
            manifest,
            materialized: None,
            coordinate_values: None,
            grid_extent: None,
        };
        let mut root = Group::new("");
        root.attributes
            .insert("title".into(), AttrValue::String("x \"q\"".into()));
        root.arrays.push(array);
        Dataset {
            source_url: "file:///data/a.nc".into(),
            source_size: 1000,
            format: SourceFormat::NetCdf4,
            root,
            refused: vec![],
        }
    }

    #[test]
    fn writes_kerchunk_v1_with_zarr_v2_keys() {
        let mut out = Vec::new();
        write_kerchunk(&sample(), &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["version"], 1);
        let refs = &doc["refs"];
        assert_eq!(refs[".zgroup"], "{\"zarr_format\":2}");
        let zarray: serde_json::Value =
            serde_json::from_str(refs["t/.zarray"].as_str().unwrap()).unwrap();
        assert_eq!(zarray["dtype"], ">i2");
        assert_eq!(zarray["chunks"], serde_json::json!([3, 2]));
        assert_eq!(zarray["fill_value"], -32767);
        assert_eq!(zarray["filters"][0]["id"], "shuffle");
        assert_eq!(zarray["filters"][1]["id"], "zlib");
        assert_eq!(zarray["compressor"], serde_json::Value::Null);
        let zattrs = refs["t/.zattrs"].as_str().unwrap();
        assert!(zattrs.contains("\"scale_factor\":0.01"), "{zattrs}");
        assert!(zattrs.contains("\"missing_value\":NaN"), "{zattrs}");
        assert!(zattrs.contains("\"valid_range\":[0,10]"), "{zattrs}");
        assert!(
            zattrs.ends_with("\"_ARRAY_DIMENSIONS\":[\"y\",\"x\"]}"),
            "{zattrs}"
        );
        assert_eq!(
            refs["t/0.1"],
            serde_json::json!(["file:///data/a.nc", 100, 50])
        );
        assert_eq!(refs["t/0.0"], "base64:AQI=");
        // Deterministic.
        let mut again = Vec::new();
        write_kerchunk(&sample(), &mut again).unwrap();
        assert_eq!(out, again);
    }
}
