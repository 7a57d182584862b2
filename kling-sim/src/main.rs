//! `kling-sim`: runs the simulator until Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kling_sim::Config;

/// How long a stop waits for open connections before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let running = match kling_sim::spawn(config).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("kling-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tests and scripts read this one line to learn the address.
    let mut stdout = std::io::stdout().lock();
    let announced = writeln!(stdout, "kling-sim listening on {}", running.base_url())
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = announced {
        eprintln!("kling-sim: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = stop_requested().await {
        eprintln!("kling-sim: cannot listen for signals: {e}");
        return ExitCode::FAILURE;
    }
    if tokio::time::timeout(STOP_GRACE, running.stop()).await.is_err() {
        eprintln!("kling-sim: connections still open after {STOP_GRACE:?}; stopping anyway");
    }
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
