use indexmap::IndexMap;

/// Attributes in the order the source lists them.
pub type Attributes = IndexMap<String, AttrValue>;

/// An attribute value. Numeric vectors of length one are scalars to readers such as
/// xarray; the writers decide how to render that.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AttrValue {
    String(String),
    Strings(Vec<String>),
    Int(Vec<i64>),
    UInt(Vec<u64>),
    /// Floats with the precision they had in the source (32 or 64 bits).
    Float {
        values: Vec<f64>,
        bits: u8,
    },
    /// Anything structured (compound attributes, nested metadata of Zarr stores).
    // As JSON text when serialized: compact binary formats cannot hold a self-describing
    // value.
    Json(#[serde(with = "json_text")] serde_json::Value),
}

impl AttrValue {
    /// The value as a single number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(v) if v.len() == 1 => Some(v[0] as f64),
            AttrValue::UInt(v) if v.len() == 1 => Some(v[0] as f64),
            AttrValue::Float { values, .. } if values.len() == 1 => Some(values[0]),
            _ => None,
        }
    }

    /// The value as text, when it is a single string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => Some(s),
            AttrValue::Strings(v) if v.len() == 1 => Some(&v[0]),
            _ => None,
        }
    }
}

/// Serializes a JSON value as its text, so that formats which are not self-describing
/// (the stored dataset manifests) can hold it.
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}
