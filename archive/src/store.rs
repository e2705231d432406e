//! Where an archive lives (`s3://BUCKET/PREFIX`) and the connection to it: endpoint,
//! region and credentials the way S3 tools take them (flags, `AWS_*` variables, the
//! `~/.aws/credentials` and `~/.aws/config` profile files).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// The longest prefix: an S3 key is at most 1024 bytes, and the longest object name of an
/// archive (an index's) takes 75 of them, and the `/` before it one.
const MAX_PREFIX: usize = 1024 - 76;

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
    /// with empty, `.` or `..` parts or too long for S3's keys to hold the archive's
    /// object names under it.
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
        if prefix.len() > MAX_PREFIX {
            return Err(bad(
                "the prefix is longer than S3's 1024-byte keys leave room for (948 bytes)",
            ));
        }
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
/// (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; a variable set to the empty string
/// counts as unset), then from the profile (`AWS_PROFILE`, else `default`) in
/// `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`). Wherever the endpoint and the region come from,
/// [`Archive::connect`] checks them before any request is built.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The endpoint URL, for S3-compatible stores (`http://127.0.0.1:8333`): `http://`
    /// or `https://`, a host, perhaps a port and a path.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when nothing says otherwise): letters, digits, `-`, `_`.
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
    /// [`Error::Url`] for a bad URL; [`Error::Malformed`] for an endpoint or a region
    /// that is not one (an endpoint without `http://` or `https://`, a region with a
    /// space), naming where it came from; [`Error::Settings`] for an unreadable profile
    /// file or settings the client refuses.
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
        let profile = Profile::load()?;
        let env = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (v, Some(name.to_owned())))
        };
        let endpoint = settings
            .endpoint
            .clone()
            .map(|v| (v, None))
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"))
            .or_else(|| profile.origin("endpoint_url"))
            .map(|(value, origin)| checked_endpoint(&value, origin))
            .transpose()?;
        let (region, region_origin) = settings
            .region
            .clone()
            .map(|v| (v, None))
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| profile.origin("region"))
            .unwrap_or_else(|| ("us-east-1".to_owned(), None));
        let region = checked_region(&region, region_origin.clone())?;
        // The URL every request is made from: the client turns it into an `http::Uri`
        // (and fails on one that is not) only when it signs the first request.
        let base = match &endpoint {
            Some((url, _)) => url.clone(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        if format!("{base}/{}/x", location.bucket())
            .parse::<http::Uri>()
            .is_err()
        {
            return Err(match endpoint {
                Some((url, origin)) => Error::Malformed {
                    setting: "endpoint",
                    value: url,
                    origin,
                    reason: "not a URL a request can be made to".into(),
                },
                None => Error::Malformed {
                    setting: "region",
                    value: region,
                    origin: region_origin,
                    reason: "not a region a request can be made to".into(),
                },
            });
        }
        let endpoint = endpoint.map(|(url, _)| url);
        let mut builder = builder_from_env()
            .with_bucket_name(location.bucket())
            .with_region(&region);
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none_or(|v| v.is_empty())
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

/// The longest endpoint URL accepted: far more than any store's address needs, and far
/// below the longest URI a request can carry.
const MAX_ENDPOINT: usize = 1024;
/// The longest region name accepted (AWS's are under 20 characters).
const MAX_REGION: usize = 64;

/// A builder with what the `AWS_*` variables say (keys, token, container and web-identity
/// credentials, encryption, ...) but the endpoint and the region, which
/// [`Archive::connect`] decides and checks itself.
fn builder_from_env() -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
            continue;
        };
        if !key.starts_with("AWS_") {
            continue;
        }
        let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        if !matches!(
            config,
            AmazonS3ConfigKey::Endpoint
                | AmazonS3ConfigKey::S3Endpoint
                | AmazonS3ConfigKey::Region
                | AmazonS3ConfigKey::DefaultRegion
        ) {
            builder = builder.with_config(config, value);
        }
    }
    builder
}

/// The endpoint `value` (which came from `origin`) as the client will be given it:
/// `http://` or `https://`, a host, perhaps a port and a path, nothing else; normalized
/// (scheme and host in lower case, the path's unusual characters percent-encoded, no
/// trailing `/`).
///
/// # Errors
/// [`Error::Malformed`] saying what is wrong: empty, no scheme (with the value written
/// with `http://` and with `https://`), another scheme, no host, a host name with
/// characters no host has, a user name or password, a query or fragment, or too long.
fn checked_endpoint(value: &str, origin: Option<String>) -> Result<(String, Option<String>)> {
    let bad = |value: &str, reason: String| Error::Malformed {
        setting: "endpoint",
        value: value.to_owned(),
        origin: origin.clone(),
        reason,
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(bad(
            value,
            "empty; an endpoint is a URL such as http://127.0.0.1:9000 or https://s3.example.com"
                .into(),
        ));
    }
    if value.len() > MAX_ENDPOINT {
        return Err(bad(
            value,
            format!(
                "{} bytes; an endpoint is at most {MAX_ENDPOINT}",
                value.len()
            ),
        ));
    }
    let parsed = url::Url::parse(trimmed);
    let web = parsed
        .as_ref()
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !web && !trimmed.contains("://") {
        return Err(bad(
            value,
            format!("no scheme; write http://{trimmed} or https://{trimmed}"),
        ));
    }
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(url::ParseError::EmptyHost) => {
            return Err(bad(value, "no host; write http://HOST[:PORT]".into()));
        }
        Err(e) => return Err(bad(value, format!("not a URL ({e})"))),
    };
    if !web {
        return Err(bad(
            value,
            format!(
                "the scheme is {}://; an endpoint starts with http:// or https://",
                parsed.scheme()
            ),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let mut shown = parsed.clone();
        // Neither fails on an http(s) URL with a host.
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        return Err(bad(
            shown.as_str(),
            "holds a user name or password; the keys come from AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY or the profile"
                .into(),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(
            value,
            "has a query or a fragment (? or #); an endpoint is a scheme, a host, a port \
             and at most a path"
                .into(),
        ));
    }
    match parsed.host() {
        None => return Err(bad(value, "no host; write http://HOST[:PORT]".into())),
        Some(url::Host::Domain(name))
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) =>
        {
            return Err(bad(
                value,
                format!("the host {name:?} is not a host name (letters, digits, - . _)"),
            ));
        }
        Some(_) => {}
    }
    Ok((parsed.as_str().trim_end_matches('/').to_owned(), origin))
}

/// The region `value` (which came from `origin`), if it is one: 1 to 64 letters, digits,
/// `-` and `_` (it becomes part of a host name and of every request's signature).
///
/// # Errors
/// [`Error::Malformed`] saying what is wrong.
fn checked_region(value: &str, origin: Option<String>) -> Result<String> {
    let reason = if value.is_empty() {
        "empty; a region is a name such as us-east-1".to_owned()
    } else if value.len() > MAX_REGION {
        format!("{} bytes; a region is at most {MAX_REGION}", value.len())
    } else if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        format!("{c:?} is not allowed; a region is letters, digits, - and _, such as us-east-1")
    } else {
        return Ok(value.to_owned());
    };
    Err(Error::Malformed {
        setting: "region",
        value: value.to_owned(),
        origin,
        reason,
    })
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
struct Profile {
    /// The profile's name.
    name: String,
    values: HashMap<String, String>,
}

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
        Ok(Self { name, values })
    }

    fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// The value of `key` and where it came from.
    fn origin(&self, key: &str) -> Option<(String, Option<String>)> {
        self.get(key)
            .map(|v| (v, Some(format!("{key} of profile {}", self.name))))
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
        let longest = format!("s3://bkt/{}", "a".repeat(MAX_PREFIX));
        let at = Location::parse(&longest).expect("valid");
        let name = crate::layout::index_name(99_999_999, u64::MAX, i64::MIN, i64::MAX);
        assert_eq!(at.key(&name).as_ref().len(), 1024);
        for bad in [
            "http://b/x",
            "s3://",
            "s3://B/x",
            "s3://bkt/a//b",
            "s3://bkt/../x",
            "bk/x",
            &format!("s3://bkt/{}", "a".repeat(MAX_PREFIX + 1)),
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::Url { .. })),
                "{bad}"
            );
        }
    }

    /// The reason `checked_endpoint` gives for `value`, or its normalized form.
    fn endpoint(value: &str) -> Result<String, String> {
        match checked_endpoint(value, Some("AWS_ENDPOINT_URL".into())) {
            Ok((url, _)) => Ok(url),
            Err(Error::Malformed {
                setting, origin, ..
            }) if setting != "endpoint" || origin.as_deref() != Some("AWS_ENDPOINT_URL") => {
                panic!("{value}: the error names another setting or origin")
            }
            Err(e @ Error::Malformed { .. }) => Err(e.to_string()),
            Err(e) => panic!("{value}: {e}"),
        }
    }

    #[test]
    fn endpoints_are_checked_and_say_what_is_wrong() {
        for (value, expected) in [
            ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
            ("https://s3.example.com/", "https://s3.example.com"),
            ("HTTP://Minio:9000/base/", "http://minio:9000/base"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("http://my_host:1/a b", "http://my_host:1/a%20b"),
            (" http://h ", "http://h"),
        ] {
            assert_eq!(endpoint(value).as_deref(), Ok(expected), "{value}");
        }
        for (value, words) in [
            (
                "localhost:9000",
                &[
                    "no scheme",
                    "http://localhost:9000",
                    "https://localhost:9000",
                ][..],
            ),
            ("minio", &["no scheme", "http://minio or https://minio"]),
            ("127.0.0.1:9000", &["no scheme", "http://127.0.0.1:9000"]),
            ("", &["empty", "http://"]),
            ("   ", &["empty"]),
            ("http://", &["no host"]),
            ("https://:9000", &["no host"]),
            ("ftp://h", &["the scheme is ftp://", "http:// or https://"]),
            ("http://h:99999", &["not a URL", "port"]),
            ("http://a b", &["not a URL"]),
            ("http://a{b}", &["not a host name"]),
            ("http://h/?x=1", &["query or a fragment"]),
            ("http://h/#x", &["query or a fragment"]),
            ("http://me:secret@h", &["user name or password"]),
        ] {
            let reason = endpoint(value).expect_err(value);
            assert!(
                reason.starts_with(&format!("endpoint {value:?} (from AWS_ENDPOINT_URL): "))
                    || value.contains('@'),
                "{value}: {reason}"
            );
            for word in words {
                assert!(reason.contains(word), "{value}: {word:?} not in {reason}");
            }
            assert!(!reason.contains("secret"), "{reason}");
        }
        assert!(endpoint(&format!("http://h/{}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn regions_are_checked_and_say_what_is_wrong() {
        for good in ["us-east-1", "auto", "garage", "my_region", "EU-1"] {
            assert_eq!(checked_region(good, None).ok().as_deref(), Some(good));
        }
        for (bad, word) in [
            ("us east", "' ' is not allowed"),
            ("", "empty"),
            ("us-east-1/x", "'/' is not allowed"),
            ("r\n", "'\\n' is not allowed"),
            (&"r".repeat(65), "at most 64"),
        ] {
            let e = checked_region(bad, Some("AWS_REGION".into())).expect_err(bad);
            let text = e.to_string();
            assert!(
                matches!(
                    e,
                    Error::Malformed {
                        setting: "region",
                        ..
                    }
                ),
                "{bad}"
            );
            assert!(
                text.contains(word) && text.contains("(from AWS_REGION)"),
                "{text}"
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
