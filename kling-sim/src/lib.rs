//! A simulator of the upstream generation service's HTTP API (Kling AI).
//!
//! This machine cannot reach the real service, so tests and the demo talk to
//! this stand-in instead. It keeps the service's HTTP shapes (envelope,
//! codes, statuses, field names) as public client code shows them, and adds
//! a control API (`/sim/*`) so that tests can act as another client of the
//! account, script task fates and read the true balance. See README.md.
//!
//! It stands in for a third party, so it shares no code with the project's
//! client of that service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kling_sim::Error> {
//! let sim = kling_sim::spawn(kling_sim::Config::for_tests()).await?;
//! let base = sim.base_url(); // "http://127.0.0.1:PORT"
//! # let _ = base;
//! sim.shutdown();
//! # Ok(())
//! # }
//! ```

mod api;
mod auth;
mod clock;
mod config;
mod control;
mod envelope;
mod lifecycle;
mod packs;
mod requests;
mod sim;
mod task;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, MsRange};
pub use packs::{PackError, PackSpec};
pub use sim::Sim;
pub use task::{GENERATION_ERROR_MESSAGE, MODERATION_MESSAGE};
pub use units::{Units, UnitsError};

/// Why the simulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot read the packs file {path}: {source}")]
    PacksFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the packs file {path} is not a JSON array of packs: {source}")]
    PacksJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for callbacks: {0}")]
    Http(#[source] reqwest::Error),
}

/// The timeout of one callback POST.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole HTTP service: the API behind the token check, the control
/// paths, and an envelope 404 for anything else.
pub fn router(sim: Arc<Sim>) -> Router {
    api::routes(Arc::clone(&sim))
        .merge(control::routes())
        .fallback(api::not_found)
        .with_state(sim)
}

/// Builds the account: checks the configuration and makes its packs.
pub fn build(config: &Config, shutdown: watch::Receiver<bool>) -> Result<Sim, Error> {
    for (name, share) in [
        ("fail_rate", config.fail_rate),
        ("moderation_share", config.moderation_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(Error::Config(format!("{name} must be from 0 to 1, got {share}")));
        }
    }
    if config.task_ms.min > config.task_ms.max {
        return Err(Error::Config(format!("task_ms {} has MIN above MAX", config.task_ms)));
    }
    let specs = match &config.packs {
        None => packs::default_specs(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::PacksFile {
                path: path.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|source| Error::PacksJson {
                path: path.clone(),
                source,
            })?
        }
    };
    let now = clock::now_ms();
    let packs = specs
        .into_iter()
        .zip(1..)
        .map(|(spec, n)| spec.build(sim::pack_id(n), now))
        .collect::<Result<Vec<_>, _>>()?;
    let http = reqwest::Client::builder()
        .timeout(CALLBACK_TIMEOUT)
        .build()
        .map_err(Error::Http)?;
    Ok(Sim::new(config, packs, http, shutdown))
}

/// Starts the simulator: binds `config.addr` and serves from a spawned task
/// of the current tokio runtime.
pub async fn spawn(config: Config) -> Result<Running, Error> {
    let (stop, shutdown) = watch::channel(false);
    let sim = Arc::new(build(&config, shutdown.clone())?);
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.addr,
        source,
    })?;
    let app = router(sim);
    let mut signal = shutdown;
    let server = tokio::spawn(async move {
        let stopped = async move {
            // An error means the sender is gone: stop too.
            let _ = signal.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            eprintln!("kling-sim: server stopped: {e}");
        }
    });
    Ok(Running {
        addr,
        stop,
        server: Some(server),
    })
}

/// A running simulator. Dropping it stops it, like [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    /// The address it listens on (with the port picked, if 0 was asked).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Running {
    /// The base URL of the API, e.g. `http://127.0.0.1:8790`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, running tasks and callbacks, without waiting.
    pub fn shutdown(self) {
        // Drop does the work.
    }

    /// Stops, and waits until the server has let go of its connections.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take() {
            // A panicked or cancelled server task has stopped all the same.
            let _ = server.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
