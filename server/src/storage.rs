//! The store behind one trait, two implementations: SQLite (embedded, the
//! default: one process) and PostgreSQL (several instances on one
//! database; its implementation of the trait is in `store/pg.rs`).
//! The service, the event streams and the worker see only [`Storage`];
//! `--db` picks the implementation (`build`, in lib.rs).
//!
//! SQLite calls block: [`SqliteStorage`] runs every one of them on a thread
//! of the store's own, so the async workers never wait on the database.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use quota_widget::core::wire::{Millis, ServerState, SubmitRequest};

use crate::error::{QuotaError, StoreError};
use crate::hub::Hub;
use crate::store::{AccountId, AccountSpec, Ended, PackageSpec, SqliteStore, SubmitOutcome, TaskEnd};

#[async_trait]
pub trait Storage: Send + Sync {
    /// This instance's streams of each account.
    fn hub(&self) -> &Hub;
    /// Whether other instances may share the database.
    fn shared(&self) -> bool;
    async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError>;
    async fn create_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError>;
    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError>;
    async fn revision(&self, account: AccountId) -> Result<u64, StoreError>;
    /// R1-R3: checks slots and units and records the task, in one step.
    async fn submit(&self, account: AccountId, req: &SubmitRequest, now: Millis) -> Result<SubmitOutcome, QuotaError>;
    /// Ends a running task once: success deducts, failure releases (R3).
    async fn finish(&self, account: AccountId, task_id: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError>;
    async fn grant_package(&self, account: AccountId, spec: &PackageSpec, now: Millis) -> Result<(String, u64), QuotaError>;
    async fn set_limit(&self, account: AccountId, kind: &str, limit: u32, now: Millis) -> Result<u64, QuotaError>;
    async fn running_tasks(&self) -> Result<Vec<(AccountId, i64)>, StoreError>;
    async fn pass_boundaries(&self, after: Millis, upto: Millis) -> Result<Vec<AccountId>, StoreError>;
    async fn create_session(&self, account: AccountId, now: Millis, expires_at_ms: Millis) -> Result<String, StoreError>;
    async fn session_account(&self, id: &str, now: Millis) -> Result<Option<AccountId>, StoreError>;
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;
    /// Running tasks started before `before`, of any instance: on a shared
    /// database, the tasks of an instance that died are ended by the others.
    async fn overdue_tasks(&self, _before: Millis) -> Result<Vec<(AccountId, i64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Creates the account unless its token exists; its id either way.
    async fn ensure_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError> {
        match self.create_account(token, spec, now).await {
            Err(QuotaError::AccountExists) => self
                .account_by_token(token)
                .await?
                .ok_or_else(|| QuotaError::BadRequest("account vanished".into())),
            other => other,
        }
    }
}

/// A call waiting for the SQLite thread.
type Job = Box<dyn FnOnce(&SqliteStore) + Send>;

/// The SQLite store behind its own thread: calls queue there and run one
/// after another (the store has one connection, so they would take turns
/// anyway), and the caller awaits the answer without holding a worker.
pub struct SqliteStorage {
    store: Arc<SqliteStore>,
    jobs: mpsc::Sender<Job>,
}

impl SqliteStorage {
    /// Opens the store (on the calling thread) and starts its thread, which
    /// ends when the last handle is dropped.
    pub fn start(open: impl FnOnce() -> Result<SqliteStore, StoreError>) -> Result<Self, StoreError> {
        let store = Arc::new(open()?);
        let (jobs, queue) = mpsc::channel::<Job>();
        let on_thread = Arc::clone(&store);
        std::thread::Builder::new()
            .name("quota-sqlite".into())
            .spawn(move || {
                for job in queue {
                    job(&on_thread);
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(SqliteStorage { store, jobs })
    }

    /// The store itself, for calls made outside the async workers (tests).
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// Runs `f` on the store's thread and returns what it returns. A panic
    /// in `f` ends that call only (the thread goes on).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            if let Ok(out) = catch_unwind(AssertUnwindSafe(|| f(store))) {
                let _ = tx.send(out);
            }
        });
        self.jobs.send(job).map_err(|_| StoreError::Thread("the SQLite thread has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Thread("a call panicked on the SQLite thread".into()))
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn hub(&self) -> &Hub {
        self.store.hub()
    }
    fn shared(&self) -> bool {
        false
    }
    async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let token = token.to_owned();
        self.run(move |s| s.account_by_token(&token)).await?
    }
    async fn create_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError> {
        let (token, spec) = (token.to_owned(), spec.clone());
        self.run(move |s| s.create_account(&token, &spec, now)).await?
    }
    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        self.run(move |s| s.state(account, now)).await?
    }
    async fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        self.run(move |s| s.revision(account)).await?
    }
    async fn submit(&self, account: AccountId, req: &SubmitRequest, now: Millis) -> Result<SubmitOutcome, QuotaError> {
        let req = req.clone();
        self.run(move |s| s.submit(account, &req, now)).await?
    }
    async fn finish(&self, account: AccountId, task_id: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError> {
        let end = end.clone();
        self.run(move |s| s.finish(account, task_id, &end, now)).await?
    }
    async fn grant_package(&self, account: AccountId, spec: &PackageSpec, now: Millis) -> Result<(String, u64), QuotaError> {
        let spec = spec.clone();
        self.run(move |s| s.grant_package(account, &spec, now)).await?
    }
    async fn set_limit(&self, account: AccountId, kind: &str, limit: u32, now: Millis) -> Result<u64, QuotaError> {
        let kind = kind.to_owned();
        self.run(move |s| s.set_limit(account, &kind, limit, now)).await?
    }
    async fn running_tasks(&self) -> Result<Vec<(AccountId, i64)>, StoreError> {
        self.run(SqliteStore::running_tasks).await?
    }
    async fn pass_boundaries(&self, after: Millis, upto: Millis) -> Result<Vec<AccountId>, StoreError> {
        self.run(move |s| s.pass_boundaries(after, upto)).await?
    }
    async fn create_session(&self, account: AccountId, now: Millis, expires_at_ms: Millis) -> Result<String, StoreError> {
        self.run(move |s| s.create_session(account, now, expires_at_ms)).await?
    }
    async fn session_account(&self, id: &str, now: Millis) -> Result<Option<AccountId>, StoreError> {
        let id = id.to_owned();
        self.run(move |s| s.session_account(&id, now)).await?
    }
    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |s| s.delete_session(&id)).await?
    }
}
