//! Chunk manifests from HDF5 data layouts and chunk indexes.

use std::sync::Arc;

use hdf5_reader::btree_v1::{BTreeV1Key, collect_btree_v1_leaves_storage};
use hdf5_reader::chunk_index::{
    ChunkEntry, collect_implicit_chunk_entries, collect_v2_chunk_entries_storage,
    single_chunk_entry,
};
use hdf5_reader::extensible_array::collect_extensible_array_chunk_entries_storage;
use hdf5_reader::fixed_array::collect_fixed_array_chunk_entries_storage;
use hdf5_reader::messages::layout::{ChunkIndexing, DataLayout};
use hdf5_reader::{Dataset as H5Dataset, Hdf5File};
use zarrstac_model::{ChunkManifest, ChunkRef, DataType};

/// One stored chunk as the HDF5 chunk index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Dataset coordinates of the chunk's first element.
    pub offsets: Vec<u64>,
    /// Byte offset in the file (user block included).
    pub address: u64,
    /// Stored (filtered) size in bytes.
    pub size: u64,
    /// Bit i set: filter i of the pipeline was skipped for this chunk.
    pub filter_mask: u32,
}

pub(crate) struct LayoutInfo {
    pub chunk_shape: Vec<u64>,
    pub manifest: ChunkManifest,
    /// Why the data must be materialized rather than referenced, if it must.
    pub materialize: Option<String>,
    /// Some chunk skipped a filter of the pipeline: one codec list cannot decode all.
    pub skipped_filters: bool,
}

fn is_undefined(address: u64, offset_size: u8) -> bool {
    match offset_size {
        2 => address == 0xFFFF,
        4 => address == 0xFFFF_FFFF,
        _ => address == u64::MAX,
    }
}

/// The chunk shape of a chunked layout without the legacy trailing element-size axis.
fn chunk_dims(dims: &[u32], ndim: usize) -> Vec<u32> {
    if dims.len() == ndim + 1 {
        dims[..ndim].to_vec()
    } else {
        dims.to_vec()
    }
}

/// Every stored chunk of a chunked layout, in index order, with file-absolute addresses.
/// Chunks wholly outside the current extent (left behind when a dataset shrank) are
/// dropped, as libhdf5 ignores them.
pub fn chunk_infos(
    file: &Hdf5File,
    layout: &DataLayout,
    shape: &[u64],
    max_dims: Option<&[u64]>,
    item_size: u64,
) -> Result<Vec<ChunkInfo>, String> {
    let DataLayout::Chunked {
        address,
        dims,
        chunk_indexing,
        ..
    } = layout
    else {
        return Ok(Vec::new());
    };
    let sb = file.superblock();
    let (os, ls) = (sb.offset_size, sb.length_size);
    let ndim = shape.len();
    let cdims = chunk_dims(dims, ndim);
    if cdims.len() != ndim || cdims.contains(&0) {
        return Err(format!(
            "chunk shape {cdims:?} does not fit the dataset shape {shape:?}"
        ));
    }
    if is_undefined(*address, os) || shape.contains(&0) {
        return Ok(Vec::new());
    }
    let storage = file.storage();
    let err = |e: hdf5_reader::error::Error| format!("chunk index unreadable: {e}");
    let entries: Vec<ChunkEntry> = match chunk_indexing {
        None => collect_btree_v1_leaves_storage(
            storage,
            *address,
            os,
            ls,
            Some(ndim as u32),
            &cdims,
            None,
        )
        .map_err(err)?
        .into_iter()
        .map(|(key, addr)| match key {
            BTreeV1Key::RawData {
                chunk_size,
                filter_mask,
                mut offsets,
            } if offsets.len() >= ndim => {
                // The key carries a trailing element-size axis; drop it in place.
                offsets.truncate(ndim);
                Ok(ChunkEntry {
                    address: addr,
                    size: chunk_size as u64,
                    filter_mask,
                    offsets,
                })
            }
            _ => Err("chunk B-tree holds a node that is not a raw-data key".to_string()),
        })
        .collect::<Result<_, _>>()?,
        Some(ChunkIndexing::SingleChunk {
            filtered_size,
            filters,
        }) => vec![single_chunk_entry(*address, *filtered_size, *filters, ndim)],
        Some(ChunkIndexing::BTreeV2) => {
            collect_v2_chunk_entries_storage(storage, *address, os, ls, ndim as u32, &cdims, None)
                .map_err(err)?
        }
        Some(ChunkIndexing::Implicit) => collect_implicit_chunk_entries(
            *address,
            shape,
            &cdims,
            item_size as usize,
            None,
            storage.len(),
        )
        .map_err(err)?,
        Some(ChunkIndexing::FixedArray { .. }) => collect_fixed_array_chunk_entries_storage(
            storage, *address, os, ls, shape, &cdims, None,
        )
        .map_err(err)?,
        Some(ChunkIndexing::ExtensibleArray { .. }) => {
            collect_extensible_array_chunk_entries_storage(
                storage, *address, os, ls, shape, max_dims, &cdims, None,
            )
            .map_err(err)?
        }
    };
    let full_chunk = cdims
        .iter()
        .try_fold(item_size, |a, &c| a.checked_mul(c as u64))
        .ok_or("chunk size overflows")?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if e.offsets.len() != ndim {
            return Err(format!(
                "chunk record has {} axes, expected {ndim}",
                e.offsets.len()
            ));
        }
        let mut stale = false;
        for ((&o, &c), &n) in e.offsets.iter().zip(&cdims).zip(shape) {
            if o % c as u64 != 0 {
                return Err(format!(
                    "chunk offset {:?} is not on the chunk grid {cdims:?}",
                    e.offsets
                ));
            }
            stale |= o >= n;
        }
        if stale || is_undefined(e.address, os) {
            continue;
        }
        out.push(ChunkInfo {
            address: e
                .address
                .checked_add(sb.base_address)
                .ok_or("chunk address overflows")?,
            // Indexes of unfiltered chunks leave the size implicit: a whole chunk.
            size: if e.size == 0 { full_chunk } else { e.size },
            filter_mask: e.filter_mask,
            offsets: e.offsets,
        });
    }
    Ok(out)
}

pub(crate) fn manifest_for(
    file: &Hdf5File,
    ds: &H5Dataset,
    layout: &DataLayout,
    shape: &[u64],
    dtype: &DataType,
    url: &str,
) -> Result<LayoutInfo, String> {
    let ndim = shape.len();
    let item = dtype.item_size().unwrap_or(16);
    let whole = shape.iter().try_fold(item, |a, &n| a.checked_mul(n));
    let mut manifest = ChunkManifest::new(ndim);
    let path = manifest.path_id(url);
    let whole_shape: Vec<u64> = shape.iter().map(|&n| n.max(1)).collect();
    match layout {
        DataLayout::Compact { data } => {
            let need = whole.ok_or("dataset size overflows")? as usize;
            if matches!(dtype, DataType::VarString) {
                return Ok(LayoutInfo {
                    chunk_shape: whole_shape,
                    manifest,
                    materialize: Some("variable-length strings".into()),
                    skipped_filters: false,
                });
            }
            if data.len() < need {
                return Err(format!(
                    "compact data holds {} bytes, the dataset needs {need}",
                    data.len()
                ));
            }
            if need > 0 {
                manifest
                    .push(&vec![0; ndim], ChunkRef::Inline(Arc::from(&data[..need])))
                    .map_err(|e| e.to_string())?;
            }
            Ok(LayoutInfo {
                chunk_shape: whole_shape,
                manifest,
                materialize: None,
                skipped_filters: false,
            })
        }
        DataLayout::Contiguous { address, size } => {
            let sb = file.superblock();
            let need = whole.ok_or("dataset size overflows")?;
            if !is_undefined(*address, sb.offset_size) && need > 0 {
                if !matches!(dtype, DataType::VarString) && *size < need {
                    return Err(format!(
                        "contiguous storage holds {size} bytes, the dataset needs {need}"
                    ));
                }
                manifest
                    .push(
                        &vec![0; ndim],
                        ChunkRef::Range {
                            path,
                            offset: address
                                .checked_add(sb.base_address)
                                .ok_or("address overflows")?,
                            length: need,
                        },
                    )
                    .map_err(|e| e.to_string())?;
            }
            Ok(LayoutInfo {
                chunk_shape: whole_shape,
                manifest,
                materialize: None,
                skipped_filters: false,
            })
        }
        DataLayout::Chunked { dims, .. } => {
            let cdims: Vec<u64> = chunk_dims(dims, ndim).iter().map(|&c| c as u64).collect();
            let infos = chunk_infos(file, layout, shape, ds.max_dims(), item)?;
            let mut manifest = ChunkManifest::with_capacity(ndim, infos.len());
            let path = manifest.path_id(url);
            let mut skipped = false;
            let mut index = vec![0u64; ndim];
            for info in &infos {
                skipped |= info.filter_mask != 0;
                for (i, (&o, &c)) in info.offsets.iter().zip(&cdims).enumerate() {
                    index[i] = o / c;
                }
                manifest
                    .push(
                        &index,
                        ChunkRef::Range {
                            path,
                            offset: info.address,
                            length: info.size,
                        },
                    )
                    .map_err(|e| e.to_string())?;
            }
            let grid: Vec<u64> = shape
                .iter()
                .zip(&cdims)
                .map(|(&n, &c)| n.div_ceil(c))
                .collect();
            manifest
                .finish(&grid)
                .map_err(|e| format!("chunk index: {e}"))?;
            Ok(LayoutInfo {
                chunk_shape: cdims,
                manifest,
                materialize: None,
                skipped_filters: skipped,
            })
        }
    }
}
