//! Differential test: for every HDF5 fixture and every chunked dataset, the chunk table
//! our index walkers produce equals libhdf5's (`H5Dget_chunk_info`), chunk for chunk:
//! offsets, file addresses, stored sizes and filter masks.

use std::path::{Path, PathBuf};

use zarrstac_formats::hdf5::{ChunkInfo, chunk_table};
use zarrstac_io::{Location, RangeReader};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn hdf5_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hdf5_files(&p, out);
        } else if std::fs::read(&p).is_ok_and(|b| b.starts_with(b"\x89HDF\r\n\x1a\n")) {
            out.push(p);
        }
    }
}

/// (path, chunks) for every chunked dataset, as libhdf5 reports them.
fn libhdf5_table(path: &Path) -> Vec<(String, Vec<ChunkInfo>)> {
    let file = hdf5::File::open(path).unwrap();
    let mut out = Vec::new();
    let mut stack = vec![file.as_group().unwrap()];
    while let Some(group) = stack.pop() {
        for ds in group.datasets().unwrap() {
            let name = ds.name().trim_start_matches('/').to_string();
            if !ds.is_chunked() {
                continue;
            }
            let n = ds.num_chunks().unwrap_or(0);
            let mut chunks: Vec<ChunkInfo> = (0..n)
                .map(|i| {
                    let c = ds.chunk_info(i).expect("chunk info");
                    ChunkInfo {
                        offsets: c.offset.clone(),
                        address: c.addr,
                        size: c.size,
                        filter_mask: c.filter_mask,
                    }
                })
                .collect();
            chunks.sort_by(|a, b| a.offsets.cmp(&b.offsets));
            out.push((name, chunks));
        }
        stack.extend(group.groups().unwrap());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_tables_equal_libhdf5() {
    let mut files = Vec::new();
    hdf5_files(&fixtures(), &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the HDF5 fixtures under {}, found {files:?}",
        fixtures().display()
    );
    let mut datasets_checked = 0;
    let mut chunks_checked = 0;
    for path in &files {
        let expected = libhdf5_table(path);
        let reader = RangeReader::open(Location::parse(path.to_str().unwrap()).unwrap())
            .await
            .unwrap();
        let mut ours = chunk_table(reader)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (_, chunks) in ours.iter_mut() {
            chunks.sort_by(|a, b| a.offsets.cmp(&b.offsets));
        }
        let names =
            |t: &[(String, Vec<ChunkInfo>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&ours),
            names(&expected),
            "{}: chunked datasets differ",
            path.display()
        );
        for ((name, a), (_, b)) in ours.iter().zip(&expected) {
            assert_eq!(a.len(), b.len(), "{}:{name}: chunk count", path.display());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x, y, "{}:{name}", path.display());
            }
            datasets_checked += 1;
            chunks_checked += a.len();
        }
    }
    eprintln!(
        "{} files, {datasets_checked} chunked datasets, {chunks_checked} chunks equal to libhdf5",
        files.len()
    );
    assert!(datasets_checked > 0);
}
