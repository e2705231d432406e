//! The [`BenchReport`] printed: tables for the terminal, and JSON.

use std::fmt;
use std::time::Duration;

use crate::{BenchReport, FLUSH_EVENTS, ThroughputRow};

pub(crate) fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub(crate) fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

fn write_throughput(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    width: usize,
    rows: &[&ThroughputRow],
) -> fmt::Result {
    writeln!(f, "{title}")?;
    writeln!(
        f,
        "  {:<width$} {:>12} {:>10} {:>8} {:>8} {:>8}",
        "method", "events/s", "MB/s", "ratio", "of limit", "spread"
    )?;
    for r in rows {
        let of_limit = r
            .of_limit
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}x"));
        writeln!(
            f,
            "  {:<width$} {:>12} {:>10.0} {:>7.2}x {:>8} {:>7.1}%",
            r.method,
            fmt_rate(r.events_per_sec),
            r.mb_per_sec,
            r.ratio,
            of_limit,
            r.summary.spread() * 100.0
        )?;
    }
    writeln!(f)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "evstream bench: {} events x {} B payload, median of {} repeats, files in {}",
            self.events,
            self.payload_size,
            self.repeats,
            self.dir.display()
        )?;
        writeln!(
            f,
            "MB/s counts payload bytes (10^6); spread is half the interquartile range over the median.\n"
        )?;
        let width = self
            .append
            .iter()
            .chain(&self.replay)
            .chain(&self.flush)
            .map(|r| r.method.len())
            .chain(self.latency.iter().map(|r| r.method.len()))
            .max()
            .unwrap_or(0);
        let pick = |mode: &str| -> Vec<&ThroughputRow> {
            self.append.iter().filter(|r| r.mode == mode).collect()
        };
        write_throughput(
            f,
            "Append, cold (file creation timed); ratio vs write_all per event; of limit: evstream vs filling fresh page cache via a mapping, the rest vs via write(2)",
            width,
            &pick("cold"),
        )?;
        write_throughput(
            f,
            "Append, warm (file created and prefaulted untimed); ratio vs write_all per event",
            width,
            &pick("warm"),
        )?;
        let replay = |mode: &str| -> Vec<&ThroughputRow> {
            self.replay.iter().filter(|r| r.mode == mode).collect()
        };
        for (mode, title) in [
            (
                "replay",
                "Replay, open timed (page cache warm); ratio vs the BufReader parse",
            ),
            (
                "replay_huge_pages",
                "Replay, open timed, of a stream written with huge_pages(true); ratio vs the BufReader parse of that file",
            ),
            (
                "replay_reused",
                "Replay, second pass of an open reader (or file); ratio vs the BufReader parse",
            ),
        ] {
            let rows = replay(mode);
            if !rows.is_empty() {
                write_throughput(f, title, width, &rows)?;
            }
        }
        if !self.flush.is_empty() {
            let rows: Vec<&ThroughputRow> = self.flush.iter().collect();
            write_throughput(
                f,
                &format!(
                    "Append + flush, {} events into a stream already holding 16 MiB; ratio vs huge pages off",
                    self.events.min(FLUSH_EVENTS)
                ),
                width,
                &rows,
            )?;
        }
        if !self.latency.is_empty() {
            writeln!(
                f,
                "Append latency, {} B payload, {} appends x {} runs; percentiles are medians over runs",
                self.payload_size, self.latency_events, self.latency_runs
            )?;
            writeln!(
                f,
                "  {:<width$} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "method", "mode", "p50", "p99", "p99.9", "max", "worst"
            )?;
            for r in &self.latency {
                writeln!(
                    f,
                    "  {:<width$} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    r.method,
                    r.mode,
                    fmt_ns(r.p50),
                    fmt_ns(r.p99),
                    fmt_ns(r.p999),
                    fmt_ns(r.max),
                    fmt_ns(r.worst)
                )?;
            }
            writeln!(f)?;
        }
        write!(f, "total {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// Appends `s` to `out` as a JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite `f64` as JSON (non-finite values, which JSON lacks, become `null`).
pub(crate) fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

fn json_throughput(out: &mut String, rows: &[ThroughputRow]) {
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n    {\"method\": ");
        json_str(out, r.method);
        out.push_str(", \"id\": ");
        json_str(out, r.id);
        out.push_str(", \"mode\": ");
        json_str(out, r.mode);
        let ns = |d: Duration| d.as_nanos().to_string();
        out.push_str(&format!(
            ", \"events_per_sec\": {}, \"mb_per_sec\": {}, \"ratio\": {}, \"of_limit\": {}, \"median_ns\": {}, \"q1_ns\": {}, \"q3_ns\": {}, \"min_ns\": {}, \"max_ns\": {}, \"samples_ns\": [{}]}}",
            json_f64(r.events_per_sec),
            json_f64(r.mb_per_sec),
            json_f64(r.ratio),
            r.of_limit.map_or_else(|| "null".to_owned(), json_f64),
            ns(r.summary.median),
            ns(r.summary.q1),
            ns(r.summary.q3),
            ns(r.summary.min),
            ns(r.summary.max),
            r.summary.samples.iter().map(|d| ns(*d)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str("\n  ]");
}

impl BenchReport {
    /// The report as a JSON object (hand-written; the fields mirror this struct's).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n  \"events\": ");
        out.push_str(&self.events.to_string());
        out.push_str(&format!(
            ",\n  \"payload_size\": {},\n  \"repeats\": {},\n  \"latency_events\": {},\n  \"latency_runs\": {},\n  \"dir\": ",
            self.payload_size, self.repeats, self.latency_events, self.latency_runs
        ));
        json_str(&mut out, &self.dir.to_string_lossy());
        out.push_str(",\n  \"append\": ");
        json_throughput(&mut out, &self.append);
        out.push_str(",\n  \"replay\": ");
        json_throughput(&mut out, &self.replay);
        out.push_str(",\n  \"flush\": ");
        json_throughput(&mut out, &self.flush);
        out.push_str(",\n  \"latency\": [");
        for (i, r) in self.latency.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n    {\"method\": ");
            json_str(&mut out, &r.method);
            out.push_str(", \"id\": ");
            json_str(&mut out, &r.id);
            out.push_str(", \"mode\": ");
            json_str(&mut out, r.mode);
            out.push_str(", \"pace_ns\": ");
            out.push_str(&r.pace_ns.map_or("null".to_owned(), |ns| ns.to_string()));
            out.push_str(&format!(
                ", \"p50_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \"max_ns\": {}, \"worst_ns\": {}, \"samples\": {}}}",
                r.p50, r.p99, r.p999, r.max, r.worst, r.samples
            ));
        }
        out.push_str("\n  ],\n  \"elapsed_s\": ");
        out.push_str(&json_f64(self.elapsed.as_secs_f64()));
        out.push_str("\n}\n");
        out
    }
}
