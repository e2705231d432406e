//! The runner's unit tests: every run, case and row, on small workloads.

use std::fs::{self, File};
use std::io::BufReader;
use std::time::Duration;

use evstream::stdio::{self, EventReader};
use evstream::{Prefault, Result, StreamReader};

use super::*;
use crate::append::append_to;
use crate::report::{json_f64, json_str};
use crate::run::{append_cases, latency_cases, replay_cases};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn expected(workload: &Workload) -> Vec<(i64, Vec<u8>)> {
    (0..workload.events())
        .map(|i| (Workload::timestamp(i), workload.payload(i).to_vec()))
        .collect()
}

#[test]
fn workload_payloads_vary_and_have_the_right_size() {
    let w = Workload::new(300, 40);
    assert_eq!(w.payload(0).len(), 40);
    assert_eq!(w.payload(299).len(), 40);
    assert_ne!(w.payload(0), w.payload(1));
    assert_eq!(w.payload_bytes(), 12_000);
    assert_eq!(w.stream_len(), 24 + 300 * 56);
    assert!(Workload::timestamp(1) > Workload::timestamp(0));
}

#[test]
fn every_system_writes_a_stream_both_readers_accept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let workload = Workload::new(300, 700);
    let want = expected(&workload);
    for method in AppendMethod::ALL {
        if method == AppendMethod::AnonMemory {
            continue;
        }
        for mode in [Mode::Cold, Mode::Warm] {
            let what = format!("{} {}", method.label(), mode.name());
            let path = dir
                .path()
                .join(format!("{}-{}.evs", method.id(), mode.name()));
            append_to(&path, method, mode, &workload, &mut Untimed)?;

            // The std baselines write the header and events (what format version 1
            // defined) without the version 2 trailer, which only evstream writes.
            let evstream = matches!(
                method,
                AppendMethod::Evstream(_)
                    | AppendMethod::EvstreamHugePages
                    | AppendMethod::EvstreamBatch
            );
            if evstream {
                let reader = StreamReader::open(&path)?;
                let got = reader
                    .iter()
                    .map(|e| e.map(|e| (e.timestamp(), e.payload().to_vec())))
                    .collect::<Result<Vec<_>>>()?;
                assert!(got == want, "{what}: StreamReader saw other events");
                assert_eq!(reader.write_offset(), workload.stream_len(), "{what}");
            }

            let mut parser = EventReader::new(BufReader::new(File::open(&path)?))?;
            assert_eq!(parser.header().event_count, workload.events(), "{what}");
            let mut payload = Vec::new();
            let mut parsed = Vec::new();
            while let Some(ts) = parser.read_event(&mut payload)? {
                parsed.push((ts, payload.clone()));
            }
            assert!(
                parsed == want,
                "{what}: the BufReader parse saw other events"
            );
            let len = if evstream {
                workload.capacity()
            } else {
                workload.stream_len()
            };
            assert_eq!(fs::metadata(&path)?.len(), len, "{what}");
        }
    }
    Ok(())
}

#[test]
fn an_empty_workload_runs_everywhere() -> TestResult {
    let dir = BenchDir::new(None)?;
    let workload = Workload::new(0, 100);
    for method in AppendMethod::ALL {
        for mode in [Mode::Cold, Mode::Warm] {
            append_once(method, mode, &workload, &dir)?;
        }
    }
    let path = dir.fresh_file();
    write_replay_file(&path, &workload)?;
    for (method, mode) in replay_cases() {
        let expected = (method != ReplayMethod::LimitCrc).then_some(0);
        assert_eq!(replay_once(method, mode, &path)?.1, expected);
    }
    Ok(())
}

#[test]
fn replay_methods_see_every_event() -> TestResult {
    let dir = tempfile::tempdir()?;
    let workload = Workload::new(500, 100);
    let path = dir.path().join("replay.evs");
    write_replay_file(&path, &workload)?;
    for (method, mode) in replay_cases() {
        let (_, seen) = replay_once(method, mode, &path)?;
        // The limit checksums the bytes without parsing them into events.
        // The per-event floor hashes every event, so it counts them.
        let expected = (method != ReplayMethod::LimitCrc).then_some(500);
        assert_eq!(seen, expected, "{} {}", method.label(), mode.name());
    }
    Ok(())
}

#[test]
fn replay_reports_damage() -> TestResult {
    let dir = tempfile::tempdir()?;
    let workload = Workload::new(20, 100);
    let path = dir.path().join("damaged.evs");
    write_replay_file(&path, &workload)?;
    let mut bytes = fs::read(&path)?;
    // A payload byte of the third event.
    if let Some(b) = bytes.get_mut(24 + 2 * 116 + 16 + 5) {
        *b ^= 1;
    }
    fs::write(&path, &bytes)?;
    assert!(matches!(
        replay_once(ReplayMethod::EvstreamVerified, ReplayMode::Open, &path),
        Err(Error::Corrupt { offset: 256, .. })
    ));
    let Err(Error::Io { source, .. }) =
        replay_once(ReplayMethod::BufReader, ReplayMode::Reused, &path)
    else {
        panic!("the BufReader parse missed the damage");
    };
    assert!(matches!(
        stdio::CodecError::from_io(&source),
        Some(stdio::CodecError::Corrupt { offset: 256, .. })
    ));
    // Unverified iteration does not look at checksums.
    assert_eq!(
        replay_once(ReplayMethod::EvstreamUnverified, ReplayMode::Open, &path)?.1,
        Some(20)
    );
    Ok(())
}

#[test]
fn latency_runs_time_every_append() -> TestResult {
    let dir = BenchDir::new(None)?;
    let workload = Workload::new(1000, 64);
    for case in latency_cases(Duration::from_nanos(100)) {
        let mut h = new_histogram()?;
        append_run(
            case.method,
            case.mode,
            &workload,
            &dir,
            &mut PerEvent::new(&mut h),
        )?;
        assert_eq!(h.len(), 1000, "{}", case.method.label());
        assert!(h.min() >= 1);
    }
    let path = dir.path().to_owned();
    assert!(path.is_dir());
    assert_eq!(
        fs::read_dir(&path)?.count(),
        0,
        "runs leave no files behind"
    );
    drop(dir);
    assert!(!path.exists(), "the temporary directory is removed");
    Ok(())
}

#[test]
fn summary_quartiles_interpolate() -> TestResult {
    let ms = |v: u64| Duration::from_millis(v);
    let s = Summary::of(vec![ms(5), ms(1), ms(4), ms(2), ms(3)]).ok_or("empty")?;
    assert_eq!(
        (s.min, s.q1, s.median, s.q3, s.max),
        (ms(1), ms(2), ms(3), ms(4), ms(5))
    );
    assert!((s.spread() - 1.0 / 3.0).abs() < 1e-9);
    let even = Summary::of(vec![ms(1), ms(2)]).ok_or("empty")?;
    assert_eq!(even.median, Duration::from_micros(1500));
    assert!(Summary::of(Vec::new()).is_none());
    Ok(())
}

#[test]
fn a_small_run_reports_every_row() -> TestResult {
    let config = BenchConfig {
        events: 200,
        payload_size: 64,
        repeats: Some(2),
        latency_events: 300,
        latency_runs: 1,
        latency_pace: Duration::from_nanos(500),
        ..BenchConfig::default()
    };
    let mut lines = Vec::new();
    let report = run(&config, &mut |line| lines.push(line.to_owned()))?;
    assert!(!lines.is_empty());
    assert_eq!(report.repeats, 2);
    assert_eq!(
        report.append.len(),
        append_cases().len() + FillLimit::ALL.len()
    );
    assert_eq!(
        report.append.iter().filter(|r| r.mode == "cold").count(),
        13
    );
    assert_eq!(report.append.iter().filter(|r| r.mode == "warm").count(), 7);
    assert_eq!(report.replay.len(), 15);
    assert_eq!(
        report
            .replay
            .iter()
            .filter(|r| r.mode == "replay_huge_pages")
            .count(),
        5
    );
    assert_eq!(
        report
            .replay
            .iter()
            .filter(|r| r.mode == "replay_reused")
            .count(),
        5
    );
    // Every replay and append row is set against its limit, and each limit row
    // against itself: evstream cold against the mapping fill (with huge pages, the
    // huge-page fill), everything else cold against the write(2) fill.
    for r in report.replay.iter().chain(&report.append) {
        let of_limit = r.of_limit.ok_or("a row without its ratio to the limit")?;
        if [
            ReplayMethod::LimitCrc.id(),
            AppendMethod::AnonMemory.id(),
            FillLimit::Write.id(),
        ]
        .contains(&r.id)
        {
            assert!((of_limit - 1.0).abs() < 1e-9, "{} {of_limit}", r.method);
        }
    }
    let cold = |id: &str| {
        report
            .append
            .iter()
            .find(|r| r.mode == "cold" && r.id == id)
            .map(|r| (r.summary.median, r.of_limit))
    };
    let (fill, _) = cold(FillLimit::Mapping.id()).ok_or("no mapping fill row")?;
    let (evstream, of_limit) =
        cold(AppendMethod::Evstream(Prefault::Off).id()).ok_or("no evstream row")?;
    let expected = fill.as_secs_f64() / evstream.as_secs_f64();
    assert!((of_limit.ok_or("no ratio")? - expected).abs() < 1e-9);
    assert!(report.to_json().contains("\"fill_write\""));
    assert_eq!(
        report.latency.len(),
        1 + latency_cases(Duration::ZERO).len()
    );
    assert_eq!(
        report
            .latency
            .iter()
            .filter(|r| r.pace_ns == Some(500))
            .count(),
        3
    );
    for r in &report.flush {
        assert_eq!(r.summary.samples.len(), FLUSH_RUNS as usize, "{}", r.method);
        assert!(r.events_per_sec > 0.0 && r.ratio > 0.0, "{}", r.method);
    }
    for r in report.append.iter().chain(&report.replay) {
        assert_eq!(r.summary.samples.len(), 2, "{}", r.method);
        assert!(r.events_per_sec > 0.0 && r.ratio > 0.0, "{}", r.method);
        if r.id == "write_per_event" || r.id == "bufreader" {
            assert!(
                (r.ratio - 1.0).abs() < 1e-12,
                "{} is its own baseline",
                r.method
            );
        }
    }
    for r in &report.latency {
        assert!(
            r.p50 <= r.p99 && r.p99 <= r.p999 && r.p999 <= r.worst,
            "{}",
            r.method
        );
        assert_eq!(r.samples, 300);
    }
    let table = report.to_string();
    for row in report.append.iter().chain(&report.replay) {
        assert!(
            table.contains(row.method),
            "{} missing from the table",
            row.method
        );
    }
    assert!(table.contains("p99.9"));
    let json = report.to_json();
    assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
    assert_eq!(json.matches('{').count(), json.matches('}').count());
    assert_eq!(json.matches('[').count(), json.matches(']').count());
    assert_eq!(report.flush.len(), 2);
    assert_eq!(json.matches("\"events_per_sec\"").count(), 20 + 15 + 2);
    assert_eq!(json.matches("\"p999_ns\"").count(), report.latency.len());
    assert!(!report.dir.exists(), "the temporary directory is removed");
    Ok(())
}

#[test]
fn json_strings_are_escaped() {
    let mut out = String::new();
    json_str(&mut out, "a\"b\\c\nd\u{1}");
    assert_eq!(out, r#""a\"b\\c\nd\u0001""#);
    assert_eq!(json_f64(f64::NAN), "null");
    assert_eq!(json_f64(1.5), "1.5");
}

#[test]
fn a_small_many_producer_run_reports_every_row() -> TestResult {
    let config = many::ManyConfig {
        events: 5_001,
        segment_size: 64 << 10,
        repeats: 1,
        pace: Some(Duration::from_micros(20)),
        paced_events: 300,
        uncontended_blocks: 3,
        uncontended_block: 1_000,
        ..many::ManyConfig::default()
    };
    let report = many::run(&config, &mut |_| {})?;
    let rows: Vec<_> = report
        .throughput
        .iter()
        .map(|row| (row.system, row.threads, row.runs.samples.len()))
        .collect();
    assert_eq!(
        rows,
        [
            ("LogWriter", 1, 1),
            ("shared", 1, 1),
            ("shared", 2, 1),
            ("shared", 4, 1)
        ]
    );
    let latency: Vec<_> = report
        .latency
        .iter()
        .map(|row| (row.system, row.threads, row.events))
        .collect();
    assert_eq!(
        latency,
        [
            ("LogWriter", 1, 300),
            ("shared", 1, 300),
            ("shared", 2, 600)
        ]
    );
    let uncontended = report
        .uncontended
        .as_ref()
        .ok_or("no uncontended comparison")?;
    assert_eq!((uncontended.blocks, uncontended.block), (3, 1_000));
    let (exclusive, shared, mutex) = uncontended.per_append_ns();
    assert!(
        exclusive > 0.0 && shared > 0.0 && mutex > 0.0,
        "{uncontended:?}"
    );
    for over in [uncontended.shared_over, uncontended.mutex_over] {
        assert!(
            over.q1 > -1.0 && over.q1 <= over.median && over.median <= over.q3,
            "{uncontended:?}"
        );
    }
    let text = report.to_string();
    assert!(text.contains("shared  4 threads"), "{text}");
    assert!(text.contains("One thread, uncontended"), "{text}");
    assert!(text.contains("Mutex<LogWriter>"), "{text}");
    assert!(text.contains("p99.9"), "{text}");
    Ok(())
}

#[test]
fn a_steady_many_producer_run_starts_from_a_log_holding_its_retention() -> TestResult {
    let config = many::ManyConfig {
        events: 3_001,
        segment_size: 64 << 10,
        repeats: 1,
        pace: None,
        retain: Some(2),
        uncontended_blocks: 0,
        ..many::ManyConfig::default()
    };
    let report = many::run(&config, &mut |_| {})?;
    assert_eq!(report.throughput.len(), 4);
    assert!(report.to_string().contains("steady state"), "{report}");
    // The log a run starts from already holds more than its retention keeps, so that
    // the run's rolls retire (and recycle) segments from the first.
    let dir = BenchDir::new(None)?;
    let mut log = many::fresh_log(&dir, &config)?;
    let path = log.dir().to_owned();
    let before = evstream::LogReader::open(&path)?.stat()?;
    assert!(before.segments >= 2, "{before:?}");
    let held = before.first_event;
    for _ in 0..3_000 {
        log.append(1_700_000_000_000_000_000, &[7; 64])?;
    }
    log.flush()?;
    drop(log);
    let after = evstream::LogReader::open(&path)?.stat()?;
    assert!(
        after.segments <= 3,
        "retention keeps 2 (and the newest): {after:?}"
    );
    assert!(
        after.first_event > held,
        "the oldest events were retired: {after:?}"
    );
    Ok(())
}
