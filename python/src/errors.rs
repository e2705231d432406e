//! `evstream::Error` as Python exceptions: a base class `evstream.Error` and one subclass
//! per variant, each carrying the error's line as the command-line tool prints it
//! ([`evstream::Error::message_for`] the file the call worked on), and the fields a caller
//! acts on (`path`, `offset`, ...) as attributes.

use std::path::Path;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyModule;

pyo3::create_exception!(
    evstream,
    Error,
    PyException,
    "Base class of every error the store reports."
);

/// Declares the exception classes, each a subclass of `evstream.Error`.
macro_rules! variants {
    ($($name:ident: $doc:literal),* $(,)?) => {
        $(pyo3::create_exception!(evstream, $name, Error, $doc);)*

        /// Adds the base class (as `Error`) and every variant's class to the module.
        pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = module.py();
            module.add("Error", py.get_type::<Error>())?;
            $(module.add(stringify!($name), py.get_type::<$name>())?;)*
            Ok(())
        }
    };
}

variants! {
    Io: "An operating system call failed (`errno`, `path`).",
    AlreadyExists: "The file or directory to create already exists.",
    NotAFile: "The path is a directory, FIFO or device, not a stream file.",
    Locked: "Another writer holds the stream or log, or the object was opened by another process (`path`).",
    BadCapacity: "A stream's capacity is out of range.",
    BadHeader: "The stream's header is not valid.",
    Corrupt: "An event is damaged (`offset`, `watermark`).",
    NotAStream: "The file is not an evstream stream; it was left unchanged.",
    DamagedTrailer: "The stream's trailer is damaged (`offset`).",
    NoRoomForTrailer: "A version 1 stream has no room for the version 2 trailer.",
    Sealed: "The stream is sealed and takes no more events.",
    Recovered: "The stream was recovered under this reader; reopen it.",
    ReadersPresent: "Recovery must rewrite bytes that open readers may be viewing.",
    OutOfOrder: "A timestamp is lower than the previous event's (`previous`, `got`).",
    Full: "The stream is full (`needed`, `available`).",
    PayloadTooLarge: "A payload exceeds the maximum an event can hold.",
    Poisoned: "An earlier flush failed; the writer accepts no more appends.",
    OffsetOutOfRange: "An offset is outside the published events, or no event starts at it (`offset`).",
    Regressed: "The published write offset moved back under a reader.",
    NotALog: "The directory is not a log.",
    UnsupportedLogVersion: "The log is of a version this build does not read (`version`, `supported`).",
    EventTooLarge: "An event does not fit in a segment of the log.",
    Retired: "Retention deleted the position (`first_segment`).",
    NoSuchPosition: "The position is not in the log, or no event starts at it (`position`).",
    BadCursor: "A cursor's name or file is not valid (`name`).",
    TimeOutOfRange: "A time no timestamp holds: before 1677-09-21 or after 2262-04-11 UTC (`unix_nanos`).",
}

/// `error`, met while working on the stream file or log directory `file`, as an instance
/// of its Python class, with its fields as attributes.
pub fn to_py(error: evstream::Error, file: &Path) -> PyErr {
    let text = error.message_for(file);
    Python::attach(|py| {
        let (err, attrs): (PyErr, Vec<(&str, Py<PyAny>)>) = match &error {
            evstream::Error::Io { op, path, source } => (
                Io::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("op", str_obj(py, op)),
                    ("errno", opt(py, source.raw_os_error())),
                ],
            ),
            evstream::Error::AlreadyExists { path } => (
                AlreadyExists::new_err(text),
                vec![("path", path_obj(py, path))],
            ),
            evstream::Error::NotAFile { path, kind } => (
                NotAFile::new_err(text),
                vec![("path", path_obj(py, path)), ("kind", str_obj(py, kind))],
            ),
            evstream::Error::Locked { path } => {
                (Locked::new_err(text), vec![("path", path_obj(py, path))])
            }
            evstream::Error::BadCapacity {
                path,
                capacity,
                minimum,
                maximum,
            } => (
                BadCapacity::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("capacity", int(py, *capacity)),
                    ("minimum", int(py, *minimum)),
                    ("maximum", int(py, *maximum)),
                ],
            ),
            evstream::Error::BadHeader { path, reason } => (
                BadHeader::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("reason", str_obj(py, &reason.to_string())),
                ],
            ),
            evstream::Error::Corrupt {
                path,
                offset,
                watermark,
                reason,
            } => (
                Corrupt::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("offset", int(py, *offset)),
                    ("watermark", int(py, *watermark)),
                    ("reason", str_obj(py, &reason.to_string())),
                ],
            ),
            evstream::Error::NotAStream { path, reason } => (
                NotAStream::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("reason", str_obj(py, &reason.to_string())),
                ],
            ),
            evstream::Error::DamagedTrailer { path, offset, .. } => (
                DamagedTrailer::new_err(text),
                vec![("path", path_obj(py, path)), ("offset", int(py, *offset))],
            ),
            evstream::Error::NoRoomForTrailer {
                path,
                write_offset,
                trailer_at,
            } => (
                NoRoomForTrailer::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("write_offset", int(py, *write_offset)),
                    ("trailer_at", int(py, *trailer_at)),
                ],
            ),
            evstream::Error::Sealed { path } => {
                (Sealed::new_err(text), vec![("path", path_obj(py, path))])
            }
            evstream::Error::Recovered { path, was, now } => (
                Recovered::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("was", int(py, *was)),
                    ("now", int(py, *now)),
                ],
            ),
            evstream::Error::ReadersPresent { path } => (
                ReadersPresent::new_err(text),
                vec![("path", path_obj(py, path))],
            ),
            evstream::Error::OutOfOrder { previous, got } => (
                OutOfOrder::new_err(text),
                vec![("previous", int(py, *previous)), ("got", int(py, *got))],
            ),
            evstream::Error::Full { needed, available } => (
                Full::new_err(text),
                vec![
                    ("needed", int(py, *needed)),
                    ("available", int(py, *available)),
                ],
            ),
            evstream::Error::PayloadTooLarge { len } => {
                (PayloadTooLarge::new_err(text), vec![("len", int(py, *len))])
            }
            evstream::Error::Poisoned { path } => {
                (Poisoned::new_err(text), vec![("path", path_obj(py, path))])
            }
            evstream::Error::OffsetOutOfRange { offset, published } => (
                OffsetOutOfRange::new_err(text),
                vec![
                    ("offset", int(py, *offset)),
                    ("published", int(py, *published)),
                ],
            ),
            evstream::Error::Regressed { path, was, now } => (
                Regressed::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("was", int(py, *was)),
                    ("now", int(py, *now)),
                ],
            ),
            evstream::Error::NotALog { path, reason } => (
                NotALog::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("reason", str_obj(py, reason)),
                ],
            ),
            evstream::Error::UnsupportedLogVersion {
                path,
                version,
                supported,
            } => (
                UnsupportedLogVersion::new_err(text),
                vec![
                    ("path", path_obj(py, path)),
                    ("version", int(py, *version)),
                    ("supported", int(py, *supported)),
                ],
            ),
            evstream::Error::EventTooLarge {
                needed,
                segment_size,
                largest,
            } => (
                EventTooLarge::new_err(text),
                vec![
                    ("needed", int(py, *needed)),
                    ("segment_size", int(py, *segment_size)),
                    ("largest", int(py, *largest)),
                ],
            ),
            evstream::Error::Retired {
                position,
                first_segment,
            } => (
                Retired::new_err(text),
                vec![
                    ("position", str_obj(py, &position.to_string())),
                    ("first_segment", int(py, *first_segment)),
                ],
            ),
            evstream::Error::NoSuchPosition { position, end } => (
                NoSuchPosition::new_err(text),
                vec![
                    ("position", str_obj(py, &position.to_string())),
                    ("end", str_obj(py, &end.to_string())),
                ],
            ),
            evstream::Error::BadCursor { name, reason } => (
                BadCursor::new_err(text),
                vec![("name", str_obj(py, name)), ("reason", str_obj(py, reason))],
            ),
            evstream::Error::TimeOutOfRange { unix_nanos } => (
                TimeOutOfRange::new_err(text),
                vec![("unix_nanos", int(py, *unix_nanos))],
            ),
            // A variant added to the store later: the base class, with the same message.
            _ => (Error::new_err(text), Vec::new()),
        };
        let value = err.value(py);
        for (name, attr) in attrs {
            // An attribute that cannot be set leaves the message, which says it all.
            let _ = value.setattr(name, attr);
        }
        err
    })
}

/// `Locked`, for a `class` object on `path` that process `owner` opened, used in process
/// `here` (forked from it since), where it would share the owner's locks.
pub fn opened_elsewhere(class: &str, path: &Path, owner: u32, here: u32) -> PyErr {
    let text = format!(
        "{}: this {class} was opened by process {owner}; a process forked from it cannot \
         use it: open it again in this process ({here})",
        path.display()
    );
    Python::attach(|py| {
        let err = Locked::new_err(text);
        let _ = err.value(py).setattr("path", path_obj(py, path));
        err
    })
}

/// `error`, met by an iterator of the stream file `file` that the caller started at the
/// byte offset `given` (`None` once it read an event there): damage found exactly there
/// means that no event starts at that offset, the caller's mistake rather than the
/// file's (`OffsetOutOfRange`, in the CLI's words); any other error as [`to_py`].
pub fn at_offset(error: evstream::Error, file: &Path, given: Option<u64>) -> PyErr {
    match &error {
        evstream::Error::Corrupt { offset, reason, .. } if Some(*offset) == given => {
            let text = format!(
                "{}: no valid event starts at byte offset {offset} ({reason}); use an \
                 event's offset, or int(event.next_position) to start after it",
                file.display()
            );
            Python::attach(|py| {
                let err = OffsetOutOfRange::new_err(text);
                let _ = err.value(py).setattr("offset", int(py, *offset));
                // Inside the published events: where they end is not known here.
                let _ = err.value(py).setattr("published", py.None());
                err
            })
        }
        _ => to_py(error, file),
    }
}

/// `error`, met by an iterator of the log `dir` that the caller started at the position
/// `given` (`None` once it read an event there): damage found exactly there means that
/// no event starts at that position (`NoSuchPosition`, in the words of the CLI's
/// `cursor set`); any other error as [`to_py`].
pub fn at_position(error: evstream::Error, dir: &Path, given: Option<evstream::Position>) -> PyErr {
    match (&error, given) {
        (evstream::Error::Corrupt { offset, reason, .. }, Some(position))
            if *offset == position.offset() =>
        {
            let text = format!(
                "{}: no event starts at position {position} ({reason}); use an event's \
                 position or next_position, start_position() or end()",
                dir.display()
            );
            Python::attach(|py| {
                let err = NoSuchPosition::new_err(text);
                let _ = err
                    .value(py)
                    .setattr("position", str_obj(py, &position.to_string()));
                // Inside the log: where it ends is not known here.
                let _ = err.value(py).setattr("end", py.None());
                err
            })
        }
        _ => to_py(error, dir),
    }
}

fn int<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> Py<PyAny> {
    value.into_py_any(py).unwrap_or_else(|_| py.None())
}

fn opt<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: Option<T>) -> Py<PyAny> {
    value.map_or_else(|| py.None(), |v| int(py, v))
}

fn str_obj(py: Python<'_>, text: &str) -> Py<PyAny> {
    int(py, text)
}

fn path_obj(py: Python<'_>, path: &std::path::Path) -> Py<PyAny> {
    int(py, path)
}

/// Extension: `?` on a store result inside a Python method.
pub trait IntoPy<T> {
    /// The result with its error as a Python exception, its message naming `file` (the
    /// stream file or log directory the call worked on) as the command-line tool's does.
    fn py_err(self, file: &Path) -> PyResult<T>;
}

impl<T> IntoPy<T> for evstream::Result<T> {
    fn py_err(self, file: &Path) -> PyResult<T> {
        self.map_err(|e| to_py(e, file))
    }
}
