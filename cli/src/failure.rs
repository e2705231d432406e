//! How a command fails: one `error:` line on standard error in the user's terms, and the
//! exit code (1 for failures found in files or data, 2 for usage errors).

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use evstream::Error;

/// Exit code for a failure found in a file or its data.
const DATA_FAILURE: u8 = 1;
/// Exit code for a usage error (clap uses the same).
const USAGE: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT, as a shell reports a process it ended).
const INTERRUPTED: u8 = 130;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Standard output was closed by its reader (`evstream cat big.evs | head`): stop
    /// quietly with success, as if the output had been wanted no further.
    ClosedOutput,
    /// Ctrl-C ended a command that stops cleanly on it (`--follow`): exit 130, no message.
    Interrupted,
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

    /// A library error met while working on `path`, in the library's words
    /// ([`Error::message_for`]), which the Python module's exceptions share: the tool adds
    /// only hints that name its own options (`--wait`) and what it did before the error,
    /// with [`Failure::with_context`].
    pub fn stream(path: &Path, error: &Error) -> Self {
        let code = match error {
            Error::BadCapacity { .. } => USAGE,
            _ => DATA_FAILURE,
        };
        Self::Error {
            message: error.message_for(path),
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
            Self::Interrupted => ExitCode::from(INTERRUPTED),
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

/// The operating system's reason in words, without the `(os error N)` suffix, worded as
/// the library words the causes of its errors.
pub fn os_reason(error: &io::Error) -> String {
    Error::os_reason(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operating system's reason follows the library's message, in words, and an
    /// error about another file than the argument names both.
    #[test]
    fn a_line_ends_with_the_reason() {
        let error = Error::Io {
            op: "read cursor",
            path: "app/cursors/billing".into(),
            source: io::Error::from_raw_os_error(13),
        };
        let Failure::Error { message, .. } = Failure::stream(Path::new("app"), &error) else {
            panic!("a library error is reported");
        };
        assert_eq!(
            message,
            "cannot read cursor app/cursors/billing: permission denied"
        );
        let Failure::Error { message, .. } = Failure::stream(Path::new("other"), &error) else {
            panic!("a library error is reported");
        };
        assert_eq!(
            message,
            "other: cannot read cursor app/cursors/billing: permission denied"
        );
    }
}
