//! Command-line and environment configuration.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

use crate::units::Units;

/// A range of milliseconds, written `MIN..MAX` (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsRange {
    pub min: u64,
    pub max: u64,
}

/// Why a `MIN..MAX` text is not a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsRangeError {
    #[error("a range is written MIN..MAX in milliseconds, e.g. 2000..5000, got {0:?}")]
    Syntax(String),
    #[error("range {0:?} has MIN above MAX")]
    Reversed(String),
}

impl FromStr for MsRange {
    type Err = MsRangeError;

    fn from_str(text: &str) -> Result<MsRange, MsRangeError> {
        let syntax = || MsRangeError::Syntax(text.to_owned());
        let (min, max) = text.split_once("..").ok_or_else(syntax)?;
        let min: u64 = min.trim().parse().map_err(|_| syntax())?;
        let max: u64 = max.trim().parse().map_err(|_| syntax())?;
        if min > max {
            return Err(MsRangeError::Reversed(text.to_owned()));
        }
        Ok(MsRange { min, max })
    }
}

impl fmt::Display for MsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min, self.max)
    }
}

/// Parses a share in 0..=1 (clap value parser).
pub fn parse_share(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("a share is a number from 0 to 1, got {text:?}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("a share is a number from 0 to 1, got {text:?}"))
    }
}

fn parse_units(text: &str) -> Result<Units, String> {
    Units::parse(text).map_err(|e| e.to_string())
}

const DEFAULT_ADDR: &str = "127.0.0.1:8790";
const DEFAULT_ACCESS_KEY: &str = "sim-access-key";
const DEFAULT_SECRET_KEY: &str = "sim-secret-key";
const DEFAULT_IMAGE_CONCURRENCY: u32 = 4;
const DEFAULT_VIDEO_CONCURRENCY: u32 = 1;
/// 0.25 units per image.
const DEFAULT_IMAGE_PRICE: Units = Units::from_thousandths(250);
/// 1.5 units per 5 s "std" video.
const DEFAULT_VIDEO_PRICE: Units = Units::from_thousandths(1500);

/// A simulator of the upstream generation service (Kling AI): its account
/// costs, task creation and query, and callbacks, for tests and the demo.
///
/// It binds only where it is told (loopback by default) and its `/sim/*`
/// control paths need no token: never expose it beyond the machine.
#[derive(Debug, Clone, Parser)]
#[command(name = "kling-sim", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "KSIM_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// The account's access key: the `iss` claim every token must carry.
    #[arg(long, env = "KSIM_ACCESS_KEY", default_value = DEFAULT_ACCESS_KEY)]
    pub access_key: String,

    /// The account's secret key: tokens are HS256-signed with it.
    #[arg(long, env = "KSIM_SECRET_KEY", default_value = DEFAULT_SECRET_KEY, hide_env_values = true)]
    pub secret_key: String,

    /// Parallel image slots of the account (an image task holds one per image).
    #[arg(long, env = "KSIM_IMAGE_CONCURRENCY", default_value_t = DEFAULT_IMAGE_CONCURRENCY)]
    pub image_concurrency: u32,

    /// Parallel video slots of the account (a video task holds one).
    #[arg(long, env = "KSIM_VIDEO_CONCURRENCY", default_value_t = DEFAULT_VIDEO_CONCURRENCY)]
    pub video_concurrency: u32,

    /// Units charged per image (decimal, at most 3 decimals).
    #[arg(long, env = "KSIM_IMAGE_PRICE", default_value = "0.25", value_parser = parse_units)]
    pub image_price: Units,

    /// Units charged for a 5 s "std" video; duration "10" doubles it, mode
    /// "pro" doubles it again.
    #[arg(long, env = "KSIM_VIDEO_PRICE", default_value = "1.5", value_parser = parse_units)]
    pub video_price: Units,

    /// How long a task runs, MIN..MAX milliseconds from creation to its end.
    #[arg(long, env = "KSIM_TASK_MS", default_value = "2000..5000")]
    pub task_ms: MsRange,

    /// Share of tasks that fail (0..1); failed tasks deduct nothing.
    #[arg(long, env = "KSIM_FAIL_RATE", default_value = "0.2", value_parser = parse_share)]
    pub fail_rate: f64,

    /// Share of failures reported as content moderation (0..1); the others
    /// are generation errors.
    #[arg(long, env = "KSIM_MODERATION_SHARE", default_value = "0.5", value_parser = parse_share)]
    pub moderation_share: f64,

    /// How far `/account/costs` lags: it reports each pack's remaining
    /// quantity as it was this many milliseconds ago.
    #[arg(long, env = "KSIM_LAG_MS", default_value_t = 0)]
    pub lag_ms: u64,

    /// Never POST callbacks (to test a client's polling fallback).
    #[arg(long, env = "KSIM_NO_CALLBACKS")]
    pub no_callbacks: bool,

    /// Seed of the random draws (task fates, ids), so that a run replays.
    #[arg(long, env = "KSIM_SEED")]
    pub seed: Option<u64>,

    /// JSON file with the account's resource packs (its format:
    /// kling-sim/README.md in the repository); without it the account has
    /// four sample packs.
    #[arg(long, env = "KSIM_PACKS")]
    pub packs: Option<PathBuf>,
}

impl Config {
    /// The configuration for in-process tests: a free loopback port, no lag,
    /// no failures, seed 1, short tasks (200..400 ms). Built field by field,
    /// not parsed, so that `KSIM_*` variables of the environment never leak
    /// into a test.
    pub fn for_tests() -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: DEFAULT_ACCESS_KEY.to_owned(),
            secret_key: DEFAULT_SECRET_KEY.to_owned(),
            image_concurrency: DEFAULT_IMAGE_CONCURRENCY,
            video_concurrency: DEFAULT_VIDEO_CONCURRENCY,
            image_price: DEFAULT_IMAGE_PRICE,
            video_price: DEFAULT_VIDEO_PRICE,
            task_ms: MsRange { min: 200, max: 400 },
            fail_rate: 0.0,
            moderation_share: 0.5,
            lag_ms: 0,
            no_callbacks: false,
            seed: Some(1),
            packs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_parsed_defaults() {
        // Variables of the machine would override the defaults under test.
        if std::env::vars().any(|(k, _)| k.starts_with("KSIM_")) {
            return;
        }
        let parsed = Config::try_parse_from(["kling-sim"]).expect("defaults parse");
        let tests = Config::for_tests();
        assert_eq!(parsed.access_key, tests.access_key);
        assert_eq!(parsed.secret_key, tests.secret_key);
        assert_eq!(parsed.image_price, tests.image_price);
        assert_eq!(parsed.video_price, tests.video_price);
        assert_eq!(parsed.image_concurrency, tests.image_concurrency);
        assert_eq!(parsed.video_concurrency, tests.video_concurrency);
        assert_eq!(parsed.task_ms, MsRange { min: 2000, max: 5000 });
        assert_eq!(parsed.addr.to_string(), DEFAULT_ADDR);
    }

    #[test]
    fn reads_flags() {
        let parsed = Config::try_parse_from([
            "kling-sim",
            "--addr",
            "127.0.0.1:0",
            "--image-price",
            "0.1",
            "--task-ms",
            "10..20",
            "--fail-rate",
            "1",
            "--no-callbacks",
            "--seed",
            "7",
        ]);
        let c = parsed.expect("flags parse");
        assert_eq!(c.image_price, Units::from_thousandths(100));
        assert_eq!(c.task_ms, MsRange { min: 10, max: 20 });
        assert_eq!(c.fail_rate, 1.0);
        assert!(c.no_callbacks);
        assert_eq!(c.seed, Some(7));
    }

    #[test]
    fn refuses_bad_values() {
        for args in [
            ["kling-sim", "--fail-rate", "1.5"],
            ["kling-sim", "--image-price", "0.0001"],
            ["kling-sim", "--task-ms", "5..1"],
            ["kling-sim", "--task-ms", "5"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn command_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
