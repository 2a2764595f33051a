//! Committed (named) HDF5 datatypes: attributes whose datatype is shared from a committed
//! one (attribute message v3, shared flag) and datasets of committed types are read like
//! any other; one the model cannot hold is left out alone, never the file.

use std::path::Path;

use zarrstac_formats::{ScanOptions, scan};
use zarrstac_io::{Location, RangeReader};
use zarrstac_model::{AttrValue, DataType, Dataset};

async fn committed_types() -> Dataset {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/committed_types.h5");
    let location = Location::parse(path.to_str().unwrap()).unwrap();
    let reader = RangeReader::open(location).await.unwrap();
    scan(reader, &ScanOptions::default())
        .await
        .expect("a file with committed datatypes is read")
}

#[tokio::test]
async fn attributes_of_committed_datatypes_keep_their_values() {
    let d = committed_types().await;
    let root = &d.root.attributes;
    assert_eq!(
        root.get("offset"),
        Some(&AttrValue::Float {
            values: vec![273.15f32 as f64],
            bits: 32
        })
    );
    assert_eq!(root.get("label").and_then(|v| v.as_str()), Some("station"));
    assert_eq!(root.get("quality"), Some(&AttrValue::UInt(vec![0, 1, 2])));
    assert_eq!(
        root.get("title").and_then(|v| v.as_str()),
        Some("committed datatypes")
    );
    // A compound value has no Zarr attribute form: left out (and reported), alone.
    assert!(root.get("origin").is_none());

    let temperature = d
        .root
        .arrays
        .iter()
        .find(|a| a.name == "temperature")
        .unwrap();
    assert!(matches!(
        temperature.dtype,
        DataType::Float { bytes: 4, .. }
    ));
    assert_eq!(
        temperature.attributes.get("valid_min"),
        Some(&AttrValue::Float {
            values: vec![-40.0],
            bits: 32
        })
    );
    assert_eq!(
        temperature.attributes.get("units").and_then(|v| v.as_str()),
        Some("degC")
    );
}

#[tokio::test]
async fn datasets_of_committed_datatypes_are_arrays() {
    let d = committed_types().await;
    let names: Vec<&str> = d.root.arrays.iter().map(|a| a.name.as_str()).collect();
    for name in ["temperature", "records", "flags"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let records = d.root.arrays.iter().find(|a| a.name == "records").unwrap();
    assert!(
        matches!(records.dtype, DataType::Compound { .. }),
        "{:?}",
        records.dtype
    );
    assert!(d.refused.is_empty(), "{:?}", d.refused);
}
