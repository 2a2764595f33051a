//! HDF5 datatypes and attribute values into the model's types.

use hdf5_reader::error::ByteOrder as H5Order;
use hdf5_reader::messages::attribute::UNREADABLE_TAG;
use hdf5_reader::{Attribute, Datatype, StringSize, VarLenKind};
use zarrstac_model::{AttrValue, ByteOrder, CompoundField, DataType, FillValue};

fn order(o: &H5Order, size: u64) -> ByteOrder {
    if size <= 1 {
        return ByteOrder::NotApplicable;
    }
    match o {
        H5Order::LittleEndian => ByteOrder::Little,
        H5Order::BigEndian => ByteOrder::Big,
    }
}

/// The model type of an HDF5 datatype, or why it has none.
pub(crate) fn convert(dt: &Datatype) -> Result<DataType, String> {
    Ok(match dt {
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } => int_type(*size, *signed, byte_order)?,
        Datatype::Bitfield { size, byte_order } => int_type(*size, false, byte_order)?,
        Datatype::FloatingPoint { size, byte_order } => match size {
            2 | 4 | 8 => DataType::Float {
                bytes: *size,
                order: order(byte_order, *size as u64),
            },
            s => return Err(format!("{s}-byte floating point has no NumPy type")),
        },
        Datatype::String {
            size: StringSize::Fixed(n),
            ..
        } => DataType::FixedBytes(*n),
        Datatype::String {
            size: StringSize::Variable,
            ..
        } => DataType::VarString,
        Datatype::VarLen {
            kind: VarLenKind::String,
            ..
        } => DataType::VarString,
        Datatype::VarLen { .. } => {
            return Err(
                "variable-length sequences (ragged arrays) have no Zarr v2 representation".into(),
            );
        }
        // Enumerations are stored as their integer base type; the member names are kept
        // as attributes by the caller.
        Datatype::Enum { base, .. } => convert(base)?,
        Datatype::Compound { size, fields } => {
            let mut out = Vec::with_capacity(fields.len());
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_by_key(|f| f.byte_offset);
            let mut next = 0u32;
            for f in sorted {
                let dtype = convert(&f.datatype)
                    .map_err(|e| format!("compound field '{}': {e}", f.name))?;
                if matches!(dtype, DataType::VarString | DataType::Compound { .. }) {
                    return Err(format!(
                        "compound field '{}' is variable-length or nested; only flat fixed-size records are supported",
                        f.name
                    ));
                }
                if f.byte_offset != next {
                    return Err(format!(
                        "compound field '{}' starts at byte {} after padding; padded records have no Zarr v2 dtype",
                        f.name, f.byte_offset
                    ));
                }
                next = f.byte_offset + dtype.item_size().unwrap_or(0) as u32;
                out.push(CompoundField {
                    name: f.name.clone(),
                    offset: f.byte_offset,
                    dtype,
                });
            }
            if next != *size {
                return Err(format!(
                    "compound record of {size} bytes has {} bytes of trailing padding",
                    size - next
                ));
            }
            DataType::Compound {
                size: *size,
                fields: out,
            }
        }
        Datatype::Array { .. } => {
            return Err("HDF5 array element types are not supported".into());
        }
        Datatype::Opaque { size, tag } => {
            return Err(format!(
                "opaque type ({size} bytes, tag '{tag}') has no meaning to readers"
            ));
        }
        Datatype::Reference { .. } => {
            return Err("object/region references cannot be resolved outside the file".into());
        }
    })
}

fn int_type(size: u8, signed: bool, byte_order: &H5Order) -> Result<DataType, String> {
    match size {
        1 | 2 | 4 | 8 => Ok(DataType::Int {
            bytes: size,
            signed,
            order: order(byte_order, size as u64),
        }),
        s => Err(format!("{s}-byte integer has no NumPy type")),
    }
}

/// Decodes one element of numeric type `dt` from `raw`.
pub(crate) fn decode_number(raw: &[u8], dt: &Datatype) -> Option<Number> {
    match dt {
        Datatype::FixedPoint {
            size, byte_order, ..
        }
        | Datatype::Bitfield { size, byte_order }
            if raw.len() >= *size as usize && matches!(size, 1 | 2 | 4 | 8) =>
        {
            let signed = matches!(dt, Datatype::FixedPoint { signed: true, .. });
            let n = *size as usize;
            let mut buf = [0u8; 8];
            match byte_order {
                H5Order::LittleEndian => buf[..n].copy_from_slice(&raw[..n]),
                H5Order::BigEndian => {
                    for i in 0..n {
                        buf[i] = raw[n - 1 - i];
                    }
                }
            }
            let u = u64::from_le_bytes(buf);
            if signed {
                let shift = 64 - 8 * n as u32;
                Some(Number::Int(((u << shift) as i64) >> shift))
            } else {
                Some(Number::UInt(u))
            }
        }
        Datatype::FloatingPoint { size, byte_order } if raw.len() >= *size as usize => {
            let mut b = raw[..*size as usize].to_vec();
            if matches!(byte_order, H5Order::BigEndian) {
                b.reverse();
            }
            match size {
                4 => Some(Number::Float(
                    f32::from_le_bytes(b.try_into().ok()?) as f64,
                    32,
                )),
                8 => Some(Number::Float(f64::from_le_bytes(b.try_into().ok()?), 64)),
                _ => None,
            }
        }
        Datatype::Enum { base, .. } => decode_number(raw, base),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    UInt(u64),
    Float(f64, u8),
}

fn element_size(dt: &Datatype) -> Option<usize> {
    match dt {
        Datatype::FixedPoint { size, .. }
        | Datatype::Bitfield { size, .. }
        | Datatype::FloatingPoint { size, .. } => Some(*size as usize),
        Datatype::Enum { base, .. } => element_size(base),
        _ => None,
    }
}

/// An HDF5 attribute's value, or why it cannot be represented.
pub(crate) fn attribute_value(attr: &Attribute) -> Result<AttrValue, String> {
    match &attr.datatype {
        // hdf5-reader could not read this attribute alone (a shared dataspace ...).
        Datatype::Opaque { size: 0, tag } if tag.starts_with(UNREADABLE_TAG) => {
            Err(tag[UNREADABLE_TAG.len()..].to_string())
        }
        Datatype::Compound { fields, .. } => Err(format!(
            "a compound value (fields {}) has no Zarr v2 attribute form",
            fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Datatype::String { .. }
        | Datatype::VarLen {
            kind: VarLenKind::String,
            ..
        } => {
            let strings = attr.read_strings().map_err(|e| e.to_string())?;
            if attr.shape.is_empty() && strings.len() == 1 {
                Ok(AttrValue::String(
                    strings.into_iter().next().unwrap_or_default(),
                ))
            } else {
                Ok(AttrValue::Strings(strings))
            }
        }
        dt => {
            let size = element_size(dt)
                .ok_or_else(|| format!("attribute type {dt:?} is not a number or string"))?;
            let n = attr.num_elements().map_err(|e| e.to_string())? as usize;
            if size == 0 || attr.raw_data.len() < n.saturating_mul(size) {
                return Err("attribute holds fewer bytes than its shape needs".into());
            }
            let numbers: Vec<Number> = attr
                .raw_data
                .chunks_exact(size)
                .take(n)
                .map(|c| decode_number(c, dt))
                .collect::<Option<_>>()
                .ok_or("attribute number cannot be decoded")?;
            Ok(match numbers.first() {
                Some(Number::Float(_, bits)) => AttrValue::Float {
                    bits: *bits,
                    values: numbers
                        .iter()
                        .map(|n| match n {
                            Number::Float(f, _) => *f,
                            _ => f64::NAN,
                        })
                        .collect(),
                },
                Some(Number::UInt(_)) => AttrValue::UInt(
                    numbers
                        .iter()
                        .map(|n| match n {
                            Number::UInt(u) => *u,
                            _ => 0,
                        })
                        .collect(),
                ),
                _ => AttrValue::Int(
                    numbers
                        .iter()
                        .map(|n| match n {
                            Number::Int(i) => *i,
                            _ => 0,
                        })
                        .collect(),
                ),
            })
        }
    }
}

/// A fill value from its raw bytes in the dataset's type.
pub(crate) fn fill_from_bytes(raw: &[u8], dt: &Datatype, model: &DataType) -> Option<FillValue> {
    match decode_number(raw, dt) {
        Some(Number::Int(i)) => Some(FillValue::Int(i)),
        Some(Number::UInt(u)) => Some(FillValue::UInt(u)),
        Some(Number::Float(f, _)) => Some(FillValue::Float(f)),
        None => {
            let size = model.item_size()? as usize;
            (raw.len() >= size).then(|| FillValue::Bytes(raw[..size].to_vec()))
        }
    }
}

/// netCDF's default fill value for a numeric type, which readers see for elements
/// never written when no `_FillValue` is set.
pub(crate) fn netcdf_default_fill(dtype: &DataType) -> Option<FillValue> {
    Some(match dtype {
        DataType::Int { bytes, signed, .. } => match (bytes, signed) {
            (1, true) => FillValue::Int(-127),
            (1, false) => FillValue::UInt(255),
            (2, true) => FillValue::Int(-32767),
            (2, false) => FillValue::UInt(65535),
            (4, true) => FillValue::Int(-2147483647),
            (4, false) => FillValue::UInt(4294967295),
            (8, true) => FillValue::Int(-9223372036854775806),
            (8, false) => FillValue::UInt(18446744073709551614),
            _ => return None,
        },
        DataType::Float { bytes: 4, .. } => FillValue::Float(9.969_209_968_386_869e36),
        DataType::Float { bytes: 8, .. } => FillValue::Float(9.969_209_968_386_869e36),
        _ => return None,
    })
}
