#![no_main]
//! CF time units ("days since 1850-01-01 00:00:00") in every calendar.
use libfuzzer_sys::fuzz_target;
use netcdf_reader::cf::time::CfCalendar;

fuzz_target!(|data: &[u8]| {
    let Ok(units) = std::str::from_utf8(data) else {
        return;
    };
    let _ = zarrstac_cf::unit_seconds(units);
    for calendar in [
        "standard",
        "proleptic_gregorian",
        "noleap",
        "all_leap",
        "360_day",
        "julian",
    ] {
        let _ = zarrstac_cf::parse_units(units, CfCalendar::parse(calendar));
    }
});
