//! What `evstream ship` and `evstream pull` share: the connection flags, the runtime,
//! and how NATS failures are reported.

use std::path::PathBuf;
use std::time::Duration;

use evstream_nats::{Connection, Report};

use crate::failure::Failure;

/// How to reach NATS; flattened into `ship` and `pull`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Credentials: user name (with --password)
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Credentials: password (with --user); or set EVSTREAM_NATS_PASSWORD
    #[arg(
        long,
        env = "EVSTREAM_NATS_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    password: Option<String>,
    /// Credentials file (a user JWT and nkey seed, as `nsc` writes it)
    #[arg(long, value_name = "FILE")]
    creds: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the server's TLS certificate
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS, with --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse to connect without TLS
    #[arg(long)]
    tls: bool,
    /// Print no progress or reconnection lines on standard error
    #[arg(long, short)]
    pub quiet: bool,
}

impl ConnectArgs {
    /// The connection to `urls` (each may be a comma-separated list).
    pub fn connection(&self, urls: &[String]) -> Connection {
        let servers = urls
            .iter()
            .flat_map(|u| u.split(','))
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        let mut connection = Connection::new(servers).require_tls(self.tls);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            connection = connection.user_and_password(user, password);
        }
        if let Some(creds) = &self.creds {
            connection = connection.credentials_file(creds);
        }
        if let Some(ca) = &self.tls_ca {
            connection = connection.root_certificates(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            connection = connection.client_certificate(cert, key);
        }
        connection
    }

    /// The callback that prints reports on standard error, unless `--quiet`.
    pub fn reporter(&self, command: &'static str) -> impl Fn(Report) + Send + Sync + 'static {
        let quiet = self.quiet;
        move |report| {
            if !quiet {
                eprintln!("evstream {command}: {report}");
            }
        }
    }
}

/// Runs `future` on a single-threaded tokio runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::data(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}

/// A NATS failure as one `error:` line.
pub fn failure(error: evstream_nats::Error) -> Failure {
    match error {
        evstream_nats::Error::Store(e) => match e.path() {
            Some(path) => Failure::stream(path, &e),
            None => Failure::data(e.message()),
        },
        e @ evstream_nats::Error::BadSubject { .. } => Failure::usage(e.to_string()),
        other => Failure::data(other.to_string()),
    }
}

/// Parses a duration: a number with a unit, `s`, `m`, `h` or `d` (`90s`, `15m`, `7d`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{input:?} has no unit: write it as 90s, 15m, 12h or 7d"))?;
    let (number, unit) = input.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{input:?} is not a duration: write it as 90s, 15m, 12h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {input:?}: use s, m, h or d"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{input:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("90").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
