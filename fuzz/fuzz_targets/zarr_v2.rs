#![no_main]
//! The Zarr v2 reader from a consolidated `.zmetadata` document.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = zarrstac_fuzz::store_with(&[("s.zarr/.zmetadata", data)], "s.zarr");
    let _ = zarrstac_fuzz::runtime().block_on(zarrstac_formats::zarr::scan_zarr(root));
});
