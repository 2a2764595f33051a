//! NetCDF classic reader (CDF-1, CDF-2 and CDF-5): the header is parsed, variables
//! become arrays whose chunks point into the file.
//!
//! A fixed-size variable is one contiguous chunk. A record variable is one chunk per
//! record: its records lie `record stride` bytes apart, interleaved with the other
//! record variables, so a chunk of one record is the only contiguous piece.

use netcdf_reader::classic::header::{ClassicHeader, parse_header};
use netcdf_reader::{NcAttrValue, NcAttribute, NcFormat, NcType, NcVariable};
use zarrstac_io::BlockingReader;
use zarrstac_model::{
    Array, AttrValue, Attributes, ByteOrder, ChunkManifest, ChunkRef, DataType, Dataset, FillValue,
    Group, Refusal, SourceFormat,
};

use crate::ScanError;

/// Most header bytes read before the file is called corrupt: real headers are a few KiB
/// to a few MiB, and a hostile count must not make the reader fetch a whole large file.
const MAX_HEADER_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) fn read(reader: &BlockingReader, version: u8) -> Result<Dataset, ScanError> {
    let url = reader.reader().url().to_string();
    let size = reader.size();
    let (format, source_format) = match version {
        1 => (NcFormat::Classic, SourceFormat::NetCdf3Classic),
        2 => (NcFormat::Offset64, SourceFormat::NetCdf3Offset64),
        _ => (NcFormat::Cdf5, SourceFormat::NetCdf3Data64),
    };
    let header = read_header(reader, format, &url)?;
    let corrupt = |detail: String| ScanError::Corrupt {
        url: url.clone(),
        format: "NetCDF-3",
        detail,
    };
    let stride = netcdf_reader::classic::data::compute_record_stride(&header.variables)
        .map_err(|e| corrupt(e.to_string()))?;

    let mut root = Group::new("");
    root.attributes = convert_attributes(&header.global_attributes);
    let mut refused = Vec::new();
    for var in &header.variables {
        match variable_to_array(var, &header, stride, &url, size) {
            Ok(mut array) => {
                if array.wants_coordinate_values() {
                    array.coordinate_values = read_values(reader, &array)?;
                } else if array.wants_grid_extent() {
                    array.grid_extent = read_values(reader, &array)?
                        .and_then(|values| array.grid_extent_of(&values));
                }
                root.arrays.push(array)
            }
            Err(VariableError::Refused(reason)) => refused.push(Refusal {
                path: clean_name(&var.name).to_string(),
                reason,
            }),
            Err(VariableError::Corrupt(detail)) => return Err(corrupt(detail)),
            Err(VariableError::Truncated(detail)) => {
                return Err(ScanError::Truncated {
                    url: url.clone(),
                    detail,
                });
            }
        }
    }
    for i in root.bounds_to_read() {
        root.arrays[i].coordinate_values = read_values(reader, &root.arrays[i])?;
    }
    Ok(Dataset {
        source_url: url,
        source_size: size,
        format: source_format,
        root,
        refused,
    })
}

/// Reads a growing prefix of the file until the header parses.
fn read_header(
    reader: &BlockingReader,
    format: NcFormat,
    url: &str,
) -> Result<ClassicHeader, ScanError> {
    let size = reader.size();
    let mut want = size.min(64 * 1024);
    loop {
        let bytes = reader.read(0, want)?;
        match parse_header(&bytes, format) {
            Ok(h) => return Ok(h),
            Err(netcdf_reader::Error::UnexpectedEof { .. })
                if want < size && want < MAX_HEADER_BYTES =>
            {
                want = (want * 4).min(size).min(MAX_HEADER_BYTES);
            }
            Err(netcdf_reader::Error::UnexpectedEof {
                offset,
                needed,
                available,
            }) => {
                return Err(ScanError::Truncated {
                    url: url.to_string(),
                    detail: format!(
                        "header needs {needed} bytes at offset {offset}, {available} available (file size {size})"
                    ),
                });
            }
            Err(e) => {
                return Err(ScanError::Corrupt {
                    url: url.to_string(),
                    format: "NetCDF-3",
                    detail: e.to_string(),
                });
            }
        }
    }
}

enum VariableError {
    Refused(String),
    Corrupt(String),
    /// The header places data beyond the end of the file.
    Truncated(String),
}

fn dtype_of(t: &NcType) -> Option<DataType> {
    let int = |bytes, signed| {
        Some(DataType::Int {
            bytes,
            signed,
            order: if bytes == 1 {
                ByteOrder::NotApplicable
            } else {
                ByteOrder::Big
            },
        })
    };
    match t {
        NcType::Byte => int(1, true),
        NcType::UByte => int(1, false),
        NcType::Short => int(2, true),
        NcType::UShort => int(2, false),
        NcType::Int => int(4, true),
        NcType::UInt => int(4, false),
        NcType::Int64 => int(8, true),
        NcType::UInt64 => int(8, false),
        NcType::Float => Some(DataType::Float {
            bytes: 4,
            order: ByteOrder::Big,
        }),
        NcType::Double => Some(DataType::Float {
            bytes: 8,
            order: ByteOrder::Big,
        }),
        NcType::Char => Some(DataType::FixedBytes(1)),
        _ => None,
    }
}

fn variable_to_array(
    var: &NcVariable,
    header: &ClassicHeader,
    stride: u64,
    url: &str,
    file_size: u64,
) -> Result<Array, VariableError> {
    let dtype = dtype_of(&var.dtype).ok_or_else(|| {
        VariableError::Refused(format!("type {:?} is not a NetCDF classic type", var.dtype))
    })?;
    let item = dtype.item_size().unwrap_or(1);
    let shape: Vec<u64> = var
        .dimensions
        .iter()
        .map(|d| {
            if d.is_unlimited {
                header.numrecs
            } else {
                d.size
            }
        })
        .collect();
    let dimensions: Vec<String> = var
        .dimensions
        .iter()
        .map(|d| clean_name(&d.name).to_string())
        .collect();
    let too_big = || VariableError::Corrupt(format!("variable '{}' size overflows", var.name));
    let mut manifest;
    let chunk_shape: Vec<u64>;
    if var.is_record_var {
        // One chunk per record: shape [1, rest...].
        chunk_shape = std::iter::once(1)
            .chain(shape.iter().skip(1).copied())
            .collect();
        let record_bytes = chunk_shape
            .iter()
            .try_fold(item, |a, &n| a.checked_mul(n))
            .ok_or_else(too_big)?;
        let records = shape.first().copied().unwrap_or(0);
        // The record count comes from the header: the last record must lie inside the
        // file before one entry per record is made (a hostile count of 2^32 would ask
        // for gigabytes).
        // Records of one variable cannot overlap: a stride below the record size (a
        // hostile header can make it 0) would let any count pass the check below.
        if records > 1 && record_bytes > 0 && stride < record_bytes {
            return Err(VariableError::Corrupt(format!(
                "variable '{}': records of {record_bytes} bytes every {stride} bytes would overlap",
                var.name
            )));
        }
        if records > 0 && record_bytes > 0 {
            let end = (records - 1)
                .checked_mul(stride)
                .and_then(|o| o.checked_add(var.data_offset))
                .and_then(|o| o.checked_add(record_bytes));
            if end.is_none_or(|end| end > file_size) {
                return Err(VariableError::Truncated(format!(
                    "variable '{}': {records} records of {record_bytes} bytes every {stride} from byte {} end {}, the file has {file_size}",
                    var.name,
                    var.data_offset,
                    end.map_or("beyond 2^64".to_string(), |e| format!("at byte {e}")),
                )));
            }
        }
        manifest = ChunkManifest::with_capacity(shape.len(), records.min(1 << 20) as usize);
        let path = manifest.path_id(url);
        if record_bytes > 0 {
            for r in 0..records {
                let offset = r
                    .checked_mul(stride)
                    .and_then(|o| o.checked_add(var.data_offset))
                    .ok_or_else(too_big)?;
                let mut index = vec![0u64; shape.len()];
                index[0] = r;
                manifest
                    .push(
                        &index,
                        ChunkRef::Range {
                            path,
                            offset,
                            length: record_bytes,
                        },
                    )
                    .map_err(|e| VariableError::Corrupt(e.to_string()))?;
            }
        }
    } else {
        chunk_shape = shape.clone();
        let bytes = shape
            .iter()
            .try_fold(item, |a, &n| a.checked_mul(n))
            .ok_or_else(too_big)?;
        manifest = ChunkManifest::new(shape.len());
        let path = manifest.path_id(url);
        if bytes > 0 {
            manifest
                .push(
                    &vec![0u64; shape.len()],
                    ChunkRef::Range {
                        path,
                        offset: var.data_offset,
                        length: bytes,
                    },
                )
                .map_err(|e| VariableError::Corrupt(e.to_string()))?;
        }
    }
    let mut attributes = convert_attributes(&var.attributes);
    let fill_value = attributes
        .shift_remove("_FillValue")
        .and_then(|v| checked_fill(&v, &dtype, url, &var.name));
    // A zero-length axis still needs a positive chunk length in Zarr.
    let chunk_shape = chunk_shape.into_iter().map(|c| c.max(1)).collect();
    Ok(Array {
        name: clean_name(&var.name).to_string(),
        dtype,
        shape,
        chunk_shape,
        dimensions,
        codecs: Vec::new(),
        fill_value,
        attributes,
        manifest,
        materialized: None,
        coordinate_values: None,
        grid_extent: None,
    })
}

/// The `_FillValue` attribute as the array's fill value.
fn fill_from_attr(value: &AttrValue, dtype: &DataType) -> Option<FillValue> {
    match (value, dtype) {
        (AttrValue::Int(v), DataType::Float { .. }) => {
            v.first().map(|&x| FillValue::Float(x as f64))
        }
        (AttrValue::Int(v), _) => v.first().map(|&x| FillValue::Int(x)),
        (AttrValue::UInt(v), _) => v.first().map(|&x| FillValue::UInt(x)),
        // A floating fill of integer data that the type cannot hold (NaN, a fraction, out
        // of range: non-conforming files) is no fill at all, as xarray reads the file.
        (AttrValue::Float { values, .. }, DataType::Int { bytes, signed, .. }) => values
            .first()
            .and_then(|&x| integer_fill(x, *bytes, *signed)),
        (AttrValue::Float { values, .. }, _) => values.first().map(|&x| FillValue::Float(x)),
        (AttrValue::String(s), DataType::FixedBytes(_)) => {
            Some(FillValue::Bytes(s.as_bytes().to_vec()))
        }
        _ => None,
    }
}

/// [`fill_from_attr`], saying so when a `_FillValue` is dropped because the variable's
/// type cannot hold it (xarray drops it too, with a warning).
pub(crate) fn checked_fill(
    value: &AttrValue,
    dtype: &DataType,
    url: &str,
    name: &str,
) -> Option<FillValue> {
    let fill = fill_from_attr(value, dtype);
    if let (None, AttrValue::Float { values, .. }, DataType::Int { .. }) = (&fill, value, dtype) {
        tracing::warn!(
            "{url}: variable '{name}': _FillValue {:?} is not a value of its integer type; no fill",
            values.first().copied().unwrap_or(f64::NAN)
        );
    }
    fill
}

/// `x` as a fill value of an integer type of `bytes` bytes, when the type holds it exactly.
fn integer_fill(x: f64, bytes: u8, signed: bool) -> Option<FillValue> {
    if !x.is_finite() || x.fract() != 0.0 {
        return None;
    }
    let bits = i32::from(bytes.clamp(1, 8)) * 8;
    if signed {
        let max = 2f64.powi(bits - 1);
        (-max..max).contains(&x).then_some(FillValue::Int(x as i64))
    } else {
        (0.0..2f64.powi(bits))
            .contains(&x)
            .then_some(FillValue::UInt(x as u64))
    }
}

pub(crate) fn convert_attributes(attrs: &[NcAttribute]) -> Attributes {
    attrs
        .iter()
        .filter_map(|a| convert_value(&a.value).map(|v| (clean_name(&a.name).to_string(), v)))
        .collect()
}

fn convert_value(v: &NcAttrValue) -> Option<AttrValue> {
    Some(match v {
        NcAttrValue::Bytes(v) => AttrValue::Int(v.iter().map(|&x| x as i64).collect()),
        NcAttrValue::Chars(s) => AttrValue::String(s.trim_end_matches('\0').to_string()),
        NcAttrValue::Shorts(v) => AttrValue::Int(v.iter().map(|&x| x as i64).collect()),
        NcAttrValue::Ints(v) => AttrValue::Int(v.iter().map(|&x| x as i64).collect()),
        NcAttrValue::Int64s(v) => AttrValue::Int(v.clone()),
        NcAttrValue::UBytes(v) => AttrValue::UInt(v.iter().map(|&x| x as u64).collect()),
        NcAttrValue::UShorts(v) => AttrValue::UInt(v.iter().map(|&x| x as u64).collect()),
        NcAttrValue::UInts(v) => AttrValue::UInt(v.iter().map(|&x| x as u64).collect()),
        NcAttrValue::UInt64s(v) => AttrValue::UInt(v.clone()),
        NcAttrValue::Floats(v) => AttrValue::Float {
            values: v.iter().map(|&x| x as f64).collect(),
            bits: 32,
        },
        NcAttrValue::Doubles(v) => AttrValue::Float {
            values: v.clone(),
            bits: 64,
        },
        NcAttrValue::Strings(v) => AttrValue::Strings(v.clone()),
        NcAttrValue::UserDefined { .. } => return None,
    })
}

/// Names as netCDF-C reports them: some writers count a trailing NUL into a name's length.
fn clean_name(name: &str) -> &str {
    name.trim_end_matches('\0')
}

/// The values of a (small) array, read chunk by chunk through the block cache.
fn read_values(reader: &BlockingReader, array: &Array) -> Result<Option<Vec<f64>>, ScanError> {
    let mut bytes = Vec::new();
    for (_, chunk) in array.manifest.iter() {
        if let ChunkRef::Range { offset, length, .. } = chunk {
            bytes.extend_from_slice(&reader.read(*offset, *length)?);
        }
    }
    Ok(zarrstac_model::decode_numbers(&bytes, &array.dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(bytes: u8, signed: bool) -> DataType {
        DataType::Int {
            bytes,
            signed,
            order: ByteOrder::Big,
        }
    }

    fn float_attr(x: f64) -> AttrValue {
        AttrValue::Float {
            values: vec![x],
            bits: 64,
        }
    }

    #[test]
    fn a_floating_fill_of_integer_data_counts_only_when_the_type_holds_it() {
        let i16 = int(2, true);
        assert_eq!(
            fill_from_attr(&float_attr(-32767.0), &i16),
            Some(FillValue::Int(-32767))
        );
        // NaN, a fraction, out of range: no fill (a NaN became 0 and masked every raw 0).
        for x in [f64::NAN, f64::INFINITY, 0.5, 32768.0, -32769.0] {
            assert_eq!(fill_from_attr(&float_attr(x), &i16), None, "{x}");
        }
        let u8 = int(1, false);
        assert_eq!(
            fill_from_attr(&float_attr(255.0), &u8),
            Some(FillValue::UInt(255))
        );
        assert_eq!(fill_from_attr(&float_attr(-1.0), &u8), None);
        assert_eq!(fill_from_attr(&float_attr(256.0), &u8), None);
    }
}
