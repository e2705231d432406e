//! The examples, run as a user runs them: bad arguments and bad files end in one
//! `error:` line in words (the error's `Display` and its causes), never a panic or a
//! `Debug` dump such as `Error: Io { op: "open", ... }`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example's binary: `cargo test` builds the examples next to the test binaries
/// (`target/debug/examples/`). When only this test was built, build the examples in a
/// target directory of their own, since this cargo holds the lock on the usual one.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let built = profile_dir.join("examples").join(name);
    if built.exists() {
        return built;
    }
    let target = profile_dir.parent().unwrap().join("examples-test");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--examples", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --examples failed");
    target.join("debug").join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> (i32, String) {
    let Output { status, stderr, .. } = Command::new(example(name)).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "{name} {args:?} panicked: {stderr}"
    );
    assert!(
        !stderr.contains(" { "),
        "{name} {args:?} printed Debug: {stderr}"
    );
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn replay_refuses_a_bad_since_argument_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    drop(evstream::StreamWriter::create(&path, 4096).unwrap());
    let (code, stderr) = run("replay", &[path.to_str().unwrap(), "2024-05-01"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: SINCE must be a time in Unix nanoseconds"),
        "{stderr}"
    );
    // A good argument works.
    let (code, stderr) = run("replay", &[path.to_str().unwrap(), "1714564800000000000"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn examples_print_file_errors_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.evs");
    let (code, stderr) = run("replay", &[missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("error: cannot open "), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    let (code, stderr) = run("log_sensors", &[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("is a directory"),
        "{stderr}"
    );
}

/// The README's log example, as a user copies it: it is the example `log_quickstart`
/// word for word, runs any number of times (resuming its log), and two runs of two
/// events each take a few MiB on disk, spare segment included.
#[test]
fn the_readme_log_example_reruns_in_a_few_mib() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/log_quickstart.rs"
    ))
    .unwrap();
    let code: String = source
        .lines()
        .skip_while(|l| !l.starts_with("use evstream::"))
        .filter(|l| !l.starts_with("#[rustfmt::skip]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{code}```\n")),
        "the README's log example is not examples/log_quickstart.rs"
    );
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let Output {
            status,
            stdout,
            stderr,
        } = Command::new(example("log_quickstart"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(status.success(), "run {run}: {stderr}");
        let stdout = String::from_utf8_lossy(&stdout);
        assert_eq!(
            stdout.matches("[116, 101, 109, 112").count(),
            2,
            "run {run}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("events: {}", 2 * run)),
            "run {run}: {stdout}"
        );
    }
    // Every file of the log, as allocated on disk.
    let mut allocated = 0;
    let mut dirs = vec![dir.path().join("app-log")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                allocated += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            }
        }
    }
    assert!(allocated <= 4 << 20, "{allocated} bytes on disk");
}
