//! Sizes and durations in human units: parsing `64MiB`, printing `1.5 GiB` and `3 min 20 s`.

/// Parses a SIZE argument: a number of bytes (`4096`), optionally with a fraction and a
/// unit: `B`, binary `KiB` `MiB` `GiB` `TiB` (also written `K` `M` `G` `T`), or decimal
/// `kB` `MB` `GB` `TB`. Units are case-insensitive and may follow a space. Fractions of a
/// byte are rounded down.
///
/// # Errors
/// A message for clap, which reports it as a usage error.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{input:?} is not a size: unknown unit {other:?} \
                 (use B, KiB, MiB, GiB, TiB, or kB, MB, GB, TB)"
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let not_a_number = || format!("{input:?} is not a size (examples: 4096, 64MiB, 1.5GiB)");
    if whole.is_empty() || fraction.contains('.') {
        return Err(not_a_number());
    }
    let too_large = || format!("{input:?} is too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    // The fraction, exactly: digits / 10^len of them, times the unit, rounded down.
    // Eighteen digits are finer than a byte of any unit here.
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    let fraction = fraction.get(..fraction.len().min(18)).unwrap_or_default();
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| not_a_number())?;
        let scale = 10u128.pow(fraction.len() as u32);
        bytes = bytes
            .checked_add(digits.checked_mul(multiplier).ok_or_else(too_large)? / scale)
            .ok_or_else(too_large)?;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Bytes in human units: `512 B`, `1.5 KiB`, `64 MiB`, rounded to one decimal, which is
/// left out when it is 0 (`2 KiB` for 2047 bytes, not `2.0 KiB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, rounded; the next unit once they round to 1024 of this one.
    let mut scale: u128 = 1024;
    let mut unit = "KiB";
    let tenths = |scale: u128| (u128::from(bytes) * 10 + scale / 2) / scale;
    for next in UNITS.iter().skip(1) {
        if tenths(scale) < 10_240 {
            break;
        }
        scale *= 1024;
        unit = next;
    }
    let tenths = tenths(scale);
    if tenths % 10 == 0 {
        format!("{} {unit}", tenths / 10)
    } else {
        format!("{}.{} {unit}", tenths / 10, tenths % 10)
    }
}

/// A count and what it counts: `1 segment`, `2 segments`, `0 events`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Bytes in human units with the exact count when they differ: `64 MiB (67108864 bytes)`.
pub fn size_exact(bytes: u64) -> String {
    if bytes < 1024 {
        size(bytes)
    } else {
        format!("{} ({bytes} bytes)", size(bytes))
    }
}

/// A duration in nanoseconds in human units: `850 ns`, `12.5 µs`, `3.2 s`, `3 min 20 s`,
/// `5 h 2 min`, `12 d 3 h`.
pub fn duration(nanos: u128) -> String {
    const MINUTE: u128 = 60 * 1_000_000_000;
    const HOUR: u128 = 60 * MINUTE;
    const DAY: u128 = 24 * HOUR;
    let scaled = |unit: u128, name: &str| {
        let value = nanos as f64 / unit as f64;
        if value < 10.0 && value.fract() != 0.0 {
            format!("{value:.1} {name}")
        } else {
            format!("{value:.0} {name}")
        }
    };
    match nanos {
        0..1_000 => format!("{nanos} ns"),
        1_000..1_000_000 => scaled(1_000, "µs"),
        1_000_000..1_000_000_000 => scaled(1_000_000, "ms"),
        n if n < MINUTE => scaled(1_000_000_000, "s"),
        n if n < HOUR => format!("{} min {} s", n / MINUTE, n % MINUTE / 1_000_000_000),
        n if n < DAY => format!("{} h {} min", n / HOUR, n % HOUR / MINUTE),
        n => format!("{} d {} h", n / DAY, n % DAY / HOUR),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("16k"), Ok(16 << 10));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0.1KiB"), Ok(102));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("3kB"), Ok(3000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("16EiB").map_err(|_| ()), Err(()));
        assert_eq!(parse_size("15TiB"), Ok(15 << 40));
        assert_eq!(parse_size("1.0000000000000000000000000001TiB"), Ok(1 << 40));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for bad in [
            "",
            "MiB",
            "-1",
            "1.2.3MiB",
            "12 apples",
            "1e6",
            ".5",
            "0x10",
            "99999999999999999999",
            "18446744073709551616",
            "20000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        let msg = parse_size("64 MB2").unwrap_err();
        assert!(msg.contains("unknown unit"), "{msg}");
    }

    #[test]
    fn prints_sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        // Rounded to a whole number: no ".0"; rounded up to 1024: the next unit.
        assert_eq!(size(2047), "2 KiB");
        assert_eq!(size(3014), "2.9 KiB");
        assert_eq!(size(448 << 20 | 1000), "448 MiB");
        assert_eq!(size((1 << 20) - 1), "1 MiB");
        assert_eq!(size(1023 * 1024 + 920), "1023.9 KiB");
        assert_eq!(count(1, "segment"), "1 segment");
        assert_eq!(count(0, "segment"), "0 segments");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(u64::MAX), "16 EiB");
        assert_eq!(size_exact(64 << 20), "64 MiB (67108864 bytes)");
        assert_eq!(size_exact(100), "100 B");
    }

    #[test]
    fn prints_durations() {
        assert_eq!(duration(0), "0 ns");
        assert_eq!(duration(999), "999 ns");
        assert_eq!(duration(1_500), "1.5 µs");
        assert_eq!(duration(12_400), "12 µs");
        assert_eq!(duration(250_000_000), "250 ms");
        assert_eq!(duration(3_200_000_000), "3.2 s");
        assert_eq!(duration(200_000_000_000), "3 min 20 s");
        assert_eq!(
            duration(5 * 3_600_000_000_000 + 120_000_000_000),
            "5 h 2 min"
        );
        assert_eq!(
            duration(12 * 86_400_000_000_000 + 3 * 3_600_000_000_000),
            "12 d 3 h"
        );
    }
}
