//! The `evstream` binary for everyday log work (issue 12): times as people write them,
//! exact copies through pipes, imports, templates, salvage, lock waiting, completions and
//! man pages, colour rules, and the bench's clean-up, each run as a user would run it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evstream::{StreamReader, StreamWriter};
use proptest::prelude::*;

mod support;

use support::*;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A stream with one event at NOON (2024) and two stamped by the clock just now.
fn old_and_new(dir: &Path) -> PathBuf {
    let path = stream(dir, "mixed.evs", 4096, &[(NOON, b"old")]);
    run(&["append", s(&path), "new 1", "new 2"]).ok();
    path
}

fn cat_raw(path: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["cat", s(path), "--format", "raw"];
    all.extend_from_slice(args);
    run(&all).ok().lines()
}

// ------------------------------------------------------------------------------- times

#[test]
fn unix_seconds_from_date_are_refused_bare_and_read_right_with_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_and_new(dir.path());
    let now_s = now_ns() / SEC + 1;
    let hour_ago_s = now_s - 3600;
    // `--until $(date +%s)` used to print nothing: seconds read as nanoseconds (1970).
    let bare = now_s.to_string();
    let refused = run(&["cat", s(&path), "--until", &bare]).fails(
        2,
        &[
            &format!("{bare}s"),
            &format!("@{bare}"),
            "bare number",
            "Accepted forms",
            "RFC 3339",
        ],
    );
    assert!(refused.stdout.is_empty());
    run(&["tail", s(&path), "--since", &bare]).fails(2, &["bare number"]);
    run(&["append", s(&path), "--timestamp", &bare, "x"]).fails(2, &["bare number"]);
    assert_eq!(
        events_of(&path).len(),
        3,
        "a refused append appends nothing"
    );

    let until = format!("{now_s}s");
    assert_eq!(
        cat_raw(&path, &["--until", &until]),
        ["old", "new 1", "new 2"]
    );
    let at = format!("@{now_s}");
    assert_eq!(cat_raw(&path, &["--until", &at]), ["old", "new 1", "new 2"]);
    // `--since $(date -d '1 hour ago' +%s)` used to return everything.
    let since = format!("{hour_ago_s}s");
    assert_eq!(cat_raw(&path, &["--since", &since]), ["new 1", "new 2"]);
    let since_ms = format!("{}ms", hour_ago_s * 1000);
    assert_eq!(cat_raw(&path, &["--since", &since_ms]), ["new 1", "new 2"]);
    let since_us = format!("{}us", hour_ago_s * 1_000_000);
    assert_eq!(cat_raw(&path, &["--since", &since_us]), ["new 1", "new 2"]);
    let since_ns = format!("{}ns", hour_ago_s * SEC);
    assert_eq!(cat_raw(&path, &["--since", &since_ns]), ["new 1", "new 2"]);
}

#[test]
fn relative_times_and_words_are_read_against_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_and_new(dir.path());
    assert_eq!(cat_raw(&path, &["--since", "-1h"]), ["new 1", "new 2"]);
    assert_eq!(cat_raw(&path, &["--since", "-15m"]), ["new 1", "new 2"]);
    assert_eq!(
        cat_raw(&path, &["--since", "1h30m ago"]),
        ["new 1", "new 2"]
    );
    assert_eq!(cat_raw(&path, &["--until", "-1h"]), ["old"]);
    assert_eq!(cat_raw(&path, &["--since", "today"]), ["new 1", "new 2"]);
    assert_eq!(
        cat_raw(&path, &["--since", "yesterday", "--until", "tomorrow"]),
        ["new 1", "new 2"]
    );
    assert_eq!(
        cat_raw(&path, &["--until", "now"]),
        ["old", "new 1", "new 2"]
    );
    assert_eq!(cat_raw(&path, &["--since", "+1m"]), Vec::<String>::new());
    assert_eq!(
        cat_raw(&path, &["--since", "@1714564800"]),
        ["old", "new 1", "new 2"]
    );
    assert_eq!(
        cat_raw(&path, &["--until", "@1714564800"]),
        Vec::<String>::new()
    );
    // tail takes --since too.
    let tail = run(&["tail", s(&path), "--since", "-1h", "--format", "raw"]).ok();
    assert_eq!(tail.lines(), ["new 1", "new 2"]);
    // A duration without a sign is not a time.
    run(&["cat", s(&path), "--since", "15m"]).fails(2, &["-15m"]);
    // --timestamp takes the same forms.
    run(&["append", s(&path), "--timestamp", "now", "stamped now"]).ok();
    let last = events_of(&path).last().unwrap().0;
    assert!((now_ns() - last).abs() < 60 * SEC, "{last}");
}

#[test]
fn local_prints_and_reads_times_in_the_system_zone() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(
        dir.path(),
        "a.evs",
        4096,
        &[(NOON, b"noon"), (NOON + 3 * 3600 * SEC, b"later")],
    );
    let mut command = evstream();
    command.env("TZ", "<+0230>-2:30");
    let local = run_command(command, &["cat", s(&path), "--local", "-n", "1"], None).ok();
    assert_eq!(local.lines(), ["2024-05-01T14:30:00.000000000+02:30 noon"]);
    // UTC by default, with the same TZ.
    let mut command = evstream();
    command.env("TZ", "<+0230>-2:30");
    let utc = run_command(command, &["cat", s(&path), "-n", "1"], None).ok();
    assert_eq!(utc.lines(), ["2024-05-01T12:00:00.000000000Z noon"]);
    // A time without an offset is read in the zone: 15:00 local is 12:30 UTC.
    let mut command = evstream();
    command.env("TZ", "<+0230>-2:30");
    let since = run_command(
        command,
        &[
            "--local",
            "cat",
            s(&path),
            "--since",
            "2024-05-01T15:00:00",
            "--format",
            "raw",
        ],
        None,
    )
    .ok();
    assert_eq!(since.lines(), ["later"]);
    assert_eq!(
        cat_raw(&path, &["--since", "2024-05-01T15:00:00"]),
        ["later"]
    );
    assert_eq!(
        cat_raw(&path, &["--since", "2024-05-01T12:00:01"]),
        ["later"]
    );
    // stat and the template's {time} follow --local too.
    let mut command = evstream();
    command.env("TZ", "<+0230>-2:30");
    let stat = run_command(command, &["stat", s(&path), "--local"], None).ok();
    assert!(
        stat.out()
            .contains("first event:   2024-05-01T14:30:00.000000000+02:30"),
        "{stat:?}"
    );
}

// -------------------------------------------------------------------- exact copies

/// 1796079682060287931 is the issue's example: jq 1.6 and JavaScript round it.
const BIG: i64 = 1_796_079_682_060_287_931;

#[test]
fn jsonl_carries_timestamps_as_exact_strings_and_copies_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let events: &[(i64, &[u8])] = &[
        (BIG, b"text"),
        (BIG, b""),
        (BIG + 1, b"\xff\x00\xfe not utf-8"),
        (BIG + 2, b"line\nbreaks\r\n\"quotes\" \\ \x01 \xc3\xa9"),
    ];
    let src = stream(dir.path(), "src.evs", 4096, events);
    for format in ["jsonl", "json"] {
        let out = run(&["cat", s(&src), "--format", format]).ok().out();
        assert!(
            out.contains("\"timestamp\":\"1796079682060287931\""),
            "{out}"
        );
        assert!(
            out.contains("\"payload_base64\":\"/wD+IG5vdCB1dGYtOA==\""),
            "{out}"
        );
        assert_eq!(out.lines().count(), 4, "one record a line: {out}");
    }
    let jsonl = run(&["cat", s(&src), "--format", "jsonl"]).ok().stdout;
    let dst = dir.path().join("dst.evs");
    run_with_bytes(
        &["append", s(&dst), "--format", "jsonl", "--create"],
        &jsonl,
    )
    .ok();
    assert_eq!(events_of(&dst), events_of(&src));

    let binary = run(&["cat", s(&src), "--format", "binary"]).ok().stdout;
    // The binary framing is the stream's own: the events region of the file, exactly.
    let file = std::fs::read(&src).unwrap();
    let end = StreamReader::open(&src).unwrap().write_offset() as usize;
    assert_eq!(binary, file[24..end]);
    let copy = dir.path().join("copy.evs");
    run_with_bytes(
        &["append", s(&copy), "--format", "binary", "--create"],
        &binary,
    )
    .ok();
    assert_eq!(events_of(&copy), events_of(&src));
}

#[test]
fn raw_copies_lose_timestamps_which_the_docs_no_longer_promise() {
    let dir = tempfile::tempdir().unwrap();
    let src = stream(
        dir.path(),
        "src.evs",
        4096,
        &[(NOON, b"a"), (NOON + 1, b"b")],
    );
    let raw = run(&["cat", s(&src), "--format", "raw"]).ok().stdout;
    let dst = dir.path().join("dst.evs");
    run_with_bytes(&["append", s(&dst), "--create"], &raw).ok();
    let copied = events_of(&dst);
    assert_eq!(copied.len(), 2);
    assert_ne!(copied[0].0, NOON, "raw carries payloads only");
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CLI.md")).unwrap();
    assert!(
        !docs.contains("copies a stream of line events"),
        "docs/CLI.md still promises raw copies"
    );
}

#[test]
fn damaged_copy_input_is_refused_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let dst = stream(dir.path(), "dst.evs", 4096, &[]);
    let good = format!("{{\"timestamp\":\"{NOON}\",\"payload\":\"ok\"}}\n");
    for (input, says) in [
        (
            format!("{good}not json\n"),
            "standard input record 2: not valid JSON",
        ),
        (
            format!("{good}{{\"timestamp\":\"12x\",\"payload\":\"\"}}\n"),
            "not Unix nanoseconds",
        ),
        (
            format!("{good}{{\"timestamp\":\"1\",\"payload_base64\":\"!!!!\"}}\n"),
            "not base64",
        ),
        (
            format!("{good}{{\"timestamp\":\"{NOON}\"}}\n"),
            "--time-field",
        ),
        (
            format!("{good}{{\"timestamp\":\"{NOON}\",\"payload\":\"ab\",\"size\":3}}\n"),
            "\"size\" 3",
        ),
        (
            format!("{good}{{\"timestamp\":\"1\",\"payload\":\"early\"}}\n"),
            "earlier than the last event",
        ),
    ] {
        let before = events_of(&dst).len();
        run_with_bytes(&["append", s(&dst), "--format", "jsonl"], input.as_bytes())
            .fails(1, &[says, "1 event was appended before it"]);
        assert_eq!(events_of(&dst).len(), before + 1);
    }
    // A truncated binary frame: the complete events go in, then the error.
    let src = stream(
        dir.path(),
        "src.evs",
        4096,
        &[(NOON, b"one"), (NOON, b"two")],
    );
    let binary = run(&["cat", s(&src), "--format", "binary"]).ok().stdout;
    let cut = stream(dir.path(), "cut.evs", 4096, &[]);
    run_with_bytes(
        &["append", s(&cut), "--format", "binary"],
        &binary[..binary.len() - 1],
    )
    .fails(1, &["ends inside an event frame", "1 event was appended"]);
    let mut flipped = binary.clone();
    flipped[17] ^= 1;
    let bad = stream(dir.path(), "bad.evs", 4096, &[]);
    run_with_bytes(&["append", s(&bad), "--format", "binary"], &flipped).fails(
        1,
        &[
            "not an evstream event frame",
            "checksum",
            "nothing was appended",
        ],
    );
    assert!(events_of(&bad).is_empty());
}

fn arb_stream() -> impl Strategy<Value = Vec<(i64, Vec<u8>)>> {
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~\u{e9}\u{2028}\n\t\"\\\\]{0,40}".prop_map(String::into_bytes),
    ];
    (
        any::<i64>(),
        proptest::collection::vec((0..=u32::MAX as i64, payload), 0..24),
    )
        .prop_map(|(start, events)| {
            let mut timestamp = start.min(i64::MAX - (u32::MAX as i64) * 24);
            events
                .into_iter()
                .map(|(step, payload)| {
                    timestamp += step % 3 * step;
                    (timestamp, payload)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// `cat --format jsonl | append --format jsonl` (and the binary framing) copies any
    /// stream's events byte for byte, timestamps included.
    #[test]
    fn jsonl_and_binary_round_trip_random_streams(events in arb_stream()) {
        let dir = tempfile::tempdir().unwrap();
        let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        let src = stream(dir.path(), "src.evs", 8192, &borrowed);
        for format in ["jsonl", "binary"] {
            let out = run(&["cat", s(&src), "--format", format]).ok().stdout;
            let dst = dir.path().join(format!("{format}.evs"));
            run_with_bytes(&["append", s(&dst), "--format", format, "--create", "--capacity", "8KiB"], &out).ok();
            prop_assert_eq!(&events_of(&dst), &events);
        }
    }
}

// ------------------------------------------------------------------------------ import

#[test]
fn json_lines_import_takes_the_time_from_a_named_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "app.evs", 4096, &[]);
    let input = b"{\"ts\":\"2024-05-01T12:00:00Z\",\"level\":\"info\",\"msg\":\"up\"}\n\
{\"ts\":\"2024-05-01T14:00:01+02:00\",\"level\":\"warn\",\"msg\":{\"disk\":91}}\n";
    run_with_bytes(
        &[
            "append",
            s(&path),
            "--format",
            "jsonl",
            "--time-field",
            "ts",
        ],
        input,
    )
    .ok();
    let lines: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        events_of(&path),
        [(NOON, lines[0].to_vec()), (NOON + SEC, lines[1].to_vec())],
        "the payload is the record's line as it was"
    );
    let second = stream(dir.path(), "msg.evs", 4096, &[]);
    run_with_bytes(
        &[
            "append",
            s(&second),
            "--format",
            "jsonl",
            "--time-field",
            "ts",
            "--payload-field",
            "msg",
        ],
        input,
    )
    .ok();
    assert_eq!(
        events_of(&second),
        [
            (NOON, b"up".to_vec()),
            (NOON + SEC, b"{\"disk\":91}".to_vec())
        ]
    );
    // Numbers need their unit; with it, they are exact.
    let numeric = b"{\"t\":1714564800123,\"m\":1}\n{\"t\":1714564800.5,\"m\":2}\n";
    let third = stream(dir.path(), "num.evs", 4096, &[]);
    run_with_bytes(
        &[
            "append",
            s(&third),
            "--format",
            "jsonl",
            "--time-field",
            "t",
        ],
        numeric,
    )
    .fails(
        1,
        &[
            "standard input record 1",
            "bare number",
            "--time-unit",
            "nothing was appended",
        ],
    );
    run_with_bytes(
        &[
            "append",
            s(&third),
            "--format",
            "jsonl",
            "--time-field",
            "t",
            "--time-unit",
            "ms",
        ],
        &numeric[..numeric.iter().position(|&b| b == b'\n').unwrap() + 1],
    )
    .ok();
    assert_eq!(events_of(&third)[0].0, NOON + 123_000_000);
    let fourth = stream(dir.path(), "sec.evs", 4096, &[]);
    run_with_bytes(
        &[
            "append",
            s(&fourth),
            "--format",
            "jsonl",
            "--time-field",
            "t",
            "--time-unit",
            "s",
        ],
        &numeric[numeric.iter().position(|&b| b == b'\n').unwrap() + 1..],
    )
    .ok();
    assert_eq!(events_of(&fourth)[0].0, NOON + 500_000_000);
    // A missing field names the record.
    run_with_bytes(
        &[
            "append",
            s(&fourth),
            "--format",
            "jsonl",
            "--time-field",
            "nope",
        ],
        b"{\"t\":1}\n",
    )
    .fails(1, &["standard input record 1", "no field \"nope\""]);
}

/// A JSON time written as a number with a fraction is exact to the nanosecond in every
/// unit: it is read from its own digits, not rounded through a floating-point number
/// (`1714564800.123456789` s was `...123456700`), written out or with an exponent; a
/// number stored as the payload keeps its digits too.
#[test]
fn a_fractional_json_time_is_exact_in_every_unit() {
    let dir = tempfile::tempdir().unwrap();
    // Timestamps with every digit used, in order, and their text in each unit.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut stamps: Vec<i64> = (0..200)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            NOON + (state >> 16) as i64 % (1_000_000 * SEC)
        })
        .collect();
    stamps.sort_unstable();
    for (unit, scale) in [("s", SEC), ("ms", 1_000_000), ("us", 1_000), ("ns", 1)] {
        let digits = scale.to_string().len() - 1;
        let text = |t: i64| {
            let (whole, fraction) = (t / scale, t % scale);
            if digits == 0 {
                whole.to_string()
            } else {
                format!("{whole}.{fraction:0digits$}")
            }
        };
        let mut input = String::new();
        for (i, t) in stamps.iter().enumerate() {
            let number = text(*t);
            // Every other one with an exponent: 1.714564800123456789e9.
            let number = if i % 2 == 1 {
                let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
                format!(
                    "{}.{}{fraction}e{}",
                    &whole[..1],
                    &whole[1..],
                    whole.len() - 1
                )
            } else {
                number
            };
            input.push_str(&format!("{{\"t\":{number},\"v\":{number}}}\n"));
        }
        let path = stream(dir.path(), &format!("{unit}.evs"), 1 << 20, &[]);
        run_with_bytes(
            &[
                "append",
                s(&path),
                "--format",
                "jsonl",
                "--time-field",
                "t",
                "--time-unit",
                unit,
                "--payload-field",
                "v",
            ],
            input.as_bytes(),
        )
        .ok();
        let events = events_of(&path);
        let got: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
        assert_eq!(got, stamps, "--time-unit {unit}");
        for (line, (_, payload)) in input.lines().zip(&events) {
            let written = line.split(",\"v\":").nth(1).unwrap().trim_end_matches('}');
            assert_eq!(
                String::from_utf8_lossy(payload),
                written,
                "--time-unit {unit}"
            );
        }
    }
}

#[test]
fn csv_import_reads_a_header_and_a_named_time_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "app.evs", 4096, &[]);
    let input = b"time,level,message\n\
2024-05-01T12:00:00Z,info,\"started, all good\"\n\
2024-05-01T12:00:02Z,error,\"two\nlines\"\n";
    run_with_bytes(
        &[
            "append",
            s(&path),
            "--format",
            "csv",
            "--time-field",
            "time",
        ],
        input,
    )
    .ok();
    assert_eq!(
        events_of(&path),
        [
            (NOON, br#"{"level":"info","message":"started, all good","time":"2024-05-01T12:00:00Z"}"#.to_vec()),
            (NOON + 2 * SEC, b"{\"level\":\"error\",\"message\":\"two\\nlines\",\"time\":\"2024-05-01T12:00:02Z\"}".to_vec()),
        ]
    );
    let msgs = stream(dir.path(), "msgs.evs", 4096, &[]);
    run_with_bytes(
        &[
            "append",
            s(&msgs),
            "--format",
            "csv",
            "--time-field",
            "time",
            "--payload-field",
            "message",
        ],
        input,
    )
    .ok();
    assert_eq!(
        events_of(&msgs)[1],
        (NOON + 2 * SEC, b"two\nlines".to_vec())
    );
    // A date is a time, not a number, with or without --time-unit.
    let dated = stream(dir.path(), "dated.evs", 4096, &[]);
    let args = [
        "append",
        s(&dated),
        "--format",
        "csv",
        "--time-field",
        "day",
    ];
    run_with_bytes(
        &[&args[..], &["--time-unit", "s"]].concat(),
        b"day,v\n2024-05-01,x\n",
    )
    .ok();
    assert_eq!(events_of(&dated)[0].0, NOON - 12 * 3600 * SEC);
    let epoch = stream(dir.path(), "epoch.evs", 4096, &[]);
    run_with_bytes(
        &[
            "append",
            s(&epoch),
            "--format",
            "csv",
            "--time-field",
            "at",
            "--time-unit",
            "us",
        ],
        b"at,v\n1714564800000001,x\n",
    )
    .ok();
    assert_eq!(
        events_of(&epoch),
        [(
            NOON + 1000,
            b"{\"at\":\"1714564800000001\",\"v\":\"x\"}".to_vec()
        )]
    );
    // Usage and data errors.
    run_with_bytes(&["append", s(&path), "--format", "csv"], input).fails(2, &["--time-field"]);
    run_with_bytes(
        &[
            "append",
            s(&path),
            "--format",
            "csv",
            "--time-field",
            "when",
        ],
        input,
    )
    .fails(1, &["no column \"when\"", "time, level, message"]);
    run_with_bytes(
        &[
            "append",
            s(&path),
            "--format",
            "csv",
            "--time-field",
            "time",
        ],
        b"time,x\n2024-05-01,1,2\n",
    )
    .fails(1, &["standard input record 1", "CSV"]);
    run(&["append", s(&path), "--time-field", "time", "payload"]).fails(2, &[]);
    run_with_bytes(
        &[
            "append",
            s(&path),
            "--format",
            "binary",
            "--time-field",
            "time",
        ],
        b"",
    )
    .fails(2, &["--time-field"]);
}

// ---------------------------------------------------------------------------- templates

#[test]
fn templates_print_fields_like_kcat_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(
        dir.path(),
        "a.evs",
        4096,
        &[(NOON, b"hi there"), (NOON + 1, b"\xff")],
    );
    let out = run(&[
        "cat",
        s(&path),
        "--template",
        "{time} {offset} {payload}\\n",
    ])
    .ok();
    assert_eq!(
        out.stdout,
        b"2024-05-01T12:00:00.000000000Z 24 hi there\n2024-05-01T12:00:00.000000001Z 48 \xff\n"
    );
    let out = run(&[
        "tail",
        s(&path),
        "-n",
        "1",
        "--template",
        "{timestamp}|{size}|{hex}|{base64}|{json}|{text}\\t{{x}}\\n",
    ])
    .ok();
    assert_eq!(
        out.out(),
        "1714564800000000001|1|ff|/w==|\"/w==\"|\\xff\t{x}\n"
    );
    let out = run(&["cat", s(&path), "-n", "1", "--template", "{payload}"]).ok();
    assert_eq!(
        out.stdout, b"hi there",
        "no newline unless the template has one"
    );
    run(&["cat", s(&path), "--template", "{nope}"])
        .fails(2, &["unknown placeholder {nope}", "{payload}"]);
    run(&["cat", s(&path), "--template", "{time}", "--format", "jsonl"])
        .fails(2, &["cannot be used with"]);
}

#[test]
fn cat_n_is_the_first_events_and_tail_n_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..5)
        .map(|i| (NOON + i * SEC, format!("e{i}").into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let path = stream(dir.path(), "a.evs", 4096, &borrowed);
    assert_eq!(cat_raw(&path, &["-n", "2"]), ["e0", "e1"]);
    assert_eq!(cat_raw(&path, &["--lines", "2"]), ["e0", "e1"]);
    assert_eq!(cat_raw(&path, &["--limit", "2"]), ["e0", "e1"]);
    for flag in ["-n", "--lines", "--limit"] {
        let tail = run(&["tail", s(&path), flag, "2", "--format", "raw"]).ok();
        assert_eq!(tail.lines(), ["e3", "e4"], "{flag}");
    }
    let tail = run(&[
        "tail",
        s(&path),
        "-n",
        "3",
        "--since",
        "2024-05-01T12:00:03Z",
        "--format",
        "raw",
    ])
    .ok();
    assert_eq!(tail.lines(), ["e3", "e4"]);
}

// ------------------------------------------------------------------------------ salvage

#[test]
fn salvage_copies_what_is_readable_and_reports_each_damaged_range() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..6)
        .map(|i| (NOON + i * SEC, format!("event {i}").into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let src = stream(dir.path(), "src.evs", 4096, &borrowed);
    // Each event is 16 + 7 = 23 bytes: event i starts at 24 + 23 i.
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[24 + 23 + 20] ^= 0x40; // a payload byte of event 1
    for b in &mut bytes[24 + 23 * 3 + 4..24 + 23 * 3 + 12] {
        *b = 0xff; // the size and checksum of event 3
    }
    std::fs::write(&src, &bytes).unwrap();
    run(&["verify", s(&src)]).fails(1, &["corrupt at byte offset 47"]);

    let dst = dir.path().join("dst.evs");
    let out = run(&["salvage", s(&src), s(&dst)]).ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(
        lines[0].starts_with("damaged: byte offset 47, 23 B skipped: checksum mismatch"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("damaged: byte offset 93, 23 B skipped: "),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("salvaged 4 events"), "{lines:?}");
    assert!(
        lines[2].contains("skipped 2 damaged ranges (46 B)"),
        "{lines:?}"
    );
    assert_eq!(out.stderr, "", "no progress bar off a terminal");
    let kept: Vec<_> = [0, 2, 4, 5].iter().map(|&i| events[i].clone()).collect();
    assert_eq!(events_of(&dst), kept);
    run(&["verify", s(&dst)]).ok();
    assert_eq!(
        std::fs::read(&src).unwrap(),
        bytes,
        "the source is never changed"
    );
    assert_eq!(
        std::fs::metadata(&dst).unwrap().len(),
        4096,
        "DST has SRC's capacity"
    );

    // DST must be new; SRC must hold something readable.
    run(&["salvage", s(&src), s(&dst)]).fails(1, &["already exists"]);
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some words that are not a stream at all").unwrap();
    let nothing = dir.path().join("nothing.evs");
    // Its header's write offset ("just som") is out of range: a note, then the error.
    let refused = run(&["salvage", s(&text), s(&nothing)]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{refused:?}");
    assert!(
        lines[0].starts_with("note: ") && lines[0].contains("whole file"),
        "{refused:?}"
    );
    for words in [
        "error: ",
        "no readable event",
        "not a stream file",
        "was not created",
    ] {
        assert!(lines[1].contains(words), "{words:?}: {refused:?}");
    }
    assert!(!nothing.exists());
    run(&["salvage", s(dir.path()), s(&nothing)]).fails(1, &["directory"]);
    run(&["salvage", s(&src), s(&nothing), "--capacity", "10"]).fails(2, &["at least"]);
}

#[test]
fn salvage_scans_the_whole_file_when_the_header_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let src = stream(
        dir.path(),
        "src.evs",
        4096,
        &[(NOON, b"one"), (NOON + 1, b"two")],
    );
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&src, &bytes).unwrap();
    run(&["cat", s(&src)]).fails(1, &["not a stream file"]);
    let dst = dir.path().join("dst.evs");
    let out = run(&["salvage", s(&src), s(&dst), "--capacity", "4KiB"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "note: {}: the header's write offset 18446744073709551615 is out of range; \
             scanning the whole file\n",
            src.display()
        )
    );
    // The zeroed free space after the events is not damage.
    assert_eq!(out.lines().len(), 1, "{out:?}");
    assert_eq!(
        events_of(&dst),
        [(NOON, b"one".to_vec()), (NOON + 1, b"two".to_vec())]
    );
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 4096);
}

// ----------------------------------------------------------------- writer-lock patience

#[test]
fn append_waits_for_the_writer_lock_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = stream(dir.path(), "a.evs", 4096, &[]);
    let writer = StreamWriter::open(&path).unwrap();
    run(&["append", s(&path), "x"]).fails(1, &["locked by another writer", "--wait"]);
    let started = Instant::now();
    run(&["append", s(&path), "--wait=300ms", "x"]).fails(1, &["locked", "waited"]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Waiting without a limit: the append goes in once the writer closes.
    let mut child = evstream()
        .args(["append", s(&path), "--wait", "patient"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "it waits");
    drop(writer);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(events_of(&path).len(), 1);
    assert_eq!(events_of(&path)[0].1, b"patient");
    run(&["append", s(&path), "--wait=soon", "x"]).fails(2, &["soon"]);
}

#[test]
fn append_create_makes_a_missing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.evs");
    run(&["append", s(&path), "x"]).fails(1, &["no such file"]);
    run(&["append", s(&path), "--capacity", "1MiB", "x"]).fails(2, &["--create"]);
    run(&["append", s(&path), "--create", "--capacity", "8KiB", "x"]).ok();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    // An existing stream is appended to, never replaced.
    run(&["append", s(&path), "--create", "--capacity", "1MiB", "y"]).ok();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    assert_eq!(events_of(&path).len(), 2);
    let default = dir.path().join("default.evs");
    run(&["append", s(&default), "--create", "x"]).ok();
    assert_eq!(std::fs::metadata(&default).unwrap().len(), 64 << 20);
    // Two processes racing to create the same stream both append to the one stream.
    let raced = dir.path().join("raced.evs");
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|payload| {
            spawn(
                evstream()
                    .args([
                        "append",
                        s(&raced),
                        "--create",
                        "--capacity",
                        "8KiB",
                        "--wait",
                    ])
                    .arg(payload)
                    .stdin(Stdio::null()),
            )
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let mut payloads: Vec<Vec<u8>> = events_of(&raced).into_iter().map(|(_, p)| p).collect();
    payloads.sort();
    assert_eq!(payloads, [b"a".to_vec(), b"b".to_vec()]);
    // A dangling symbolic link is neither followed nor replaced, and nothing loops.
    let link = dir.path().join("link.evs");
    std::os::unix::fs::symlink(dir.path().join("nowhere.evs"), &link).unwrap();
    let started = Instant::now();
    run(&["append", s(&link), "--create", "x"]).fails(1, &["link.evs", "symbolic link"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(!dir.path().join("nowhere.evs").exists());
    // A bad import is refused before anything is created.
    let never = dir.path().join("never.evs");
    run_with_bytes(
        &["append", s(&never), "--create", "--format", "csv"],
        b"a\n",
    )
    .fails(2, &[]);
    assert!(!never.exists());
}

// ---------------------------------------------------------- completions and man pages

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]).ok().out();
        for word in [
            "evstream",
            "salvage",
            "--since",
            "--template",
            "jsonl",
            "cursor",
        ] {
            assert!(out.contains(word), "{shell}: {word} missing");
        }
    }
    run(&["completions", "tcsh"]).fails(2, &["tcsh"]);
    let page = run(&["man"]).ok().out();
    assert!(
        page.starts_with(".ie") || page.contains(".TH evstream 1"),
        "{page}"
    );
    assert!(
        page.contains("salvage") && page.contains("\\-\\-local"),
        "{page}"
    );
    let cat = run(&["man", "cat"]).ok().out();
    assert!(
        cat.contains(".TH evstream-cat 1") && cat.contains("\\-\\-template"),
        "{cat}"
    );
    run(&["man", "frobnicate"]).fails(2, &["not an evstream command"]);
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", s(dir.path())]).ok();
    for page in [
        "evstream.1",
        "evstream-cat.1",
        "evstream-salvage.1",
        "evstream-append.1",
        "evstream-cursor.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    run(&["man", "--dir", s(&dir.path().join("missing"))]).fails(1, &["cannot write manual pages"]);
}

// ------------------------------------------------------------------------------ colour

#[test]
fn every_error_line_follows_one_colour_rule() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.evs");
    let cases: [&[&str]; 2] = [&["cat", s(&missing)], &["cat", s(&missing), "--bogus"]];
    for args in cases {
        // Not a terminal: plain.
        let plain = run(args);
        assert!(plain.stderr.starts_with("error:"), "{plain:?}");
        assert!(!plain.stderr.contains('\x1b'), "{plain:?}");
        // Forced: coloured, usage errors and file errors alike.
        let mut forced = evstream();
        forced.env("CLICOLOR_FORCE", "1");
        let coloured = run_command(forced, args, None);
        assert!(
            coloured.stderr.starts_with("\x1b[1m\x1b[31merror:\x1b[0m "),
            "{coloured:?}"
        );
        // NO_COLOR wins.
        let mut both = evstream();
        both.env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1");
        let plain = run_command(both, args, None);
        assert!(
            plain.stderr.starts_with("error:") && !plain.stderr.contains('\x1b'),
            "{plain:?}"
        );
    }
}

// ------------------------------------------------------------------------------- bench

#[test]
fn bench_refuses_zero_events() {
    let run = run(&["bench", "--events", "0"]).fails(2, &["--events", "at least 1 event"]);
    assert!(run.stdout.is_empty());
}

#[test]
fn bench_log_refuses_fewer_bytes_than_one_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for bytes in ["0", "100", "1039"] {
        let run = run(&["bench", "--log", "--log-bytes", bytes, "--dir", dir])
            .fails(2, &["--log-bytes", "give at least 1040"]);
        assert!(run.stdout.is_empty());
    }
    for bytes in ["1", "1039"] {
        let args = ["bench", "--log", "--large-log", bytes, "--dir", dir];
        let run = run(&args).fails(2, &["--large-log", "give at least 1040"]);
        assert!(run.stdout.is_empty());
    }
    let args = ["bench", "--log", "--steady-bytes", "1039", "--dir", dir];
    let refused = run(&args).fails(2, &["--steady-bytes", "at least 1040"]);
    assert!(refused.stdout.is_empty());
    let args = ["bench", "--log", "--steady-only", "--steady-bytes", "0"];
    let refused = run(&args).fails(2, &["--steady-only", "nothing to run"]);
    assert!(refused.stdout.is_empty());
    // Nothing was written.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// A log bench in a given directory works in a directory of its own there: files that
/// another run left under the names it uses inside do not stop it, and it leaves
/// nothing of its own behind.
#[test]
fn bench_log_in_a_given_directory_cleans_up_and_ignores_other_runs_files() {
    let tmp = tempfile::tempdir().unwrap();
    // What an earlier run of the same process id could have left.
    std::fs::create_dir(tmp.path().join("large-0")).unwrap();
    std::fs::create_dir(tmp.path().join("log-0")).unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = [
        "bench",
        "--log",
        "--log-bytes",
        "64KiB",
        "--repeats",
        "1",
        "--no-latency",
        "--steady-bytes",
        "0",
        "--large-log",
        "64KiB",
        "--dir",
        dir,
    ];
    let run = run(&args).ok();
    assert!(run.out().contains("Large log"), "{run:?}");
    let mut left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["large-0", "log-0"]);
}

#[test]
fn bench_removes_its_temporary_directory_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = evstream();
    command
        .args([
            "bench",
            "--events",
            "200000",
            "--size",
            "1024",
            "--repeats",
            "50",
        ])
        .env("TMPDIR", tmp.path());
    interrupt_once_files_appear(command, tmp.path());
}

/// A log bench interrupted by Ctrl-C leaves nothing in the directory it was given.
#[test]
fn bench_log_removes_its_files_from_the_given_directory_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = evstream();
    command.args([
        "bench",
        "--log",
        "--log-bytes",
        "2GiB",
        "--no-latency",
        "--dir",
    ]);
    command.arg(tmp.path());
    interrupt_once_files_appear(command, tmp.path());
}

/// Starts `command`, a bench whose run directory will appear in `dir`, sends it SIGINT
/// once that directory holds a file, and checks that it exits as interrupted leaving
/// `dir` empty.
fn interrupt_once_files_appear(mut command: Command, dir: &Path) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let bench_dir = loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("evstream-bench-")
            });
        if let Some(entry) = found
            && std::fs::read_dir(entry.path()).unwrap().next().is_some()
        {
            break entry.path();
        }
        assert!(Instant::now() < deadline, "the bench never wrote a file");
        std::thread::sleep(Duration::from_millis(5));
    };
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    assert!(
        !bench_dir.exists(),
        "{} is left behind",
        bench_dir.display()
    );
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
}

/// Runs `evstream ARGS` with `stdin`.
fn run_with_bytes(args: &[&str], stdin: &[u8]) -> Run {
    run_with(args, Some(stdin))
}

// ------------------------------------------------------------------------ progress bars

/// Runs `evstream ARGS` on a pseudo-terminal (util-linux `script`), returning what the
/// terminal showed (standard output and standard error together).
fn on_terminal(args: &[&str]) -> String {
    let mut line = String::from(env!("CARGO_BIN_EXE_evstream"));
    for arg in args {
        line.push_str(" '");
        line.push_str(arg);
        line.push('\'');
    }
    let output = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs a command on a pseudo-terminal");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn long_commands_show_progress_on_a_terminal_and_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let payload = vec![b'x'; 1000];
    let events: Vec<(i64, &[u8])> = (0..16384).map(|i| (i, payload.as_slice())).collect();
    let src = stream(dir.path(), "src.evs", 32 << 20, &events);
    let dst = dir.path().join("dst.evs");
    let shown = on_terminal(&["salvage", s(&src), s(&dst)]);
    assert!(
        shown.contains("salvaging ["),
        "no bar on the terminal: {shown:?}"
    );
    assert!(shown.contains("salvaged 16384 events"), "{shown:?}");
    // The same command off a terminal: the report alone, nothing on standard error.
    let again = dir.path().join("again.evs");
    let quiet = run(&["salvage", s(&src), s(&again)]).ok();
    assert_eq!(quiet.lines().len(), 1, "{quiet:?}");
    assert!(!quiet.out().contains("salvaging"));

    // An import from a file of 16 MiB or more.
    let jsonl = run(&["cat", s(&src), "--format", "jsonl"]).ok().stdout;
    assert!(jsonl.len() >= 16 << 20);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, &jsonl).unwrap();
    let imported = dir.path().join("imported.evs");
    let line = format!(
        "{} append {} --create --capacity 32MiB --format jsonl < {}",
        env!("CARGO_BIN_EXE_evstream"),
        s(&imported),
        s(&input)
    );
    let shown = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("appending ["),
        "no bar on the terminal: {shown:?}"
    );
    assert_eq!(events_of(&imported), events_of(&src));
}

#[test]
fn salvage_copies_a_damaged_log_segment_by_segment() {
    use evstream::{LogOptions, LogReader, LogWriter};

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.log");
    let mut writer = LogWriter::create(&src, LogOptions::default().segment_size(4096)).unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..400)
        .map(|i| (NOON + i * SEC, format!("log event {i:04}").into_bytes()))
        .collect();
    for (t, p) in &events {
        writer.append(*t, p).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let segments = LogReader::open(&src).unwrap().segment_files().unwrap();
    assert!(
        segments.len() >= 3,
        "the log rolled: {} segments",
        segments.len()
    );
    // Flip a payload byte of the second event of the second segment: each event is
    // 16 + 14 = 30 bytes, so that event starts at 24 + 30.
    let (_, damaged) = &segments[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    bytes[24 + 30 + 20] ^= 0x01;
    std::fs::write(damaged, &bytes).unwrap();
    let before: Vec<Vec<u8>> = segments
        .iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect();

    let dst = dir.path().join("rescued.log");
    let out = run(&["salvage", s(&src), s(&dst)]).ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].starts_with(&format!(
            "damaged: {} byte offset 54, 30 B skipped: checksum mismatch",
            damaged.display()
        )),
        "the damaged range names its segment: {lines:?}"
    );
    assert!(lines[1].starts_with("salvaged 399 events"), "{lines:?}");

    let rescued: Vec<(i64, Vec<u8>)> = LogReader::open(&dst)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect();
    let first_of_second = {
        let reader = evstream::StreamReader::open(&segments[1].1).unwrap();
        let first = reader.iter().next().unwrap().unwrap().timestamp();
        events.iter().position(|(t, _)| *t == first).unwrap()
    };
    let mut kept = events.clone();
    kept.remove(first_of_second + 1);
    assert_eq!(rescued, kept, "every event but the damaged one, in order");
    run(&["verify", s(&dst)]).ok();
    let after: Vec<Vec<u8>> = segments
        .iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "the source log is never changed");

    run(&[
        "salvage",
        s(&src),
        s(&dir.path().join("x.log")),
        "--capacity",
        "1MiB",
    ])
    .fails(2, &["--capacity is for stream files"]);
}

/// `salvage` of a log whose writer appends with retention, so that segments it listed
/// are deleted (or recycled) before it gets to them: it passes over those, as `verify`
/// does, and copies the rest, every one intact.
#[test]
fn salvage_of_a_log_whose_retention_deletes_segments_meanwhile_copies_the_rest() {
    use evstream::{LogOptions, LogReader, LogWriter};
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.log");
    let options = LogOptions::default()
        .segment_size(4096)
        .retain_segments(Some(3));
    let mut writer = LogWriter::create(&src, options).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let appending = scope.spawn(|| {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    writer
                        .append(NOON + i, format!("live event {i:08}").as_bytes())
                        .unwrap();
                    i += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        // In steady state first: retention deleting a segment at each roll.
        let reader = LogReader::open(&src).unwrap();
        while reader.stat().unwrap().first_segment < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let runs: Vec<(PathBuf, Run)> = (0..12)
            .map(|k| {
                let dst = dir.path().join(format!("rescued-{k}.log"));
                let out = run(&["salvage", s(&src), s(&dst)]);
                (dst, out)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        appending.join().unwrap();
        for (k, (dst, out)) in runs.iter().enumerate() {
            assert_eq!(out.code, 0, "salvage {k} failed: {out:?}");
            let lines = out.lines();
            assert!(
                lines.len() == 1 && lines[0].contains("skipped 0 damaged ranges"),
                "salvage {k} reported damage in an intact log: {lines:?}"
            );
            let copy = LogReader::open(dst).unwrap().verify().unwrap();
            assert!(copy.is_ok() && copy.events > 0, "{copy:?}");
        }
    });
}

/// A salvage happens whatever becomes of its report on standard output: closed before
/// the first line (`| head -n 0`), it stops quietly with DST made and status 0; failing
/// (`> /dev/full`), DST is made and the command exits 1 with the summary on its error
/// line; damaged source or intact.
#[test]
fn a_salvage_is_made_whatever_becomes_of_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..100)
        .map(|i| (NOON + i * SEC, format!("event {i:03}").into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let intact = stream(dir.path(), "intact.evs", 64 << 10, &borrowed);
    let damaged = stream(dir.path(), "damaged.evs", 64 << 10, &borrowed);
    // A payload byte of event 2 (each event is 16 + 9 bytes).
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[24 + 2 * 25 + 20] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    for (src, salvaged) in [(&intact, 100), (&damaged, 99)] {
        let closed = dir.path().join(format!("closed-{salvaged}.evs"));
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = spawn(
            evstream()
                .args(["salvage", s(src), s(&closed)])
                .stdout(writer)
                .stderr(Stdio::piped()),
        )
        .wait_with_output()
        .unwrap();
        let ran = from(output);
        assert_eq!((ran.code, ran.stderr.as_str()), (0, ""), "{ran:?}");
        assert_eq!(events_of(&closed).len(), salvaged, "closed: DST is made");

        let full = dir.path().join(format!("full-{salvaged}.evs"));
        let dev_full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = spawn(
            evstream()
                .args(["salvage", s(src), s(&full)])
                .stdout(dev_full)
                .stderr(Stdio::piped()),
        )
        .wait_with_output()
        .unwrap();
        from(output).fails(
            1,
            &[
                "cannot write to standard output: no space left on device",
                "the salvage itself completed",
                &format!("salvaged {salvaged} events"),
                s(&full),
            ],
        );
        assert_eq!(events_of(&full).len(), salvaged, "failing: DST is made");
    }
}

/// A stream cut short (its last bytes, the trailer, gone) is salvaged without
/// `--capacity`: DST's default capacity holds every event found; a `--capacity` too small
/// for them is refused with the capacity that would do.
#[test]
fn a_truncated_stream_is_salvaged_whole_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..150)
        .map(|i| (NOON + i * SEC, format!("{i}").into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = events.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let src = stream(dir.path(), "s.evs", 4096, &borrowed);
    // The events that end within the first 2000 bytes survive the cut.
    let whole = StreamReader::open(&src)
        .unwrap()
        .iter()
        .map(|e| e.unwrap())
        .take_while(|e| e.offset() + 16 + e.payload().len() as u64 <= 2000)
        .count();
    let file = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    file.set_len(2000).unwrap();
    drop(file);
    let dst = dir.path().join("s-rescued.evs");
    let out = run(&["salvage", s(&src), s(&dst)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(events_of(&dst), events[..whole], "every event found");
    run(&["verify", s(&dst)]).ok();
    let small = dir.path().join("small.evs");
    let refused = run(&["salvage", s(&src), s(&small), "--capacity", "1536"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    // A note that the header's write offset is out of range (the cut), then the error.
    let error = refused.stderr.lines().last().unwrap();
    for words in ["is full", "a larger --capacity (3 KiB", "was not created"] {
        assert!(error.contains(words), "{words:?} in {refused:?}");
    }
    assert!(!small.exists());
}

/// The events of the log at `path`, read through the `evstream` binary.
fn log_lines(path: &Path) -> Vec<String> {
    cat_raw(path, &[])
}

/// A salvaged log holds every event salvaged, and keeps them when it is written to
/// later: the source's retention (held back by a cursor, which is not copied) is not
/// applied to the copy, by segment count or by age.
#[test]
fn a_salvaged_log_keeps_every_event_it_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    for (name, limit, stamp) in [
        ("kept", ["--retain-segments", "2"], "now"),
        ("aged", ["--retain-age", "1d"], "2024-05-01T12:00:00Z"),
    ] {
        let src = dir.path().join(name);
        let mut create = vec!["create", s(&src), "--log", "--segment-size", "4KiB"];
        create.extend_from_slice(&limit);
        run(&create).ok();
        // A cursor at the start holds every segment past the limit.
        run(&["cursor", "set", s(&src), "slow", "start"]).ok();
        run_with(
            &["append", s(&src), "--timestamp", stamp],
            Some(lines.as_bytes()),
        )
        .ok();
        let source = log_lines(&src);
        assert_eq!(source.len(), 2000, "{name}: the cursor held retention");

        let dst = dir.path().join(format!("{name}-rescued"));
        let out = run(&["salvage", s(&src), s(&dst)]).ok();
        assert!(out.out().starts_with("salvaged 2000 events"), "{out:?}");
        assert_eq!(log_lines(&dst), source, "{name}: every salvaged event");
        run(&["verify", s(&dst)]).ok();
        // A writer opened on the copy later applies its settings: nothing is deleted.
        run(&["append", s(&dst), "--timestamp", "now", "after"]).ok();
        let after = log_lines(&dst);
        assert_eq!(after.len(), 2001, "{name}: the copy keeps its events");
        assert_eq!(after[..2000], source[..]);
        let stat = run(&["stat", s(&dst)]).ok().out();
        assert!(
            stat.contains("retention:     none (keeps everything)"),
            "{name}: no retention limit: {stat}"
        );
    }
}

/// A long name (up to 250 bytes, where its turn files `NAME.turn` still fit) works like
/// any other: `create`, `append` shared, with `--wait` and with `--create` (arguments or
/// standard input), `salvage` to it; the temporary names these make are shortened to fit
/// and none is left behind.
#[test]
fn long_names_work_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    for len in [222, 223, 230, 250] {
        let name = |c: char| dir.path().join(c.to_string().repeat(len));
        let made = name('k');
        run(&["create", s(&made), "--capacity", "4KiB"]).ok();
        run(&["append", s(&made), "a"]).ok();
        run(&["append", s(&made), "--wait", "b"]).ok();
        run_with(&["append", s(&made)], Some(b"c\n")).ok();
        assert_eq!(cat_raw(&made, &[]), ["a", "b", "c"], "{len}");
        let by_arguments = name('a');
        run(&[
            "append",
            s(&by_arguments),
            "--create",
            "--capacity",
            "4KiB",
            "x",
        ])
        .ok();
        let by_input = name('i');
        run_with(&["append", s(&by_input), "--create"], Some(b"y\n")).ok();
        let salvaged = name('s');
        let out = run(&["salvage", s(&made), s(&salvaged)]).ok();
        assert!(out.out().starts_with("salvaged 3 events"), "{out:?}");
        assert_eq!(cat_raw(&by_arguments, &[]), ["x"]);
        assert_eq!(cat_raw(&by_input, &[]), ["y"]);
        assert_eq!(cat_raw(&salvaged, &[]), ["a", "b", "c"]);
        run(&["create", s(&made), "--capacity", "4KiB"]).fails(1, &["already exists"]);
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no temporary is left");
}

/// A stream whose name is 251 to 255 bytes long has no room for turn files
/// (`NAME.turn`), so no process can take turns on it: `append` keeps it to itself.
#[test]
fn a_name_too_long_for_turn_files_is_appended_to_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n".repeat(251));
    run(&["create", s(&path), "--capacity", "4KiB"]).ok();
    run(&["append", s(&path), "a"]).ok();
    run(&["append", s(&path), "--wait", "b"]).ok();
    assert_eq!(cat_raw(&path, &[]), ["a", "b"]);
}

// ------------------------------------------------------------------ interrupted outputs

/// Flips the first byte of every `odd:` payload in the files of `path` (a stream file, or
/// a log's segment files): every other event then fails its checksum.
fn damage_odd_events(path: &Path) {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "evs"))
            .collect()
    } else {
        vec![path.to_owned()]
    };
    for file in files {
        let mut bytes = std::fs::read(&file).unwrap();
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(4).position(|w| w == b"odd:") {
            bytes[at + found] = b'O';
            at += found + 4;
        }
        std::fs::write(&file, bytes).unwrap();
    }
}

/// The payload of event `i` for [`damage_odd_events`].
fn odd_or_even(i: u64) -> Vec<u8> {
    format!("{}:{i:08}", if i % 2 == 1 { "odd" } else { "even" }).into_bytes()
}

/// The `.NAME.PID.partial` temporaries beside `path`.
fn partials(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", path.file_name().unwrap().to_str().unwrap());
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(&prefix) && name.ends_with(".partial")
        })
        .collect()
}

/// Waits until the output is being written (under its temporary name, or its own), for
/// up to 30 s.
fn wait_for_partial(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while partials(path).is_empty() && path.symlink_metadata().is_err() {
        assert!(
            Instant::now() < deadline,
            "no temporary for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// `salvage` (of a stream and of a log) and `append --create` from a pipe, interrupted by
/// Ctrl-C or killed mid-copy: nothing appears under the output's name, so no partial
/// copy can pass for a whole one; Ctrl-C also removes the temporary, a kill leaves it
/// hidden until the next run for that name removes it, and an uninterrupted run then
/// makes the whole output.
#[test]
fn interrupted_copies_never_appear_under_their_name() {
    let dir = tempfile::tempdir().unwrap();
    // Sources with a damaged event every other event: salvage reports each on standard
    // output, which nobody reads here, so it blocks mid-copy when the pipe is full.
    let events = 20_000u64;
    let stream_src = dir.path().join("src.evs");
    {
        let mut writer = Writer::create(&stream_src, 4 << 20);
        for i in 0..events {
            writer.append(NOON + i as i64, &odd_or_even(i)).unwrap();
        }
        writer.flush().unwrap();
    }
    damage_odd_events(&stream_src);
    let log_src = dir.path().join("src-log");
    {
        let options = evstream::LogOptions::default().segment_size(64 << 10);
        let mut log = evstream::LogWriter::create(&log_src, options).unwrap();
        for i in 0..events {
            log.append(NOON + i as i64, &odd_or_even(i)).unwrap();
        }
        log.flush().unwrap();
        let _turn = forking();
        drop(log);
    }
    damage_odd_events(&log_src);

    for signal in ["INT", "KILL"] {
        for (kind, src) in [("stream", &stream_src), ("log", &log_src)] {
            let dst = dir.path().join(format!("rescued-{kind}-{signal}"));
            let mut child = spawn(
                evstream()
                    .args(["salvage", s(src), s(&dst)])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
            );
            wait_for_partial(&dst);
            interrupt(&mut child, signal, &dst);
            // The next run for the name removes what a kill left, and makes it whole.
            let whole = run(&["salvage", s(src), s(&dst)]).ok().out();
            assert!(whole.contains("salvaged 10000 events"), "{whole}");
            assert!(partials(&dst).is_empty(), "{:?}", partials(&dst));
            run(&["verify", s(&dst)]).ok();
        }

        // `append --create` from a pipe that is still open: mid-copy for certain.
        let dst = dir.path().join(format!("appended-{signal}.evs"));
        let mut child = spawn(
            evstream()
                .args(["append", s(&dst), "--create", "--capacity", "1MiB"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, b"one\ntwo\nthree\n").unwrap();
        wait_for_partial(&dst);
        interrupt(&mut child, signal, &dst);
        drop(input);
        run_with(
            &["append", s(&dst), "--create", "--capacity", "1MiB"],
            Some(b"one\ntwo\nthree\n"),
        )
        .ok();
        assert_eq!(events_of(&dst).len(), 3);
        assert!(partials(&dst).is_empty());
    }

    // A failure mid-way (here the stream is full) creates nothing either.
    let full = dir.path().join("full.evs");
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    run_with(
        &["append", s(&full), "--create", "--capacity", "4096"],
        Some(lines.as_bytes()),
    )
    .fails(1, &["is full", "full.evs was not created"]);
    assert!(!full.exists() && partials(&full).is_empty());
}

/// Sends `signal` to `child`, and checks that it stopped on it leaving nothing under
/// `dst` (and, after Ctrl-C, no temporary either).
fn interrupt(child: &mut std::process::Child, signal: &str, dst: &Path) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(
        dst.symlink_metadata().is_err(),
        "{} exists after SIG{signal}",
        dst.display()
    );
    if signal == "INT" {
        assert_eq!(status.code(), Some(130), "{status:?}");
        assert!(partials(dst).is_empty(), "{:?}", partials(dst));
    } else {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}

/// Every file under `dir` (names and bytes), sorted by name.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

/// `cat --follow` and `tail --follow` stopped with Ctrl-C, the way the help says to stop
/// them, while they wait for events on a stream file and on a log: each exits with status
/// 130 and no message, and leaves every file byte for byte as it was. A follower that
/// waits counts itself in the file's waiter word, and a process ended by the signal left
/// that count one too high for good (each later append then paid a wake-up call for a
/// follower that was gone). A `cat --cursor` stopped so keeps the commit it made before
/// waiting: the events it printed.
#[test]
fn ctrl_c_ends_a_follow_and_leaves_the_files_as_they_were() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let stream = stream(dir.path(), "followed.evs", 64 << 10, &[(NOON, b"first")]);
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "8KiB"]).ok();
    run(&["append", s(&log), "--timestamp", "@1714564800", "first"]).ok();
    let cases: [&[&str]; 5] = [
        &["cat", s(&stream), "--follow"],
        &["tail", s(&stream), "-n", "1", "--follow"],
        &["cat", s(&log), "--follow"],
        &["tail", s(&log), "-n", "1", "--follow"],
        &["cat", s(&log), "--follow", "--cursor", "reader"],
    ];
    for args in cases {
        let before = files_under(dir.path());
        let mut child = spawn(
            evstream()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.ends_with(" first\n"), "{args:?}: {line:?}");
        // Printed, so past the events: now it waits for more.
        std::thread::sleep(Duration::from_millis(300));
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = Instant::now();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(130), "{args:?}: {output:?}");
        assert!(output.stderr.is_empty(), "{args:?}: {output:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{args:?}");
        let mut after = files_under(dir.path());
        if args.contains(&"--cursor") {
            let cursor = log.join("cursors").join("reader");
            after.retain(|(path, _)| *path != cursor);
            let show = run(&["cursor", "show", s(&log), "reader"]).ok();
            assert!(show.out().contains("caught up"), "{show:?}");
        }
        assert!(before == after, "{args:?} changed a file");
    }
    // Started with Ctrl-C ignored (as a script's background job is), it keeps ignoring it.
    let mut ignoring = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' INT; exec {} cat {} --follow",
                env!("CARGO_BIN_EXE_evstream"),
                s(&stream)
            ))
            .stdout(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let sent = Command::new("kill")
        .args(["-INT", &ignoring.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        ignoring.try_wait().unwrap().is_none(),
        "it stopped on SIGINT"
    );
    ignoring.kill().unwrap();
    ignoring.wait().unwrap();
}

/// `create --log` on a directory that already is a log, or that holds a log's segments
/// without its `LOG` file, says so, and changes nothing. It used to pass on the words for
/// a file in the way, naming the first segment: "…/00000000-….evs already exists; choose
/// another name or remove it first", advice that deletes the log's oldest events.
#[test]
fn create_over_a_log_says_it_is_a_log_and_never_to_remove_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app-log");
    run(&["create", s(&log), "--log", "--segment-size", "8KiB"]).ok();
    run(&["append", s(&log), "kept"]).ok();
    let before = files_under(dir.path());
    let refused = run(&["create", s(&log), "--log"]).fails(1, &["app-log already is a log"]);
    assert!(!refused.stderr.contains("remove"), "{refused:?}");
    assert!(before == files_under(dir.path()));

    std::fs::remove_file(log.join("LOG")).unwrap();
    let before = files_under(dir.path());
    let refused = run(&["create", s(&log), "--log"]).fails(
        1,
        &["app-log already holds a log's segments (its LOG settings file is missing)"],
    );
    assert!(!refused.stderr.contains("remove"), "{refused:?}");
    assert!(before == files_under(dir.path()));

    // A create cut short before its first segment left only LOG: no log's events are in
    // the way, and LOG is named as the file that is.
    let cut = dir.path().join("cut-short");
    run(&["create", s(&cut), "--log", "--segment-size", "8KiB"]).ok();
    for entry in std::fs::read_dir(&cut).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "LOG" {
            std::fs::remove_file(path).unwrap();
        }
    }
    let before = files_under(dir.path());
    let refused = run(&["create", s(&cut), "--log"]).fails(1, &["cut-short/LOG already exists"]);
    assert!(!refused.stderr.contains("is a log"), "{refused:?}");
    assert!(before == files_under(dir.path()));
}

/// A JSON Lines record whose field holds a string with a lone surrogate escape
/// (`"\ud800"`, which no Unicode text has) is refused, naming the field, and nothing is
/// appended. Such a `timestamp` or `time` was taken as missing, and the record appended
/// at the wall clock's time instead of its own; a `payload` was reported missing.
#[test]
fn a_json_field_that_is_no_unicode_text_is_refused_not_taken_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.evs");
    run(&["create", s(&path), "--capacity", "64KiB"]).ok();
    let records: [(&str, &[&str]); 5] = [
        (
            r#"{"timestamp":"1714564800000000000\ud800","payload":"x"}"#,
            &["jsonl"],
        ),
        (
            r#"{"time":"2024-05-01T12:00:00Z\udc00","payload":"x"}"#,
            &["jsonl"],
        ),
        (
            r#"{"timestamp":"1714564800000000000","payload":"\ud800"}"#,
            &["jsonl"],
        ),
        (
            r#"{"at":"2024-05-01T12:00:00Z\ud800","v":1}"#,
            &["jsonl", "--time-field", "at"],
        ),
        (
            r#"{"at":"2024-05-01T12:00:00Z","v":"\ud800"}"#,
            &["jsonl", "--time-field", "at", "--payload-field", "v"],
        ),
    ];
    for (record, format) in records {
        let mut args = vec!["append", s(&path), "--format"];
        args.extend_from_slice(format);
        let input = format!("{record}\n");
        run_with(&args, Some(input.as_bytes())).fails(
            1,
            &["record 1", "is not valid JSON", "nothing was appended"],
        );
        assert!(events_of(&path).is_empty(), "{record}");
    }
}

/// Runs `evstream ARGS` with no input; `None` if it has not ended after `limit` (it is
/// then killed).
fn run_within(args: &[&str], limit: Duration) -> Option<Run> {
    let mut child = spawn(
        evstream()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(from(child.wait_with_output().unwrap()))
}

/// A log whose `LOCK` file is a FIFO: every command ends on its own. `stat`, `cat`,
/// `tail`, `verify`, `append` and the cursor commands opened `LOCK` for reading (to see
/// whether a writer holds it, and which boot wrote it) with a plain open, which on a FIFO
/// waits for a writer to its other end: each of them hung for good.
#[test]
fn a_log_whose_lock_file_is_a_fifo_never_hangs_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "8KiB"]).ok();
    run(&["append", s(&log), "--timestamp", "@1714564800", "first"]).ok();
    let lock = log.join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&lock)
            .status()
            .unwrap()
            .success()
    );
    let log = s(&log);
    let commands: [&[&str]; 9] = [
        &["stat", log],
        &["stat", log, "--json"],
        &["cat", log],
        &["tail", log, "-n", "1"],
        &["verify", log],
        &["cursor", "set", log, "reader", "start"],
        &["cursor", "list", log],
        &["cat", log, "--cursor", "reader"],
        &["append", log, "--timestamp", "@1714564801", "second"],
    ];
    for args in commands {
        let run = run_within(args, Duration::from_secs(10));
        let run = run.unwrap_or_else(|| panic!("{args:?} did not end"));
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let all = run(&["cat", log, "--format", "raw"]).ok();
    assert_eq!(all.lines(), ["first", "second"]);
}

/// `cursor set` to a position before a segment's first event or past its last, in a
/// segment before the newest, names the log's end. It named the end of that segment as
/// the log's ("position 0:0 is not in the log (it ends at 0:4072)" in a log that goes on
/// to segment 3), and the library's `NoSuchPosition::end`, documented as the log's end,
/// held the segment's.
#[test]
fn a_position_outside_a_segment_is_refused_naming_the_logs_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "4KiB"]).ok();
    let lines: String = (0..600).map(|i| format!("{i}\n")).collect();
    run_with(&["append", s(&log)], Some(lines.as_bytes())).ok();
    let stat = run(&["stat", s(&log), "--json"]).ok().out();
    let end = stat
        .split("\"end\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no end in {stat}"))
        .to_owned();
    assert!(!end.starts_with("0:"), "the log is one segment: {end}");
    for position in ["0:0", "0:23", "0:99999", "1:0"] {
        run(&["cursor", "set", s(&log), "reader", position]).fails(
            1,
            &[
                &format!("position {position} is not in the log"),
                &format!("the log ends at {end})"),
            ],
        );
    }
    let Err(evstream::Error::NoSuchPosition { end: reported, .. }) =
        evstream::LogReader::open(&log)
            .unwrap()
            .iter_from("0:0".parse().unwrap())
    else {
        panic!("0:0 is no position of the log");
    };
    assert_eq!(reported.to_string(), end);
}

/// `stat` of a stream that takes no more events says it is (nearly) 100% full. Fill was
/// the write offset over the file's size, which counts the trailer (the last 1 KiB or
/// more, never events): a full 1.5 KiB stream read 32.6%, a full 4 KiB one 75%, so a
/// check such as `jq '.fill_percent > 90'` never fired for small streams.
#[test]
fn a_full_stream_is_reported_nearly_100_percent_full() {
    let dir = tempfile::tempdir().unwrap();
    for capacity in ["1536", "4KiB", "8191"] {
        let path = dir.path().join(format!("full-{capacity}.evs"));
        run(&["create", s(&path), "--capacity", capacity]).ok();
        let lines: String = (0..2000).map(|i| format!("{i}\n")).collect();
        run_with(&["append", s(&path)], Some(lines.as_bytes())).fails(1, &["is full"]);
        // Empty events until not even one fits.
        while run(&["append", s(&path), ""]).code == 0 {}
        run(&["append", s(&path), ""]).fails(1, &["is full"]);
        let json = run(&["stat", s(&path), "--json"]).ok().out();
        let fill: f64 = json
            .split("\"fill_percent\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((97.0..=100.0).contains(&fill), "{capacity}: {json}");
        let text = run(&["stat", s(&path)]).ok().out();
        assert!(
            text.contains(&format!("fill:          {fill:.2}%")),
            "{text}"
        );
    }
}

/// `create --log --retain-past-cursors`, the flag CLI.md names for a log whose limits
/// win over its cursors, makes such a log: its retention deletes a segment a cursor has
/// not read, says which cursor lost events, and `stat` shows the setting. There was no
/// such flag: the command refused it as an unexpected argument.
#[test]
fn a_log_whose_limits_win_over_its_cursors_is_made_with_retain_past_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&[
        "create",
        s(&log),
        "--log",
        "--segment-size",
        "4KiB",
        "--retain-segments",
        "2",
        "--retain-past-cursors",
    ])
    .ok();
    run(&["cursor", "set", s(&log), "slow", "start"]).ok();
    let lines: String = (0..1000).map(|i| format!("{i}\n")).collect();
    let append = run_with(&["append", s(&log)], Some(lines.as_bytes()));
    assert_eq!(append.code, 0, "{append:?}");
    assert!(
        append.stderr.contains("cursor slow (at 0:24) lost"),
        "{append:?}"
    );
    let stat = run(&["stat", s(&log)]).ok().out();
    assert!(
        stat.contains("retention:     2 segments, also past cursors"),
        "{stat}"
    );
    assert!(stat.contains("segments:      2 ("), "{stat}");
    let json = run(&["stat", s(&log), "--json"]).ok().out();
    assert!(json.contains("\"retain_past_cursors\":true"), "{json}");
    // A stream file has no retention.
    let stream = dir.path().join("s.evs");
    run(&[
        "create",
        s(&stream),
        "--capacity",
        "8KiB",
        "--retain-past-cursors",
    ])
    .fails(2, &["--retain-past-cursors is a setting of a log"]);
    assert!(!stream.exists());
}

/// A cursor name that no cursor can have (`a b`, `../x`, `.hidden`, empty, 65
/// characters) is a usage error, exit 2, before the log is touched, as CLI.md's exit
/// statuses promise for a bad argument. It was exit 1, found only once the log was
/// open, and `cat --cursor` added "(0 events were printed before it)".
#[test]
fn a_cursor_name_no_cursor_can_have_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "8KiB"]).ok();
    run(&["append", s(&log), "first"]).ok();
    let before = files_under(dir.path());
    let long = "a".repeat(65);
    for name in ["a b", "../x", ".hidden", "", long.as_str()] {
        let log = s(&log);
        for args in [
            vec!["cat", log, "--cursor", name],
            vec!["cursor", "show", log, name],
            vec!["cursor", "set", log, name, "start"],
            vec!["cursor", "delete", log, name],
        ] {
            let refused = run(&args).fails(2, &["a name is 1 to 64 of"]);
            assert!(refused.stdout.is_empty(), "{args:?}: {refused:?}");
            assert!(!refused.stderr.contains("printed"), "{args:?}: {refused:?}");
        }
    }
    assert!(before == files_under(dir.path()));
    run(&["cursor", "set", s(&log), &"b".repeat(64), "start"]).ok();
}

/// `man` prints the page of a subcommand's subcommand, named as `man --dir` names its
/// file (`cursor-set`, for `evstream-cursor-set.1`) or as it is typed (`cursor set`),
/// the same page `--dir` writes. Both were refused as "not an evstream command".
#[test]
fn man_prints_the_page_of_a_cursor_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    run(&["man", "--dir", s(&pages)]).ok();
    for (name, file) in [
        ("cursor-set", "evstream-cursor-set.1"),
        ("cursor set", "evstream-cursor-set.1"),
        ("cursor delete", "evstream-cursor-delete.1"),
        ("cat", "evstream-cat.1"),
    ] {
        let page = run(&["man", name]).ok();
        assert_eq!(
            page.stdout,
            std::fs::read(pages.join(file)).unwrap(),
            "{name}"
        );
    }
    run(&["man", "cursor nope"]).fails(2, &["is not an evstream command"]);
    run(&["man", "set"]).fails(2, &["is not an evstream command"]);
}

/// CSV whose header names a column twice is refused when the name matters: always when
/// the payload is the row as a JSON object (which has room for one value a name), and
/// when the repeated name is the time or the payload column. The object kept the last
/// value and dropped the other without a word (`t,v,v` / `…,1,2` gave `{"t":…,"v":"2"}`).
#[test]
fn a_csv_header_that_names_a_column_twice_loses_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.evs");
    run(&["create", s(&path), "--capacity", "64KiB"]).ok();
    let csv = |header: &str| format!("{header}\n2024-05-01T12:00:00Z,1,2\n");
    for (header, extra) in [
        ("t,v,v", &[][..]),
        ("t,t,v", &[][..]),
        ("t,t,v", &["--payload-field", "v"][..]),
        ("t,v,v", &["--payload-field", "v"][..]),
    ] {
        let mut args = vec!["append", s(&path), "--format", "csv", "--time-field", "t"];
        args.extend_from_slice(extra);
        run_with(&args, Some(csv(header).as_bytes())).fails(
            1,
            &[
                "the CSV header names the column",
                "2 times",
                "nothing was appended",
            ],
        );
        assert!(events_of(&path).is_empty(), "{header} {extra:?}");
    }
    // A repeated column the import does not use is no one's business.
    run_with(
        &[
            "append",
            s(&path),
            "--format",
            "csv",
            "--time-field",
            "t",
            "--payload-field",
            "v",
        ],
        Some(b"t,v,x,x\n2024-05-01T12:00:00Z,1,2,3\n"),
    )
    .ok();
    assert_eq!(events_of(&path), [(NOON, b"1".to_vec())]);
}

/// A staged output's next run removes the temporaries of a process that is gone, and only
/// what such a temporary is (a file or a directory): a FIFO, or a symbolic link, that only
/// happens to have the name is left alone.
#[test]
fn a_leftover_s_name_on_a_fifo_or_a_link_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("x.evs");
    // No process has this id (above the kernel's pid_max).
    let fifo = dir.path().join(".x.evs.4294967295.partial");
    let link = dir.path().join(".x.evs.4294967294.partial");
    let file = dir.path().join(".x.evs.4294967293.partial");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("elsewhere", &link).unwrap();
    std::fs::write(&file, b"left by a killed run").unwrap();
    run_with(&["append", s(&stream), "--create"], Some(b"a\n")).ok();
    let kind = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.file_type());
    assert!(kind(&fifo).unwrap().is_fifo(), "the FIFO was removed");
    assert!(kind(&link).unwrap().is_symlink(), "the link was removed");
    assert!(kind(&file).is_err(), "the abandoned temporary stays");
    assert_eq!(StreamReader::open(&stream).unwrap().iter().count(), 1);
}

/// A follow whose reader has gone (`evstream tail -f LOG | head -1`) ends by itself while
/// it waits, with success and its follower taken off the file, rather than at the next
/// event, which on a quiet log may never come.
#[test]
fn a_follow_whose_reader_has_gone_ends_without_another_event() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("quiet.evs");
    let log = dir.path().join("quiet-log");
    run(&["create", s(&stream), "--capacity", "1MiB"]).ok();
    run(&["append", s(&stream), "one"]).ok();
    run(&["create", s(&log), "--log"]).ok();
    run(&["append", s(&log), "one"]).ok();
    for (target, args) in [
        (&stream, vec!["tail", "-f"]),
        (&log, vec!["tail", "-f"]),
        (&log, vec!["cat", "--follow"]),
    ] {
        let mut child = evstream()
            .args(&args)
            .arg(target)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(first.ends_with("one\n"), "{args:?}: {first:?}");
        drop(out);
        let began = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{args:?} {target:?} still follows with no reader");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{args:?}: {status:?}");
    }
}
