//! CF time coordinates as RFC 3339 strings, decoded in the variable's own calendar.

use netcdf_reader::cf::time::{CfCalendar, CfDateTime};

/// A decoded time axis: first and last instants and, when regular, its step.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeExtent {
    pub start: String,
    pub end: String,
    /// ISO 8601 duration when every step is the same (`P1D`, `PT6H`, `P1M`, `P1Y`).
    pub step: Option<String>,
    pub calendar: String,
}

/// RFC 3339 text of a CF date. Dates that exist only in the source calendar
/// (30 February in `360_day`, 29 February of a common year in `all_leap`) are written as
/// the last real day of that month, so the text is a valid timestamp; the calendar is
/// kept beside it.
pub fn rfc3339(t: &CfDateTime) -> String {
    let last = days_in_gregorian_month(t.year, t.month);
    let day = t.day.min(last).max(1);
    let year = t.year.clamp(0, 9999);
    // Whole seconds: sub-second parts of decoded CF times are floating-point noise
    // (hours stored as floats); round rather than truncate, without rolling into the
    // next minute.
    let mut t = *t;
    if t.nanosecond >= 500_000_000 && t.second < 59 {
        t.second += 1;
    }
    let mut s = format!(
        "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}",
        t.month, t.hour, t.minute, t.second
    );
    s.push('Z');
    s
}

fn days_in_gregorian_month(year: i32, month: u8) -> u8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Decodes finite raw time values with their `units` and `calendar` attributes.
pub fn decode(
    finite: &[f64],
    units: &str,
    calendar: Option<&str>,
) -> Result<Vec<CfDateTime>, String> {
    let cal = CfCalendar::parse(calendar.unwrap_or("standard"));
    let reference = zarrstac_cf::parse_units(units, cal)?;
    zarrstac_cf::decode_times(finite, &reference)
}

/// The extent of a time axis, or why it cannot be decoded.
pub fn extent(
    values: &[f64],
    units: &str,
    calendar: Option<&str>,
) -> Result<Option<TimeExtent>, String> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let times = decode(&finite, units, calendar)?;
    let (Some(first), Some(last)) = (
        times.iter().min_by_key(|t| key(t)),
        times.iter().max_by_key(|t| key(t)),
    ) else {
        return Ok(None);
    };
    Ok(Some(TimeExtent {
        start: rfc3339(first),
        end: rfc3339(last),
        step: step(&times, &finite, units),
        calendar: calendar.unwrap_or("standard").to_string(),
    }))
}

fn key(t: &CfDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    (
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.nanosecond,
    )
}

/// An ISO 8601 duration when the axis is regular in calendar terms (same day-of-month
/// and time for monthly or yearly data) or in raw value terms (days, hours ...).
fn step(times: &[CfDateTime], values: &[f64], units: &str) -> Option<String> {
    if times.len() < 2 {
        return None;
    }
    let months: Vec<i64> = times
        .iter()
        .map(|t| t.year as i64 * 12 + t.month as i64)
        .collect();
    let same_in_month = times.windows(2).all(|w| {
        (w[0].day, w[0].hour, w[0].minute, w[0].second)
            == (w[1].day, w[1].hour, w[1].minute, w[1].second)
    });
    // Monthly data is regular in months even though its days wander (mid-month values
    // fall on the 15th or 16th depending on the month's length).
    let wandering = times.windows(2).all(|w| w[0].day.abs_diff(w[1].day) <= 2);
    if same_in_month || wandering {
        let d = months[1] - months[0];
        if d > 0 && months.windows(2).all(|w| w[1] - w[0] == d) {
            return Some(if d % 12 == 0 {
                format!("P{}Y", d / 12)
            } else {
                format!("P{d}M")
            });
        }
    }
    let d = values[1] - values[0];
    let regular = d > 0.0
        && values
            .windows(2)
            .all(|w| ((w[1] - w[0]) - d).abs() <= d * 1e-9);
    if !regular {
        return None;
    }
    let seconds = d * zarrstac_cf::unit_seconds(units)?;
    let secs = seconds.round() as i64;
    if (seconds - secs as f64).abs() > 1e-6 || secs <= 0 {
        return None;
    }
    Some(if secs % 86400 == 0 {
        format!("P{}D", secs / 86400)
    } else if secs % 3600 == 0 {
        format!("PT{}H", secs / 3600)
    } else if secs % 60 == 0 {
        format!("PT{}M", secs / 60)
    } else {
        format!("PT{secs}S")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noleap_monthly_axis() {
        // 1850-01-16 .. in days since 1850-01-01, noleap, mid-month values.
        let values = [15.5, 45.0, 74.5];
        let e = extent(&values, "days since 1850-01-01 00:00:00", Some("noleap"))
            .unwrap()
            .unwrap();
        assert_eq!(e.start, "1850-01-16T12:00:00Z");
        assert_eq!(e.end, "1850-03-16T12:00:00Z");
    }

    #[test]
    fn day_360_dates_stay_valid() {
        // Day 59 of 2005 in a 360-day calendar is 30 February.
        let e = extent(&[59.0], "days since 2005-01-01", Some("360_day"))
            .unwrap()
            .unwrap();
        assert_eq!(e.start, "2005-02-28T00:00:00Z");
    }

    #[test]
    fn units_with_a_written_date_are_parsed() {
        let e = extent(&[0.0, 1.0], "days since Jan 1, 2000", None)
            .unwrap()
            .unwrap();
        assert_eq!(e.start, "2000-01-01T00:00:00Z");
        assert_eq!(e.end, "2000-01-02T00:00:00Z");
    }

    #[test]
    fn climatology_in_year_zero_is_valid_text() {
        let e = extent(&[366.0, 8401.335], "hour since 0000-01-01 00:00:00", None)
            .unwrap()
            .unwrap();
        assert_eq!(e.start, "0000-01-16T06:00:00Z");
        assert!(!e.end.contains('.'), "{}", e.end);
    }

    #[test]
    fn regular_daily_step() {
        let e = extent(&[0.0, 6.0, 12.0], "hours since 2000-01-01", None)
            .unwrap()
            .unwrap();
        assert_eq!(e.step.as_deref(), Some("PT6H"));
        assert_eq!(e.end, "2000-01-01T12:00:00Z");
    }

    #[test]
    fn regular_monthly_step() {
        let e = extent(
            &[0.0, 30.0, 60.0, 90.0],
            "days since 2000-01-01",
            Some("360_day"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.step.as_deref(), Some("P1M"));
    }
}
