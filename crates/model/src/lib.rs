//! The neutral Dataset model at the centre of zarrstac.
//!
//! Readers (HDF5, NetCDF-3, Zarr) produce a [`Dataset`]; writers (kerchunk references,
//! STAC items) consume it. Nothing here knows about a file format or a catalog: a
//! dataset is a tree of groups holding arrays, each array with its element type,
//! shape, chunking, codecs, fill value, dimension names, attributes and a manifest
//! that says where every stored chunk lives.

mod attrs;
mod codec;
mod dtype;
mod extent;
pub mod front_coded;
mod manifest;

pub use attrs::{AttrValue, Attributes};
pub use codec::Codec;
pub use dtype::{ByteOrder, CompoundField, DataType, FillValue, decode_numbers};
pub use extent::GridExtent;
pub use manifest::{ChunkManifest, ChunkRef, ManifestError};

/// What kind of source a dataset was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// NetCDF classic (CDF-1).
    NetCdf3Classic,
    /// NetCDF 64-bit offset (CDF-2).
    NetCdf3Offset64,
    /// NetCDF 64-bit data (CDF-5).
    NetCdf3Data64,
    /// NetCDF-4 (an HDF5 file following the netCDF-4 conventions).
    NetCdf4,
    /// Any other HDF5 file.
    Hdf5,
    /// A Zarr v2 store.
    Zarr,
    /// A Zarr v3 store.
    ZarrV3,
}

impl SourceFormat {
    /// True for the formats whose variables follow netCDF conventions (default fill values,
    /// named dimensions).
    pub fn is_netcdf(self) -> bool {
        !matches!(
            self,
            SourceFormat::Hdf5 | SourceFormat::Zarr | SourceFormat::ZarrV3
        )
    }
}

/// One source file (or store) as a tree of groups and arrays.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    /// Absolute URL of the source, the default target of every chunk reference.
    pub source_url: String,
    /// Size of the source in bytes.
    pub source_size: u64,
    pub format: SourceFormat,
    pub root: Group,
    /// Variables that could not be represented, with the reason. Never empty silently:
    /// every variable of the source is either an array in the tree or listed here.
    pub refused: Vec<Refusal>,
}

impl Dataset {
    /// Every array in the dataset with its path from the root (`group/sub/name`).
    pub fn arrays(&self) -> Vec<(String, &Array)> {
        let mut out = Vec::new();
        self.root.collect_arrays("", &mut out);
        out
    }
}

/// A variable the reader could not turn into an array, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// Path of the variable from the root.
    pub path: String,
    pub reason: String,
}

/// A group: attributes, child groups and arrays.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    pub attributes: Attributes,
    pub groups: Vec<Group>,
    pub arrays: Vec<Array>,
}

impl Group {
    pub fn new(name: impl Into<String>) -> Self {
        Group {
            name: name.into(),
            ..Default::default()
        }
    }

    fn collect_arrays<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Array)>) {
        for array in &self.arrays {
            out.push((join_path(prefix, &array.name), array));
        }
        for group in &self.groups {
            group.collect_arrays(&join_path(prefix, &group.name), out);
        }
    }

    /// Positions of the arrays of this group whose values a reader should read as the
    /// cell bounds of one of its coordinates ([`Array::wants_bounds_values`]).
    pub fn bounds_to_read(&self) -> Vec<usize> {
        (0..self.arrays.len())
            .filter(|&i| {
                let b = &self.arrays[i];
                b.coordinate_values.is_none()
                    && self.arrays.iter().any(|c| b.wants_bounds_values(c))
            })
            .collect()
    }

    /// Every group below this one (itself first) with its path from here.
    pub fn walk_groups(&self) -> Vec<(String, &Group)> {
        let mut out = vec![(String::new(), self)];
        let mut i = 0;
        while i < out.len() {
            let (path, group) = (out[i].0.clone(), out[i].1);
            for child in &group.groups {
                out.push((join_path(&path, &child.name), child));
            }
            i += 1;
        }
        out
    }
}

/// `prefix/name`, or `name` at the root.
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The largest curvilinear latitude or longitude a reader reads for its extent: 4M
/// elements (32 MB as doubles, for a moment), beyond the largest ocean grids of CMIP6.
pub const MAX_GRID_ELEMENTS: u64 = 1 << 22;

/// An n-dimensional array with its chunk manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Array {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<u64>,
    /// Chunk shape; equals `shape` for unchunked (contiguous or compact) storage.
    /// A scalar has empty `shape` and `chunk_shape`.
    pub chunk_shape: Vec<u64>,
    /// One name per axis.
    pub dimensions: Vec<String>,
    /// Codecs in encoding order (the order the writer applied them).
    pub codecs: Vec<Codec>,
    /// Value of elements never written (missing chunks read back as this).
    pub fill_value: Option<FillValue>,
    pub attributes: Attributes,
    pub manifest: ChunkManifest,
    /// Why the reader decoded this array's data into the manifest instead of
    /// referencing the source bytes (an unsupported codec, compact storage ...).
    pub materialized: Option<String>,
    /// Raw (not CF-decoded) values of a small one-dimensional coordinate variable, read
    /// by the reader so that metadata builders (extents, steps) need not fetch data; for
    /// the cell bounds of such a coordinate, its values in C order.
    pub coordinate_values: Option<Vec<f64>>,
    /// Extent of a multi-dimensional latitude or longitude coordinate (a curvilinear
    /// grid), read by the reader in place of its values ([`Self::wants_grid_extent`]).
    pub grid_extent: Option<GridExtent>,
}

impl Array {
    /// Number of chunks along each axis.
    pub fn chunk_grid(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&n, &c)| if c == 0 { 0 } else { n.div_ceil(c) })
            .collect()
    }

    /// True for a netCDF coordinate variable: one axis, named like its dimension.
    pub fn is_coordinate(&self) -> bool {
        self.dimensions.len() == 1 && self.dimensions[0] == self.name
    }

    /// Whether a reader should fill [`Self::coordinate_values`]: a numeric 1-D array of at
    /// most a million elements that is a coordinate variable or says it is an axis.
    pub fn wants_coordinate_values(&self) -> bool {
        const MAX: u64 = 1_000_000;
        if self.shape.len() != 1 || self.shape[0] > MAX || !self.dtype.is_numeric() {
            return false;
        }
        let std_name = self
            .attributes
            .get("standard_name")
            .and_then(|v| v.as_str());
        self.is_coordinate()
            || self.attributes.contains_key("axis")
            || matches!(
                std_name,
                Some(
                    "latitude"
                        | "longitude"
                        | "time"
                        | "projection_x_coordinate"
                        | "projection_y_coordinate"
                )
            )
    }

    /// Whether a reader should fill [`Self::coordinate_values`] of this array because it
    /// holds the cell bounds of `coordinate` (named by its `bounds` attribute): two axes,
    /// the first the coordinate's, a few vertices per cell. Combining files whose time
    /// units differ rewrites the bounds as it rewrites the coordinate.
    pub fn wants_bounds_values(&self, coordinate: &Array) -> bool {
        const MAX_VERTICES: u64 = 16;
        coordinate.wants_coordinate_values()
            && coordinate.attributes.get("bounds").and_then(|v| v.as_str())
                == Some(self.name.as_str())
            && self.shape.len() == 2
            && self.dtype.is_numeric()
            && self.dimensions.first() == coordinate.dimensions.first()
            && self.shape[0] == coordinate.shape[0]
            && self.shape[1] <= MAX_VERTICES
    }

    /// Whether a reader should fill [`Self::grid_extent`]: a numeric latitude or
    /// longitude of two or more axes (by `standard_name` or units) of at most
    /// [`MAX_GRID_ELEMENTS`] elements.
    pub fn wants_grid_extent(&self) -> bool {
        if self.shape.len() < 2 || !self.dtype.is_numeric() {
            return false;
        }
        let elements = self
            .shape
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n));
        if elements.is_none_or(|n| n == 0 || n > MAX_GRID_ELEMENTS) {
            return false;
        }
        let text = |key: &str| {
            self.attributes
                .get(key)
                .and_then(|v| v.as_str())
                .map(|s| s.trim().to_ascii_lowercase())
        };
        matches!(
            text("standard_name").as_deref(),
            Some("latitude" | "longitude")
        ) || matches!(
            text("units").as_deref(),
            Some(
                "degrees_north"
                    | "degree_north"
                    | "degrees_n"
                    | "degree_n"
                    | "degrees_east"
                    | "degree_east"
                    | "degrees_e"
                    | "degree_e"
            )
        )
    }

    /// The [`GridExtent`] of this array's raw values, leaving out its fill value and
    /// `missing_value` (land cells of some ocean grids carry no position).
    pub fn grid_extent_of(&self, values: &[f64]) -> Option<GridExtent> {
        let mut fills: Vec<f64> = ["_FillValue", "missing_value"]
            .iter()
            .filter_map(|k| self.attributes.get(*k).and_then(|v| v.as_f64()))
            .collect();
        match &self.fill_value {
            Some(FillValue::Float(f)) => fills.push(*f),
            Some(FillValue::Int(i)) => fills.push(*i as f64),
            Some(FillValue::UInt(u)) => fills.push(*u as f64),
            _ => {}
        }
        GridExtent::of(values, &fills)
    }

    /// Uncompressed size of one chunk in bytes, when the element size is fixed.
    pub fn chunk_bytes(&self) -> Option<u64> {
        let item = self.dtype.item_size()?;
        self.chunk_shape
            .iter()
            .try_fold(item, |acc, &c| acc.checked_mul(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(name: &str, dims: &[&str], shape: &[u64]) -> Array {
        Array {
            name: name.into(),
            dtype: DataType::Float {
                bytes: 8,
                order: ByteOrder::Little,
            },
            shape: shape.to_vec(),
            chunk_shape: shape.to_vec(),
            dimensions: dims.iter().map(|d| d.to_string()).collect(),
            codecs: Vec::new(),
            fill_value: None,
            attributes: Attributes::new(),
            manifest: ChunkManifest::new(shape.len()),
            materialized: None,
            coordinate_values: None,
            grid_extent: None,
        }
    }

    #[test]
    fn only_the_bounds_a_coordinate_names_are_read() {
        let mut time = array("time", &["time"], &[10]);
        time.attributes
            .insert("bounds".into(), AttrValue::String("time_bnds".into()));
        let mut group = Group::new("");
        group.arrays = vec![
            time,
            array("time_bnds", &["time", "nv"], &[10, 2]),
            // Not named by any coordinate, or not shaped as bounds of one.
            array("lat_bnds", &["lat", "nv"], &[4, 2]),
            array("tas", &["time", "lat", "lon"], &[10, 4, 5]),
        ];
        assert_eq!(group.bounds_to_read(), vec![1]);
        // Along another axis than the coordinate's: not its bounds.
        group.arrays[1].dimensions = vec!["nv".into(), "time".into()];
        assert!(group.bounds_to_read().is_empty());
    }
}
