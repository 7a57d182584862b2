//! The store behind one trait, two implementations: SQLite (embedded, the
//! default: one process) and PostgreSQL (several instances on one
//! database; its implementation of the trait is in `store/pg.rs`).
//! Handlers, the event streams and the worker see only
//! [`Storage`]; `--db` picks the implementation.

use std::sync::Arc;

use async_trait::async_trait;
use quota_widget::core::wire::{Millis, ServerState, SubmitRequest};

use crate::error::{QuotaError, StoreError};
use crate::hub::Hub;
use crate::store::pg::{is_postgres_url, PgStore};
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

/// The store `--db` names: a `postgres://` or `postgresql://` URL, else a
/// SQLite file (or `:memory:`). The SQLite store is also returned as
/// itself, for upstream mode, which runs on it alone.
pub async fn open(db: &str, hub: Hub) -> Result<(Arc<dyn Storage>, Option<Arc<SqliteStore>>), StoreError> {
    if is_postgres_url(db) {
        let pg = PgStore::open(db, hub).await?;
        Ok((Arc::new(pg), None))
    } else {
        let sqlite = Arc::new(SqliteStore::open(db, hub)?);
        Ok((Arc::clone(&sqlite) as Arc<dyn Storage>, Some(sqlite)))
    }
}

#[async_trait]
impl Storage for SqliteStore {
    fn hub(&self) -> &Hub {
        SqliteStore::hub(self)
    }
    fn shared(&self) -> bool {
        false
    }
    async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        SqliteStore::account_by_token(self, token)
    }
    async fn create_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError> {
        SqliteStore::create_account(self, token, spec, now)
    }
    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        SqliteStore::state(self, account, now)
    }
    async fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        SqliteStore::revision(self, account)
    }
    async fn submit(&self, account: AccountId, req: &SubmitRequest, now: Millis) -> Result<SubmitOutcome, QuotaError> {
        SqliteStore::submit(self, account, req, now)
    }
    async fn finish(&self, account: AccountId, task_id: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError> {
        SqliteStore::finish(self, account, task_id, end, now)
    }
    async fn grant_package(&self, account: AccountId, spec: &PackageSpec, now: Millis) -> Result<(String, u64), QuotaError> {
        SqliteStore::grant_package(self, account, spec, now)
    }
    async fn set_limit(&self, account: AccountId, kind: &str, limit: u32, now: Millis) -> Result<u64, QuotaError> {
        SqliteStore::set_limit(self, account, kind, limit, now)
    }
    async fn running_tasks(&self) -> Result<Vec<(AccountId, i64)>, StoreError> {
        SqliteStore::running_tasks(self)
    }
    async fn pass_boundaries(&self, after: Millis, upto: Millis) -> Result<Vec<AccountId>, StoreError> {
        SqliteStore::pass_boundaries(self, after, upto)
    }
    async fn create_session(&self, account: AccountId, now: Millis, expires_at_ms: Millis) -> Result<String, StoreError> {
        SqliteStore::create_session(self, account, now, expires_at_ms)
    }
    async fn session_account(&self, id: &str, now: Millis) -> Result<Option<AccountId>, StoreError> {
        SqliteStore::session_account(self, id, now)
    }
    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        SqliteStore::delete_session(self, id)
    }
}
