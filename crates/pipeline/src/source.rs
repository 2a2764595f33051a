//! What a source is, and which sources an argument stands for.
//!
//! One detector for every job: a file's first bytes say NetCDF-3, HDF5/NetCDF-4 or
//! kerchunk references, so such a source is never probed for a Zarr store; only a path
//! that is no object (a directory, an object-store prefix) is looked at for Zarr
//! metadata.

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;
use zarrstac_formats::DetectedFormat;
use zarrstac_io::{Location, RangeReader};

use crate::failure::Failure;

/// The kinds of source zarrstac reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// NetCDF classic (CDF-1, CDF-2, CDF-5).
    NetCdf3,
    /// HDF5, NetCDF-4 included.
    Hdf5,
    /// A Zarr v2 store (`.zmetadata` or `.zgroup`).
    ZarrV2,
    /// A Zarr v3 store (`zarr.json`).
    ZarrV3,
    /// A kerchunk references document (JSON).
    KerchunkReferences,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::NetCdf3 => "NetCDF-3",
            SourceKind::Hdf5 => "HDF5/NetCDF-4",
            SourceKind::ZarrV2 => "Zarr v2 store",
            SourceKind::ZarrV3 => "Zarr v3 store",
            SourceKind::KerchunkReferences => "kerchunk references",
        }
    }
}

/// A source whose kind is known; files come with their opened reader.
pub struct Detected {
    pub kind: SourceKind,
    pub reader: Option<RangeReader>,
}

/// File extensions searched for in directories.
pub const FILE_EXTENSIONS: &[&str] = &["nc", "nc4", "h5", "hdf5", "he5", "hdf", "cdf"];

/// Root documents of a Zarr v2 store, consolidated first.
pub(crate) const ZARR_V2_MARKERS: &[&str] = &[".zmetadata", ".zgroup"];
/// The root document of a Zarr v3 store.
pub(crate) const ZARR_V3_MARKER: &str = "zarr.json";

fn is_zarr_dir(p: &Path) -> bool {
    ZARR_V2_MARKERS
        .iter()
        .chain(std::iter::once(&ZARR_V3_MARKER))
        .any(|m| p.join(m).exists())
}

/// Tells what `location` is. An object is opened and judged by its first bytes; a
/// directory or prefix is a Zarr store when it holds Zarr metadata.
pub async fn detect(location: &Location) -> Result<Detected, Failure> {
    if let Some(path) = &location.local_path
        && path.is_dir()
    {
        return zarr_kind(location).await.ok_or_else(|| {
            Failure::permanent(format!(
                "{}: a directory that is not a Zarr store (no .zmetadata, .zgroup or zarr.json)",
                location.url
            ))
        });
    }
    // A remote `*.zarr` (or `…/`) names a store by convention: its metadata is probed
    // first, which saves a request and does not depend on how a server answers a HEAD of
    // a prefix (some answer 500 instead of 404).
    let url_path = location.url.split(['?', '#']).next().unwrap_or_default();
    if location.local_path.is_none()
        && (url_path.ends_with(".zarr") || url_path.ends_with(".zarr/") || url_path.ends_with('/'))
        && let Some(d) = zarr_kind(location).await
    {
        return Ok(d);
    }
    let reader = match RangeReader::open(location.clone()).await {
        Ok(r) => r,
        // No object of that name: an object-store prefix may still be a Zarr store.
        Err(e) if location.local_path.is_none() && e.is_not_found() => {
            return match zarr_kind(location).await {
                Some(d) => Ok(d),
                None => Err(Failure::classify(e.is_transient(), e.to_string())),
            };
        }
        Err(e) => return Err(Failure::classify(e.is_transient(), e.to_string())),
    };
    let kind = match zarrstac_formats::detect(&reader).await {
        Ok(DetectedFormat::NetCdf3(_)) => SourceKind::NetCdf3,
        Ok(DetectedFormat::Hdf5 { .. }) => SourceKind::Hdf5,
        Err(zarrstac_formats::ScanError::NotRecognized { url }) => {
            let head = reader
                .read(0..reader.size().min(1))
                .await
                .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
            if head.first() != Some(&b'{') {
                return Err(Failure::permanent(
                    zarrstac_formats::ScanError::NotRecognized { url }.to_string(),
                ));
            }
            SourceKind::KerchunkReferences
        }
        Err(e) => return Err(Failure::classify(e.is_transient(), e.to_string())),
    };
    Ok(Detected {
        kind,
        reader: Some(reader),
    })
}

async fn zarr_kind(root: &Location) -> Option<Detected> {
    let has = |name: &'static str| {
        let probe = root.join(name);
        async move { root.store.head(&probe.path).await.is_ok() }
    };
    for m in ZARR_V2_MARKERS {
        if has(m).await {
            return Some(Detected {
                kind: SourceKind::ZarrV2,
                reader: None,
            });
        }
    }
    has(ZARR_V3_MARKER).await.then_some(Detected {
        kind: SourceKind::ZarrV3,
        reader: None,
    })
}

/// The sources an argument list stands for: local directories are searched (sorted, so
/// runs are repeatable) for files with NetCDF/HDF5 extensions and for Zarr stores; other
/// arguments (files, URLs, stores) stand for themselves.
pub fn expand(args: &[String]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if is_zarr_dir(&p) {
                    out.push(p.to_string_lossy().into_owned());
                } else {
                    walk(&p, out);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| FILE_EXTENSIONS.contains(&e))
            {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    for a in args {
        let p = Path::new(a);
        if !a.contains("://") && p.is_dir() && !is_zarr_dir(p) {
            walk(p, &mut out);
        } else {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn kind_of(path: &Path) -> Result<SourceKind, String> {
        let loc = Location::parse(path.to_str().unwrap()).unwrap();
        detect(&loc).await.map(|d| d.kind).map_err(|f| f.message)
    }

    #[tokio::test]
    async fn first_bytes_and_store_metadata_say_what_a_source_is() {
        let dir = std::env::temp_dir().join(format!("zarrstac-detect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("v2")).unwrap();
        std::fs::create_dir_all(dir.join("v3")).unwrap();
        std::fs::create_dir_all(dir.join("plain")).unwrap();
        std::fs::write(dir.join("v2/.zgroup"), b"{\"zarr_format\": 2}").unwrap();
        std::fs::write(dir.join("v3/zarr.json"), b"{\"zarr_format\": 3}").unwrap();
        std::fs::write(dir.join("a.nc"), b"CDF\x01\0\0\0\0").unwrap();
        std::fs::write(dir.join("b.h5"), b"\x89HDF\r\n\x1a\n\0\0\0\0").unwrap();
        std::fs::write(dir.join("r.json"), b"{\"version\": 1, \"refs\": {}}").unwrap();
        std::fs::write(dir.join("x.nc"), b"not a netcdf file").unwrap();
        assert_eq!(kind_of(&dir.join("v2")).await, Ok(SourceKind::ZarrV2));
        assert_eq!(kind_of(&dir.join("v3")).await, Ok(SourceKind::ZarrV3));
        assert_eq!(kind_of(&dir.join("a.nc")).await, Ok(SourceKind::NetCdf3));
        assert_eq!(kind_of(&dir.join("b.h5")).await, Ok(SourceKind::Hdf5));
        assert_eq!(
            kind_of(&dir.join("r.json")).await,
            Ok(SourceKind::KerchunkReferences)
        );
        let plain = kind_of(&dir.join("plain")).await.unwrap_err();
        assert!(plain.contains("not a Zarr store"), "{plain}");
        assert!(kind_of(&dir.join("x.nc")).await.is_err());
        let listed = expand(&[dir.to_string_lossy().into_owned()]);
        let names: Vec<&str> = listed
            .iter()
            .map(|s| s.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.nc", "b.h5", "v2", "v3", "x.nc"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
