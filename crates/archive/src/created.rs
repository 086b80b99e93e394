//! The image's `created` time: checked as Docker reads it, and written for `"now"` as
//! nixpkgs writes it.
//!
//! Docker reads `created` with Go's `time.Time` JSON decoding, strict RFC 3339. The common
//! Rust date crates accept forms Go rejects (a lower-case `t` or `z`, a space between date
//! and time, the leap second `:60`), so that an image they pass would fail in
//! `docker load`; this module checks Go's grammar itself and says what is wrong.
//!
//! ```
//! use buildimage_archive::created::{check_rfc3339, now_rfc3339};
//!
//! assert_eq!(check_rfc3339("1970-01-01T00:00:01Z"), Ok(()));
//! assert!(check_rfc3339("1970-01-01t00:00:01Z").is_err());
//! assert_eq!(now_rfc3339(1), "1970-01-01T00:00:01+00:00");
//! ```

/// The `created` value nixpkgs uses when the argument is not given.
pub const DEFAULT_CREATED: &str = "1970-01-01T00:00:01Z";

/// The current time as nixpkgs writes `created = "now"`:
/// `YYYY-MM-DDTHH:MM:SS+00:00` in UTC (`+00:00`, not `Z`).
pub fn now_rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The seconds since the epoch that an RFC 3339 date-time (as [`check_rfc3339`] accepts
/// it) stands for; a fraction of a second is dropped.
pub fn rfc3339_seconds(s: &str) -> Result<i64, String> {
    check_rfc3339(s)?;
    let bytes = s.as_bytes();
    let number = |range: std::ops::Range<usize>| -> i64 {
        bytes[range]
            .iter()
            .fold(0, |n, b| n * 10 + i64::from(b - b'0'))
    };
    let days = days_from_civil(number(0..4), number(5..7), number(8..10));
    let mut seconds = days * 86_400 + number(11..13) * 3600 + number(14..16) * 60 + number(17..19);
    // The zone: `Z`, or `±HH:MM` at the end.
    if !s.ends_with('Z') {
        let zone = &bytes[bytes.len() - 6..];
        let offset = (i64::from(zone[1] - b'0') * 10 + i64::from(zone[2] - b'0')) * 3600
            + (i64::from(zone[4] - b'0') * 10 + i64::from(zone[5] - b'0')) * 60;
        seconds -= if zone[0] == b'+' { offset } else { -offset };
    }
    Ok(seconds)
}

/// Days since 1970-01-01 of a date, proleptic Gregorian (the inverse of
/// `civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12; // month from March, [0, 11]
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, which counts in 400-year eras of
/// 146 097 days starting on March 1 so that February is the last month).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Checks `created` the way Go's `time.Time` JSON decoding does (what
/// `docker load` uses): strict RFC 3339 with an upper-case `T` and `Z`, years
/// 0000-9999, seconds 00-59 (Go rejects leap second 60), and a zone `Z` or
/// `±HH:MM` with HH ≤ 23 and MM ≤ 59.
pub fn check_rfc3339(s: &str) -> Result<(), String> {
    const TEMPLATE: &[u8; 19] = b"0000-00-00T00:00:00";
    let bytes = s.as_bytes();
    for (i, &want) in TEMPLATE.iter().enumerate() {
        let found = bytes.get(i).copied();
        let ok = match want {
            b'0' => found.is_some_and(|b| b.is_ascii_digit()),
            _ => found == Some(want),
        };
        if !ok {
            let what = match want {
                b'0' => "a digit".to_owned(),
                b'T' => "an upper-case 'T' between the date and the time".to_owned(),
                other => format!("'{}'", char::from(other)),
            };
            // Every byte before `i` matched ASCII, so `i` is a char boundary.
            let found = s[i..]
                .chars()
                .next()
                .map_or("the end".to_owned(), |c| format!("{c:?}"));
            return Err(format!(
                "expected {what} at character {}, found {found}",
                i + 1
            ));
        }
    }
    let number = |range: std::ops::Range<usize>| -> i64 {
        bytes[range]
            .iter()
            .fold(0, |n, b| n * 10 + i64::from(b - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is not between 01 and 12"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(format!(
            "day {day:02} does not exist in {year:04}-{month:02}"
        ));
    }
    if hour > 23 {
        return Err(format!("hour {hour:02} is not between 00 and 23"));
    }
    if minute > 59 {
        return Err(format!("minute {minute:02} is not between 00 and 59"));
    }
    if second > 59 {
        return Err(format!(
            "second {second:02} is not between 00 and 59 (Docker's Go time parser rejects leap seconds)"
        ));
    }

    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected digits after the '.' of the fraction of a second".to_owned());
        }
        rest = &fraction[digits..];
    } else if rest.starts_with(',') {
        return Err("expected '.', not ',', before the fraction of a second".to_owned());
    }
    match rest.as_bytes() {
        b"Z" => Ok(()),
        b"z" => Err("the UTC zone must be an upper-case 'Z'".to_owned()),
        [] => Err("the time zone is missing: add Z or an offset such as +00:00".to_owned()),
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = (h1 - b'0') * 10 + (h2 - b'0');
            let minutes = (m1 - b'0') * 10 + (m2 - b'0');
            if hours > 23 {
                Err(format!(
                    "zone offset hour {hours:02} is not between 00 and 23"
                ))
            } else if minutes > 59 {
                Err(format!(
                    "zone offset minute {minutes:02} is not between 00 and 59"
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "expected Z or an offset ±HH:MM after the time, found {rest:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_rfc3339_vectors() {
        let cases = [
            (0, "1970-01-01T00:00:00+00:00"),
            (1, "1970-01-01T00:00:01+00:00"),
            (-1, "1969-12-31T23:59:59+00:00"),
            (951_782_400, "2000-02-29T00:00:00+00:00"),
            (951_868_800, "2000-03-01T00:00:00+00:00"),
            (315_532_800, "1980-01-01T00:00:00+00:00"),
            (4_102_444_800, "2100-01-01T00:00:00+00:00"),
            (4_107_456_000, "2100-02-28T00:00:00+00:00"),
            (4_107_542_400, "2100-03-01T00:00:00+00:00"),
            (1_709_164_800, "2024-02-29T00:00:00+00:00"),
            (1_735_689_599, "2024-12-31T23:59:59+00:00"),
            (1_234_567_890, "2009-02-13T23:31:30+00:00"),
            (253_402_300_799, "9999-12-31T23:59:59+00:00"),
            (-2_208_988_800, "1900-01-01T00:00:00+00:00"),
        ];
        for (secs, want) in cases {
            assert_eq!(now_rfc3339(secs), want, "{secs}");
            assert_eq!(check_rfc3339(&now_rfc3339(secs)), Ok(()));
        }
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // An independent oracle: walk the calendar one day at a time from
        // 1970-01-01, forwards and backwards, over about 550 years each way.
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "{days}");
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in (-200_000..=0).rev() {
            assert_eq!(civil_from_days(days), (year, month, day), "{days}");
            day -= 1;
            if day == 0 {
                month -= 1;
                if month == 0 {
                    month = 12;
                    year -= 1;
                }
                day = days_in_month(year, month);
            }
        }
    }

    #[test]
    fn seconds_of_rfc3339_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:01Z"), Ok(1));
        assert_eq!(
            rfc3339_seconds("1980-01-01T00:00:00+00:00"),
            Ok(315_532_800)
        );
        assert_eq!(
            rfc3339_seconds("2009-02-14T00:31:30.25+01:00"),
            Ok(1_234_567_890)
        );
        assert_eq!(rfc3339_seconds("1969-12-31T23:00:00-01:00"), Ok(0));
        assert!(rfc3339_seconds("1970-01-01").is_err());
        for days in (-200_000..200_000).step_by(997) {
            assert_eq!(days_from_civil_of(days), days, "{days}");
        }
    }

    fn days_from_civil_of(days: i64) -> i64 {
        let (y, m, d) = civil_from_days(days);
        days_from_civil(y, m, d)
    }

    #[test]
    fn leap_years() {
        assert!(is_leap(2000) && is_leap(2024) && is_leap(1600));
        assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2023));
    }
}
