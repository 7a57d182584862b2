//! Typed errors. The store and the rules speak in these; only the HTTP layer
//! (`http.rs`) turns them into status codes and `ApiError` bodies.

use quota_widget::core::wire::codes;

/// Failures of the storage layer itself (not of a request).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this server supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the store lock is poisoned: a previous request panicked while holding it")]
    Poisoned,
    #[error("the store's thread: {0}")]
    Thread(String),
    #[error("PostgreSQL error: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
}

/// Why a submit was refused. A refusal is a recorded outcome, not a failure of
/// the server: it bumps the revision and shows in the finished list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough free slots of that kind (code 1303).
    OverConcurrency,
    /// Not enough available units (code 1102).
    UnitsExhausted,
    /// The upstream service refused the task (its own 1303, 1101, 1102,
    /// 1301, 12xx), with its code and a message for the person.
    Upstream { code: u32, message: String },
    /// A request that may wait, refused all the same (code 1303): the
    /// queue is at its longest, or the request asks more slots than the
    /// pool's limit and could never start. The message says which.
    Queue { message: String },
}

impl Refusal {
    pub fn code(&self) -> u32 {
        match self {
            Refusal::OverConcurrency => codes::OVER_CONCURRENCY,
            Refusal::UnitsExhausted => codes::UNITS_EXHAUSTED,
            Refusal::Upstream { code, .. } => *code,
            Refusal::Queue { .. } => codes::OVER_CONCURRENCY,
        }
    }

    /// The service's wording, shown to the user and stored as the task's reason.
    pub fn message(&self) -> &str {
        match self {
            Refusal::OverConcurrency => "parallel task over resource pack limit",
            Refusal::UnitsExhausted => "resource pack exhausted",
            Refusal::Upstream { message, .. } | Refusal::Queue { message } => message,
        }
    }
}

/// Errors of a request against the quota model.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("missing or unknown credentials")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    /// Not this account's to do (code 1103).
    #[error("{0}")]
    Forbidden(String),
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("task {0} has already ended")]
    TaskEnded(String),
    /// A cancel of a request that is no longer queued: it runs.
    #[error("task {0} has started: only a queued request can be cancelled")]
    NotQueued(String),
    #[error("an account with this token already exists")]
    AccountExists,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for QuotaError {
    fn from(e: rusqlite::Error) -> Self {
        QuotaError::Store(StoreError::Db(e))
    }
}

impl From<tokio_postgres::Error> for QuotaError {
    fn from(e: tokio_postgres::Error) -> Self {
        QuotaError::Store(StoreError::Pg(e))
    }
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot prepare the store: {0}")]
    Setup(#[from] QuotaError),
    #[error("static directory {0} is not a directory")]
    StaticDir(std::path::PathBuf),
    #[error("{0}")]
    Config(String),
}
