//! Summaries of repeated runs: [`Summary`] of durations, latency histograms and their
//! percentiles.

use std::io::{self};
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;

use evstream::Result;

use crate::io_error;

/// Highest latency the histograms track; slower appends are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Median, quartiles and extremes of a run's durations.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Every measured duration, in run order.
    pub samples: Vec<Duration>,
    /// The median duration.
    pub median: Duration,
    /// The first quartile.
    pub q1: Duration,
    /// The third quartile.
    pub q3: Duration,
    /// The fastest run.
    pub min: Duration,
    /// The slowest run.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples`; `None` if there are none.
    pub fn of(samples: Vec<Duration>) -> Option<Self> {
        let mut sorted = samples.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        let at = |q: f64| -> Option<Duration> {
            let pos = q * last as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let (a, b) = (sorted.get(lo)?.as_secs_f64(), sorted.get(hi)?.as_secs_f64());
            Some(Duration::from_secs_f64(a + (b - a) * (pos - lo as f64)))
        };
        Some(Self {
            median: at(0.5)?,
            q1: at(0.25)?,
            q3: at(0.75)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
            samples,
        })
    }

    /// Half the interquartile range as a fraction of the median: a noise gauge.
    pub fn spread(&self) -> f64 {
        let median = self.median.as_secs_f64();
        if median > 0.0 {
            (self.q3.as_secs_f64() - self.q1.as_secs_f64()) / 2.0 / median
        } else {
            0.0
        }
    }
}

/// A histogram of 1 ns to a minute with three significant digits.
pub(crate) fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| {
        io_error(
            "create histogram",
            Path::new("<memory>"),
            io::Error::other(e),
        )
    })
}

/// Percentiles of one latency run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunPercentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl RunPercentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

pub(crate) fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
