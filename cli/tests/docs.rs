//! The console examples of `README.md` and `docs/CLI.md`, run over the built `evstream`
//! binary, so that the documentation fails the tests when it drifts from the tool.
//!
//! Every ```` ```console ```` block of a document runs, in the order of the document, in
//! one fresh temporary directory per document (so a block sees the files the blocks
//! before it made). A line `$ COMMAND` is given to `bash -c` there, with the tested
//! `evstream` first on `PATH`, `TZ=UTC`, `NO_COLOR=1` and an empty standard input; the
//! lines after it, up to the next `$ ` line or the end of the block, are its expected
//! standard output and standard error together, as a terminal shows them. An exit status
//! is checked where the document prints it (`; echo "exit status $?"`).
//!
//! Expected output is compared by snapbox, whose wildcards stand for what legitimately
//! varies from run to run (times taken from the clock, timings, temporary paths):
//! `[..]` matches any text within a line, and `...` alone on a line any number of lines.
//! Use them for those parts only, so that the rest stays checked.
//!
//! A block that cannot run here (a benchmark of minutes, a live NATS server) is marked on
//! the line right before its fence, with the reason, which the document's readers do not
//! see rendered:
//!
//! ```text
//! <!-- docs test: not run: it needs a NATS server -->
//! ```
//!
//! Re-blessing after a deliberate change of output: run
//!
//! ```text
//! SNAPSHOTS=overwrite cargo test -p evstream-cli --test docs
//! ```
//!
//! which writes each command's actual output into the document in place of the expected
//! lines that no longer match (lines that still match their wildcards are kept as they
//! are), then review the diff: put `[..]` back where a new line holds a clock time or a
//! timing, and run the test again without the variable.

use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use snapbox::assert::Action;
use snapbox::cmd::Command;
use snapbox::{Assert, Data};

/// What marks a console block that is not run; the reason follows it.
const NOT_RUN: &str = "<!-- docs test: not run: ";

/// The longest any one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One `$ COMMAND` line and the output lines after it.
#[derive(Debug)]
struct Step {
    /// The 1-based number of the `$` line in the document.
    line: usize,
    command: String,
    /// The expected output's lines, 0-based indices into the document's lines.
    output: Range<usize>,
}

/// The steps of every console block that runs, in document order; an error names a
/// malformed block.
fn parse(lines: &[&str]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut index = 0;
    while let Some(line) = lines.get(index) {
        let Some(info) = line.trim_end().strip_prefix("```") else {
            if line.starts_with(NOT_RUN) {
                let next = lines.get(index + 1).copied().unwrap_or_default();
                if next.trim_end() != "```console" {
                    return Err(format!(
                        "line {}: a not-run mark must stand right before a ```console block",
                        index + 1
                    ));
                }
                if !line.trim_end().ends_with("-->") || line.len() < NOT_RUN.len() + 8 {
                    return Err(format!(
                        "line {}: a not-run mark gives its reason",
                        index + 1
                    ));
                }
            }
            index += 1;
            continue;
        };
        // The block's lines, up to its closing fence.
        let start = index + 1;
        let end = (start..lines.len())
            .find(|&i| lines.get(i).is_some_and(|l| l.trim_end() == "```"))
            .ok_or_else(|| format!("line {index}: a code block without its end"))?;
        let marked = index
            .checked_sub(1)
            .and_then(|i| lines.get(i))
            .is_some_and(|l| l.starts_with(NOT_RUN));
        if info == "console" && !marked {
            let mut step: Option<Step> = None;
            for i in start..end {
                let text = lines.get(i).copied().unwrap_or_default();
                if let Some(command) = text.strip_prefix("$ ") {
                    steps.extend(step.take());
                    step = Some(Step {
                        line: i + 1,
                        command: command.trim_end().to_owned(),
                        output: i + 1..i + 1,
                    });
                } else if let Some(step) = step.as_mut() {
                    step.output.end = i + 1;
                } else {
                    return Err(format!("line {}: a console block starts with `$ `", i + 1));
                }
            }
            steps.extend(step);
        }
        index = end + 1;
    }
    Ok(steps)
}

/// A directory holding only `evstream`, the binary under test, to put first on `PATH`.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_evstream"), dir.path().join("evstream"))
        .expect("link the binary");
    dir
}

/// Runs `command` in `cwd` as the documents' reader would type it, and returns what it
/// wrote to standard output and standard error, together.
fn run(command: &str, cwd: &Path, bin: &Path) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin.to_owned()).chain(std::env::split_paths(&path)))
            .expect("a PATH");
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", command])
        .current_dir(cwd)
        .env("PATH", path)
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("EVSTREAM_NATS_PASSWORD")
        .stdin("")
        .stderr_to_stdout()
        .timeout(COMMAND_TIMEOUT)
        .output()
        .expect("run bash");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Runs every console block of the document at `relative` (from the workspace root) and
/// fails with every command whose output differs, or rewrites the document with
/// `SNAPSHOTS=overwrite`.
fn check_document(relative: &str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let text = fs::read_to_string(&path).expect("read the document");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let steps = parse(&lines).unwrap_or_else(|e| panic!("{relative}: {e}"));
    assert!(
        !steps.is_empty(),
        "{relative} has no console example to run"
    );
    let overwrite = std::env::var("SNAPSHOTS").is_ok_and(|v| v == "overwrite");
    let assert = Assert::new().action(Action::Verify).normalize_paths(false);
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let bin = bin_dir();
    let mut failures = String::new();
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    for step in &steps {
        let actual = run(&step.command, cwd.path(), bin.path());
        let expected: String = lines.get(step.output.clone()).unwrap_or_default().concat();
        let name = format!("{relative}:{}", step.line);
        if overwrite {
            let (actual, expected) = assert.normalize(Data::text(actual), Data::text(expected));
            if actual != expected {
                replacements.push((step.output.clone(), actual.render().unwrap_or_default()));
            }
        } else if let Err(diff) =
            assert.try_eq(Some(&"actual"), Data::text(actual), Data::text(expected))
        {
            let _ = write!(failures, "\n{name}: $ {}\n{diff}", step.command);
        }
    }
    if overwrite && !replacements.is_empty() {
        let mut lines: Vec<String> = lines.iter().map(|&l| l.to_owned()).collect();
        for (range, output) in replacements.iter().rev() {
            lines.splice(
                range.clone(),
                output.split_inclusive('\n').map(str::to_owned),
            );
        }
        fs::write(&path, lines.concat()).expect("write the document");
        eprintln!(
            "{relative}: rewrote the output of {} commands",
            replacements.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{relative}: commands whose output is not what the document shows \
         (SNAPSHOTS=overwrite rewrites it; see the head of cli/tests/docs.rs):{failures}"
    );
}

#[test]
fn readme_console_examples_run_as_shown() {
    check_document("README.md");
}

#[test]
fn cli_guide_console_examples_run_as_shown() {
    check_document("docs/CLI.md");
}

#[test]
fn malformed_blocks_are_refused() {
    let doc = "text\n```console\noutput before a command\n```\n";
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    assert!(parse(&lines).is_err());
    let doc = "<!-- docs test: not run: a reason -->\n\n```console\n$ x\n```\n";
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    assert!(parse(&lines).is_err(), "a mark away from its block");
    let doc = "<!-- docs test: not run: needs a server -->\n```console\n$ x\n```\n```console\n$ y\nout\n```\n```sh\nz\n```\n";
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let steps = parse(&lines).expect("well formed");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps.first().map(|s| s.command.as_str()), Some("y"));
    assert_eq!(steps.first().map(|s| s.output.clone()), Some(6..7));
}
