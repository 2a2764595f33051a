//! What the fuzz targets share: one runtime, and bytes put where a reader finds them.
//!
//! Readers see the fuzzed bytes through the same object-store path as real sources (an
//! in-memory store), so ranged reads, size checks and the blocking bridge are exercised
//! too. A target fails on a panic, an abort, a hang or memory beyond libFuzzer's limit;
//! an `Err` from a reader is the expected answer to bad input.

use std::sync::{Arc, OnceLock};

use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use zarrstac_io::Location;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// A fresh in-memory store holding `files` (`(key, bytes)`), and the location of `root`.
pub fn store_with(files: &[(&str, &[u8])], root: &str) -> Location {
    let store = Arc::new(InMemory::new());
    runtime().block_on(async {
        for (key, data) in files {
            store
                .put(&(*key).into(), bytes::Bytes::copy_from_slice(data).into())
                .await
                .expect("in-memory put");
        }
    });
    Location {
        store,
        path: root.into(),
        url: format!("memory:///{root}"),
        local_path: None,
    }
}

/// Scans `data` as a file with the given leading signature, as `zarrstac refs` would.
pub fn scan_file(signature: &[u8], data: &[u8]) {
    let mut file = signature.to_vec();
    file.extend_from_slice(data);
    let location = store_with(&[("f.nc", &file)], "f.nc");
    runtime().block_on(async {
        if let Ok(reader) = zarrstac_io::RangeReader::open(location).await {
            let _ = zarrstac_formats::scan(reader, &zarrstac_formats::ScanOptions::default()).await;
        }
    });
}
