//! Command-line flags. Each flag can also come from an environment variable so
//! that the server can be configured the same way in a shell, in CI and in a
//! container.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

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

    /// Interval of the SSE `ping` event, in milliseconds.
    #[arg(long, env = "QW_PING_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_ms: u64,
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
