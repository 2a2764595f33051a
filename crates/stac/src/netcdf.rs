//! Items for single NetCDF/HDF5 files (CMIP6 and CMIP5 outputs included).

use serde_json::{Map, Value, json};
use zarrstac_model::{Dataset, SourceFormat};

use crate::cf;
use crate::item::*;

/// Global attributes carried as `cmip6:*` properties, with integer-valued ones marked.
const CMIP6_ATTRIBUTES: &[(&str, bool)] = &[
    ("activity_id", false),
    ("data_specs_version", false),
    ("experiment", false),
    ("experiment_id", false),
    ("forcing_index", true),
    ("frequency", false),
    ("grid", false),
    ("grid_label", false),
    ("initialization_index", true),
    ("institution", false),
    ("institution_id", false),
    ("license", false),
    ("nominal_resolution", false),
    ("physics_index", true),
    ("product", false),
    ("realization_index", true),
    ("realm", false),
    ("source", false),
    ("source_id", false),
    ("source_type", false),
    ("sub_experiment", false),
    ("sub_experiment_id", false),
    ("table_id", false),
    ("variable_id", false),
    ("variant_label", false),
];

pub(crate) fn global<'a>(d: &'a Dataset, key: &str) -> Option<&'a str> {
    d.root.attributes.get(key).and_then(|v| v.as_str())
}

/// The collection a file belongs to when the caller names none: its dataset family.
pub fn family(d: &Dataset) -> String {
    let lower = |s: &str| safe_id(&s.to_ascii_lowercase());
    if global(d, "mip_era") == Some("CMIP6") {
        if let (Some(t), Some(v)) = (global(d, "table_id"), global(d, "variable_id")) {
            return format!("cmip6-{}-{}", lower(t), lower(v));
        }
        return "cmip6".into();
    }
    if let Some(p) = global(d, "project_id") {
        let main_variable = cf::describe(d)
            .bands
            .first()
            .and_then(|b| b["name"].as_str().map(str::to_string));
        if let (Some(f), Some(v)) = (global(d, "frequency"), main_variable) {
            return format!("{}-{}-{}", lower(p), lower(f), lower(&v));
        }
        return lower(p);
    }
    match d.format {
        SourceFormat::NetCdf3Classic
        | SourceFormat::NetCdf3Offset64
        | SourceFormat::NetCdf3Data64 => "netcdf3".into(),
        SourceFormat::NetCdf4 => "netcdf4".into(),
        SourceFormat::Hdf5 => "hdf5".into(),
        SourceFormat::Zarr | SourceFormat::ZarrV3 => "zarr".into(),
    }
}

/// The collection of a multi-file dataset's item when the caller names none: `CMIP6` for
/// a CMIP6 dataset (where ESGF keeps them, and the cmip6 extension requires), else the
/// dataset family.
pub fn dataset_collection(d: &Dataset) -> String {
    if global(d, "mip_era") == Some("CMIP6") {
        crate::cmip6::COLLECTION.into()
    } else {
        family(d)
    }
}

/// The id of a file's item: its file name without the extension, made URL-safe.
pub fn item_id(d: &Dataset) -> String {
    safe_id(file_stem(&d.source_url))
}

fn file_stem(url: &str) -> &str {
    let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url);
    for ext in [".nc4", ".nc", ".h5", ".hdf5", ".he5", ".hdf", ".cdf"] {
        if let Some(stem) = name.strip_suffix(ext) {
            return stem;
        }
    }
    name
}

/// The STAC item of one NetCDF/HDF5 file.
pub fn item_for_file(d: &Dataset, opts: &ItemOptions) -> Result<Value, ItemError> {
    let cube = cf::describe(d);
    let mut props = Map::new();
    match &cube.time {
        Some(t) => props.extend(time_properties(&t.start, &t.end)),
        None => {
            let fallback = ["time_coverage_start", "time_coverage_end"]
                .iter()
                .map(|k| global(d, k).and_then(normalize_timestamp))
                .collect::<Vec<_>>();
            match (&fallback[0], &fallback[1], &opts.source_modified) {
                (Some(s), Some(e), _) => props.extend(time_properties(s, e)),
                (Some(s), None, _) => props.extend(time_properties(s, s)),
                (None, _, Some(m)) => {
                    props.insert("datetime".into(), json!(m));
                }
                _ => {
                    return Err(ItemError::NoTime(
                        "no decodable time coordinate, no time_coverage_start and no source modification time".into(),
                    ));
                }
            }
        }
    }
    if let Some(title) = global(d, "title") {
        props.insert("title".into(), json!(title));
    }
    let mut extensions = vec![FILE];
    if !cube.dimensions.is_empty() {
        props.insert(
            "cube:dimensions".into(),
            Value::Object(cube.dimensions.clone()),
        );
        props.insert(
            "cube:variables".into(),
            Value::Object(cube.variables.clone()),
        );
        extensions.push(DATACUBE);
    }
    if cube.bbox.is_some() {
        props.insert("proj:code".into(), json!("EPSG:4326"));
        extensions.push(PROJECTION);
    }
    if global(d, "mip_era") == Some("CMIP6") {
        for (key, integer) in CMIP6_ATTRIBUTES {
            let Some(v) = d.root.attributes.get(*key) else {
                continue;
            };
            let value = if *integer {
                v.as_f64().map(|f| json!(f as i64))
            } else {
                v.as_str().map(|s| json!(s))
            };
            if let Some(value) = value {
                props.insert(format!("cmip6:{key}"), value);
            }
        }
        if let Some(variant) = global(d, "variant_label") {
            let member = match global(d, "sub_experiment_id") {
                Some(s) if s != "none" => format!("{s}-{variant}"),
                _ => variant.to_string(),
            };
            props.insert("cmip6:member_id".into(), json!(member));
        }
    }
    if !cube.cf_parameters.is_empty() {
        props.insert(
            "cf:parameter".into(),
            Value::Array(cube.cf_parameters.clone()),
        );
    }

    let media = source_media_type(d.format);
    let mut assets = Map::new();
    let mut source = json!({
        "href": d.source_url,
        "type": media,
        "roles": ["data", "source"],
        "file:size": d.source_size,
    });
    let mut links = Vec::new();
    let group_fields = |asset: &mut Value| {
        if !cube.bands.is_empty() {
            asset["bands"] = Value::Array(cube.bands.clone());
        }
        if !cube.cf_parameters.is_empty() {
            asset["cf:parameter"] = Value::Array(cube.cf_parameters.clone());
        }
    };
    if let Some(refs) = &opts.refs_href {
        let mut store = json!({
            "href": refs,
            "type": opts.store_style.media_type(),
            "title": "Virtual Zarr store (references into the source file)",
            "roles": ["data", "references"],
            "zarr:node_type": "group",
            "zarr:zarr_format": 2,
        });
        group_fields(&mut store);
        assets.insert("source".into(), source);
        assets.insert("zarr".into(), store);
        extensions.push(ZARR);
        links.push(json!({"rel": "store", "href": refs, "type": opts.store_style.media_type(), "title": "Virtual Zarr store"}));
    } else {
        group_fields(&mut source);
        assets.insert("source".into(), source);
    }
    if !cube.cf_parameters.is_empty() {
        extensions.push(CF);
    }
    extensions.sort_unstable();

    let collection = opts.collection.clone().unwrap_or_else(|| family(d));
    let mut item = json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": item_id(d),
        "collection": collection,
        "geometry": cube.bbox.map_or(Value::Null, bbox_polygon),
        "properties": Value::Object(props),
        "links": links,
        "assets": Value::Object(assets),
    });
    if let Some(b) = cube.bbox {
        item["bbox"] = json!(b);
    }
    for note in &cube.notes {
        tracing::info!(target: "zarrstac::report", "{}: {note}", d.source_url);
    }
    Ok(item)
}

/// A timestamp from a global attribute as RFC 3339, when it is one.
pub(crate) fn normalize_timestamp(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Media type of a source file's asset.
fn source_media_type(format: SourceFormat) -> &'static str {
    match format {
        SourceFormat::Hdf5 => "application/x-hdf5",
        _ => "application/netcdf",
    }
}

/// What a dataset's item needs to know of one of its files, kept with the dataset's
/// stored state so that the item is rebuilt without reading the file again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetMember {
    /// The file's absolute URL.
    pub url: String,
    /// The key of its asset: the file's own item id.
    pub asset_key: String,
    /// Size in bytes.
    pub size: u64,
    /// Its own time span (RFC 3339), when it has a time coordinate.
    pub start: Option<String>,
    pub end: Option<String>,
    pub tracking_id: Option<String>,
    /// Its `version` global attribute.
    pub version: Option<String>,
    /// Its `creation_date` global attribute.
    pub creation_date: Option<String>,
}

impl DatasetMember {
    pub fn of(d: &Dataset) -> Self {
        let time = cf::describe(d).time;
        DatasetMember {
            url: d.source_url.clone(),
            asset_key: item_id(d),
            size: d.source_size,
            start: time.as_ref().map(|t| t.start.clone()),
            end: time.map(|t| t.end),
            tracking_id: global(d, "tracking_id").map(str::to_string),
            version: global(d, "version").map(str::to_string),
            creation_date: global(d, "creation_date").map(str::to_string),
        }
    }
}

/// The id of a dataset's item: the dataset id with its version, when one is known.
pub fn dataset_item_id(dataset_id: &str, members: &[DatasetMember]) -> String {
    match dataset_version(members) {
        Some(v) => format!("{dataset_id}.v{v}"),
        None => dataset_id.to_string(),
    }
}

/// The version of a dataset: a `vYYYYMMDD` directory in a file's path (the DRS layout),
/// else a `version` global attribute, else the day of the newest `creation_date`.
/// Members are taken in URL order, whatever order they are given in.
pub fn dataset_version(members: &[DatasetMember]) -> Option<String> {
    // The first member in URL order that has one, found in one pass: a rebuild asks this
    // of every member on each arrival, so no sorting.
    fn first_by_url<'a>(
        members: &'a [DatasetMember],
        pick: impl Fn(&'a DatasetMember) -> Option<&'a str>,
    ) -> Option<&'a str> {
        members
            .iter()
            .filter_map(|m| Some((m.url.as_str(), pick(m)?)))
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(_, v)| v)
    }
    if let Some(v) = first_by_url(members, |m| version_directory(&m.url)) {
        return Some(v.to_string());
    }
    if let Some(v) = first_by_url(members, |m| m.version.as_deref()) {
        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
        if digits.len() == 8 {
            return Some(digits);
        }
    }
    members
        .iter()
        .filter_map(|f| f.creation_date.as_deref())
        .filter_map(|c| {
            // The digits of its first ten characters (a date), when they are eight.
            let mut digits = [0u8; 8];
            let mut n = 0;
            for &b in c.as_bytes().iter().take(10).filter(|b| b.is_ascii_digit()) {
                *digits.get_mut(n)? = b;
                n += 1;
            }
            (n == 8).then_some(digits)
        })
        .max()
        .map(|d| d.iter().map(|&b| b as char).collect())
}

/// The digits of a `vYYYYMMDD` path segment of a URL (the DRS version directory).
fn version_directory(url: &str) -> Option<&str> {
    if !url.contains("/v") {
        return None;
    }
    url.split('/')
        .find(|seg| {
            seg.len() == 9 && seg.starts_with('v') && seg[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(|seg| &seg[1..])
}

/// A file's asset: its own time span, size and tracking id.
fn file_asset(f: &DatasetMember, media: &str) -> Value {
    let mut asset = json!({
        "href": f.url,
        "type": media,
        "roles": ["data"],
        "file:size": f.size,
    });
    if let (Some(start), Some(end)) = (&f.start, &f.end) {
        asset["start_datetime"] = json!(start);
        asset["end_datetime"] = json!(end);
    }
    if let Some(tracking) = &f.tracking_id {
        asset["cmip6:tracking_id"] = json!(tracking);
    }
    asset
}

/// Whether a dataset item of these members keeps its files' assets inline.
pub fn keeps_file_assets(members: &[DatasetMember], opts: &ItemOptions) -> bool {
    opts.max_item_assets.is_none_or(|max| members.len() <= max)
}

/// The members in the order of their asset documents: by time, then asset key.
pub fn in_document_order(members: &[DatasetMember]) -> Vec<&DatasetMember> {
    let mut sorted: Vec<&DatasetMember> = members.iter().collect();
    sorted.sort_by(|a, b| {
        (a.start.as_deref(), &a.asset_key).cmp(&(b.start.as_deref(), &b.asset_key))
    });
    sorted
}

/// The asset document of one file of a dataset item (the asset-spec draft: a GeoJSON
/// Feature with the item's geometry and the file's time span, size and tracking id as
/// properties). Links to the item and its collection are the catalog's.
pub fn asset_document(item: &Value, member: &DatasetMember, combined: &Dataset) -> Value {
    let source_type = source_media_type(combined.format);
    let asset = file_asset(member, source_type);
    let mut properties = serde_json::Map::new();
    for key in [
        "start_datetime",
        "end_datetime",
        "file:size",
        "cmip6:tracking_id",
    ] {
        if let Some(v) = asset.get(key) {
            properties.insert(key.into(), v.clone());
        }
    }
    properties.insert(
        "datetime".into(),
        member.start.as_ref().map_or(Value::Null, |s| json!(s)),
    );
    let mut doc = json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": member.asset_key,
        "item": item["id"],
        "collection": item["collection"],
        "href": member.url,
        "media_type": source_type,
        "roles": ["data"],
        "geometry": item["geometry"],
        "properties": properties,
        "links": [],
    });
    if item["bbox"].is_array() {
        doc["bbox"] = item["bbox"].clone();
    }
    doc
}

/// One dataset-level item for the files of a dataset: the combined dataset's cube and
/// time span, the combined references as the store, and one asset per file with its
/// own time span, size and tracking id, so clients can pick the files for a window.
/// `item_id`: [`dataset_item_id`] of the dataset and its members.
pub fn item_for_dataset(
    item_id: &str,
    members: &[DatasetMember],
    combined: &Dataset,
    opts: &ItemOptions,
) -> Result<Value, ItemError> {
    let mut item = item_for_file(combined, opts)?;
    item["id"] = json!(item_id);
    let media = source_media_type(combined.format);
    let assets = item["assets"]
        .as_object_mut()
        .ok_or_else(|| ItemError::Invalid("item has no assets".into()))?;
    let store = assets.remove("zarr");
    let single = assets.remove("source");
    if keeps_file_assets(members, opts) {
        let mut sorted: Vec<&DatasetMember> = members.iter().collect();
        sorted.sort_by(|a, b| a.url.cmp(&b.url));
        for f in sorted {
            assets.insert(f.asset_key.clone(), file_asset(f, media));
        }
    }
    match store {
        Some(s) => {
            assets.insert("zarr".into(), s);
        }
        // Without combined references the bands live on the single-file asset; keep them
        // on the first file's asset then.
        None => {
            if let (Some(Value::Object(src)), Some(first)) = (single, members.first())
                && let Some(Value::Object(a)) = assets.get_mut(&first.asset_key)
            {
                for key in ["bands", "cf:parameter"] {
                    if let Some(v) = src.get(key) {
                        a.insert(key.into(), v.clone());
                    }
                }
            }
        }
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(url: &str, version: Option<&str>, created: Option<&str>) -> DatasetMember {
        DatasetMember {
            url: url.into(),
            asset_key: url.rsplit('/').next().unwrap_or(url).into(),
            size: 1,
            start: None,
            end: None,
            tracking_id: None,
            version: version.map(Into::into),
            creation_date: created.map(Into::into),
        }
    }

    #[test]
    fn the_dataset_version_does_not_depend_on_the_order_of_the_members() {
        let mut members = vec![
            member("s3://a/tas/gn/v20210101/tas_2.nc", None, None),
            member("s3://a/tas/gn/v20200101/tas_1.nc", None, None),
            member("s3://a/tas/gn/latest/tas_0.nc", Some("v20190101"), None),
        ];
        // The version directory of the first URL that has one, before any attribute.
        assert_eq!(dataset_version(&members).as_deref(), Some("20200101"));
        members.reverse();
        assert_eq!(dataset_version(&members).as_deref(), Some("20200101"));

        // Else the `version` attribute of the first file by URL that has one.
        let by_attribute = [
            member("file:///d/b.nc", Some("v20220202"), None),
            member("file:///d/a.nc", Some("v20210202"), None),
            member("file:///d/0.nc", None, Some("2030-01-01T00:00:00Z")),
        ];
        assert_eq!(dataset_version(&by_attribute).as_deref(), Some("20210202"));

        // Else the day of the newest creation date; dates that are not dates count not.
        let by_date = [
            member("file:///d/a.nc", None, Some("2026-01-01T00:00:00Z")),
            member("file:///d/b.nc", None, Some("2026-03-05T10:00:00Z")),
            member("file:///d/c.nc", None, Some("yesterday")),
        ];
        assert_eq!(dataset_version(&by_date).as_deref(), Some("20260305"));
        assert_eq!(
            dataset_version(&[member("file:///d/a.nc", None, None)]),
            None
        );
    }
}
