//! Items for ESA EOPF Zarr products (Sentinel-1, -2, -3).
//!
//! The root `stac_discovery` attribute of an EOPF product is a STAC-like item written
//! against older extension versions, with placeholders (`"null"`, `"MISSING"`, `0`,
//! `"TODO"`) and a few fields in the wrong shape. It is the source of the item's
//! properties, but nothing is copied blindly: every field is rewritten to the vendored
//! extension versions and dropped when it would not validate or says nothing. Assets
//! come from the store itself: one group asset per group of `measurements/`, `quality/`
//! and `conditions/` holding data arrays, each array a band.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};
use zarrstac_model::{Array, AttrValue, Dataset, Group, SourceFormat, join_path};

use crate::cf;
use crate::item::*;

pub const VIEW: &str = "https://stac-extensions.github.io/view/v1.1.0/schema.json";
pub const SCIENTIFIC: &str = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json";

/// Media type of a Zarr v2 store and its groups.
pub const ZARR_V2_MEDIA_TYPE: &str = "application/vnd.zarr; version=2";
/// Media type of a Zarr v3 store and its groups.
pub const ZARR_V3_MEDIA_TYPE: &str = "application/vnd.zarr; version=3";

/// The media type and `zarr:zarr_format` of a store's assets.
pub(crate) fn zarr_media(d: &Dataset) -> (&'static str, u8) {
    match d.format {
        SourceFormat::ZarrV3 => (ZARR_V3_MEDIA_TYPE, 3),
        _ => (ZARR_V2_MEDIA_TYPE, 2),
    }
}

/// Field prefix → extension schema. An extension is declared exactly when one of its
/// fields appears in the item (several schemas fail on an item that declares them
/// without using them).
const PREFIXES: &[(&str, &str)] = &[
    ("eo:", EO),
    ("proj:", PROJECTION),
    ("sat:", SAT),
    ("processing:", PROCESSING),
    ("product:", PRODUCT),
    ("sar:", SAR),
    ("raster:", RASTER),
    ("view:", VIEW),
    ("sci:", SCIENTIFIC),
    ("zarr:", ZARR),
];

/// eo v2.0.0 `eo:common_name` values.
const COMMON_NAMES: &[&str] = &[
    "pan",
    "coastal",
    "blue",
    "green",
    "green05",
    "yellow",
    "red",
    "rededge",
    "rededge071",
    "rededge075",
    "rededge078",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
    "lwir",
    "lwir11",
    "lwir12",
];

/// Values EOPF writes where it has nothing to say.
fn is_placeholder(s: &str) -> bool {
    let t = s.trim();
    t.is_empty()
        || ["null", "none", "missing", "todo", "n/a", "unknown"]
            .iter()
            .any(|p| t.eq_ignore_ascii_case(p))
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !is_placeholder(s))
        .map(|s| s.trim().to_string())
}

pub(crate) fn finite(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|f| f.is_finite())
}

/// A timestamp as an instant. EOPF writes `+00:00` offsets and, for some fields (S1
/// `sat:anx_datetime`), no zone at all: those are UTC by the product spec.
pub(crate) fn instant(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
    let s = v?.as_str()?.trim();
    if is_placeholder(s) {
        return None;
    }
    let utc: DateTime<Utc> = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f).ok())?;
            naive.and_utc()
        }
    };
    // RFC 3339 has four-digit years only.
    (1..=9999).contains(&utc.year()).then_some(utc)
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A timestamp as RFC 3339 UTC with `Z`; `None` for placeholders and unparseable text.
pub fn timestamp(v: Option<&Value>) -> Option<String> {
    instant(v).map(rfc3339)
}

/// True for an ISO 8601 duration such as `PT3H`, `P1D`, `PT0.5S`.
pub fn is_iso_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    // Each part: numbers followed by designators in the order given, each at most once.
    fn part(s: &str, designators: &[char], fraction_last: bool) -> Option<usize> {
        let mut count = 0;
        let mut allowed = designators;
        let mut number = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() || (c == '.' && fraction_last) {
                number.push(c);
                continue;
            }
            let at = allowed.iter().position(|d| *d == c)?;
            if number.is_empty()
                || number.starts_with('.')
                || number.ends_with('.')
                || number.matches('.').count() > 1
            {
                return None;
            }
            if number.contains('.') && c != *designators.last()? {
                return None;
            }
            allowed = &allowed[at + 1..];
            number.clear();
            count += 1;
        }
        number.is_empty().then_some(count)
    }
    let Some(d) = part(date, &['Y', 'M', 'W', 'D'], false) else {
        return false;
    };
    match time {
        None => d > 0,
        Some(t) => matches!(part(t, &['H', 'M', 'S'], true), Some(n) if n > 0),
    }
}

/// The `stac_discovery` document of the root group.
pub(crate) fn stac_discovery(d: &Dataset) -> Option<Map<String, Value>> {
    match d.root.attributes.get("stac_discovery")? {
        AttrValue::Json(Value::Object(m)) => Some(m.clone()),
        // A reader that kept it as text: still the same document.
        AttrValue::String(s) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// The store's name without `.zarr`.
pub(crate) fn store_name(url: &str) -> &str {
    let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url);
    name.strip_suffix(".zarr").unwrap_or(name)
}

/// The item id: the product id of `stac_discovery`, without the legacy container suffix
/// (`.SAFE`, `.SEN3`); the store name when the id is a description (S1 writes "SAR
/// Standard L1 Product", which would be the same for every product).
fn item_id(sd: &Map<String, Value>, url: &str) -> String {
    let product_id = text(sd.get("id")).filter(|s| !s.contains(char::is_whitespace));
    match product_id {
        Some(id) => {
            let trimmed = [".SAFE", ".SEN3", ".safe", ".sen3"]
                .iter()
                .find_map(|suffix| id.strip_suffix(suffix))
                .unwrap_or(&id);
            safe_id(trimmed)
        }
        None => safe_id(store_name(url)),
    }
}

/// Every position of a Polygon or MultiPolygon, when all are finite lon/lat pairs.
pub(crate) fn positions(geometry: &Value) -> Option<Vec<[f64; 2]>> {
    let polygons: Vec<&Value> = match geometry.get("type")?.as_str()? {
        "Polygon" => vec![geometry.get("coordinates")?],
        "MultiPolygon" => geometry.get("coordinates")?.as_array()?.iter().collect(),
        _ => return None,
    };
    let mut out = Vec::new();
    for polygon in polygons {
        for ring in polygon.as_array()? {
            for p in ring.as_array()? {
                let p = p.as_array()?;
                let (lon, lat) = (p.first()?.as_f64()?, p.get(1)?.as_f64()?);
                if !(lon.is_finite() && lat.is_finite()) || lon.abs() > 180.0 || lat.abs() > 90.0 {
                    return None;
                }
                out.push([lon, lat]);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The geometry with every ring closed (EOPF S1 leaves them open), or `None` when it is
/// not a usable Polygon/MultiPolygon.
pub(crate) fn closed_geometry(geometry: &Value) -> Option<Value> {
    positions(geometry)?;
    let close = |polygon: &Value| -> Option<Value> {
        let rings = polygon.as_array()?;
        let mut out = Vec::new();
        for ring in rings {
            let mut points = ring.as_array()?.clone();
            if points.first() != points.last() {
                points.push(points.first()?.clone());
            }
            // A linear ring needs four positions, the last equal to the first.
            if points.len() < 4 {
                return None;
            }
            out.push(Value::Array(points));
        }
        (!out.is_empty()).then_some(Value::Array(out))
    };
    let kind = geometry.get("type")?.as_str()?;
    let coordinates = geometry.get("coordinates")?;
    let coordinates = if kind == "Polygon" {
        close(coordinates)?
    } else {
        Value::Array(
            coordinates
                .as_array()?
                .iter()
                .map(close)
                .collect::<Option<Vec<_>>>()?,
        )
    };
    Some(json!({"type": kind, "coordinates": coordinates}))
}

/// West, south, east, north of positions. A footprint spanning more than 180° of
/// longitude crosses the antimeridian: then west is the easternmost of the western
/// hemisphere's side and west > east, as STAC writes such boxes.
pub(crate) fn bbox_of(points: &[[f64; 2]]) -> [f64; 4] {
    let lons = points.iter().map(|p| p[0]);
    let lats = points.iter().map(|p| p[1]);
    let (w, e) = (
        lons.clone().fold(f64::MAX, f64::min),
        lons.fold(f64::MIN, f64::max),
    );
    let (s, n) = (
        lats.clone().fold(f64::MAX, f64::min),
        lats.fold(f64::MIN, f64::max),
    );
    if e - w > 180.0 {
        let west = points
            .iter()
            .map(|p| p[0])
            .filter(|l| *l >= 0.0)
            .fold(f64::MAX, f64::min);
        let east = points
            .iter()
            .map(|p| p[0])
            .filter(|l| *l < 0.0)
            .fold(f64::MIN, f64::max);
        return [west, s, east, n];
    }
    [w, s, e, n]
}

/// A bbox as given, put in order: EOPF writes west > east for footprints that do not
/// cross the antimeridian (a west/east mix-up, not a crossing, when the gap is < 180°).
pub(crate) fn ordered_bbox(v: Option<&Value>) -> Option<[f64; 4]> {
    let b = v?.as_array()?;
    if b.len() != 4 {
        return None;
    }
    let n: Vec<f64> = b.iter().map(Value::as_f64).collect::<Option<_>>()?;
    let (mut w, mut s, mut e, mut no) = (n[0], n[1], n[2], n[3]);
    if n.iter().any(|x| !x.is_finite()) || w.abs() > 180.0 || e.abs() > 180.0 {
        return None;
    }
    if w > e && w - e < 180.0 {
        std::mem::swap(&mut w, &mut e);
    }
    if s > no {
        std::mem::swap(&mut s, &mut no);
    }
    (s >= -90.0 && no <= 90.0).then_some([w, s, e, no])
}

/// Spectral properties of one band, in micrometres as eo v2.0.0 wants them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spectral {
    common_name: Option<String>,
    center: Option<f64>,
    fwhm: Option<f64>,
    solar_illumination: Option<f64>,
}

/// Micrometres to the picometre: drops the float noise of unit conversion (0.41250000000000003).
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The band table of `stac_discovery`: `properties.bands` (S2, wavelengths in nm),
/// `properties.eo:bands` (S3, in µm), else the per-asset `eo:bands` of older products.
/// Keys are lower-case band names as the arrays are named (`b02`, `b8a`, `oa01`).
fn spectral_table(sd: &Map<String, Value>) -> HashMap<String, Spectral> {
    let props = sd.get("properties");
    let mut sources: Vec<&Value> = Vec::new();
    for key in ["bands", "eo:bands"] {
        if let Some(v) = props.and_then(|p| p.get(key)) {
            sources.push(v);
        }
    }
    if let Some(Value::Object(assets)) = sd.get("assets") {
        sources.extend(assets.values().filter_map(|a| a.get("eo:bands")));
    }
    let mut out = HashMap::new();
    for list in sources {
        let Some(list) = list.as_array() else {
            continue;
        };
        for band in list {
            let Some(raw_name) = text(band.get("name")) else {
                continue;
            };
            let lower = raw_name.to_ascii_lowercase();
            // Older tables name S2 bands "01" … "8A"; the arrays are "b01" … "b8a".
            let name = if lower.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                format!("b{lower}")
            } else {
                lower
            };
            if out.contains_key(&name) {
                continue;
            }
            let field = |k: &str| band.get(format!("eo:{k}")).or_else(|| band.get(k));
            let number = |k: &str| {
                let v = field(k)?;
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|f: &f64| f.is_finite() && *f > 0.0)
            };
            // No optical band is centred beyond 20 µm: a larger number is in nanometres.
            let center =
                number("center_wavelength").map(|c| round6(if c > 20.0 { c / 1000.0 } else { c }));
            // S2 mixes units (centre in nm, width in µm); a width wider than the centre
            // wavelength is in nanometres.
            let fwhm = number("full_width_half_max").map(|w| {
                let limit = center.unwrap_or(20.0);
                round6(if w > limit { w / 1000.0 } else { w })
            });
            let common_name = text(field("common_name"))
                .map(|c| c.to_ascii_lowercase())
                .filter(|c| COMMON_NAMES.contains(&c.as_str()));
            out.insert(
                name,
                Spectral {
                    common_name,
                    center,
                    fwhm,
                    solar_illumination: number("solar_illumination"),
                },
            );
        }
    }
    out
}

/// Item properties from `stac_discovery.properties`, each field checked against the
/// vendored extension version it belongs to.
fn properties(p: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    let string = |k: &str| text(p.get(k)).map(Value::String);

    // Common metadata.
    for k in [
        "title",
        "description",
        "license",
        "platform",
        "constellation",
        "mission",
    ] {
        put(k, string(k));
    }
    let instruments: Vec<Value> = match p.get("instruments").or_else(|| p.get("instrument")) {
        Some(Value::String(s)) if !is_placeholder(s) => vec![json!(s.trim())],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| text(Some(v)))
            .map(Value::String)
            .collect(),
        _ => Vec::new(),
    };
    if !instruments.is_empty() {
        put("instruments", Some(Value::Array(instruments)));
    }
    put(
        "gsd",
        finite(p.get("gsd")).filter(|g| *g > 0.0).map(|g| json!(g)),
    );
    for k in ["created", "updated"] {
        put(k, timestamp(p.get(k)).map(Value::String));
    }
    // S1 misspells it `provider`.
    if let Some(Value::Array(list)) = p.get("providers").or_else(|| p.get("provider")) {
        let providers: Vec<Value> = list.iter().filter_map(provider).collect();
        if !providers.is_empty() {
            put("providers", Some(Value::Array(providers)));
        }
    }

    // eo v2.0.0
    for k in ["eo:cloud_cover", "eo:snow_cover"] {
        let v = finite(p.get(k)).filter(|v| (0.0..=100.0).contains(v));
        put(k, v.map(|v| json!(v)));
    }

    // sat v1.1.0
    put(
        "sat:platform_international_designator",
        string("sat:platform_international_designator"),
    );
    put(
        "sat:orbit_state",
        text(p.get("sat:orbit_state"))
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| ["ascending", "descending", "geostationary"].contains(&s.as_str()))
            .map(Value::String),
    );
    for k in [
        "sat:absolute_orbit",
        "sat:relative_orbit",
        "sat:orbit_cycle",
    ] {
        put(
            k,
            p.get(k)
                .and_then(Value::as_i64)
                .filter(|n| *n >= 1)
                .map(|n| json!(n)),
        );
    }
    put(
        "sat:anx_datetime",
        timestamp(p.get("sat:anx_datetime")).map(Value::String),
    );

    // processing v1.2.0: `processing:expression` is an object {format, expression};
    // EOPF's "systematic" is a processing mode, not an expression.
    for k in [
        "processing:level",
        "processing:lineage",
        "processing:facility",
        "processing:version",
    ] {
        put(k, string(k));
    }
    put(
        "processing:datetime",
        timestamp(p.get("processing:datetime")).map(Value::String),
    );
    if let Some(Value::Object(e)) = p.get("processing:expression")
        && e.get("format").is_some_and(Value::is_string)
        && e.contains_key("expression")
    {
        put("processing:expression", Some(Value::Object(e.clone())));
    }
    if let Some(Value::Object(sw)) = p.get("processing:software") {
        let software: Map<String, Value> = sw
            .iter()
            .filter(|(name, _)| !name.trim().is_empty())
            .filter_map(|(name, version)| {
                let v = match version {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }?;
                (!is_placeholder(&v)).then_some((name.clone(), Value::String(v)))
            })
            .collect();
        if !software.is_empty() {
            put("processing:software", Some(Value::Object(software)));
        }
    }

    // product v1.0.0: a timeliness category needs a timeliness (schema dependency).
    put("product:type", string("product:type"));
    let timeliness = text(p.get("product:timeliness")).filter(|s| is_iso_duration(s));
    if let Some(t) = timeliness {
        put("product:timeliness", Some(Value::String(t)));
        put(
            "product:timeliness_category",
            string("product:timeliness_category"),
        );
    }
    put(
        "product:acquisition_type",
        text(p.get("product:acquisition_type"))
            .filter(|s| ["nominal", "calibration", "other"].contains(&s.as_str()))
            .map(Value::String),
    );

    // sar v1.3.0: zeros are EOPF's placeholders for values it did not fill in (a
    // resolution or frequency of 0 is physically meaningless).
    put("sar:instrument_mode", string("sar:instrument_mode"));
    put("sar:product_type", string("sar:product_type"));
    put(
        "sar:frequency_band",
        text(p.get("sar:frequency_band"))
            .filter(|b| ["P", "L", "S", "C", "X", "Ku", "K", "Ka"].contains(&b.as_str()))
            .map(Value::String),
    );
    for k in [
        "sar:center_frequency",
        "sar:bandwidth",
        "sar:resolution_range",
        "sar:resolution_azimuth",
        "sar:pixel_spacing_range",
        "sar:pixel_spacing_azimuth",
        "sar:looks_equivalent_number",
    ] {
        put(k, finite(p.get(k)).filter(|v| *v > 0.0).map(|v| json!(v)));
    }
    for k in ["sar:looks_range", "sar:looks_azimuth"] {
        put(
            k,
            p.get(k)
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
                .map(|n| json!(n)),
        );
    }
    if let Some(Value::Array(pols)) = p.get("sar:polarizations") {
        let mut seen = BTreeSet::new();
        let valid: Vec<Value> = pols
            .iter()
            .filter_map(|v| text(Some(v)).map(|s| s.to_ascii_uppercase()))
            .filter(|s| {
                ["HH", "VV", "HV", "VH", "LH", "LV", "RH", "RV", "CH", "CV"].contains(&s.as_str())
            })
            .filter(|s| seen.insert(s.clone()))
            .map(Value::String)
            .collect();
        if !valid.is_empty() {
            put("sar:polarizations", Some(Value::Array(valid)));
        }
    }
    put(
        "sar:observation_direction",
        text(p.get("sar:observation_direction"))
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s == "left" || s == "right")
            .map(Value::String),
    );

    // view v1.1.0: all zeros is EOPF's "not filled in" (S1 gives 0 for an incidence angle).
    let views = [
        ("view:off_nadir", 0.0, 90.0),
        ("view:incidence_angle", 0.0, 90.0),
        ("view:azimuth", 0.0, 360.0),
        ("view:sun_azimuth", 0.0, 360.0),
        ("view:sun_elevation", -90.0, 90.0),
    ];
    let given: Vec<(&str, f64, f64, f64)> = views
        .iter()
        .filter_map(|(k, lo, hi)| finite(p.get(*k)).map(|v| (*k, v, *lo, *hi)))
        .collect();
    if given.iter().any(|(_, v, _, _)| *v != 0.0) {
        for (k, v, lo, hi) in given {
            if (lo..=hi).contains(&v) {
                put(k, Some(json!(v)));
            }
        }
    }

    // scientific v1.0.0
    put(
        "sci:doi",
        text(p.get("sci:doi"))
            .filter(|d| {
                d.split_once('/').is_some_and(|(prefix, rest)| {
                    prefix.strip_prefix("10.").is_some_and(|r| {
                        r.len() >= 4 && r.chars().all(|c| c.is_ascii_alphanumeric())
                    }) && !rest.is_empty()
                }) && !d.contains(char::is_whitespace)
            })
            .map(Value::String),
    );
    put("sci:citation", string("sci:citation"));

    // projection v2.0.0: the code from EOPF's `proj:epsg`; grid fields only with a CRS.
    let code = proj_code(p.get("proj:code"), p.get("proj:epsg"));
    if let Some(code) = code {
        put("proj:code", Some(Value::String(code)));
        put("proj:bbox", numbers(p.get("proj:bbox"), &[4, 6]));
        put("proj:shape", shape(p.get("proj:shape")));
        put("proj:transform", numbers(p.get("proj:transform"), &[6, 9]));
    }
    out
}

/// A provider as STAC core takes it: a name and known roles.
fn provider(v: &Value) -> Option<Value> {
    let name = text(v.get("name"))?;
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    for k in ["description", "url"] {
        if let Some(s) = text(v.get(k)) {
            out.insert(k.into(), json!(s));
        }
    }
    if let Some(Value::Array(roles)) = v.get("roles") {
        let roles: Vec<Value> = roles
            .iter()
            .filter_map(|r| text(Some(r)).map(|s| s.to_ascii_lowercase()))
            .filter(|r| ["producer", "licensor", "processor", "host"].contains(&r.as_str()))
            .map(Value::String)
            .collect();
        if !roles.is_empty() {
            out.insert("roles".into(), Value::Array(roles));
        }
    }
    Some(Value::Object(out))
}

/// `EPSG:<n>` from a code or an EPSG number.
pub(crate) fn proj_code(code: Option<&Value>, epsg: Option<&Value>) -> Option<String> {
    if let Some(c) = text(code) {
        return Some(c);
    }
    let n = match epsg? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (n > 0).then(|| format!("EPSG:{n}"))
}

pub(crate) fn numbers(v: Option<&Value>, lengths: &[usize]) -> Option<Value> {
    let a = v?.as_array()?;
    let ok = lengths.contains(&a.len()) && a.iter().all(|x| x.as_f64().is_some_and(f64::is_finite));
    ok.then(|| Value::Array(a.clone()))
}

pub(crate) fn shape(v: Option<&Value>) -> Option<Value> {
    let a = v?.as_array()?;
    (a.len() == 2 && a.iter().all(|x| x.as_u64().is_some())).then(|| Value::Array(a.clone()))
}

/// An attribute of an array as JSON: the array's own, else the one EOPF keeps in
/// `_eopf_attrs`.
pub(crate) fn array_attr(a: &Array, key: &str) -> Option<Value> {
    if let Some(v) = a.attributes.get(key) {
        let one = match v {
            AttrValue::String(s) => json!(s),
            AttrValue::Strings(s) if s.len() == 1 => json!(s[0]),
            // Integers stay integers: an EPSG code of 32634.0 is not a code.
            AttrValue::Int(i) if i.len() == 1 => json!(i[0]),
            AttrValue::UInt(u) if u.len() == 1 => json!(u[0]),
            AttrValue::Json(j) => j.clone(),
            other => other.as_f64().map_or(Value::Null, |f| json!(f)),
        };
        return Some(one).filter(|v| !v.is_null());
    }
    match a.attributes.get("_eopf_attrs") {
        Some(AttrValue::Json(Value::Object(m))) => m.get(key).cloned(),
        _ => None,
    }
}

pub(crate) fn array_text(a: &Array, key: &str) -> Option<String> {
    text(array_attr(a, key).as_ref())
}

/// Names an array declares as its coordinates (CF string or EOPF list).
fn declared_coordinates(a: &Array) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: Option<&Value>| match v {
        Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
        Some(Value::Array(list)) => {
            out.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
        }
        _ => {}
    };
    if let Some(AttrValue::String(s)) = a.attributes.get("coordinates") {
        add(Some(&json!(s)));
    }
    if let Some(AttrValue::Json(Value::Object(m))) = a.attributes.get("_eopf_attrs") {
        add(m.get("coordinates"));
    }
    out
}

/// The arrays of a group that hold data: not coordinates (named like their dimension,
/// declared as another array's coordinate, or plainly lat/lon/x/y/time), not scalars.
pub(crate) fn data_arrays(g: &Group) -> Vec<&Array> {
    let coordinates: HashSet<String> = g.arrays.iter().flat_map(declared_coordinates).collect();
    g.arrays
        .iter()
        .filter(|a| {
            let name = a.name.to_ascii_lowercase();
            let std_name = array_text(a, "standard_name");
            !a.shape.is_empty()
                && !a.is_coordinate()
                && !coordinates.contains(&a.name)
                && !matches!(
                    name.as_str(),
                    "x" | "y" | "lat" | "lon" | "latitude" | "longitude" | "time"
                )
                && !matches!(std_name.as_deref(), Some("latitude" | "longitude" | "time"))
        })
        .collect()
}

/// Projection fields of an array (EOPF puts them on the arrays, not the groups).
pub(crate) fn array_projection(a: &Array) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(code) = proj_code(
        array_attr(a, "proj:code").as_ref(),
        array_attr(a, "proj:epsg").as_ref(),
    ) else {
        return out;
    };
    out.insert("proj:code".into(), json!(code));
    if let Some(v) = shape(array_attr(a, "proj:shape").as_ref()) {
        out.insert("proj:shape".into(), v);
    }
    if let Some(v) = numbers(array_attr(a, "proj:transform").as_ref(), &[6, 9]) {
        out.insert("proj:transform".into(), v);
    }
    if let Some(v) = numbers(array_attr(a, "proj:bbox").as_ref(), &[4, 6]) {
        out.insert("proj:bbox".into(), v);
    }
    out
}

/// Ground sample distance of a group: `r10m` says 10 m; otherwise the pixel size of a
/// projected grid's transform.
pub(crate) fn gsd(group_name: &str, projection: &Map<String, Value>) -> Option<f64> {
    if let Some(m) = group_name
        .strip_prefix('r')
        .and_then(|r| r.strip_suffix('m'))
        && let Ok(n) = m.parse::<f64>()
        && n > 0.0
    {
        return Some(n);
    }
    let geographic = projection.get("proj:code").and_then(Value::as_str) == Some("EPSG:4326");
    let t = projection.get("proj:transform")?.as_array()?;
    let (a, e) = (t.first()?.as_f64()?.abs(), t.get(4)?.as_f64()?.abs());
    (!geographic && a > 0.0 && (a - e).abs() < 1e-9 * a.max(1.0)).then_some(a)
}

/// One band per data array.
pub(crate) fn band(a: &Array, spectral: Option<&Spectral>) -> Value {
    let mut b = Map::new();
    b.insert("name".into(), json!(a.name));
    if let Some(d) = array_text(a, "long_name") {
        b.insert("description".into(), json!(d));
    }
    let unit = ["units", "data_units"]
        .iter()
        .find_map(|k| array_text(a, k));
    if let Some(u) = unit {
        b.insert("unit".into(), json!(u));
    }
    b.insert("data_type".into(), json!(cf::data_type(&a.dtype)));
    if let Some(nd) = a.fill_value.as_ref().and_then(cf::nodata) {
        b.insert("nodata".into(), nd);
    }
    // Only the array's own packing attributes: they are what xarray applies. EOPF's
    // `_eopf_attrs` copies describe its own decoding and may disagree with the store.
    for (attr, field) in [
        ("scale_factor", "raster:scale"),
        ("add_offset", "raster:offset"),
    ] {
        if let Some(v) = a
            .attributes
            .get(attr)
            .and_then(AttrValue::as_f64)
            .filter(|f| f.is_finite())
        {
            b.insert(field.into(), json!(v));
        }
    }
    if let Some(sn) = array_text(a, "standard_name") {
        let mut p = Map::new();
        p.insert("name".into(), json!(sn));
        if let Some(u) = b.get("unit") {
            p.insert("unit".into(), u.clone());
        }
        b.insert("cf:parameter".into(), json!([p]));
    }
    if let Some(s) = spectral {
        if let Some(c) = &s.common_name {
            b.insert("eo:common_name".into(), json!(c));
        }
        if let Some(c) = s.center {
            b.insert("eo:center_wavelength".into(), json!(c));
        }
        if let Some(w) = s.fwhm {
            b.insert("eo:full_width_half_max".into(), json!(w));
        }
        if let Some(i) = s.solar_illumination {
            b.insert("eo:solar_illumination".into(), json!(i));
        }
    }
    Value::Object(b)
}

/// The spectral entry of an array in a measurement group: by its name (`b02`) or the
/// part before the first `_` (`oa01_radiance`).
fn spectral_for<'a>(table: &'a HashMap<String, Spectral>, name: &str) -> Option<&'a Spectral> {
    let lower = name.to_ascii_lowercase();
    table
        .get(&lower)
        .or_else(|| lower.split('_').next().and_then(|p| table.get(p)))
}

/// Roles of a group asset from the EOPF branch it sits in.
pub(crate) fn roles_of(path: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.contains(&"measurements") {
        Some(("measurements", vec!["data"]))
    } else if segments.contains(&"quality") {
        Some(("quality", vec!["quality"]))
    } else if segments.contains(&"conditions") {
        Some(("conditions", vec!["metadata"]))
    } else {
        None
    }
}

/// The name prefix shared by a product's sub-products (S1 puts each polarisation in a
/// group named `S01SIWGRD_<…>_VH`, `…_VV`): left out of asset keys, which would otherwise
/// repeat it, up to its last `_`.
fn sub_product_prefix(root: &Group) -> Option<String> {
    let names: Vec<&str> = root
        .groups
        .iter()
        .map(|g| g.name.as_str())
        .filter(|n| !matches!(*n, "measurements" | "quality" | "conditions"))
        .collect();
    let (first, rest) = names.split_first()?;
    if rest.is_empty() {
        return None;
    }
    // Shared prefix in whole characters, so slicing stays on character boundaries.
    let mut common = first.len();
    for n in rest {
        let shared: usize = first
            .chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        common = common.min(shared);
    }
    let cut = first[..common].rfind('_')? + 1;
    Some(first[..cut].to_string())
}

/// Group assets: one per group under measurements/quality/conditions holding data.
fn group_assets(d: &Dataset, table: &HashMap<String, Spectral>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut used = HashSet::new();
    let prefix = sub_product_prefix(&d.root);
    for (path, group) in d.root.walk_groups() {
        let Some((branch, roles)) = roles_of(&path) else {
            continue;
        };
        let spectral = (branch == "measurements").then_some(table);
        let Some(asset) = group_asset(d, &path, group, &roles, spectral, None) else {
            continue;
        };
        let short = match &prefix {
            Some(p) => path.strip_prefix(p.as_str()).unwrap_or(&path),
            None => &path,
        };
        out.push((unique_key(&mut used, short), asset));
    }
    out
}

/// An asset key for a group path, distinct from those already `used`: distinct paths can
/// flatten to one key (`a/b_c`, `a_b/c`), and both are kept.
pub(crate) fn unique_key(used: &mut HashSet<String>, path: &str) -> String {
    let stem = safe_id(&path.replace('/', "_"));
    let mut key = stem.clone();
    let mut n = 2;
    while !used.insert(key.clone()) {
        key = format!("{stem}_{n}");
        n += 1;
    }
    key
}

/// The asset of the group at `path`, its data arrays as bands; `None` when it holds no
/// data arrays. `spectral` names the bands' wavelengths; `projection` is the group's own
/// (GeoZarr puts it on groups), used when the arrays carry none.
pub(crate) fn group_asset(
    d: &Dataset,
    path: &str,
    group: &Group,
    roles: &[&str],
    spectral: Option<&HashMap<String, Spectral>>,
    projection: Option<&Map<String, Value>>,
) -> Option<Value> {
    let arrays = data_arrays(group);
    if arrays.is_empty() {
        return None;
    }
    let bands: Vec<Value> = arrays
        .iter()
        .map(|a| band(a, spectral.and_then(|t| spectral_for(t, &a.name))))
        .collect();
    let (media, format) = zarr_media(d);
    let mut asset = Map::new();
    asset.insert(
        "href".into(),
        json!(join_path(d.source_url.trim_end_matches('/'), path)),
    );
    asset.insert("type".into(), json!(media));
    asset.insert("title".into(), json!(path));
    asset.insert("roles".into(), json!(roles));
    asset.insert("zarr:node_type".into(), json!("group"));
    asset.insert("zarr:zarr_format".into(), json!(format));
    // Projection of the group: only when every data array that has one agrees.
    let projections: Vec<Map<String, Value>> = arrays
        .iter()
        .map(|a| array_projection(a))
        .filter(|p| !p.is_empty())
        .collect();
    let projection = match projections.split_first() {
        Some((first, rest)) if rest.iter().all(|p| p == first) => first.clone(),
        Some(_) => Map::new(),
        None => projection.cloned().unwrap_or_default(),
    };
    if let Some(g) = gsd(&group.name, &projection) {
        asset.insert("gsd".into(), json!(g));
    }
    asset.extend(projection);
    asset_parameters(&mut asset, &bands);
    asset.insert("bands".into(), Value::Array(bands));
    Some(Value::Object(asset))
}

/// The cf extension wants the parameters on the asset, not only on its bands.
pub(crate) fn asset_parameters(asset: &mut Map<String, Value>, bands: &[Value]) {
    let mut parameters: Vec<Value> = Vec::new();
    for p in bands
        .iter()
        .filter_map(|b| b.get("cf:parameter")?.as_array())
        .flatten()
    {
        if !parameters.contains(p) {
            parameters.push(p.clone());
        }
    }
    if !parameters.is_empty() {
        asset.insert("cf:parameter".into(), Value::Array(parameters));
    }
}

/// The extensions whose fields appear in the item's properties, assets and bands.
pub(crate) fn extensions_used(item: &Value) -> Vec<&'static str> {
    let mut maps: Vec<&Map<String, Value>> = Vec::new();
    maps.extend(item.get("properties").and_then(Value::as_object));
    if let Some(assets) = item.get("assets").and_then(Value::as_object) {
        for asset in assets.values() {
            maps.extend(asset.as_object());
            let bands = asset.get("bands").and_then(Value::as_array);
            maps.extend(bands.into_iter().flatten().filter_map(Value::as_object));
        }
    }
    let keys: Vec<&str> = maps
        .iter()
        .flat_map(|m| m.keys())
        .map(String::as_str)
        .collect();
    let mut out: Vec<&'static str> = PREFIXES
        .iter()
        .filter(|(prefix, _)| keys.iter().any(|k| k.starts_with(prefix)))
        .map(|(_, url)| *url)
        .collect();
    if keys.contains(&"cf:parameter") {
        out.push(CF);
    }
    out.sort_unstable();
    out
}

/// Completes a store's item: its bbox, the extensions its fields use; the arrays left out
/// are reported.
pub(crate) fn finish_item(mut item: Value, bbox: Option<[f64; 4]>, d: &Dataset) -> Value {
    if let Some(b) = bbox {
        item["bbox"] = json!(b);
    }
    item["stac_extensions"] = json!(extensions_used(&item));
    for r in &d.refused {
        tracing::info!(target: "zarrstac::report", "{}: array '{}' left out: {}", d.source_url, r.path, r.reason);
    }
    item
}

/// The asset of the whole store.
pub(crate) fn store_asset(d: &Dataset, title: &str) -> Value {
    let (media, format) = zarr_media(d);
    let mut asset = json!({
        "href": d.source_url.trim_end_matches('/'),
        "type": media,
        "title": title,
        "roles": ["data"],
        "zarr:node_type": "group",
        "zarr:zarr_format": format,
    });
    // source_size is the size of the consolidated metadata: zero when the store has none.
    if d.source_size > 0 {
        asset["zarr:consolidated"] = json!(true);
    }
    asset
}

/// The STAC item of one EOPF Zarr product.
pub fn item_for_eopf(d: &Dataset, opts: &ItemOptions) -> Result<Value, ItemError> {
    let sd = stac_discovery(d).ok_or_else(|| {
        ItemError::Invalid(format!(
            "{}: no stac_discovery attribute on the root group; not an EOPF product",
            d.source_url
        ))
    })?;
    let empty = Map::new();
    let p = sd
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    let mut props = Map::new();
    let start = instant(p.get("start_datetime"));
    let end = instant(p.get("end_datetime"));
    let moment = instant(p.get("datetime"));
    match (start, end, moment) {
        (Some(a), Some(b), moment) => {
            let (s, e) = (a.min(b), a.max(b));
            props.extend(time_properties(&rfc3339(s), &rfc3339(e)));
            // A product that states its instant keeps it beside the range.
            if let Some(t) = moment
                && s != e
            {
                props.insert("datetime".into(), json!(rfc3339(t)));
            }
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
                    "{}: stac_discovery has no usable datetime, start_datetime or end_datetime",
                    d.source_url
                )));
            }
        },
    }
    props.extend(properties(p));

    let geometry = sd.get("geometry").and_then(closed_geometry);
    let bbox = match &geometry {
        Some(g) => positions(g).map(|pts| bbox_of(&pts)),
        None => ordered_bbox(sd.get("bbox")),
    };
    let geometry = geometry.or_else(|| bbox.map(bbox_polygon));

    let table = spectral_table(&sd);
    let store = d.source_url.trim_end_matches('/');
    let (media, _) = zarr_media(d);
    let mut assets = Map::new();
    assets.insert("product".into(), store_asset(d, "EOPF Zarr product"));
    for (key, asset) in group_assets(d, &table) {
        assets.insert(key, asset);
    }

    let collection = opts.collection.clone().unwrap_or_else(|| {
        match props.get("product:type").and_then(Value::as_str) {
            Some(t) => format!("eopf-{}", safe_id(&t.to_ascii_lowercase())),
            None => "eopf".into(),
        }
    });
    let item = json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": item_id(&sd, &d.source_url),
        "collection": collection,
        "geometry": geometry.unwrap_or(Value::Null),
        "properties": Value::Object(props),
        "links": [
            {
                "rel": "store",
                "href": store,
                "type": media,
                "title": "Zarr store of the product"
            },
            // STAC requires this link beside `collection`; it follows the static catalog's
            // layout, and catalog sinks rewrite it for theirs.
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
    fn timestamps_become_utc_with_z() {
        let t = |s: &str| timestamp(Some(&json!(s)));
        assert_eq!(
            t("2025-01-09T10:04:01.024000+00:00").as_deref(),
            Some("2025-01-09T10:04:01.024Z")
        );
        assert_eq!(
            t("2025-03-18T23:38:05.865305").as_deref(),
            Some("2025-03-18T23:38:05.865305Z")
        );
        assert_eq!(
            t("2025-03-19T02:03:03.000000Z").as_deref(),
            Some("2025-03-19T02:03:03Z")
        );
        assert_eq!(
            t("2025-04-16T08:31:31+02:00").as_deref(),
            Some("2025-04-16T06:31:31Z")
        );
        assert_eq!(t("null"), None);
        assert_eq!(t("+10000-01-01T00:00:00Z"), None);
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn iso_durations() {
        for ok in ["PT3H", "P1D", "PT0.5S", "P1Y2M3DT4H5M6S", "P2W"] {
            assert!(is_iso_duration(ok), "{ok}");
        }
        for bad in [
            "MISSING", "P", "PT", "3H", "PT3", "P1H", "PT1.5H", "PT3H2H", "PM1", "",
        ] {
            assert!(!is_iso_duration(bad), "{bad}");
        }
    }

    #[test]
    fn boxes_are_ordered_and_antimeridian_aware() {
        assert_eq!(
            ordered_bbox(Some(&json!([81.8, 6.7, 79.2, 8.66]))),
            Some([79.2, 6.7, 81.8, 8.66])
        );
        // A real crossing keeps west > east.
        assert_eq!(
            ordered_bbox(Some(&json!([170.0, -10.0, -170.0, 10.0]))),
            Some([170.0, -10.0, -170.0, 10.0])
        );
        assert_eq!(
            bbox_of(&[[175.0, 1.0], [-175.0, 2.0]]),
            [175.0, 1.0, -175.0, 2.0]
        );
        assert_eq!(bbox_of(&[[79.2, 7.1], [81.8, 6.7]]), [79.2, 6.7, 81.8, 7.1]);
    }

    #[test]
    fn open_rings_are_closed_and_degenerate_ones_refused() {
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]});
        let closed = closed_geometry(&open).unwrap();
        assert_eq!(closed["coordinates"][0].as_array().unwrap().len(), 5);
        let line = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0]]]});
        assert_eq!(closed_geometry(&line), None);
        let outside =
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]});
        assert_eq!(closed_geometry(&outside), None);
    }

    #[test]
    fn sub_product_names_share_a_prefix() {
        let mut root = Group::new("");
        for name in ["S01X_1_VH", "S01X_1_VV", "measurements"] {
            root.groups.push(Group::new(name));
        }
        assert_eq!(sub_product_prefix(&root).as_deref(), Some("S01X_1_"));
        root.groups = vec![Group::new("é_a"), Group::new("è_b")];
        assert_eq!(sub_product_prefix(&root), None);
        root.groups = vec![Group::new("ab_é"), Group::new("ab_è")];
        assert_eq!(sub_product_prefix(&root).as_deref(), Some("ab_"));
        root.groups = vec![Group::new("only_one")];
        assert_eq!(sub_product_prefix(&root), None);
    }

    #[test]
    fn wavelengths_in_nanometres_become_micrometres() {
        let sd = json!({"properties": {"bands": [
            {"name": "b02", "common_name": "blue", "center_wavelength": 492.7, "full_width_half_max": 0.065},
            {"name": "b05", "common_name": "rededge", "center_wavelength": 704.1, "full_width_half_max": 15.0},
            {"name": "x1", "common_name": "not-a-name", "center_wavelength": 0.5}
        ]}});
        let table = spectral_table(sd.as_object().unwrap());
        let b02 = &table["b02"];
        assert_eq!(b02.center, Some(0.4927));
        assert_eq!(b02.fwhm, Some(0.065));
        assert_eq!(b02.common_name.as_deref(), Some("blue"));
        assert_eq!(table["b05"].fwhm, Some(0.015));
        assert_eq!(table["x1"].common_name, None);
    }

    #[test]
    fn placeholders_and_wrong_shapes_are_dropped() {
        let p = json!({
            "instrument": "sar", "product:timeliness": "MISSING", "product:timeliness_category": "NRT",
            "sar:frequency_band": "MISSING", "sar:center_frequency": 0, "sar:polarizations": ["VV", "VH", "VV"],
            "processing:expression": "systematic", "processing:software": {"IPF": " ", "PUG": "03.50"},
            "processing:version": "TODO", "sat:orbit_state": "", "proj:epsg": 32634,
            "view:azimuth": 0, "view:incidence_angle": 0, "provider": [{"name": "ESA", "roles": ["producer", "boss"]}]
        });
        let out = properties(p.as_object().unwrap());
        assert_eq!(out["instruments"], json!(["sar"]));
        assert_eq!(out["sar:polarizations"], json!(["VV", "VH"]));
        assert_eq!(out["processing:software"], json!({"PUG": "03.50"}));
        assert_eq!(out["proj:code"], json!("EPSG:32634"));
        assert_eq!(
            out["providers"],
            json!([{"name": "ESA", "roles": ["producer"]}])
        );
        for gone in [
            "product:timeliness",
            "product:timeliness_category",
            "sar:frequency_band",
            "sar:center_frequency",
            "processing:expression",
            "processing:version",
            "sat:orbit_state",
            "view:azimuth",
            "view:incidence_angle",
        ] {
            assert!(!out.contains_key(gone), "{gone} kept");
        }
    }
}
