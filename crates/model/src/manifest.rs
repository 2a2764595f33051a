use std::sync::Arc;

/// Where one stored chunk lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChunkRef {
    /// `length` bytes at `offset` of the manifest's path number `path`.
    Range { path: u32, offset: u64, length: u64 },
    /// The chunk's stored (encoded) bytes themselves.
    Inline(#[serde(with = "inline_bytes")] Arc<[u8]>),
}

/// Inline chunk bytes as one byte string rather than a sequence of numbers: the same
/// bytes in postcard, read and written in one copy instead of one call per byte.
mod inline_bytes {
    use std::sync::Arc;

    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        struct Bytes;
        impl<'de> de::Visitor<'de> for Bytes {
            type Value = Arc<[u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("chunk bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Arc::from(v))
            }
            // Formats without byte strings (JSON) give a sequence of numbers.
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Arc::from(out))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("chunk index has {got} axes, the array has {expected}")]
    Rank { expected: usize, got: usize },
    #[error("chunk {index:?} is listed twice")]
    Duplicate { index: Vec<u64> },
    #[error("chunk {index:?} lies outside the chunk grid {grid:?}")]
    OutOfGrid { index: Vec<u64>, grid: Vec<u64> },
}

/// The stored chunks of one array: chunk grid index → location.
///
/// Kept flat (one vector of indices, one of references) because an array can have
/// millions of chunks. Chunks absent from the manifest read back as the fill value.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredManifest")]
pub struct ChunkManifest {
    #[serde(serialize_with = "crate::front_coded::strings::serialize")]
    paths: Vec<String>,
    /// Path → number (indices into `paths`, hashed by the path), so registering a path
    /// stays constant-time for manifests that reference thousands of files (combined
    /// datasets). Built on the first registration, not when a manifest is read back.
    #[serde(skip)]
    path_numbers: PathIndex,
    ndim: usize,
    keys: Vec<u64>,
    refs: Vec<ChunkRef>,
}

/// A manifest as stored: the path index is rebuilt when read back.
#[derive(serde::Deserialize)]
struct StoredManifest {
    #[serde(deserialize_with = "crate::front_coded::strings::deserialize")]
    paths: Vec<String>,
    ndim: usize,
    keys: Vec<u64>,
    refs: Vec<ChunkRef>,
}

/// The numbers of a manifest's paths by path, without a second copy of the paths.
#[derive(Clone, Default)]
struct PathIndex {
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for PathIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PathIndex({} paths)", self.table.len())
    }
}

impl PathIndex {
    fn hash(&self, path: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, path)
    }

    /// The number of `path`, or registers it as number `paths.len()` and pushes it.
    fn number(&mut self, paths: &mut Vec<String>, path: &str) -> u32 {
        // Index what was read back (or renamed) first.
        for k in self.table.len()..paths.len() {
            let h = self.hash(&paths[k]);
            let hasher = &self.hasher;
            self.table.insert_unique(h, k as u32, |&i| {
                std::hash::BuildHasher::hash_one(hasher, paths[i as usize].as_str())
            });
        }
        let h = self.hash(path);
        if let Some(&i) = self.table.find(h, |&i| paths[i as usize] == path) {
            return i;
        }
        let i = paths.len() as u32;
        paths.push(path.to_string());
        let hasher = &self.hasher;
        self.table.insert_unique(h, i, |&i| {
            std::hash::BuildHasher::hash_one(hasher, paths[i as usize].as_str())
        });
        i
    }
}

impl From<StoredManifest> for ChunkManifest {
    fn from(s: StoredManifest) -> Self {
        ChunkManifest {
            paths: s.paths,
            path_numbers: PathIndex::default(),
            ndim: s.ndim,
            keys: s.keys,
            refs: s.refs,
        }
    }
}

impl ChunkManifest {
    /// An empty manifest for chunk indices of `ndim` axes (0 for a scalar).
    pub fn new(ndim: usize) -> Self {
        ChunkManifest {
            ndim,
            ..Default::default()
        }
    }

    pub fn with_capacity(ndim: usize, chunks: usize) -> Self {
        ChunkManifest {
            ndim,
            keys: Vec::with_capacity(chunks.saturating_mul(ndim)),
            refs: Vec::with_capacity(chunks),
            paths: Vec::new(),
            path_numbers: Default::default(),
        }
    }

    /// Registers a target URL (once) and returns its number for [`ChunkRef::Range`].
    pub fn path_id(&mut self, url: &str) -> u32 {
        self.path_numbers.number(&mut self.paths, url)
    }

    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Replaces every target URL, e.g. to re-point references at another copy.
    pub fn rename_paths(&mut self, mut f: impl FnMut(&str) -> String) {
        for p in &mut self.paths {
            *p = f(p);
        }
        self.path_numbers = PathIndex::default();
    }

    pub fn ndim(&self) -> usize {
        self.ndim
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    pub fn push(&mut self, index: &[u64], chunk: ChunkRef) -> Result<(), ManifestError> {
        if index.len() != self.ndim {
            return Err(ManifestError::Rank {
                expected: self.ndim,
                got: index.len(),
            });
        }
        self.keys.extend_from_slice(index);
        self.refs.push(chunk);
        Ok(())
    }

    /// (chunk index, location) pairs in insertion (or, after [`Self::finish`], grid) order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u64], &ChunkRef)> {
        let ndim = self.ndim;
        self.refs.iter().enumerate().map(move |(i, r)| {
            let key = if ndim == 0 {
                &[][..]
            } else {
                &self.keys[i * ndim..(i + 1) * ndim]
            };
            (key, r)
        })
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut ChunkRef> {
        self.refs.get_mut(i)
    }

    /// Sorts chunks into grid order and checks each lies in `grid` and appears once.
    pub fn finish(&mut self, grid: &[u64]) -> Result<(), ManifestError> {
        let ndim = self.ndim;
        let n = self.refs.len();
        for i in 0..n {
            let key = &self.keys[i * ndim..(i + 1) * ndim];
            if key.iter().zip(grid).any(|(k, g)| k >= g) {
                return Err(ManifestError::OutOfGrid {
                    index: key.to_vec(),
                    grid: grid.to_vec(),
                });
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| {
            self.keys[a * ndim..(a + 1) * ndim].cmp(&self.keys[b * ndim..(b + 1) * ndim])
        });
        let already_sorted = order.iter().enumerate().all(|(i, &o)| i == o);
        if !already_sorted {
            let mut keys = Vec::with_capacity(self.keys.len());
            let mut refs = Vec::with_capacity(n);
            for &o in &order {
                keys.extend_from_slice(&self.keys[o * ndim..(o + 1) * ndim]);
                refs.push(self.refs[o].clone());
            }
            self.keys = keys;
            self.refs = refs;
        }
        if ndim > 0 {
            for i in 1..n {
                if self.keys[(i - 1) * ndim..i * ndim] == self.keys[i * ndim..(i + 1) * ndim] {
                    return Err(ManifestError::Duplicate {
                        index: self.keys[i * ndim..(i + 1) * ndim].to_vec(),
                    });
                }
            }
        } else if n > 1 {
            return Err(ManifestError::Duplicate { index: vec![] });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_sorts_and_rejects_duplicates_and_out_of_grid() {
        let mut m = ChunkManifest::new(2);
        let p = m.path_id("file:///a.nc");
        for (k, off) in [([1, 0], 30), ([0, 1], 20), ([0, 0], 10)] {
            m.push(
                &k,
                ChunkRef::Range {
                    path: p,
                    offset: off,
                    length: 5,
                },
            )
            .unwrap();
        }
        m.finish(&[2, 2]).unwrap();
        let keys: Vec<Vec<u64>> = m.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(keys, vec![vec![0, 0], vec![0, 1], vec![1, 0]]);

        m.push(&[0, 1], ChunkRef::Inline(Arc::from(&b"x"[..])))
            .unwrap();
        assert_eq!(
            m.finish(&[2, 2]),
            Err(ManifestError::Duplicate { index: vec![0, 1] })
        );
        let mut m2 = ChunkManifest::new(1);
        m2.push(&[3], ChunkRef::Inline(Arc::from(&b"x"[..])))
            .unwrap();
        assert!(matches!(
            m2.finish(&[3]),
            Err(ManifestError::OutOfGrid { .. })
        ));
        assert!(matches!(
            m2.push(&[1, 1], ChunkRef::Inline(Arc::from(&b"x"[..]))),
            Err(ManifestError::Rank { .. })
        ));
    }
}
