//! `evstream archive`, `restore`, and `cat`/`tail`/`stat`/`verify` of an `s3://` archive,
//! against a real S3-compatible server (SeaweedFS) on loopback, with its faults: the
//! server down, stopped and restarted mid-upload, the archiver killed, objects damaged in
//! the bucket, wrong credentials.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod archive_support;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archive_support::{KEY, SECRET, Weed, weed};
use evstream::{LogOptions, LogReader, LogWriter};
use support::{Run, evstream, run_command, s};

/// Timestamps of event `i`: one millisecond apart from a fixed start.
const T0: i64 = 1_700_000_000_000_000_000;

fn at(i: u64) -> i64 {
    T0 + i as i64 * 1_000_000
}

fn payload(i: u64) -> String {
    format!("event-{i:08}-{}", "x".repeat((i % 50) as usize))
}

/// A log of `count` events in segments of 256 KiB (so many segments, all sealed but the
/// newest), with the given options.
fn log_with(dir: &Path, count: u64, options: LogOptions) -> LogWriter {
    let mut log = LogWriter::create(dir, options.segment_size(256 << 10)).unwrap();
    for i in 0..count {
        log.append(at(i), payload(i).as_bytes()).unwrap();
    }
    log.flush().unwrap();
    log
}

/// `evstream ARGS` against the server, with the right credentials.
fn ev(weed: &Weed, args: &[&str]) -> Run {
    ev_as(weed, KEY, SECRET, args)
}

fn ev_as(weed: &Weed, key: &str, secret: &str, args: &[&str]) -> Run {
    run_command(command(&weed.endpoint(), key, secret), args, None)
}

fn command(endpoint: &str, key: &str, secret: &str) -> Command {
    let mut command = evstream();
    command
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_DEFAULT_REGION")
        .env("HOME", "/nonexistent");
    command
}

/// The payloads `cat` prints (text format: time, then payload).
fn payloads(run: &Run) -> Vec<String> {
    run.lines()
        .iter()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, p)| p.to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn an_archived_log_reads_back_by_time_and_restores() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    // Local retention would keep a single segment; the archive's cursor holds the rest.
    let mut log = log_with(&log_dir, 0, LogOptions::default().retain_segments(Some(1)));
    let url = "s3://events/app";
    ev(&weed, &["archive", s(&log_dir), "--to", url])
        .ok()
        .lines();
    let count = 40_000u64;
    for i in 0..count {
        log.append(at(i), payload(i).as_bytes()).unwrap();
    }
    log.flush().unwrap();
    // Nothing archived yet beyond the first segment: retention deleted nothing else.
    let reader = LogReader::open(&log_dir).unwrap();
    let before = reader.segment_files().unwrap();
    assert!(before.len() > 5, "{before:?}");
    assert_eq!(
        log.enforce_retention().unwrap().len(),
        0,
        "the cursor holds every unarchived segment"
    );

    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let sealed = (before.len() - 1) as u64;
    assert!(
        run.out()
            .contains(&format!("{sealed} segments archived now")),
        "{run:?}"
    );
    // Each segment once: one segment object and one index each.
    let names = weed.list("events", "app");
    assert_eq!(names.len() as u64, 2 * sealed, "{names:?}");
    // Archived segments may now go.
    assert_eq!(log.enforce_retention().unwrap().len() as u64, sealed);
    // Running again uploads nothing.
    let again = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert!(again.out().contains("0 segments archived now"), "{again:?}");
    assert_eq!(weed.list("events", "app"), names);

    // The archived events: all sealed ones, in order, with the log's positions.
    let archived: Vec<(u64, String)> = {
        let all = ev(&weed, &["cat", url]).ok();
        payloads(&all)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u64, p))
            .collect()
    };
    let n = archived.len() as u64;
    assert!(n > 30_000, "{n}");
    for (i, p) in &archived {
        assert_eq!(p, &payload(*i));
    }
    // By time: --since is inclusive, --until exclusive, -n limits.
    let since = format!("{}ns", at(12_345));
    let until = format!("{}ns", at(12_350));
    let run = ev(&weed, &["cat", url, "--since", &since, "--until", &until]).ok();
    assert_eq!(
        payloads(&run),
        (12_345..12_350).map(payload).collect::<Vec<_>>()
    );
    let run = ev(
        &weed,
        &[
            "cat", url, "--since", &since, "-n", "3", "--format", "jsonl",
        ],
    )
    .ok();
    assert_eq!(run.lines().len(), 3);
    assert!(run.lines()[0].contains("\"position\":\""), "{run:?}");
    let run = ev(&weed, &["tail", url, "-n", "4"]).ok();
    assert_eq!(payloads(&run), (n - 4..n).map(payload).collect::<Vec<_>>());
    ev(&weed, &["cat", url, "--follow"]).fails(2, &["not an archive"]);
    ev(&weed, &["tail", url, "-f"]).fails(2, &["not an archive"]);
    ev(&weed, &["cat", "s3://X/y"]).fails(2, &["not an archive URL"]);
    let run = ev(&weed, &["stat", url]).ok();
    assert!(run.out().contains(&format!("events:    {n}")), "{run:?}");
    let run = ev(&weed, &["verify", url]).ok();
    assert!(
        run.out()
            .contains(&format!("OK, {sealed} segments, {n} events")),
        "{run:?}"
    );

    // Restore: a new log with the same events from --since on.
    let copy = dir.path().join("copy");
    let run = ev(
        &weed,
        &["restore", url, "--to", s(&copy), "--since", &since],
    )
    .ok();
    assert!(
        run.out()
            .contains(&format!("restored {} events", n - 12_345)),
        "{run:?}"
    );
    let restored: Vec<(i64, Vec<u8>)> = LogReader::open(&copy)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect();
    assert_eq!(restored.len() as u64, n - 12_345);
    assert_eq!(restored[0], (at(12_345), payload(12_345).into_bytes()));
    ev(&weed, &["restore", url, "--to", s(&copy)]).fails(1, &["already exists"]);

    // Wrong credentials: one clear error.
    ev_as(&weed, KEY, "wrong-secret", &["cat", url]).fails(1, &["access denied"]);
    ev_as(
        &weed,
        "nobody",
        SECRET,
        &["archive", s(&log_dir), "--to", url],
    )
    .fails(1, &["access denied"]);

    // A damaged object: verify and cat name it, the other objects still read.
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".evs")).collect();
    let victim = segments[1].clone();
    let truncated = segments[3].clone();
    let mut bytes = weed.get("events", &format!("app/{victim}"));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    weed.put("events", &format!("app/{victim}"), &bytes);
    let bytes = weed.get("events", &format!("app/{truncated}"));
    weed.put(
        "events",
        &format!("app/{truncated}"),
        &bytes[..bytes.len() - 100],
    );
    let run = ev(&weed, &["verify", url]);
    run_fails_naming(&run, &[&victim, &truncated]);
    let run = ev(&weed, &["cat", url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&victim) && run.stderr.contains(&truncated),
        "{run:?}"
    );
    let read = payloads(&run);
    assert!(read.len() as u64 > n / 2, "the intact segments still read");
    assert_eq!(read.last(), Some(&payload(n - 1)));
    // A restore that meets the damage stops, naming it, and leaves nothing behind.
    let copy2 = dir.path().join("copy2");
    ev(&weed, &["restore", url, "--to", s(&copy2)]).fails(1, &[&victim]);
    assert!(!copy2.exists() && !dir.path().join(".copy2.restoring").exists());
    // Reading by time in an intact segment is unaffected.
    ev(
        &weed,
        &[
            "cat",
            url,
            "--since",
            &format!("{}ns", at(n - 10)),
            "-n",
            "2",
        ],
    )
    .ok();
}

fn run_fails_naming(run: &Run, keys: &[&str]) {
    assert_eq!(run.code, 1, "{run:?}");
    for key in keys {
        assert!(run.stderr.contains(key), "{key} not named: {run:?}");
    }
}

#[test]
fn a_store_that_is_down_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 20_000, LogOptions::default()));
    let port = archive_support::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let run = run_command(
        command(&endpoint, KEY, SECRET),
        &["archive", s(&log_dir), "--to", "s3://events/app"],
        None,
    );
    run.fails(1, &["cannot be reached", &endpoint]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Nothing was recorded as archived.
    assert_eq!(
        LogReader::open(&log_dir)
            .unwrap()
            .cursor("archive")
            .unwrap(),
        None
    );
    let run = run_command(
        command(&endpoint, KEY, SECRET),
        &["cat", "s3://events/app"],
        None,
    );
    run.fails(1, &["cannot be reached"]);
}

/// Exit 2 with one `error:` line holding `words`, and no trace of a panic.
fn refused(run: Run, words: &[&str]) {
    let run = run.fails(2, words);
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{run:?}");
}

#[test]
fn a_malformed_endpoint_or_region_is_one_clear_error_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 20_000, LogOptions::default()));
    let url = "s3://events/app";
    let copy = dir.path().join("copy");
    // Nothing listens there: a value that passed the checks would end in "cannot be
    // reached", not in the errors below.
    let unreachable = format!("http://127.0.0.1:{}", archive_support::free_port());
    let bad_endpoints: [(&str, &[&str]); 7] = [
        (
            "localhost:9000",
            &[
                "no scheme",
                "http://localhost:9000",
                "https://localhost:9000",
            ],
        ),
        ("minio", &["no scheme", "http://minio or https://minio"]),
        ("", &["endpoint \"\"", "empty", "http://"]),
        ("http://", &["no host"]),
        ("ftp://h", &["the scheme is ftp://"]),
        ("http://h:99999", &["not a URL"]),
        ("http://h/?x=1", &["query"]),
    ];
    let bad_regions: [(&str, &[&str]); 3] = [
        ("us east", &["region \"us east\"", "' ' is not allowed"]),
        ("", &["region \"\"", "empty"]),
        ("eu/1", &["'/' is not allowed"]),
    ];
    // As flags, to the two commands that take them.
    for (flag, value, words) in bad_endpoints
        .iter()
        .map(|(v, w)| ("--endpoint", *v, *w))
        .chain(bad_regions.iter().map(|(v, w)| ("--region", *v, *w)))
    {
        let mut words = words.to_vec();
        words.push(if flag == "--endpoint" {
            "endpoint"
        } else {
            "region"
        });
        for args in [
            vec!["archive", s(&log_dir), "--to", url, flag, value],
            vec!["restore", url, "--to", s(&copy), flag, value],
        ] {
            let run = run_command(command(&unreachable, KEY, SECRET), &args, None);
            refused(run, &words);
        }
    }
    // Through the environment (and a profile), to every command that reads an archive.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        "[default]\nendpoint_url = localhost:9000\n",
    )
    .unwrap();
    let commands: [Vec<&str>; 6] = [
        vec!["archive", s(&log_dir), "--to", url],
        vec!["restore", url, "--to", s(&copy)],
        vec!["cat", url],
        vec!["tail", url],
        vec!["stat", url],
        vec!["verify", url],
    ];
    for args in &commands {
        for (value, words) in bad_endpoints.iter().filter(|(v, _)| !v.is_empty()) {
            for variable in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"] {
                let mut command = command(&unreachable, KEY, SECRET);
                command.env(variable, value);
                let run = run_command(command, args, None);
                let mut words = words.to_vec();
                let origin = format!("(from {variable})");
                words.push(&origin);
                refused(run, &words);
            }
        }
        for (value, words) in bad_regions.iter().filter(|(v, _)| !v.is_empty()) {
            let mut command = command(&unreachable, KEY, SECRET);
            command.env("AWS_REGION", value);
            let run = run_command(command, args, None);
            let mut words = words.to_vec();
            words.push("(from AWS_REGION)");
            refused(run, &words);
        }
        let mut command = command(&unreachable, KEY, SECRET);
        command.env_remove("AWS_ENDPOINT_URL").env("HOME", &home);
        let run = run_command(command, args, None);
        refused(
            run,
            &["no scheme", "(from endpoint_url of profile default)"],
        );
    }
    // A prefix too long for S3's keys to hold the archive's names under it.
    let long = format!("s3://events/{}", "p".repeat(1000));
    for args in [
        vec!["cat", long.as_str()],
        vec!["archive", s(&log_dir), "--to", &long],
    ] {
        refused(
            run_command(command(&unreachable, KEY, SECRET), &args, None),
            &["not an archive URL", "longer than S3's 1024-byte keys"],
        );
    }
    // Nothing was done: no cursor, no restored log.
    assert_eq!(
        LogReader::open(&log_dir)
            .unwrap()
            .cursor("archive")
            .unwrap(),
        None
    );
    assert!(!copy.exists() && !dir.path().join(".copy.restoring").exists());
    // Well-formed values that are unusual still reach the store (nothing listens).
    for endpoint in [
        unreachable.clone(),
        format!("{unreachable}/"),
        format!(
            "{}/some/path",
            unreachable.to_uppercase().replace("HTTP", "http")
        ),
    ] {
        run_command(
            command(&endpoint, KEY, SECRET),
            &[
                "archive",
                s(&log_dir),
                "--to",
                url,
                "--region",
                "my_region-1",
            ],
            None,
        )
        .fails(1, &["cannot be reached"]);
    }
}

/// The archive's object names for segment `seq` among `names`: (segment, index).
fn objects_of(names: &[String], seq: u64) -> (String, String) {
    let start = format!("{seq:08}-");
    let find = |ext: &str| {
        names
            .iter()
            .find(|n| n.starts_with(&start) && n.ends_with(ext))
            .unwrap_or_else(|| panic!("no {ext} of segment {seq} in {names:?}"))
            .clone()
    };
    (find(".evs"), find(".idx"))
}

/// The log-wide index of segment `seq`'s first event, from its object's name.
fn base_of(names: &[String], seq: u64) -> u64 {
    let (segment, _) = objects_of(names, seq);
    segment[9..29].parse().unwrap()
}

#[test]
fn segments_missing_from_an_archive_fail_verify_and_are_never_skipped_silently() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 40_000, LogOptions::default()));
    let sealed = LogReader::open(&log_dir)
        .unwrap()
        .segment_files()
        .unwrap()
        .len() as u64
        - 1;
    assert!(sealed >= 6, "{sealed}");
    let archive_to = |prefix: &str| {
        let url = format!("s3://events/{prefix}");
        let run = ev(
            &weed,
            &["archive", s(&log_dir), "--to", &url, "--cursor", prefix],
        );
        assert_eq!(run.code, 0, "{run:?}");
        (url, weed.list("events", prefix))
    };

    // Both objects of segment 2 deleted.
    let (url, names) = archive_to("gap");
    let (lost_from, lost_to) = (base_of(&names, 2), base_of(&names, 3));
    let (segment, index) = objects_of(&names, 2);
    weed.delete("events", &format!("gap/{segment}"));
    weed.delete("events", &format!("gap/{index}"));
    let run = ev(&weed, &["verify", &url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "note: missing: s3://events/gap: segment 2 is missing\n\
             error: s3://events/gap: 1 missing segment (2), {} segments intact\n",
            sealed - 1
        )
    );
    // cat names the gap and exits 1; every other event is there, in order.
    let all: Vec<String> = LogReader::open(&log_dir)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.position().segment() < sealed)
        .map(|e| String::from_utf8(e.payload().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !(lost_from..lost_to).contains(&(*i as u64)))
        .map(|(_, p)| p.clone())
        .collect();
    let run = ev(&weed, &["cat", &url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(payloads(&run), expected);
    assert_eq!(
        run.stderr,
        "note: skipped: s3://events/gap: segment 2 is missing\n\
         error: s3://events/gap: segment 2 is missing\n"
    );
    // From a time the missing segment held: the gap first, then what follows it.
    let in_gap = format!("{}ns", at(lost_from + 10));
    let run = ev(&weed, &["cat", &url, "--since", &in_gap, "-n", "2"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("segment 2 is missing"), "{run:?}");
    assert_eq!(payloads(&run), [payload(lost_to), payload(lost_to + 1)]);
    // Around the gap, nothing is missing.
    let after = format!("{}ns", at(lost_to + 5));
    let run = ev(&weed, &["cat", &url, "--since", &after, "-n", "2"]).ok();
    assert_eq!(payloads(&run), [payload(lost_to + 5), payload(lost_to + 6)]);
    let before = format!("{}ns", at(lost_from - 3));
    let run = ev(&weed, &["cat", &url, "--since", &before, "-n", "3"]).ok();
    assert_eq!(payloads(&run).len(), 3);
    ev(&weed, &["tail", &url, "-n", "3"]).ok();
    let reach = (all.len() as u64 - lost_to + 1).to_string();
    ev(&weed, &["tail", &url, "-n", &reach]).fails(1, &["segment 2 is missing"]);
    // restore stops at the gap, naming it, and leaves nothing.
    let copy = dir.path().join("copy");
    ev(&weed, &["restore", &url, "--to", s(&copy)]).fails(1, &["segment 2 is missing"]);
    assert!(!copy.exists() && !dir.path().join(".copy.restoring").exists());
    // stat shows it (and succeeds, as for a log).
    let run = ev(&weed, &["stat", &url]).ok();
    assert!(
        run.out().contains("gap:       segment 2 is missing"),
        "{run:?}"
    );
    let run = ev(&weed, &["stat", &url, "--json"]).ok();
    assert!(run.out().contains("\"missing\":1"), "{run:?}");

    // A segment object without its index in the middle.
    let (url, names) = archive_to("lone");
    let (segment, index) = objects_of(&names, 3);
    weed.delete("events", &format!("lone/{index}"));
    let lone = format!("s3://events/lone/{segment} has no index object");
    run_fails_naming(
        &ev(&weed, &["verify", &url]),
        &["segment 3 is missing", &lone],
    );
    let run = ev(&weed, &["cat", &url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&lone), "{run:?}");
    ev(&weed, &["restore", &url, "--to", s(&copy)]).fails(1, &[&lone]);
    // An index without its segment object after the newest: the newest events are gone.
    let (url, names) = archive_to("tip");
    let (segment, _) = objects_of(&names, sealed - 1);
    weed.delete("events", &format!("tip/{segment}"));
    run_fails_naming(
        &ev(&weed, &["verify", &url]),
        &[
            &format!("segment {} is missing", sealed - 1),
            "has no segment object",
        ],
    );
    let run = ev(&weed, &["cat", &url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(payloads(&run).len() as u64, base_of(&names, sealed - 1));
    ev(&weed, &["tail", &url, "-n", "1"]).fails(1, &["is missing"]);

    // What retention leaves below the oldest segment (an index deleted first) and an
    // upload after the newest (a segment object before its index) is not damage.
    let (url, names) = archive_to("ends");
    let (_, index) = objects_of(&names, 0);
    weed.delete("events", &format!("ends/{index}"));
    let (segment, _) = objects_of(&names, 1);
    let next = format!("{:08}-{:020}.evs", sealed, base_of(&names, sealed - 1) + 1);
    weed.put(
        "events",
        &format!("ends/{next}"),
        &weed.get("events", &format!("ends/{segment}")),
    );
    let run = ev(&weed, &["verify", &url]).ok();
    assert!(
        run.out().contains(&format!(
            "OK, {} segments, {} events",
            sealed - 1,
            all.len() as u64 - base_of(&names, 1)
        )),
        "{run:?}"
    );
    let run = ev(&weed, &["cat", &url]).ok();
    assert_eq!(payloads(&run), all[base_of(&names, 1) as usize..]);
    let run = ev(&weed, &["stat", &url]).ok();
    assert_eq!(run.out().matches("\nincomplete: ").count(), 2, "{run:?}");
    assert!(!run.out().contains("gap:"), "{run:?}");
    ev(&weed, &["tail", &url, "-n", "2"]).ok();
}

/// A run of archive-side retention stopped between its two deletes (the oldest
/// segment's index gone, its segment object not yet) leaves that object behind. The next
/// run with retention deletes it, and its bytes never count against `--retain-size` in
/// place of a segment that is still archived.
#[test]
fn retention_s_leftover_is_deleted_and_never_costs_an_archived_segment() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 30_000, LogOptions::default()));
    let url = "s3://events/left";
    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let names = weed.list("events", "left");
    let archived = names.len() / 2;
    assert!(archived >= 4, "{names:?}");
    // Stopped between the two deletes of segment 0.
    let (segment, index) = objects_of(&names, 0);
    weed.delete("events", &format!("left/{index}"));
    let stat = ev(&weed, &["stat", url, "--json"]).ok();
    assert!(stat.out().contains("\"incomplete\":1"), "{stat:?}");
    let bytes: u64 = stat
        .out()
        .split("\"bytes\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stat:?}"));
    // Exactly what the archived segments hold: none of them is over the limit.
    let run = ev(
        &weed,
        &[
            "archive",
            s(&log_dir),
            "--to",
            url,
            "--retain-size",
            &bytes.to_string(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let after = weed.list("events", "left");
    assert!(!after.contains(&segment), "the leftover stays: {after:?}");
    let expected: Vec<String> = names
        .iter()
        .filter(|n| **n != segment && **n != index)
        .cloned()
        .collect();
    assert_eq!(after, expected, "an archived segment was deleted");
    let stat = ev(&weed, &["stat", url, "--json"]).ok();
    assert!(stat.out().contains("\"incomplete\":0"), "{stat:?}");
}

/// `cat --since` from a time that falls in a segment whose index object is damaged names
/// the index, as `cat` from the start does, and goes on with the segments after it: they
/// are intact and every one of their events prints.
#[test]
fn cat_since_a_time_in_a_segment_with_a_damaged_index_goes_on_with_the_next_segments() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 30_000, LogOptions::default()));
    let url = "s3://events/app";
    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let names = weed.list("events", "app");
    let sealed = names.len() as u64 / 2;
    assert!(sealed >= 4, "{names:?}");
    let (_, index) = objects_of(&names, 2);
    weed.put("events", &format!("app/{index}"), b"not an index");
    let (from, to) = (base_of(&names, 2), base_of(&names, 3));
    let end = base_of(&names, sealed - 1)
        + LogReader::open(&log_dir)
            .unwrap()
            .iter()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().position().segment() == sealed - 1)
            .count() as u64;
    // From the start: segment 2 is skipped, named, and the rest reads.
    let run = ev(&weed, &["cat", url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&index), "{run:?}");
    let expected: Vec<String> = (0..from).chain(to..end).map(payload).collect();
    assert_eq!(payloads(&run), expected);
    // From a time segment 2 holds: the same, from there on.
    let since = format!("{}ns", at(from + 10));
    let run = ev(&weed, &["cat", url, "--since", &since]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&index), "{run:?}");
    assert_eq!(payloads(&run), (to..end).map(payload).collect::<Vec<_>>());
    let run = ev(&weed, &["cat", url, "--since", &since, "-n", "2"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(payloads(&run), [payload(to), payload(to + 1)]);
}

#[test]
fn a_prefix_without_an_archive_is_an_error_for_every_reader() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 10_000, LogOptions::default()));
    let run = ev(
        &weed,
        &["archive", s(&log_dir), "--to", "s3://events/app/2026"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    weed.put("events", "other/notes.txt", b"not an archive");
    let copy = dir.path().join("copy");
    for (url, words) in [
        // Mistyped.
        (
            "s3://events/app/2025",
            &["no archive at s3://events/app/2025 (no segment or index object under it)"][..],
        ),
        // Objects, none an archive's.
        ("s3://events/other", &["no archive at s3://events/other"]),
        // Above an archive: it is named.
        (
            "s3://events/app",
            &[
                "no archive at s3://events/app",
                "archives below it: s3://events/app/2026",
            ],
        ),
        ("s3://events", &["archives below it: s3://events/app/2026"]),
    ] {
        for args in [
            vec!["cat", url],
            vec!["cat", url, "--since", "2020-01-01"],
            vec!["tail", url],
            vec!["stat", url],
            vec!["stat", url, "--json"],
            vec!["verify", url],
            vec!["restore", url, "--to", s(&copy)],
        ] {
            let run = ev(&weed, &args);
            assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
            run.fails(1, words);
        }
        assert!(!copy.exists() && !dir.path().join(".copy.restoring").exists());
    }
    // An archive whose first upload is under way (its segment object, not yet its
    // index) exists, and holds no segment yet.
    let names = weed.list("events", "app/2026");
    let (segment, _) = objects_of(&names, 0);
    weed.put(
        "events",
        &format!("fresh/{segment}"),
        &weed.get("events", &format!("app/2026/{segment}")),
    );
    let url = "s3://events/fresh";
    let run = ev(&weed, &["stat", url]).ok();
    assert!(
        run.out().contains("segments:  0") && run.out().contains("incomplete: "),
        "{run:?}"
    );
    let run = ev(&weed, &["verify", url]).ok();
    assert!(run.out().contains("OK, 0 segments, 0 events"), "{run:?}");
    assert!(ev(&weed, &["cat", url]).ok().stdout.is_empty());
}

/// A restore started while another restore to the same log is under way is refused, and
/// leaves the first one's `.NAME.restoring` alone: the first completes, whole.
#[test]
fn a_second_restore_to_the_same_log_never_removes_or_replaces_the_one_under_way() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 300_000, LogOptions::default()));
    let url = "s3://events/app";
    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let archived = payloads(&ev(&weed, &["cat", url]).ok());
    let copy = dir.path().join("copy");
    let temp = dir.path().join(".copy.restoring");
    let mut first = command(&weed.endpoint(), KEY, SECRET)
        .args(["restore", url, "--to", s(&copy)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Under way: its log exists and has rolled at least once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while LogReader::open(&temp)
        .and_then(|r| r.segment_files())
        .map_or(true, |s| s.len() < 3)
    {
        assert!(Instant::now() < deadline, "the first restore did not start");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first restore ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = ev(&weed, &["restore", url, "--to", s(&copy)]);
    let output = first.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the first restore failed: {}; the second: {second:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    second.fails(
        1,
        &[
            "copy: another restore to it is under way",
            ".copy.restoring",
        ],
    );
    let restored: Vec<String> = LogReader::open(&copy)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().payload().to_vec()).unwrap())
        .collect();
    assert_eq!(restored.len(), archived.len());
    assert!(
        restored == archived,
        "the restored log differs from the archive"
    );
    assert!(!temp.exists());
}

#[test]
fn a_killed_archiver_and_a_restarted_store_lose_and_duplicate_nothing() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    let url = "s3://events/app";
    // Local retention keeps one segment; the archive's cursor, made by a first run, holds
    // every segment until it is archived.
    let mut log = log_with(&log_dir, 0, LogOptions::default().retain_segments(Some(1)));
    ev(&weed, &["archive", s(&log_dir), "--to", url]).ok();
    for i in 0..60_000 {
        log.append(at(i), payload(i).as_bytes()).unwrap();
    }
    log.flush().unwrap();
    let segments = LogReader::open(&log_dir)
        .unwrap()
        .segment_files()
        .unwrap()
        .len() as u64;
    let sealed = segments - 1;

    // 20 kills at pseudo-random points; after each, local retention deletes only
    // segments whose index (uploaded after the verified segment) is in the bucket.
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut deleted = 0;
    for _ in 0..20 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 400);
        let mut child = command(&weed.endpoint(), KEY, SECRET)
            .args(["archive", s(&log_dir), "--to", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let names = weed.list("events", "app");
        for retired in log.enforce_retention().unwrap() {
            let index = format!("{:08}-", retired.segment);
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(&index) && n.ends_with(".idx")),
                "segment {} deleted before it was archived: {names:?}",
                retired.segment
            );
            deleted += 1;
        }
    }
    assert!(deleted > 0, "the kills left every segment unarchived");
    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let final_run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert!(
        final_run.out().contains("0 segments archived now"),
        "{final_run:?}"
    );
    let names = weed.list("events", "app");
    assert_eq!(
        names.len() as u64,
        2 * sealed,
        "one segment object and one index each: {names:?}"
    );
    ev(&weed, &["verify", url]).ok();
    let all = ev(&weed, &["cat", url]).ok();
    let read = payloads(&all);
    let expected: Vec<String> = (0..read.len() as u64).map(payload).collect();
    assert_eq!(read, expected);
    let reader = LogReader::open(&log_dir).unwrap();
    assert_eq!(
        reader.cursor("archive").unwrap().map(|p| p.segment()),
        Some(sealed)
    );
}

#[test]
fn a_store_restarted_mid_upload_is_resumed() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 200_000, LogOptions::default()));
    let sealed = LogReader::open(&log_dir)
        .unwrap()
        .segment_files()
        .unwrap()
        .len() as u64
        - 1;
    let url = "s3://events/app";
    let mut child = command(&weed.endpoint(), KEY, SECRET)
        .args(["archive", s(&log_dir), "--to", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Down after the first upload, for two seconds.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("archived segment 0"), "{first}");
    weed.kill();
    std::thread::sleep(Duration::from_secs(2));
    weed.restart();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    let names = weed.list("events", "app");
    assert_eq!(names.len() as u64, 2 * sealed, "{names:?}");
    ev(&weed, &["verify", url]).ok();
    let read = payloads(&ev(&weed, &["cat", url]).ok());
    assert_eq!(
        read,
        (0..read.len() as u64).map(payload).collect::<Vec<_>>()
    );
}

#[test]
fn following_archives_segments_as_they_seal_and_archive_retention_deletes_old_ones() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    let mut log = log_with(&log_dir, 1_000, LogOptions::default());
    // Credentials and endpoint from the profile files only.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[other]\naws_access_key_id = nobody\n\n[archiver]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile archiver]\nregion = us-east-1\nendpoint_url = {}\n",
            weed.endpoint()
        ),
    )
    .unwrap();
    let mut archiver = evstream()
        .args([
            "archive",
            s(&log_dir),
            "--to",
            "s3://events/follow",
            "--follow",
        ])
        .env("HOME", &home)
        .env("AWS_PROFILE", "archiver")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut appended = 1_000u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sealed = 0;
    while sealed < 6 || weed.list("events", "follow").len() < 2 * sealed {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            weed.list("events", "follow")
        );
        for i in appended..appended + 2_000 {
            log.append(at(i), payload(i).as_bytes()).unwrap();
        }
        appended += 2_000;
        log.flush().unwrap();
        sealed = LogReader::open(&log_dir)
            .unwrap()
            .segment_files()
            .unwrap()
            .len()
            - 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    archiver.kill().unwrap();
    archiver.wait().unwrap();
    let read = payloads(&ev(&weed, &["cat", "s3://events/follow"]).ok());
    assert!(read.len() > 10_000);
    assert_eq!(
        read,
        (0..read.len() as u64).map(payload).collect::<Vec<_>>()
    );

    // Archive-side retention by size: whole old segments go, oldest first, never the newest.
    let run = ev(
        &weed,
        &[
            "archive",
            s(&log_dir),
            "--to",
            "s3://events/follow",
            "--retain-size",
            "600KiB",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let names = weed.list("events", "follow");
    let sizes: Vec<&String> = names.iter().filter(|n| n.ends_with(".evs")).collect();
    assert_eq!(sizes.len(), 2, "{names:?}");
    assert_eq!(names.len(), 4, "each deleted with its index: {names:?}");
    let rest = payloads(&ev(&weed, &["cat", "s3://events/follow"]).ok());
    assert_eq!(
        rest.last(),
        read.last()
            .filter(|_| rest.len() < read.len())
            .or(rest.last())
    );
    // By age: every segment is years old; the newest stays.
    let run = ev(
        &weed,
        &[
            "archive",
            s(&log_dir),
            "--to",
            "s3://events/follow",
            "--retain-age",
            "1d",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(weed.list("events", "follow").len(), 2);

    // Another log archived under the same prefix is refused, and its cursor holds.
    let two = "s3://events/two";
    // A second archive of the same log keeps its own cursor.
    let run = ev(
        &weed,
        &["archive", s(&log_dir), "--to", two, "--cursor", "two"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let other = dir.path().join("other");
    let mut other_log =
        LogWriter::create(&other, LogOptions::default().segment_size(256 << 10)).unwrap();
    for i in 0..20_000 {
        other_log.append(at(i) + 1, b"another log").unwrap();
    }
    drop(other_log);
    let run = ev(&weed, &["archive", s(&other), "--to", two]);
    run.fails(1, &["another log's segment", "00000000-"]);
    let reader = LogReader::open(&other).unwrap();
    assert_eq!(
        reader.cursor("archive").unwrap().map(|p| p.segment()),
        Some(0)
    );
}

/// Ctrl-C lets a following archive finish its current upload; with the store down that
/// upload only retries, so a second Ctrl-C ends the archiver at once (exit status 130,
/// as for `cat --follow`), and the next run goes on where it stopped.
#[test]
fn a_second_ctrl_c_ends_a_following_archive_whose_store_is_down() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    let mut log = log_with(&log_dir, 2_000, LogOptions::default());
    let url = "s3://events/app";
    let mut child = command(&weed.endpoint(), KEY, SECRET)
        .args(["archive", s(&log_dir), "--to", url, "--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for i in 2_000..20_000 {
        log.append(at(i), payload(i).as_bytes()).unwrap();
    }
    log.flush().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("archived segment 0"), "{first}");
    weed.kill();
    for i in 20_000..40_000 {
        log.append(at(i), payload(i).as_bytes()).unwrap();
    }
    log.flush().unwrap();
    // Inside an upload that retries.
    std::thread::sleep(Duration::from_millis(1500));
    let interrupt = || {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(300));
    interrupt();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("a second Ctrl-C did not end the archiver in 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    weed.restart();
    let run = ev(&weed, &["archive", s(&log_dir), "--to", url]);
    assert_eq!(run.code, 0, "{run:?}");
    let read = payloads(&ev(&weed, &["cat", url]).ok());
    assert!(read.len() > 20_000, "{}", read.len());
    assert_eq!(
        read,
        (0..read.len() as u64).map(payload).collect::<Vec<_>>()
    );
}

/// CRC-32 (IEEE), as the index object's last four bytes hold it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A well-formed pair of objects under a segment number no log has (a position holds
/// segment numbers up to 2^24 - 1) is damage that every reader names: its events never
/// print with a position they did not have (`0:0`).
#[test]
fn an_archived_segment_numbered_beyond_any_log_is_named_never_read_at_position_zero() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 10_000, LogOptions::default()));
    let run = ev(&weed, &["archive", s(&log_dir), "--to", "s3://events/app"]);
    assert_eq!(run.code, 0, "{run:?}");
    let names = weed.list("events", "app");
    let (segment, index) = objects_of(&names, 0);
    // Segment 0's objects, renumbered 16777216 (the index's sequence number and checksum
    // rewritten to match).
    let far = 1u64 << 24;
    let mut bytes = weed.get("events", &format!("app/{index}"));
    bytes[8..16].copy_from_slice(&far.to_le_bytes());
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let renamed = |name: &str| format!("{far:08}{}", &name[8..]);
    weed.put("events", &format!("far/{}", renamed(&index)), &bytes);
    weed.put(
        "events",
        &format!("far/{}", renamed(&segment)),
        &weed.get("events", &format!("app/{segment}")),
    );
    let url = "s3://events/far";
    let key = format!("far/{}", renamed(&segment));
    for args in [
        vec!["cat", url, "--format", "jsonl"],
        vec!["cat", url, "--format", "jsonl", "--since", "2000-01-01"],
        vec!["tail", url, "--format", "jsonl"],
        vec!["verify", url],
    ] {
        let run = ev(&weed, &args);
        assert!(
            !run.out().contains("\"position\":\"0:"),
            "{args:?}: {run:?}"
        );
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&key), "{args:?}: {run:?}");
    }
    let copy = dir.path().join("copy");
    ev(&weed, &["restore", url, "--to", s(&copy)]).fails(1, &[&key]);
    assert!(!copy.exists());
}

#[test]
fn hostile_objects_are_named_and_never_a_panic() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let url = "s3://events/junk";
    let junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let first = "10000000000000000000";
    let last = "10000000000000000099";
    // Random bytes under archive names; empty objects; an index whose segment is missing;
    // a segment without an index; a name that is nearly an archive name.
    let objects: Vec<(String, &[u8])> = vec![
        ("00000000-00000000000000000000.evs".into(), &junk[..]),
        (
            format!("00000000-00000000000000000000-{first}-{last}.idx"),
            &junk[..1000],
        ),
        ("00000001-00000000000000000100.evs".into(), &[]),
        (
            format!("00000001-00000000000000000100-{first}-{last}.idx"),
            &[],
        ),
        (
            format!("00000002-00000000000000000200-{first}-{last}.idx"),
            b"EVARCIX1",
        ),
        ("00000003-00000000000000000300.evs".into(), &junk[..100]),
        ("0000004-00000000000000000400.evs".into(), &junk[..10]),
    ];
    for (name, bytes) in &objects {
        weed.put("events", &format!("junk/{name}"), bytes);
    }
    let run = ev(&weed, &["verify", url]);
    run_fails_naming(
        &run,
        &[
            "00000000-00000000000000000000-",
            "00000001-00000000000000000100",
            "00000003-00000000000000000300.evs",
        ],
    );
    for args in [
        vec!["cat", url],
        vec!["cat", url, "--since", "2020-01-01"],
        vec!["tail", url],
        vec!["stat", url],
        vec!["stat", url, "--json"],
    ] {
        let run = ev(&weed, &args);
        assert!(run.code == 0 || run.code == 1, "{args:?}: {run:?}");
        assert!(
            run.stdout.is_empty() || args[0] == "stat",
            "{args:?}: {run:?}"
        );
    }
    let stat = ev(&weed, &["stat", url]);
    assert!(
        stat.out().contains("damaged:")
            && stat
                .out()
                .contains("gap:       segments 2 to 3 are missing"),
        "{stat:?}"
    );
    let copy = dir.path().join("copy");
    ev(&weed, &["restore", url, "--to", s(&copy)]).fails(1, &["junk/0000000"]);
    assert!(!copy.exists());
}

/// An archive missing a segment's object but still holding its index is repaired by the
/// next run that reaches that segment (a new cursor, as a user runs to repair it): the
/// segment is uploaded again, never counted as archived on the strength of its index
/// alone, so the log's retention never deletes the only copy of its events.
#[test]
fn a_segment_whose_object_is_gone_but_whose_index_is_left_is_uploaded_again() {
    let Some(binary) = weed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(&binary, dir.path());
    weed.bucket("events");
    let log_dir = dir.path().join("app");
    drop(log_with(&log_dir, 20_000, LogOptions::default()));
    let url = "s3://events/half";
    let archive = |cursor: &str| {
        let run = ev(
            &weed,
            &["archive", s(&log_dir), "--to", url, "--cursor", cursor],
        );
        assert_eq!(run.code, 0, "{run:?}");
        run
    };
    archive("first");
    let names = weed.list("events", "half");
    let (segment, index) = objects_of(&names, 1);
    weed.delete("events", &format!("half/{segment}"));
    assert!(!weed.list("events", "half").contains(&segment));
    assert!(weed.list("events", "half").contains(&index));
    let run = ev(&weed, &["verify", url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("segment 1 is missing"), "{run:?}");

    archive("again");
    assert!(
        weed.list("events", "half").contains(&segment),
        "segment 1 was not uploaded again"
    );
    ev(&weed, &["verify", url]).ok();
    let sealed: Vec<String> = LogReader::open(&log_dir)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.position().segment() < archived_segments(&names))
        .map(|e| String::from_utf8(e.payload().to_vec()).unwrap())
        .collect();
    assert_eq!(payloads(&ev(&weed, &["cat", url]).ok()), sealed);
}

/// How many segments the archive's object names hold (one index each).
fn archived_segments(names: &[String]) -> u64 {
    names.iter().filter(|n| n.ends_with(".idx")).count() as u64
}
