//! The SQLite store (`SqliteStore`, the embedded default; `pg.rs` is the
//! PostgreSQL one): schema, migrations, and the rows that the quota
//! transactions (`store::apply`, written once for both stores) load and save.
//!
//! One connection behind a `std::sync::Mutex`: a change loads its rows,
//! decides and saves while holding it, inside one `BEGIN IMMEDIATE`
//! transaction, so two concurrent submits can never both pass a check that
//! only one of them fits (no check-then-act overshoot). The server calls it
//! only from the store's own thread (`storage::SqliteStorage`), never from
//! an async worker; every critical section is a few small queries. The
//! transactions are async (PostgreSQL's rows come over the network); over
//! SQLite's rows they never wait, and run to their end in one poll.
//!
//! Each change bumps the account's revision in the same transaction, then,
//! still under the lock, the new state is published to the account's streams,
//! so streams receive states in revision order.

use std::sync::{Mutex, MutexGuard};

use futures_util::FutureExt;
use quota_widget::core::reconcile::Ledger;
use quota_widget::core::wire::{FinishedTask, Millis, RunningTask, ServerState, SlotPool, SubmitRequest, Units};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    apply, check_package, check_token, outcome_parse, secret_hash, slot_rule_parse, slot_rule_str, snapshot,
    task_wire_id, to_db, to_u64, units_db, units_of, AccountId, AccountSpec, AcceptedRow, Change, Changed, MirrorPack,
    PackageRow, PoolRow, QueuedRow, Rows, TaskKey, TaskRow, NewTask, UpstreamTask, KINDS, UPSTREAM_TASK_COLUMNS,
};
use crate::error::{QuotaError, StoreError};
use crate::hub::{Hub, Message};

/// Schema migrations; `PRAGMA user_version` holds how many have been applied.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    token         TEXT    NOT NULL UNIQUE,
    revision      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE pools (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    kind       TEXT    NOT NULL,
    slot_limit INTEGER NOT NULL CHECK (slot_limit >= 0),
    unit_cost  INTEGER NOT NULL CHECK (unit_cost >= 0),
    slot_rule  TEXT    NOT NULL CHECK (slot_rule IN ('per_item', 'per_task')),
    PRIMARY KEY (account_id, kind)
);
CREATE TABLE packages (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    name            TEXT    NOT NULL,
    total           INTEGER NOT NULL CHECK (total >= 0),
    remaining       INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= total),
    effective_at_ms INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL
);
CREATE INDEX packages_by_account ON packages (account_id, expires_at_ms);
CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    account_id        INTEGER NOT NULL REFERENCES accounts(id),
    kind              TEXT    NOT NULL,
    count             INTEGER NOT NULL,
    slots             INTEGER NOT NULL,
    cost              INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'refused')),
    client_request_id TEXT,
    units_charged     INTEGER NOT NULL DEFAULT 0,
    reason            TEXT,
    accepted_revision INTEGER,
    started_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER
);
-- Idempotency: one accepted task per request id; refusals may repeat.
CREATE UNIQUE INDEX tasks_request_id ON tasks (account_id, client_request_id) WHERE status <> 'refused';
CREATE INDEX tasks_by_status ON tasks (account_id, status, finished_at_ms);
-- Which package paid how much for which task (R6), for audit.
CREATE TABLE charges (
    task_id    INTEGER NOT NULL REFERENCES tasks(id),
    package_id INTEGER NOT NULL REFERENCES packages(id),
    units      INTEGER NOT NULL CHECK (units > 0)
);
"#,
// When the account's state last changed: a package boundary at or before it
// is already in the state published then, so it is no change of its own.
r#"
ALTER TABLE accounts ADD COLUMN revised_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET revised_at_ms = created_at_ms;
"#,
// Amounts of units become integer thousandths (wire::Units), so that
// fractional amounts (0.25 units) are exact. Every stored amount was whole.
r#"
UPDATE pools    SET unit_cost = unit_cost * 1000;
UPDATE packages SET total = total * 1000, remaining = remaining * 1000;
UPDATE tasks    SET cost = cost * 1000, units_charged = units_charged * 1000;
UPDATE charges  SET units = units * 1000;
"#,
// Upstream mode (docs/kling.md): an account whose packages mirror an upstream
// service's. Its reconciliation ledger, the time of the last good sync, and
// the secret path of its callback URL; per package, the service's own id,
// figure and status; per task, the family, the fields it is created with
// upstream, and the service's task id once created.
r#"
CREATE TABLE mirrors (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts(id),
    ledger          TEXT    NOT NULL,
    synced_at_ms    INTEGER,
    callback_secret TEXT    NOT NULL
);
ALTER TABLE packages ADD COLUMN upstream_id TEXT;
ALTER TABLE packages ADD COLUMN upstream_remaining INTEGER;
ALTER TABLE packages ADD COLUMN upstream_status TEXT;
CREATE UNIQUE INDEX packages_upstream ON packages (account_id, upstream_id) WHERE upstream_id IS NOT NULL;
ALTER TABLE tasks ADD COLUMN upstream_family TEXT;
ALTER TABLE tasks ADD COLUMN upstream_params TEXT;
ALTER TABLE tasks ADD COLUMN upstream_task_id TEXT;
CREATE UNIQUE INDEX tasks_upstream ON tasks (upstream_task_id) WHERE upstream_task_id IS NOT NULL;
"#,
// Sessions that are not the account's secret: the cookie carries a random
// id, and the store keeps only its SHA-256, as it now keeps the tokens'
// (`token_hash`, filled from `token` by `backfill_token_hashes`), so that a
// lookup compares hashes, never the secret itself.
r#"
CREATE TABLE sessions (
    id_hash       TEXT    PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
ALTER TABLE accounts ADD COLUMN token_hash TEXT;
"#,
// The queue (docs/api.md): a request sent with `queue` while its slots are
// busy is a task of status `queued` until it starts (`queued_at_ms`: since
// when it waits; `may_queue`: sent with `queue`), and a cancelled one ends
// `cancelled`; a request id may be used again after a refusal or a cancel.
// `started_revision` and `finished_revision` are the account's revisions at
// which a task started and ended, so that what ran at once can be replayed.
// Upstream mode holds a kind's queue after the service's 1303
// (`pools.held_until_ms`). SQLite cannot change a CHECK: the table is
// rebuilt (foreign keys are off while migrations run).
r#"
CREATE TABLE tasks_new (
    id                INTEGER PRIMARY KEY,
    account_id        INTEGER NOT NULL REFERENCES accounts(id),
    kind              TEXT    NOT NULL,
    count             INTEGER NOT NULL,
    slots             INTEGER NOT NULL,
    cost              INTEGER NOT NULL,
    status            TEXT    NOT NULL
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'refused', 'cancelled')),
    client_request_id TEXT,
    units_charged     INTEGER NOT NULL DEFAULT 0,
    reason            TEXT,
    accepted_revision INTEGER,
    started_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER,
    upstream_family   TEXT,
    upstream_params   TEXT,
    upstream_task_id  TEXT,
    may_queue         INTEGER NOT NULL DEFAULT 0,
    queued_at_ms      INTEGER,
    started_revision  INTEGER,
    finished_revision INTEGER
);
INSERT INTO tasks_new (id, account_id, kind, count, slots, cost, status, client_request_id, units_charged, reason,
                       accepted_revision, started_at_ms, finished_at_ms, upstream_family, upstream_params,
                       upstream_task_id, started_revision)
SELECT id, account_id, kind, count, slots, cost, status, client_request_id, units_charged, reason,
       accepted_revision, started_at_ms, finished_at_ms, upstream_family, upstream_params, upstream_task_id,
       accepted_revision
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE UNIQUE INDEX tasks_request_id ON tasks (account_id, client_request_id) WHERE status NOT IN ('refused', 'cancelled');
CREATE INDEX tasks_by_status ON tasks (account_id, status, finished_at_ms);
CREATE UNIQUE INDEX tasks_upstream ON tasks (upstream_task_id) WHERE upstream_task_id IS NOT NULL;
ALTER TABLE pools ADD COLUMN held_until_ms INTEGER NOT NULL DEFAULT 0;
"#];

/// The migration after which `accounts.token_hash` is filled (index in
/// `MIGRATIONS`).
const TOKEN_HASH_MIGRATION: usize = 4;

/// Fills `token_hash` for the accounts made before it existed (and puts the
/// hash in place of the token, which the store no longer keeps), then makes
/// it the unique key of a lookup.
fn backfill_token_hashes(tx: &Transaction<'_>) -> Result<(), rusqlite::Error> {
    let tokens: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, token FROM accounts")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, token) in tokens {
        // The token itself is not kept: its hash takes its place.
        let hash = secret_hash(&token);
        tx.execute("UPDATE accounts SET token_hash = ?2, token = ?2 WHERE id = ?1", params![id, hash])?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX accounts_token_hash ON accounts (token_hash);")
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    hub: Hub,
}

/// A transaction over SQLite's rows waited: it never does (a defect).
fn never_waits() -> StoreError {
    StoreError::Thread("a transaction over SQLite's rows waited".into())
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` (`:memory:` for none) and
    /// brings its schema up to date.
    pub fn open(path: &str, hub: Hub) -> Result<Self, StoreError> {
        let mut conn = if path == ":memory:" { Connection::open_in_memory()? } else { Connection::open(path)? };
        conn.pragma_update(None, "foreign_keys", true)?;
        if path != ":memory:" {
            // WAL keeps readers of the file (sqlite3 CLI, backups) from
            // blocking the server; NORMAL is durable enough for WAL mode.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        migrate(&mut conn)?;
        Ok(SqliteStore { conn: Mutex::new(conn), hub })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs a change of `account` in one immediate transaction; if the
    /// state changed, commits and publishes the new state before unlocking.
    pub fn change(&self, account: AccountId, change: &Change, now: Millis) -> Result<Changed, QuotaError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (out, changed) = apply(&Sql { conn: &tx, account }, change, now).now_or_never().ok_or_else(never_waits)??;
        tx.commit()?;
        if changed {
            self.publish_state(&conn, account, now);
        }
        Ok(out)
    }

    fn publish_state(&self, conn: &Connection, account: AccountId, now: Millis) {
        if !self.hub.has_subscribers(account) {
            return;
        }
        // The change is committed; a failure to build the snapshot must not
        // turn it into an error. Streams get the state with the next change
        // or ping-triggered resync.
        if let Some(msg) = read_state(conn, account, now).ok().as_ref().and_then(Message::state) {
            self.hub.send(account, msg);
        }
    }

    /// The account of a token. It is found by the token's SHA-256, so the
    /// lookup compares hashes, and how long it takes tells nothing of how
    /// much of a guessed token was right.
    pub fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row("SELECT id FROM accounts WHERE token_hash = ?1", [secret_hash(token)], |r| r.get(0))
            .optional()?)
    }

    /// A new session of `account` until `expires_at_ms`: returns its id (32
    /// random bytes, hex), which only the cookie carries; the store keeps
    /// its hash. Expired sessions are dropped on the way.
    pub fn create_session(&self, account: AccountId, now: Millis, expires_at_ms: Millis) -> Result<String, StoreError> {
        let id: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
        let conn = self.lock()?;
        conn.execute("DELETE FROM sessions WHERE expires_at_ms <= ?1", [now])?;
        conn.execute(
            "INSERT INTO sessions (id_hash, account_id, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![secret_hash(&id), account, now, expires_at_ms],
        )?;
        Ok(id)
    }

    /// The account of a session that has not expired at `now`.
    pub fn session_account(&self, id: &str, now: Millis) -> Result<Option<AccountId>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT account_id FROM sessions WHERE id_hash = ?1 AND expires_at_ms > ?2",
                params![secret_hash(id), now],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Ends a session (sign-out); unknown ids are no error.
    pub fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [secret_hash(id)])?;
        Ok(())
    }

    /// Creates an account; `AccountExists` if the token is taken.
    pub fn create_account(
        &self,
        token: &str,
        spec: &AccountSpec,
        now: Millis,
    ) -> Result<AccountId, QuotaError> {
        check_token(token)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM accounts WHERE token_hash = ?1", [secret_hash(token)], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(QuotaError::AccountExists);
        }
        tx.execute(
            // `token` keeps its UNIQUE NOT NULL column but holds the hash:
            // the store never keeps an account's secret.
            "INSERT INTO accounts (token, token_hash, revision, created_at_ms, revised_at_ms) VALUES (?1, ?2, 1, ?3, ?3)",
            params![secret_hash(token), secret_hash(token), now],
        )?;
        let account = tx.last_insert_rowid();
        for (kind, unit_cost, rule) in KINDS {
            tx.execute(
                "INSERT INTO pools (account_id, kind, slot_limit, unit_cost, slot_rule) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account, kind, spec.limit(kind), units_db(unit_cost)?, slot_rule_str(rule)],
            )?;
        }
        let rows = Sql { conn: &tx, account };
        for p in &spec.packages {
            check_package(p)?;
            rows.insert_package(&p.name, p.total, now.saturating_add(p.effective_in_ms), now.saturating_add(p.expires_in_ms))
                .now_or_never()
                .ok_or_else(never_waits)??;
        }
        tx.commit()?;
        Ok(account)
    }

    pub fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        read_state(&*self.lock()?, account, now)
    }

    pub fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        Sql { conn: &*self.lock()?, account }.revision().now_or_never().ok_or_else(never_waits)?
    }

    /// Upstream mode: the account's ledger and the time of its last good sync.
    pub fn mirror(&self, account: AccountId) -> Result<Option<(Ledger, Option<Millis>)>, QuotaError> {
        super::mirror(&Sql { conn: &*self.lock()?, account }).now_or_never().ok_or_else(never_waits)?
    }

    /// Running tasks of upstream mode, oldest first.
    pub fn upstream_running(&self) -> Result<Vec<UpstreamTask>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE status = 'running' AND upstream_family IS NOT NULL
             ORDER BY started_at_ms, id"
        ))?;
        let rows = stmt.query_map([], upstream_task_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A task of upstream mode by the store's id or the service's.
    pub fn upstream_task(&self, key: &TaskKey) -> Result<Option<UpstreamTask>, StoreError> {
        let conn = self.lock()?;
        let found = match key {
            TaskKey::Local(id) => conn.query_row(
                &format!("SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE id = ?1 AND upstream_family IS NOT NULL"),
                [id],
                upstream_task_row,
            ),
            TaskKey::Upstream(id) => conn.query_row(
                &format!("SELECT {UPSTREAM_TASK_COLUMNS} FROM tasks WHERE upstream_task_id = ?1"),
                [id],
                upstream_task_row,
            ),
        };
        Ok(found.optional()?)
    }

    /// Every running task of every account, for the worker to resume after a
    /// restart with a file database.
    pub fn running_tasks(&self) -> Result<Vec<(AccountId, i64)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT account_id, id FROM tasks WHERE status = 'running' ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A package that becomes effective or expires changes the state without
    /// any request: bump the revision of every account with a package boundary
    /// in `(after, upto]`, so ETags and streams see it. A boundary no later
    /// than the account's last change is already in the state published then
    /// (a package granted as it starts), so it bumps nothing. Returns the
    /// accounts bumped.
    pub fn pass_boundaries(
        &self,
        after: Millis,
        upto: Millis,
    ) -> Result<Vec<AccountId>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let accounts: Vec<AccountId> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT p.account_id FROM packages p JOIN accounts a ON a.id = p.account_id
                 WHERE (p.effective_at_ms > ?1 AND p.effective_at_ms <= ?2 AND p.effective_at_ms > a.revised_at_ms)
                    OR (p.expires_at_ms > ?1 AND p.expires_at_ms <= ?2 AND p.expires_at_ms > a.revised_at_ms)",
            )?;
            let rows = stmt.query_map(params![after, upto], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for &a in &accounts {
            Sql { conn: &tx, account: a }.bump(upto).now_or_never().ok_or_else(never_waits)??;
        }
        tx.commit()?;
        for &a in &accounts {
            self.publish_state(&conn, a, upto);
        }
        Ok(accounts)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    // A migration may rebuild a table that others reference (SQLite cannot
    // alter a CHECK): foreign keys are off while they run, and checked
    // before they are on again.
    conn.pragma_update(None, "foreign_keys", false)?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i == TOKEN_HASH_MIGRATION {
            backfill_token_hashes(&tx)?;
        }
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    let broken: Option<String> = conn.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional()?;
    if let Some(table) = broken {
        return Err(StoreError::Thread(format!("a migration left a row of {table} without its referenced row")));
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn upstream_task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpstreamTask> {
    Ok(UpstreamTask::from_row((
        r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?,
    )))
}

/// The account's state at `now`, read under the store's lock (nothing
/// changes while it reads).
fn read_state(conn: &Connection, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
    snapshot(&Sql { conn, account }, now).now_or_never().ok_or_else(never_waits)?
}

/// One account's rows on the store's connection (in a transaction, or read
/// under the store's lock).
struct Sql<'c> {
    conn: &'c Connection,
    account: AccountId,
}

impl Rows for Sql<'_> {
    async fn lock(&self) -> Result<Option<u64>, StoreError> {
        // The immediate transaction holds the database: nothing more to lock.
        let mut stmt = self.conn.prepare_cached("SELECT revision FROM accounts WHERE id = ?1")?;
        Ok(stmt.query_row([self.account], |r| r.get::<_, i64>(0)).optional()?.map(to_u64))
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        let rev: i64 =
            self.conn.prepare_cached("SELECT revision FROM accounts WHERE id = ?1")?.query_row([self.account], |r| r.get(0))?;
        Ok(to_u64(rev))
    }

    async fn pool(&self, kind: &str) -> Result<Option<PoolRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT slot_limit, unit_cost, slot_rule, held_until_ms FROM pools WHERE account_id = ?1 AND kind = ?2",
        )?;
        let row = stmt
            .query_row(params![self.account, kind], |r| {
                Ok(PoolRow {
                    limit: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    unit_cost: units_of(r.get(1)?),
                    rule: slot_rule_parse(&r.get::<_, String>(2)?),
                    held_until_ms: r.get(3)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    async fn pools(&self) -> Result<Vec<SlotPool>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.kind, p.slot_limit, p.unit_cost, p.slot_rule,
                    (SELECT COALESCE(SUM(t.slots), 0) FROM tasks t
                     WHERE t.account_id = p.account_id AND t.kind = p.kind AND t.status = 'running')
             FROM pools p WHERE p.account_id = ?1 ORDER BY p.kind",
        )?;
        let rows = stmt.query_map([self.account], |r| {
            Ok(SlotPool {
                kind: r.get(0)?,
                limit: r.get(1)?,
                unit_cost: units_of(r.get(2)?),
                slot_rule: slot_rule_parse(&r.get::<_, String>(3)?),
                in_use: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn accepted(&self, request_id: &str) -> Result<Option<AcceptedRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, slots, cost, accepted_revision, status FROM tasks
             WHERE account_id = ?1 AND client_request_id = ?2 AND status NOT IN ('refused', 'cancelled')",
        )?;
        let row = stmt
            .query_row(params![self.account, request_id], |r| {
                Ok((
                    r.get(0)?,
                    u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    units_of(r.get(2)?),
                    to_u64(r.get::<_, Option<i64>>(3)?.unwrap_or(0)),
                    r.get(4)?,
                ))
            })
            .optional()?;
        Ok(row)
    }

    async fn in_use(&self, kind: &str) -> Result<(u32, Units), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT COALESCE(SUM(CASE WHEN kind = ?2 THEN slots ELSE 0 END), 0), COALESCE(SUM(cost), 0)
             FROM tasks WHERE account_id = ?1 AND status = 'running'",
        )?;
        let (slots, units): (i64, i64) = stmt.query_row(params![self.account, kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((u32::try_from(slots).unwrap_or(u32::MAX), units_of(units)))
    }

    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, total, remaining, effective_at_ms, expires_at_ms, upstream_id, upstream_remaining, upstream_status
             FROM packages WHERE account_id = ?1 AND COALESCE(upstream_status, '') <> 'gone' ORDER BY expires_at_ms, id",
        )?;
        let rows = stmt.query_map([self.account], |r| {
            let upstream: Option<String> = r.get(6)?;
            Ok(PackageRow {
                id: r.get(0)?,
                name: r.get(1)?,
                total: units_of(r.get(2)?),
                remaining: units_of(r.get(3)?),
                effective_at_ms: r.get(4)?,
                expires_at_ms: r.get(5)?,
                upstream: match upstream {
                    Some(id) => Some((id, units_of(r.get::<_, Option<i64>>(7)?.unwrap_or(0)), r.get::<_, Option<String>>(8)?.unwrap_or_default())),
                    None => None,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn task(&self, id: i64) -> Result<Option<TaskRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT status, kind, cost, may_queue, finished_revision FROM tasks WHERE id = ?1 AND account_id = ?2",
        )?;
        Ok(stmt
            .query_row(params![id, self.account], |r| {
                Ok(TaskRow {
                    status: r.get(0)?,
                    kind: r.get(1)?,
                    cost: units_of(r.get(2)?),
                    may_queue: r.get(3)?,
                    finished_revision: r.get::<_, Option<i64>>(4)?.map(to_u64),
                })
            })
            .optional()?)
    }

    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, count, slots, cost, client_request_id, COALESCE(queued_at_ms, started_at_ms) FROM tasks
             WHERE account_id = ?1 AND status = 'queued' ORDER BY id",
        )?;
        let rows = stmt.query_map([self.account], |r| {
            Ok(QueuedRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                count: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                slots: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                cost: units_of(r.get(4)?),
                client_request_id: r.get(5)?,
                queued_at_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn holds(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT kind, held_until_ms FROM pools WHERE account_id = ?1 AND held_until_ms > 0")?;
        let rows = stmt.query_map([self.account], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn running(&self) -> Result<Vec<RunningTask>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, slots, cost, client_request_id, started_at_ms FROM tasks
             WHERE account_id = ?1 AND status = 'running' ORDER BY started_at_ms, id",
        )?;
        let rows = stmt.query_map([self.account], |r| {
            Ok(RunningTask {
                id: task_wire_id(r.get(0)?),
                kind: r.get(1)?,
                slots: r.get(2)?,
                reserved_units: units_of(r.get(3)?),
                client_request_id: r.get(4)?,
                started_at_ms: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn finished(&self, n: u32) -> Result<Vec<FinishedTask>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, slots, status, units_charged, reason, client_request_id, finished_at_ms FROM tasks
             WHERE account_id = ?1 AND status NOT IN ('running', 'queued') ORDER BY finished_at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![self.account, n], |r| {
            Ok(FinishedTask {
                id: task_wire_id(r.get(0)?),
                kind: r.get(1)?,
                slots: r.get(2)?,
                outcome: outcome_parse(&r.get::<_, String>(3)?),
                units_charged: units_of(r.get(4)?),
                reason: r.get(5)?,
                client_request_id: r.get(6)?,
                finished_at_ms: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn mirror(&self) -> Result<Option<(String, Option<Millis>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT ledger, synced_at_ms FROM mirrors WHERE account_id = ?1")?;
        Ok(stmt.query_row([self.account], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    async fn bump(&self, now: Millis) -> Result<u64, StoreError> {
        let rev: i64 = self
            .conn
            .prepare_cached("UPDATE accounts SET revision = revision + 1, revised_at_ms = ?2 WHERE id = ?1 RETURNING revision")?
            .query_row(params![self.account, now], |r| r.get(0))?;
        Ok(to_u64(rev))
    }

    async fn start_task(&self, t: &NewTask<'_>) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                    accepted_revision, started_at_ms, upstream_family, upstream_params,
                                    may_queue, queued_at_ms, started_revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                self.account,
                t.req.kind,
                t.req.count,
                t.slots,
                to_db(t.cost),
                if t.queued { "queued" } else { "running" },
                t.req.client_request_id,
                i64::try_from(t.revision).unwrap_or(i64::MAX),
                t.now,
                t.upstream.map(|u| &u.family),
                t.upstream.map(|u| &u.params),
                t.req.queue,
                t.queued.then_some(t.now),
                (!t.queued).then(|| i64::try_from(t.revision).unwrap_or(i64::MAX)),
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    async fn start_queued(&self, ids: &[i64], revision: u64, now: Millis) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE tasks SET status = 'running', started_at_ms = ?3, started_revision = ?4
             WHERE id = ?1 AND account_id = ?2 AND status = 'queued'",
        )?;
        for id in ids {
            stmt.execute(params![id, self.account, now, i64::try_from(revision).unwrap_or(i64::MAX)])?;
        }
        Ok(())
    }

    async fn requeue(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET status = 'queued', queued_at_ms = COALESCE(queued_at_ms, started_at_ms), started_revision = NULL
                 WHERE id = ?1 AND account_id = ?2 AND status = 'running'",
            )?
            .execute(params![id, self.account])?;
        Ok(())
    }

    async fn hold(&self, kind: &str, until: Millis) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE pools SET held_until_ms = ?3 WHERE account_id = ?1 AND kind = ?2")?
            .execute(params![self.account, kind, until])?;
        Ok(())
    }

    async fn refuse_task(&self, req: &SubmitRequest, slots: u32, cost: Units, reason: &str, now: Millis) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                    units_charged, reason, started_at_ms, finished_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'refused', ?6, 0, ?7, ?8, ?8)",
            )?
            .execute(params![self.account, req.kind, req.count, slots, to_db(cost), req.client_request_id, reason, now])?;
        Ok(())
    }

    async fn end_task(&self, id: i64, status: &str, charged: Units, reason: Option<&str>, revision: u64, now: Millis) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET status = ?2, units_charged = ?3, reason = ?4, finished_at_ms = ?5, finished_revision = ?6
                 WHERE id = ?1",
            )?
            .execute(params![id, status, to_db(charged), reason, now, i64::try_from(revision).unwrap_or(i64::MAX)])?;
        Ok(())
    }

    async fn take(&self, task: i64, package: i64, units: Units) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE packages SET remaining = remaining - ?2 WHERE id = ?1")?
            .execute(params![package, to_db(units)])?;
        self.conn
            .prepare_cached("INSERT INTO charges (task_id, package_id, units) VALUES (?1, ?2, ?3)")?
            .execute(params![task, package, to_db(units)])?;
        Ok(())
    }

    async fn set_remaining(&self, package: i64, units: Units) -> Result<(), StoreError> {
        self.conn.prepare_cached("UPDATE packages SET remaining = ?2 WHERE id = ?1")?.execute(params![package, to_db(units)])?;
        Ok(())
    }

    async fn insert_package(&self, name: &str, total: Units, effective_at_ms: Millis, expires_at_ms: Millis) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            )?
            .execute(params![self.account, name, to_db(total), effective_at_ms, expires_at_ms])?;
        Ok(self.conn.last_insert_rowid())
    }

    async fn set_pool(&self, kind: &str, limit: u32, unit_cost: Units) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE pools SET slot_limit = ?3, unit_cost = ?4 WHERE account_id = ?1 AND kind = ?2")?
            .execute(params![self.account, kind, limit, to_db(unit_cost)])?;
        Ok(())
    }

    async fn ensure_mirror(&self, ledger: &str, secret: &str) -> Result<String, StoreError> {
        self.conn.execute(
            "INSERT INTO mirrors (account_id, ledger, callback_secret) VALUES (?1, ?2, ?3) ON CONFLICT (account_id) DO NOTHING",
            params![self.account, ledger, secret],
        )?;
        Ok(self.conn.query_row("SELECT callback_secret FROM mirrors WHERE account_id = ?1", [self.account], |r| r.get(0))?)
    }

    async fn save_ledger(&self, ledger: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE mirrors SET ledger = ?2 WHERE account_id = ?1")?
            .execute(params![self.account, ledger])?;
        Ok(())
    }

    async fn set_synced(&self, now: Millis) -> Result<(), StoreError> {
        self.conn.execute("UPDATE mirrors SET synced_at_ms = ?2 WHERE account_id = ?1", params![self.account, now])?;
        Ok(())
    }

    async fn put_pack(&self, p: &MirrorPack) -> Result<(), StoreError> {
        let (total, remaining) = (to_db(p.total), to_db(p.remaining.min(p.total)));
        let n = self.conn.execute(
            "UPDATE packages SET name = ?3, total = ?4, upstream_remaining = ?5, upstream_status = ?6,
                    effective_at_ms = ?7, expires_at_ms = ?8, remaining = MIN(remaining, ?4)
             WHERE account_id = ?1 AND upstream_id = ?2",
            params![self.account, p.upstream_id, p.name, total, remaining, p.status, p.effective_at_ms, p.expires_at_ms],
        )?;
        if n == 0 {
            self.conn.execute(
                "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms,
                                       upstream_id, upstream_remaining, upstream_status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?4, ?8)",
                params![self.account, p.name, total, remaining, p.effective_at_ms, p.expires_at_ms, p.upstream_id, p.status],
            )?;
        }
        Ok(())
    }

    async fn hide_pack(&self, upstream_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE packages SET upstream_status = 'gone' WHERE account_id = ?1 AND upstream_id = ?2",
            params![self.account, upstream_id],
        )?;
        Ok(())
    }

    async fn attach(&self, task: i64, upstream_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE tasks SET upstream_task_id = ?3 WHERE id = ?1 AND account_id = ?2 AND upstream_task_id IS NULL",
            params![task, self.account, upstream_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quota_widget::core::wire::Units;

    #[test]
    fn schema_version_is_set() {
        let store = SqliteStore::open(":memory:", Hub::default()).expect("open");
        let conn = store.lock().expect("lock");
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("pragma");
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn whole_units_of_an_older_database_become_thousandths() {
        let dir = std::env::temp_dir().join(format!("qw-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("v2.sqlite3");
        let _ = std::fs::remove_file(&path);
        {
            // A database as the schema of version 2 left it: whole units.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("v1");
            conn.execute_batch(MIGRATIONS[1]).expect("v2");
            conn.execute_batch(
                "INSERT INTO accounts (id, token, revision, created_at_ms) VALUES (1, 't', 3, 0);
                 INSERT INTO pools VALUES (1, 'image', 4, 4, 'per_item');
                 INSERT INTO packages (id, account_id, name, total, remaining, effective_at_ms, expires_at_ms)
                 VALUES (1, 1, 'p', 100, 92, 0, 9000000000000);
                 INSERT INTO tasks (id, account_id, kind, count, slots, cost, status, units_charged, started_at_ms, finished_at_ms)
                 VALUES (1, 1, 'image', 2, 2, 8, 'succeeded', 8, 1, 2);
                 INSERT INTO charges VALUES (1, 1, 8);
                 PRAGMA user_version = 2;",
            )
            .expect("v2 data");
        }
        let store = SqliteStore::open(path.to_str().expect("utf-8"), Hub::default()).expect("migrate");
        let s = store.state(1, 1_000).expect("state");
        assert_eq!(s.pools[0].unit_cost, Units::whole(4));
        assert_eq!((s.packages[0].total, s.packages[0].remaining), (Units::whole(100), Units::whole(92)));
        assert_eq!(s.finished[0].units_charged, Units::whole(8));
        let charged: i64 = store.lock().expect("lock").query_row("SELECT units FROM charges", [], |r| r.get(0)).expect("charge");
        assert_eq!(charged, 8_000);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
