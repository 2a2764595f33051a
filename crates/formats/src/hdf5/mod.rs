//! HDF5 and NetCDF-4 reader built on `hdf5-reader`'s public low-level modules: the
//! object headers give layout, filters and fill value; the chunk-index walkers give
//! each chunk's address, stored size and filter mask. Chunk data is never read,
//! except for the small variables that must be materialized.

mod chunks;
mod dtype;
mod filters;
mod prefetch;
mod storage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hdf5_reader::group::Group as H5Group;
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{Dataset as H5Dataset, Hdf5File, OpenOptions};
use netcdf_reader::{NcGroup, NcMetadataMode};
use zarrstac_io::BlockingReader;
use zarrstac_model::{
    Array, AttrValue, Attributes, ChunkManifest, ChunkRef, Codec, DataType, Dataset, Group,
    Refusal, SourceFormat,
};

use crate::{ScanError, ScanOptions};
pub use chunks::{ChunkInfo, chunk_infos};

/// Deepest group nesting followed; deeper (or cyclic) trees are corrupt or hostile.
const MAX_GROUP_DEPTH: usize = 64;

/// Attributes netCDF-4 and HDF5 dimension scales use internally; readers never see them.
const HIDDEN_ATTRIBUTES: &[&str] = &[
    "_NCProperties",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
    "_nc3_strict",
    "_IsNetcdf4",
    "_SuperblockVersion",
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "CLASS",
    "NAME",
    "DIMENSION_LABELS",
];

const BARE_DIMENSION_MARK: &str = "This is a netCDF dimension but not a netCDF variable";

/// Opens an HDF5 file through the block-cached reader and checks it is not truncated.
fn open(reader: &Arc<BlockingReader>, options: &ScanOptions) -> Result<Hdf5File, ScanError> {
    let url = reader.reader().url().to_string();
    let size = reader.size();
    let storage = Arc::new(storage::ObjectStorage(reader.clone()));
    let open = OpenOptions {
        filter_registry: Some(filters::decoders(options.materialize_limit)),
        chunk_cache_bytes: 0,
        max_read_bytes: options.materialize_limit as usize,
        max_chunk_bytes: (options.materialize_limit as usize).max(1 << 20),
        ..OpenOptions::default()
    };
    let file = Hdf5File::from_storage_with_options(storage, open)
        .map_err(|e| to_scan_error(&url, size, e))?;
    let sb = file.superblock();
    let eof = sb.eof_address.saturating_add(sb.base_address);
    if sb.eof_address != u64::MAX && eof > size {
        return Err(ScanError::Truncated {
            url,
            detail: format!("the superblock records {eof} bytes, the file has {size}"),
        });
    }
    Ok(file)
}

/// The chunk table of every chunked dataset (path, chunks in index order), as the
/// file's chunk indexes record it. Used to check our index walkers against libhdf5.
pub async fn chunk_table(
    reader: zarrstac_io::RangeReader,
) -> Result<Vec<(String, Vec<ChunkInfo>)>, ScanError> {
    let config = ScanOptions::default().block_cache_for(&reader);
    let blocking = BlockingReader::new(reader, tokio::runtime::Handle::current(), config);
    tokio::task::spawn_blocking(move || {
        let url = blocking.reader().url().to_string();
        let size = blocking.size();
        let err = |e| to_scan_error(&url, size, e);
        let file = open(&blocking, &ScanOptions::default())?;
        let mut out = Vec::new();
        for (name, ds) in all_datasets(&file).map_err(err)? {
            let Some(layout) = data_layout(&file, &ds).map_err(err)? else {
                continue;
            };
            if !matches!(
                layout,
                hdf5_reader::messages::layout::DataLayout::Chunked { .. }
            ) {
                continue;
            }
            let item = hdf5_reader::dtype_element_size(ds.dtype()).unwrap_or(1) as u64;
            let chunks =
                chunk_infos(&file, &layout, ds.shape(), ds.max_dims(), item).map_err(|detail| {
                    ScanError::Corrupt {
                        url: url.clone(),
                        format: "HDF5",
                        detail: format!("{name}: {detail}"),
                    }
                })?;
            out.push((name, chunks));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    })
    .await
    .map_err(|e| ScanError::Internal(format!("reader task failed: {e}")))?
}

/// Every dataset of the file with its path, each group read once (hard links may
/// make the tree a graph).
fn all_datasets(file: &Hdf5File) -> Result<Vec<(String, H5Dataset)>, hdf5_reader::error::Error> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), file.root_group()?, 0)];
    let mut seen = HashSet::new();
    while let Some((path, group, depth)) = stack.pop() {
        if depth > MAX_GROUP_DEPTH || !seen.insert(group.address()) {
            continue;
        }
        let (groups, datasets) = group.members()?;
        for ds in datasets {
            out.push((zarrstac_model::join_path(&path, base_name(ds.name())), ds));
        }
        for g in groups {
            stack.push((
                zarrstac_model::join_path(&path, base_name(g.name())),
                g,
                depth + 1,
            ));
        }
    }
    Ok(out)
}

/// The data layout message of a dataset's object header.
fn data_layout(
    file: &Hdf5File,
    ds: &H5Dataset,
) -> Result<Option<hdf5_reader::messages::layout::DataLayout>, hdf5_reader::error::Error> {
    let header = file.get_or_parse_header(ds.address())?;
    Ok(header.messages.iter().find_map(|m| match m {
        HdfMessage::DataLayout(l) => Some(l.layout.clone()),
        _ => None,
    }))
}

/// On a remote store, fetches the chunk indexes of every dataset level by level before
/// the walk reads them one node at a time.
fn read_ahead_chunk_indexes(file: &Hdf5File, reader: &BlockingReader) {
    let Ok(datasets) = all_datasets(file) else {
        return;
    };
    let trees: Vec<prefetch::ChunkTree> = datasets
        .iter()
        .filter_map(|(_, ds)| {
            let layout = data_layout(file, ds).ok()??;
            prefetch::chunk_tree(&layout, ds.shape().len())
        })
        .collect();
    prefetch::chunk_trees(file, reader, &trees);
}

/// Values the walk needs from a dataset's data, read once every array is known so that
/// all their chunks are fetched in one round trip.
struct ValuesToRead {
    group: String,
    array: String,
    dataset: H5Dataset,
    /// Coordinate (or bounds) values, or else a curvilinear grid's extent.
    coordinates: bool,
}

/// The array `name` of the group at `path` below `root`.
fn array_at<'g>(root: &'g mut Group, path: &str, name: &str) -> Option<&'g mut Array> {
    let mut group = root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        group = group.groups.iter_mut().find(|g| g.name == part)?;
    }
    group.arrays.iter_mut().find(|a| a.name == name)
}

pub(crate) fn read(
    reader: Arc<BlockingReader>,
    options: &ScanOptions,
) -> Result<Dataset, ScanError> {
    let url = reader.reader().url().to_string();
    let size = reader.size();
    let corrupt = |e: hdf5_reader::error::Error| to_scan_error(&url, size, e);
    let file = open(&reader, options)?;
    let remote = !reader.reader().is_local();
    if remote {
        read_ahead_chunk_indexes(&file, &reader);
    }
    let root = file.root_group().map_err(corrupt)?;
    let root_attrs = root.attributes().map_err(corrupt)?;
    let is_netcdf = root_attrs
        .iter()
        .any(|a| a.name == "_NCProperties" || a.name == "_IsNetcdf4")
        || has_netcdf_markers(&root);
    // Dimension names from the netCDF-4 data model; absent for plain HDF5.
    let nc = if is_netcdf {
        netcdf_reader::nc4::groups::build_root_group(&file, NcMetadataMode::Lossy).ok()
    } else {
        None
    };
    let mut ctx = Walk {
        file: &file,
        url: &url,
        options,
        is_netcdf,
        refused: Vec::new(),
        visited: HashSet::new(),
        values_to_read: Vec::new(),
        value_chunks: Vec::new(),
    };
    let mut out_root = Group::new("");
    ctx.walk(&root, nc.as_ref(), "", &mut out_root, 0)?;
    let refused = ctx.refused;
    if remote && let Err(e) = reader.prefetch(&ctx.value_chunks) {
        tracing::debug!(url = %url, "coordinate read-ahead stopped: {e}");
    }
    for v in ctx.values_to_read {
        let Some(array) = array_at(&mut out_root, &v.group, &v.array) else {
            continue;
        };
        // Decoded through hdf5-reader's filters; a coordinate it cannot decode simply has
        // no values (extents then come from elsewhere, and a combination that needs them
        // says so), a curvilinear latitude or longitude no extent (and the item no bbox).
        let values = v
            .dataset
            .read_raw_bytes()
            .ok()
            .and_then(|b| zarrstac_model::decode_numbers(&b, &array.dtype));
        if v.coordinates {
            array.coordinate_values = values;
        } else {
            array.grid_extent = values.and_then(|v| array.grid_extent_of(&v));
        }
    }
    Ok(Dataset {
        source_url: url,
        source_size: size,
        format: if is_netcdf {
            SourceFormat::NetCdf4
        } else {
            SourceFormat::Hdf5
        },
        root: out_root,
        refused,
    })
}

fn has_netcdf_markers(root: &H5Group) -> bool {
    root.datasets().ok().is_some_and(|ds| {
        ds.iter().any(|d| {
            d.attributes()
                .iter()
                .any(|a| a.name == "_Netcdf4Dimid" || a.name == "_Netcdf4Coordinates")
        })
    })
}

fn to_scan_error(url: &str, size: u64, e: hdf5_reader::error::Error) -> ScanError {
    use hdf5_reader::error::Error as E;
    match e {
        E::UnexpectedEof {
            offset,
            needed,
            available,
        } => ScanError::Truncated {
            url: url.to_string(),
            detail: format!(
                "needed {needed} bytes at offset {offset}, {available} available (file size {size})"
            ),
        },
        E::OffsetOutOfBounds(offset) => ScanError::Truncated {
            url: url.to_string(),
            detail: format!("address {offset} lies outside the file ({size} bytes)"),
        },
        E::Io(io) => ScanError::Corrupt {
            url: url.to_string(),
            format: "HDF5",
            detail: format!("read failed: {io}"),
        },
        other => ScanError::Corrupt {
            url: url.to_string(),
            format: "HDF5",
            detail: other.to_string(),
        },
    }
}

struct Walk<'a> {
    file: &'a Hdf5File,
    url: &'a str,
    options: &'a ScanOptions,
    is_netcdf: bool,
    refused: Vec<Refusal>,
    visited: HashSet<u64>,
    values_to_read: Vec<ValuesToRead>,
    /// The stored chunks of `values_to_read`, fetched in one wave on object stores.
    value_chunks: Vec<std::ops::Range<u64>>,
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Walk<'_> {
    /// Defers reading `ds`'s values into `array` of the group at `path` until every array
    /// is known, noting its stored chunks for the one wave that fetches them all.
    fn read_values_later(&mut self, path: &str, array: &Array, ds: &H5Dataset, coordinates: bool) {
        self.value_chunks
            .extend(array.manifest.iter().filter_map(|(_, chunk)| match chunk {
                ChunkRef::Range { offset, length, .. } => Some(*offset..offset + length),
                _ => None,
            }));
        self.values_to_read.push(ValuesToRead {
            group: path.to_string(),
            array: array.name.clone(),
            dataset: ds.clone(),
            coordinates,
        });
    }

    fn err(&self, e: hdf5_reader::error::Error) -> ScanError {
        to_scan_error(self.url, self.file.storage().len(), e)
    }

    fn walk(
        &mut self,
        group: &H5Group,
        nc: Option<&NcGroup>,
        path: &str,
        out: &mut Group,
        depth: usize,
    ) -> Result<(), ScanError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(ScanError::Corrupt {
                url: self.url.to_string(),
                format: "HDF5",
                detail: format!("groups nested deeper than {MAX_GROUP_DEPTH} levels at '{path}'"),
            });
        }
        if !self.visited.insert(group.address()) {
            // A hard link back to a group already read: reading it again would loop.
            return Ok(());
        }
        let attrs = group.attributes().map_err(|e| self.err(e))?;
        out.attributes = self.convert_attributes(&attrs, path);
        let (groups, datasets) = group.members().map_err(|e| self.err(e))?;
        let mut phony = PhonyDims::default();
        for ds in &datasets {
            let name = base_name(ds.name()).to_string();
            let var_path = zarrstac_model::join_path(path, &name);
            let attrs = ds.attributes();
            if attrs.iter().any(|a| {
                a.name == "NAME"
                    && a.read_string()
                        .is_ok_and(|s| s.contains(BARE_DIMENSION_MARK))
            }) {
                continue; // a netCDF dimension without a variable: no data
            }
            let nc_var = nc.and_then(|g| g.variables.iter().find(|v| v.name == name));
            match self.dataset_to_array(ds, &name, &var_path, &attrs, nc_var, &mut phony) {
                Ok(array) => {
                    let coordinates = array.wants_coordinate_values();
                    if coordinates || array.wants_grid_extent() {
                        self.read_values_later(path, &array, ds, coordinates);
                    }
                    out.arrays.push(array)
                }
                Err(Refused(reason)) => self.refused.push(Refusal {
                    path: var_path,
                    reason,
                }),
            }
        }
        for i in out.bounds_to_read() {
            let array = &out.arrays[i];
            if let Some(ds) = datasets.iter().find(|d| base_name(d.name()) == array.name) {
                self.read_values_later(path, array, ds, true);
            }
        }
        for child in &groups {
            let name = base_name(child.name()).to_string();
            let child_path = zarrstac_model::join_path(path, &name);
            let nc_child = nc.and_then(|g| g.groups.iter().find(|c| c.name == name));
            let mut out_child = Group::new(name);
            self.walk(child, nc_child, &child_path, &mut out_child, depth + 1)?;
            out.groups.push(out_child);
        }
        Ok(())
    }

    fn convert_attributes(&mut self, attrs: &[hdf5_reader::Attribute], path: &str) -> Attributes {
        let mut out = Attributes::new();
        for a in attrs {
            if HIDDEN_ATTRIBUTES.contains(&a.name.as_str()) {
                continue;
            }
            match dtype::attribute_value(a) {
                Ok(v) => {
                    out.insert(a.name.clone(), v);
                }
                Err(reason) => tracing::warn!(
                    target: "zarrstac::report",
                    "{}: attribute '{}' of '{}' not carried over: {reason}",
                    self.url,
                    a.name,
                    if path.is_empty() { "/" } else { path }
                ),
            }
        }
        out
    }

    fn dataset_to_array(
        &mut self,
        ds: &H5Dataset,
        name: &str,
        path: &str,
        attrs: &[hdf5_reader::Attribute],
        nc_var: Option<&netcdf_reader::NcVariable>,
        phony: &mut PhonyDims,
    ) -> Result<Array, Refused> {
        let h5_dtype = ds.dtype().clone();
        let dtype = dtype::convert(&h5_dtype).map_err(Refused)?;
        let shape = ds.shape().to_vec();
        let header = self
            .file
            .get_or_parse_header(ds.address())
            .map_err(|e| Refused(format!("object header unreadable: {e}")))?;
        let mut layout = None;
        let mut pipeline = None;
        let mut external = false;
        for m in &header.messages {
            match m {
                HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
                HdfMessage::FilterPipeline(p) => pipeline = Some(p.clone()),
                HdfMessage::ExternalFiles(_) => external = true,
                _ => {}
            }
        }
        if external {
            return Err(Refused(
                "data is stored in external files outside this HDF5 file".into(),
            ));
        }
        let layout = layout.ok_or_else(|| Refused("dataset has no data layout message".into()))?;

        // netCDF-4 names a variable `_nc4_non_coord_<name>` when it shares its name with a
        // dimension it is not the coordinate of. The stored name is kept: as `<name>` it
        // would clash with the dimension and the group would not open in xarray.
        let name = name.to_string();
        let dimensions = match nc_var {
            Some(v) if v.dimensions.len() == shape.len() => {
                v.dimensions.iter().map(|d| d.name.clone()).collect()
            }
            _ => phony.names(&shape),
        };
        let mut attributes = self.convert_attributes(attrs, path);
        if let hdf5_reader::Datatype::Enum { members, base } = &h5_dtype {
            // Keep the enumeration's meaning beside its integer codes, CF-style.
            let values: Vec<i64> = members
                .iter()
                .filter_map(|m| match dtype::decode_number(&m.value, base) {
                    Some(dtype::Number::Int(i)) => Some(i),
                    Some(dtype::Number::UInt(u)) => Some(u as i64),
                    _ => None,
                })
                .collect();
            if values.len() == members.len() {
                attributes
                    .entry("flag_values".into())
                    .or_insert(AttrValue::Int(values));
                attributes.entry("flag_meanings".into()).or_insert_with(|| {
                    AttrValue::String(
                        members
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                });
            }
        }
        let fill_attr = attributes.shift_remove("_FillValue");

        let layout_info = chunks::manifest_for(self.file, ds, &layout, &shape, &dtype, self.url)
            .map_err(Refused)?;
        let item_size = dtype.item_size().unwrap_or(1);
        let codecs = filters::codecs_for(pipeline.as_ref(), item_size);

        let mut array = Array {
            name: name.clone(),
            dtype: dtype.clone(),
            shape: shape.clone(),
            chunk_shape: layout_info.chunk_shape.clone(),
            dimensions,
            codecs: Vec::new(),
            fill_value: None,
            attributes,
            manifest: layout_info.manifest,
            materialized: matches!(
                layout,
                hdf5_reader::messages::layout::DataLayout::Compact { .. }
            )
            .then(|| "compact layout: the data is stored in the object header".to_string()),
            coordinate_values: None,
            grid_extent: None,
        };

        // Why the stored bytes cannot be referenced as they are, if they cannot.
        let must_materialize = if matches!(dtype, DataType::VarString) {
            Some("variable-length strings are stored in the HDF5 global heap".to_string())
        } else if let Some(why) = layout_info.materialize {
            Some(why)
        } else {
            match &codecs {
                Err(filter) => Some(format!("{filter} has no numcodecs codec")),
                Ok(_) if layout_info.skipped_filters => Some(
                    "some chunks were stored with filters skipped (HDF5 filter mask)".to_string(),
                ),
                Ok(_) => None,
            }
        };
        match must_materialize {
            None => array.codecs = codecs.unwrap_or_default(),
            Some(why) => {
                let only_lz4 = pipeline.as_ref().is_some_and(|p| {
                    p.filters
                        .iter()
                        .all(|f| matches!(f.id, 1 | 2 | 3 | 32001 | 32015 | 32004))
                }) && !layout_info.skipped_filters
                    && !matches!(dtype, DataType::VarString);
                match self.materialize(ds, &mut array, &why) {
                    Ok(()) => {}
                    Err(too_big) if only_lz4 => {
                        // Too big to inline, but imagecodecs' lz4h5 codec decodes the
                        // stored bytes: reference them.
                        let p = pipeline.as_ref().expect("checked above");
                        array.codecs = p
                            .filters
                            .iter()
                            .map(|f| match f.id {
                                32004 => Ok(Codec::Lz4Hdf5),
                                _ => filters::codecs_for(
                                    Some(&hdf5_reader::messages::filter_pipeline::FilterPipelineMessage {
                                        filters: vec![f.clone()],
                                    }),
                                    item_size,
                                )
                                .map(|mut v| v.remove(0)),
                            })
                            .collect::<Result<_, _>>()
                            .map_err(|_| Refused(too_big.clone()))?;
                        tracing::info!(
                            target: "zarrstac::report",
                            "{}: '{path}' references LZ4 chunks: readers need imagecodecs ({too_big})",
                            self.url
                        );
                    }
                    Err(too_big) => return Err(Refused(too_big)),
                }
            }
        }

        // Fill value: `_FillValue` as set; otherwise the value unwritten chunks read back as,
        // only where some chunk is unwritten (so fully written data decodes exactly as the
        // source does, with nothing masked that the source leaves unmasked).
        array.fill_value = match &fill_attr {
            Some(v) => crate::netcdf3::checked_fill(v, &dtype, self.url, &array.name),
            None => None,
        };
        let total_chunks: u64 = array.chunk_grid().iter().product();
        let has_missing = (array.manifest.len() as u64) < total_chunks;
        if array.fill_value.is_none() && has_missing {
            let from_header = ds
                .fill_value()
                .filter(|f| f.defined)
                .and_then(|f| f.value.as_ref())
                .and_then(|raw| dtype::fill_from_bytes(raw, &h5_dtype, &dtype));
            array.fill_value = from_header.or_else(|| {
                if self.is_netcdf {
                    dtype::netcdf_default_fill(&dtype)
                } else if dtype.is_numeric() {
                    Some(zarrstac_model::FillValue::Int(0))
                } else {
                    None
                }
            });
        }
        Ok(array)
    }

    /// Reads and decodes the whole variable into one inline chunk, within the limit.
    fn materialize(&self, ds: &H5Dataset, array: &mut Array, why: &str) -> Result<(), String> {
        let limit = self.options.materialize_limit;
        let elements: u64 = array.shape.iter().product();
        let bytes = match &array.dtype {
            DataType::VarString => {
                if elements > limit / 16 {
                    return Err(format!(
                        "{why}; {elements} strings exceed the materialize limit of {limit} bytes"
                    ));
                }
                let strings = if array.shape.is_empty() {
                    ds.read_string().map(|s| vec![s])
                } else {
                    ds.read_strings()
                }
                .map_err(|e| format!("{why}; reading the strings failed: {e}"))?;
                let encoded = encode_vlen_utf8(&strings);
                if encoded.len() as u64 > limit {
                    return Err(format!(
                        "{why}; {} bytes of strings exceed the materialize limit of {limit} bytes",
                        encoded.len()
                    ));
                }
                array.codecs = vec![Codec::VlenUtf8];
                encoded
            }
            dt => {
                let size = elements.saturating_mul(dt.item_size().unwrap_or(1));
                if size > limit {
                    return Err(format!(
                        "{why}, and its {size} decoded bytes exceed the materialize limit of {limit} bytes"
                    ));
                }
                array.codecs = Vec::new();
                if elements == 0 {
                    Vec::new()
                } else {
                    ds.read_raw_bytes()
                        .map_err(|e| format!("{why}; decoding the data failed: {e}"))?
                }
            }
        };
        array.chunk_shape = array.shape.iter().map(|&n| n.max(1)).collect();
        let mut manifest = ChunkManifest::new(array.shape.len());
        if elements > 0 {
            manifest
                .push(
                    &vec![0; array.shape.len()],
                    ChunkRef::Inline(Arc::from(bytes.into_boxed_slice())),
                )
                .map_err(|e| e.to_string())?;
        }
        array.manifest = manifest;
        array.materialized = Some(why.to_string());
        Ok(())
    }
}

struct Refused(String);

/// Encodes strings in numcodecs' `vlen-utf8` layout: a count, then each string's length
/// and bytes (little-endian 32-bit integers).
fn encode_vlen_utf8(strings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + strings.iter().map(|s| 4 + s.len()).sum::<usize>());
    out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    for s in strings {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Dimension names for datasets without netCDF dimensions: one name per distinct
/// length within a group, as netCDF-C names HDF5 "phony" dimensions, so arrays that
/// share a length share a dimension and arrays that differ never clash.
#[derive(Default)]
struct PhonyDims {
    by_length: HashMap<u64, String>,
}

impl PhonyDims {
    fn names(&mut self, shape: &[u64]) -> Vec<String> {
        let mut used_here = HashSet::new();
        shape
            .iter()
            .map(|&n| {
                let next = self.by_length.len();
                let name = self
                    .by_length
                    .entry(n)
                    .or_insert_with(|| format!("phony_dim_{next}"))
                    .clone();
                if used_here.insert(name.clone()) {
                    name
                } else {
                    // The same length twice in one array needs two names.
                    let extra = format!("phony_dim_{}", self.by_length.len() + used_here.len());
                    used_here.insert(extra.clone());
                    extra
                }
            })
            .collect()
    }
}
