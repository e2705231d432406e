//! Hostile input at the front door: every `evstream` command against a corpus of bad
//! files (empty, short, random, zeroed, headers that lie, damaged events, a directory, a
//! FIFO, a device, a symlink loop, a dangling symlink, a missing path, no permission).
//!
//! For every command and file: the command ends on its own (nothing waits on a FIFO or
//! follows a stream that cannot grow), never panics or dies of a signal, exits 1 with a
//! message on stderr that names the file wherever the file is the problem, prints no
//! events from a file that is not a stream, and leaves the file exactly as it was.
//! Usage errors exit 2.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../../tests/reliability_support/mod.rs"]
mod reliability_support;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use evstream::StreamWriter;
use reliability_support::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_evstream");

/// What a file is, for what the commands may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not a stream at all: every command fails.
    NotAStream,
    /// A stream header that opens, over damaged events: reading stops at the damage,
    /// `verify` and `append` fail.
    Damaged,
    /// Intact events under a wrong event count: `verify` fails; `append` repairs the
    /// count (derived data: the durable count plus the events above the watermark) and
    /// appends, the one case where a command changes the file.
    WrongCount,
    /// A write offset past the events, above the durable watermark: a torn tail. Reading
    /// stops at the damage and `verify` fails; `append` drops the tail and appends.
    TornTail,
}

struct Case {
    name: &'static str,
    path: PathBuf,
    kind: Kind,
}

/// A valid stream of three flushed events; returns its bytes and event offsets.
fn valid_stream(path: &Path) -> (Vec<u8>, Vec<u64>) {
    let mut writer = StreamWriter::create(path, 4096).unwrap();
    let mut offsets = Vec::new();
    for (i, payload) in [&b"first event"[..], b"second event", b"third event"]
        .iter()
        .enumerate()
    {
        offsets.push(writer.append(1_000 + i as i64, payload).unwrap());
    }
    writer.flush().unwrap();
    drop(writer);
    let bytes = std::fs::read(path).unwrap();
    std::fs::remove_file(path).unwrap();
    (bytes, offsets)
}

fn corpus(dir: &Path) -> Vec<Case> {
    let (valid, offsets) = valid_stream(&dir.join("valid.evs"));
    let end = u64::from_le_bytes(valid[0..8].try_into().unwrap());
    let mut cases = Vec::new();
    let mut file = |name: &'static str, kind: Kind, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        cases.push(Case { name, path, kind });
    };
    file("empty", Kind::NotAStream, Vec::new());
    file("short", Kind::NotAStream, vec![0xff; 23]);
    file("zeroed", Kind::NotAStream, vec![0; 4096]);
    let mut random = vec![0u8; 4096];
    Rng::new(99).fill(&mut random);
    random[7] = 0x80; // the write offset lands far past the end
    file("random", Kind::NotAStream, random);
    let with = |at: usize, field: &[u8]| {
        let mut bytes = valid.clone();
        bytes[at..at + field.len()].copy_from_slice(field);
        bytes
    };
    file(
        "offset_past_end",
        Kind::NotAStream,
        with(0, &4097u64.to_le_bytes()),
    );
    file(
        "offset_huge",
        Kind::NotAStream,
        with(0, &u64::MAX.to_le_bytes()),
    );
    file(
        "offset_in_header",
        Kind::NotAStream,
        with(0, &8u64.to_le_bytes()),
    );
    // Below the durable watermark: the header lost flushed events.
    file(
        "offset_mid_event",
        Kind::NotAStream,
        with(0, &(end - 5).to_le_bytes()),
    );
    // Past the write offset, into the free space: above the watermark, so a torn tail
    // that `append` would drop; readers stop at the damage.
    file(
        "offset_past_events",
        Kind::TornTail,
        with(0, &(end + 40).to_le_bytes()),
    );
    // Files of other kinds that happen to start like a stream header.
    let mut document = vec![0u8; 256 << 10];
    document[..8].copy_from_slice(&24u64.to_le_bytes());
    Rng::new(7).fill(&mut document[4096..]);
    file("document_like_a_header", Kind::NotAStream, document);
    let mut words = vec![0u8; 1 << 20];
    for (i, word) in words.chunks_mut(8).enumerate() {
        word.copy_from_slice(&(4096 + i as u64).to_le_bytes());
    }
    file("little_endian_words", Kind::NotAStream, words);
    let last = offsets[2] as usize;
    file(
        "size_overflows",
        Kind::Damaged,
        with(last + 8, &u32::MAX.to_le_bytes()),
    );
    let mut flipped = valid.clone();
    flipped[offsets[0] as usize + 20] ^= 0x04;
    file("bit_flip", Kind::Damaged, flipped);
    file(
        "count_wrong",
        Kind::WrongCount,
        with(8, &5u64.to_le_bytes()),
    );
    file(
        "count_huge",
        Kind::WrongCount,
        with(8, &u64::MAX.to_le_bytes()),
    );

    let mut special = |name: &'static str, make: &dyn Fn(&Path)| {
        let path = dir.join(name);
        make(&path);
        cases.push(Case {
            name,
            path,
            kind: Kind::NotAStream,
        });
    };
    special("directory", &|p| std::fs::create_dir(p).unwrap());
    special("fifo", &|p| {
        let status = Command::new("mkfifo").arg(p).status().unwrap();
        assert!(status.success());
    });
    special("symlink_loop", &|p| {
        let other = p.with_extension("other");
        std::os::unix::fs::symlink(&other, p).unwrap();
        std::os::unix::fs::symlink(p, &other).unwrap();
    });
    special("dangling_symlink", &|p| {
        std::os::unix::fs::symlink(p.with_extension("nowhere"), p).unwrap()
    });
    special("missing", &|_| {});
    cases.push(Case {
        name: "device",
        path: PathBuf::from("/dev/null"),
        kind: Kind::NotAStream,
    });
    cases
}

/// Every command, with `F` standing for the file.
const COMMANDS: &[&[&str]] = &[
    &["stat", "F"],
    &["stat", "--json", "F"],
    &["verify", "F"],
    &["cat", "F"],
    &["cat", "--format", "json", "F"],
    &["cat", "--format", "raw", "F"],
    &[
        "cat",
        "--format",
        "hex",
        "--since",
        "1970-01-01T00:00:00Z",
        "F",
    ],
    &["cat", "--from-offset", "24", "-n", "2", "F"],
    &["tail", "-n", "2", "F"],
    &["append", "F", "x"],
    &["append", "--sync", "F", "y", "z"],
    &["append", "--raw", "F"],
    &["append", "F"],
    &["create", "F", "--capacity", "4096"],
    &["cat", "--follow", "F"],
    &["tail", "--follow", "F"],
    &["cat", "--format", "jsonl", "--since", "-1h", "F"],
    &["cat", "--template", "{offset} {json}\\n", "F"],
    &["append", "--format", "jsonl", "--wait=10ms", "F"],
    &["append", "--format", "binary", "F"],
    &["salvage", "F", "D"],
    &["cursor", "list", "F"],
    &["cursor", "set", "F", "c", "start"],
];

/// Where `salvage` writes (`D` in a command): a fresh path, removed after the run.
fn salvage_destination(case: &Case) -> PathBuf {
    let name = format!("{}.salvaged", case.name);
    std::env::temp_dir().join(format!("evstream-hostile-{}-{name}", std::process::id()))
}

/// The state of a path that a command must not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    kind: Option<String>,
    bytes: Option<Vec<u8>>,
    mode: Option<u32>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = path.symlink_metadata().ok();
    let kind = meta.as_ref().map(|m| {
        let t = m.file_type();
        if t.is_symlink() {
            format!("symlink to {:?}", std::fs::read_link(path).unwrap())
        } else if t.is_dir() {
            "directory".into()
        } else if t.is_fifo() {
            "fifo".into()
        } else if t.is_char_device() {
            "device".into()
        } else {
            "file".into()
        }
    });
    let bytes = match &kind {
        Some(k) if k == "file" => std::fs::read(path).ok(),
        _ => None,
    };
    Snapshot {
        kind,
        bytes,
        mode: meta.map(|m| m.mode()),
    }
}

/// Runs `evstream` with `args` under `prefix` (to drop privileges), feeding `stdin`,
/// killing it after `limit`. Returns its output, or `None` if it had to be killed.
fn run(prefix: &[&str], args: &[String], stdin: &[u8], limit: Duration) -> Option<Output> {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that does not read its input must not block us either.
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks one command on one file.
fn check(case: &Case, template: &[&str], prefix: &[&str], tally: &mut Vec<String>) {
    let path = case.path.to_str().unwrap().to_owned();
    let destination = salvage_destination(case);
    let _ = std::fs::remove_file(&destination);
    let args: Vec<String> = template
        .iter()
        .map(|a| match *a {
            "F" => path.clone(),
            "D" => destination.to_str().unwrap().to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let label = format!("{} {}", case.name, template.join(" "));
    let before = snapshot(&case.path);
    let out = run(
        prefix,
        &args,
        b"line one\nline two\n",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("{label}: still running after 10 s"));
    let after = snapshot(&case.path);
    let _ = std::fs::remove_file(&destination);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let command = template[0];
    let repairable = matches!(case.kind, Kind::WrongCount | Kind::TornTail);
    if repairable && command == "append" && before != after {
        // The repaired count: the events are intact and the appended ones follow; put
        // the original back for the next command.
        let reader = evstream::StreamReader::open(&case.path).unwrap();
        let verification = reader.verify().unwrap();
        assert!(verification.is_ok(), "{label}: {verification:?}");
        // The three events survive the repair; the input is appended after them unless
        // the command refuses it (`--format jsonl` fed plain lines).
        assert!(verification.events >= 3, "{label}");
        std::fs::write(&case.path, before.bytes.as_ref().unwrap()).unwrap();
    } else {
        assert!(before == after, "{label}: the file changed");
    }
    assert_eq!(
        out.status.signal(),
        None,
        "{label}: killed by a signal\n{stderr}"
    );
    let code = out.status.code().unwrap();
    assert!(!stderr.contains("panicked"), "{label}: panicked\n{stderr}");
    let must_fail = match case.kind {
        // Rescuing the events of a file whose header is damaged is what salvage is for.
        _ if command == "salvage" => false,
        Kind::NotAStream => true,
        Kind::Damaged => {
            matches!(command, "verify" | "append" | "create") || template.contains(&"--follow")
        }
        Kind::WrongCount => matches!(command, "verify" | "create"),
        Kind::TornTail => matches!(command, "verify" | "create") || template.contains(&"--follow"),
    };
    if must_fail {
        assert_eq!(
            code, 1,
            "{label}: exit status\nstdout: {stdout}\nstderr: {stderr}"
        );
    } else {
        assert!(
            code == 0 || code == 1,
            "{label}: exit status {code}\n{stderr}"
        );
    }
    if code != 0 {
        // One `error:` line; `salvage` may put a `note:` about the header before it, and
        // `append` one about the repair it made before refusing its input.
        let first = stderr.lines().next().unwrap_or_default();
        let error_line = if command == "salvage" || (command == "append" && repairable) {
            stderr.lines().any(|l| l.starts_with("error: "))
        } else {
            first.starts_with("error: ")
        };
        assert!(error_line, "{label}: {stderr}");
        // `verify` reports what it found about the events; everything else names the file.
        if command != "verify" || case.kind == Kind::NotAStream {
            let name = case.path.file_name().unwrap().to_str().unwrap();
            assert!(
                stderr.contains(name),
                "{label}: message names no file: {stderr}"
            );
        }
    }
    // `salvage` reports the damaged ranges it skipped on standard output.
    if case.kind == Kind::NotAStream && command != "create" && command != "salvage" {
        assert!(stdout.trim().is_empty(), "{label}: printed {stdout}");
    }
    tally.push(format!("{label} -> {code}"));
}

/// The prefix that runs a command as an unprivileged user, if one is needed and works.
fn unprivileged() -> Result<Vec<&'static str>, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(Vec::new());
    }
    let prefix = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let probe = run(&prefix, &["--version".into()], b"", Duration::from_secs(10));
    match probe {
        Some(out) if out.status.success() => Ok(prefix),
        Some(out) => Err(format!(
            "running as nobody failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        None => Err("running as nobody hung".into()),
    }
}

#[test]
fn every_command_against_every_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut tally = Vec::new();
    let cases = corpus(dir.path());
    for case in &cases {
        for template in COMMANDS {
            if case.name == "missing" && template[0] == "create" {
                continue; // Creating a missing stream is what `create` is for.
            }
            let follows = template.contains(&"--follow");
            if follows && case.kind == Kind::WrongCount {
                continue; // Intact events: following would wait for more, as it should.
            }
            check(case, template, &[], &mut tally);
        }
    }
    eprintln!(
        "hostile cli: {} runs of {} commands against {} bad files, every one a clean \
         failure or a valid partial read",
        tally.len(),
        COMMANDS.len(),
        cases.len()
    );
}

#[test]
fn no_permission() {
    let prefix = match unprivileged() {
        Ok(p) => p,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (valid, _) = valid_stream(&dir.path().join("valid.evs"));
    let path = dir.path().join("no_permission");
    std::fs::write(&path, &valid).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let case = Case {
        name: "no_permission",
        path,
        kind: Kind::NotAStream,
    };
    let mut tally = Vec::new();
    for template in COMMANDS {
        check(&case, template, &prefix, &mut tally);
    }
    // Read-only access: reading works, appending is refused.
    std::fs::set_permissions(&case.path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let path = case.path.to_str().unwrap().to_owned();
    let read = run(
        &prefix,
        &["verify".into(), path.clone()],
        b"",
        Duration::from_secs(10),
    );
    assert!(read.unwrap().status.success());
    let before = snapshot(&case.path);
    let write = run(
        &prefix,
        &["append".into(), path, "x".into()],
        b"",
        Duration::from_secs(10),
    );
    let write = write.unwrap();
    assert_eq!(write.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&write.stderr).contains("no_permission"));
    assert_eq!(before, snapshot(&case.path));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.evs").to_str().unwrap().to_owned();
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["cat"],
        &["create", &f],
        &["create", &f, "--capacity", "banana"],
        &["tail", "-n", "many", &f],
        &["cat", "--format", "xml", &f],
    ];
    for args in cases {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let out = run(&[], &args, b"", Duration::from_secs(10)).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(!Path::new(&f).exists(), "{args:?} created the file");
    }
}

/// An operating-system failure is reported with its reason: a cursor file the user may
/// not read shows `permission denied`, not just the operation and the path.
#[test]
fn an_unreadable_cursor_says_why() {
    let prefix = match unprivileged() {
        Ok(p) => p,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("app");
    let mut writer =
        evstream::LogWriter::create(&log, evstream::LogOptions::default().segment_size(4096))
            .unwrap();
    writer.append(1_000, b"one").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let reader = evstream::LogReader::open(&log).unwrap();
    reader
        .commit_cursor("billing", reader.start().unwrap())
        .unwrap();
    let cursor = log.join("cursors").join("billing");
    std::fs::set_permissions(&cursor, std::fs::Permissions::from_mode(0o000)).unwrap();
    let log = log.to_str().unwrap().to_owned();
    for command in [&["stat", &log][..], &["cursor", "list", &log]] {
        let args: Vec<String> = command.iter().map(|a| (*a).to_owned()).collect();
        let out = run(&prefix, &args, b"", Duration::from_secs(10)).unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("billing") && text.contains("permission denied"),
            "{command:?}: {text}"
        );
    }
}
