//! Items for the NetCDF/HDF5 fixtures: every one validates offline, and the CF mapping
//! means what the data says (times decoded in the file's calendar, axes, CMIP6 fields).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use zarrstac_io::{Location, RangeReader};
use zarrstac_stac::{ItemOptions, Validator, item_for_file};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

async fn item(path: &Path) -> Value {
    let reader = RangeReader::open(Location::parse(path.to_str().unwrap()).unwrap())
        .await
        .unwrap();
    let modified = reader.last_modified().to_string();
    let dataset = zarrstac_formats::scan(reader, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let opts = ItemOptions {
        refs_href: Some(format!(
            "file:///refs/{}.json",
            path.file_name().unwrap().to_string_lossy()
        )),
        source_modified: Some(modified),
        ..ItemOptions::default()
    };
    let mut item = item_for_file(&dataset, &opts).unwrap();
    // Items that name a collection must link to it (the catalog sinks add this).
    item["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"rel": "collection", "href": "../collection.json"}));
    item
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && p.extension().is_none_or(|x| x != "zarr") {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| ["nc", "nc4", "h5"].contains(&x.to_str().unwrap()))
        {
            out.push(p);
        }
    }
}

/// The 13 files of the CMIP5 NetCDF-3 series, in name (time) order.
fn cmip5_series() -> Vec<PathBuf> {
    let dir = fixtures().join("shared/cmip5-netcdf3-series");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

fn rfc3339(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_gives_a_valid_item() {
    let mut all = Vec::new();
    files(&fixtures(), &mut all);
    all.sort();
    assert!(all.len() > 30, "fixtures missing: {all:?}");
    let validator = Validator::new();
    for path in &all {
        let item = item(path).await;
        let problems = validator.validate(&item);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
        let p = &item["properties"];
        for key in ["datetime", "start_datetime", "end_datetime"] {
            if p[key].is_string() {
                rfc3339(&p[key]);
            }
        }
        // Every data variable is a band of the store asset, named by its array path.
        for band in item["assets"]["zarr"]["bands"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = band["name"].as_str().unwrap();
            assert_eq!(
                p["cube:variables"][name]["variable_type"],
                "data",
                "{}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmip6_o3_item_means_what_the_file_says() {
    let path =
        fixtures().join("shared/cmip6/o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc");
    let item = item(&path).await;
    let p = &item["properties"];
    assert_eq!(p["cmip6:source_id"], "GFDL-ESM4");
    assert_eq!(p["cmip6:experiment_id"], "historical");
    assert_eq!(p["cmip6:table_id"], "Amon");
    assert_eq!(p["cmip6:member_id"], "r1i1p1f1");
    // Mid-month times in the noleap calendar.
    assert_eq!(p["start_datetime"], "1850-01-16T12:00:00Z");
    assert_eq!(p["end_datetime"], "1949-12-16T12:00:00Z");
    assert_eq!(p["cube:dimensions"]["time"]["type"], "temporal");
    assert_eq!(p["cube:dimensions"]["plev"]["axis"], "z");
    assert_eq!(p["cube:dimensions"]["plev"]["unit"], "Pa");
    assert_eq!(p["cube:dimensions"]["lat"]["reference_system"], 4326);
    assert_eq!(p["cube:variables"]["o3"]["variable_type"], "data");
    assert_eq!(
        p["cube:variables"]["time_bnds"]["variable_type"],
        "auxiliary"
    );
    assert_eq!(p["proj:code"], "EPSG:4326");
    let bands = item["assets"]["zarr"]["bands"].as_array().unwrap();
    assert_eq!(bands.len(), 1);
    assert_eq!(bands[0]["name"], "o3");
    assert_eq!(bands[0]["unit"], "mol mol-1");
    assert_eq!(bands[0]["nodata"], json!(1e20));
    assert_eq!(
        bands[0]["cf:parameter"][0]["name"],
        "mole_fraction_of_ozone_in_air"
    );
    assert_eq!(bands[0]["cell_methods"], "time: mean");
    assert_eq!(item["collection"], "cmip6-amon-o3");
    assert!(
        item["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["rel"] == "store")
    );
    assert_eq!(item["assets"]["source"]["file:size"], 865302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmip5_360_day_series_gives_valid_ordered_times() {
    let paths = cmip5_series();
    assert_eq!(paths.len(), 13);
    let mut last_end = None;
    for path in &paths {
        let item = item(path).await;
        let p = &item["properties"];
        let (start, end) = if p["datetime"].is_string() {
            (rfc3339(&p["datetime"]), rfc3339(&p["datetime"]))
        } else {
            (rfc3339(&p["start_datetime"]), rfc3339(&p["end_datetime"]))
        };
        assert!(start <= end);
        if let Some(prev) = last_end {
            // The real series repeats December 2099 in two files: times never go back.
            assert!(start >= prev, "{}: {start} before {prev}", path.display());
        }
        last_end = Some(end);
        assert_eq!(item["collection"], "cmip5-mon-tas");
    }
    // 2005-12-16 is the first time of the series.
    let first = item(&paths[0]).await;
    assert_eq!(
        first["properties"]["start_datetime"],
        "2005-12-16T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coads_climatology_in_year_zero_has_a_valid_extent() {
    // 'hour since 0000-01-01': a climatology; its extent stays in year 0, which RFC 3339
    // can write (0000-01-16T06:00:00Z).
    let item = item(&fixtures().join("shared/netcdf4/coads_climatology.nc4")).await;
    let p = &item["properties"];
    let start = p["start_datetime"].as_str().unwrap();
    let end = p["end_datetime"].as_str().unwrap();
    assert!(start.starts_with("0000-01-16"), "{start}");
    assert!(end.starts_with("0000-12-16"), "{end}");
    rfc3339(&p["start_datetime"]);
    rfc3339(&p["end_datetime"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_dates_in_units_are_decoded() {
    // jan.nc4 writes its units as 'days since Jan 1, 2000'.
    let item = item(&fixtures().join("shared/netcdf4/jan.nc4")).await;
    let p = &item["properties"];
    let start = p["start_datetime"]
        .as_str()
        .or(p["datetime"].as_str())
        .unwrap();
    assert!(start.starts_with("2000-01"), "{start}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_item_has_an_asset_per_file_with_its_own_times() {
    let paths = cmip5_series();
    let mut files = Vec::new();
    for p in paths.iter().rev() {
        let reader = RangeReader::open(Location::parse(p.to_str().unwrap()).unwrap())
            .await
            .unwrap();
        files.push(
            zarrstac_formats::scan(reader, &Default::default())
                .await
                .unwrap(),
        );
    }
    let id = zarrstac_refs::combine::dataset_id(&files[0]).unwrap();
    assert_eq!(
        id,
        "CMIP5.output.MOHC.HadGEM2-ES.rcp85.mon.atmos.Amon.r1i1p1.tas"
    );
    let combined = zarrstac_refs::combine(files.clone()).unwrap();
    let opts = ItemOptions {
        refs_href: Some("file:///refs/cmip5.json".into()),
        ..ItemOptions::default()
    };
    let members: Vec<_> = files
        .iter()
        .map(zarrstac_stac::netcdf::DatasetMember::of)
        .collect();
    let mut item = zarrstac_stac::netcdf::item_for_dataset(
        &zarrstac_stac::netcdf::dataset_item_id(&id, &members),
        &members,
        &combined,
        &opts,
    )
    .unwrap();
    item["links"]
        .as_array_mut()
        .unwrap()
        .push(json!({"rel": "collection", "href": "../collection.json"}));
    assert_eq!(Validator::new().validate(&item), vec![]);
    assert!(item["id"].as_str().unwrap().starts_with(&format!("{id}.v")));
    let p = &item["properties"];
    assert_eq!(p["start_datetime"], "2005-12-16T00:00:00Z");
    assert_eq!(p["end_datetime"], "2299-12-16T00:00:00Z");
    let assets = item["assets"].as_object().unwrap();
    assert_eq!(assets.len(), 14, "13 files and the combined store");
    assert_eq!(assets["zarr"]["href"], "file:///refs/cmip5.json");
    let mut previous_end = String::new();
    for (key, a) in assets.iter().filter(|(k, _)| *k != "zarr") {
        let (start, end) = (
            a["start_datetime"].as_str().unwrap(),
            a["end_datetime"].as_str().unwrap(),
        );
        assert!(
            start <= end && start >= previous_end.as_str(),
            "{key}: {start}..{end}"
        );
        assert!(a["file:size"].as_u64().unwrap() > 0);
        assert!(a["href"].as_str().unwrap().contains(key.as_str()));
        previous_end = end.to_string();
    }
    assert_eq!(
        assets["tas_Amon_HadGEM2-ES_rcp85_r1i1p1_229912-229912"]["start_datetime"],
        "2299-12-16T00:00:00Z"
    );
}

/// CMIP6 sea ice on a curvilinear grid: the 2-D `latitude`/`longitude` give the bbox and
/// geometry, and the grid's `i`/`j` axes are index dimensions.
#[tokio::test]
async fn curvilinear_grids_give_their_extent_and_index_dimensions() {
    let global = item(&fixtures().join("generated/siconc_SImon_curvilinear_global.nc")).await;
    let bbox: Vec<f64> = serde_json::from_value(global["bbox"].clone()).unwrap();
    assert_eq!(bbox[0], -180.0, "{bbox:?}");
    assert_eq!(bbox[2], 180.0, "{bbox:?}");
    assert_eq!(bbox[1], -78.0, "south {bbox:?}");
    assert_eq!(bbox[3], 89.0, "north {bbox:?}");
    assert_eq!(global["geometry"]["type"], "Polygon");
    let dims = &global["properties"]["cube:dimensions"];
    for (d, n) in [("i", 36), ("j", 24)] {
        assert_eq!(dims[d]["type"], "index", "{d}: {}", dims[d]);
        assert_eq!(dims[d]["extent"], json!([1.0, n as f64]), "{d}");
        assert!(dims[d]["description"].as_str().unwrap().contains("index"));
    }
    let vars = &global["properties"]["cube:variables"];
    assert_eq!(vars["latitude"]["variable_type"], "auxiliary");
    assert_eq!(
        vars["longitude"]["extent"][0].as_f64().unwrap().round(),
        5.0
    );
    assert!(Validator::new().validate(&global).is_empty());

    // A regional grid across the antimeridian, longitudes written 0..360.
    let bering = item(&fixtures().join("generated/siconc_SImon_curvilinear_bering.nc")).await;
    let bbox: Vec<f64> = serde_json::from_value(bering["bbox"].clone()).unwrap();
    let expected = [162.0, 52.0, 201.3 - 360.0, 65.95];
    for (got, want) in bbox.iter().zip(expected) {
        assert!((got - want).abs() < 1e-9, "{bbox:?} against {expected:?}");
    }
    let geometry = &bering["geometry"];
    assert_eq!(geometry["type"], "MultiPolygon", "{geometry}");
    assert_eq!(geometry["coordinates"][0][0][1], json!([180.0, 52.0]));
    assert_eq!(geometry["coordinates"][1][0][0], json!([-180.0, 52.0]));
    assert_eq!(
        bering["properties"]["cube:dimensions"]["i"]["type"],
        "index"
    );
    let problems = Validator::new().validate(&bering);
    assert!(problems.is_empty(), "{problems:?}");
}
