use zarrstac_io::BlockingReaderConfig;

/// How a scan reads and what it may materialize.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Largest decoded size of a variable the reader may read and inline when its
    /// storage cannot be referenced (unsupported filter, variable-length strings,
    /// compact layout, per-chunk skipped filters). Larger ones are refused.
    pub materialize_limit: u64,
    /// Block cache of the metadata reader.
    pub block_cache: BlockingReaderConfig,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            materialize_limit: 4 * 1024 * 1024,
            block_cache: BlockingReaderConfig::default(),
        }
    }
}
