//! `qw-conformance`: the command-line face of the checker. Prints one line
//! per check as it is decided, then notes and a summary; exits 0 when no
//! check failed, 1 when one did, 2 when the run could not be carried out.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qw_conformance::{Config, Credentials};

/// Checks that a quota backend keeps the contract the quota widget relies
/// on. Point it at a test account: it submits tasks and provokes refusals.
#[derive(Debug, Parser)]
#[command(name = "qw-conformance", version, about)]
struct Cli {
    /// The backend's base URL (the API is under /api of it).
    #[arg(long, env = "QWC_URL", value_name = "URL")]
    url: String,

    /// The test account's token, sent as `Authorization: Bearer`.
    /// Prefer the environment variable: a flag shows in the process list.
    #[arg(long, env = "QWC_TOKEN", hide_env_values = true, required_unless_present = "cookie", conflicts_with = "cookie")]
    token: Option<String>,

    /// Authenticate with this Cookie header instead, e.g. `qw_session=abc`.
    #[arg(long, env = "QWC_COOKIE", hide_env_values = true)]
    cookie: Option<String>,

    /// The kind of work to submit (default: the first pool of the state).
    #[arg(long)]
    kind: Option<String>,

    /// URL that ends a task as failed when POSTed with the credentials;
    /// `{task_id}` is replaced by the task's id. The reference server's:
    /// http://HOST/api/dev/tasks/{task_id}/fail (with --dev).
    #[arg(long, value_name = "TEMPLATE")]
    fail_url: Option<String>,

    /// Likewise, to end a task as succeeded.
    #[arg(long, value_name = "TEMPLATE")]
    succeed_url: Option<String>,

    /// Seconds allowed for one request.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    request_timeout: Duration,

    /// Seconds allowed for a change to show on the stream or in the state.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    event_timeout: Duration,

    /// Seconds allowed without a ping on the event stream (the widget calls
    /// its state stale after 30 s without word).
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = seconds)]
    ping_timeout: Duration,

    /// Without --fail-url/--succeed-url: seconds to wait for the checker's
    /// tasks to end by themselves.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    task_wait: Duration,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(format!("{s} is not between 0 and 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let credentials = match (cli.token, cli.cookie) {
        (Some(t), _) => Credentials::Bearer(t),
        (None, Some(c)) => Credentials::Cookie(c),
        // clap requires one of them.
        (None, None) => return ExitCode::from(2),
    };
    let config = Config {
        kind: cli.kind,
        fail_url: cli.fail_url,
        succeed_url: cli.succeed_url,
        request_timeout: cli.request_timeout,
        event_timeout: cli.event_timeout,
        ping_timeout: cli.ping_timeout,
        task_wait: cli.task_wait,
        ..Config::new(cli.url.clone(), credentials)
    };
    println!("qw-conformance: checking {}", cli.url);
    let report = qw_conformance::run_with(&config, |r| println!("{r}")).await;
    for note in &report.notes {
        println!("note {note}");
    }
    if let Some(fatal) = &report.fatal {
        eprintln!("qw-conformance: {fatal}");
    }
    let verdict = if report.passed() { "passed" } else { "FAILED" };
    println!("qw-conformance: {verdict}: {}", report.summary());
    ExitCode::from(report.exit_code())
}
