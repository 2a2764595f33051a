//! Reading ahead of hdf5-reader on high-latency stores. hdf5-reader walks a chunk index
//! node by node, each node a read that waits for the one before: on an object store
//! that is one round trip per node, however small. Here the version 1 B-trees (what
//! netCDF-4 and most HDF5 writers use) of every chunked dataset are walked together,
//! level by level: all nodes of a level are fetched in one wave, each at its own size,
//! so the walk costs one round trip per tree level. hdf5-reader then finds every node
//! it asks for already fetched.

use std::collections::HashSet;
use std::ops::Range;

use hdf5_reader::Hdf5File;
use hdf5_reader::btree_v1::{BTreeV1Key, BTreeV1Node};
use hdf5_reader::io::Cursor;
use hdf5_reader::messages::layout::DataLayout;
use zarrstac_io::BlockingReader;

/// Deepest B-tree followed; a deeper one is corrupt (hdf5-reader then says so).
const MAX_LEVELS: usize = 64;

/// The `K` of chunk B-trees when the superblock does not record one (HDF5's default).
const DEFAULT_CHUNK_BTREE_K: u64 = 32;

/// A chunk B-tree to walk: where its root is and how wide its keys are.
pub(crate) struct ChunkTree {
    pub root: u64,
    /// Dataset rank (the key holds one more offset, for the element size).
    pub ndim: usize,
}

/// The version 1 chunk B-tree of `layout`, if it has one.
pub(crate) fn chunk_tree(layout: &DataLayout, ndim: usize) -> Option<ChunkTree> {
    match layout {
        DataLayout::Chunked {
            address,
            chunk_indexing: None,
            ..
        } => Some(ChunkTree {
            root: *address,
            ndim,
        }),
        _ => None,
    }
}

/// Fetches every node of `trees`, one wave per level. Errors stop the read-ahead only:
/// the walk that follows reads what is missing and reports what is wrong.
pub(crate) fn chunk_trees(file: &Hdf5File, reader: &BlockingReader, trees: &[ChunkTree]) {
    let sb = file.superblock();
    let (os, ls, base) = (sb.offset_size, sb.length_size, sb.base_address);
    let k = match sb.indexed_storage_k {
        0 => DEFAULT_CHUNK_BTREE_K,
        k => u64::from(k),
    };
    let header_len = 8 + 2 * u64::from(os);
    // A full node: 2K children and 2K+1 keys (chunk size, filter mask, ndim+1 offsets).
    let node_len = |ndim: usize| {
        header_len + (2 * k + 1) * (8 + 8 * (ndim as u64 + 1)) + 2 * k * u64::from(os)
    };
    let undefined = |a: u64| match os {
        2 => a == 0xFFFF,
        4 => a == 0xFFFF_FFFF,
        _ => a == u64::MAX,
    };
    let mut level: Vec<(u64, usize)> = trees
        .iter()
        .filter(|t| !undefined(t.root))
        .map(|t| (t.root, t.ndim))
        .collect();
    let mut seen = HashSet::new();
    for _ in 0..MAX_LEVELS {
        level.retain(|node| seen.insert(node.0));
        if level.is_empty() {
            return;
        }
        let ranges: Vec<Range<u64>> = level
            .iter()
            .map(|&(a, ndim)| base + a..base + a + node_len(ndim))
            .collect();
        if let Err(e) = reader.prefetch(&ranges) {
            tracing::debug!(
                url = reader.reader().url(),
                "chunk index read-ahead stopped: {e}"
            );
            return;
        }
        let mut next = Vec::new();
        for (&(address, ndim), range) in level.iter().zip(&ranges) {
            let len = range.end.min(reader.size()).saturating_sub(range.start);
            let Ok(bytes) = reader.read(range.start, len) else {
                return;
            };
            let mut cursor = Cursor::new(&bytes);
            let Ok(node) = BTreeV1Node::parse(&mut cursor, os, ls, Some(ndim as u32)) else {
                tracing::debug!(
                    url = reader.reader().url(),
                    address,
                    "chunk index read-ahead: not a full B-tree node"
                );
                continue;
            };
            if node.level > 0
                && node
                    .keys
                    .iter()
                    .all(|k| matches!(k, BTreeV1Key::RawData { .. }))
            {
                next.extend(
                    node.children
                        .iter()
                        .filter(|&&c| !undefined(c))
                        .map(|&c| (c, ndim)),
                );
            }
        }
        level = next;
    }
}
