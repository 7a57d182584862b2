//! Command-line flags. Each flag can also come from an environment variable so
//! that the server can be configured the same way in a shell, in CI and in a
//! container.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use quota_widget::core::wire::Units;

use crate::upstream::kling::Secret;
use crate::upstream::Settings;

/// The reference quota server for quota-widget.
#[derive(Clone, Debug, Parser)]
#[command(name = "quota-server", version, about)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "QW_ADDR", default_value = "127.0.0.1:8787")]
    pub addr: SocketAddr,

    /// SQLite database file, or `:memory:` for a store that dies with the process.
    #[arg(long, env = "QW_DB", default_value = "quota.sqlite3")]
    pub db: String,

    /// Serve the files of this directory at `/` (index.html for `/`).
    #[arg(long = "static", env = "QW_STATIC", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Enable the development endpoints under /api/dev (they 404 without it).
    #[arg(long, env = "QW_DEV")]
    pub dev: bool,

    /// Create the account with token `demo` if it does not exist.
    #[arg(long, env = "QW_SEED_DEMO")]
    pub seed_demo: bool,

    /// Simulated generation duration range in milliseconds, `MIN..MAX`.
    #[arg(long, env = "QW_TASK_MS", default_value = "3000..8000", value_parser = parse_ms_range)]
    pub task_ms: MsRange,

    /// Probability that a simulated task fails (0.0 to 1.0).
    #[arg(long, env = "QW_FAIL_RATE", default_value_t = 0.25, value_parser = parse_rate)]
    pub fail_rate: f64,

    /// Seed of the worker's random number generator (default: from the clock).
    #[arg(long, env = "QW_SEED")]
    pub seed: Option<u64>,

    /// Do not run the simulated worker: tasks stay running until a dev
    /// endpoint ends them.
    #[arg(long, env = "QW_NO_WORKER")]
    pub no_worker: bool,

    /// How long a sign-in lasts, in milliseconds.
    #[arg(long, env = "QW_SESSION_TTL_MS", default_value_t = 12 * 3_600_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub session_ttl_ms: u64,

    /// Mark the session cookie `Secure` always (the server is reached over
    /// HTTPS through a proxy that terminates TLS).
    #[arg(long, env = "QW_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Trust `X-Forwarded-Proto` from the proxy in front: a sign-in that
    /// came over HTTPS gets a `Secure` cookie.
    #[arg(long, env = "QW_TRUST_PROXY")]
    pub trust_proxy: bool,

    /// Largest request body, in bytes; a larger one is answered 413.
    #[arg(long, env = "QW_MAX_BODY_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub max_body_bytes: u64,

    /// Requests a second per account on this instance (0: no limit); past
    /// it, 429 with code 1302 and Retry-After.
    #[arg(long, env = "QW_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,

    /// Requests an account may make at once above its rate.
    #[arg(long, env = "QW_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Open event streams per account on this instance; the next one is
    /// refused (429, code 1302) and the widget polls instead.
    #[arg(long, env = "QW_MAX_STREAMS_PER_ACCOUNT", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_account: u64,

    /// Open event streams on this instance in all; the next one is refused
    /// (503, code 1500).
    #[arg(long, env = "QW_MAX_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams: u64,

    /// Requests that may wait in the queue per account (sent with `queue`
    /// while their slots are busy); past it such a request is refused
    /// (429, code 1303). 0: no queue. At most 500, the longest list a
    /// state may carry.
    #[arg(long, env = "QW_MAX_QUEUED", default_value_t = crate::store::DEFAULT_MAX_QUEUED, value_parser = clap::value_parser!(u32).range(0..=500))]
    pub max_queued: u32,

    /// Print the API's OpenAPI document (JSON) and exit; nothing is opened.
    #[arg(long)]
    pub print_openapi: bool,

    /// Interval of the SSE `ping` event, in milliseconds.
    #[arg(long, env = "QW_PING_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_ms: u64,

    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

/// The upstream services the server can front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamKind {
    /// A Kling-compatible generation API (docs/kling.md).
    Kling,
}

/// Upstream mode (docs/kling.md). The keys have no flags, so that they never
/// show in a process list: they come from the environment or from files.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Upstream mode")]
pub struct UpstreamArgs {
    /// Front an upstream service: packages come from it and tasks run on it.
    /// Without this flag the server owns its packages and simulates work.
    #[arg(long = "upstream", env = "QW_UPSTREAM", value_enum)]
    pub kind: Option<UpstreamKind>,

    /// The service's base URL.
    #[arg(long = "upstream-url", env = "QW_UPSTREAM_URL", default_value = "https://api.klingai.com")]
    pub url: String,

    /// File holding the access key (else the QW_KLING_ACCESS_KEY variable).
    #[arg(long, env = "QW_KLING_ACCESS_KEY_FILE", value_name = "FILE")]
    pub access_key_file: Option<PathBuf>,

    /// File holding the secret key (else the QW_KLING_SECRET_KEY variable).
    #[arg(long, env = "QW_KLING_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// The token the dashboard signs in with: the one local account that
    /// mirrors the service's account.
    #[arg(long = "account-token", env = "QW_ACCOUNT_TOKEN", default_value = "demo")]
    pub account_token: String,

    /// This server's address as the service can reach it, for task callbacks
    /// (e.g. https://quota.example.com). Without it: no callbacks, polling only.
    #[arg(long = "public-url", env = "QW_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// How often packages are read from the service, in milliseconds (the
    /// service allows about one read a second).
    #[arg(long = "sync-ms", env = "QW_SYNC_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub sync_ms: u64,

    /// How often running tasks are queried (the fallback for callbacks), in milliseconds.
    #[arg(long = "poll-ms", env = "QW_POLL_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(200..))]
    pub poll_ms: u64,

    /// A task with no end from the service after this many milliseconds ends
    /// as failed, not charged (and is logged).
    #[arg(long = "deadline-ms", env = "QW_DEADLINE_MS", default_value_t = 2 * 3_600_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub deadline_ms: u64,

    /// Timeout of one request to the service, in milliseconds.
    #[arg(long = "upstream-timeout-ms", env = "QW_UPSTREAM_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub timeout_ms: u64,

    /// Concurrent image slots of the account (the service does not report
    /// its limit: set the highest concurrency among your packs).
    #[arg(long = "image-limit", env = "QW_IMAGE_LIMIT", default_value_t = 4)]
    pub image_limit: u32,

    /// Concurrent video slots of the account.
    #[arg(long = "video-limit", env = "QW_VIDEO_LIMIT", default_value_t = 1)]
    pub video_limit: u32,

    /// Estimated units per image, reserved at submit; a success charges what
    /// the service reports.
    #[arg(long = "image-cost", env = "QW_IMAGE_COST", default_value = "0.25")]
    pub image_cost: Units,

    /// Estimated units per video task.
    #[arg(long = "video-cost", env = "QW_VIDEO_COST", default_value = "1.5")]
    pub video_cost: Units,
}

impl UpstreamArgs {
    /// The settings of upstream mode, with the keys read; `None` without
    /// `--upstream`.
    pub fn settings(&self) -> Result<Option<Settings>, String> {
        if self.kind.is_none() {
            return Ok(None);
        }
        let access_key = read_key("access", "QW_KLING_ACCESS_KEY", self.access_key_file.as_deref())?;
        let secret_key = read_key("secret", "QW_KLING_SECRET_KEY", self.secret_key_file.as_deref())?;
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("--public-url must start with http:// or https://, got {url:?}"));
            }
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("--upstream-url must start with http:// or https://, got {:?}", self.url));
        }
        Ok(Some(Settings {
            base_url: self.url.clone(),
            access_key,
            secret_key,
            account_token: self.account_token.clone(),
            public_url: self.public_url.clone(),
            sync_every: Duration::from_millis(self.sync_ms),
            poll_every: Duration::from_millis(self.poll_ms),
            deadline: Duration::from_millis(self.deadline_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            image: (self.image_limit, self.image_cost),
            video: (self.video_limit, self.video_cost),
        }))
    }
}

/// A key from its file (trimmed) or from the environment; never echoed.
fn read_key(which: &str, var: &str, file: Option<&Path>) -> Result<Secret, String> {
    let key = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the {which} key file {}: {e}", path.display()))?,
        None => std::env::var(var).map_err(|_| {
            format!("upstream mode needs the {which} key: set {var} or {var}_FILE")
        })?,
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the {which} key is empty"));
    }
    Ok(Secret::new(key))
}

impl Config {
    /// A configuration for in-process tests: in-memory store, no worker, dev
    /// endpoints on. Parsed through clap so tests exercise the same defaults.
    pub fn for_tests() -> Self {
        Config::parse_from([
            "quota-server",
            "--db",
            ":memory:",
            "--no-worker",
            "--dev",
            "--addr",
            "127.0.0.1:0",
        ])
    }
}

/// An inclusive range of milliseconds, written `MIN..MAX` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsRange {
    pub min: u64,
    pub max: u64,
}

impl MsRange {
    pub fn as_range(&self) -> RangeInclusive<u64> {
        self.min..=self.max
    }
}

impl FromStr for MsRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| format!("expected MIN..MAX, got {s:?}"))?;
        let min: u64 = a
            .trim()
            .parse()
            .map_err(|e| format!("bad MIN {a:?}: {e}"))?;
        let max: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|e| format!("bad MAX {b:?}: {e}"))?;
        if min > max {
            return Err(format!("MIN {min} is greater than MAX {max}"));
        }
        Ok(MsRange { min, max })
    }
}

fn parse_ms_range(s: &str) -> Result<MsRange, String> {
    s.parse()
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_range_parses() {
        assert_eq!(
            "10..20".parse::<MsRange>(),
            Ok(MsRange { min: 10, max: 20 })
        );
        assert_eq!("5..=5".parse::<MsRange>(), Ok(MsRange { min: 5, max: 5 }));
        assert!("20..10".parse::<MsRange>().is_err());
        assert!("abc".parse::<MsRange>().is_err());
    }

    #[test]
    fn defaults() {
        let c = Config::parse_from(["quota-server"]);
        assert_eq!(
            c.task_ms,
            MsRange {
                min: 3000,
                max: 8000
            }
        );
        assert_eq!(c.ping_ms, 5000);
        assert!(!c.dev);
    }
}
