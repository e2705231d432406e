//! The archive's errors.

use std::path::PathBuf;

/// Why an archive operation failed.
///
/// Every variant names what it is about (the URL, the object key, the log) so that one
/// line of it tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive URL is not `s3://BUCKET[/PREFIX]`.
    #[error("{url}: not an archive URL ({reason}); expected s3://BUCKET/PREFIX")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The connection settings (endpoint, region, credentials, profile files) are unusable.
    #[error("archive settings: {reason}")]
    Settings {
        /// What is wrong.
        reason: String,
    },
    /// The endpoint or the region is malformed: it is refused before any request is
    /// built. Fix the value where `origin` says it came from.
    #[error("{setting} {value:?}{}: {reason}", from_text(.origin.as_deref()))]
    Malformed {
        /// Which setting: `endpoint` or `region`.
        setting: &'static str,
        /// The value as given (a password in an endpoint is left out).
        value: String,
        /// Where the value came from (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`),
        /// `None` for a value given in [`Settings`](crate::Settings).
        origin: Option<String>,
        /// What is wrong with it, and how to write it.
        reason: String,
    },
    /// The object store could not be reached (refused, timed out, name not resolved).
    #[error("{endpoint}: the object store cannot be reached ({reason})")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The innermost cause, such as `Connection refused (os error 111)`.
        reason: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The store refused the credentials or the request (HTTP 401 or 403).
    #[error(
        "s3://{bucket}: access denied ({code}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the profile)"
    )]
    Denied {
        /// The bucket.
        bucket: String,
        /// The store's error code, such as `SignatureDoesNotMatch` or `InvalidAccessKeyId`.
        code: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The bucket does not exist.
    #[error("s3://{bucket}: no such bucket")]
    NoBucket {
        /// The bucket.
        bucket: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// A request about one object failed.
    #[error("{key}: {op} failed")]
    Store {
        /// What was being done: `upload`, `read`, `list`, `delete`.
        op: &'static str,
        /// The object key (or the prefix, for a listing).
        key: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// An object of the archive is damaged: truncated, changed, or not an archive object.
    #[error("{key}: damaged archive object at byte {offset}: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// Where in the object the damage was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// There is no archive at the URL: no object directly under its prefix has an
    /// archive's name. The prefix is mistyped, or nothing was archived there yet (an
    /// archive holds no object until its first segment is uploaded).
    #[error("no archive at {url} (no segment or index object under it{})", nested_text(.nested))]
    NoArchive {
        /// The URL.
        url: String,
        /// Prefixes below it that hold archive objects, as `s3://` URLs (a few at most).
        nested: Vec<String>,
    },
    /// Segments are missing from the archive between the segments it holds (or after
    /// the newest): their events cannot be read. Restore from another copy, or read
    /// around the gap.
    #[error("{url}: {gap}")]
    Missing {
        /// The archive.
        url: String,
        /// The missing segments.
        gap: crate::ArchiveGap,
    },
    /// An upload did not arrive as sent: the store's checksum of the object differs from
    /// the segment's.
    #[error("{key}: the uploaded object does not match the segment (sent {sent}, stored {stored})")]
    UploadMismatch {
        /// The object key.
        key: String,
        /// The digest of what was sent.
        sent: String,
        /// The digest the store reports.
        stored: String,
    },
    /// The archive holds, under a segment's sequence number, a segment that is not the
    /// local one: the prefix archives another log. Nothing is uploaded over it.
    #[error(
        "{key}: the archive holds another log's segment where {path} would go; archive each log under its own prefix"
    )]
    Foreign {
        /// The archive's index object.
        key: String,
        /// The local segment.
        path: PathBuf,
    },
    /// A local log operation failed.
    #[error(transparent)]
    Log(#[from] evstream::Error),
    /// A local file operation failed (restore's output).
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Restore refused to start while another restore to the same log is under way: its
    /// writer holds the log being built (`temp`, `.NAME.restoring` beside `path`).
    #[error(
        "{}: another restore to it is under way (building {}); wait for it to end",
        path.display(),
        temp.display()
    )]
    Restoring {
        /// The output path.
        path: PathBuf,
        /// The log the other restore is building.
        temp: PathBuf,
    },
    /// Restore refused an output that already exists.
    #[error("{path}: already exists; restore writes a new log")]
    Exists {
        /// The output path.
        path: PathBuf,
    },
}

/// ` (from ORIGIN)`, or nothing.
fn from_text(origin: Option<&str>) -> String {
    origin.map_or_else(String::new, |o| format!(" (from {o})"))
}

/// `; archives below it: URL, URL`, or nothing.
fn nested_text(nested: &[String]) -> String {
    if nested.is_empty() {
        String::new()
    } else {
        format!("; archives below it: {}", nested.join(", "))
    }
}

/// The archive's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
