//! The store behind one trait, two implementations: SQLite (embedded, the
//! default: one process) and PostgreSQL (several instances on one
//! database; its implementation of the trait is in `store/pg.rs`).
//! The service, the event streams, the worker and upstream mode see only
//! [`Storage`]; `--db` picks the implementation (`build`, in lib.rs).
//! Every change of an account goes through [`Storage::change`], which each
//! store runs under its lock with the one transaction of `store::apply`;
//! the named changes (submit, finish, ...) are written here once on top.
//!
//! SQLite calls block: [`SqliteStorage`] runs every one of them on a thread
//! of the store's own, so the async workers never wait on the database.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use quota_widget::core::reconcile::{Ledger, SyncReport};
use quota_widget::core::wire::{Cancelled, Millis, ServerState, SubmitRequest, Units};

use crate::error::{QuotaError, Refusal, StoreError};
use crate::hub::Hub;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AccountId, AccountSpec, Busied, Change, Changed, Ended, MirrorPack, PackageSpec, Progress, SubmitOutcome, TaskEnd,
    TaskKey, UpstreamFields, UpstreamTask,
};

#[async_trait]
pub trait Storage: Send + Sync {
    /// This instance's streams of each account.
    fn hub(&self) -> &Hub;
    /// Whether other instances may share the database.
    fn shared(&self) -> bool;
    /// Runs a change of the account under the store's lock (its
    /// transaction is `store::apply`, the same for every store).
    async fn change(&self, account: AccountId, change: Change, now: Millis) -> Result<Changed, QuotaError>;
    async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError>;
    async fn create_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError>;
    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError>;
    async fn revision(&self, account: AccountId) -> Result<u64, StoreError>;
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

    /// Upstream mode: the account's reconciliation ledger and the time of
    /// its last good sync (`None` if it mirrors no service).
    async fn mirror(&self, account: AccountId) -> Result<Option<(Ledger, Option<Millis>)>, QuotaError>;
    /// Upstream mode: running tasks created (or to be created) upstream, oldest first.
    async fn upstream_running(&self) -> Result<Vec<UpstreamTask>, StoreError>;
    /// Upstream mode: a task by the store's id or by the service's.
    async fn upstream_task(&self, key: TaskKey) -> Result<Option<UpstreamTask>, StoreError>;
    /// Upstream mode: whether this instance is the one that reads the
    /// service's packs and polls its tasks for `account`. A store of one
    /// process always is; on a shared database one instance at a time is,
    /// and another takes over when it stops.
    async fn lead(&self, _account: AccountId) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// R1-R3: checks slots and units and records the task, in one step;
    /// sent with `queue` (R8), a request whose slots are busy waits instead,
    /// up to `max_queued` per account (its answer has a `place`).
    async fn submit(&self, account: AccountId, req: &SubmitRequest, max_queued: u32, now: Millis) -> Result<SubmitOutcome, QuotaError> {
        self.submit_upstream(account, req, None, max_queued, now).await
    }
    /// As `submit`; an accepted task also keeps what it is to be created
    /// upstream with (upstream mode).
    async fn submit_upstream(
        &self,
        account: AccountId,
        req: &SubmitRequest,
        upstream: Option<UpstreamFields>,
        max_queued: u32,
        now: Millis,
    ) -> Result<SubmitOutcome, QuotaError> {
        match self.change(account, Change::Submit { req: req.clone(), upstream, max_queued }, now).await? {
            Changed::Submitted(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }
    /// Cancels a queued request: its units released, nothing charged. The
    /// answer, and the queued requests that started in its place.
    async fn cancel(&self, account: AccountId, task: i64, now: Millis) -> Result<(Cancelled, Vec<i64>), QuotaError> {
        match self.change(account, Change::Cancel { task }, now).await {
            Ok(Changed::Cancelled(cancelled, started)) => Ok((cancelled, started)),
            Err(QuotaError::Unauthorized) => Err(QuotaError::TaskNotFound(crate::ids::task_wire_id(task))),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        }
    }
    /// Starts the queued requests that can start now (a hold ended).
    async fn advance(&self, account: AccountId, now: Millis) -> Result<Progress, QuotaError> {
        progress(self.change(account, Change::Advance, now).await?)
    }
    /// Upstream mode: the service's 1303 for a running task: its kind held
    /// until `until`, and the task put back in the queue if it was sent
    /// with `queue`, else refused (`refusal`), charged nothing either way.
    async fn busy(&self, account: AccountId, task: i64, refusal: &Refusal, until: Millis, now: Millis) -> Result<Busied, QuotaError> {
        match self.change(account, Change::Busy { task, refusal: refusal.clone(), until }, now).await? {
            Changed::Busied(busied) => Ok(busied),
            other => Err(unexpected(&other)),
        }
    }
    /// Ends a running task once: success deducts, failure releases (R3).
    async fn finish(&self, account: AccountId, task: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError> {
        match self.change(account, Change::Finish { task, end: end.clone() }, now).await {
            Ok(Changed::Ended(ended)) => Ok(ended),
            // No such account: no such task of it either.
            Err(QuotaError::Unauthorized) => Err(QuotaError::TaskNotFound(crate::ids::task_wire_id(task))),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        }
    }
    async fn grant_package(&self, account: AccountId, spec: &PackageSpec, now: Millis) -> Result<(String, u64), QuotaError> {
        match self.change(account, Change::Grant(spec.clone()), now).await? {
            Changed::Granted(id, revision) => Ok((id, revision)),
            other => Err(unexpected(&other)),
        }
    }
    /// Sets a pool's limit (dev). Running tasks keep their slots even if the
    /// new limit is below what they hold; new submits see no free slot. A
    /// higher limit starts queued requests, a lower one refuses those that
    /// could never start.
    async fn set_limit(&self, account: AccountId, kind: &str, limit: u32, now: Millis) -> Result<Progress, QuotaError> {
        self.set_pool(account, kind, limit, None, now).await
    }
    /// Sets a pool's limit and, if given, its cost per item (upstream mode:
    /// both come from configuration).
    async fn set_pool(&self, account: AccountId, kind: &str, limit: u32, unit_cost: Option<Units>, now: Millis) -> Result<Progress, QuotaError> {
        progress(self.change(account, Change::SetPool { kind: kind.to_owned(), limit, unit_cost }, now).await?)
    }
    /// Makes `account` mirror an upstream service, if it does not yet, and
    /// returns the secret part of its callback URL (`secret` the first
    /// time; the stored one after).
    async fn ensure_mirror(&self, account: AccountId, secret: &str, now: Millis) -> Result<String, QuotaError> {
        match self.change(account, Change::EnsureMirror { secret: secret.to_owned() }, now).await? {
            Changed::Mirrored(secret) => Ok(secret),
            other => Err(unexpected(&other)),
        }
    }
    /// Takes in the service's packs and reconciles them with the charges seen here.
    async fn sync_packages(&self, account: AccountId, packs: Vec<MirrorPack>, now: Millis) -> Result<SyncReport, QuotaError> {
        match self.change(account, Change::Sync(packs), now).await? {
            Changed::Synced(report) => Ok(report),
            other => Err(unexpected(&other)),
        }
    }
    /// Records the service's id of a task it created.
    async fn attach_upstream(&self, account: AccountId, task: i64, upstream_id: &str, now: Millis) -> Result<(), QuotaError> {
        self.change(account, Change::Attach { task, upstream_id: upstream_id.to_owned() }, now).await.map(drop)
    }
    /// A running task the service refused: released, not charged, shown refused.
    async fn end_refused(&self, account: AccountId, task: i64, refusal: &Refusal, now: Millis) -> Result<Progress, QuotaError> {
        progress(self.change(account, Change::EndRefused { task, refusal: refusal.clone() }, now).await?)
    }
    /// Records a refusal decided before any reservation.
    async fn refuse(&self, account: AccountId, req: &SubmitRequest, refusal: &Refusal, now: Millis) -> Result<u64, QuotaError> {
        revision(self.change(account, Change::Refuse { req: req.clone(), refusal: refusal.clone() }, now).await?)
    }

    /// Upstream mode: units charged here that the service's figures do not show yet.
    async fn pending_charges(&self, account: AccountId) -> Result<Units, QuotaError> {
        Ok(self.mirror(account).await?.map_or(Units::ZERO, |(ledger, _)| ledger.pending()))
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

fn revision(changed: Changed) -> Result<u64, QuotaError> {
    match changed {
        Changed::Revision(revision) => Ok(revision),
        other => Err(unexpected(&other)),
    }
}

fn progress(changed: Changed) -> Result<Progress, QuotaError> {
    match changed {
        Changed::Progress(progress) => Ok(progress),
        other => Err(unexpected(&other)),
    }
}

/// A change that came to another kind of answer than its own: a defect.
fn unexpected(changed: &Changed) -> QuotaError {
    QuotaError::Store(StoreError::Thread(format!("a change came to an unexpected answer: {changed:?}")))
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
    async fn change(&self, account: AccountId, change: Change, now: Millis) -> Result<Changed, QuotaError> {
        self.run(move |s| s.change(account, &change, now)).await?
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
    async fn mirror(&self, account: AccountId) -> Result<Option<(Ledger, Option<Millis>)>, QuotaError> {
        self.run(move |s| s.mirror(account)).await?
    }
    async fn upstream_running(&self) -> Result<Vec<UpstreamTask>, StoreError> {
        self.run(SqliteStore::upstream_running).await?
    }
    async fn upstream_task(&self, key: TaskKey) -> Result<Option<UpstreamTask>, StoreError> {
        self.run(move |s| s.upstream_task(&key)).await?
    }
}
