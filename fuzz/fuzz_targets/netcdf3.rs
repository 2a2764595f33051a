#![no_main]
//! The NetCDF-3 reader (CDF-1, CDF-2, CDF-5 headers and record layouts).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((version, rest)) = data.split_first() else {
        return;
    };
    let v = [1u8, 2, 5][usize::from(*version) % 3];
    zarrstac_fuzz::scan_file(&[b'C', b'D', b'F', v], rest);
});
