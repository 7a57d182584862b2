//! The PostgreSQL store, for several instances of the server on one
//! database (`--db postgres://...`): schema, migrations, and the rows that
//! the quota transactions (`store::apply`, written once for both stores)
//! load and save.
//!
//! **No overshoot across instances.** Every change takes the account's row
//! lock first (`SELECT ... FOR UPDATE` in a `READ COMMITTED` transaction)
//! and only then reads the figures it decides on: two submits for one
//! account, on any instances, are serialised by that lock, while other
//! accounts proceed in parallel. A lock rather than `SERIALIZABLE`: the
//! conflict is certain (every submit of an account reads and writes the
//! same figures), so serialisable transactions would mostly abort and retry;
//! the lock makes them wait their turn instead, and the code needs no retry
//! loop. The reads are sent with the lock, pipelined on one connection:
//! PostgreSQL runs them in order, each after the lock is granted, and each
//! sees what the lock's previous holder committed.
//!
//! **Events across instances.** The transaction that changes an account
//! also runs `pg_notify('qw_state', <account id>)`; PostgreSQL delivers
//! notifications at commit, in commit order. Every instance listens on its
//! own connection and, for the accounts it has streams for, reads the state
//! and hands it to its hub: a change made through any instance reaches the
//! streams of all of them, newest revision last (a stream never goes back:
//! `sse.rs` drops any revision it has sent). Revisions live in the database,
//! so `Last-Event-ID` resumes exactly on whichever instance a stream
//! reconnects to.
//!
//! **One syncing instance in upstream mode.** The instance that holds the
//! account's advisory lock on a connection of its own reads the service's
//! packs and polls its tasks ([`PgStore::lead`]); PostgreSQL releases the
//! lock when that connection ends (the process stopped or died), and
//! another instance takes it at its next try.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::{stream, StreamExt};
use quota_widget::core::reconcile::Ledger;
use quota_widget::core::wire::{FinishedTask, Millis, RunningTask, ServerState, SlotPool, SubmitRequest, Units};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{
    apply, check_package, outcome_parse, secret_hash, slot_rule_parse, slot_rule_str, snapshot, task_wire_id, to_db, to_u64,
    units_db, units_of, AcceptedRow, AccountId, AccountSpec, Change, Changed, MirrorPack, PackageRow, PoolRow, QueuedRow,
    Rows, TaskKey, TaskRow, NewTask, UpstreamTask, KINDS, UPSTREAM_TASK_COLUMNS,
};
use crate::error::{QuotaError, StoreError};
use crate::hub::{Hub, Message};
use crate::storage::Storage;

/// The channel of state changes.
const CHANNEL: &str = "qw_state";
/// Key of the advisory lock under which one instance migrates at a time.
const MIGRATION_LOCK: i64 = 0x7177_5f6d_6967; // "qw_mig"
/// First key of the advisory lock of the instance that syncs an upstream
/// account (the second key is the account's id).
const SYNC_LOCK: i32 = 0x7177_5f73; // "qw_s"

/// Schema migrations, in order; `qw_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE accounts (
    id            BIGSERIAL PRIMARY KEY,
    token_hash    TEXT      NOT NULL UNIQUE,
    revision      BIGINT    NOT NULL DEFAULT 0,
    created_at_ms BIGINT    NOT NULL,
    revised_at_ms BIGINT    NOT NULL DEFAULT 0
);
CREATE TABLE pools (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    kind       TEXT   NOT NULL,
    slot_limit BIGINT NOT NULL CHECK (slot_limit >= 0),
    unit_cost  BIGINT NOT NULL CHECK (unit_cost >= 0),
    slot_rule  TEXT   NOT NULL CHECK (slot_rule IN ('per_item', 'per_task')),
    PRIMARY KEY (account_id, kind)
);
CREATE TABLE packages (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts(id),
    name            TEXT   NOT NULL,
    total           BIGINT NOT NULL CHECK (total >= 0),
    remaining       BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= total),
    effective_at_ms BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL
);
CREATE INDEX packages_by_account ON packages (account_id, expires_at_ms);
CREATE TABLE tasks (
    id                BIGSERIAL PRIMARY KEY,
    account_id        BIGINT NOT NULL REFERENCES accounts(id),
    kind              TEXT   NOT NULL,
    count             BIGINT NOT NULL,
    slots             BIGINT NOT NULL,
    cost              BIGINT NOT NULL,
    status            TEXT   NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'refused')),
    client_request_id TEXT,
    units_charged     BIGINT NOT NULL DEFAULT 0,
    reason            TEXT,
    accepted_revision BIGINT,
    started_at_ms     BIGINT NOT NULL,
    finished_at_ms    BIGINT
);
CREATE UNIQUE INDEX tasks_request_id ON tasks (account_id, client_request_id) WHERE status <> 'refused';
CREATE INDEX tasks_by_status ON tasks (account_id, status, finished_at_ms);
CREATE TABLE charges (
    task_id    BIGINT NOT NULL REFERENCES tasks(id),
    package_id BIGINT NOT NULL REFERENCES packages(id),
    units      BIGINT NOT NULL CHECK (units > 0)
);
CREATE TABLE sessions (
    id_hash       TEXT   PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
"#,
// Upstream mode (docs/kling.md), as in the SQLite store: the mirrored
// account's ledger, last good sync and callback secret; the service's ids,
// figures and statuses of packs and tasks. `syncer` names the instance that
// reads the service's packs and polls its tasks (for the log and the tests;
// who it is is decided by an advisory lock, `PgStore::lead`).
r#"
CREATE TABLE mirrors (
    account_id      BIGINT PRIMARY KEY REFERENCES accounts(id),
    ledger          TEXT   NOT NULL,
    synced_at_ms    BIGINT,
    callback_secret TEXT   NOT NULL,
    syncer          TEXT,
    syncer_since_ms BIGINT
);
ALTER TABLE packages ADD COLUMN upstream_id TEXT, ADD COLUMN upstream_remaining BIGINT, ADD COLUMN upstream_status TEXT;
CREATE UNIQUE INDEX packages_upstream ON packages (account_id, upstream_id) WHERE upstream_id IS NOT NULL;
ALTER TABLE tasks ADD COLUMN upstream_family TEXT, ADD COLUMN upstream_params TEXT, ADD COLUMN upstream_task_id TEXT;
CREATE UNIQUE INDEX tasks_upstream ON tasks (upstream_task_id) WHERE upstream_task_id IS NOT NULL;
"#,
// The queue, as in the SQLite store: tasks `queued` (since `queued_at_ms`,
// sent with `queue`: `may_queue`) and `cancelled`; a request id may be used
// again after a refusal or a cancel; the revisions at which a task started
// and ended; upstream mode's hold of a kind after the service's 1303.
r#"
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'refused', 'cancelled'));
DROP INDEX tasks_request_id;
CREATE UNIQUE INDEX tasks_request_id ON tasks (account_id, client_request_id) WHERE status NOT IN ('refused', 'cancelled');
ALTER TABLE tasks ADD COLUMN may_queue BOOLEAN NOT NULL DEFAULT FALSE, ADD COLUMN queued_at_ms BIGINT,
    ADD COLUMN started_revision BIGINT, ADD COLUMN finished_revision BIGINT;
UPDATE tasks SET started_revision = accepted_revision;
ALTER TABLE pools ADD COLUMN held_until_ms BIGINT NOT NULL DEFAULT 0;
"#];

/// Whether `--db` names a PostgreSQL database.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

pub struct PgStore {
    pool: Pool,
    hub: Hub,
    config: tokio_postgres::Config,
    /// The connection on which this instance holds, or tries for, the
    /// advisory lock of the syncing instance: the account and whether it
    /// holds it.
    leader: tokio::sync::Mutex<Option<(tokio_postgres::Client, AccountId, bool)>>,
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

impl PgStore {
    /// Connects, migrates (one instance at a time) and starts listening for
    /// the changes of every instance.
    pub async fn open(url: &str, hub: Hub) -> Result<PgStore, StoreError> {
        let config: tokio_postgres::Config = url.parse()?;
        let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(16).build().map_err(pool_error)?;
        let store = PgStore { pool, hub, config: config.clone(), leader: tokio::sync::Mutex::new(None) };
        store.migrate().await?;
        let (ready, listening) = oneshot::channel();
        tokio::spawn(listen(config, store.pool.clone(), store.hub.clone(), ready));
        // A change committed before this instance listens would never reach
        // its streams (notifications are not queued for later listeners):
        // serve once the listener listens. Should it not within 10 s, the
        // streams still catch up, at their next ping.
        let _ = tokio::time::timeout(Duration::from_secs(10), listening).await;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS qw_schema (version BIGINT NOT NULL)").await?;
        let version: i64 = match tx.query_opt("SELECT version FROM qw_schema", &[]).await? {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO qw_schema (version) VALUES (0)", &[]).await?;
                0
            }
        };
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > supported {
            return Err(StoreError::SchemaTooNew { found: version, supported });
        }
        for sql in MIGRATIONS.iter().skip(usize::try_from(version).unwrap_or(0)) {
            tx.batch_execute(sql).await?;
        }
        tx.execute("UPDATE qw_schema SET version = $1", &[&supported]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Upstream mode: whether this instance syncs `account` (see the
    /// module's notes). A held lock is kept while its connection lives;
    /// otherwise one try, which on success names this instance in
    /// `mirrors.syncer`.
    pub async fn lead(&self, account: AccountId) -> Result<bool, StoreError> {
        let mut slot = self.leader.lock().await;
        if let Some((client, of, held)) = slot.as_ref() {
            if !client.is_closed() && *of == account {
                if *held {
                    return Ok(true);
                }
            } else {
                *slot = None;
            }
        }
        if slot.is_none() {
            let (client, connection) = self.config.connect(NoTls).await?;
            // Ends when the client is dropped or the connection fails; the
            // lock ends with it.
            tokio::spawn(connection);
            *slot = Some((client, account, false));
        }
        let Some((client, _, held)) = slot.as_mut() else { return Ok(false) };
        let key = i32::try_from(account).map_err(|_| pool_error("account id beyond the advisory lock's keys"))?;
        *held = client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&SYNC_LOCK, &key]).await?.get(0);
        if *held {
            let me = format!("pid {}", std::process::id());
            let now = crate::now_ms();
            self.client()
                .await?
                .execute("UPDATE mirrors SET syncer = $2, syncer_since_ms = $3 WHERE account_id = $1", &[&account, &me, &now])
                .await?;
        }
        Ok(*held)
    }
}

#[async_trait]
impl Storage for PgStore {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn shared(&self) -> bool {
        true
    }

    async fn change(&self, account: AccountId, change: Change, now: Millis) -> Result<Changed, QuotaError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (out, _) = apply(&Pg { db: &tx, account }, &change, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT id FROM accounts WHERE token_hash = $1", &[&secret_hash(token)]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn create_account(&self, token: &str, spec: &AccountSpec, now: Millis) -> Result<AccountId, QuotaError> {
        super::check_token(token)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO accounts (token_hash, revision, created_at_ms, revised_at_ms) VALUES ($1, 1, $2, $2)
                 ON CONFLICT (token_hash) DO NOTHING RETURNING id",
                &[&secret_hash(token), &now],
            )
            .await?;
        let Some(row) = row else {
            return Err(QuotaError::AccountExists);
        };
        let account: AccountId = row.get(0);
        for (kind, unit_cost, rule) in KINDS {
            tx.execute(
                "INSERT INTO pools (account_id, kind, slot_limit, unit_cost, slot_rule) VALUES ($1, $2, $3, $4, $5)",
                &[&account, &kind, &i64::from(spec.limit(kind)), &units_db(unit_cost)?, &slot_rule_str(rule)],
            )
            .await?;
        }
        let rows = Pg { db: &tx, account };
        for p in &spec.packages {
            check_package(p)?;
            rows.insert_package(&p.name, p.total, now.saturating_add(p.effective_in_ms), now.saturating_add(p.expires_in_ms)).await?;
        }
        tx.commit().await?;
        Ok(account)
    }

    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for the revision and every row it describes.
        let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let state = snapshot(&Pg { db: &tx, account }, now).await?;
        tx.commit().await?;
        Ok(state)
    }

    async fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        Pg { db: &self.client().await?, account }.revision().await
    }

    async fn mirror(&self, account: AccountId) -> Result<Option<(Ledger, Option<Millis>)>, QuotaError> {
        super::mirror(&Pg { db: &self.client().await?, account }).await
    }

    async fn upstream_running(&self) -> Result<Vec<UpstreamTask>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE status = 'running' AND upstream_family IS NOT NULL
             ORDER BY started_at_ms, id"
        );
        Ok(client.query(&sql, &[]).await?.iter().map(upstream_task_row).collect())
    }

    async fn upstream_task(&self, key: TaskKey) -> Result<Option<UpstreamTask>, StoreError> {
        let client = self.client().await?;
        let row = match key {
            TaskKey::Local(id) => {
                let sql = format!("SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE id = $1 AND upstream_family IS NOT NULL");
                client.query_opt(&sql, &[&id]).await?
            }
            TaskKey::Upstream(id) => {
                let sql = format!("SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE upstream_task_id = $1");
                client.query_opt(&sql, &[&id]).await?
            }
        };
        Ok(row.as_ref().map(upstream_task_row))
    }

    async fn lead(&self, account: AccountId) -> Result<bool, StoreError> {
        PgStore::lead(self, account).await
    }

    async fn running_tasks(&self) -> Result<Vec<(AccountId, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT account_id, id FROM tasks WHERE status = 'running' ORDER BY id", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn overdue_tasks(&self, before: Millis) -> Result<Vec<(AccountId, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT account_id, id FROM tasks WHERE status = 'running' AND started_at_ms < $1 ORDER BY id",
                &[&before],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// As the SQLite store's: bumps the accounts with a package boundary in
    /// `(after, upto]` not yet in their last state. Every instance runs its
    /// boundary clock; the row lock and `revised_at_ms` make a boundary bump
    /// an account once, whichever instance sees it first: an instance that
    /// waited for the lock finds `revised_at_ms` moved (PostgreSQL checks
    /// the condition again on the locked row) and skips the account. Rows
    /// are locked in id order, as every change locks one row: no deadlock.
    async fn pass_boundaries(&self, after: Millis, upto: Millis) -> Result<Vec<AccountId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT a.id FROM accounts a
                 WHERE EXISTS (SELECT 1 FROM packages p WHERE p.account_id = a.id AND (
                         (p.effective_at_ms > $1 AND p.effective_at_ms <= $2 AND p.effective_at_ms > a.revised_at_ms)
                      OR (p.expires_at_ms > $1 AND p.expires_at_ms <= $2 AND p.expires_at_ms > a.revised_at_ms)))
                 ORDER BY a.id FOR UPDATE OF a",
                &[&after, &upto],
            )
            .await?;
        let accounts: Vec<AccountId> = rows.iter().map(|r| r.get(0)).collect();
        for &a in &accounts {
            Pg { db: &tx, account: a }.bump(upto).await?;
        }
        tx.commit().await?;
        Ok(accounts)
    }

    async fn create_session(&self, account: AccountId, now: Millis, expires_at_ms: Millis) -> Result<String, StoreError> {
        let id: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE expires_at_ms <= $1", &[&now]).await?;
        client
            .execute(
                "INSERT INTO sessions (id_hash, account_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
                &[&secret_hash(&id), &account, &now, &expires_at_ms],
            )
            .await?;
        Ok(id)
    }

    async fn session_account(&self, id: &str, now: Millis) -> Result<Option<AccountId>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT account_id FROM sessions WHERE id_hash = $1 AND expires_at_ms > $2",
                &[&secret_hash(id), &now],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE id_hash = $1", &[&secret_hash(id)]).await?;
        Ok(())
    }
}

fn upstream_task_row(r: &Row) -> UpstreamTask {
    UpstreamTask::from_row((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9), r.get(10)))
}

/// One account's rows over a transaction (or, for a single read, a
/// connection). Statements are prepared once per connection and kept.
struct Pg<'a, C> {
    db: &'a C,
    account: AccountId,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Pg<'_, C> {
    async fn all(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let statement = self.db.prepare_cached(sql).await?;
        Ok(self.db.query(&statement, params).await?)
    }

    async fn one(&self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        let statement = self.db.prepare_cached(sql).await?;
        Ok(self.db.query_one(&statement, params).await?)
    }

    async fn opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, StoreError> {
        let statement = self.db.prepare_cached(sql).await?;
        Ok(self.db.query_opt(&statement, params).await?)
    }

    async fn exec(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let statement = self.db.prepare_cached(sql).await?;
        Ok(self.db.execute(&statement, params).await?)
    }
}

impl<C: GenericClient> Rows for Pg<'_, C> {
    async fn lock(&self) -> Result<Option<u64>, StoreError> {
        let row = self.opt("SELECT revision FROM accounts WHERE id = $1 FOR UPDATE", &[&self.account]).await?;
        Ok(row.map(|r| to_u64(r.get(0))))
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        Ok(to_u64(self.one("SELECT revision FROM accounts WHERE id = $1", &[&self.account]).await?.get(0)))
    }

    async fn pool(&self, kind: &str) -> Result<Option<PoolRow>, StoreError> {
        let row = self
            .opt(
                "SELECT slot_limit, unit_cost, slot_rule, held_until_ms FROM pools WHERE account_id = $1 AND kind = $2",
                &[&self.account, &kind],
            )
            .await?;
        Ok(row.map(|p| PoolRow {
            limit: u32::try_from(p.get::<_, i64>(0)).unwrap_or(0),
            unit_cost: units_of(p.get(1)),
            rule: slot_rule_parse(p.get(2)),
            held_until_ms: p.get(3),
        }))
    }

    async fn pools(&self) -> Result<Vec<SlotPool>, StoreError> {
        let rows = self
            .all(
                "SELECT p.kind, p.slot_limit, p.unit_cost, p.slot_rule,
                        (SELECT COALESCE(SUM(t.slots), 0)::BIGINT FROM tasks t
                         WHERE t.account_id = p.account_id AND t.kind = p.kind AND t.status = 'running')
                 FROM pools p WHERE p.account_id = $1 ORDER BY p.kind",
                &[&self.account],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SlotPool {
                kind: r.get(0),
                limit: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                unit_cost: units_of(r.get(2)),
                slot_rule: slot_rule_parse(r.get(3)),
                in_use: u32::try_from(r.get::<_, i64>(4)).unwrap_or(u32::MAX),
            })
            .collect())
    }

    async fn accepted(&self, request_id: &str) -> Result<Option<AcceptedRow>, StoreError> {
        let row = self
            .opt(
                "SELECT id, slots, cost, accepted_revision, status FROM tasks
                 WHERE account_id = $1 AND client_request_id = $2 AND status NOT IN ('refused', 'cancelled')",
                &[&self.account, &request_id],
            )
            .await?;
        Ok(row.map(|p| {
            (
                p.get(0),
                u32::try_from(p.get::<_, i64>(1)).unwrap_or(0),
                units_of(p.get(2)),
                to_u64(p.get::<_, Option<i64>>(3).unwrap_or(0)),
                p.get(4),
            )
        }))
    }

    async fn in_use(&self, kind: &str) -> Result<(u32, Units), StoreError> {
        let row = self
            .one(
                "SELECT COALESCE(SUM(slots) FILTER (WHERE kind = $2), 0)::BIGINT, COALESCE(SUM(cost), 0)::BIGINT
                 FROM tasks WHERE account_id = $1 AND status = 'running'",
                &[&self.account, &kind],
            )
            .await?;
        Ok((u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX), units_of(row.get(1))))
    }

    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        let rows = self
            .all(
                "SELECT id, name, total, remaining, effective_at_ms, expires_at_ms, upstream_id, upstream_remaining, upstream_status
                 FROM packages WHERE account_id = $1 AND COALESCE(upstream_status, '') <> 'gone' ORDER BY expires_at_ms, id",
                &[&self.account],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PackageRow {
                id: r.get(0),
                name: r.get(1),
                total: units_of(r.get(2)),
                remaining: units_of(r.get(3)),
                effective_at_ms: r.get(4),
                expires_at_ms: r.get(5),
                upstream: r.get::<_, Option<String>>(6).map(|id| {
                    (id, units_of(r.get::<_, Option<i64>>(7).unwrap_or(0)), r.get::<_, Option<String>>(8).unwrap_or_default())
                }),
            })
            .collect())
    }

    async fn task(&self, id: i64) -> Result<Option<TaskRow>, StoreError> {
        let row = self
            .opt(
                "SELECT status, kind, cost, may_queue, finished_revision FROM tasks WHERE id = $1 AND account_id = $2",
                &[&id, &self.account],
            )
            .await?;
        Ok(row.map(|r| TaskRow {
            status: r.get(0),
            kind: r.get(1),
            cost: units_of(r.get(2)),
            may_queue: r.get(3),
            finished_revision: r.get::<_, Option<i64>>(4).map(to_u64),
        }))
    }

    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        let rows = self
            .all(
                "SELECT id, kind, count, slots, cost, client_request_id, COALESCE(queued_at_ms, started_at_ms) FROM tasks
                 WHERE account_id = $1 AND status = 'queued' ORDER BY id",
                &[&self.account],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueuedRow {
                id: r.get(0),
                kind: r.get(1),
                count: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                slots: u32::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                cost: units_of(r.get(4)),
                client_request_id: r.get(5),
                queued_at_ms: r.get(6),
            })
            .collect())
    }

    async fn holds(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        let rows =
            self.all("SELECT kind, held_until_ms FROM pools WHERE account_id = $1 AND held_until_ms > 0", &[&self.account]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn running(&self) -> Result<Vec<RunningTask>, StoreError> {
        let rows = self
            .all(
                "SELECT id, kind, slots, cost, client_request_id, started_at_ms FROM tasks
                 WHERE account_id = $1 AND status = 'running' ORDER BY started_at_ms, id",
                &[&self.account],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RunningTask {
                id: task_wire_id(r.get(0)),
                kind: r.get(1),
                slots: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                reserved_units: units_of(r.get(3)),
                client_request_id: r.get(4),
                started_at_ms: r.get(5),
            })
            .collect())
    }

    async fn finished(&self, n: u32) -> Result<Vec<FinishedTask>, StoreError> {
        let rows = self
            .all(
                "SELECT id, kind, slots, status, units_charged, reason, client_request_id, finished_at_ms FROM tasks
                 WHERE account_id = $1 AND status NOT IN ('running', 'queued') ORDER BY finished_at_ms DESC, id DESC LIMIT $2",
                &[&self.account, &i64::from(n)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FinishedTask {
                id: task_wire_id(r.get(0)),
                kind: r.get(1),
                slots: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                outcome: outcome_parse(r.get(3)),
                units_charged: units_of(r.get(4)),
                reason: r.get(5),
                client_request_id: r.get(6),
                finished_at_ms: r.get::<_, Option<i64>>(7).unwrap_or(0),
            })
            .collect())
    }

    async fn mirror(&self) -> Result<Option<(String, Option<Millis>)>, StoreError> {
        let row = self.opt("SELECT ledger, synced_at_ms FROM mirrors WHERE account_id = $1", &[&self.account]).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn bump(&self, now: Millis) -> Result<u64, StoreError> {
        // Every instance is told at commit.
        let row = self
            .one(
                "WITH changed AS (
                   UPDATE accounts SET revision = revision + 1, revised_at_ms = $2 WHERE id = $1 RETURNING revision)
                 SELECT revision, pg_notify($3, $1::TEXT) FROM changed",
                &[&self.account, &now, &CHANNEL],
            )
            .await?;
        Ok(to_u64(row.get(0)))
    }

    async fn start_task(&self, t: &NewTask<'_>) -> Result<i64, StoreError> {
        let row = self
            .one(
                "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                    accepted_revision, started_at_ms, upstream_family, upstream_params,
                                    may_queue, queued_at_ms, started_revision)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
                &[
                    &self.account,
                    &t.req.kind,
                    &i64::from(t.req.count),
                    &i64::from(t.slots),
                    &to_db(t.cost),
                    &if t.queued { "queued" } else { "running" },
                    &t.req.client_request_id,
                    &i64::try_from(t.revision).unwrap_or(i64::MAX),
                    &t.now,
                    &t.upstream.map(|u| u.family.as_str()),
                    &t.upstream.map(|u| u.params.as_str()),
                    &t.req.queue,
                    &t.queued.then_some(t.now),
                    &(!t.queued).then(|| i64::try_from(t.revision).unwrap_or(i64::MAX)),
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn start_queued(&self, ids: &[i64], revision: u64, now: Millis) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET status = 'running', started_at_ms = $3, started_revision = $4
             WHERE id = ANY($1) AND account_id = $2 AND status = 'queued'",
            &[&ids, &self.account, &now, &i64::try_from(revision).unwrap_or(i64::MAX)],
        )
        .await?;
        Ok(())
    }

    async fn requeue(&self, id: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET status = 'queued', queued_at_ms = COALESCE(queued_at_ms, started_at_ms), started_revision = NULL
             WHERE id = $1 AND account_id = $2 AND status = 'running'",
            &[&id, &self.account],
        )
        .await?;
        Ok(())
    }

    async fn hold(&self, kind: &str, until: Millis) -> Result<(), StoreError> {
        self.exec("UPDATE pools SET held_until_ms = $3 WHERE account_id = $1 AND kind = $2", &[&self.account, &kind, &until])
            .await?;
        Ok(())
    }

    async fn refuse_task(&self, req: &SubmitRequest, slots: u32, cost: Units, reason: &str, now: Millis) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                units_charged, reason, started_at_ms, finished_at_ms)
             VALUES ($1, $2, $3, $4, $5, 'refused', $6, 0, $7, $8, $8)",
            &[&self.account, &req.kind, &i64::from(req.count), &i64::from(slots), &to_db(cost), &req.client_request_id, &reason, &now],
        )
        .await?;
        Ok(())
    }

    async fn end_task(&self, id: i64, status: &str, charged: Units, reason: Option<&str>, revision: u64, now: Millis) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET status = $2, units_charged = $3, reason = $4, finished_at_ms = $5, finished_revision = $6 WHERE id = $1",
            &[&id, &status, &to_db(charged), &reason, &now, &i64::try_from(revision).unwrap_or(i64::MAX)],
        )
        .await?;
        Ok(())
    }

    async fn take(&self, task: i64, package: i64, units: Units) -> Result<(), StoreError> {
        self.exec(
            "WITH paid AS (UPDATE packages SET remaining = remaining - $3 WHERE id = $2)
             INSERT INTO charges (task_id, package_id, units) VALUES ($1, $2, $3)",
            &[&task, &package, &to_db(units)],
        )
        .await?;
        Ok(())
    }

    async fn set_remaining(&self, package: i64, units: Units) -> Result<(), StoreError> {
        self.exec("UPDATE packages SET remaining = $2 WHERE id = $1", &[&package, &to_db(units)]).await?;
        Ok(())
    }

    async fn insert_package(&self, name: &str, total: Units, effective_at_ms: Millis, expires_at_ms: Millis) -> Result<i64, StoreError> {
        let row = self
            .one(
                "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $3, $4, $5) RETURNING id",
                &[&self.account, &name, &to_db(total), &effective_at_ms, &expires_at_ms],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn set_pool(&self, kind: &str, limit: u32, unit_cost: Units) -> Result<(), StoreError> {
        self.exec(
            "UPDATE pools SET slot_limit = $3, unit_cost = $4 WHERE account_id = $1 AND kind = $2",
            &[&self.account, &kind, &i64::from(limit), &to_db(unit_cost)],
        )
        .await?;
        Ok(())
    }

    async fn ensure_mirror(&self, ledger: &str, secret: &str) -> Result<String, StoreError> {
        self.exec(
            "INSERT INTO mirrors (account_id, ledger, callback_secret) VALUES ($1, $2, $3) ON CONFLICT (account_id) DO NOTHING",
            &[&self.account, &ledger, &secret],
        )
        .await?;
        Ok(self.one("SELECT callback_secret FROM mirrors WHERE account_id = $1", &[&self.account]).await?.get(0))
    }

    async fn save_ledger(&self, ledger: &str) -> Result<(), StoreError> {
        self.exec("UPDATE mirrors SET ledger = $2 WHERE account_id = $1", &[&self.account, &ledger]).await?;
        Ok(())
    }

    async fn set_synced(&self, now: Millis) -> Result<(), StoreError> {
        self.exec("UPDATE mirrors SET synced_at_ms = $2 WHERE account_id = $1", &[&self.account, &now]).await?;
        Ok(())
    }

    async fn put_pack(&self, p: &MirrorPack) -> Result<(), StoreError> {
        let (total, remaining) = (to_db(p.total), to_db(p.remaining.min(p.total)));
        self.exec(
            "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms,
                                   upstream_id, upstream_remaining, upstream_status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $4, $8)
             ON CONFLICT (account_id, upstream_id) WHERE upstream_id IS NOT NULL DO UPDATE SET
               name = EXCLUDED.name, total = EXCLUDED.total, upstream_remaining = EXCLUDED.upstream_remaining,
               upstream_status = EXCLUDED.upstream_status, effective_at_ms = EXCLUDED.effective_at_ms,
               expires_at_ms = EXCLUDED.expires_at_ms, remaining = LEAST(packages.remaining, EXCLUDED.total)",
            &[&self.account, &p.name, &total, &remaining, &p.effective_at_ms, &p.expires_at_ms, &p.upstream_id, &p.status],
        )
        .await?;
        Ok(())
    }

    async fn hide_pack(&self, upstream_id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE packages SET upstream_status = 'gone' WHERE account_id = $1 AND upstream_id = $2",
            &[&self.account, &upstream_id],
        )
        .await?;
        Ok(())
    }

    async fn attach(&self, task: i64, upstream_id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET upstream_task_id = $3 WHERE id = $1 AND account_id = $2 AND upstream_task_id IS NULL",
            &[&task, &self.account, &upstream_id],
        )
        .await?;
        Ok(())
    }
}

/// Listens for the changes of every instance and hands the new states of
/// the accounts this instance has streams for to its hub. On a lost
/// connection it reconnects after a second and sends every stream the
/// current state (a notification may have been missed meanwhile).
async fn listen(config: tokio_postgres::Config, pool: Pool, hub: Hub, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        if let Err(e) = listen_once(&config, &pool, &hub, &mut ready).await {
            eprintln!("quota-server: the PostgreSQL change listener stopped ({e}); reconnecting in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for account in hub.accounts() {
            publish(&pool, &hub, account).await;
        }
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    pool: &Pool,
    hub: &Hub,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<String, tokio_postgres::Error>>();
    let messages = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    let outcome = loop {
        match rx.recv().await {
            Some(Ok(payload)) => {
                if let Ok(account) = payload.parse::<AccountId>() {
                    publish(pool, hub, account).await;
                }
            }
            Some(Err(e)) => break Err(StoreError::Pg(e)),
            None => break Err(pool_error("the listening connection closed")),
        }
    };
    messages.abort();
    drop(client);
    outcome
}

/// Reads and publishes an account's state if this instance streams it.
async fn publish(pool: &Pool, hub: &Hub, account: AccountId) {
    if !hub.has_subscribers(account) {
        return;
    }
    let Ok(mut client) = pool.get().await else { return };
    let Ok(tx) = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).read_only(true).start().await
    else {
        return;
    };
    let now = crate::now_ms();
    if let Ok(state) = snapshot(&Pg { db: &tx, account }, now).await {
        if let Some(msg) = Message::state(&state) {
            hub.send(account, msg);
        }
    }
    let _ = tx.commit().await;
}
