//! On an object store the HDF5 reader's round trips follow the depth of the file's
//! structure, not its number of chunks: a real CMIP6 file (1,200 monthly steps, its time
//! and bounds chunked one step per chunk, as CMOR writes them) is scanned from an object
//! store whose first read holds only the superblock, and must give the same dataset as
//! from local disk in a handful of waves of requests.

use std::path::Path;

use object_store::ObjectStoreExt;
use zarrstac_formats::{ScanOptions, scan};
use zarrstac_io::{BlockingReaderConfig, Location, RangeReader};

const CMIP6: &str =
    "../../fixtures/shared/cmip6/o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cmip6_file_is_scanned_in_few_round_trips_with_the_local_result() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CMIP6);
    let local_loc = Location::parse(path.to_str().unwrap()).unwrap();
    let local_url = local_loc.url.clone();
    let local = scan(
        RangeReader::open(local_loc).await.unwrap(),
        &ScanOptions::default(),
    )
    .await
    .unwrap();

    let remote_loc = Location::parse("memory://round-trips/o3.nc").unwrap();
    remote_loc
        .store
        .put(&remote_loc.path, std::fs::read(&path).unwrap().into())
        .await
        .unwrap();
    let remote_url = remote_loc.url.clone();
    // A head of 4 KiB (the superblock and root group) and 8 KiB blocks for what the
    // parser reads itself: the file does not fit in a block or two, as a large one would
    // not, so the chunk indexes and the 2,400 chunks of time and time_bnds must be fetched.
    let reader = RangeReader::open_with_head(remote_loc, 4096).await.unwrap();
    let stats = reader.stats().clone();
    let options = ScanOptions {
        block_cache: Some(BlockingReaderConfig {
            block_size: 8 * 1024,
            read_ahead_blocks: 0,
            max_blocks: 4096,
        }),
        ..ScanOptions::default()
    };
    let remote = scan(reader, &options).await.unwrap();

    assert_eq!(
        format!("{local:?}"),
        format!("{remote:?}").replace(&remote_url, &local_url),
        "the dataset read from the store differs from the local one"
    );
    let time = remote
        .root
        .arrays
        .iter()
        .find(|a| a.name == "time")
        .unwrap();
    assert_eq!(time.coordinate_values.as_ref().map(Vec::len), Some(1200));
    // Read as the parser asks, each B-tree node and each block of scattered chunks would
    // be a round trip of its own (hundreds with 8 KiB blocks). Level by level it is the
    // open, the object headers as the parser reaches them, one wave per index level and
    // one for the coordinate and bounds chunks (measured: 9).
    assert!(
        stats.round_trips() <= 10,
        "{} round trips ({} requests)",
        stats.round_trips(),
        stats.requests()
    );
    // What the blocks hold is not prefetched again, and what was prefetched is not read
    // again; B-tree nodes are fetched at their full size, a little past a node not full
    // (measured: 1.16 times the file).
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        stats.bytes() <= size * 5 / 4,
        "{} bytes read of a {size}-byte file",
        stats.bytes()
    );
    eprintln!(
        "{} round trips, {} requests, {} bytes",
        stats.round_trips(),
        stats.requests(),
        stats.bytes()
    );
}
