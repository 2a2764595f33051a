//! CF conventions helpers: time units as CF decoders read them, and whole time axes
//! decoded quickly. The calendar rules are netcdf-reader's; this adds what real files
//! and long axes need on top of them.

use netcdf_reader::cf::time::{CfCalendar, CfTimeRef, parse_time_units};

mod times;
pub use times::decode_times;

/// Units whose reference date is written in words (`days since Jan 1, 2000`) in the
/// `YYYY-MM-DD` form CF decoders take; xarray reads such dates the same way.
pub fn normalize_units(units: &str) -> Option<String> {
    let (unit, reference) = units.split_once(" since ")?;
    let reference = reference.trim();
    for fmt in ["%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%b %d %Y", "%B %d %Y"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(reference, fmt) {
            return Some(format!("{} since {}", unit.trim(), d.format("%Y-%m-%d")));
        }
    }
    None
}

/// Parses `<unit> since <date>` in `calendar`, accepting written dates too.
pub fn parse_units(units: &str, calendar: CfCalendar) -> Result<CfTimeRef, String> {
    parse_time_units(units, calendar)
        .or_else(|e| {
            normalize_units(units)
                .ok_or(e)
                .and_then(|u| parse_time_units(&u, calendar))
        })
        .map_err(|e| format!("time units '{units}': {e}"))
}

/// Seconds in one step of a CF time unit (`days since ...` → 86400); `None` for units
/// without a fixed length (months, years).
pub fn unit_seconds(units: &str) -> Option<f64> {
    let word = units.split_whitespace().next()?.to_ascii_lowercase();
    Some(match word.as_str() {
        "second" | "seconds" | "sec" | "secs" | "s" => 1.0,
        "minute" | "minutes" | "min" | "mins" => 60.0,
        "hour" | "hours" | "hr" | "hrs" | "h" => 3600.0,
        "day" | "days" | "d" => 86400.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_dates_and_unit_lengths() {
        assert_eq!(
            normalize_units("days since Jan 1, 2000").as_deref(),
            Some("days since 2000-01-01")
        );
        assert_eq!(normalize_units("days since 2000-01-01"), None);
        assert!(parse_units("hours since Jan 1, 2000", CfCalendar::Standard).is_ok());
        assert!(parse_units("fortnights since 2000-01-01", CfCalendar::Standard).is_err());
        assert_eq!(unit_seconds("hours since 2000-01-01"), Some(3600.0));
        assert_eq!(unit_seconds("months since 2000-01-01"), None);
    }
}
