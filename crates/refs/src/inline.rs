use std::sync::Arc;

use zarrstac_io::{IoError, RangeReader};
use zarrstac_model::{ChunkRef, Dataset};

/// Replaces every referenced chunk of at most `threshold` bytes that lives in the
/// reader's object with the chunk's bytes, fetched in merged range requests. Returns the
/// number of chunks inlined. A threshold of 0 inlines nothing.
pub async fn inline_small_chunks(
    dataset: &mut Dataset,
    reader: &RangeReader,
    threshold: u64,
) -> Result<u64, IoError> {
    if threshold == 0 {
        return Ok(0);
    }
    let url = reader.url().to_string();
    // (array number, chunk number, range) of each chunk to fetch.
    let mut wanted = Vec::new();
    let mut arrays = Vec::new();
    collect_arrays(&mut dataset.root, &mut arrays);
    for (a, array) in arrays.iter().enumerate() {
        let source = array.manifest.paths().iter().position(|p| *p == url);
        for (c, (_, chunk)) in array.manifest.iter().enumerate() {
            if let ChunkRef::Range {
                path,
                offset,
                length,
            } = chunk
                && Some(*path as usize) == source
                && *length <= threshold
            {
                wanted.push((a, c, *offset..offset + length));
            }
        }
    }
    // Bounded batches keep memory flat however many small chunks a file has.
    const BATCH: usize = 65_536;
    for batch in wanted.chunks(BATCH) {
        let ranges: Vec<_> = batch.iter().map(|(_, _, r)| r.clone()).collect();
        let bytes = reader.read_many(&ranges).await?;
        for ((a, c, _), b) in batch.iter().zip(bytes) {
            if let Some(slot) = arrays[*a].manifest.get_mut(*c) {
                *slot = ChunkRef::Inline(Arc::from(&b[..]));
            }
        }
    }
    Ok(wanted.len() as u64)
}

fn collect_arrays<'a>(
    group: &'a mut zarrstac_model::Group,
    out: &mut Vec<&'a mut zarrstac_model::Array>,
) {
    for a in group.arrays.iter_mut() {
        out.push(a);
    }
    for g in group.groups.iter_mut() {
        collect_arrays(g, out);
    }
}
