//! The reference quota server for quota-widget.
//!
//! `build` assembles the application (store, worker, routes) so that tests can
//! drive it in-process; `run` binds it to a socket and serves until Ctrl-C or
//! SIGTERM. See `docs/api.md` for the HTTP contract.

pub mod answers;
pub mod config;
pub mod dev;
pub mod error;
pub mod http;
pub mod openapi;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod outcome;
pub mod routes;
pub mod service;
pub mod sse;
pub mod storage;
pub mod store;
pub mod upstream;
pub mod worker;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use quota_widget::core::wire::Millis;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::StartError;
pub use http::AppState;

use crate::error::StoreError;
use crate::hub::Hub;
use crate::service::Service;
use crate::storage::{SqliteStorage, Storage};
use crate::store::pg::{is_postgres_url, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::AccountSpec;
use crate::upstream::Upstream;
use crate::worker::Worker;

/// The server's clock, in milliseconds since the Unix epoch: the one clock
/// that expiry and every timestamp are judged by.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// The store `--db` names: a `postgres://` or `postgresql://` URL, else a
/// SQLite file (or `:memory:`).
async fn open_store(db: &str, hub: Hub) -> Result<Arc<dyn Storage>, StoreError> {
    if is_postgres_url(db) {
        Ok(Arc::new(PgStore::open(db, hub).await?))
    } else {
        let path = db.to_owned();
        Ok(Arc::new(SqliteStorage::start(move || SqliteStore::open(&path, hub))?))
    }
}

/// The assembled application.
pub struct App {
    pub router: Router,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
}

impl App {
    /// Ends open event streams and background loops.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Opens the store, seeds the demo account if asked, starts the worker and
/// the boundary clock, and builds the routes. Must run inside a tokio runtime.
pub async fn build(config: &Config) -> Result<App, StartError> {
    if let Some(dir) = &config.static_dir {
        if !dir.is_dir() {
            return Err(StartError::StaticDir(dir.clone()));
        }
    }
    let upstream_settings = config.upstream.settings().map_err(StartError::Config)?;
    if upstream_settings.is_some() && config.dev {
        return Err(StartError::Config(
            "--dev cannot be used with --upstream: packages and task ends come from the service".into(),
        ));
    }
    let store = open_store(&config.db, Hub::default()).await?;
    if config.seed_demo && upstream_settings.is_none() {
        store.ensure_account("demo", &AccountSpec::demo(), now_ms()).await?;
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let upstream = match upstream_settings {
        Some(settings) => Some(Upstream::start(settings, Arc::clone(&store), config.max_queued, shutdown_rx.clone()).await?),
        None => None,
    };
    let worker = if config.no_worker || upstream.is_some() {
        None
    } else {
        let seed = config
            .seed
            .unwrap_or_else(|| u64::try_from(now_ms()).unwrap_or(0));
        let worker = Worker::new(
            Arc::clone(&store),
            seed,
            config.task_ms.as_range(),
            config.fail_rate,
        );
        worker.resume().await?;
        worker.spawn_sweeper(shutdown_rx.clone());
        Some(worker)
    };
    worker::spawn_boundary_clock(Arc::clone(&store), shutdown_rx.clone());
    let limits = Arc::new(limits::Limits::new(
        config.rate_limit,
        config.rate_burst,
        usize::try_from(config.max_streams_per_account).unwrap_or(usize::MAX),
        usize::try_from(config.max_streams).unwrap_or(usize::MAX),
    ));
    let service = Service::new(
        Arc::clone(&store),
        worker,
        upstream,
        config.max_queued,
        Duration::from_millis(config.ping_ms),
        shutdown_rx,
    );
    let state = AppState {
        service,
        limits,
        sessions: http::SessionSettings {
            ttl_ms: i64::try_from(config.session_ttl_ms).unwrap_or(i64::MAX),
            secure: config.secure_cookies,
            trust_proxy: config.trust_proxy,
        },
    };
    let body_limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let router = routes::router(state.clone(), config.dev, config.static_dir.as_deref(), body_limit);
    Ok(App {
        router,
        state,
        shutdown,
    })
}

/// Binds, prints the listening line, and serves until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let app = build(&config).await?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr()?;
    // Tests and scripts parse this exact line for the real port.
    let mut out = std::io::stdout().lock();
    writeln!(out, "quota-server listening on http://{local}")?;
    out.flush()?;
    drop(out);

    let App {
        router, shutdown, ..
    } = app;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Event streams never end by themselves: end them so that the
            // graceful shutdown does not wait forever.
            let _ = shutdown.send(true);
        })
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
