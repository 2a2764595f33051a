use indexmap::IndexMap;

/// Attributes in the order the source lists them.
pub type Attributes = IndexMap<String, AttrValue>;

/// An attribute value. Numeric vectors of length one are scalars to readers such as
/// xarray; the writers decide how to render that.
#[derive(Debug, Clone, PartialEq)]
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
    Json(serde_json::Value),
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
