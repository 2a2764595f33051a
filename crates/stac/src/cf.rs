//! The CF mapping: from the Dataset model to datacube dimensions and variables, bands,
//! `cf:parameter`, and the spatial and temporal extents of an item.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use zarrstac_model::{Array, DataType, Dataset, FillValue};

use crate::time::{self, TimeExtent};

/// The role of a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    X,
    Y,
    Z,
    T,
}

/// What the CF mapping found in a dataset.
#[derive(Debug, Default)]
pub struct Cube {
    pub dimensions: Map<String, Value>,
    pub variables: Map<String, Value>,
    /// One band per data variable, for the store asset.
    pub bands: Vec<Value>,
    /// Distinct CF standard names (with units) of the data variables.
    pub cf_parameters: Vec<Value>,
    /// West, south, east, north in degrees, from longitude/latitude coordinates.
    pub bbox: Option<[f64; 4]>,
    pub time: Option<TimeExtent>,
    /// Things that could not be mapped, each with the reason.
    pub notes: Vec<String>,
}

fn attr_str<'a>(a: &'a Array, key: &str) -> Option<&'a str> {
    a.attributes.get(key).and_then(|v| v.as_str())
}

/// The axis a coordinate variable stands for, from `axis`, `standard_name`, `units`,
/// `positive` and, failing those, its name.
pub fn axis_of(a: &Array) -> Option<Axis> {
    if let Some(axis) = attr_str(a, "axis") {
        match axis.trim().to_ascii_uppercase().as_str() {
            "X" => return Some(Axis::X),
            "Y" => return Some(Axis::Y),
            "Z" => return Some(Axis::Z),
            "T" => return Some(Axis::T),
            _ => {}
        }
    }
    match attr_str(a, "standard_name") {
        Some("longitude" | "projection_x_coordinate" | "grid_longitude") => return Some(Axis::X),
        Some("latitude" | "projection_y_coordinate" | "grid_latitude") => return Some(Axis::Y),
        Some("time") => return Some(Axis::T),
        Some(
            "air_pressure"
            | "altitude"
            | "height"
            | "depth"
            | "model_level_number"
            | "height_above_reference_ellipsoid",
        ) => return Some(Axis::Z),
        Some(s)
            if s.starts_with("atmosphere_")
                || s.starts_with("ocean_") && s.contains("coordinate") =>
        {
            return Some(Axis::Z);
        }
        _ => {}
    }
    let units = attr_str(a, "units")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        units.as_str(),
        "degrees_east" | "degree_east" | "degree_e" | "degrees_e"
    ) {
        return Some(Axis::X);
    }
    if matches!(
        units.as_str(),
        "degrees_north" | "degree_north" | "degree_n" | "degrees_n"
    ) {
        return Some(Axis::Y);
    }
    if units.contains(" since ") {
        return Some(Axis::T);
    }
    if a.attributes.contains_key("positive") {
        return Some(Axis::Z);
    }
    match a.name.to_ascii_lowercase().as_str() {
        "lon" | "longitude" | "x" => Some(Axis::X),
        "lat" | "latitude" | "y" => Some(Axis::Y),
        "time" | "t" => Some(Axis::T),
        "lev" | "level" | "plev" | "depth" | "height" | "z" | "altitude" => Some(Axis::Z),
        _ => None,
    }
}

fn is_degrees(a: &Array) -> bool {
    let units = attr_str(a, "units").unwrap_or("").to_ascii_lowercase();
    units.starts_with("degree")
        || matches!(attr_str(a, "standard_name"), Some("longitude" | "latitude"))
}

/// The STAC `data_type` of a model type.
pub fn data_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Bool => "uint8",
        DataType::Int { bytes, signed, .. } => match (bytes, signed) {
            (1, true) => "int8",
            (2, true) => "int16",
            (4, true) => "int32",
            (8, true) => "int64",
            (1, false) => "uint8",
            (2, false) => "uint16",
            (4, false) => "uint32",
            _ => "uint64",
        },
        DataType::Float { bytes: 2, .. } => "float16",
        DataType::Float { bytes: 4, .. } => "float32",
        DataType::Float { .. } => "float64",
        _ => "other",
    }
}

/// A number as STAC `nodata` takes it (non-finite values are the strings "nan", "inf").
pub fn nodata(fill: &FillValue) -> Option<Value> {
    match fill {
        FillValue::Int(i) => Some(json!(i)),
        FillValue::UInt(u) => Some(json!(u)),
        FillValue::Float(f) if f.is_nan() => Some(json!("nan")),
        FillValue::Float(f) if f.is_infinite() => {
            Some(json!(if *f > 0.0 { "inf" } else { "-inf" }))
        }
        FillValue::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        FillValue::Bytes(_) => None,
    }
}

/// The fill value an array declares: the Zarr fill value, else `_FillValue` or
/// `missing_value` left among the attributes.
fn declared_nodata(a: &Array) -> Option<Value> {
    if let Some(f) = &a.fill_value {
        // A single-precision fill value reads best as its shortest single-precision text.
        if let (FillValue::Float(x), DataType::Float { bytes: 4, .. }) = (f, &a.dtype) {
            let short: f64 = format!("{:?}", *x as f32).parse().unwrap_or(*x);
            return nodata(&FillValue::Float(short));
        }
        return nodata(f);
    }
    ["_FillValue", "missing_value"]
        .iter()
        .find_map(|k| a.attributes.get(*k).and_then(|v| v.as_f64()))
        .and_then(|f| nodata(&FillValue::Float(f)))
}

fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

fn regular_step(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let d = values[1] - values[0];
    let tol = d.abs() * 1e-6;
    (d != 0.0 && values.windows(2).all(|w| ((w[1] - w[0]) - d).abs() <= tol)).then_some(d)
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Longitudes in -180..180 as (west, east): an axis that covers the globe (with its step)
/// is -180..180; one of 0..360 that spans 180 after wrapping crosses the antimeridian
/// (west greater than east).
fn lon_range(lo: f64, hi: f64, step: Option<f64>) -> (f64, f64) {
    let covers_globe = hi - lo + step.map_or(0.0, f64::abs) >= 359.0;
    if covers_globe {
        return (-180.0, 180.0);
    }
    let wrap = |x: f64| if x > 180.0 { x - 360.0 } else { x };
    (wrap(lo), wrap(hi))
}

/// Maps the dataset to datacube dimensions, variables, bands and extents.
pub fn describe(dataset: &Dataset) -> Cube {
    let arrays = dataset.arrays();
    let mut cube = Cube::default();

    // Dimensions in order of first use, with their lengths.
    let mut dims: Vec<(String, u64)> = Vec::new();
    for (_, a) in &arrays {
        for (d, n) in a.dimensions.iter().zip(&a.shape) {
            if !dims.iter().any(|(x, _)| x == d) {
                dims.push((d.clone(), *n));
            }
        }
    }
    let coordinate: HashMap<&str, &Array> = arrays
        .iter()
        .filter(|(_, a)| a.is_coordinate())
        .map(|(_, a)| (a.name.as_str(), *a))
        .collect();

    // Names other variables point at: bounds, grid mappings, auxiliary coordinates.
    let mut auxiliary: HashSet<String> = HashSet::new();
    for (_, a) in &arrays {
        for key in ["bounds", "grid_mapping", "coordinates", "climatology"] {
            if let Some(v) = attr_str(a, key) {
                auxiliary.extend(
                    v.split_whitespace()
                        .map(|s| s.trim_end_matches(':').to_string()),
                );
            }
        }
    }

    // Latitudes and longitudes of more than one axis: a curvilinear grid, whose axes
    // are indexes (`i`, `j`, `nlat`, `nlon` ...) rather than positions.
    let curvilinear: Vec<&Array> = arrays
        .iter()
        .map(|(_, a)| *a)
        .filter(|a| a.shape.len() > 1 && matches!(axis_of(a), Some(Axis::X | Axis::Y)))
        .collect();

    let (mut west, mut east, mut south, mut north) = (None, None, None, None);
    for (name, length) in &dims {
        let coord = coordinate.get(name.as_str()).copied();
        let axis = coord.and_then(axis_of);
        let values = coord.and_then(|c| c.coordinate_values.as_deref());
        let mut description = coord
            .and_then(|c| attr_str(c, "long_name"))
            .map(str::to_string);
        let mut obj = Map::new();
        let grid_axis = curvilinear
            .iter()
            .find_map(|a| Some((a, a.dimensions.iter().position(|d| d == name)?)));
        if let (None, Some((grid, position))) = (axis, grid_axis) {
            obj.insert("type".into(), json!("index"));
            let extent = values
                .and_then(min_max)
                .map_or(json!([0, length.saturating_sub(1)]), |(lo, hi)| {
                    json!([number(lo), number(hi)])
                });
            obj.insert("extent".into(), extent);
            if description.is_none() {
                description = Some(format!(
                    "index along axis {} of the curvilinear grid of '{}'",
                    position + 1,
                    grid.name
                ));
            }
            if let Some(d) = description {
                obj.insert("description".into(), json!(d));
            }
            cube.dimensions.insert(name.clone(), Value::Object(obj));
            continue;
        }
        match (axis, values) {
            (Some(Axis::X | Axis::Y), Some(v)) if min_max(v).is_some() => {
                let c = coord.expect("values come from a coordinate");
                let (lo, hi) = min_max(v).expect("checked");
                let step = regular_step(v);
                obj.insert("type".into(), json!("spatial"));
                obj.insert(
                    "axis".into(),
                    json!(if axis == Some(Axis::X) { "x" } else { "y" }),
                );
                obj.insert("extent".into(), json!([number(lo), number(hi)]));
                obj.insert("step".into(), step.map_or(Value::Null, number));
                if is_degrees(c) {
                    obj.insert("reference_system".into(), json!(4326));
                    if axis == Some(Axis::X) {
                        let (w, e) = lon_range(lo, hi, step);
                        west = Some(w);
                        east = Some(e);
                    } else {
                        south = Some(lo.max(-90.0));
                        north = Some(hi.min(90.0));
                    }
                }
            }
            (Some(Axis::Z), Some(v)) if min_max(v).is_some() => {
                let (lo, hi) = min_max(v).expect("checked");
                obj.insert("type".into(), json!("spatial"));
                obj.insert("axis".into(), json!("z"));
                obj.insert("extent".into(), json!([number(lo), number(hi)]));
                if v.len() <= 100 {
                    obj.insert(
                        "values".into(),
                        Value::Array(v.iter().map(|x| number(*x)).collect()),
                    );
                }
                if let Some(u) = coord.and_then(|c| attr_str(c, "units")) {
                    obj.insert("unit".into(), json!(u));
                }
                if let Some(s) = regular_step(v) {
                    obj.insert("step".into(), number(s));
                }
            }
            (Some(Axis::T), Some(v)) => {
                let c = coord.expect("values come from a coordinate");
                let decoded = attr_str(c, "units")
                    .ok_or_else(|| "time coordinate has no units".to_string())
                    .and_then(|u| time::extent(v, u, attr_str(c, "calendar")));
                match decoded {
                    Ok(Some(t)) => {
                        obj.insert("type".into(), json!("temporal"));
                        obj.insert("extent".into(), json!([t.start, t.end]));
                        obj.insert(
                            "step".into(),
                            t.step.clone().map_or(Value::Null, Value::String),
                        );
                        if cube.time.is_none() {
                            cube.time = Some(t);
                        }
                    }
                    Ok(None) => {
                        obj.insert("type".into(), json!("temporal"));
                        obj.insert("extent".into(), json!([null, null]));
                    }
                    Err(e) => {
                        cube.notes.push(format!(
                            "dimension '{name}': {e}; described by its raw values"
                        ));
                        let (lo, hi) = min_max(v).unwrap_or((0.0, 0.0));
                        obj.insert("type".into(), json!("time"));
                        obj.insert("extent".into(), json!([number(lo), number(hi)]));
                        if let Some(u) = attr_str(c, "units") {
                            obj.insert("unit".into(), json!(u));
                        }
                    }
                }
            }
            (_, Some(v)) if min_max(v).is_some() => {
                let (lo, hi) = min_max(v).expect("checked");
                obj.insert("type".into(), json!(name.to_ascii_lowercase()));
                obj.insert("extent".into(), json!([number(lo), number(hi)]));
                if let Some(u) = coord.and_then(|c| attr_str(c, "units")) {
                    obj.insert("unit".into(), json!(u));
                }
            }
            _ => {
                // No coordinate values: an index dimension, typed by what its name says.
                let lname = name.to_ascii_lowercase();
                let kind = if lname.contains("cell")
                    || lname == "ncol"
                    || lname == "nod2"
                    || lname == "elem"
                {
                    "cell"
                } else if lname.contains("healpix") || lname == "pix" || lname == "npix" {
                    "healpix"
                } else if lname.contains("bnd")
                    || lname.contains("bound")
                    || lname == "nv"
                    || lname == "vertices"
                {
                    "bounds"
                } else {
                    "index"
                };
                obj.insert("type".into(), json!(kind));
                obj.insert("extent".into(), json!([0, length.saturating_sub(1)]));
            }
        }
        if let Some(d) = description {
            obj.insert("description".into(), json!(d));
        }
        cube.dimensions.insert(name.clone(), Value::Object(obj));
    }
    // Without one-dimensional positions, the extents the readers took of a
    // curvilinear grid's coordinates.
    for a in &curvilinear {
        let Some(extent) = a.grid_extent.as_ref().filter(|_| is_degrees(a)) else {
            continue;
        };
        match axis_of(a) {
            Some(Axis::X) if west.is_none() => {
                let (w, e) = extent.longitude_range();
                west = Some(w);
                east = Some(e);
            }
            Some(Axis::Y) if south.is_none() => {
                south = Some(extent.min.max(-90.0));
                north = Some(extent.max.min(90.0));
            }
            _ => {}
        }
    }
    if let (Some(w), Some(s), Some(e), Some(n)) = (west, south, east, north) {
        cube.bbox = Some([w, s, e, n]);
    }

    let mut seen_params = HashSet::new();
    for (path, a) in &arrays {
        if a.is_coordinate() {
            continue;
        }
        let is_aux = auxiliary.contains(&a.name)
            || a.attributes.contains_key("grid_mapping_name")
            || matches!(axis_of(a), Some(Axis::X | Axis::Y) if a.shape.len() > 1)
            || a.shape.is_empty();
        let mut var = Map::new();
        var.insert("dimensions".into(), json!(a.dimensions));
        var.insert(
            "variable_type".into(),
            json!(if is_aux { "auxiliary" } else { "data" }),
        );
        if let Some(d) = attr_str(a, "long_name") {
            var.insert("description".into(), json!(d));
        }
        if let Some(u) = attr_str(a, "units") {
            var.insert("unit".into(), json!(u));
        }
        if let Some(e) = &a.grid_extent {
            var.insert("extent".into(), json!([number(e.min), number(e.max)]));
        }
        var.insert("data_type".into(), json!(data_type(&a.dtype)));
        let nodata = declared_nodata(a);
        if let Some(nd) = &nodata {
            var.insert("nodata".into(), nd.clone());
        }
        cube.variables.insert(path.clone(), Value::Object(var));
        if is_aux {
            continue;
        }
        let mut band = Map::new();
        band.insert("name".into(), json!(path));
        if let Some(d) = attr_str(a, "long_name") {
            band.insert("description".into(), json!(d));
        }
        if let Some(u) = attr_str(a, "units") {
            band.insert("unit".into(), json!(u));
        }
        band.insert("data_type".into(), json!(data_type(&a.dtype)));
        if let Some(nd) = nodata {
            band.insert("nodata".into(), nd);
        }
        if let Some(sn) = attr_str(a, "standard_name").filter(|s| !s.is_empty()) {
            let mut p = Map::new();
            p.insert("name".into(), json!(sn));
            if let Some(u) = attr_str(a, "units") {
                p.insert("unit".into(), json!(u));
            }
            let p = Value::Object(p);
            band.insert("cf:parameter".into(), json!([p.clone()]));
            if seen_params.insert(p.to_string()) {
                cube.cf_parameters.push(p);
            }
        }
        if let Some(cm) = attr_str(a, "cell_methods") {
            band.insert("cell_methods".into(), json!(cm));
        }
        cube.bands.push(Value::Object(band));
    }
    cube
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longitudes_from_0_to_360_become_global_or_wrap() {
        assert_eq!(lon_range(0.0, 358.75, Some(1.25)), (-180.0, 180.0));
        assert_eq!(lon_range(10.0, 20.0, Some(1.0)), (10.0, 20.0));
        assert_eq!(lon_range(190.0, 200.0, Some(1.0)), (-170.0, -160.0));
        assert_eq!(lon_range(170.0, 190.0, Some(1.0)), (170.0, -170.0));
    }
}
