//! The `LOG` settings file's grammar as `docs/FORMAT.md` ("The `LOG` file") specifies
//! it, read through `LogReader::open`: what a reader accepts, what makes a directory not
//! a log, the defaults of absent keys, and the segment size bounds.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use evstream::{Error, LogOptions, LogReader, WriteBack};

/// The settings `LogReader::open` reads from a directory whose `LOG` is `text`.
fn read(dir: &Path, name: &str, text: &[u8]) -> evstream::Result<LogOptions> {
    let log = dir.join(name);
    std::fs::create_dir(&log).unwrap();
    std::fs::write(log.join("LOG"), text).unwrap();
    let options = LogReader::open(&log).map(|r| r.options().clone());
    // Reading never changes the file.
    assert_eq!(std::fs::read(log.join("LOG")).unwrap(), text);
    options
}

const FULL: &str = "evstream-log 1\nsegment-size 8192\nroll-ns 5\nretain-size 6\n\
                    retain-age-ns 7\nretain-segments 8\nretain-past-cursors 1\nwrite-back 1\n";

#[test]
fn the_file_evstream_writes_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::default()
        .segment_size(8192)
        .roll_interval(Some(std::time::Duration::from_nanos(5)))
        .retain_size(Some(6))
        .retain_age(Some(std::time::Duration::from_nanos(7)))
        .retain_segments(Some(8))
        .retain_past_cursors(true)
        .write_back(evstream::WriteBack::Lazy);
    let log = dir.path().join("log");
    drop(evstream::LogWriter::create(&log, options.clone()).unwrap());
    assert_eq!(std::fs::read_to_string(log.join("LOG")).unwrap(), FULL);
    assert_eq!(read(dir.path(), "same", FULL.as_bytes()).unwrap(), options);
}

#[test]
fn accepted_variations_read_as_specified() {
    let dir = tempfile::tempdir().unwrap();
    let full = read(dir.path(), "full", FULL.as_bytes()).unwrap();
    let cases: [(&str, String); 5] = [
        ("no final newline", FULL.trim_end_matches('\n').to_owned()),
        ("CRLF line ends", FULL.replace('\n', "\r\n")),
        (
            "an unknown key",
            FULL.replace("roll-ns 5\n", "roll-ns 5\nlater-setting 3\n"),
        ),
        (
            "leading zeros",
            FULL.replace("segment-size 8192", "segment-size 0008192"),
        ),
        (
            "a key twice, the last counts",
            FULL.replace("retain-size 6\n", "retain-size 99\nretain-size 6\n"),
        ),
    ];
    for (i, (case, text)) in cases.iter().enumerate() {
        let options = read(dir.path(), &format!("ok{i}"), text.as_bytes());
        assert_eq!(options.as_ref().ok(), Some(&full), "{case}");
    }
    // Absent keys take their defaults: 64 MiB segments, everything else off, and the
    // eager write-back of the builds that wrote no `write-back` line.
    let bare = read(dir.path(), "bare", b"evstream-log 1\n").unwrap();
    assert_eq!(bare, LogOptions::default().write_back(WriteBack::Eager));
    assert_eq!(bare.get_segment_size(), 64 << 20);
    // Any value but 0 turns the flag on.
    let flag = read(
        dir.path(),
        "flag",
        b"evstream-log 1\nsegment-size 8192\nretain-past-cursors 2\n",
    )
    .unwrap();
    assert!(flag.get_retain_past_cursors());
}

#[test]
fn a_file_that_breaks_the_grammar_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 10] = [
        (
            "another first line",
            b"evstream-logs 1\nsegment-size 8192\n".to_vec(),
        ),
        ("an empty line", format!("{FULL}\n").into_bytes()),
        (
            "a blank line inside",
            FULL.replace("roll-ns", "\nroll-ns").into_bytes(),
        ),
        ("a tab", FULL.replace("roll-ns ", "roll-ns\t").into_bytes()),
        (
            "two spaces",
            FULL.replace("roll-ns ", "roll-ns  ").into_bytes(),
        ),
        (
            "a trailing space",
            FULL.replace("roll-ns 5", "roll-ns 5 ").into_bytes(),
        ),
        (
            "a negative value",
            FULL.replace("roll-ns 5", "roll-ns -5").into_bytes(),
        ),
        (
            "an unknown key without a number",
            FULL.replace("roll-ns 5\n", "roll-ns 5\nlater yes\n")
                .into_bytes(),
        ),
        ("not UTF-8", b"evstream-log 1\nsegment-size \xff\n".to_vec()),
        ("over 4096 bytes", {
            let mut text = FULL.as_bytes().to_vec();
            text.extend(std::iter::repeat_n(b"later 1\n".as_slice(), 600).flatten());
            text
        }),
    ];
    for (i, (case, text)) in cases.iter().enumerate() {
        match read(dir.path(), &format!("bad{i}"), text) {
            Err(Error::NotALog { .. }) => {}
            other => panic!("{case}: {other:?}"),
        }
    }
}

#[test]
fn a_first_line_of_another_version_names_it() {
    let dir = tempfile::tempdir().unwrap();
    match read(dir.path(), "v2", b"evstream-log 2\nsegment-size 8192\n") {
        Err(Error::UnsupportedLogVersion {
            version: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// Segments of 4096 bytes up to 2^40 - 1: a `LOG` naming another size is refused,
/// although segments of 1536 to 4095 bytes would be valid streams.
#[test]
fn segment_sizes_out_of_bounds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = |size: u64| format!("evstream-log 1\nsegment-size {size}\n").into_bytes();
    for (i, size) in [4096u64, (1 << 40) - 1].into_iter().enumerate() {
        let options = read(dir.path(), &format!("in{i}"), &text(size)).unwrap();
        assert_eq!(options.get_segment_size(), size);
    }
    for (i, size) in [0u64, 1536, 4095, 1 << 40, u64::MAX]
        .into_iter()
        .enumerate()
    {
        // The file is the problem, not an argument: not a log, never `BadCapacity`.
        match read(dir.path(), &format!("out{i}"), &text(size)) {
            Err(Error::NotALog { .. }) => {}
            other => panic!("{size}: {other:?}"),
        }
    }
}

/// A limit of zero is the strictest limit, never "no limit": with retention by count,
/// size or age set to zero the log keeps only the segment being written, with a roll
/// interval of zero every new timestamp starts a segment, exactly as with the smallest
/// nonzero value, before and after the log is reopened.
#[test]
fn a_zero_limit_is_the_strictest_limit() {
    use evstream::LogWriter;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let nanos = Duration::from_nanos;
    let pairs = [
        (
            LogOptions::default().retain_segments(Some(0)),
            LogOptions::default().retain_segments(Some(1)),
        ),
        (
            LogOptions::default().retain_size(Some(0)),
            LogOptions::default().retain_size(Some(1)),
        ),
        (
            LogOptions::default().retain_age(Some(Duration::ZERO)),
            LogOptions::default().retain_age(Some(nanos(1))),
        ),
        (
            LogOptions::default().roll_interval(Some(Duration::ZERO)),
            LogOptions::default().roll_interval(Some(nanos(1))),
        ),
    ];
    // Segments kept after 200 events of 100 bytes into 4 KiB segments, stamped 0, 10, ...
    // (far in the past: every segment but the newest is older than any age), and the
    // options the log reports, open and reopened.
    let run = |name: String, options: LogOptions| {
        let path = dir.path().join(name);
        let mut writer = LogWriter::create(&path, options.segment_size(4096)).unwrap();
        for i in 0..200_i64 {
            writer.append(i * 10, &[0_u8; 100]).unwrap();
        }
        writer.flush().unwrap();
        let open = writer.options().clone();
        drop(writer);
        let reader = LogReader::open(&path).unwrap();
        (
            reader.segment_files().unwrap().len(),
            open,
            reader.options().clone(),
        )
    };
    for (k, (zero, least)) in pairs.into_iter().enumerate() {
        let (kept, open, reopened) = run(format!("zero-{k}"), zero);
        let (least_kept, least_open, _) = run(format!("least-{k}"), least);
        assert_eq!(kept, least_kept, "pair {k}");
        assert_eq!(open, least_open, "pair {k}");
        assert_eq!(reopened, least_open, "pair {k}");
        assert_ne!(open, LogOptions::default().segment_size(4096), "pair {k}");
    }
    // Retention kept the newest alone; the interval rolled at every timestamp.
    assert_eq!(
        run(
            "count".into(),
            LogOptions::default().retain_segments(Some(0))
        )
        .0,
        1
    );
    assert_eq!(
        run(
            "roll".into(),
            LogOptions::default().roll_interval(Some(Duration::ZERO))
        )
        .0,
        200
    );
}

#[test]
fn create_at_an_empty_path_makes_nothing_in_the_working_directory() {
    // The other tests here use absolute paths only: moving this one's working directory
    // changes nothing for them.
    let dir = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let made = evstream::LogWriter::create("", LogOptions::default().segment_size(8192));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    std::env::set_current_dir(before).unwrap();
    assert_eq!(left, Vec::<std::ffi::OsString>::new());
    match made {
        Err(Error::Io { op, source, .. }) => {
            assert_eq!(op, "create directory");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a log was made at an empty path"),
    }
}
