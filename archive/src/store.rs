//! Where an archive lives (`s3://BUCKET/PREFIX`) and the connection to it: endpoint,
//! region and credentials the way S3 tools take them (flags, `AWS_*` variables, the
//! `~/.aws/credentials` and `~/.aws/config` profile files).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// An archive's address: a bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    bucket: String,
    prefix: Key,
}

impl Location {
    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    ///
    /// # Errors
    /// [`Error::Url`] for another scheme, an empty or invalid bucket name, or a prefix
    /// with empty, `.` or `..` parts.
    ///
    /// # Examples
    /// ```
    /// let at = evstream_archive::Location::parse("s3://events/app/2026")?;
    /// assert_eq!(at.bucket(), "events");
    /// assert_eq!(at.prefix(), "app/2026");
    /// # Ok::<(), evstream_archive::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason| Error::Url {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("the scheme is not s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad("a bucket name is 3 to 63 of a-z 0-9 . -"));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(bad("the prefix has an empty, . or .. part"));
        }
        let prefix = Key::parse(prefix).map_err(|_| bad("the prefix is not a valid object key"))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Whether `text` looks like an archive URL (starts with `s3://`).
    pub fn is_url(text: &str) -> bool {
        text.starts_with("s3://")
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without slashes at either end (empty for a whole bucket).
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref()
    }

    /// The key of object `name` under the prefix.
    pub(crate) fn key(&self, name: &str) -> Key {
        self.prefix.clone().join(name)
    }

    pub(crate) fn prefix_key(&self) -> &Key {
        &self.prefix
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.as_ref().is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the object store. Unset fields come from the environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), then from the profile (`AWS_PROFILE`, else `default`) in
/// `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The endpoint URL, for S3-compatible stores (`http://127.0.0.1:8333`).
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when nothing says otherwise).
    pub region: Option<String>,
    /// How long a failing request is retried (with backoff) before it is reported.
    pub retry_for: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            retry_for: Duration::from_secs(60),
        }
    }
}

/// A connection to an archive: the store client, the location, and a count of the
/// requests made (for measurements).
#[derive(Debug, Clone)]
pub struct Archive {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The same client without retries, for the first request (a store that is down
    /// is reported at once).
    pub(crate) probe: Arc<dyn ObjectStore>,
    pub(crate) location: Location,
    pub(crate) endpoint: String,
    pub(crate) requests: Arc<AtomicU64>,
    /// How long an upload that fails for a passing reason is tried again.
    pub(crate) retry_for: Duration,
}

impl Archive {
    /// Connects to the archive at `url` (no request is made yet).
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL; [`Error::Settings`] for an unreadable profile file
    /// or settings the client refuses.
    ///
    /// # Examples
    /// ```
    /// use evstream_archive::{Archive, Settings};
    /// let settings = Settings {
    ///     endpoint: Some("http://127.0.0.1:8333".into()),
    ///     ..Settings::default()
    /// };
    /// let archive = Archive::connect("s3://events/app", &settings)?;
    /// assert_eq!(archive.location().bucket(), "events");
    /// # Ok::<(), evstream_archive::Error>(())
    /// ```
    pub fn connect(url: &str, settings: &Settings) -> Result<Self> {
        let location = Location::parse(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(location.bucket());
        let profile = Profile::load()?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"))
            .or_else(|| profile.get("endpoint_url"));
        let region = settings
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| profile.get("region"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(&region);
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if env("AWS_ACCESS_KEY_ID").is_none()
            && let (Some(id), Some(secret)) = (
                profile.get("aws_access_key_id"),
                profile.get("aws_secret_access_key"),
            )
        {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = profile.get("aws_session_token") {
                builder = builder.with_token(token);
            }
        }
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(120))
            .with_allow_http(
                endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        builder = builder.with_client_options(options);
        let retry = |max_retries, retry_timeout| RetryConfig {
            max_retries,
            retry_timeout,
            ..RetryConfig::default()
        };
        let settings_error = |e: object_store::Error| Error::Settings {
            reason: e.to_string(),
        };
        let probe = builder
            .clone()
            .with_retry(retry(0, Duration::from_secs(5)))
            .build()
            .map_err(settings_error)?;
        let store = builder
            .with_retry(retry(1000, settings.retry_for))
            .build()
            .map_err(settings_error)?;
        Ok(Self {
            store: Arc::new(store),
            probe: Arc::new(probe),
            location,
            endpoint: endpoint.unwrap_or_else(|| format!("s3.{region}.amazonaws.com")),
            requests: Arc::new(AtomicU64::new(0)),
            retry_for: settings.retry_for,
        })
    }

    /// Where the archive is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Requests made so far through this connection (and its clones).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Turns a client error about `key` into the archive's error: unreachable store and
    /// refused credentials get their own variants.
    pub(crate) fn error(&self, op: &'static str, key: &Key, e: object_store::Error) -> Error {
        classify(&self.endpoint, &self.location, op, key.as_ref(), e)
    }
}

pub(crate) fn classify(
    endpoint: &str,
    location: &Location,
    op: &'static str,
    key: &str,
    e: object_store::Error,
) -> Error {
    let text = chain(&e);
    let code = s3_code(&text);
    let bucket = location.bucket().to_owned();
    let denied_code = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ]
    .into_iter()
    .find(|c| code.as_deref() == Some(*c));
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::Denied {
            bucket,
            code: code.unwrap_or_else(|| "HTTP 401/403".to_owned()),
            source: e,
        },
        e if denied_code.is_some() || text.contains("403 Forbidden") => Error::Denied {
            bucket,
            code: code.unwrap_or_else(|| "HTTP 403".to_owned()),
            source: e,
        },
        e if code.as_deref() == Some("NoSuchBucket") => Error::NoBucket { bucket, source: e },
        e if code.is_none() && unreachable(&text) => Error::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: innermost(&e),
            source: e,
        },
        e => Error::Store {
            op,
            key: format!("s3://{bucket}/{key}"),
            source: e,
        },
    }
}

/// The whole chain of an error's messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The last cause of an error's chain.
fn innermost(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// The `<Code>` of an S3 error body quoted in an error's text.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let rest = text.get(start..)?;
    let end = rest.find("</Code>")?;
    rest.get(..end).map(str::to_owned)
}

fn unreachable(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "connection refused",
        "error sending request",
        "connect",
        "timed out",
        "dns error",
    ]
    .iter()
    .any(|needle| text.contains(needle))
        && !text.contains("status code")
}

/// The settings of one profile of `~/.aws/credentials` and `~/.aws/config`.
#[derive(Debug, Default)]
struct Profile(HashMap<String, String>);

impl Profile {
    fn load() -> Result<Self> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = env("HOME").map(PathBuf::from);
        let name = std::env::var("AWS_PROFILE")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let credentials = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let mut values = HashMap::new();
        // The config file names its sections `[profile NAME]` (but `[default]`).
        let config_section = if name == "default" {
            name.clone()
        } else {
            format!("profile {name}")
        };
        for (path, section) in [(config, config_section), (credentials, name.clone())] {
            let Some(path) = path else { continue };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Settings {
                        reason: format!("{}: {e}", path.display()),
                    });
                }
            };
            // Credentials override the config file's values for the same key.
            values.extend(ini_section(&text, &section));
        }
        Ok(Self(values))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// The `key = value` lines of section `[name]` of an INI text.
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            out.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        let at = Location::parse("s3://bucket-1/a/b/").expect("valid");
        assert_eq!((at.bucket(), at.prefix()), ("bucket-1", "a/b"));
        assert_eq!(at.to_string(), "s3://bucket-1/a/b");
        assert_eq!(Location::parse("s3://bucket").expect("valid").prefix(), "");
        for bad in [
            "http://b/x",
            "s3://",
            "s3://B/x",
            "s3://bk/a//b",
            "s3://bk/../x",
            "bk/x",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Url { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn profile_sections_are_read_by_name() {
        let text = "[default]\nregion = eu-west-1\n[profile other]\naws_access_key_id=AK\n";
        assert_eq!(
            ini_section(text, "profile other"),
            vec![("aws_access_key_id".to_owned(), "AK".to_owned())]
        );
        assert_eq!(
            ini_section(text, "default"),
            vec![("region".to_owned(), "eu-west-1".to_owned())]
        );
    }
}
