//! Items for the three real EOPF products under fixtures/eopf: metadata-only Zarr v2
//! stores (no chunks), so every extent comes from attributes. Each item must validate
//! offline and say what the product is.

use std::path::{Path, PathBuf};

use serde_json::Value;
use zarrstac_formats::zarr::{is_zarr_store, scan_zarr};
use zarrstac_io::Location;
use zarrstac_stac::eopf::item_for_eopf;
use zarrstac_stac::{ItemOptions, Validator};

const S1: &str = "S01SIWGRH_20250319T002519_0024_a019_T651";
const S2: &str = "S02MSIL2A_20250109T100401_0000_A122_T461";
const S3: &str = "S03OLCEFR_20250416T063751_0180_B248_T853";

fn store_dir(stem: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/eopf")
        .join(format!("{stem}.zarr"))
}

async fn item_at(dir: &Path) -> Value {
    let root = Location::parse(&dir.to_string_lossy()).expect("fixture path");
    assert!(
        is_zarr_store(&root).await,
        "{dir:?} is not recognised as a Zarr store"
    );
    let dataset = scan_zarr(root).await.expect("scan");
    let item = item_for_eopf(&dataset, &ItemOptions::default()).expect("item");
    let problems = Validator::new().validate(&item);
    assert!(
        problems.is_empty(),
        "{}: {} problems:\n{}",
        dir.display(),
        problems.len(),
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    item
}

async fn item(stem: &str) -> Value {
    item_at(&store_dir(stem)).await
}

fn asset_ending<'a>(item: &'a Value, suffix: &str) -> &'a Value {
    item["assets"]
        .as_object()
        .unwrap()
        .values()
        .find(|a| a["href"].as_str().is_some_and(|h| h.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no asset with href ending in {suffix}"))
}

fn has_time(item: &Value) {
    let p = &item["properties"];
    let instant = p["datetime"].as_str();
    let range = (p["start_datetime"].as_str(), p["end_datetime"].as_str());
    assert!(
        instant.is_some() || matches!(range, (Some(_), Some(_))),
        "no time: {p}"
    );
    for t in [instant, range.0, range.1].into_iter().flatten() {
        assert!(t.ends_with('Z'), "{t} is not UTC with Z");
    }
}

fn bbox(item: &Value) -> Vec<f64> {
    item["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// The store link and the root asset point at the store as consolidated Zarr v2.
fn points_at_the_store(item: &Value, stem: &str) {
    let store = &item["links"].as_array().unwrap()[0];
    assert_eq!(store["rel"], "store");
    assert_eq!(store["type"], "application/vnd.zarr; version=2");
    assert!(
        store["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{stem}.zarr"))
    );
    let product = &item["assets"]["product"];
    assert_eq!(product["href"], store["href"]);
    assert_eq!(product["roles"], serde_json::json!(["data"]));
    assert_eq!(product["zarr:consolidated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel2_l2a_item() {
    let item = item(S2).await;
    has_time(&item);
    points_at_the_store(&item, S2);
    let p = &item["properties"];
    assert_eq!(p["proj:code"], "EPSG:32634");
    assert_eq!(p["product:type"], "S02MSIL2A");
    assert_eq!(p["product:timeliness"], "PT3H");
    assert_eq!(p["platform"], "sentinel-2a");
    assert_eq!(p["instruments"], serde_json::json!(["msi"]));
    assert_eq!(item["collection"], "eopf-s02msil2a");
    assert_eq!(
        item["id"],
        "S2A_MSIL2A_20250109T100401_N0511_R122_T34UCE_20250109T122750"
    );
    let b = bbox(&item);
    assert!(b[0] < b[2] && b[1] < b[3], "{b:?}");

    let r10m = asset_ending(&item, "/measurements/reflectance/r10m");
    assert_eq!(r10m["roles"], serde_json::json!(["data"]));
    assert_eq!(r10m["zarr:node_type"], "group");
    assert_eq!(r10m["gsd"], 10.0);
    assert_eq!(r10m["proj:code"], "EPSG:32634");
    assert_eq!(r10m["proj:shape"], serde_json::json!([10980, 10980]));
    assert_eq!(r10m["proj:transform"].as_array().unwrap().len(), 9);
    let bands = r10m["bands"].as_array().unwrap();
    let names: Vec<&str> = bands.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b02", "b03", "b04", "b08"]);
    let common: Vec<&str> = bands
        .iter()
        .map(|b| b["eo:common_name"].as_str().unwrap())
        .collect();
    assert_eq!(common, ["blue", "green", "red", "nir"]);
    for b in bands {
        assert_eq!(b["nodata"], 0, "{b}");
        assert_eq!(b["data_type"], "uint16");
        assert_eq!(b["raster:scale"], 0.0001);
        assert_eq!(b["raster:offset"], -0.1);
        let centre = b["eo:center_wavelength"].as_f64().unwrap();
        assert!(
            (0.4..1.0).contains(&centre),
            "centre wavelength {centre} is not in µm"
        );
    }
    assert_eq!(bands[0]["eo:center_wavelength"], 0.4927);

    let r20m = asset_ending(&item, "/measurements/reflectance/r20m");
    assert_eq!(r20m["gsd"], 20.0);
    // Quality masks named after bands are not spectral bands themselves.
    let mask = asset_ending(&item, "/quality/mask/r10m");
    assert_eq!(mask["roles"], serde_json::json!(["quality"]));
    assert!(mask["bands"][0].get("eo:common_name").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel1_grd_item() {
    let item = item(S1).await;
    has_time(&item);
    points_at_the_store(&item, S1);
    let p = &item["properties"];
    assert_eq!(p["sar:polarizations"], serde_json::json!(["VV", "VH"]));
    assert_eq!(p["sar:instrument_mode"], "IW");
    assert_eq!(p["sar:product_type"], "GRD");
    // "MISSING" and zero placeholders are gone, and the category with the timeliness.
    for gone in [
        "sar:frequency_band",
        "sar:center_frequency",
        "product:timeliness",
        "product:timeliness_category",
    ] {
        assert!(p.get(gone).is_none(), "{gone} kept");
    }
    assert_eq!(p["sat:anx_datetime"], "2025-03-18T23:38:05.865305Z");
    // The product id is a description ("SAR Standard L1 Product"): the store names it.
    assert_eq!(item["id"], S1);
    let extensions: Vec<&str> = item["stac_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        !extensions.iter().any(|e| e.contains("/eo/")),
        "{extensions:?}"
    );
    assert!(
        !item.to_string().contains("\"eo:"),
        "S1 item carries eo fields"
    );

    // bbox [81.8, 6.7, 79.2, 8.66] in the source: west and east swapped, no crossing.
    let b = bbox(&item);
    assert_eq!(b, [79.248627, 6.702116, 81.802361, 8.663423]);
    let ring = item["geometry"]["coordinates"][0].as_array().unwrap();
    assert_eq!(ring.first(), ring.last(), "ring not closed");

    for pol in ["VV", "VH"] {
        let grd = asset_ending(&item, &format!("_{pol}/measurements"));
        // Asset keys leave out the product name the polarisation groups share.
        assert_eq!(item["assets"][format!("{pol}_measurements")], *grd);
        let bands = grd["bands"].as_array().unwrap();
        assert_eq!(bands.len(), 1, "{bands:?}");
        assert_eq!(bands[0]["name"], "grd");
        assert_eq!(bands[0]["data_type"], "uint16");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel3_olci_item() {
    let item = item(S3).await;
    has_time(&item);
    points_at_the_store(&item, S3);
    let b = bbox(&item);
    assert!(b[0] < b[2], "west {} is not west of east {}", b[0], b[2]);
    assert_eq!(b, [37.0764, -23.9554, 51.794, -10.63]);
    assert_eq!(item["properties"]["gsd"], 270.0);
    assert!(item["properties"].get("sat:orbit_state").is_none());

    let radiance = asset_ending(&item, "/measurements");
    let bands = radiance["bands"].as_array().unwrap();
    let oa01 = bands
        .iter()
        .find(|b| b["name"] == "oa01_radiance")
        .expect("oa01_radiance");
    assert_eq!(oa01["eo:center_wavelength"], 0.4);
    assert_eq!(oa01["nodata"], 65535.0);
    assert!(oa01.get("eo:common_name").is_none());
    let oa04 = bands.iter().find(|b| b["name"] == "oa04_radiance").unwrap();
    assert_eq!(oa04["eo:common_name"], "blue");
    // Latitude, longitude and time stamps are coordinates, not bands.
    for coordinate in ["latitude", "longitude", "altitude", "time_stamp"] {
        assert!(
            !bands.iter().any(|b| b["name"] == coordinate),
            "{coordinate} is a band"
        );
    }
    assert_eq!(bands.len(), 21);
}

fn copy_without_consolidated(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_without_consolidated(&entry.path(), &target);
        } else if entry.file_name() != ".zmetadata" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_zmetadata_gives_the_same_assets() {
    let dir = std::env::temp_dir().join(format!("zarrstac-eopf-{}", std::process::id()));
    let copy = dir.join(format!("{S2}.zarr"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_without_consolidated(&store_dir(S2), &copy);
    let walked = item_at(&copy).await;
    let consolidated = item(S2).await;
    let _ = std::fs::remove_dir_all(&dir);

    let keys = |i: &Value| {
        i["assets"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&walked), keys(&consolidated));
    assert_eq!(walked["properties"], consolidated["properties"]);
    assert!(
        walked["assets"]["product"]
            .get("zarr:consolidated")
            .is_none()
    );
    let r10m = |i: &Value| asset_ending(i, "/measurements/reflectance/r10m")["bands"].clone();
    assert_eq!(r10m(&walked), r10m(&consolidated));
}
