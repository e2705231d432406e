//! Timestamps as people write them: RFC 3339 in UTC with nanoseconds, and back.
//!
//! Hand-written rather than taken from `chrono` or `time`: the tool needs exactly one
//! output form and one input grammar over `i64` Unix nanoseconds, which is a page of
//! integer arithmetic (Howard Hinnant's `days_from_civil`/`civil_from_days`) with no time
//! zones, locales or leap-second tables, and the crate stays free of another dependency.

use std::fmt;

/// Nanoseconds in a second.
const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Seconds in a day.
const SECS_PER_DAY: i64 = 86_400;

/// Formats Unix nanoseconds as RFC 3339 in UTC with nine fractional digits,
/// as in `2024-05-01T12:00:00.123456789Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day, counted from 1970-01-01, of a proleptic Gregorian date. `month` is 1..=12.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11], March first
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Days in `month` (1..=12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses a TIME argument: Unix nanoseconds (`1714564800000000000`, may be negative),
/// an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, `2024-05-01 14:00:00.5+02:00`), or a
/// date (`2024-05-01`, midnight UTC).
///
/// # Errors
/// A message for clap, which reports it as a usage error.
pub fn parse_time(input: &str) -> Result<i64, String> {
    let text = input.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| {
            format!("{input:?} is outside the range of Unix nanoseconds (a signed 64-bit number)")
        });
    }
    parse_rfc3339(text).map_err(|why| {
        format!(
            "{input:?} is not a time: {why} (expected RFC 3339 such as \
             2024-05-01T12:00:00Z or 2024-05-01T12:00:00.5+02:00, a date such as \
             2024-05-01, or Unix nanoseconds)"
        )
    })
}

/// A cursor over the bytes of a timestamp being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// Reads exactly `width` ASCII digits as a number.
    fn number(&mut self, width: usize, what: &str) -> Result<i64, String> {
        let mut value = 0i64;
        for _ in 0..width {
            match self.peek() {
                Some(b) if b.is_ascii_digit() => {
                    value = value * 10 + i64::from(b - b'0');
                    self.at += 1;
                }
                _ => return Err(format!("expected {width} digits for the {what}")),
            }
        }
        Ok(value)
    }

    /// Consumes `expected` or fails naming what was expected.
    fn expect(&mut self, expected: u8, after: &str) -> Result<(), String> {
        if self.peek() == Some(expected) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' after the {after}", expected as char))
        }
    }
}

/// Parses `YYYY-MM-DD`, optionally followed by `THH:MM:SS[.fraction]` and a zone
/// (`Z` or `±HH:MM`). `t`, `z` and a space in place of `T` are accepted, as RFC 3339
/// allows. A leap second (`:60`) is read as the first second of the next minute.
fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let year = c.number(4, "year")?;
    c.expect(b'-', "year")?;
    let month = c.number(2, "month")?;
    c.expect(b'-', "month")?;
    let day = c.number(2, "day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not 1 to 12"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(format!("{year:04}-{month:02} has no day {day}"));
    }
    let mut seconds = i128::from(days_from_civil(year, month, day)) * i128::from(SECS_PER_DAY);
    let mut nanos = 0i128;
    if !c.done() {
        match c.peek() {
            Some(b'T' | b't' | b' ') => c.at += 1,
            _ => return Err("expected 'T' between the date and the time".into()),
        }
        let hour = c.number(2, "hour")?;
        c.expect(b':', "hour")?;
        let minute = c.number(2, "minute")?;
        c.expect(b':', "minute")?;
        let second = c.number(2, "second")?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err(format!(
                "{hour:02}:{minute:02}:{second:02} is not a time of day"
            ));
        }
        if c.peek() == Some(b'.') {
            c.at += 1;
            let mut digits = 0u32;
            while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
                // Digits past the ninth are finer than a nanosecond and are dropped.
                if digits < 9 {
                    nanos = nanos * 10 + i128::from(b - b'0');
                }
                digits += 1;
                c.at += 1;
            }
            if digits == 0 {
                return Err("expected digits after the decimal point".into());
            }
            nanos *= 10i128.pow(9u32.saturating_sub(digits));
        }
        let offset = match c.peek() {
            Some(b'Z' | b'z') => {
                c.at += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                c.at += 1;
                let hours = c.number(2, "zone offset's hours")?;
                c.expect(b':', "zone offset's hours")?;
                let minutes = c.number(2, "zone offset's minutes")?;
                if hours > 23 || minutes > 59 {
                    return Err(format!("{hours:02}:{minutes:02} is not a zone offset"));
                }
                let offset = hours * 3600 + minutes * 60;
                if sign == b'-' { -offset } else { offset }
            }
            _ => return Err("expected a zone: 'Z' or an offset such as +02:00".into()),
        };
        seconds += i128::from(hour * 3600 + minute * 60 + second - offset);
    }
    if !c.done() {
        return Err(format!("unexpected text at character {}", c.at + 1));
    }
    let total = seconds * i128::from(NANOS_PER_SEC) + nanos;
    i64::try_from(total).map_err(|_| {
        format!(
            "it is outside the range of timestamps ({} to {})",
            Rfc3339(i64::MIN),
            Rfc3339(i64::MAX)
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn fmt(ns: i64) -> String {
        Rfc3339(ns).to_string()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            fmt(1_714_564_800_123_456_789),
            "2024-05-01T12:00:00.123456789Z"
        );
        // 2000-02-29 (a leap day in a year divisible by 400) and 2100-03-01.
        assert_eq!(
            fmt(951_782_400 * NANOS_PER_SEC),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            fmt(4_107_542_400 * NANOS_PER_SEC),
            "2100-03-01T00:00:00.000000000Z"
        );
        assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn civil_and_days_round_trip_over_the_whole_range() {
        // Every day from 1677 to 2262, against a running calendar.
        let (mut y, mut m, mut d) = (1677, 1, 1);
        let first = days_from_civil(1677, 1, 1);
        for days in first..days_from_civil(2263, 1, 1) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(y, m, d), days);
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn parse_inverts_format() {
        for ns in [
            0,
            1,
            -1,
            1_714_564_800_123_456_789,
            i64::MIN,
            i64::MAX,
            -86_400 * NANOS_PER_SEC,
            951_782_400 * NANOS_PER_SEC + 999_999_999,
        ] {
            assert_eq!(parse_time(&fmt(ns)), Ok(ns), "{}", fmt(ns));
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        let noon = 1_714_564_800 * NANOS_PER_SEC;
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(noon));
        assert_eq!(parse_time("2024-05-01t12:00:00z"), Ok(noon));
        assert_eq!(parse_time("2024-05-01 14:00:00+02:00"), Ok(noon));
        assert_eq!(parse_time("2024-05-01T11:30:00-00:30"), Ok(noon));
        assert_eq!(parse_time("2024-05-01T12:00:00.5Z"), Ok(noon + 500_000_000));
        assert_eq!(
            parse_time("2024-05-01T12:00:00.1234567891234Z"),
            Ok(noon + 123_456_789)
        );
        assert_eq!(
            parse_time("2024-05-01"),
            Ok(noon - 12 * 3600 * NANOS_PER_SEC)
        );
        assert_eq!(parse_time("2016-12-31T23:59:60Z"), parse_time("2017-01-01"));
        assert_eq!(parse_time("1714564800000000000"), Ok(noon));
        assert_eq!(parse_time("-5"), Ok(-5));
        assert_eq!(parse_time(" 42 "), Ok(42));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "-",
            "yesterday",
            "2024-13-01",
            "2024-02-30",
            "2023-02-29",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00Zjunk",
            "2024-5-1",
            "9999-01-01",
            "1600-01-01",
            "99999999999999999999",
            "2024-05-01T12:00:00\u{e9}Z",
        ] {
            let err = parse_time(bad);
            assert!(err.is_err(), "{bad:?} parsed as {err:?}");
        }
        let msg = parse_time("2024-02-30").unwrap_err();
        assert!(msg.contains("has no day 30"), "{msg}");
    }
}
