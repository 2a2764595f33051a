use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::runtime::Handle;

use crate::{IoError, RangeReader};

/// Block cache settings of a [`BlockingReader`].
#[derive(Debug, Clone, Copy)]
pub struct BlockingReaderConfig {
    /// Size of one cached block; also the smallest request made.
    pub block_size: u64,
    /// Blocks fetched after a miss beyond those asked for (read-ahead: metadata tends to
    /// be read front to back).
    pub read_ahead_blocks: u64,
    /// Most blocks kept in memory; the least recently used go first.
    pub max_blocks: usize,
}

impl Default for BlockingReaderConfig {
    /// For object stores: large blocks, because a request costs a round trip while a few
    /// hundred KiB more cost little; metadata spread through a file (chunk B-trees between
    /// the chunks) is then fetched in few requests.
    fn default() -> Self {
        BlockingReaderConfig {
            block_size: 512 * 1024,
            read_ahead_blocks: 1,
            max_blocks: 128,
        }
    }
}

impl BlockingReaderConfig {
    /// For local files: small blocks and no read-ahead, because a positioned read is
    /// cheap and bytes read needlessly are not.
    pub fn local() -> Self {
        BlockingReaderConfig {
            block_size: 8 * 1024,
            read_ahead_blocks: 0,
            max_blocks: 4096,
        }
    }
}

/// Synchronous reads for parsers that run off the async runtime (in `spawn_blocking`),
/// served from a block cache filled by ranged requests on the runtime.
pub struct BlockingReader {
    reader: RangeReader,
    handle: Handle,
    config: BlockingReaderConfig,
    cache: Mutex<BlockCache>,
}

/// Least-recently-used blocks by block number.
struct BlockCache {
    blocks: lru::LruCache<u64, Bytes>,
}

impl BlockCache {
    fn new(max_blocks: usize) -> Self {
        BlockCache {
            blocks: lru::LruCache::new(
                std::num::NonZeroUsize::new(max_blocks.max(1)).expect("at least one block"),
            ),
        }
    }

    fn get(&mut self, index: u64) -> Option<Bytes> {
        self.blocks.get(&index).cloned()
    }

    fn insert(&mut self, index: u64, block: Bytes) {
        self.blocks.put(index, block);
    }

    /// True when blocks `first..=last` are all held (their order of use left alone).
    fn holds(&self, first: u64, last: u64) -> bool {
        (first..=last).all(|i| self.blocks.contains(&i))
    }
}

impl BlockingReader {
    /// Must be created on (or with a handle to) a multi-threaded tokio runtime; its reads
    /// must then happen on a thread outside the runtime's workers.
    pub fn new(reader: RangeReader, handle: Handle, config: BlockingReaderConfig) -> Arc<Self> {
        let config = BlockingReaderConfig {
            block_size: config.block_size.max(1024),
            max_blocks: config.max_blocks.max(4),
            ..config
        };
        Arc::new(BlockingReader {
            reader,
            handle,
            config,
            cache: Mutex::new(BlockCache::new(config.max_blocks)),
        })
    }

    /// Fetches `ranges` ahead of the parser's coming reads, in one round trip (see
    /// [`RangeReader::prefetch`]); later reads inside them cost no request.
    /// Ranges the block cache already holds are not fetched again.
    pub fn prefetch(&self, ranges: &[std::ops::Range<u64>]) -> Result<(), IoError> {
        let bs = self.config.block_size;
        let wanted: Vec<std::ops::Range<u64>> = {
            let cache = self.cache.lock();
            ranges
                .iter()
                .filter(|r| r.is_empty() || !cache.holds(r.start / bs, (r.end - 1) / bs))
                .cloned()
                .collect()
        };
        self.handle.block_on(self.reader.prefetch(&wanted))
    }

    pub fn size(&self) -> u64 {
        self.reader.size()
    }

    pub fn reader(&self) -> &RangeReader {
        &self.reader
    }

    /// Reads `len` bytes at `offset`, failing when the range passes the end of the object.
    pub fn read(&self, offset: u64, len: u64) -> Result<Bytes, IoError> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| IoError::OutOfBounds {
                url: self.reader.url().to_string(),
                offset,
                end: u64::MAX,
                size: self.size(),
            })?;
        if end > self.size() {
            return Err(IoError::OutOfBounds {
                url: self.reader.url().to_string(),
                offset,
                end,
                size: self.size(),
            });
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = self.reader.cached(&(offset..end)) {
            return Ok(bytes);
        }
        let bs = self.config.block_size;
        let first = offset / bs;
        let last = (end - 1) / bs;
        let mut blocks: Vec<Bytes> = Vec::with_capacity((last - first + 1) as usize);
        let mut missing_from: Option<u64> = None;
        {
            let mut cache = self.cache.lock();
            for i in first..=last {
                match cache.get(i) {
                    Some(b) if missing_from.is_none() => blocks.push(b),
                    _ => {
                        missing_from.get_or_insert(i);
                    }
                }
            }
        }
        if let Some(from) = missing_from {
            let n_blocks = self.size().div_ceil(bs);
            let to = (last + 1 + self.config.read_ahead_blocks).min(n_blocks);
            let fetched = self.fetch_blocks(from, to)?;
            let mut cache = self.cache.lock();
            for (i, block) in (from..to).zip(fetched) {
                if i <= last {
                    blocks.push(block.clone());
                }
                cache.insert(i, block);
            }
        }
        let start_in_first = (offset - first * bs) as usize;
        if blocks.len() == 1 {
            return Ok(blocks[0].slice(start_in_first..start_in_first + len as usize));
        }
        let mut out = BytesMut::with_capacity(len as usize);
        let mut remaining = len as usize;
        for (k, b) in blocks.iter().enumerate() {
            let from = if k == 0 { start_in_first } else { 0 };
            let take = (b.len() - from).min(remaining);
            out.extend_from_slice(&b[from..from + take]);
            remaining -= take;
        }
        Ok(out.freeze())
    }

    fn fetch_blocks(&self, from: u64, to: u64) -> Result<Vec<Bytes>, IoError> {
        let bs = self.config.block_size;
        let range = from * bs..(to * bs).min(self.size());
        let bytes = self.reader.read_blocking(range.clone(), &self.handle)?;
        // Remote blocks are also kept by the reader, so that a later stage (inlining small
        // chunks) finds what the parser read instead of asking again.
        if !self.reader.is_local() {
            self.reader.hold(range.start, bytes.clone());
        }
        Ok((0..(to - from))
            .map(|k| {
                let s = (k * bs) as usize;
                bytes.slice(s..((k + 1) * bs).min(bytes.len() as u64) as usize)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Location;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_reads_across_blocks_from_few_requests() {
        let path = std::env::temp_dir().join(format!("zarrstac-blocking-{}", std::process::id()));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let reader = RangeReader::open(Location::parse(path.to_str().unwrap()).unwrap())
            .await
            .unwrap();
        let blocking = BlockingReader::new(
            reader,
            Handle::current(),
            BlockingReaderConfig {
                block_size: 4096,
                read_ahead_blocks: 2,
                max_blocks: 8,
            },
        );
        let b2 = blocking.clone();
        let data2 = data.clone();
        tokio::task::spawn_blocking(move || {
            for (off, len) in [(0u64, 10u64), (4000, 200), (8190, 5000), (99_990, 10)] {
                let got = b2.read(off, len).unwrap();
                assert_eq!(&got[..], &data2[off as usize..(off + len) as usize]);
            }
            assert!(b2.read(99_995, 10).is_err());
        })
        .await
        .unwrap();
        // 0..3 blocks with read-ahead cover the first three reads in one request.
        assert!(blocking.reader().stats().requests() <= 3);
        std::fs::remove_file(path).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefetched_ranges_are_read_in_one_round_trip_and_served_exactly() {
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let location = Location::parse("memory://prefetch/object.bin").unwrap();
        use object_store::ObjectStoreExt;
        location
            .store
            .put(&location.path, data.clone().into())
            .await
            .unwrap();
        let reader = RangeReader::open(location).await.unwrap();
        let opened = (reader.stats().requests(), reader.stats().round_trips());
        let blocking = BlockingReader::new(reader, Handle::current(), Default::default());
        let b2 = blocking.clone();
        let data2 = data.clone();
        tokio::task::spawn_blocking(move || {
            // Scattered, some neighbours, one inside the head read at open, one past the end.
            let ranges = [
                3_000_000..3_000_100,
                2_000_000..2_003_000,
                2_003_100..2_003_200,
                10..20,
                3_999_990..4_000_500,
            ];
            b2.prefetch(&ranges).unwrap();
            let stats = b2.reader().stats().clone();
            assert_eq!(stats.round_trips() - opened.1, 1);
            // Two near 2 MB merged; the head range needed nothing.
            assert_eq!(stats.requests() - opened.0, 3);
            let before = stats.bytes();
            for (off, len) in [(3_000_010u64, 50u64), (2_003_100, 100), (2_000_000, 3_000)] {
                let got = b2.read(off, len).unwrap();
                assert_eq!(&got[..], &data2[off as usize..(off + len) as usize]);
            }
            let many = Handle::current()
                .block_on(
                    b2.reader()
                        .read_many(&[3_000_000..3_000_100, 2_003_150..2_003_200]),
                )
                .unwrap();
            assert_eq!(&many[1][..], &data2[2_003_150..2_003_200]);
            assert_eq!(stats.bytes(), before, "prefetched reads cost no request");
            // Prefetching what is held is free.
            b2.prefetch(&ranges[..2]).unwrap();
            assert_eq!(stats.round_trips() - opened.1, 1);
            // A read outside every segment still works, through the blocks.
            assert_eq!(
                b2.read(3_500_000, 4).unwrap()[..],
                data2[3_500_000..3_500_004]
            );
            assert_eq!(stats.round_trips() - opened.1, 2);
            // What the blocks now hold is not fetched again.
            let requests = stats.requests();
            let held = 3_500_100..3_500_200;
            b2.prefetch(std::slice::from_ref(&held)).unwrap();
            assert_eq!(stats.requests(), requests);
            assert_eq!(
                b2.read(3_500_100, 100).unwrap()[..],
                data2[3_500_100..3_500_200]
            );
        })
        .await
        .unwrap();
    }
}
