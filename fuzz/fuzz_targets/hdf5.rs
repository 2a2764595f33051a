#![no_main]
//! The HDF5/NetCDF-4 reader: superblock, object headers, B-trees and chunk indexes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zarrstac_fuzz::scan_file(b"\x89HDF\r\n\x1a\n", data);
});
