#![no_main]
//! The kerchunk JSON v1 reference reader (`zarrstac combine` inputs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zarrstac_formats::kerchunk::from_references("memory:///r.json", data);
});
