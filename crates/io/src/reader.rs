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
    round_trips: AtomicU64,
}

impl ReadStats {
    /// One request (or positioned read) that returned `bytes`.
    pub fn record(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        TOTAL.requests.fetch_add(1, Ordering::Relaxed);
        TOTAL.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// One wave of requests sent together and awaited together: on a high-latency store
    /// the time a read costs follows the waves, not the requests.
    pub fn record_round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        TOTAL.round_trips.fetch_add(1, Ordering::Relaxed);
    }
    /// Range requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Waves of requests so far (each one or more concurrent requests).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// What every reader of the process read (for metrics).
static TOTAL: ReadStats = ReadStats {
    requests: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    round_trips: AtomicU64::new(0),
};

/// Bytes read from sources by this process so far.
pub fn total_bytes_read() -> u64 {
    TOTAL.bytes()
}

/// Requests made to sources by this process so far.
pub fn total_requests() -> u64 {
    TOTAL.requests()
}

/// Round trips (waves of concurrent requests) to sources by this process so far.
pub fn total_round_trips() -> u64 {
    TOTAL.round_trips()
}

/// Remote reads merge ranges closer than this into one request. The requests of a wave go
/// out together, so a larger gap would save requests, not latency, at the price of bytes
/// read: small chunks scattered between large ones (a CMOR file's time steps) stay apart ...
const REMOTE_GAP: u64 = 16 * 1024;
/// ... into requests of at most this many bytes.
const REMOTE_SPAN: u64 = 16 * 1024 * 1024;
/// Requests of one wave in flight at once.
const REMOTE_CONCURRENCY: usize = 64;

/// Bytes an object-store source's first request reads from the start of the object: the
/// superblock, root headers and often all metadata of a netCDF-4 file, the header of a
/// NetCDF-3 one. Twice the block size of [`crate::BlockingReaderConfig`], so that its
/// first block read with read-ahead is this one.
/// `ZARRSTAC_OPEN_HEAD_BYTES` sets another size (0: a metadata request only).
pub const OPEN_HEAD_BYTES: u64 = 1024 * 1024;

/// The environment variable that sets the head read at open.
pub const OPEN_HEAD_BYTES_ENV: &str = "ZARRSTAC_OPEN_HEAD_BYTES";

/// The head read at open: [`OPEN_HEAD_BYTES`] unless `ZARRSTAC_OPEN_HEAD_BYTES` says
/// otherwise (a value that is not a byte count is reported once and ignored).
pub fn open_head_bytes() -> u64 {
    static HEAD: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        match std::env::var(OPEN_HEAD_BYTES_ENV) {
            Err(_) => OPEN_HEAD_BYTES,
            Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(
                    "{OPEN_HEAD_BYTES_ENV}={v:?} is not a number of bytes; reading {OPEN_HEAD_BYTES}"
                );
                OPEN_HEAD_BYTES
            }),
        }
    });
    *HEAD
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
    /// The object's first bytes, read when it was opened (object stores only): reads
    /// inside them cost no request.
    head: Bytes,
    /// Ranges fetched ahead of use by [`Self::prefetch`], shared by the reader's clones.
    held: Arc<parking_lot::Mutex<Held>>,
}

/// Most bytes [`RangeReader::prefetch`] keeps for one object; ranges beyond it are read
/// when asked for.
pub const PREFETCH_LIMIT: u64 = 64 * 1024 * 1024;

/// Exact ranges fetched ahead of use, by start offset.
#[derive(Debug, Default)]
struct Held {
    segments: std::collections::BTreeMap<u64, Bytes>,
    bytes: u64,
}

impl Held {
    /// `range` when one segment holds all of it.
    fn get(&self, range: &Range<u64>) -> Option<Bytes> {
        let (&start, bytes) = self.segments.range(..=range.start).next_back()?;
        (start + bytes.len() as u64 >= range.end)
            .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
    }
}

impl RangeReader {
    /// Opens `location`. A local file is looked up; an object is opened with one ranged
    /// GET of its first [`open_head_bytes`], whose response also says its size and
    /// modification time (no HEAD request), see [`Self::open_with_head`].
    pub async fn open(location: Location) -> Result<RangeReader, IoError> {
        let head_bytes = if location.local_path.is_some() {
            0
        } else {
            open_head_bytes()
        };
        Self::open_with_head(location, head_bytes).await
    }

    /// Opens `location`, reading its first `head_bytes` at once (0: a metadata request
    /// only). A store that cannot answer the ranged read (an empty object, a server
    /// that ignores ranges) is asked with a HEAD instead; an object that does not exist
    /// is an error either way.
    pub async fn open_with_head(
        location: Location,
        head_bytes: u64,
    ) -> Result<RangeReader, IoError> {
        let store_error = |source| IoError::Store {
            url: location.url.clone(),
            source,
        };
        let stats = Arc::new(ReadStats::default());
        let mut head = Bytes::new();
        let mut meta = None;
        if head_bytes > 0 {
            let options = object_store::GetOptions {
                range: Some(object_store::GetRange::Bounded(0..head_bytes)),
                ..Default::default()
            };
            match location.store.get_opts(&location.path, options).await {
                Ok(got) => {
                    let object = got.meta.clone();
                    let starts_at_zero = got.range.start == 0;
                    let bytes = got.bytes().await.map_err(store_error)?;
                    stats.record(bytes.len() as u64);
                    stats.record_round_trip();
                    if starts_at_zero && bytes.len() as u64 <= object.size {
                        head = bytes;
                    }
                    meta = Some(object);
                }
                Err(e @ object_store::Error::NotFound { .. }) => return Err(store_error(e)),
                Err(e) => {
                    tracing::debug!(url = %location.url, "ranged open refused ({e}); asking with HEAD")
                }
            }
        }
        let meta = match meta {
            Some(m) => m,
            None => location
                .store
                .head(&location.path)
                .await
                .map_err(store_error)?,
        };
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
            stats,
            head,
            held: Default::default(),
        })
    }

    /// `range` from the bytes read when the object was opened, when it lies inside them.
    fn in_head(&self, range: &Range<u64>) -> Option<Bytes> {
        (range.end <= self.head.len() as u64)
            .then(|| self.head.slice(range.start as usize..range.end as usize))
    }

    /// `range` from bytes already read: the head read at open, or a prefetched range.
    pub fn cached(&self, range: &Range<u64>) -> Option<Bytes> {
        self.in_head(range).or_else(|| self.held.lock().get(range))
    }

    /// Fetches `ranges` (clamped to the object) in one round trip, merged and concurrent,
    /// and keeps them for the reads to come: a parser that knows what it will read next
    /// (every node of a chunk index level, every chunk of a coordinate) pays one latency
    /// for all of it, and a later stage (inlining small chunks) finds it read. Ranges
    /// already held cost nothing; beyond [`PREFETCH_LIMIT`] held bytes, the rest is
    /// left to be read when asked for.
    pub async fn prefetch(&self, ranges: &[Range<u64>]) -> Result<(), IoError> {
        let mut wanted: Vec<Range<u64>> = Vec::new();
        {
            let held = self.held.lock();
            let mut budget = PREFETCH_LIMIT.saturating_sub(held.bytes);
            for r in ranges {
                let r = r.start.min(self.size)..r.end.min(self.size);
                let len = r.end - r.start;
                if len == 0 || self.in_head(&r).is_some() || held.get(&r).is_some() {
                    continue;
                }
                if len > budget {
                    break;
                }
                budget -= len;
                wanted.push(r);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let fetched = self.read_many(&wanted).await?;
        for (r, bytes) in wanted.into_iter().zip(fetched) {
            self.hold(r.start, bytes);
        }
        Ok(())
    }

    /// Keeps `bytes`, read from `start`, for later reads (see [`Self::prefetch`]); nothing
    /// is kept beyond [`PREFETCH_LIMIT`].
    pub fn hold(&self, start: u64, bytes: Bytes) {
        let mut held = self.held.lock();
        let len = bytes.len() as u64;
        if len == 0 || held.bytes + len > PREFETCH_LIMIT || held.segments.contains_key(&start) {
            return;
        }
        held.bytes += len;
        held.segments.insert(start, bytes);
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
            Some(file) if !range.is_empty() => {
                self.stats.record_round_trip();
                self.pread(file, &range)
            }
            _ => handle.block_on(self.read(range)),
        }
    }

    /// Reads `range`, which must lie inside the object.
    pub async fn read(&self, range: Range<u64>) -> Result<Bytes, IoError> {
        self.check(&range)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = self.cached(&range) {
            return Ok(bytes);
        }
        self.stats.record_round_trip();
        if let Some(file) = &self.file {
            let (me, file) = (self.clone(), file.clone());
            return tokio::task::spawn_blocking(move || me.pread(&file, &range))
                .await
                .map_err(|_| IoError::RuntimeGone {
                    url: self.location.url.clone(),
                })?;
        }
        self.get_range(range).await
    }

    /// One ranged GET of the object, counted as a request (the caller counts the wave).
    async fn get_range(&self, range: Range<u64>) -> Result<Bytes, IoError> {
        let bytes = self
            .location
            .store
            .get_range(&self.location.path, range)
            .await
            .map_err(|source| IoError::Store {
                url: self.location.url.clone(),
                source,
            })?;
        self.stats.record(bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads many ranges in one round trip: ranges already read (the head, prefetched) cost
    /// nothing, neighbours are merged into one request, and the requests go out together
    /// (a local file is read with positioned reads of the merged spans).
    pub async fn read_many(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, IoError> {
        for r in ranges {
            self.check(r)?;
        }
        let mut out: Vec<Option<Bytes>> = ranges
            .iter()
            .map(|r| {
                if r.is_empty() {
                    Some(Bytes::new())
                } else {
                    self.cached(r)
                }
            })
            .collect();
        let wanted: Vec<usize> = (0..ranges.len()).filter(|&i| out[i].is_none()).collect();
        if wanted.is_empty() {
            return Ok(out.into_iter().map(Option::unwrap_or_default).collect());
        }
        let asked: Vec<Range<u64>> = wanted.iter().map(|&i| ranges[i].clone()).collect();
        self.stats.record_round_trip();
        let groups = if self.file.is_some() {
            coalesce(&asked, LOCAL_GAP, LOCAL_SPAN)
        } else {
            coalesce(&asked, REMOTE_GAP, REMOTE_SPAN)
        };
        let spans: Vec<Bytes> = match &self.file {
            Some(file) => {
                let (me, file) = (self.clone(), file.clone());
                let spans: Vec<Range<u64>> = groups.iter().map(|g| g.span.clone()).collect();
                tokio::task::spawn_blocking(move || {
                    spans
                        .iter()
                        .map(|span| me.pread(&file, span))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|_| IoError::RuntimeGone {
                    url: self.location.url.clone(),
                })??
            }
            None => {
                use futures::{StreamExt, TryStreamExt};
                // Owned futures collected first: a stream over a borrowing closure would make
                // the callers' futures fail to be `Send` for every lifetime.
                let requests: Vec<_> = groups
                    .iter()
                    .map(|g| {
                        let (me, span) = (self.clone(), g.span.clone());
                        async move { me.get_range(span).await }
                    })
                    .collect();
                futures::stream::iter(requests)
                    .buffered(REMOTE_CONCURRENCY)
                    .try_collect()
                    .await?
            }
        };
        for (group, bytes) in groups.iter().zip(spans) {
            let span = &group.span;
            for &k in &group.members {
                let r = &asked[k];
                out[wanted[k]] = Some(
                    bytes.slice((r.start - span.start) as usize..(r.end - span.start) as usize),
                );
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
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

    /// A loopback HTTP server of one `size`-byte object (byte i is i % 251) that answers
    /// ranged GETs and HEADs, and sends every request line it gets to `seen`.
    fn range_server(size: usize) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut request = String::new();
                        if reader.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut range = None;
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            if line.trim().is_empty() {
                                break;
                            }
                            if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=")
                            {
                                let (a, b) = r.trim().split_once('-').unwrap();
                                let a: usize = a.parse().unwrap();
                                let b: usize = b.parse::<usize>().unwrap().min(size - 1);
                                range = Some((a, b));
                            }
                        }
                        seen.send(request.split_whitespace().next().unwrap().to_string())
                            .ok();
                        let common =
                            "ETag: \"e\"\r\nLast-Modified: Wed, 02 Dec 2026 10:00:00 GMT\r\n";
                        let (head, body) = match (request.starts_with("HEAD"), range) {
                            (true, _) => (
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n{common}\r\n"
                                ),
                                vec![],
                            ),
                            (false, Some((a, b))) => (
                                format!(
                                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{size}\r\n{common}\r\n",
                                    b - a + 1
                                ),
                                (a..=b).map(|i| (i % 251) as u8).collect(),
                            ),
                            (false, None) => (
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n{common}\r\n"
                                ),
                                (0..size).map(|i| (i % 251) as u8).collect(),
                            ),
                        };
                        stream.write_all(head.as_bytes()).unwrap();
                        stream.write_all(&body).unwrap();
                    }
                });
            }
        });
        (format!("http://127.0.0.1:{port}/data/big.nc"), requests)
    }

    #[tokio::test]
    async fn an_object_opens_with_one_ranged_get_and_no_head() {
        let size = 3_000_000;
        let (url, requests) = range_server(size);
        let reader = RangeReader::open(Location::parse(&url).unwrap())
            .await
            .unwrap();
        assert_eq!(reader.size(), size as u64);
        assert_eq!(reader.last_modified(), "2026-12-02T10:00:00Z");
        // Inside the head read at open: no request.
        let early = reader.read(1000..1010).await.unwrap();
        assert_eq!(
            &early[..],
            &(1000..1010).map(|i| (i % 251) as u8).collect::<Vec<_>>()[..]
        );
        let both = reader.read_many(&[0..4, 500_000..500_004]).await.unwrap();
        assert_eq!(both[1][0], (500_000 % 251) as u8);
        assert_eq!(reader.stats().requests(), 1);
        assert_eq!(reader.stats().bytes(), OPEN_HEAD_BYTES);
        // Beyond it: one more.
        let late = reader.read(2_000_000..2_000_004).await.unwrap();
        assert_eq!(late[0], (2_000_000 % 251) as u8);
        assert_eq!(reader.stats().requests(), 2);
        let methods: Vec<String> = requests.try_iter().collect();
        assert_eq!(methods, ["GET", "GET"]);

        // An object smaller than the head is read whole by the first request.
        let (small, requests) = range_server(1000);
        let reader = RangeReader::open(Location::parse(&small).unwrap())
            .await
            .unwrap();
        assert_eq!(reader.size(), 1000);
        assert_eq!(reader.read(990..1000).await.unwrap()[9], (999 % 251) as u8);
        assert_eq!(requests.try_iter().collect::<Vec<_>>(), ["GET"]);
    }

    #[tokio::test]
    async fn an_empty_or_missing_object_is_told_apart() {
        use object_store::ObjectStoreExt;
        let empty = Location::parse("memory://open-head/empty.nc").unwrap();
        empty
            .store
            .put(&empty.path, Vec::<u8>::new().into())
            .await
            .unwrap();
        let reader = RangeReader::open(empty).await.unwrap();
        assert_eq!(reader.size(), 0);
        let missing = Location::parse("memory://open-head/missing.nc").unwrap();
        let err = RangeReader::open(missing).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
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
}
