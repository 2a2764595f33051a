//! CMIP6 dataset items as ESGF publishes them: the cmip6 v3.0.2 extension declared when the
//! dataset's PID is known and the files are served where users reach them, and left out,
//! with the reason, otherwise. On the shared CMIP6 files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use zarrstac_io::{Location, RangeReader};
use zarrstac_model::Dataset;
use zarrstac_stac::cmip6::{ALTERNATE, CMIP6, Declaration, Publication, declare};
use zarrstac_stac::item::FILE;
use zarrstac_stac::netcdf::{DatasetMember, dataset_item_id, item_for_dataset};
use zarrstac_stac::{ItemOptions, Validator};

const PID: &str = "hdl:21.14100/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const SERVED_AT: &str = "https://esgf.example.org/thredds/fileServer/CMIP6/v20190726/";

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/shared/cmip6")
        .join(name)
}

async fn scan(path: &Path) -> Dataset {
    let reader = RangeReader::open(Location::parse(path.to_str().unwrap()).unwrap())
        .await
        .unwrap();
    zarrstac_formats::scan(reader, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A one-file dataset of `name`, its file served from `base`; its item as built before
/// any declaration, with the links a catalog adds.
async fn dataset(name: &str, base: &str, collection: &str) -> (Value, Vec<DatasetMember>, Dataset) {
    let mut d = scan(&shared(name)).await;
    d.source_url = format!("{base}{name}");
    let members = vec![DatasetMember::of(&d)];
    let id = dataset_item_id(
        &zarrstac_refs::combine::dataset_id(&d).expect("a CMIP6 dataset id"),
        &members,
    );
    let opts = ItemOptions {
        collection: Some(collection.into()),
        refs_href: Some(format!("s3://refs/{collection}/{id}.json")),
        ..Default::default()
    };
    let mut item = item_for_dataset(&id, &members, &d, &opts).unwrap();
    item["links"].as_array_mut().unwrap().extend([
        json!({"rel": "collection", "href": "../collection.json", "type": "application/json"}),
        json!({"rel": "root", "href": "../../catalog.json", "type": "application/json"}),
    ]);
    (item, members, d)
}

fn with_pid() -> Publication {
    Publication {
        pid: Some(PID.into()),
        data_node: Some("esgf.example.org".into()),
        ..Default::default()
    }
}

fn global(d: &Dataset, key: &str) -> String {
    d.root
        .attributes
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string()
}

const FILES: [&str; 2] = [
    "o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc",
    "prsn_day_CanESM5_historical_r1i1p1f1_gn_19910101-20101231.nc",
];

#[tokio::test]
async fn with_a_pid_the_items_of_the_shared_files_declare_cmip6_and_validate() {
    let validator = Validator::new();
    for name in FILES {
        let (mut item, members, d) = dataset(name, SERVED_AT, "CMIP6").await;
        let outcome = declare(&mut item, &members, &d, &with_pid(), &validator);
        assert_eq!(outcome, Declaration::Declared, "{name}");
        assert_eq!(validator.validate(&item), vec![], "{name}");
        let extensions: Vec<&str> = item["stac_extensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        for url in [CMIP6, ALTERNATE, FILE] {
            assert!(extensions.contains(&url), "{name}: {extensions:?}");
        }
        let p = &item["properties"];
        let variable = global(&d, "variable_id");
        let array = d.root.arrays.iter().find(|a| a.name == variable).unwrap();
        let attr = |k: &str| array.attributes.get(k).and_then(|v| v.as_str()).unwrap();
        assert_eq!(p["cmip6:pid"], PID);
        assert_eq!(p["cmip6:variable_units"], attr("units"), "{name}");
        assert_eq!(p["cmip6:variable_long_name"], attr("long_name"), "{name}");
        assert_eq!(
            p["cmip6:variable_cf_standard_name"],
            attr("standard_name"),
            "{name}"
        );
        assert_eq!(p["cmip6:activity_id"], json!([global(&d, "activity_id")]));
        let source_types: Vec<String> = global(&d, "source_type")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(p["cmip6:source_type"], json!(source_types), "{name}");
        assert_eq!(p["size"], json!(d.source_size));
        assert_eq!(
            (&p["latest"], &p["retracted"]),
            (&json!(true), &json!(false))
        );
        // The file's own creation date, as RFC 3339.
        let created = global(&d, "creation_date");
        assert_eq!(p["created"], json!(created), "{name}");
        let id = item["id"].as_str().unwrap();
        assert_eq!(p["base_id"].as_str(), id.rsplit_once(".v").map(|x| x.0));
        assert_eq!(p["version"].as_str(), id.rsplit_once(".v").map(|x| x.1));
        assert_eq!(
            p["cmip6:realization_index"], "1",
            "indexes are strings of digits"
        );
        let cite: Vec<&Value> = item["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["rel"] == "cite-as")
            .collect();
        assert_eq!(
            cite[0]["href"],
            format!("https://cera-www.dkrz.de/WDCC/meta/CMIP6/{id}.json")
        );
        let stem = name.strip_suffix(".nc").unwrap();
        let file = &item["assets"][stem];
        assert_eq!(
            (&file["protocol"], &file["created"], &file["alternate:name"]),
            (&json!("https"), &json!(created), &json!("esgf.example.org"))
        );
        assert_eq!(file["cmip6:tracking_id"], json!(global(&d, "tracking_id")));
        assert_eq!(item["assets"]["zarr"]["protocol"], "kerchunk");
    }
}

#[tokio::test]
async fn files_on_s3_are_served_by_the_s3_protocol() {
    let (mut item, members, d) = dataset(FILES[0], "s3://cmip6/data/", "CMIP6").await;
    let outcome = declare(&mut item, &members, &d, &with_pid(), &Validator::new());
    assert_eq!(outcome, Declaration::Declared);
    let stem = FILES[0].strip_suffix(".nc").unwrap();
    assert_eq!(item["assets"][stem]["protocol"], "s3");
}

/// Each reason the extension cannot be declared leaves the item as it was, valid, and
/// says so.
#[tokio::test]
async fn without_what_the_schema_requires_the_item_stays_valid_and_says_why() {
    let validator = Validator::new();
    let cases: [(&str, &str, Publication, &str); 4] = [
        (
            SERVED_AT,
            "CMIP6",
            Publication::default(),
            "no PID is known for CMIP6.CMIP.NOAA-GFDL",
        ),
        (
            SERVED_AT,
            "cmip6-amon-o3",
            with_pid(),
            "its collection is 'cmip6-amon-o3', and the extension's schema requires 'CMIP6'",
        ),
        (
            "file:///archive/CMIP6/",
            "CMIP6",
            with_pid(),
            "not served over a protocol the extension knows (https, http, s3): file:///archive/CMIP6/o3_",
        ),
        (
            SERVED_AT,
            "CMIP6",
            Publication {
                pid: Some("not-a-handle".into()),
                ..Default::default()
            },
            "the item would not validate with it",
        ),
    ];
    for (base, collection, publication, reason) in cases {
        let (mut item, members, d) = dataset(FILES[0], base, collection).await;
        let before = item.clone();
        match declare(&mut item, &members, &d, &publication, &validator) {
            Declaration::Undeclared(why) => assert!(why.contains(reason), "{why}"),
            other => panic!("{reason}: {other:?}"),
        }
        assert_eq!(item, before, "{reason}");
        assert_eq!(validator.validate(&item), vec![], "{reason}");
    }
}

#[tokio::test]
async fn other_datasets_have_nothing_to_declare() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/shared/cmip5-netcdf3-series")
        .join("tas_Amon_HadGEM2-ES_rcp85_r1i1p1_229912-229912.nc");
    let d = scan(&path).await;
    let members = vec![DatasetMember::of(&d)];
    let opts = ItemOptions {
        collection: Some("CMIP6".into()),
        ..Default::default()
    };
    let mut item = item_for_dataset("x", &members, &d, &opts).unwrap();
    let outcome = declare(&mut item, &members, &d, &with_pid(), &Validator::new());
    assert_eq!(outcome, Declaration::NotCmip6);
}
