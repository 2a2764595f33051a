//! kerchunk parquet references, the layout fsspec's `LazyReferenceMapper` reads:
//!
//! - `.zmetadata`: `{"metadata": {key: document}, "record_size": N}` with every Zarr v2
//!   metadata document (`.zgroup`, `.zattrs`, `<var>/.zarray`, `<var>/.zattrs`) as a JSON
//!   value, not a string;
//! - `<var>/refs.<n>.parq`: the chunks of a variable in C order of their grid position,
//!   `record_size` to a file, one row each with columns `path` (utf8, null for inline or
//!   missing chunks), `offset`, `size` (int64) and `raw` (bytes of an inline chunk, else
//!   null). A chunk missing from the source is a row with both `path` and `raw` null: it
//!   reads as the fill value. Records that would hold no chunk are not written.
//!
//! Columns are zstd-compressed; a URL repeated on every row costs a dictionary entry.

use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use zarrstac_model::{Array, ChunkRef, Dataset, Group, join_path};

use crate::kerchunk::{KerchunkError, attrs_json, zarray_json};

/// Chunks per reference file unless told otherwise (VirtualiZarr's and kerchunk's default).
pub const DEFAULT_RECORD_SIZE: usize = 100_000;

const SCHEMA: &str = "
message schema {
    optional binary path (UTF8);
    required int64 offset;
    required int64 size;
    optional binary raw;
}";

/// The column types as pandas metadata: without them fastparquet (the engine fsspec reads
/// references with) gives `offset` and `size` as nullable `Int64`, which fsspec then hands
/// to file reads as floats.
const PANDAS_METADATA: &str = r#"{"index_columns": [], "column_indexes": [], "columns": [{"name": "path", "field_name": "path", "pandas_type": "unicode", "numpy_type": "object", "metadata": null}, {"name": "offset", "field_name": "offset", "pandas_type": "int64", "numpy_type": "int64", "metadata": null}, {"name": "size", "field_name": "size", "pandas_type": "int64", "numpy_type": "int64", "metadata": null}, {"name": "raw", "field_name": "raw", "pandas_type": "bytes", "numpy_type": "object", "metadata": null}], "creator": {"library": "zarrstac", "version": "0.1.0"}, "pandas_version": "2.2.0"}"#;

/// The files of a parquet reference store, as (path relative to its root, bytes), in a
/// fixed order: the same dataset always gives the same files.
pub fn kerchunk_parquet(
    dataset: &Dataset,
    record_size: usize,
) -> Result<Vec<(String, Vec<u8>)>, KerchunkError> {
    let record_size = record_size.max(1);
    let mut metadata: Vec<(String, String)> = Vec::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    walk(&dataset.root, "", &mut metadata, &mut |path, array| {
        files.extend(records(path, array, record_size)?);
        Ok(())
    })?;
    let mut zmetadata = String::from("{\"metadata\": {");
    for (k, (key, doc)) in metadata.iter().enumerate() {
        if k > 0 {
            zmetadata.push_str(", ");
        }
        zmetadata.push_str(&serde_json::to_string(key).map_err(std::io::Error::from)?);
        zmetadata.push_str(": ");
        // The documents are JSON (attributes may hold NaN, which Python's reader takes).
        zmetadata.push_str(doc);
    }
    zmetadata.push_str(&format!("}}, \"record_size\": {record_size}}}\n"));
    files.insert(0, (".zmetadata".into(), zmetadata.into_bytes()));
    Ok(files)
}

type ArrayVisit<'a> = dyn FnMut(&str, &Array) -> Result<(), KerchunkError> + 'a;

fn walk(
    group: &Group,
    prefix: &str,
    metadata: &mut Vec<(String, String)>,
    visit: &mut ArrayVisit<'_>,
) -> Result<(), KerchunkError> {
    metadata.push((join_path(prefix, ".zgroup"), "{\"zarr_format\":2}".into()));
    if !group.attributes.is_empty() {
        metadata.push((
            join_path(prefix, ".zattrs"),
            attrs_json(&group.attributes, None),
        ));
    }
    for array in &group.arrays {
        let path = join_path(prefix, &array.name);
        let zarray = zarray_json(array).map_err(|reason| KerchunkError::Unrepresentable {
            path: path.clone(),
            reason,
        })?;
        metadata.push((format!("{path}/.zarray"), zarray));
        metadata.push((
            format!("{path}/.zattrs"),
            attrs_json(&array.attributes, Some(&array.dimensions)),
        ));
        visit(&path, array)?;
    }
    for child in &group.groups {
        walk(child, &join_path(prefix, &child.name), metadata, visit)?;
    }
    Ok(())
}

/// One row of a reference file.
enum Row<'a> {
    Missing,
    Range(&'a str, u64, u64),
    Inline(&'a [u8]),
}

/// The reference files of one array.
fn records(
    path: &str,
    array: &Array,
    record_size: usize,
) -> Result<Vec<(String, Vec<u8>)>, KerchunkError> {
    let unrep = |reason: String| KerchunkError::Unrepresentable {
        path: path.to_string(),
        reason,
    };
    let grid = array.chunk_grid();
    // A scalar has one chunk, `0`.
    let total: u64 = if grid.is_empty() {
        1
    } else {
        grid.iter().product()
    };
    if total == 0 || array.manifest.is_empty() {
        return Ok(Vec::new());
    }
    let total = usize::try_from(total).map_err(|_| unrep("too many chunks".into()))?;
    let urls = array.manifest.paths();
    // Row of each chunk present: its position in C order over the grid.
    let mut placed: Vec<(usize, Row<'_>)> = Vec::with_capacity(array.manifest.len());
    for (index, chunk) in array.manifest.iter() {
        let mut n: u64 = 0;
        for (&i, &g) in index.iter().zip(&grid) {
            if i >= g {
                return Err(unrep(format!(
                    "chunk {index:?} lies outside the chunk grid {grid:?}"
                )));
            }
            n = n * g + i;
        }
        let row = match chunk {
            ChunkRef::Range {
                path: p,
                offset,
                length,
            } => {
                let url = urls
                    .get(*p as usize)
                    .ok_or_else(|| unrep(format!("chunk refers to unknown path number {p}")))?;
                Row::Range(url, *offset, *length)
            }
            ChunkRef::Inline(bytes) => Row::Inline(bytes),
        };
        placed.push((n as usize, row));
    }
    placed.sort_by_key(|(n, _)| *n);
    let mut files = Vec::new();
    let mut next = placed.into_iter().peekable();
    for record in 0..total.div_ceil(record_size) {
        let start = record * record_size;
        let rows = record_size.min(total - start);
        if next.peek().is_none_or(|(n, _)| *n >= start + rows) {
            continue;
        }
        let mut table: Vec<Row<'_>> = (0..rows).map(|_| Row::Missing).collect();
        while let Some((n, _)) = next.peek()
            && *n < start + rows
        {
            let (n, row) = next.next().expect("peeked");
            table[n - start] = row;
        }
        let bytes = write_record(&table).map_err(|e| unrep(format!("parquet: {e}")))?;
        files.push((format!("{path}/refs.{record}.parq"), bytes));
    }
    Ok(files)
}

fn write_record(rows: &[Row<'_>]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_created_by("zarrstac".into())
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "pandas".into(),
                PANDAS_METADATA.to_string(),
            )]))
            .build(),
    );
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut group = writer.next_row_group()?;
    let present = |r: &Row<'_>, want_raw: bool| match r {
        Row::Range(..) => !want_raw,
        Row::Inline(_) => want_raw,
        Row::Missing => false,
    };
    // path
    let paths: Vec<ByteArray> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Range(url, ..) => Some(ByteArray::from(url.as_bytes().to_vec())),
            _ => None,
        })
        .collect();
    let levels: Vec<i16> = rows.iter().map(|r| present(r, false) as i16).collect();
    let mut col = group.next_column()?.expect("path column");
    col.typed::<ByteArrayType>()
        .write_batch(&paths, Some(&levels), None)?;
    col.close()?;
    // offset, size
    for pick in [0, 1] {
        let values: Vec<i64> = rows
            .iter()
            .map(|r| match r {
                Row::Range(_, offset, size) => [*offset as i64, *size as i64][pick],
                _ => 0,
            })
            .collect();
        let mut col = group.next_column()?.expect("offset and size columns");
        col.typed::<Int64Type>().write_batch(&values, None, None)?;
        col.close()?;
    }
    // raw
    let raws: Vec<ByteArray> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Inline(b) => Some(ByteArray::from(b.to_vec())),
            _ => None,
        })
        .collect();
    let levels: Vec<i16> = rows.iter().map(|r| present(r, true) as i16).collect();
    let mut col = group.next_column()?.expect("raw column");
    col.typed::<ByteArrayType>()
        .write_batch(&raws, Some(&levels), None)?;
    col.close()?;
    group.close()?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    fn rows_of(bytes: Vec<u8>) -> Vec<Vec<Field>> {
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| {
                r.unwrap()
                    .get_column_iter()
                    .map(|(_, f)| f.clone())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn rows_follow_the_chunk_grid_with_missing_chunks_as_nulls() {
        let table = [
            Row::Range("file:///a.nc", 10, 20),
            Row::Missing,
            Row::Inline(b"\x01\x02"),
        ];
        let rows = rows_of(write_record(&table).unwrap());
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            vec![
                Field::Str("file:///a.nc".into()),
                Field::Long(10),
                Field::Long(20),
                Field::Null
            ]
        );
        assert_eq!(
            rows[1],
            vec![Field::Null, Field::Long(0), Field::Long(0), Field::Null]
        );
        assert_eq!(rows[2][0], Field::Null);
        assert_eq!(rows[2][3], Field::Bytes(vec![1u8, 2].into()));
    }
}
