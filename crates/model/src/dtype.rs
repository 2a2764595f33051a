/// Byte order of a multi-byte element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
    /// Single bytes, strings: order does not apply.
    NotApplicable,
}

/// Element type of an array.
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    Bool,
    Int {
        bytes: u8,
        signed: bool,
        order: ByteOrder,
    },
    Float {
        bytes: u8,
        order: ByteOrder,
    },
    /// Fixed-length byte strings (`S<n>`); NetCDF `char` is `FixedBytes(1)`.
    FixedBytes(u32),
    /// Variable-length UTF-8 strings.
    VarString,
    /// A record of named fields.
    Compound {
        size: u32,
        fields: Vec<CompoundField>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompoundField {
    pub name: String,
    pub offset: u32,
    pub dtype: DataType,
}

impl DataType {
    /// Bytes per element, or `None` for variable-length types.
    pub fn item_size(&self) -> Option<u64> {
        match self {
            DataType::Bool => Some(1),
            DataType::Int { bytes, .. } | DataType::Float { bytes, .. } => Some(*bytes as u64),
            DataType::FixedBytes(n) => Some(*n as u64),
            DataType::VarString => None,
            DataType::Compound { size, .. } => Some(*size as u64),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, DataType::Int { .. } | DataType::Float { .. })
    }
}

/// The fill value of an array.
#[derive(Debug, Clone, PartialEq)]
pub enum FillValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Raw bytes of one element (strings, compounds).
    Bytes(Vec<u8>),
}
