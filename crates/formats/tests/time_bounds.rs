//! The cell bounds of a time coordinate are read with it, by both file readers: files of
//! one dataset whose time units differ have their bounds rewritten when combined.

use std::path::Path;

use zarrstac_formats::{ScanOptions, scan};
use zarrstac_io::{Location, RangeReader};

async fn time_bounds(name: &str) -> Option<Vec<f64>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated/combine")
        .join(name);
    let location = Location::parse(path.to_str().unwrap()).unwrap();
    let reader = RangeReader::open(location).await.unwrap();
    let dataset = scan(reader, &ScanOptions::default()).await.unwrap();
    let bounds = dataset.root.arrays.iter().find(|a| a.name == "time_bnds")?;
    bounds.coordinate_values.clone()
}

#[tokio::test]
async fn netcdf3_and_netcdf4_time_bounds_are_read_in_c_order() {
    // bounds_b: 'hours since 2000-01-11', each day's midnight to the next.
    let expected: Vec<f64> = (0..10)
        .flat_map(|d| [d as f64 * 24.0, d as f64 * 24.0 + 24.0])
        .collect();
    for name in ["bounds_b.nc", "bounds3_b.nc"] {
        assert_eq!(
            time_bounds(name).await.as_deref(),
            Some(&expected[..]),
            "{name}"
        );
    }
}

#[tokio::test]
async fn variables_that_bound_nothing_are_not_read() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/combine/units_a.nc");
    let location = Location::parse(path.to_str().unwrap()).unwrap();
    let dataset = scan(
        RangeReader::open(location).await.unwrap(),
        &ScanOptions::default(),
    )
    .await
    .unwrap();
    let tas = dataset
        .root
        .arrays
        .iter()
        .find(|a| a.name == "tas")
        .unwrap();
    assert!(tas.coordinate_values.is_none());
}
