/// Byte order of a multi-byte element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ByteOrder {
    Little,
    Big,
    /// Single bytes, strings: order does not apply.
    NotApplicable,
}

/// Element type of an array.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FillValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Raw bytes of one element (strings, compounds).
    Bytes(Vec<u8>),
}

/// Numeric elements of `dtype` stored in `bytes` (in the type's byte order) as `f64`;
/// `None` for non-numeric types or a length that is not a whole number of elements.
pub fn decode_numbers(bytes: &[u8], dtype: &DataType) -> Option<Vec<f64>> {
    let (size, order) = match dtype {
        DataType::Int { bytes, order, .. } | DataType::Float { bytes, order } => {
            (*bytes as usize, *order)
        }
        _ => return None,
    };
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return None;
    }
    let big = matches!(order, ByteOrder::Big);
    let mut out = Vec::with_capacity(bytes.len() / size);
    for raw in bytes.chunks_exact(size) {
        let mut b = [0u8; 8];
        if big {
            for (i, x) in raw.iter().rev().enumerate() {
                b[i] = *x;
            }
        } else {
            b[..size].copy_from_slice(raw);
        }
        let v = match dtype {
            DataType::Float { bytes: 4, .. } => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DataType::Float { bytes: 8, .. } => f64::from_le_bytes(b),
            DataType::Float { bytes: 2, .. } => return None,
            DataType::Int { signed: true, .. } => {
                let shift = 64 - 8 * size as u32;
                ((u64::from_le_bytes(b) << shift) as i64 >> shift) as f64
            }
            _ => u64::from_le_bytes(b) as f64,
        };
        out.push(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_byte_orders() {
        let be = DataType::Int {
            bytes: 2,
            signed: true,
            order: ByteOrder::Big,
        };
        assert_eq!(
            decode_numbers(&[0xff, 0xfe, 0x00, 0x02], &be),
            Some(vec![-2.0, 2.0])
        );
        let le = DataType::Float {
            bytes: 4,
            order: ByteOrder::Little,
        };
        assert_eq!(decode_numbers(&1.5f32.to_le_bytes(), &le), Some(vec![1.5]));
        assert_eq!(decode_numbers(&[0, 1, 2], &le), None);
    }
}
