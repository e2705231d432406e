//! The `evstream` binary, run as a user would: every command, every error the issue
//! names, exit codes, output, and files left byte for byte unchanged by failures.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use evstream::StreamReader;

mod support;

use support::*;

/// Five events, ten seconds apart from NOON.
fn five(dir: &Path) -> PathBuf {
    let events: Vec<(i64, &[u8])> = vec![
        (NOON, b"alpha"),
        (NOON + 10 * SEC, b"bravo"),
        (NOON + 20 * SEC, b"charlie"),
        (NOON + 30 * SEC, b"delta"),
        (NOON + 40 * SEC, b"echo"),
    ];
    stream(dir, "five.evs", 4096, &events)
}

/// Kills a child process that outlives a deadline, so a hang fails instead of blocking.
fn watchdog(child: &Child, limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&done);
    let pid = child.id();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if seen.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = spawn(Command::new("kill").arg(pid.to_string())).wait();
    });
    done
}

// ---------------------------------------------------------------------------- create

#[test]
fn create_makes_an_empty_stream_of_the_capacity_asked() {
    let dir = tempfile::tempdir().unwrap();
    for (size, bytes) in [
        ("4096", 4096),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
        ("10kB", 10_000),
    ] {
        let path = dir.path().join(format!("{size}.evs"));
        let run = run(&["create", s(&path), "--capacity", size]).ok();
        assert!(
            run.out().starts_with(&format!("created {}", s(&path))),
            "{run:?}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
        let reader = StreamReader::open(&path).unwrap();
        assert_eq!(reader.capacity(), bytes);
        assert_eq!(reader.iter().count(), 0);
    }
}

#[test]
fn create_refuses_an_existing_file_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let existing = five(dir.path());
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a stream\n").unwrap();
    for path in [&existing, &text] {
        let before = std::fs::read(path).unwrap();
        run(&["create", s(path), "--capacity", "64KiB"]).fails(1, &[s(path), "already exists"]);
        assert_eq!(std::fs::read(path).unwrap(), before);
    }
}

#[test]
fn create_in_a_missing_directory_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/x.evs");
    run(&["create", s(&path), "--capacity", "4096"])
        .fails(1, &[s(&path), "no such file or directory"]);
    assert!(!path.exists());
}

#[test]
fn create_rejects_bad_sizes_as_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.evs");
    for size in [
        "",
        "lots",
        "-5",
        "12 apples",
        "1.2.3MiB",
        "39",
        "99999999999999999999",
    ] {
        run(&["create", s(&path), "--capacity", size]).fails(2, &["--capacity"]);
        assert!(!path.exists());
    }
    // Larger than any mapping can be: the library refuses it, still a usage error.
    run(&["create", s(&path), "--capacity", "9223372036854775808"]).fails(2, &["capacity"]);
    run(&["create", s(&path)]).fails(2, &["--capacity"]);
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------- append

#[test]
fn append_takes_one_event_per_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "a.evs", 4096, &[]);
    let ts = format!("{NOON}ns");
    run(&[
        "append",
        s(&path),
        "--timestamp",
        &ts,
        "hello",
        "",
        "wide world",
    ])
    .ok();
    run(&[
        "append",
        s(&path),
        "--timestamp",
        "2024-05-01T12:00:01Z",
        "--",
        "-5",
    ])
    .ok();
    assert_eq!(
        events_of(&path),
        vec![
            (NOON, b"hello".to_vec()),
            (NOON, b"".to_vec()),
            (NOON, b"wide world".to_vec()),
            (NOON + SEC, b"-5".to_vec()),
        ]
    );
}

#[test]
fn append_reads_lines_from_stdin_and_cat_json_round_trips_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "a.evs", 4096, &[]);
    // Text, an empty line, binary (not UTF-8), JSON specials, and a last line without
    // a newline.
    let input: &[u8] = b"plain text\n\n\xff\x00\xfe binary\nsay \"hi\"\tand \\ \x01\nlast";
    let ts = format!("{}ns", NOON + 123_456_789);
    run_with(&["append", s(&path), "--timestamp", &ts], Some(input)).ok();
    let stored: Vec<Vec<u8>> = events_of(&path).into_iter().map(|(_, p)| p).collect();
    let expected: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(stored, expected);

    let json = run(&["cat", s(&path), "--format", "json"]).ok();
    // The timestamp as a decimal string: exact in jq and JavaScript.
    let time = "\"timestamp\":\"1714564800123456789\",\"time\":\"2024-05-01T12:00:00.123456789Z\"";
    assert_eq!(
        json.lines(),
        vec![
            format!("{{\"offset\":24,{time},\"size\":10,\"payload\":\"plain text\"}}"),
            format!("{{\"offset\":50,{time},\"size\":0,\"payload\":\"\"}}"),
            // base64 of ff 00 fe 20 62 69 6e 61 72 79 (" binary")
            format!("{{\"offset\":66,{time},\"size\":10,\"payload_base64\":\"/wD+IGJpbmFyeQ==\"}}"),
            format!(
                "{{\"offset\":92,{time},\"size\":16,\"payload\":\"say \\\"hi\\\"\\tand \\\\ \\u0001\"}}"
            ),
            format!("{{\"offset\":124,{time},\"size\":4,\"payload\":\"last\"}}"),
        ]
    );
}

#[test]
fn append_raw_takes_all_of_stdin_as_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "a.evs", 4096, &[]);
    let payload: Vec<u8> = (0..=255u8).chain(*b"\n\nend\n").collect();
    run_with(&["append", s(&path), "--raw", "--sync"], Some(&payload)).ok();
    run_with(&["append", s(&path), "--raw"], Some(b"")).ok();
    let stored = events_of(&path);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].1, payload);
    assert_eq!(stored[1].1, b"");
    // raw prints the payload bytes as stored, each followed by a newline.
    let raw = run(&["cat", s(&path), "--format", "raw"]).ok();
    let mut expected = payload.clone();
    expected.extend_from_slice(b"\n\n");
    assert_eq!(raw.stdout, expected);
    run(&["append", s(&path), "--raw", "x"]).fails(2, &["--raw"]);
}

#[test]
fn append_stamps_events_with_the_wall_clock_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "a.evs", 1 << 20, &[]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let lines: String = (0..1000).map(|i| format!("event {i}\n")).collect();
    run_with(&["append", s(&path), "--sync"], Some(lines.as_bytes())).ok();
    run(&["append", s(&path), "one more"]).ok();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let events = events_of(&path);
    assert_eq!(events.len(), 1001);
    assert_eq!(events[999].1, b"event 999");
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(
        events[0].0 >= before && events[1000].0 <= after,
        "{before} {after}"
    );
}

#[test]
fn append_refuses_an_earlier_timestamp_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let before = std::fs::read(&path).unwrap();
    run(&[
        "append",
        s(&path),
        "--timestamp",
        "2024-05-01T12:00:00Z",
        "late",
    ])
    .fails(
        1,
        &[
            s(&path),
            "earlier than the last event",
            "nothing was appended",
        ],
    );
    run_with(&["append", s(&path), "--timestamp", "5ns"], Some(b"a\nb\n"))
        .fails(1, &[s(&path), "earlier"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn append_to_a_full_stream_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest stream holds events in 24..512: after a 412-byte filler event, 3
    // events of 16 + 4 bytes fit and 16 bytes stay free.
    let filler = [9u8; 396];
    let path = stream(dir.path(), "small.evs", 1536, &[(0, &filler)]);
    // Arguments: all fit or nothing is appended.
    run(&[
        "append",
        s(&path),
        "--timestamp",
        "1ns",
        "aaaa",
        "bbbb",
        "cccc",
        "dddd",
    ])
    .fails(
        1,
        &[s(&path), "is full", "4 events need 80 B", "76 B are free"],
    );
    assert_eq!(events_of(&path).len(), 1);
    // Lines: appended until full, and the message says how many made it.
    run_with(
        &["append", s(&path), "--timestamp", "1ns"],
        Some(b"1111\n2222\n3333\n4444\n5555\n"),
    )
    .fails(
        1,
        &[
            s(&path),
            "is full",
            "20 B",
            "16 B are free",
            "3 events were appended",
        ],
    );
    assert_eq!(events_of(&path).len(), 4);
    // Full now: a failed append leaves the file byte for byte unchanged.
    let before = std::fs::read(&path).unwrap();
    run(&["append", s(&path), "x"]).fails(1, &["is full", "nothing was appended"]);
    run_with(&["append", s(&path), "--raw"], Some(&[7; 100])).fails(1, &["is full"]);
    run_with(&["append", s(&path)], Some(b"more\n")).fails(1, &["is full"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn append_to_a_locked_stream_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let writer = Writer::open(&path);
    let before = std::fs::read(&path).unwrap();
    run(&["append", s(&path), "x"]).fails(1, &[s(&path), "locked by another writer"]);
    run_with(&["append", s(&path)], Some(b"a\n")).fails(1, &["locked"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    drop(writer);
    run(&["append", s(&path), "x"]).ok();
}

/// The payloads of a stream or log, through the `evstream` binary.
fn events_in(path: &Path) -> Vec<String> {
    run(&["cat", s(path), "--format", "raw"]).ok().lines()
}

/// A rejected argument list appends nothing, whatever the target (a stream or a log,
/// shared or held with `--wait`) and whatever is wrong with it (one argument too large
/// for a segment or the space left, a `--timestamp` earlier than the last event).
#[test]
fn a_rejected_argument_list_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let big = "a".repeat(5000);
    let stream_path = dir.path().join("s.evs");
    run(&["create", s(&stream_path), "--capacity", "4KiB"]).ok();
    let log_path = dir.path().join("lg");
    run(&["create", s(&log_path), "--log", "--segment-size", "4KiB"]).ok();
    for (path, too_large) in [
        (&stream_path, "is full"),
        (&log_path, "does not fit in a segment"),
    ] {
        for wait in [None, Some("--wait")] {
            let with = |args: &[&str]| {
                let mut all = vec!["append", s(path)];
                all.extend(wait);
                all.extend_from_slice(args);
                run(&all)
            };
            with(&["small", &big]).fails(1, &[too_large, "nothing was appended"]);
            with(&["small", "a", "b", &big]).fails(1, &[too_large, "nothing was appended"]);
            assert_eq!(events_in(path), Vec::<String>::new(), "{wait:?}");
        }
        run(&[
            "append",
            s(path),
            "--timestamp",
            "2024-05-01T12:00:00Z",
            "first",
        ])
        .ok();
        for wait in [None, Some("--wait")] {
            let mut all = vec!["append", s(path), "--timestamp", "2024-05-01"];
            all.extend(wait);
            all.extend_from_slice(&["a", "b"]);
            run(&all).fails(1, &["earlier than the last event", "nothing was appended"]);
        }
        assert_eq!(events_in(path), ["first"]);
    }
}

/// Standard input that never ends its record (`/dev/zero` has no newline) is a clear
/// error in bounded memory, in every format, on a stream and on a log: the records before
/// it stay, nothing of it is appended, and reading stops at the limit (the command runs
/// under a 400 MB address-space limit and within a minute).
#[test]
fn an_endless_record_is_a_clear_error_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A frame header claiming a payload of 4 GiB - 1 bytes, which zeros then fill.
    let mut endless_frame = NOON.to_le_bytes().to_vec();
    endless_frame.extend_from_slice(&u32::MAX.to_le_bytes());
    endless_frame.extend_from_slice(&[0; 4]);
    let cases: [(&str, &[&str], Vec<u8>, usize); 6] = [
        ("lines", &[], b"one\ntwo\n".to_vec(), 2),
        ("raw", &["--raw"], Vec::new(), 0),
        (
            "jsonl",
            &["--format", "jsonl"],
            br#"{"timestamp":"1714564800000000000","payload":"one"}"#.to_vec(),
            1,
        ),
        (
            "import",
            &["--format", "jsonl", "--time-field", "t"],
            b"{\"t\":\"2024-05-01T12:00:00Z\"}\n".to_vec(),
            1,
        ),
        (
            "csv",
            &["--format", "csv", "--time-field", "t"],
            b"t,v\n2024-05-01T12:00:00Z,one\n".to_vec(),
            1,
        ),
        ("binary", &["--format", "binary"], endless_frame, 0),
    ];
    for (target, too_large) in [("stream", "is full"), ("log", "does not fit in a segment")] {
        for (name, flags, prefix, kept) in &cases {
            let path = dir.path().join(format!("{target}-{name}"));
            if target == "stream" {
                run(&["create", s(&path), "--capacity", "4KiB"]).ok();
            } else {
                run(&["create", s(&path), "--log", "--segment-size", "4KiB"]).ok();
            }
            let mut prefix = prefix.clone();
            if *name == "jsonl" {
                prefix.push(b'\n');
            }
            let prefix_path = dir.path().join(format!("{target}-{name}.prefix"));
            std::fs::write(&prefix_path, &prefix).unwrap();
            let mut command = Command::new("sh");
            command
                .args([
                    "-c",
                    r#"p=$1 f=$2; shift 2; ulimit -v 400000; cat "$p" /dev/zero | "$0" append "$f" "$@""#,
                    env!("CARGO_BIN_EXE_evstream"),
                    s(&prefix_path),
                    s(&path),
                ])
                .args(*flags);
            let child = spawn(
                command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .stdin(Stdio::null()),
            );
            let done = watchdog(&child, Duration::from_secs(60));
            let output = child.wait_with_output().unwrap();
            done.store(true, Ordering::Relaxed);
            let ran = from(output);
            let why = format!("{target} {name}: {ran:?}");
            assert_eq!(ran.code, 1, "{why}");
            assert_eq!(ran.stderr.lines().count(), 1, "{why}");
            assert!(ran.stderr.starts_with("error: "), "{why}");
            assert!(ran.stderr.contains("read no further"), "{why}");
            let words: &[&str] = match *name {
                "jsonl" | "csv" => &["goes on past", "without ending"],
                _ => &[too_large],
            };
            for word in words {
                assert!(ran.stderr.contains(word), "{word:?}: {why}");
            }
            assert_eq!(events_in(&path).len(), *kept, "{why}");
            run(&["verify", s(&path)]).ok();
        }
    }
}

/// Arguments appended while another process feeds the same log go in together, with no
/// other event between them, or not at all: with a `--timestamp` the feed overtakes
/// (a refusal, nothing appended, or success), with the wall clock always success.
#[test]
fn arguments_go_in_together_while_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("lg");
    run(&["create", s(&log_path), "--log", "--segment-size", "64KiB"]).ok();
    let mut feeder = spawn(
        evstream()
            .args(["append", s(&log_path)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut input = feeder.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeding = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::Write;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lines: String = (i..i + 100).map(|n| format!("feed-{n}\n")).collect();
                if input.write_all(lines.as_bytes()).is_err() {
                    break;
                }
                i += 100;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let args: Vec<String> = (0..20_000).map(|i| format!("arg-{i}")).collect();
    let mut outcomes = Vec::new();
    for timestamp in [Some("+20ms"), None] {
        let mut all = vec!["append", s(&log_path)];
        if let Some(t) = timestamp {
            all.extend_from_slice(&["--timestamp", t]);
        }
        all.extend(args.iter().map(String::as_str));
        let done = run(&all);
        let code = done.code;
        if code != 0 {
            assert!(timestamp.is_some(), "the wall clock never fails: {done:?}");
            done.fails(1, &["earlier than the last event", "nothing was appended"]);
        }
        outcomes.push(code);
        let events = events_in(&log_path);
        let at: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, p)| p.starts_with("arg-"))
            .map(|(i, _)| i)
            .collect();
        let expected = args.len() * outcomes.iter().filter(|c| **c == 0).count();
        assert_eq!(at.len(), expected, "all or none: {timestamp:?}");
        // Each successful run's arguments sit together, in order.
        for run in at.chunks(args.len()) {
            assert_eq!(
                run.last().unwrap() - run[0],
                args.len() - 1,
                "{timestamp:?}"
            );
            for (k, i) in run.iter().enumerate() {
                assert_eq!(events[*i], args[k]);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    feeding.join().unwrap();
    feeder.wait().unwrap();
    run(&["verify", s(&log_path)]).ok();
}

// ---------------------------------------------------------------------------- errors

/// Every command that opens FILE, with extra arguments.
const FILE_COMMANDS: &[&[&str]] = &[
    &["cat"],
    &["cat", "--follow"],
    &["tail"],
    &["stat"],
    &["stat", "--json"],
    &["verify"],
    &["append", "x"],
];

fn with_file<'a>(command: &[&'a str], file: &'a str) -> Vec<&'a str> {
    let mut args = vec![command[0], file];
    args.extend_from_slice(&command[1..]);
    args
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.evs");
    for command in FILE_COMMANDS {
        run(&with_file(command, s(&path))).fails(1, &[s(&path), "no such file"]);
    }
    assert!(!path.exists());
}

#[test]
fn a_directory_is_not_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    for command in FILE_COMMANDS {
        run(&with_file(command, s(dir.path()))).fails(1, &[s(dir.path()), "is a directory"]);
    }
}

#[test]
fn a_file_that_is_not_a_stream_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "Dear diary, today I wrote a text file. It is not a stream.\n",
    )
    .unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"tiny").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    for path in [&text, &short, &empty] {
        let before = std::fs::read(path).unwrap();
        for command in FILE_COMMANDS {
            run(&with_file(command, s(path))).fails(1, &[s(path), "not a stream file"]);
        }
        assert_eq!(std::fs::read(path).unwrap(), before);
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let p = s(&path);
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["cat"],
        vec!["cat", p, "--bogus"],
        vec!["cat", p, "--format", "xml"],
        vec!["cat", p, "--since", "1714564800"],
        vec!["cat", p, "--until", "2024-02-30T00:00:00Z"],
        vec!["cat", p, "--limit", "-1"],
        vec!["cat", p, "--from-offset", "x"],
        vec!["tail", p, "-n", "ten"],
        vec!["append", p, "--timestamp", "noon", "x"],
        vec!["bench", "--size", "huge"],
    ] {
        let run = run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("error: ") || args.len() < 2,
            "{run:?}"
        );
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let top = run(&["--help"]).ok();
    assert!(top.out().contains("Examples:"));
    for command in ["create", "append", "cat", "tail", "stat", "verify", "bench"] {
        let help = run(&[command, "--help"]).ok();
        let text = help.out();
        assert!(text.contains("Examples:"), "{command}: {text}");
        assert!(
            text.contains(&format!("evstream {command}")),
            "{command}: {text}"
        );
    }
}

#[test]
fn garbage_files_never_crash_any_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..40 {
        let len = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the cases get a plausible header, so the event parser is reached.
        if case % 2 == 0 && len >= 24 {
            let write_offset = 24 + next() % (len as u64 - 23);
            bytes[..8].copy_from_slice(&write_offset.to_le_bytes());
            bytes[8..16].copy_from_slice(&(next() % 4).to_le_bytes());
        }
        let path = dir.path().join(format!("garbage{case}"));
        std::fs::write(&path, &bytes).unwrap();
        for command in FILE_COMMANDS.iter().filter(|c| !c.contains(&"--follow")) {
            let result = run(&with_file(command, s(&path)));
            assert!(
                result.code == 0 || result.code == 1,
                "{command:?} {result:?}"
            );
            if result.code == 1 {
                assert!(result.stderr.starts_with("error: "), "{result:?}");
                assert_eq!(result.stderr.lines().count(), 1, "{result:?}");
            }
        }
        for args in [["cat", "--format", "json"], ["tail", "-n", "1"]] {
            let result = run(&[args[0], s(&path), args[1], args[2]]);
            assert!(result.code == 0 || result.code == 1, "{result:?}");
        }
    }
}

// ---------------------------------------------------------------------------- cat

#[test]
fn cat_prints_text_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(
        dir.path(),
        "t.evs",
        4096,
        &[
            (NOON, b"hello"),
            (NOON + 1, b"tab\there\nnewline \\ \xff\xfe"),
            (NOON + 1, b""),
        ],
    );
    let result = run(&["cat", s(&path)]).ok();
    assert_eq!(
        result.lines(),
        vec![
            "2024-05-01T12:00:00.000000000Z hello",
            r"2024-05-01T12:00:00.000000001Z tab\there\nnewline \\ \xff\xfe",
            "2024-05-01T12:00:00.000000001Z ",
        ]
    );
}

#[test]
fn cat_prints_hex_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(
        dir.path(),
        "t.evs",
        4096,
        &[(NOON, b"\x00\xffAb"), (NOON, b"")],
    );
    let hex = run(&["cat", s(&path), "--format", "hex"]).ok();
    assert_eq!(
        hex.lines(),
        vec![
            "2024-05-01T12:00:00.000000000Z 00ff4162",
            "2024-05-01T12:00:00.000000000Z "
        ]
    );
    let raw = run(&["cat", s(&path), "--format", "raw"]).ok();
    assert_eq!(raw.stdout, b"\x00\xffAb\n\n");
}

#[test]
fn cat_filters_by_time_offset_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let p = s(&path);
    let payloads = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["cat", p, "--format", "raw"];
        all.extend_from_slice(args);
        run(&all).ok().lines()
    };
    assert_eq!(
        payloads(&[]),
        ["alpha", "bravo", "charlie", "delta", "echo"]
    );
    assert_eq!(
        payloads(&[
            "--since",
            "2024-05-01T12:00:10Z",
            "--until",
            "2024-05-01T12:00:30Z"
        ]),
        ["bravo", "charlie"]
    );
    let since = format!("{}ns", NOON + 10 * SEC + 1);
    assert_eq!(payloads(&["--since", &since]), ["charlie", "delta", "echo"]);
    assert_eq!(
        payloads(&["--since", "2024-05-01T14:00:30+02:00"]),
        ["delta", "echo"]
    );
    assert_eq!(payloads(&["--until", "2024-05-01"]), Vec::<String>::new());
    assert_eq!(payloads(&["--since", "2025-01-01"]), Vec::<String>::new());
    assert_eq!(payloads(&["--limit", "2"]), ["alpha", "bravo"]);
    assert_eq!(payloads(&["--limit", "0"]), Vec::<String>::new());
    assert_eq!(
        payloads(&["--since", "2024-05-01T12:00:10Z", "-n", "1"]),
        ["bravo"]
    );
    // Offsets as printed by --format json: 24, 45, 66, 89, 110.
    let json = run(&["cat", p, "--format", "json"]).ok().out();
    assert!(
        json.contains("\"offset\":66,") && json.contains("\"offset\":110,"),
        "{json}"
    );
    assert_eq!(
        payloads(&["--from-offset", "66"]),
        ["charlie", "delta", "echo"]
    );
    assert_eq!(
        payloads(&["--from-offset", "66", "--since", "2024-05-01T12:00:35Z"]),
        ["echo"]
    );
    assert_eq!(payloads(&["--from-offset", "130"]), Vec::<String>::new());
    // An offset inside an event, or past the end, is refused.
    run(&["cat", p, "--from-offset", "70"])
        .fails(1, &[p, "no valid event starts at byte offset 70"]);
    run(&["cat", p, "--from-offset", "5000"]).fails(1, &[p, "5000", "outside"]);
}

#[test]
fn cat_and_tail_follow_print_new_events_as_they_are_appended() {
    for (args, first) in [
        (vec!["cat", "--format", "raw", "--follow"], Some("alpha")),
        (
            vec!["tail", "-n", "1", "--format", "raw", "--follow"],
            Some("echo"),
        ),
        (vec!["tail", "-n", "0", "--format", "raw", "-f"], None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = five(dir.path());
        let mut child = spawn(
            evstream()
                .args(&args[..1])
                .arg(&path)
                .args(&args[1..])
                .stdout(Stdio::piped()),
        );
        let done = watchdog(&child, Duration::from_secs(30));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen: Vec<String> = Vec::new();
        if let Some(first) = first {
            // The events there before any new one is appended.
            seen.push(lines.next().unwrap().unwrap());
            assert_eq!(seen[0], first);
        }
        // A writer in another process appends one event every 20 ms until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let appender = {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut writer = Writer::open(&path);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 1000 {
                    writer
                        .append(NOON + 100 * SEC, format!("new {i}").as_bytes())
                        .unwrap();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        while seen.iter().filter(|l| l.starts_with("new ")).count() < 3 {
            seen.push(lines.next().unwrap().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        appender.join().unwrap();
        done.store(true, Ordering::Relaxed);
        child.kill().unwrap();
        child.wait().unwrap();
        let new: Vec<&String> = seen.iter().filter(|l| l.starts_with("new ")).collect();
        match first {
            Some("alpha") => {
                assert_eq!(seen[..5], ["alpha", "bravo", "charlie", "delta", "echo"]);
                assert_eq!(new, ["new 0", "new 1", "new 2"]);
            }
            Some(_) => assert_eq!(seen, ["echo", "new 0", "new 1", "new 2"]),
            None => {
                // Started at the end: whatever came first, the rest follow in order.
                let k: u32 = new[0]["new ".len()..].parse().unwrap();
                assert_eq!(
                    new,
                    [
                        &format!("new {k}"),
                        &format!("new {}", k + 1),
                        &format!("new {}", k + 2)
                    ]
                );
                assert_eq!(seen.len(), 3, "{seen:?}");
            }
        }
    }
}

#[test]
fn cat_follow_stops_at_until_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    run(&["cat", s(&path), "--follow", "--limit", "2"]).ok();
    run(&[
        "cat",
        s(&path),
        "--follow",
        "--until",
        "2024-05-01T12:00:20Z",
    ])
    .ok();
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "big.evs", 16 << 20, &[]);
    let mut writer = Writer::open(&path);
    for i in 0..200_000 {
        writer
            .append(NOON + i, format!("event number {i}").as_bytes())
            .unwrap();
    }
    drop(writer);
    for args in [
        vec!["cat", s(&path)],
        vec!["cat", s(&path), "--format", "json", "--follow"],
        vec!["tail", s(&path), "-n", "100000"],
        vec!["--help"],
    ] {
        let mut child = spawn(
            evstream()
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let done = watchdog(&child, Duration::from_secs(30));
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout); // like `| head -c 10`
        let output = child.wait_with_output().unwrap();
        done.store(true, Ordering::Relaxed);
        let result = from(output);
        assert_eq!(result.code, 0, "{args:?}: {result:?}");
        assert_eq!(result.stderr, "", "{args:?}");
    }
}

// ---------------------------------------------------------------------------- tail

#[test]
fn tail_prints_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..15)
        .map(|i| (NOON + i, format!("e{i}").into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let path = stream(dir.path(), "t.evs", 4096, &borrowed);
    let tail = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["tail", s(&path), "--format", "raw"];
        all.extend_from_slice(args);
        run(&all).ok().lines()
    };
    let expect = |from: usize| -> Vec<String> { (from..15).map(|i| format!("e{i}")).collect() };
    assert_eq!(tail(&[]), expect(5));
    assert_eq!(tail(&["-n", "2"]), expect(13));
    assert_eq!(tail(&["--lines", "15"]), expect(0));
    assert_eq!(tail(&["-n", "1000"]), expect(0));
    assert_eq!(tail(&["-n", "0"]), Vec::<String>::new());
    let text = run(&["tail", s(&path), "-n", "1"]).ok();
    assert_eq!(text.lines(), vec!["2024-05-01T12:00:00.000000014Z e14"]);
    let empty = stream(dir.path(), "empty.evs", 4096, &[]);
    assert_eq!(run(&["tail", s(&empty)]).ok().stdout, b"");
}

/// Any count a user can type is answered with the events there are: `tail` never
/// allocates for the count asked (which panicked, or aborted the process, on a log).
#[test]
fn tail_of_any_count_prints_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "t.evs", 4096, &[(NOON, b"a"), (NOON + 1, b"b")]);
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "4KiB"]).ok();
    run_with(&["append", s(&log)], Some(b"a\nb\n")).ok();
    for target in [&path, &log] {
        for count in ["1000000000", "18446744073709551615"] {
            let lines = run(&["tail", s(target), "-n", count, "--format", "raw"])
                .ok()
                .lines();
            assert_eq!(lines, vec!["a", "b"], "tail -n {count} of {target:?}");
        }
    }
}

// ---------------------------------------------------------------------------- stat

#[test]
fn stat_reports_size_fill_events_times_and_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let text = run(&["stat", s(&path)]).ok().out();
    for expected in [
        format!("path:          {}", s(&path)),
        "capacity:      4 KiB (4096 bytes)".to_owned(),
        "write offset:  130".to_owned(),
        "used:          130 B".to_owned(),
        "free:          2.9 KiB (2942 bytes)".to_owned(),
        "durable to:    110 (20 B not yet flushed)".to_owned(),
        "generation:    0".to_owned(),
        "sealed:        no".to_owned(),
        "fill:          4.23%".to_owned(),
        "events:        5".to_owned(),
        "first event:   2024-05-01T12:00:00.000000000Z".to_owned(),
        "last event:    2024-05-01T12:00:40.000000000Z".to_owned(),
        "span:          40 s".to_owned(),
        "writer:        none".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in\n{text}");
    }
    let json = run(&["stat", s(&path), "--json"]).ok().out();
    for expected in [
        "\"capacity\":4096,",
        "\"write_offset\":130,",
        "\"used_bytes\":130,",
        "\"free_bytes\":2942,",
        "\"durable_offset\":110,",
        "\"generation\":0,",
        "\"sealed\":false",
        "\"fill_percent\":4.2318,",
        "\"event_count\":5,",
        "\"first_timestamp\":\"1714564800000000000\",",
        "\"last_time\":\"2024-05-01T12:00:40.000000000Z\",",
        "\"writer_active\":false,",
    ] {
        assert!(json.contains(expected), "{expected:?} not in {json}");
    }
    assert!(json.starts_with('{') && json.trim_end().ends_with('}') && json.lines().count() == 1);

    let writer = Writer::open(&path);
    assert!(
        run(&["stat", s(&path)])
            .ok()
            .out()
            .contains("writer:        active")
    );
    assert!(
        run(&["stat", s(&path), "--json"])
            .ok()
            .out()
            .contains("\"writer_active\":true")
    );
    drop(writer);

    let empty = stream(dir.path(), "empty.evs", 4096, &[]);
    let text = run(&["stat", s(&empty)]).ok().out();
    assert!(
        text.contains("events:        0") && text.contains("first event:   none"),
        "{text}"
    );
    let json = run(&["stat", s(&empty), "--json"]).ok().out();
    assert!(
        json.contains("\"first_timestamp\":null,\"first_time\":null"),
        "{json}"
    );
}

// ---------------------------------------------------------------------------- verify

#[test]
fn verify_accepts_an_intact_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let result = run(&["verify", s(&path)]).ok();
    assert!(
        result
            .out()
            .starts_with(&format!("ok: {}: 5 events", s(&path))),
        "{result:?}"
    );
    let empty = stream(dir.path(), "empty.evs", 4096, &[]);
    run(&["verify", s(&empty)]).ok();
}

#[test]
fn verify_reports_the_first_bad_event_and_the_good_ones_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[66 + 16 + 3] ^= 0x20; // a payload byte of the third event ("charlie")
    std::fs::write(&path, &bytes).unwrap();
    run(&["verify", s(&path)]).fails(
        1,
        &[
            s(&path),
            "byte offset 66",
            "checksum mismatch",
            "2 good events before it",
        ],
    );
    // verify, cat, tail and stat only read: the damage is left for a person to inspect.
    let _ = run(&["cat", s(&path)]).fails(1, &["byte offset 66", "2 events were printed"]);
    run(&["stat", s(&path)]).ok();
    run(&["tail", s(&path), "-n", "2"]).ok();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Damage below the durable watermark is never taken for a torn tail: append refuses
    // it, naming the offset and the watermark.
    run(&["verify", s(&path)]).fails(1, &["byte offset 66", "below the durable watermark"]);
    run(&["append", s(&path), "x"]).fails(
        1,
        &[
            s(&path),
            "corrupt at byte offset 66",
            "below the durable watermark 110",
        ],
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn append_repairs_a_torn_tail_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    // The last event (110..130) never reached the disk: zeros, as a power loss leaves.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[110..130].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    run(&["verify", s(&path)]).fails(1, &["byte offset 110", "4 good events before it"]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let result = run(&["append", s(&path), "foxtrot"]);
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stderr.starts_with("note: ") && result.stderr.contains("torn tail"),
        "{result:?}"
    );
    let payloads: Vec<Vec<u8>> = events_of(&path).into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads.len(), 5);
    assert_eq!(payloads[3], b"delta");
    assert_eq!(payloads[4], b"foxtrot");
    run(&["verify", s(&path)]).ok();
}

#[test]
fn verify_fails_when_the_header_count_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..16].copy_from_slice(&9u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    run(&["verify", s(&path)]).fails(1, &[s(&path), "header counts 9 events", "5 valid events"]);
    bytes[8..16].copy_from_slice(&3u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    run(&["verify", s(&path)]).fails(1, &["header counts 3 events", "5 valid events"]);
    // One short is what a writer that stopped between offset and count leaves.
    bytes[8..16].copy_from_slice(&4u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    run(&["verify", s(&path)]).ok();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

// ---------------------------------------------------------------------------- live

#[test]
fn read_only_commands_work_while_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "live.evs", 64 << 20, &[]);
    let appended = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, appended, stop) = (path.clone(), Arc::clone(&appended), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut writer = Writer::open(&path);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && writer.available() > 1024 {
                writer.append_now(format!("tick {i}").as_bytes()).unwrap();
                i += 1;
                appended.store(i, Ordering::Relaxed);
                if i.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        })
    };
    while appended.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    for _ in 0..10 {
        let before = appended.load(Ordering::Relaxed);
        let verify = run(&["verify", s(&path)]).ok().out();
        let count: u64 = verify.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(count >= before, "{verify}");
        let cat = run(&["cat", s(&path), "--format", "raw"]).ok();
        assert!(cat.lines().len() as u64 >= before);
        assert!(
            run(&["stat", s(&path)])
                .ok()
                .out()
                .contains("writer:        active")
        );
        run(&["tail", s(&path), "-n", "3"]).ok();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    run(&["verify", s(&path)]).ok();
}

#[test]
fn read_only_commands_leave_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = five(dir.path());
    let before = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    for args in [
        vec!["cat", s(&path)],
        vec![
            "cat",
            s(&path),
            "--format",
            "json",
            "--since",
            "2024-05-01T12:00:20Z",
        ],
        vec!["tail", s(&path)],
        vec!["stat", s(&path)],
        vec!["stat", s(&path), "--json"],
        vec!["verify", s(&path)],
    ] {
        run(&args).ok();
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

// ---------------------------------------------------------------------------- bench

#[test]
fn bench_runs_on_a_temporary_directory() {
    let result = run(&[
        "bench",
        "--events",
        "200",
        "--size",
        "64",
        "--repeats",
        "1",
        "--no-latency",
        "--json",
    ]);
    assert_eq!(result.code, 0, "{result:?}");
    let json = result.out();
    assert!(
        json.trim_start().starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(json.contains("\"events\": 200"), "{json}");
    assert!(json.contains("\"append\""), "{json}");
    // Progress is for terminals only; standard error here is a pipe.
    assert_eq!(result.stderr, "", "{result:?}");
}

#[test]
fn bench_many_compares_threads_with_the_single_writer() {
    let result = run(&[
        "bench",
        "--many",
        "--many-events",
        "3000",
        "--repeats",
        "1",
        "--no-latency",
    ]);
    assert_eq!(result.code, 0, "{result:?}");
    let out = result.out();
    for row in [
        "LogWriter  1 thread",
        "shared  1 thread",
        "shared  2 threads",
        "shared  4 threads",
        "processes  1 process",
        "processes  2 processes",
        "2 processes together: ",
    ] {
        assert!(out.contains(row), "{row}: {out}");
    }
    run(&["bench", "--many-events", "10"]).fails(2, &["--many"]);
    run(&["bench", "--many-retain", "4"]).fails(2, &["--many"]);
    run(&["bench", "--many", "--many-retain", "0"]).fails(2, &["--many-retain"]);
}

/// Several `evstream append` processes on one log at once, from standard input and
/// from arguments, all succeed: every line is in the log once, each process's lines in
/// their order, timestamps never decreasing. `--wait` asks for the log to itself: it
/// waits while a plain `append` has it, and a plain `append` is refused while it has it.
#[test]
fn several_appends_at_once_on_one_log_just_work() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app");
    run(&["create", s(&log), "--log", "--segment-size", "64KiB"]).ok();
    several_appends_at_once(&log, || {
        Box::new(evstream::LogWriter::open(&log).unwrap()) as Box<dyn std::any::Any>
    });
}

#[test]
fn several_appends_at_once_on_one_stream_file_just_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.evs");
    run(&["create", s(&path), "--capacity", "4MiB"]).ok();
    several_appends_at_once(&path, || {
        Box::new(evstream::StreamWriter::open(&path).unwrap()) as Box<dyn std::any::Any>
    });
    // The processes took turns through the files beside the stream.
    assert!(dir.path().join("app.evs.turn").is_file());
    run(&["verify", s(&path)]).ok();
}

/// Processes appending to the log or stream `log` at once, from standard input and
/// from arguments, all get in, each in its order; `--wait` keeps it to itself, and a
/// writer that keeps it to itself (made by `exclusive`) refuses a plain append.
fn several_appends_at_once(log: &Path, exclusive: impl FnOnce() -> Box<dyn std::any::Any>) {
    let lines = 3000;
    let children: Vec<Child> = {
        let _turn = forking();
        (0..4)
            .map(|k| {
                let mut child = evstream()
                    .args(["append", s(log)])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                std::thread::spawn(move || {
                    use std::io::Write;
                    for i in 0..lines {
                        writeln!(stdin, "w{k} {i}").unwrap();
                    }
                });
                child
            })
            .collect()
    };
    // Meanwhile, one event per argument from a few more processes.
    for k in 0..5 {
        run(&["append", s(log), &format!("arg{k}")]).ok();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let all = run(&["cat", s(log), "--format", "jsonl"]).ok().lines();
    assert_eq!(all.len(), 4 * lines + 5);
    let mut next = [0usize; 4];
    let mut args = 0;
    let mut previous = 0i64;
    for line in &all {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts: i64 = v["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(ts >= previous, "timestamps never decrease: {line}");
        previous = ts;
        let payload = v["payload"].as_str().unwrap();
        if let Some(rest) = payload.strip_prefix('w') {
            let (k, i) = rest.split_once(' ').unwrap();
            let (k, i): (usize, usize) = (k.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[k], "process {k}'s lines in order");
            next[k] += 1;
        } else {
            assert!(payload.starts_with("arg"), "{payload}");
            args += 1;
        }
    }
    assert_eq!((next, args), ([lines; 4], 5));

    // A plain append keeps the log while its input is open: --wait waits for it.
    let mut feeder = {
        let _turn = forking();
        evstream()
            .args(["append", s(log)])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    {
        use std::io::Write;
        let stdin = feeder.stdin.as_mut().unwrap();
        writeln!(stdin, "fed").unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    // Another writer shares it: the message does not say it keeps it to itself.
    let refused = run(&["append", s(log), "--wait=200ms", "alone"]).fails(1, &["locked", "waited"]);
    assert!(refused.stderr.contains("one that shares it"), "{refused:?}");
    drop(feeder.stdin.take());
    assert!(feeder.wait().unwrap().success());
    // Held by a writer that keeps it to itself, a plain append is refused.
    let writer = exclusive();
    run(&["append", s(log), "x"]).fails(1, &["locked by another writer", "--wait"]);
    {
        let _turn = forking();
        drop(writer);
    }
    run(&["append", s(log), "--wait=10s", "alone"]).ok();
    assert_eq!(
        run(&["tail", s(log), "-n", "1"])
            .ok()
            .out()
            .trim_end()
            .rsplit(' ')
            .next(),
        Some("alone")
    );
}

/// A log made with `create --log` takes `append`, and every reading command reads it
/// across its segments; `cat --cursor` resumes where the previous run stopped.
#[test]
fn every_command_takes_a_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app");
    let created = run(&[
        "create",
        s(&log),
        "--log",
        "--segment-size",
        "4KiB",
        "--roll",
        "hourly",
        "--retain-segments",
        "1000",
    ])
    .ok();
    assert!(created.out().contains("a log of 4 KiB"), "{created:?}");
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    run_with(&["append", s(&log), "--sync"], Some(lines.as_bytes())).ok();
    // Three events at a fixed time: the next hour starts a new segment.
    run(&[
        "append",
        s(&log),
        "--timestamp",
        "2099-01-01T00:59:59Z",
        "late",
    ])
    .ok();
    run(&[
        "append",
        s(&log),
        "--timestamp",
        "2099-01-01T01:00:00Z",
        "next hour",
    ])
    .ok();
    let all = run(&["cat", s(&log)]).ok().lines();
    assert_eq!(all.len(), 1002);
    assert!(all[0].ends_with(" line 0") && all[999].ends_with(" line 999"));
    let tail = run(&["tail", s(&log), "-n", "2"]).ok().lines();
    assert!(
        tail[0].ends_with(" late") && tail[1].ends_with(" next hour"),
        "{tail:?}"
    );
    let since = run(&["cat", s(&log), "--since", "2099-01-01T01:00:00Z"])
        .ok()
        .lines();
    assert_eq!(since.len(), 1);
    // Positions instead of offsets in JSON.
    let json = run(&["cat", s(&log), "-n", "1", "--format", "jsonl"])
        .ok()
        .out();
    assert!(json.starts_with("{\"position\":\"0:24\","), "{json}");
    // A cursor: two runs of 300 events each, then the lag.
    let first = run(&["cat", s(&log), "--cursor", "billing", "-n", "300"])
        .ok()
        .lines();
    let second = run(&["cat", s(&log), "--cursor", "billing", "-n", "300"])
        .ok()
        .lines();
    assert!(first[299].ends_with(" line 299") && second[0].ends_with(" line 300"));
    let stat = run(&["stat", s(&log)]).ok().out();
    assert!(stat.contains("events:        1002"), "{stat}");
    assert!(stat.contains("cursor:        billing at "), "{stat}");
    assert!(stat.contains("402 events"), "{stat}");
    let json = run(&["stat", s(&log), "--json"]).ok().out();
    assert!(json.contains("\"lag_events\":402"), "{json}");
    let verify = run(&["verify", s(&log)]).ok().out();
    assert!(
        verify.starts_with("ok: ") && verify.contains("1002 events"),
        "{verify}"
    );
}

/// A log's `stat --json` has what its text has: the times beside their timestamps (as a
/// stream's has them) and the roll and retention settings.
#[test]
fn a_logs_stat_json_has_its_times_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app");
    run(&[
        "create",
        s(&log),
        "--log",
        "--segment-size",
        "4KiB",
        "--roll",
        "hourly",
        "--retain-age",
        "1d",
        "--retain-segments",
        "3",
    ])
    .ok();
    run(&[
        "append",
        s(&log),
        "--timestamp",
        "2024-05-01T12:00:00Z",
        "a",
    ])
    .ok();
    let json = run(&["stat", s(&log), "--json"]).ok().out();
    for part in [
        "\"first_timestamp\":\"1714564800000000000\",\"first_time\":\"2024-05-01T12:00:00.000000000Z\"",
        "\"last_time\":\"2024-05-01T12:00:00.000000000Z\"",
        "\"roll_ns\":\"3600000000000\"",
        "\"retain_size\":null",
        "\"retain_age_ns\":\"86400000000000\"",
        "\"retain_segments\":3",
        "\"retain_past_cursors\":false",
    ] {
        assert!(json.contains(part), "{part} in {json}");
    }
}

/// `create --log` makes a log whose writers use lazy write-back unless `--write-back
/// eager` asks otherwise, as every later writer reads it from the log's settings; the
/// flag is refused for a stream file and for a policy that does not exist.
#[test]
fn create_chooses_a_logs_write_back_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |name: &str| {
        evstream::LogReader::open(dir.path().join(name))
            .unwrap()
            .options()
            .get_write_back()
    };
    run(&["create", s(&dir.path().join("lazy")), "--log"]).ok();
    assert_eq!(policy("lazy"), evstream::WriteBack::Lazy);
    let eager = dir.path().join("eager");
    run(&["create", s(&eager), "--log", "--write-back", "eager"]).ok();
    assert_eq!(policy("eager"), evstream::WriteBack::Eager);
    run(&["append", s(&eager), "one"]).ok();
    assert_eq!(policy("eager"), evstream::WriteBack::Eager);
    let other = dir.path().join("other");
    run(&["create", s(&other), "--log", "--write-back", "sometimes"]).fails(2, &["--write-back"]);
    // Settings of a log are refused for a stream file, which is then not created.
    let file = dir.path().join("s.evs");
    for [flag, value] in [
        ["--write-back", "eager"],
        ["--retain-segments", "2"],
        ["--segment-size", "8KiB"],
    ] {
        run(&["create", s(&file), "--capacity", "4096", flag, value]).fails(2, &[flag, "--log"]);
        assert!(!file.exists());
    }
    assert!(!other.exists());
}

#[test]
fn a_log_is_refused_where_it_makes_no_sense_and_a_plain_directory_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app");
    run(&["create", s(&log), "--log", "--segment-size", "4KiB"]).ok();
    run(&["create", s(&log), "--log"]).fails(1, &["already is a log"]);
    run(&["cat", s(&log), "--from-offset", "24"]).fails(2, &["is a log"]);
    let stream = stream(dir.path(), "one.evs", 4096, &[(NOON, b"x")]);
    run(&["cat", s(&stream), "--cursor", "c"]).fails(2, &["cursors belong to logs"]);
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    for command in ["cat", "tail", "stat", "verify"] {
        run(&[command, s(&plain)]).fails(1, &["is not a log"]);
    }
    run_with(&["append", s(&plain)], Some(b"x\n")).fails(1, &["is not a log"]);
    assert_eq!(
        std::fs::read_dir(&plain).unwrap().count(),
        0,
        "a command wrote into it"
    );
}

// ---------------------------------------------------------------------------- upgrade

#[test]
fn upgrade_converts_a_version_1_stream_and_refuses_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    // A version 1 stream: header and events, zeros to 8 KiB, no trailer.
    let path = dir.path().join("old.evs");
    let mut bytes = Vec::new();
    let mut writer =
        evstream::stdio::EventWriter::new(std::io::Cursor::new(&mut bytes), NOON).unwrap();
    writer.append(NOON, b"from version 1").unwrap();
    writer.finish().unwrap();
    bytes.resize(8192, 0);
    std::fs::write(&path, &bytes).unwrap();
    run(&["cat", s(&path)]).fails(1, &[s(&path), "evstream upgrade FILE"]);
    run(&["append", s(&path), "x"]).fails(1, &[s(&path), "not a stream file"]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let out = run(&["upgrade", s(&path)]).ok().out();
    assert!(out.contains("version 2"), "{out}");
    assert_eq!(
        run(&["cat", s(&path), "--format", "raw"]).ok().out(),
        "from version 1\n"
    );
    let again = run(&["upgrade", s(&path)]).ok().out();
    assert!(again.contains("nothing changed"), "{again}");
    // Not a stream: refused, unchanged.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, vec![b'x'; 4096]).unwrap();
    run(&["upgrade", s(&notes)]).fails(1, &[s(&notes)]);
    assert_eq!(std::fs::read(&notes).unwrap(), vec![b'x'; 4096]);
}

/// The cross-process latency bench, run tiny through the real binary: one row per rate
/// and strategy (and the async follower) with the events each run sent, the idle row, the
/// load, and nothing left in the temporary directory.
#[test]
fn bench_follow_latency_reports_every_rate_and_strategy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = evstream();
    command
        .args([
            "bench",
            "--follow-latency",
            "--rates",
            "1000,2000",
            "--run-seconds",
            "0.01",
            "--idle-seconds",
            "0.2",
        ])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null());
    let output = {
        let _turn = forking();
        command.output().unwrap()
    };
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(output.status.success(), "{output:?} {stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("Follower latency"), "{stdout}");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "rate/s",
            "achieved",
            "strategy",
            "events",
            "p50",
            "p99",
            "p99.9",
            "max",
            "CPU",
            "wakeups/s",
            "preempted"
        ]
    );
    let mut rows = Vec::new();
    for line in &lines[2..10] {
        let words: Vec<&str> = line.split_whitespace().collect();
        // "1.0 k 1.1 k block 10 58.3 us ..." (the achieved rate may lack the "k")
        let at = words
            .iter()
            .position(|w| ["block", "spin1000", "busy-spin", "async"].contains(w))
            .unwrap_or_else(|| panic!("no strategy in {line:?}"));
        rows.push((
            words[0].to_owned(),
            words[at].to_owned(),
            words[at + 1].to_owned(),
        ));
        assert!(line.contains('%'), "{line}");
    }
    assert_eq!(
        rows,
        [
            ("1.0".into(), "block".into(), "10".into()),
            ("1.0".into(), "spin1000".into(), "10".into()),
            ("1.0".into(), "busy-spin".into(), "10".into()),
            ("1.0".into(), "async".into(), "10".into()),
            ("2.0".into(), "block".into(), "20".into()),
            ("2.0".into(), "spin1000".into(), "20".into()),
            ("2.0".into(), "busy-spin".into(), "20".into()),
            ("2.0".into(), "async".into(), "20".into()),
        ]
    );
    assert!(
        lines[10].starts_with("Idle blocking follower: "),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Load average")),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// The hidden follower refuses a strategy it does not know, as a usage error.
#[test]
fn bench_follower_refuses_an_unknown_strategy() {
    run(&["bench-follower", "x.evs", "sometimes"]).fails(2, &["sometimes"]);
}

/// `tail --follow` on a log sleeps while nothing is appended (its wakeups counted by the
/// kernel), and prints a new event as soon as it is appended.
#[cfg(target_os = "linux")]
#[test]
fn tail_follow_on_a_log_sleeps_until_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app");
    run(&["create", "--log", s(&log)]).ok();
    let mut child = spawn(
        evstream()
            .args(["tail", "-n", "0", "--format", "raw", "--follow"])
            .arg(&log)
            .stdout(Stdio::piped()),
    );
    let done = watchdog(&child, Duration::from_secs(30));
    let switches = |pid: u32| -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|task| {
                let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
                let line = status
                    .lines()
                    .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                    .unwrap()
                    .to_owned();
                line.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    std::thread::sleep(Duration::from_millis(1000));
    let before = switches(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let wakeups = switches(child.id()) - before;
    assert!(
        wakeups <= 6,
        "an idle `tail --follow` of a log woke {wakeups} times in 2 s"
    );
    run(&["append", s(&log), "hello"]).ok();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "hello");
    done.store(true, Ordering::Relaxed);
    child.kill().unwrap();
    child.wait().unwrap();
}

// ---------------------------------------------------------------------------- cursors

const NAMES: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

/// A log at `dir/name` of 4 KiB segments holding `count` events, ten seconds apart from
/// NOON, the first five named by [`NAMES`] and the rest `event N`; all flushed.
fn log_of(dir: &Path, name: &str, count: usize) -> PathBuf {
    let path = dir.join(name);
    let options = evstream::LogOptions::default().segment_size(4096);
    let mut log = evstream::LogWriter::create(&path, options).unwrap();
    for i in 0..count {
        let payload = NAMES
            .get(i)
            .map_or_else(|| format!("event {i}"), |n| (*n).to_owned());
        log.append(NOON + i as i64 * 10 * SEC, payload.as_bytes())
            .unwrap();
    }
    log.flush().unwrap();
    let _turn = forking();
    drop(log);
    path
}

/// The payloads `cat --format raw ARGS` prints, one a line.
fn payloads(run: &Run) -> Vec<String> {
    run.lines()
}

/// `cat --cursor` with --until, -n, damage and a closed pipe: the cursor moves only past
/// events that were printed, so the next run starts with the first one not printed.
#[test]
fn cat_with_a_cursor_resumes_at_the_first_event_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), "app", 5);
    let cat = |extra: &[&str]| {
        let mut args = vec!["cat", s(&log), "--format", "raw", "--cursor", "c"];
        args.extend_from_slice(extra);
        payloads(&run(&args).ok())
    };
    // --until stops before the first event at or after it, which is not printed.
    assert_eq!(
        cat(&["--until", "2024-05-01T12:00:20Z"]),
        ["alpha", "bravo"]
    );
    assert_eq!(cat(&["-n", "1"]), ["charlie"]);
    assert_eq!(
        cat(&["--until", "2024-05-01T12:00:30Z"]),
        Vec::<String>::new()
    );
    assert_eq!(cat(&[]), ["delta", "echo"]);
    assert_eq!(cat(&[]), Vec::<String>::new());

    // Damage mid-way: what was printed before it is consumed, the damaged event is not.
    let damaged = log_of(dir.path(), "damaged", 5);
    let segment = damaged.join(
        std::fs::read_dir(&damaged)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.ends_with(".evs"))
            .unwrap(),
    );
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(5).position(|w| w == b"delta").unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let args = ["cat", s(&damaged), "--format", "raw", "--cursor", "d"];
    let first = run(&args).fails(1, &["corrupt", "3 events were printed before it"]);
    assert_eq!(payloads(&first), ["alpha", "bravo", "charlie"]);
    let again = run(&args).fails(1, &["corrupt", "0 events were printed before it"]);
    assert_eq!(payloads(&again), Vec::<String>::new());

    // A reader that closes the pipe after one line: the events never written to the
    // pipe are not consumed (those in the pipe when it closed count as printed: a pipe
    // does not say what its reader read).
    let big = log_of(dir.path(), "big", 50_000);
    let mut child = spawn(
        evstream()
            .args(["cat", "--format", "raw", "--cursor", "p"])
            .arg(&big)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "alpha");
    drop(lines);
    assert!(child.wait().unwrap().success());
    let rest = payloads(&run(&["cat", s(&big), "--format", "raw", "--cursor", "p"]).ok());
    assert!(rest.len() > 30_000, "{} events left", rest.len());
    assert_eq!(rest.last().unwrap(), "event 49999");
}

/// The pattern docs/CLI.md gives for a consumer that may stop: batches through a file,
/// removed once handled. A consumer that fails mid-batch (here the third time it is
/// asked, once) handles that batch again on the next run: every event is handled, in
/// order, the failed batch's events twice and no other event twice.
#[test]
fn a_cursor_batch_through_a_file_is_handled_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), "app", 2_500);
    let script = r#"
        cd "$1"
        handle() {
            n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs
            # The third batch is cut short the first time: half of it, then a failure.
            if [ "$n" = 2 ] && [ ! -e failed ]; then
                touch failed; head -n 50 >> handled; return 1
            fi
            cat >> handled
        }
        [ -s batch ] || "$0" cat "$2" --cursor billing --format raw -n 100 > batch
        [ -s batch ] || exit 3
        handle < batch && rm batch
    "#;
    let mut runs = 0;
    loop {
        let status = spawn(Command::new("sh").args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_evstream"),
            s(dir.path()),
            s(&log),
        ]))
        .wait()
        .unwrap();
        runs += 1;
        assert!(runs < 100, "the consumer ends");
        if status.code() == Some(3) {
            break;
        }
    }
    let handled = std::fs::read_to_string(dir.path().join("handled")).unwrap();
    let handled: Vec<&str> = handled.lines().collect();
    let all: Vec<String> = NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain((5..2_500).map(|i| format!("event {i}")))
        .collect();
    // Batches of 100: the third (events 200..300) was cut after 50, then handled whole.
    let mut expected: Vec<&str> = all[..250].iter().map(String::as_str).collect();
    expected.extend(all[200..].iter().map(String::as_str));
    assert_eq!(handled, expected);
}

// ---------------------------------------------------------------------------- errors

/// Messages say what they mean: a duration with a sign or too long for one says so
/// (not "needs a unit", not "outside the range of timestamps"), a time past the range
/// says it once, sizes have no ".0", one segment is not "1 segments", the operating
/// system's reason reads as part of the sentence, and a number where an evstream record
/// needs a time names the options that import it.
#[test]
fn messages_say_what_they_mean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    run(&["create", s(&path), "--capacity", "4KiB"]).ok();
    let since = run(&["cat", s(&path), "--since", "+9223372036854775807ns"]).fails(
        2,
        &["counted on from now, it is outside the range of timestamps"],
    );
    assert!(!since.stderr.contains("it is it is"), "{since:?}");
    run(&["append", s(&path), "--wait=-1s", "x"]).fails(2, &["\"-1s\" has a sign"]);
    let log = dir.path().join("lg");
    for args in [
        &["append", s(&path), "--wait=99999999999d", "x"][..],
        &["create", s(&log), "--log", "--roll", "99999999999d"],
        &[
            "create",
            s(&log),
            "--log",
            "--retain-age",
            "300000000000000000000ns",
        ],
    ] {
        let run = run(args).fails(2, &["is too long: a duration is at most 2^63 - 1 ns"]);
        assert!(!run.stderr.contains("range of timestamps"), "{run:?}");
    }
    let odd = dir.path().join("odd.evs");
    let created = run(&["create", s(&odd), "--capacity", "2047"]).ok();
    assert_eq!(
        created.out(),
        format!("created {}: capacity 2 KiB (2047 bytes)\n", s(&odd))
    );
    run(&[
        "create",
        s(&log),
        "--log",
        "--segment-size",
        "4KiB",
        "--retain-segments",
        "1",
    ])
    .ok();
    assert!(
        run(&["stat", s(&log)])
            .ok()
            .out()
            .contains("retention:     1 segment\n")
    );
    assert!(
        run(&["verify", s(&log)])
            .ok()
            .out()
            .contains("0 events in 1 segment,")
    );
    let long = dir.path().join("n".repeat(300));
    run(&["create", s(&long), "--capacity", "4KiB"]).fails(1, &[": file name too long"]);
    run_with(
        &["append", s(&path), "--format", "jsonl"],
        Some(b"{\"time\":1714564800,\"payload\":\"x\"}\n"),
    )
    .fails(
        1,
        &["bare number", "--time-field time --time-unit s|ms|us|ns"],
    );
}

/// Error lines say why: a log of a newer version names both versions, a locked log is
/// called a log, and the times people paste from `date +%z` or write relative to now
/// over the whole range are read.
#[test]
fn errors_say_why_and_times_people_write_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), "app", 5);

    // Held by a writer: the message names the log and says why.
    let writer = evstream::LogWriter::open(&log).unwrap();
    run(&["append", s(&log), "x"]).fails(
        1,
        &[
            &format!("{} is locked by another writer", log.display()),
            "keeps it to itself",
        ],
    );
    {
        let _turn = forking();
        drop(writer);
    }

    // Times: `+0200` offsets, and 2^63 ns back from now (which lands in the 1730s).
    let raw = |args: &[&str]| {
        let mut all = vec!["cat", s(&log), "--format", "raw"];
        all.extend_from_slice(args);
        payloads(&run(&all).ok())
    };
    assert_eq!(
        raw(&["--since", "2024-05-01T14:00:30+0200"]),
        ["delta", "echo"]
    );
    assert_eq!(raw(&["--until", "2024-05-01 14:00:10 +0200"]), ["alpha"]);
    assert_eq!(raw(&["--since=-9223372036854775808ns"]).len(), 5);

    // A log written by a newer evstream: both versions named, nothing changed.
    let settings = log.join("LOG");
    let text =
        std::fs::read_to_string(&settings)
            .unwrap()
            .replacen("evstream-log 1", "evstream-log 2", 1);
    std::fs::write(&settings, &text).unwrap();
    for command in ["cat", "stat", "verify", "tail"] {
        run(&[command, s(&log)]).fails(
            1,
            &[
                s(&log),
                "is a log of version 2",
                "this build reads log version 1",
            ],
        );
    }
    run(&["append", s(&log), "x"]).fails(1, &["is a log of version 2"]);
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);
}

/// `cursor list|show|set|delete`: positions, lag in events, bytes and time, a damaged
/// cursor flagged in place, `set` refusing what is not an event's start, and the cursor
/// `cat --cursor` resumes from.
#[test]
fn cursors_are_listed_shown_set_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), "app", 5);
    let l = s(&log);
    assert_eq!(
        run(&["cursor", "list", l]).ok().out().trim(),
        format!("{l}: no cursors")
    );
    run(&["cursor", "list", "--json", l]).ok();
    // --at a time: the first event at or after it.
    let set = run(&[
        "cursor",
        "set",
        l,
        "billing",
        "--at",
        "2024-05-01T12:00:15Z",
    ])
    .ok();
    assert!(
        set.out().contains("at 0:66, 3 events") && set.out().contains("20 s behind the newest"),
        "{set:?}"
    );
    let cat = |name: &str| {
        payloads(&run(&["cat", l, "--format", "raw", "--cursor", name, "-n", "1"]).ok())
    };
    assert_eq!(cat("billing"), ["charlie"]);
    // A position printed by `cat --format jsonl`, start and end.
    let json = run(&["cat", l, "--format", "jsonl"]).ok().lines();
    let second = json[1].split('"').nth(3).unwrap().to_owned();
    run(&["cursor", "set", l, "audit", &second]).ok();
    assert_eq!(cat("audit"), ["bravo"]);
    run(&["cursor", "set", l, "first", "start"]).ok();
    assert_eq!(cat("first"), ["alpha"]);
    run(&["cursor", "set", l, "last", "end"]).ok();
    assert_eq!(cat("last"), Vec::<String>::new());
    let show = run(&["cursor", "show", l, "last"]).ok().out();
    assert!(show.contains("caught up"), "{show}");
    let show = run(&["cursor", "show", l, "first", "--json"]).ok().out();
    assert!(
        show.contains("\"position\":\"0:45\"")
            && show.contains("\"lag_events\":4")
            && show.contains("\"lag_ns\":\"30000000000\"")
            && show.contains("\"damaged\":false"),
        "{show}"
    );

    // `set` checks the position before it commits, and changes nothing when it refuses.
    let before = run(&["cursor", "show", l, "audit"]).ok().out();
    let inside = format!(
        "0:{}",
        second.split(':').nth(1).unwrap().parse::<u64>().unwrap() + 1
    );
    run(&["cursor", "set", l, "audit", &inside]).fails(2, &["no event starts at position"]);
    run(&["cursor", "set", l, "audit", "0:4000"]).fails(1, &["not in the log"]);
    run(&["cursor", "set", l, "audit", "7:24"]).fails(1, &["not in the log"]);
    run(&["cursor", "set", l, "audit", "banana"]).fails(2, &["is not a position"]);
    run(&["cursor", "set", l, "audit"]).fails(2, &["POSITION"]);
    run(&["cursor", "set", l, "bad/name", "start"]).fails(2, &["a name is 1 to 64"]);
    assert_eq!(run(&["cursor", "show", l, "audit"]).ok().out(), before);

    // A damaged cursor file is flagged in the list, which still shows the others.
    std::fs::write(log.join("cursors").join("broken"), b"not a cursor").unwrap();
    let list = run(&["cursor", "list", l]).ok().lines();
    assert_eq!(list.len(), 5, "{list:?}");
    let broken = list.iter().find(|line| line.starts_with("broken")).unwrap();
    assert!(
        broken.contains("DAMAGED") && broken.contains("damaged"),
        "{broken}"
    );
    assert!(
        list.iter()
            .any(|line| line.starts_with("billing ") && line.contains("at 0:"))
    );
    let json = run(&["cursor", "list", l, "--json"]).ok().out();
    assert!(
        json.contains("\"name\":\"broken\",\"damaged\":true"),
        "{json}"
    );
    run(&["cursor", "show", l, "broken"]).fails(1, &["broken", "damaged"]);
    // ... and `set` replaces it.
    run(&["cursor", "set", l, "broken", "start"]).ok();

    // delete, then it is gone.
    run(&["cursor", "delete", l, "audit"]).ok();
    run(&["cursor", "delete", l, "audit"]).fails(1, &["has no cursor \"audit\""]);
    run(&["cursor", "show", l, "audit"]).fails(1, &["has no cursor"]);

    // Not a log.
    let missing = dir.path().join("missing");
    run(&["cursor", "list", s(&missing)]).fails(1, &["is not a log: it does not exist"]);
    let stream = stream(dir.path(), "one.evs", 4096, &[(NOON, b"x")]);
    run(&["cursor", "list", s(&stream)]).fails(1, &["is not a log"]);
}
