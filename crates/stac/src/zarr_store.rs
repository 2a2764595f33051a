//! Items for Zarr stores (v2 and v3): EOPF products through their `stac_discovery`
//! document, any other store from its own attributes.
//!
//! A store without `stac_discovery` (GeoZarr conversions may drop it, most stores never
//! had it) is described by what its groups and arrays say: the time from the root's
//! `start_datetime`/`end_datetime`/`datetime` or ACDD `time_coverage_*` attributes (else
//! the store's modification time), the footprint from a group's `spatial:bbox` in its
//! `proj:code` reprojected to WGS 84 (else ACDD `geospatial_*`), one asset per group
//! holding data arrays. A GeoZarr `multiscales` group is one asset of type
//! `...; profile=multiscales` described by its base level, as the STAC Zarr best
//! practices say; its levels get no assets of their own.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use zarrstac_model::{AttrValue, Dataset, Group, join_path};

use crate::eopf::{
    finish_item, group_asset, instant, item_for_eopf, numbers, proj_code, rfc3339, roles_of, shape,
    stac_discovery, store_asset, store_name, unique_key, zarr_media,
};
use crate::item::*;

/// Collection of stores that name none and are no EOPF product.
pub const DEFAULT_COLLECTION: &str = "zarr";
/// Points taken along each edge of a projected box: the edges of a UTM box are curves in
/// longitude/latitude, and the corners alone miss their bulge.
const EDGE_SAMPLES: usize = 16;

/// The STAC item of one Zarr store.
pub fn item_for_zarr(d: &Dataset, opts: &ItemOptions) -> Result<Value, ItemError> {
    if stac_discovery(d).is_some() {
        return item_for_eopf(d, opts);
    }
    item_from_attributes(d, opts)
}

/// An attribute as JSON: structured values are already JSON, one number is a number.
fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::String(s) => json!(s),
        AttrValue::Strings(s) if s.len() == 1 => json!(s[0]),
        AttrValue::Strings(s) => json!(s),
        AttrValue::Int(i) if i.len() == 1 => json!(i[0]),
        AttrValue::UInt(u) if u.len() == 1 => json!(u[0]),
        AttrValue::Json(j) => j.clone(),
        other => other.as_f64().map_or(Value::Null, |f| json!(f)),
    }
}

fn group_attr(g: &Group, key: &str) -> Option<Value> {
    g.attributes
        .get(key)
        .map(attr_json)
        .filter(|v| !v.is_null())
}

/// The groups from the root down to `path`, root first.
fn lineage<'a>(root: &'a Group, path: &str) -> Vec<&'a Group> {
    let mut out = vec![root];
    let mut at = root;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        match at.groups.iter().find(|g| g.name == name) {
            Some(g) => {
                out.push(g);
                at = g;
            }
            None => break,
        }
    }
    out
}

/// The CRS of the group at `path`: its own `proj:code` (or `proj:epsg`), else the
/// nearest ancestor's.
fn crs_of(root: &Group, path: &str) -> Option<String> {
    lineage(root, path).into_iter().rev().find_map(|g| {
        proj_code(
            group_attr(g, "proj:code").as_ref(),
            group_attr(g, "proj:epsg").as_ref(),
        )
    })
}

/// Projection fields of a group from the GeoZarr `proj:`/`spatial:` attributes.
fn group_projection(root: &Group, path: &str) -> Option<Map<String, Value>> {
    let code = crs_of(root, path)?;
    let g = *lineage(root, path).last()?;
    let mut out = Map::new();
    out.insert("proj:code".into(), json!(code));
    let field = |keys: [&str; 2]| keys.iter().find_map(|k| group_attr(g, k));
    if let Some(v) = shape(field(["proj:shape", "spatial:shape"]).as_ref()) {
        out.insert("proj:shape".into(), v);
    }
    if let Some(v) = numbers(
        field(["proj:transform", "spatial:transform"]).as_ref(),
        &[6, 9],
    ) {
        out.insert("proj:transform".into(), v);
    }
    if let Some(v) = numbers(field(["proj:bbox", "spatial:bbox"]).as_ref(), &[4]) {
        out.insert("proj:bbox".into(), v);
    }
    Some(out)
}

/// `[west, south, east, north]` in WGS 84 of a box in the CRS `code` (`EPSG:n`), by
/// reprojecting points along its edges; `None` when the CRS is unknown or the box invalid.
pub fn wgs84_bbox(code: &str, b: [f64; 4]) -> Option<[f64; 4]> {
    let [x0, y0, x1, y1] = b;
    if !b.iter().all(|v| v.is_finite()) || x0 > x1 || y0 > y1 {
        return None;
    }
    let epsg: u16 = code.strip_prefix("EPSG:")?.parse().ok()?;
    if epsg == 4326 {
        return Some(b).filter(|b| b[1] >= -90.0 && b[3] <= 90.0);
    }
    let from = proj4rs::Proj::from_epsg_code(epsg).ok()?;
    let to = proj4rs::Proj::from_proj_string("+proj=longlat +datum=WGS84 +no_defs").ok()?;
    let mut lon = (f64::INFINITY, f64::NEG_INFINITY);
    let mut lat = (f64::INFINITY, f64::NEG_INFINITY);
    let n = EDGE_SAMPLES;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        for (px, py) in [(x, y0), (x, y1), (x0, y), (x1, y)] {
            let (l, p) = proj4rs::adaptors::transform_vertex_2d(&from, &to, (px, py)).ok()?;
            let (l, p) = (l.to_degrees(), p.to_degrees());
            if !l.is_finite() || !p.is_finite() {
                return None;
            }
            lon = (lon.0.min(l), lon.1.max(l));
            lat = (lat.0.min(p), lat.1.max(p));
        }
    }
    let round = |v: f64| (v * 1e6).round() / 1e6;
    Some([round(lon.0), round(lat.0), round(lon.1), round(lat.1)])
}

/// The store's footprint: the first group (root first) with a `spatial:bbox` in a known
/// CRS, else the root's ACDD `geospatial_*` attributes.
fn footprint(root: &Group) -> Option<[f64; 4]> {
    for (path, g) in root.walk_groups() {
        let Some(Value::Array(b)) = group_attr(g, "spatial:bbox") else {
            continue;
        };
        let b: Option<Vec<f64>> = b.iter().map(Value::as_f64).collect();
        if let (Some([x0, y0, x1, y1]), Some(code)) = (
            b.as_deref().and_then(|b| <[f64; 4]>::try_from(b).ok()),
            crs_of(root, &path),
        ) && let Some(w) = wgs84_bbox(&code, [x0, y0, x1, y1])
        {
            return Some(w);
        }
    }
    let acdd = |k: &str| group_attr(root, k).and_then(|v| v.as_f64());
    let b = [
        acdd("geospatial_lon_min")?,
        acdd("geospatial_lat_min")?,
        acdd("geospatial_lon_max")?,
        acdd("geospatial_lat_max")?,
    ];
    wgs84_bbox("EPSG:4326", b)
}

/// The levels of a GeoZarr `multiscales` group, base level first.
fn multiscale_levels(g: &Group) -> Option<Vec<String>> {
    let m = group_attr(g, "multiscales")?;
    let layout = m.get("layout")?.as_array()?;
    let mut levels: Vec<(bool, String)> = layout
        .iter()
        .filter_map(|l| {
            let name = ["asset", "group", "path"]
                .iter()
                .find_map(|k| l.get(*k)?.as_str())?;
            // The base level is the one not derived from another.
            Some((l.get("derived_from").is_some(), name.to_string()))
        })
        .collect();
    levels.sort_by_key(|(derived, _)| *derived);
    let levels: Vec<String> = levels.into_iter().map(|(_, n)| n).collect();
    (!levels.is_empty()).then_some(levels)
}

fn item_from_attributes(d: &Dataset, opts: &ItemOptions) -> Result<Value, ItemError> {
    let root = &d.root;
    let when = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| instant(group_attr(root, k).as_ref()))
    };
    let start = when(&["start_datetime", "time_coverage_start"]);
    let end = when(&["end_datetime", "time_coverage_end"]);
    let mut props = Map::new();
    match (start, end, when(&["datetime"])) {
        (Some(a), Some(b), _) => {
            props.extend(time_properties(&rfc3339(a.min(b)), &rfc3339(a.max(b))));
        }
        (_, _, Some(t)) | (Some(t), None, None) | (None, Some(t), None) => {
            props.insert("datetime".into(), json!(rfc3339(t)));
        }
        (None, None, None) => match &opts.source_modified {
            Some(m) => {
                props.insert("datetime".into(), json!(m));
            }
            None => {
                return Err(ItemError::NoTime(format!(
                    "{}: no datetime, start_datetime/end_datetime or time_coverage_* attribute on the root group",
                    d.source_url
                )));
            }
        },
    }
    for key in ["title", "description"] {
        if let Some(Value::String(s)) = group_attr(root, key)
            && !s.trim().is_empty()
        {
            props.insert(key.into(), json!(s));
        }
    }

    let store = d.source_url.trim_end_matches('/');
    let (media, _) = zarr_media(d);
    let mut product = store_asset(d, "Zarr store");
    // Arrays at the root describe the store itself: they are the product's bands.
    if let Some(Value::Object(own)) = group_asset(
        d,
        "",
        root,
        &["data"],
        None,
        group_projection(root, "").as_ref(),
    ) {
        for (k, v) in own {
            if k.starts_with("proj:") || matches!(k.as_str(), "bands" | "gsd" | "cf:parameter") {
                product[k] = v;
            }
        }
    }
    let mut assets = Map::new();
    assets.insert("product".into(), product);
    let mut used: HashSet<String> = HashSet::from(["product".to_string()]);
    let mut multiscales: Vec<String> = Vec::new();
    for (path, group) in root.walk_groups().into_iter().skip(1) {
        if multiscales.iter().any(|m| {
            path.strip_prefix(m.as_str())
                .is_some_and(|r| r.starts_with('/'))
        }) {
            continue;
        }
        let roles = roles_of(&path).map_or(vec!["data"], |(_, r)| r);
        let asset = match multiscale_levels(group) {
            Some(levels) => {
                multiscales.push(path.clone());
                let base = &levels[0];
                let Some(level) = group.groups.iter().find(|g| &g.name == base) else {
                    continue;
                };
                let level_path = join_path(&path, base);
                let projection = group_projection(root, &level_path);
                group_asset(d, &level_path, level, &roles, None, projection.as_ref()).map(
                    |mut a| {
                        a["href"] = json!(join_path(store, &path));
                        a["type"] = json!(format!("{media}; profile=multiscales"));
                        a["title"] =
                            json!(format!("{path} (multiscales, {} levels)", levels.len()));
                        a
                    },
                )
            }
            None => {
                let projection = group_projection(root, &path);
                group_asset(d, &path, group, &roles, None, projection.as_ref())
            }
        };
        if let Some(a) = asset {
            assets.insert(unique_key(&mut used, &path), a);
        }
    }

    let bbox = footprint(root);
    let item = json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": safe_id(store_name(&d.source_url)),
        "collection": opts.collection.clone().unwrap_or_else(|| DEFAULT_COLLECTION.into()),
        "geometry": bbox.map_or(Value::Null, bbox_polygon),
        "properties": Value::Object(props),
        "links": [
            {"rel": "store", "href": store, "type": media, "title": "Zarr store"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"}
        ],
        "assets": Value::Object(assets),
    });
    Ok(finish_item(item, bbox, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_boxes_become_wgs84_with_their_curved_edges() {
        // A 100 km square in UTM 32N (EPSG:32632) around 9° E, 45–46° N.
        let b = wgs84_bbox(
            "EPSG:32632",
            [450_000.0, 5_000_000.0, 550_000.0, 5_100_000.0],
        )
        .unwrap();
        // Figures from PROJ: pyproj 3.7 `transform_bounds(..., densify_pts=15)`, the same
        // 17 points per edge.
        let proj = [8.353_671, 45.151_706, 9.646_329, 46.053_574];
        for (ours, theirs) in b.iter().zip(proj) {
            assert!((ours - theirs).abs() < 1e-5, "{b:?} vs {proj:?}");
        }
        assert_eq!(
            wgs84_bbox("EPSG:4326", [5.0, 45.0, 15.0, 55.0]),
            Some([5.0, 45.0, 15.0, 55.0])
        );
        assert_eq!(wgs84_bbox("EPSG:4326", [15.0, 45.0, 5.0, 55.0]), None);
        assert_eq!(wgs84_bbox("EPSG:999999", [0.0, 0.0, 1.0, 1.0]), None);
        assert_eq!(wgs84_bbox("ESRI:1", [0.0, 0.0, 1.0, 1.0]), None);
    }
}
