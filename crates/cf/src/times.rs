//! Decoding whole time axes. netcdf-reader's exact decoding does its calendar arithmetic
//! in 128-bit integers for every value; an axis of a dataset of thousands of files is
//! decoded on every rebuild of its item, so the calendars that allow it (all but the
//! Julian one, and the mixed standard one before its Gregorian years) are decoded here
//! with 64-bit day numbers instead: the same dates, value for value (a test compares
//! them), netcdf-reader's decoding for everything else.

use netcdf_reader::cf::time::{
    CfCalendar, CfDate, CfDateTime, CfTimeOfDay, CfTimeRef, CfTimeUnit, decode_time_exact,
};

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_DAY: i128 = 86_400 * NANOS_PER_SECOND;
/// The first Gregorian day of the standard calendar: from it on, standard dates are
/// proleptic Gregorian dates.
const FIRST_GREGORIAN: (i32, u8, u8) = (1582, 10, 15);
/// Day numbers beyond this (about 2.7 million years) go to the exact decoder.
const DAY_LIMIT: i64 = 1_000_000_000;

/// Decodes `values` (all finite) against `reference`, as [`decode_time_exact`] does
/// each.
pub fn decode_times(values: &[f64], reference: &CfTimeRef) -> Result<Vec<CfDateTime>, String> {
    let exact =
        |v: f64| decode_time_exact(v, reference).map_err(|e| format!("time value {v}: {e}"));
    match FastAxis::new(reference) {
        Some(fast) => values
            .iter()
            .map(|&v| fast.decode(v).map_or_else(|| exact(v), Ok))
            .collect(),
        None => values.iter().map(|&v| exact(v)).collect(),
    }
}

struct FastAxis {
    calendar: CfCalendar,
    nanos_per_unit: f64,
    epoch_day: i64,
    epoch_nanos_of_day: i128,
    /// The earliest day number decoded here (the standard calendar's Gregorian days).
    first_day: i64,
}

impl FastAxis {
    fn new(reference: &CfTimeRef) -> Option<Self> {
        let nanos_per_unit = match reference.unit {
            CfTimeUnit::Seconds => NANOS_PER_SECOND,
            CfTimeUnit::Minutes => 60 * NANOS_PER_SECOND,
            CfTimeUnit::Hours => 3_600 * NANOS_PER_SECOND,
            CfTimeUnit::Days => NANOS_PER_DAY,
            CfTimeUnit::Months => return None,
        } as f64;
        let e = &reference.epoch;
        let calendar = reference.calendar;
        let first_day = match calendar {
            CfCalendar::Julian => return None,
            CfCalendar::Standard => {
                if (e.year, e.month, e.day) < FIRST_GREGORIAN {
                    return None;
                }
                gregorian_day(
                    FIRST_GREGORIAN.0 as i64,
                    FIRST_GREGORIAN.1,
                    FIRST_GREGORIAN.2,
                )
            }
            _ => i64::MIN,
        };
        Some(FastAxis {
            calendar,
            nanos_per_unit,
            epoch_day: day_number(calendar, e.year as i64, e.month, e.day)?,
            epoch_nanos_of_day: ((e.hour as i128 * 60 + e.minute as i128) * 60 + e.second as i128)
                * NANOS_PER_SECOND
                + e.nanosecond as i128,
            first_day,
        })
    }

    /// `None`: leave this value to the exact decoder.
    fn decode(&self, value: f64) -> Option<CfDateTime> {
        // Rounded to whole nanoseconds as netcdf-reader rounds them.
        let nanos = (value * self.nanos_per_unit).round();
        if !nanos.is_finite() || nanos.abs() > 1e30 {
            return None;
        }
        let total = nanos as i128 + self.epoch_nanos_of_day;
        let days = i64::try_from(total.div_euclid(NANOS_PER_DAY)).ok()?;
        let of_day = total.rem_euclid(NANOS_PER_DAY) as i64;
        let day = self.epoch_day.checked_add(days)?;
        if !(-DAY_LIMIT..=DAY_LIMIT).contains(&day) || day < self.first_day {
            return None;
        }
        let (year, month, day) = date_of(self.calendar, day)?;
        let seconds = of_day / NANOS_PER_SECOND as i64;
        let time = CfTimeOfDay::new(
            (seconds / 3600) as u8,
            (seconds / 60 % 60) as u8,
            (seconds % 60) as u8,
            (of_day % NANOS_PER_SECOND as i64) as u32,
        )
        .ok()?;
        CfDateTime::new(
            self.calendar,
            CfDate::new(i32::try_from(year).ok()?, month, day),
            time,
        )
        .ok()
    }
}

/// Days before each month of a 365-day and of a 366-day year.
const BEFORE_MONTH: [[i64; 13]; 2] = [
    [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365],
    [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366],
];

fn day_number(calendar: CfCalendar, year: i64, month: u8, day: u8) -> Option<i64> {
    let m = usize::from(month.checked_sub(1)?).min(11);
    let d = i64::from(day) - 1;
    Some(match calendar {
        CfCalendar::NoLeap => year * 365 + BEFORE_MONTH[0][m] + d,
        CfCalendar::AllLeap => year * 366 + BEFORE_MONTH[1][m] + d,
        CfCalendar::Day360 => year * 360 + m as i64 * 30 + d,
        CfCalendar::Standard | CfCalendar::ProlepticGregorian => gregorian_day(year, month, day),
        CfCalendar::Julian => return None,
    })
}

fn date_of(calendar: CfCalendar, day: i64) -> Option<(i64, u8, u8)> {
    let in_year = |days_in_year: i64, table: &[i64; 13]| {
        let (year, doy) = (day.div_euclid(days_in_year), day.rem_euclid(days_in_year));
        let month = table.partition_point(|&before| before <= doy);
        (year, month as u8, (doy - table[month - 1] + 1) as u8)
    };
    Some(match calendar {
        CfCalendar::NoLeap => in_year(365, &BEFORE_MONTH[0]),
        CfCalendar::AllLeap => in_year(366, &BEFORE_MONTH[1]),
        CfCalendar::Day360 => {
            let (year, doy) = (day.div_euclid(360), day.rem_euclid(360));
            (year, (doy / 30 + 1) as u8, (doy % 30 + 1) as u8)
        }
        CfCalendar::Standard | CfCalendar::ProlepticGregorian => gregorian_date(day),
        CfCalendar::Julian => return None,
    })
}

/// Days from 1970-01-01 of a proleptic Gregorian date (the civil-days algorithm of
/// H. Hinnant's date library, in 400-year eras).
fn gregorian_day(year: i64, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn gregorian_date(day: i64) -> (i64, u8, u8) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcdf_reader::cf::time::parse_time_units;

    /// Values of every kind an axis holds: whole and fractional, negative, far out,
    /// halfway nanoseconds, around month and leap-day boundaries.
    fn values() -> Vec<f64> {
        let mut v = vec![0.0, -0.0, 0.5, -0.5, 1e-10, 59.0, 59.999_999, 365.0 / 24.0];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for k in 0..4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            let scale = [1.0, 400.0, 40_000.0, 4_000_000.0, 1e9][k % 5];
            v.push((unit - 0.3) * scale);
            v.push(((unit - 0.3) * scale).round());
            v.push(k as f64 * 365.0 / 12.0 + 365.0 / 24.0);
            v.push(k as f64 * 30.0 + 0.25);
        }
        v
    }

    #[test]
    fn axes_decode_to_the_dates_the_exact_decoder_gives() {
        let calendars = [
            "standard",
            "proleptic_gregorian",
            "noleap",
            "all_leap",
            "360_day",
            "julian",
        ];
        let units = [
            "days since 1850-01-01",
            "hours since 2000-02-29 06:30:00",
            "seconds since 1970-01-01 00:00:00.5",
            "minutes since 0001-01-01",
            "days since 1582-10-15",
            "days since 1600-03-01 12:00:00",
            "days since -0100-12-31",
            "months since 2000-01-01",
        ];
        let values = values();
        let mut compared = 0;
        for calendar in calendars {
            let cal = CfCalendar::parse(calendar);
            for u in units {
                let Ok(reference) = parse_time_units(u, cal) else {
                    continue;
                };
                let got = values
                    .iter()
                    .map(|&v| decode_times(&[v], &reference).ok().map(|mut d| d.remove(0)))
                    .collect::<Vec<_>>();
                for (v, got) in values.iter().zip(got) {
                    let want = decode_time_exact(*v, &reference).ok();
                    assert_eq!(got, want, "{v} {u} in {calendar}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 100_000, "{compared}");
    }

    #[test]
    fn the_fast_path_covers_the_common_calendars() {
        for (calendar, fast) in [
            ("standard", true),
            ("proleptic_gregorian", true),
            ("noleap", true),
            ("360_day", true),
            ("julian", false),
        ] {
            let r = parse_time_units("days since 1850-01-01", CfCalendar::parse(calendar)).unwrap();
            assert_eq!(FastAxis::new(&r).is_some(), fast, "{calendar}");
        }
        let early = parse_time_units("days since 1500-01-01", CfCalendar::Standard).unwrap();
        assert!(FastAxis::new(&early).is_none());
    }
}
