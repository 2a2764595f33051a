#![no_main]
//! The Zarr v3 reader from a root `zarr.json` (inline consolidated metadata or not; a
//! walk then finds one child document, the input again, so nested nodes are parsed too).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = zarrstac_fuzz::store_with(
        &[("s.zarr/zarr.json", data), ("s.zarr/a/zarr.json", data)],
        "s.zarr",
    );
    let _ = zarrstac_fuzz::runtime().block_on(zarrstac_formats::zarr_v3::scan_zarr_v3(root));
});
