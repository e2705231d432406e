//! Timestamps as [`SystemTime`]s: the conversions behind the `SystemTime` forms of the
//! log's calls, beside their raw Unix nanoseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The timestamp of `time`: nanoseconds since the Unix epoch, negative before it.
///
/// # Errors
/// [`Error::TimeOutOfRange`] for a time before 1677-09-21T00:12:43.145224192Z or after
/// 2262-04-11T23:47:16.854775807Z, which no `i64` of nanoseconds holds.
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(evstream::timestamp_of(time)?, 1_700_000_000_000_000_000);
/// assert_eq!(evstream::time_of(1_700_000_000_000_000_000), time);
/// # Ok::<(), evstream::Error>(())
/// ```
pub fn timestamp_of(time: SystemTime) -> Result<i64> {
    let nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    i64::try_from(nanos).map_err(|_| Error::TimeOutOfRange { unix_nanos: nanos })
}

/// The time of `timestamp` (nanoseconds since the Unix epoch, negative before it).
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// assert_eq!(evstream::time_of(-1_000_000_000), UNIX_EPOCH - Duration::from_secs(1));
/// ```
pub fn time_of(timestamp: i64) -> SystemTime {
    let span = Duration::from_nanos(timestamp.unsigned_abs());
    if timestamp >= 0 {
        UNIX_EPOCH + span
    } else {
        UNIX_EPOCH - span
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_timestamp_round_trips_and_times_past_the_range_are_refused() {
        for t in [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            1_700_000_000_000_000_000,
            i64::MAX,
        ] {
            assert_eq!(timestamp_of(time_of(t)).unwrap(), t, "{t}");
        }
        let past_end = time_of(i64::MAX) + Duration::from_nanos(1);
        assert!(matches!(
            timestamp_of(past_end),
            Err(Error::TimeOutOfRange { unix_nanos }) if unix_nanos == i128::from(i64::MAX) + 1
        ));
        let before_start = time_of(i64::MIN) - Duration::from_nanos(1);
        assert!(matches!(
            timestamp_of(before_start),
            Err(Error::TimeOutOfRange { unix_nanos }) if unix_nanos == i128::from(i64::MIN) - 1
        ));
    }
}
