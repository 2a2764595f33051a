//! Readers: NetCDF-3 (CDF-1/2/5), NetCDF-4 and HDF5 files into the neutral
//! [`zarrstac_model::Dataset`].
//!
//! Only metadata is read, through a block-cached range reader: the chunk index of a
//! variable is walked, the chunks themselves are not fetched. Parsing runs on the
//! blocking thread pool, never on the async runtime's workers.

mod error;
pub mod hdf5;
pub mod kerchunk;
pub mod netcdf3;
mod options;
pub mod zarr;
pub mod zarr_v3;

use std::sync::Arc;

pub use error::ScanError;
pub use options::ScanOptions;
use zarrstac_io::{BlockingReader, RangeReader};
use zarrstac_model::{ChunkRef, Dataset};

/// The format a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedFormat {
    /// NetCDF classic family, with the version byte (1, 2 or 5).
    NetCdf3(u8),
    /// HDF5 (NetCDF-4 included), with the byte offset of its superblock.
    Hdf5 { superblock_at: u64 },
}

const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Recognizes a format from the file's first bytes; HDF5 superblocks may sit behind a
/// user block at 512, 1024, 2048 ... bytes, so those offsets are probed too.
pub async fn detect(reader: &RangeReader) -> Result<DetectedFormat, ScanError> {
    let size = reader.size();
    if size == 0 {
        return Err(ScanError::Empty {
            url: reader.url().to_string(),
        });
    }
    let head = reader.read(0..size.min(8)).await?;
    if head.len() >= 4 && &head[..3] == b"CDF" {
        return match head[3] {
            v @ (1 | 2 | 5) => Ok(DetectedFormat::NetCdf3(v)),
            v => Err(ScanError::Unsupported {
                url: reader.url().to_string(),
                what: format!("NetCDF classic version byte {v} (known: 1, 2, 5)"),
            }),
        };
    }
    let mut at = 0u64;
    while at + 8 <= size && at <= 1 << 30 {
        let probe = if at == 0 {
            head.clone()
        } else {
            reader.read(at..at + 8).await?
        };
        if &probe[..] == HDF5_MAGIC {
            return Ok(DetectedFormat::Hdf5 { superblock_at: at });
        }
        at = if at == 0 { 512 } else { at * 2 };
        // Beyond a few probes a file without a signature is simply not HDF5.
        if at > 8192 {
            break;
        }
    }
    Err(ScanError::NotRecognized {
        url: reader.url().to_string(),
    })
}

/// Reads the metadata of one NetCDF or HDF5 file into a [`Dataset`].
pub async fn scan(reader: RangeReader, options: &ScanOptions) -> Result<Dataset, ScanError> {
    let format = detect(&reader).await?;
    let config = options.block_cache_for(&reader);
    let blocking = BlockingReader::new(reader, tokio::runtime::Handle::current(), config);
    let options = options.clone();
    let worker = Arc::clone(&blocking);
    let dataset = tokio::task::spawn_blocking(move || match format {
        DetectedFormat::NetCdf3(version) => netcdf3::read(&worker, version),
        DetectedFormat::Hdf5 { .. } => hdf5::read(worker.clone(), &options),
    })
    .await
    .map_err(|e| ScanError::Internal(format!("reader task failed: {e}")))??;
    check_ranges(&dataset)?;
    Ok(dataset)
}

/// Every referenced byte range must lie inside the source: a truncated file is an
/// error here, not a reference that fails when a user reads it.
fn check_ranges(dataset: &Dataset) -> Result<(), ScanError> {
    for (path, array) in dataset.arrays() {
        for (index, chunk) in array.manifest.iter() {
            if let ChunkRef::Range { offset, length, .. } = chunk {
                let end = offset.saturating_add(*length);
                if end > dataset.source_size {
                    return Err(ScanError::Truncated {
                        url: dataset.source_url.clone(),
                        detail: format!(
                            "variable '{path}' chunk {index:?} needs bytes {offset}..{end}, the file has {}",
                            dataset.source_size
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}
