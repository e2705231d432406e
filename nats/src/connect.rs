//! Connecting to NATS: the server list, credentials, TLS, and reconnection with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::report::{Report, Reporter};

/// How to reach and authenticate to a NATS deployment.
///
/// ```
/// use evstream_nats::Connection;
///
/// let connection = Connection::new(["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"])
///     .user_and_password("shipper", "s3cret");
/// assert_eq!(connection.servers().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    servers: Vec<String>,
    user: Option<(String, String)>,
    credentials: Option<PathBuf>,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    require_tls: bool,
    connect_timeout: Duration,
}

impl Connection {
    /// A connection to any of `servers` (`nats://host:port`, `tls://host:port`, or
    /// `host:port`); the client tries them in turn and moves to another on failure.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            user: None,
            credentials: None,
            root_certificates: Vec::new(),
            client_certificate: None,
            require_tls: false,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The server URLs.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Authenticates with a user name and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a NATS credentials file (a user JWT and its nkey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// Trusts the certificate authorities in this PEM file for the server's TLS certificate.
    pub fn root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents this client certificate and key (PEM files) for mutual TLS.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Refuses to connect without TLS.
    pub fn require_tls(mut self, require: bool) -> Self {
        self.require_tls = require;
        self
    }

    /// How long the first connection may take before [`Error::Unreachable`] (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn server_list(&self) -> String {
        self.servers.join(",")
    }

    /// Connects, failing with a typed error if no server can be reached.
    ///
    /// Once connected, a lost connection is re-established in the background with
    /// exponential backoff (100 ms doubling to 5 s, forever); each change is reported.
    pub(crate) async fn connect(&self, reporter: &Reporter) -> Result<async_nats::Client> {
        Ok(self.connect_watching(reporter).await?.0)
    }

    /// [`connect`](Self::connect), and a count of the connections lost since, which
    /// changes as each loss is seen: what a fetch waits for besides its messages, since
    /// a fetch cut off by a lost connection would otherwise only end at its timeout.
    pub(crate) async fn connect_watching(
        &self,
        reporter: &Reporter,
    ) -> Result<(async_nats::Client, watch::Receiver<u64>)> {
        let (lost, losses) = watch::channel(0u64);
        let lost = Arc::new(lost);
        let mut options = ConnectOptions::new()
            .name("evstream")
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .require_tls(self.require_tls);
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &self.credentials {
            options = options.credentials_file(path).await.map_err(|e| {
                Error::BadOption(format!("credentials file {}: {e}", path.display()))
            })?;
        }
        for path in &self.root_certificates {
            options = options.add_root_certificates(path.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let events = Arc::clone(&reporter.0);
        options = options.event_callback(move |event| {
            let events = Arc::clone(&events);
            let lost = Arc::clone(&lost);
            async move {
                match event {
                    Event::Connected => events(Report::Connected),
                    Event::Disconnected => {
                        lost.send_modify(|count| *count += 1);
                        events(Report::Disconnected)
                    }
                    Event::ServerError(e) => events(Report::ServerError(e.to_string())),
                    _ => {}
                }
            }
        });
        let servers: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| Error::BadOption(format!("server URL {s:?}: {e}")))
            })
            .collect::<Result<_>>()?;
        if servers.is_empty() {
            return Err(Error::BadOption("no server URL given".into()));
        }
        let client = options.connect(servers).await.map_err(|e| match e.kind() {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                Error::Unauthorized {
                    servers: self.server_list(),
                    reason: e.to_string(),
                }
            }
            ConnectErrorKind::ServerParse => Error::BadOption(e.to_string()),
            _ => Error::Unreachable {
                servers: self.server_list(),
                reason: e.to_string(),
            },
        })?;
        Ok((client, losses))
    }
}

/// The client's delay before connection attempt number `attempt` (the first is 1): none
/// for the first, then [`backoff`].
fn reconnect_delay(attempt: usize) -> Duration {
    match attempt.checked_sub(2) {
        None => Duration::ZERO,
        Some(failures) => backoff(failures),
    }
}

/// Delay after `attempts` failures: 100 ms doubling, at most 5 s.
pub(crate) fn backoff(attempts: usize) -> Duration {
    let exponent = u32::try_from(attempts.min(6)).unwrap_or(6);
    Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(5))
}

/// How long a JetStream request that fails for a passing reason (a timeout while a
/// cluster elects a leader, a server restarting) is retried before the failure is final.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, retrying with backoff for up to a minute while
/// `transient` says its error may pass; each retry is reported.
pub(crate) async fn retrying<T, E, Fut>(
    reporter: &Reporter,
    what: &str,
    mut attempt: impl FnMut() -> Fut,
    transient: impl Fn(&E) -> bool,
) -> Result<T>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut failures = 0usize;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if transient(&e) && std::time::Instant::now() < deadline => {
                reporter.report(Report::Retrying {
                    reason: format!("{what}: {e}"),
                });
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
            }
            Err(e) => return Err(Error::jetstream(what, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(6), Duration::from_secs(5));
        assert_eq!(backoff(usize::MAX), Duration::from_secs(5));
        assert_eq!(
            reconnect_delay(1),
            Duration::ZERO,
            "the first attempt is not delayed"
        );
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
    }
}
