//! How a command fails: one `error:` line on standard error in the user's terms, and the
//! exit code (1 for failures found in files or data, 2 for usage errors).

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use evstream::{Error, HeaderProblem};

use crate::time::Rfc3339;

use crate::units;

/// Exit code for a failure found in a file or its data.
const DATA_FAILURE: u8 = 1;
/// Exit code for a usage error (clap uses the same).
const USAGE: u8 = 2;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Standard output was closed by its reader (`evstream cat big.evs | head`): stop
    /// quietly with success, as if the output had been wanted no further.
    ClosedOutput,
    /// A failure to report as `error: {message}`.
    Error {
        /// What went wrong, naming the file.
        message: String,
        /// The exit code.
        code: u8,
    },
}

impl Failure {
    /// A failure found in a file or its data (exit code 1).
    pub fn data(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
            code: DATA_FAILURE,
        }
    }

    /// A usage error found after parsing (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
            code: USAGE,
        }
    }

    /// A library error met while working on `path`.
    pub fn stream(path: &Path, error: &Error) -> Self {
        let code = match error {
            Error::BadCapacity { .. } => USAGE,
            _ => DATA_FAILURE,
        };
        Self::Error {
            message: describe(path, error),
            code,
        }
    }

    /// An error writing standard output; a closed pipe is [`Failure::ClosedOutput`].
    pub fn output(error: &io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Self::ClosedOutput
        } else {
            Self::data(format!(
                "cannot write to standard output: {}",
                os_reason(error)
            ))
        }
    }

    /// Adds `context` after the message (`"; 3 events were appended before it"`).
    pub fn with_context(self, context: &str) -> Self {
        match self {
            Self::Error { message, code } => Self::Error {
                message: format!("{message}{context}"),
                code,
            },
            other => other,
        }
    }

    /// Prints the message and returns the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Self::ClosedOutput => ExitCode::SUCCESS,
            Self::Error { message, code } => {
                // Nothing better to do if standard error is gone too.
                let _ = writeln!(io::stderr(), "{} {message}", label("error:"));
                ExitCode::from(code)
            }
        }
    }
}

/// Whether lines on standard error are coloured: as clap and other tools decide it, a
/// non-empty `NO_COLOR` turns colour off, a `CLICOLOR_FORCE` other than `0` turns it on,
/// and otherwise colour is used when standard error is a terminal.
pub fn color() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        false
    } else if set("CLICOLOR_FORCE") {
        true
    } else {
        io::stderr().is_terminal()
    }
}

/// `label` (`error:`) styled as clap styles the label of its usage errors, when [`color`].
pub fn label(label: &str) -> String {
    if color() {
        let style = clap::builder::styling::AnsiColor::Red.on_default().bold();
        format!("{style}{label}{style:#}")
    } else {
        label.to_owned()
    }
}

/// Prints `note: {text}` on standard error, ignoring a closed standard error.
pub fn note(text: &str) {
    let style = clap::builder::styling::AnsiColor::Yellow
        .on_default()
        .bold();
    let label = if color() {
        format!("{style}note:{style:#}")
    } else {
        "note:".to_owned()
    };
    let _ = writeln!(io::stderr(), "{label} {text}");
}

/// The operating system's reason in words, without the `(os error N)` suffix.
pub fn os_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::StorageFull => "no space left on device".into(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
                None => text,
            }
        }
    }
}

/// An error and every cause behind it, `: `-separated, the operating system's reasons in
/// words (`read cursor app/cursors/billing: permission denied`): the library's messages
/// leave the cause to [`source`](std::error::Error::source), and a line without it would
/// not say why.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        match cause.downcast_ref::<io::Error>() {
            Some(io) => message.push_str(&os_reason(io)),
            None => message.push_str(&cause.to_string()),
        }
        source = cause.source();
    }
    message
}

/// A library error as a sentence that names the file and the reason.
pub fn describe(path: &Path, error: &Error) -> String {
    let file = path.display();
    match error {
        Error::Io {
            op,
            path: at,
            source,
        } => {
            let reason = os_reason(source);
            if at != path {
                // Such as the temporary file `create` builds before renaming it into place.
                format!("{file}: cannot {op} {}: {reason}", at.display())
            } else if source.kind() == io::ErrorKind::NotFound && *op == "open" {
                format!("{file}: no such file or directory")
            } else {
                format!("cannot {op} {file}: {reason}")
            }
        }
        Error::AlreadyExists { path } => format!(
            "{} already exists; choose another name or remove it first",
            path.display()
        ),
        Error::NotAFile { path, kind } => {
            format!("{} is a {kind}, not a stream file", path.display())
        }
        Error::Locked { path } => {
            let what = if path.is_dir() { "log" } else { "stream" };
            format!(
                "{} is locked by another writer (only one process may append to a {what} at a time)",
                path.display()
            )
        }
        Error::BadHeader {
            path,
            reason: reason @ HeaderProblem::CountMismatch { .. },
        } => format!("{} is damaged: {reason}", path.display()),
        Error::BadHeader { path, reason } => {
            format!("{} is not a stream file: {reason}", path.display())
        }
        Error::Corrupt {
            path,
            offset,
            watermark,
            reason,
        } => {
            let flushed = if offset < watermark {
                format!(" (in flushed data, below the durable watermark {watermark})")
            } else {
                String::new()
            };
            format!(
                "{} is corrupt at byte offset {offset}{flushed}: {reason}",
                path.display()
            )
        }
        Error::NotAStream { path, reason } => format!(
            "{} is not a stream file: {reason}; it was left unchanged",
            path.display()
        ),
        Error::Sealed { path } => format!(
            "{} is sealed: it takes no more events; start a new stream",
            path.display()
        ),
        Error::OutOfOrder { previous, got } => format!(
            "{file}: timestamp {} ({got}) is earlier than the last event's {} ({previous}); \
             timestamps in a stream never decrease",
            Rfc3339(*got),
            Rfc3339(*previous)
        ),
        Error::Full { needed, available } => format!(
            "{file} is full: the event needs {} and {} are free; start a new stream",
            units::size_exact(*needed),
            units::size_exact(*available)
        ),
        Error::PayloadTooLarge { len } => format!(
            "{file}: a payload of {} is larger than the maximum of {} an event can hold",
            units::size_exact(*len as u64),
            units::size_exact(u64::from(u32::MAX))
        ),
        Error::OffsetOutOfRange { offset, published } => format!(
            "{file}: byte offset {offset} is outside the stream's events (24 to {published})"
        ),
        Error::BadCapacity {
            path,
            capacity,
            minimum,
            maximum,
        } => format!(
            "capacity {capacity} for {} is out of range: it must be {minimum} to {maximum} bytes",
            path.display()
        ),
        // Poisoned and Regressed name the file and say what to do; future variants too.
        other => {
            let message = chain(other);
            let name = file.to_string();
            if message.contains(&name) {
                message
            } else {
                format!("{name}: {message}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operating system's reason follows the library's message, in words.
    #[test]
    fn a_chain_ends_with_the_reason() {
        let error = Error::Io {
            op: "read cursor",
            path: "app/cursors/billing".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            chain(&error),
            "read cursor app/cursors/billing: permission denied"
        );
        let message = describe(Path::new("app"), &error);
        assert!(message.ends_with(": permission denied"), "{message}");
    }
}
