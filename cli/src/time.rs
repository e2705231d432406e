//! Times as people write them, and as the tool prints them.
//!
//! Printing: RFC 3339 with nanoseconds, in UTC (`2024-05-01T12:00:00.000000000Z`) or, with
//! `--local`, in the system's time zone with its offset (`...+02:00`). The UTC form is
//! hand-written integer arithmetic (Howard Hinnant's `days_from_civil`/`civil_from_days`)
//! because it runs once per printed event; the time-zone rules come from `jiff`.
//!
//! Reading (`--since`, `--until`, `--timestamp`, import fields): RFC 3339 with an offset,
//! a date or a date and time without one (read in the output zone), `now`, `today`,
//! `yesterday`, `tomorrow`, relative times (`-1h`, `-15m`, `+2d`, `1h30m ago`) and Unix time
//! with an explicit unit (`1714564800s`, `...ms`, `...us`, `...ns`, `@1714564800`). A bare
//! number is refused: its unit cannot be told from its digits with certainty.

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

/// The accepted forms of TIME, for `--help` and for error messages.
pub const TIME_FORMS: &str = "RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00), a date \
(2024-05-01) or date and time without offset (2024-05-01T12:00:00) in the output zone (UTC, or \
local with --local), now, today, yesterday, tomorrow, relative (-1h, -15m, -2d, +30s, '1h30m ago'), \
or Unix time with a unit (1714564800s, 1714564800000ms, ...us, ...ns, @1714564800)";

/// A time zone in which times are printed and in which dates without an offset are read.
#[derive(Debug, Clone)]
pub enum Zone {
    /// Coordinated Universal Time, printed with `Z`.
    Utc,
    /// The system's time zone (`TZ`, else `/etc/localtime`), printed with its offset.
    Local(jiff::tz::TimeZone),
}

impl Zone {
    /// UTC, or the system's zone when `local`.
    pub fn new(local: bool) -> Self {
        if local {
            Self::Local(jiff::tz::TimeZone::system())
        } else {
            Self::Utc
        }
    }

    /// The zone's offset from UTC at `ns`, in seconds.
    fn offset_at(&self, ns: i64) -> i32 {
        match self {
            Self::Utc => 0,
            Self::Local(tz) => jiff::Timestamp::from_nanosecond(i128::from(ns))
                .map_or(0, |t| tz.to_offset(t).seconds()),
        }
    }

    /// `ns` printed in this zone.
    pub fn show(&self, ns: i64) -> Shown {
        Shown {
            ns,
            offset: self.offset_at(ns),
        }
    }

    /// Unix nanoseconds of a civil date and time read in this zone (the earlier instant of
    /// a time that occurs twice, the later side of a gap, as `jiff` resolves them).
    fn civil(&self, days: i64, nanos_of_day: i64) -> Result<i64, String> {
        let utc =
            i128::from(days) * i128::from(SECS_PER_DAY * NANOS_PER_SEC) + i128::from(nanos_of_day);
        match self {
            Self::Utc => i64::try_from(utc).map_err(|_| out_of_range()),
            Self::Local(tz) => {
                let secs = utc.div_euclid(i128::from(NANOS_PER_SEC));
                let frac = utc.rem_euclid(i128::from(NANOS_PER_SEC));
                let (year, month, day) = civil_from_days(days);
                let of_day = secs.rem_euclid(i128::from(SECS_PER_DAY));
                let to_i8 = |v: i128| i8::try_from(v).map_err(|_| out_of_range());
                let datetime = jiff::civil::DateTime::new(
                    i16::try_from(year).map_err(|_| out_of_range())?,
                    to_i8(i128::from(month))?,
                    to_i8(i128::from(day))?,
                    to_i8(of_day / 3600)?,
                    to_i8(of_day / 60 % 60)?,
                    to_i8(of_day % 60)?,
                    i32::try_from(frac).map_err(|_| out_of_range())?,
                )
                .map_err(|e| e.to_string())?;
                let instant = tz.to_timestamp(datetime).map_err(|e| e.to_string())?;
                i64::try_from(instant.as_nanosecond()).map_err(|_| out_of_range())
            }
        }
    }

    /// The day number (from 1970-01-01) of the date at `ns` in this zone.
    fn day_of(&self, ns: i64) -> i64 {
        let local = i128::from(ns) + i128::from(self.offset_at(ns)) * i128::from(NANOS_PER_SEC);
        let days = local.div_euclid(i128::from(SECS_PER_DAY * NANOS_PER_SEC));
        i64::try_from(days).unwrap_or(0)
    }
}

/// A timestamp printed as RFC 3339 with nanoseconds at a fixed offset: `Z` for UTC,
/// otherwise `+HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    ns: i64,
    offset: i32,
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset == 0 {
            return Rfc3339(self.ns).fmt(f);
        }
        let local = i128::from(self.ns) + i128::from(self.offset) * i128::from(NANOS_PER_SEC);
        let nanos = local.rem_euclid(i128::from(NANOS_PER_SEC));
        let secs = local.div_euclid(i128::from(NANOS_PER_SEC));
        let days = i64::try_from(secs.div_euclid(i128::from(SECS_PER_DAY))).unwrap_or(0);
        let of_day = secs.rem_euclid(i128::from(SECS_PER_DAY));
        let (year, month, day) = civil_from_days(days);
        let sign = if self.offset < 0 { '-' } else { '+' };
        let offset = self.offset.unsigned_abs();
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}{sign}{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            offset / 3600,
            offset / 60 % 60
        )
    }
}

/// A TIME as written, before it is read in a zone and against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// An instant: RFC 3339 with an offset, or Unix time with a unit.
    Instant(i64),
    /// A date, or a date and time without an offset: `days` since 1970-01-01 and the time
    /// of day in nanoseconds, read in the output zone.
    Civil {
        /// Days since 1970-01-01.
        days: i64,
        /// Nanoseconds since midnight.
        nanos_of_day: i64,
    },
    /// Now plus this many nanoseconds (`now`, `-1h`, `+2d`); wider than a timestamp, since
    /// a span longer than 2^63 ns (292 years) back from now still lands in the range.
    FromNow(i128),
    /// Midnight of today plus this many days (`today`, `yesterday`, `tomorrow`).
    Day(i64),
}

impl TimeSpec {
    /// Unix nanoseconds of this time, with dates read in `zone` and `now` as the clock.
    ///
    /// # Errors
    /// When the time falls outside the range of timestamps (1677 to 2262).
    pub fn resolve(&self, zone: &Zone, now: i64) -> Result<i64, String> {
        match *self {
            Self::Instant(ns) => Ok(ns),
            Self::Civil { days, nanos_of_day } => zone.civil(days, nanos_of_day),
            Self::FromNow(delta) => i128::from(now)
                .checked_add(delta)
                .and_then(|t| i64::try_from(t).ok())
                .ok_or_else(|| {
                    format!(
                        "{} from now, it is outside {}",
                        if delta < 0 {
                            "counted back"
                        } else {
                            "counted on"
                        },
                        timestamp_range()
                    )
                }),
            Self::Day(delta) => {
                let today = zone.day_of(now);
                zone.civil(today.saturating_add(delta), 0)
            }
        }
    }
}

/// The wall clock in Unix nanoseconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// The message for a time outside the range of `i64` nanoseconds.
fn out_of_range() -> String {
    format!("it is outside {}", timestamp_range())
}

/// `the range of timestamps (1677-09-21T… to 2262-04-11T…)`.
fn timestamp_range() -> String {
    format!(
        "the range of timestamps ({} to {})",
        Rfc3339(i64::MIN),
        Rfc3339(i64::MAX)
    )
}

/// The message for a duration longer than `limit` (in words) allows.
fn too_long(text: &str, limit: &str) -> String {
    format!("{text:?} is too long: a duration is at most {limit}")
}

/// Parses a TIME argument into a [`TimeSpec`]; see the module docs for the forms.
///
/// # Errors
/// A message for clap, which reports it as a usage error; it lists the accepted forms.
pub fn parse_time(input: &str) -> Result<TimeSpec, String> {
    parse_spec(input.trim())
        .map_err(|why| format!("{input:?} is not a time: {why}.\n  Accepted forms: {TIME_FORMS}"))
}

fn parse_spec(text: &str) -> Result<TimeSpec, String> {
    match text.to_ascii_lowercase().as_str() {
        "now" => return Ok(TimeSpec::FromNow(0)),
        "today" => return Ok(TimeSpec::Day(0)),
        "yesterday" => return Ok(TimeSpec::Day(-1)),
        "tomorrow" => return Ok(TimeSpec::Day(1)),
        _ => {}
    }
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(seconds) = text.strip_prefix('@') {
        return unix(seconds, NANOS_PER_SEC).map(TimeSpec::Instant);
    }
    if let Some(ago) = text.strip_suffix("ago").map(str::trim_end) {
        return Ok(TimeSpec::FromNow(-wide_duration(ago, RELATIVE_LIMIT)?));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return Ok(TimeSpec::FromNow(-wide_duration(rest, RELATIVE_LIMIT)?));
    }
    if let Some(rest) = text.strip_prefix('+') {
        return Ok(TimeSpec::FromNow(wide_duration(rest, RELATIVE_LIMIT)?));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == text.len() {
        return Err(bare_number(text));
    }
    let number_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    if let (Some(number), Some(unit)) = (text.get(..number_len), text.get(number_len..)) {
        let scale = match unit {
            "s" => Some(NANOS_PER_SEC),
            "ms" => Some(1_000_000),
            "us" | "\u{b5}s" => Some(1_000),
            "ns" => Some(1),
            _ => None,
        };
        if let Some(scale) = scale {
            return unix(number, scale).map(TimeSpec::Instant);
        }
        if digits < 4 && duration(text).is_ok() {
            return Err(format!(
                "a duration needs a sign to be a time: -{text} ({text} ago) or +{text}"
            ));
        }
    }
    parse_rfc3339(text)
}

/// The message for a number without a unit, with a guess at the unit from its digits.
fn bare_number(text: &str) -> String {
    let guess = match text.len() {
        9..=11 => format!(" (if it is Unix seconds, write {text}s or @{text})"),
        12..=14 => format!(" (if it is Unix milliseconds, write {text}ms)"),
        15..=17 => format!(" (if it is Unix microseconds, write {text}us)"),
        18..=20 => format!(" (if it is Unix nanoseconds, write {text}ns)"),
        _ => String::new(),
    };
    format!(
        "a bare number could be seconds, milliseconds, microseconds or nanoseconds; write its unit{guess}"
    )
}

/// Reads `number` (digits, optionally with a fraction) times `scale` nanoseconds, as
/// Unix time; a leading `-` is allowed for times before 1970.
///
/// # Errors
/// A message when `number` is not a number or the time is out of range.
pub fn unix(number: &str, scale: i64) -> Result<i64, String> {
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let ns = scaled(number, scale).map_err(|why| match why {
        Scaled::NotANumber(message) => message,
        Scaled::TooLarge => out_of_range(),
    })?;
    let ns = if negative { -ns } else { ns };
    i64::try_from(ns).map_err(|_| out_of_range())
}

/// `number` (digits with an optional fraction) times `scale`, exactly, in `i128`;
/// fraction digits finer than a nanosecond are dropped.
fn scaled(number: &str, scale: i64) -> Result<i128, Scaled> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(Scaled::NotANumber(format!("{number:?} is not a number")));
    }
    let whole: i128 = whole.parse().map_err(|_| Scaled::TooLarge)?;
    let mut value = whole
        .checked_mul(i128::from(scale))
        .ok_or(Scaled::TooLarge)?;
    let mut unit = i128::from(scale);
    for digit in fraction.bytes() {
        unit /= 10;
        value += i128::from(digit - b'0') * unit;
    }
    Ok(value)
}

/// Why [`scaled`] failed.
enum Scaled {
    /// Not digits with an optional fraction; the message says so.
    NotANumber(String),
    /// Too large for `i128` nanoseconds.
    TooLarge,
}

/// Parses a duration such as `15m`, `1h30m`, `2d`, `500ms` or `1.5s` into nanoseconds.
/// Units: `ns`, `us`, `ms`, `s`, `m` (`min`), `h`, `d`, `w`.
///
/// # Errors
/// A message naming what is wrong: a sign (a duration is a length of time), a missing
/// unit, a duration longer than 2^63 - 1 ns (about 292 years).
pub fn duration(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with(['-', '+']) {
        return Err(format!(
            "{text:?} has a sign; a duration is a length of time, such as 10s or 2m"
        ));
    }
    let nanos = wide_duration(trimmed, DURATION_LIMIT)?;
    i64::try_from(nanos).map_err(|_| too_long(trimmed, DURATION_LIMIT.1))
}

/// The longest [`duration`], and its words.
const DURATION_LIMIT: (u64, &str) = (i64::MAX as u64, "2^63 - 1 ns (about 292 years)");

/// The longest time a relative time counts from now, and its words.
const RELATIVE_LIMIT: (u64, &str) = (u64::MAX, "2^64 ns (about 584 years)");

/// [`duration`] in `i128`, at most `limit` nanoseconds, however written (relative times
/// count up to 2^64 ns from now).
fn wide_duration(text: &str, limit: (u64, &str)) -> Result<i128, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a duration such as 15m, 1h30m or 2d".into());
    }
    let mut total: i128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => NANOS_PER_SEC,
            "m" | "min" | "mins" => 60 * NANOS_PER_SEC,
            "h" | "hr" | "hour" | "hours" => 3600 * NANOS_PER_SEC,
            "d" | "day" | "days" => SECS_PER_DAY * NANOS_PER_SEC,
            "w" | "week" | "weeks" => 7 * SECS_PER_DAY * NANOS_PER_SEC,
            "" => return Err(format!("{text:?} needs a unit (ns, us, ms, s, m, h, d, w)")),
            other => {
                return Err(format!(
                    "{other:?} is not a unit of time (ns, us, ms, s, m, h, d, w)"
                ));
            }
        };
        if number.is_empty() {
            return Err(format!(
                "{text:?} is not a duration (examples: 15m, 1h30m, 2d)"
            ));
        }
        // Whatever the number's own size, past 2^64 ns it is too long.
        let part = scaled(number, scale).map_err(|why| match why {
            Scaled::NotANumber(message) => message,
            Scaled::TooLarge => too_long(text, limit.1),
        })?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= i128::from(limit.0))
            .ok_or_else(|| too_long(text, limit.1))?;
        rest = after.trim_start();
    }
    Ok(total)
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

/// Parses `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.fraction]]` and a zone (`Z`,
/// `±HH:MM`, `±HHMM` or `±HH`, a space allowed before the sign). Without a zone the result is civil (read in the output zone). `t`, `z` and a
/// space in place of `T` are accepted, as RFC 3339 allows. A leap second (`:60`) is read as
/// the first second of the next minute.
fn parse_rfc3339(text: &str) -> Result<TimeSpec, String> {
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
    let days = days_from_civil(year, month, day);
    if c.done() {
        return Ok(TimeSpec::Civil {
            days,
            nanos_of_day: 0,
        });
    }
    match c.peek() {
        Some(b'T' | b't' | b' ') => c.at += 1,
        _ => return Err("expected 'T' between the date and the time".into()),
    }
    let hour = c.number(2, "hour")?;
    c.expect(b':', "hour")?;
    let minute = c.number(2, "minute")?;
    let mut second = 0;
    if c.peek() == Some(b':') {
        c.at += 1;
        second = c.number(2, "second")?;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    let mut nanos = 0i64;
    if c.peek() == Some(b'.') {
        c.at += 1;
        let mut digits = 0u32;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            // Digits past the ninth are finer than a nanosecond and are dropped.
            if digits < 9 {
                nanos = nanos * 10 + i64::from(b - b'0');
            }
            digits += 1;
            c.at += 1;
        }
        if digits == 0 {
            return Err("expected digits after the decimal point".into());
        }
        nanos *= 10i64.pow(9u32.saturating_sub(digits));
    }
    // `2024-05-01 14:00:00 +0200`, as `date '+%F %T %z'` and Git print it.
    if c.peek() == Some(b' ') && matches!(c.bytes.get(c.at + 1), Some(b'+' | b'-')) {
        c.at += 1;
    }
    let offset = match c.peek() {
        None => None,
        Some(b'Z' | b'z') => {
            c.at += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            c.at += 1;
            // `+02:00` (RFC 3339), and `+0200` and `+02` as `date +%z` and ISO 8601 write them.
            let hours = c.number(2, "zone offset's hours")?;
            let minutes = match c.peek() {
                Some(b':') => {
                    c.at += 1;
                    c.number(2, "zone offset's minutes")?
                }
                Some(b) if b.is_ascii_digit() => c.number(2, "zone offset's minutes")?,
                _ => 0,
            };
            if hours > 23 || minutes > 59 {
                return Err(format!("{hours:02}:{minutes:02} is not a zone offset"));
            }
            let offset = hours * 3600 + minutes * 60;
            Some(if sign == b'-' { -offset } else { offset })
        }
        _ => return Err("expected a zone: 'Z' or an offset such as +02:00".into()),
    };
    if !c.done() {
        return Err(format!("unexpected text at character {}", c.at + 1));
    }
    let nanos_of_day = (hour * 3600 + minute * 60 + second) * NANOS_PER_SEC + nanos;
    let Some(offset) = offset else {
        return Ok(TimeSpec::Civil { days, nanos_of_day });
    };
    let total = i128::from(days) * i128::from(SECS_PER_DAY * NANOS_PER_SEC)
        + i128::from(nanos_of_day)
        - i128::from(offset) * i128::from(NANOS_PER_SEC);
    i64::try_from(total)
        .map(TimeSpec::Instant)
        .map_err(|_| out_of_range())
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

    /// Parses and resolves in UTC with the clock at `NOW`.
    fn at(input: &str) -> Result<i64, String> {
        parse_time(input)?.resolve(&Zone::Utc, NOW)
    }

    /// 2024-05-01T12:00:00Z.
    const NOON: i64 = 1_714_564_800 * NANOS_PER_SEC;
    /// The clock in these tests: 2024-05-01T12:34:56.5Z.
    const NOW: i64 = NOON + (34 * 60 + 56) * NANOS_PER_SEC + 500_000_000;

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
            assert_eq!(at(&fmt(ns)), Ok(ns), "{}", fmt(ns));
            // A leading '-' makes a relative time (`-5ns` is 5 ns ago).
            if ns >= 0 {
                assert_eq!(at(&format!("{ns}ns")), Ok(ns));
            }
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(at("2024-05-01T12:00:00Z"), Ok(NOON));
        assert_eq!(at("2024-05-01t12:00:00z"), Ok(NOON));
        assert_eq!(at("2024-05-01 14:00:00+02:00"), Ok(NOON));
        assert_eq!(at("2024-05-01T11:30:00-00:30"), Ok(NOON));
        assert_eq!(at("2024-05-01T12:00:00.5Z"), Ok(NOON + 500_000_000));
        assert_eq!(
            at("2024-05-01T12:00:00.1234567891234Z"),
            Ok(NOON + 123_456_789)
        );
        assert_eq!(at("2024-05-01"), Ok(NOON - 12 * 3600 * NANOS_PER_SEC));
        assert_eq!(at("2024-05-01T12:00:00"), Ok(NOON));
        assert_eq!(at("2024-05-01T12:00"), Ok(NOON));
        assert_eq!(at("2016-12-31T23:59:60Z"), at("2017-01-01"));
        // Unix time needs its unit.
        assert_eq!(at("1714564800s"), Ok(NOON));
        assert_eq!(at("@1714564800"), Ok(NOON));
        assert_eq!(at("@1714564800.25"), Ok(NOON + 250_000_000));
        assert_eq!(at("1714564800000ms"), Ok(NOON));
        assert_eq!(at("1714564800000000us"), Ok(NOON));
        assert_eq!(at("1714564800000000000ns"), Ok(NOON));
        assert_eq!(at("@-1"), Ok(-NANOS_PER_SEC));
        // Relative to the clock.
        assert_eq!(at("now"), Ok(NOW));
        assert_eq!(at("NOW"), Ok(NOW));
        assert_eq!(at("-1h"), Ok(NOW - 3600 * NANOS_PER_SEC));
        assert_eq!(at("-15m"), Ok(NOW - 900 * NANOS_PER_SEC));
        assert_eq!(at("+2d"), Ok(NOW + 2 * 86_400 * NANOS_PER_SEC));
        assert_eq!(at("1h30m ago"), Ok(NOW - 5400 * NANOS_PER_SEC));
        assert_eq!(at("-1.5s"), Ok(NOW - 1_500_000_000));
        assert_eq!(at("today"), Ok(NOON - 12 * 3600 * NANOS_PER_SEC));
        assert_eq!(at("yesterday"), Ok(NOON - 36 * 3600 * NANOS_PER_SEC));
        assert_eq!(at("tomorrow"), Ok(NOON + 12 * 3600 * NANOS_PER_SEC));
        assert_eq!(at(" 42ns "), Ok(42));
        // Offsets as `date +%z` prints them, and ISO 8601's hours alone.
        assert_eq!(at("2024-05-01T14:00:00+0200"), Ok(NOON));
        assert_eq!(at("2024-05-01T07:00:00-0500"), Ok(NOON));
        assert_eq!(at("2024-05-01 14:00:00 +0200"), Ok(NOON));
        assert_eq!(at("2024-05-01T14:00+02"), Ok(NOON));
        assert_eq!(at("2024-05-01T14:30:00.5+0230"), Ok(NOON + 500_000_000));
    }

    /// A relative time is read in `i128`: a span of 2^63 ns back from now lands in 1732,
    /// inside the range, and one that lands outside it says that it counted from now.
    #[test]
    fn relative_times_reach_the_whole_range() {
        let back = i128::from(NOW) - (1i128 << 63);
        assert_eq!(at("-9223372036854775808ns").map(i128::from), Ok(back));
        assert_eq!(at("9223372036854775808ns ago").map(i128::from), Ok(back));
        let msg = at("-18446744073709551615ns").unwrap_err();
        assert!(msg.contains("counted back from now"), "{msg}");
        assert!(at("-18446744073709551616ns").is_err());
        assert!(
            at("+9223372036854775807ns")
                .unwrap_err()
                .contains("counted on")
        );
    }

    #[test]
    fn a_bare_number_is_refused_with_a_guess_at_its_unit() {
        let msg = parse_time("1714564800").unwrap_err();
        assert!(msg.contains("1714564800s"), "{msg}");
        assert!(msg.contains("Accepted forms"), "{msg}");
        let msg = parse_time("1714564800000").unwrap_err();
        assert!(msg.contains("1714564800000ms"), "{msg}");
        let msg = parse_time("1714564800000000000").unwrap_err();
        assert!(msg.contains("1714564800000000000ns"), "{msg}");
        assert!(parse_time("0").is_err());
        let msg = parse_time("15m").unwrap_err();
        assert!(msg.contains("-15m"), "{msg}");
    }

    #[test]
    fn local_output_carries_the_offset() {
        let tz =
            jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(2 * 3600 + 1800).unwrap());
        let zone = Zone::Local(tz);
        assert_eq!(
            zone.show(NOON + 1).to_string(),
            "2024-05-01T14:30:00.000000001+02:30"
        );
        let west = Zone::Local(jiff::tz::TimeZone::fixed(
            jiff::tz::Offset::from_seconds(-5 * 3600).unwrap(),
        ));
        assert_eq!(
            west.show(NOON).to_string(),
            "2024-05-01T07:00:00.000000000-05:00"
        );
        // Dates without an offset are read in the zone.
        let midnight = parse_time("2024-05-01").unwrap().resolve(&west, NOW);
        assert_eq!(midnight, Ok(NOON - 7 * 3600 * NANOS_PER_SEC));
        assert_eq!(
            Zone::Utc.show(NOON).to_string(),
            "2024-05-01T12:00:00.000000000Z"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(500_000_000));
        assert_eq!(duration("1h 30m"), Ok(5400 * NANOS_PER_SEC));
        assert_eq!(duration("2w"), Ok(14 * 86_400 * NANOS_PER_SEC));
        for bad in ["", "5", "ms", "5x", "1e9s", "99999999999999999999d"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "-",
            "@",
            "@x",
            "yesterdays",
            "2024-13-01",
            "2024-02-30",
            "2023-02-29",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00+020",
            "2024-05-01T12:00:00+02:0",
            "2024-05-01T12:00:00 Z",
            "2024-05-01T12:00:00  +02:00",
            "2024-05-01T12:00:00+2400",
            "2024-05-01T12:00:00Zjunk",
            "2024-5-1",
            "9999-01-01",
            "1600-01-01",
            "99999999999999999999ns",
            "2024-05-01T12:00:00\u{e9}Z",
            "-5",
            "42",
        ] {
            let err = at(bad);
            assert!(err.is_err(), "{bad:?} parsed as {err:?}");
        }
        let msg = parse_time("2024-02-30").unwrap_err();
        assert!(msg.contains("has no day 30"), "{msg}");
    }
}
