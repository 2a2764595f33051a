use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::ObjectStoreExt;

use crate::{IoError, Location};

/// Counts of what reading one object cost.
#[derive(Debug, Default)]
pub struct ReadStats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl ReadStats {
    pub fn record(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        TOTAL_BYTES_READ.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Range requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Bytes read by every reader of the process (for metrics).
static TOTAL_BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Bytes read from sources by this process so far.
pub fn total_bytes_read() -> u64 {
    TOTAL_BYTES_READ.load(Ordering::Relaxed)
}

/// Reads byte ranges of one object, counting requests and bytes.
#[derive(Clone, Debug)]
pub struct RangeReader {
    location: Location,
    size: u64,
    /// Last modification as the store reports it, RFC 3339 (UTC, seconds).
    last_modified: String,
    stats: Arc<ReadStats>,
    /// Open handle of a local file, read with positioned reads.
    file: Option<Arc<std::fs::File>>,
}

impl RangeReader {
    /// Opens `location`, learning its size with one metadata request.
    pub async fn open(location: Location) -> Result<RangeReader, IoError> {
        let meta = location
            .store
            .head(&location.path)
            .await
            .map_err(|source| IoError::Store {
                url: location.url.clone(),
                source,
            })?;
        let file = match &location.local_path {
            Some(p) => Some(Arc::new(
                tokio::fs::File::open(p)
                    .await
                    .map_err(|source| IoError::Local {
                        url: location.url.clone(),
                        source,
                    })?
                    .into_std()
                    .await,
            )),
            None => None,
        };
        Ok(RangeReader {
            file,
            size: meta.size,
            last_modified: meta
                .last_modified
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            location,
            stats: Arc::new(ReadStats::default()),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// When the object was last modified (RFC 3339, UTC).
    pub fn last_modified(&self) -> &str {
        &self.last_modified
    }

    pub fn url(&self) -> &str {
        &self.location.url
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn stats(&self) -> &Arc<ReadStats> {
        &self.stats
    }

    fn check(&self, range: &Range<u64>) -> Result<(), IoError> {
        if range.start > range.end || range.end > self.size {
            return Err(IoError::OutOfBounds {
                url: self.location.url.clone(),
                offset: range.start,
                end: range.end,
                size: self.size,
            });
        }
        Ok(())
    }

    /// True when the object is a local file read directly.
    pub fn is_local(&self) -> bool {
        self.file.is_some()
    }

    fn pread(&self, file: &std::fs::File, range: &Range<u64>) -> Result<Bytes, IoError> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut buf, range.start)
            .map_err(|source| IoError::Local {
                url: self.location.url.clone(),
                source,
            })?;
        self.stats.record(buf.len() as u64);
        Ok(Bytes::from(buf))
    }

    /// Reads `range` on the calling thread, which must not be an async worker: local
    /// files with a positioned read, other stores through `handle`.
    pub fn read_blocking(
        &self,
        range: Range<u64>,
        handle: &tokio::runtime::Handle,
    ) -> Result<Bytes, IoError> {
        self.check(&range)?;
        match &self.file {
            Some(file) if !range.is_empty() => self.pread(file, &range),
            _ => handle.block_on(self.read(range)),
        }
    }

    /// Reads `range`, which must lie inside the object.
    pub async fn read(&self, range: Range<u64>) -> Result<Bytes, IoError> {
        self.check(&range)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        if let Some(file) = &self.file {
            let (me, file) = (self.clone(), file.clone());
            return tokio::task::spawn_blocking(move || me.pread(&file, &range))
                .await
                .map_err(|_| IoError::RuntimeGone {
                    url: self.location.url.clone(),
                })?;
        }
        let bytes = self
            .location
            .store
            .get_range(&self.location.path, range.clone())
            .await
            .map_err(|source| IoError::Store {
                url: self.location.url.clone(),
                source,
            })?;
        self.stats.record(bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads many ranges; the store merges nearby ones into fewer requests.
    pub async fn read_many(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, IoError> {
        for r in ranges {
            self.check(r)?;
        }
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(file) = &self.file {
            let (me, file, ranges) = (self.clone(), file.clone(), ranges.to_vec());
            return tokio::task::spawn_blocking(move || {
                let mut out = vec![Bytes::new(); ranges.len()];
                for group in coalesce(&ranges, LOCAL_GAP, LOCAL_SPAN) {
                    let span = group.span.clone();
                    let bytes = me.pread(&file, &span)?;
                    for i in group.members {
                        let r = &ranges[i];
                        out[i] = bytes
                            .slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|_| IoError::RuntimeGone {
                url: self.location.url.clone(),
            })?;
        }
        let merged = merged_request_count(ranges);
        let out = self
            .location
            .store
            .get_ranges(&self.location.path, ranges)
            .await
            .map_err(|source| IoError::Store {
                url: self.location.url.clone(),
                source,
            })?;
        let total: u64 = out.iter().map(|b| b.len() as u64).sum();
        // get_ranges coalesces internally; count the requests it makes, not the ranges asked.
        for _ in 1..merged {
            self.stats.record(0);
        }
        self.stats.record(total);
        Ok(out)
    }
}

/// Local reads merge ranges closer than this ...
const LOCAL_GAP: u64 = 64 * 1024;
/// ... into reads of at most this many bytes.
const LOCAL_SPAN: u64 = 8 * 1024 * 1024;

/// Ranges read together: the covering span and the indexes of the ranges in it.
struct Coalesced {
    span: Range<u64>,
    members: Vec<usize>,
}

/// Groups ranges (in any order) into spans that cover neighbours less than `gap` apart,
/// each at most `max_span` long (a single larger range stays whole).
fn coalesce(ranges: &[Range<u64>], gap: u64, max_span: u64) -> Vec<Coalesced> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: Vec<Coalesced> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match out.last_mut() {
            Some(g)
                if r.start <= g.span.end.saturating_add(gap)
                    && r.end.max(g.span.end) - g.span.start <= max_span =>
            {
                g.span.end = g.span.end.max(r.end);
                g.members.push(i);
            }
            _ => out.push(Coalesced {
                span: r.clone(),
                members: vec![i],
            }),
        }
    }
    out
}

/// How many requests `get_ranges` makes for `ranges`: it merges ranges closer than 1 MiB.
fn merged_request_count(ranges: &[Range<u64>]) -> u64 {
    const GAP: u64 = 1024 * 1024;
    let mut sorted: Vec<&Range<u64>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut count = 0;
    let mut end: Option<u64> = None;
    for r in sorted {
        match end {
            Some(e) if r.start <= e.saturating_add(GAP) => end = Some(e.max(r.end)),
            _ => {
                count += 1;
                end = Some(r.end);
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_ranges_and_counts_them() {
        let reader = RangeReader::open(Location::parse("Cargo.toml").unwrap())
            .await
            .unwrap();
        let head = reader.read(0..9).await.unwrap();
        assert_eq!(&head[..], b"[package]");
        assert_eq!(reader.stats().requests(), 1);
        assert_eq!(reader.stats().bytes(), 9);
        let err = reader.read(0..reader.size() + 1).await.unwrap_err();
        assert!(err.to_string().contains("beyond the end"), "{err}");
        let many = reader.read_many(&[0..1, 2..3]).await.unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(&many[1][..], b"a");
        // Local files: nearby ranges are read together.
        assert_eq!(reader.stats().requests(), 2);
    }

    #[test]
    fn coalescing_keeps_each_range_and_bounds_spans() {
        let groups = coalesce(&[50..60, 0..10, 20..30, 1000..1010], 15, 100);
        let spans: Vec<_> = groups.iter().map(|g| g.span.clone()).collect();
        assert_eq!(spans, vec![0..30, 50..60, 1000..1010]);
        assert_eq!(groups[0].members, vec![1, 2]);
        let capped = coalesce(&[0..60, 61..120], 10, 100);
        assert_eq!(capped.len(), 2);
    }

    #[test]
    fn nearby_ranges_count_as_one_request() {
        assert_eq!(merged_request_count(&[0..10, 20..30]), 1);
        assert_eq!(merged_request_count(&[0..10, 10_000_000..10_000_010]), 2);
    }
}
