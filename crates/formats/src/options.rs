use zarrstac_io::BlockingReaderConfig;

/// How a scan reads and what it may materialize.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Largest decoded size of a variable the reader may read and inline when its
    /// storage cannot be referenced (unsupported filter, variable-length strings,
    /// compact layout, per-chunk skipped filters). Larger ones are refused.
    pub materialize_limit: u64,
    /// Block cache of the metadata reader; by default chosen for the kind of store
    /// (small blocks for local files, large ones with read-ahead for object stores).
    pub block_cache: Option<BlockingReaderConfig>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            materialize_limit: 4 * 1024 * 1024,
            block_cache: None,
        }
    }
}

impl ScanOptions {
    /// The block cache settings for `reader`.
    pub fn block_cache_for(&self, reader: &zarrstac_io::RangeReader) -> BlockingReaderConfig {
        self.block_cache.unwrap_or_else(|| {
            if reader.is_local() {
                BlockingReaderConfig::local()
            } else {
                BlockingReaderConfig::default()
            }
        })
    }
}
