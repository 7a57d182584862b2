//! The SQLite store (`SqliteStore`, the embedded default; `pg.rs` is the
//! PostgreSQL one): schema, migrations, and every change as one transaction.
//!
//! One connection behind a `std::sync::Mutex`: a change reads the figures,
//! applies the rules and writes the result while holding it, inside one
//! `BEGIN IMMEDIATE` transaction, so two concurrent submits can never both
//! pass a check that only one of them fits (no check-then-act overshoot).
//! The server calls it only from the store's own thread
//! (`storage::SqliteStorage`), never from an async worker; every critical
//! section is a few small queries.
//!
//! Each change bumps the account's revision in the same transaction, then,
//! still under the lock, the new state is published to the account's streams,
//! so streams receive states in revision order.

use std::sync::{Mutex, MutexGuard};

use quota_widget::core::wire::{
    FinishedTask, Millis, Outcome, Package, RunningTask, ServerState, SlotPool,
    SlotRule, SubmitAccepted, SubmitRequest, Units,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::{QuotaError, Refusal, StoreError};
use crate::hub::{Hub, Message};
use quota_widget::core::rules::{self, Capacity, MAX_COUNT};

mod mirror;
pub mod pg;
pub use mirror::{MirrorPack, UpstreamTask};

pub use crate::ids::{parse_task_id, task_wire_id, AccountId};
pub(crate) use crate::ids::package_wire_id;

/// How many ended tasks a state shows.
pub const FINISHED_WINDOW: u32 = 20;

/// Longest accepted `client_request_id`, to bound what a client can store.
const MAX_REQUEST_ID_LEN: usize = 200;

// What both stores check of a request before they decide on it.

pub(crate) fn check_token(token: &str) -> Result<(), QuotaError> {
    if valid_token(token) {
        Ok(())
    } else {
        Err(QuotaError::BadRequest("token must be 1-128 characters of A-Z a-z 0-9 - _ . ~".into()))
    }
}

pub(crate) fn check_submit(req: &SubmitRequest) -> Result<(), QuotaError> {
    if req.count == 0 || req.count > MAX_COUNT {
        return Err(QuotaError::BadRequest(format!("count must be between 1 and {MAX_COUNT}")));
    }
    if req.client_request_id.is_empty() || req.client_request_id.chars().count() > MAX_REQUEST_ID_LEN {
        return Err(QuotaError::BadRequest(format!(
            "client_request_id must be 1 to {MAX_REQUEST_ID_LEN} characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_package(p: &PackageSpec) -> Result<(), QuotaError> {
    if p.name.chars().count() > 200 {
        return Err(QuotaError::BadRequest("package name is longer than 200 characters".into()));
    }
    Ok(())
}

/// The kinds of work every account has, with their fixed cost and slot rule.
pub const KINDS: [(&str, Units, SlotRule); 2] = [
    ("image", Units::whole(4), SlotRule::PerItem),
    ("video", Units::whole(20), SlotRule::PerTask),
];

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
"#];

/// The migration after which `accounts.token_hash` is filled (index in
/// `MIGRATIONS`).
const TOKEN_HASH_MIGRATION: usize = 4;

/// Hex SHA-256 of a secret: what the store keeps and looks up.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

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

/// A package to create, relative to now.
#[derive(Clone, Debug)]
pub struct PackageSpec {
    pub name: String,
    pub total: Units,
    /// May be negative (already effective) ...
    pub effective_in_ms: i64,
    /// ... and negative here makes an already expired package (tests).
    pub expires_in_ms: i64,
}

/// A new account's plan and packages.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    pub image_limit: u32,
    pub video_limit: u32,
    pub packages: Vec<PackageSpec>,
}

const DAY_MS: i64 = 86_400_000;

impl AccountSpec {
    /// The demo account: a pack expiring soon, a big one, a pending one.
    pub fn demo() -> Self {
        AccountSpec {
            image_limit: 4,
            video_limit: 1,
            packages: vec![
                PackageSpec {
                    name: "Starter pack".into(),
                    total: Units::whole(200),
                    effective_in_ms: 0,
                    expires_in_ms: 3 * DAY_MS,
                },
                PackageSpec {
                    name: "Pro pack".into(),
                    total: Units::whole(2000),
                    effective_in_ms: 0,
                    expires_in_ms: 60 * DAY_MS,
                },
                PackageSpec {
                    name: "Next month".into(),
                    total: Units::whole(500),
                    effective_in_ms: 10 * DAY_MS,
                    expires_in_ms: 40 * DAY_MS,
                },
            ],
        }
    }
}

/// The answer of the store to a submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// `repeat` is true when the request id had already been accepted: the
    /// first answer is returned and nothing more is reserved.
    Accepted {
        accepted: SubmitAccepted,
        repeat: bool,
    },
    Refused {
        refusal: Refusal,
        revision: u64,
    },
}

/// What an accepted task is to be created upstream with.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamFields<'a> {
    /// The family of work (`kling::Family::name`).
    pub family: &'a str,
    /// The JSON object of the dashboard's generation fields.
    pub params: &'a str,
}

/// How a running task ends.
#[derive(Clone, Debug)]
pub enum TaskEnd {
    /// Deduct `units` (default: the reserved cost).
    Succeed {
        units: Option<Units>,
    },
    Fail {
        reason: String,
    },
}

/// What ending a task did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub outcome: Outcome,
    pub units_charged: Units,
    pub revision: u64,
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    hub: Hub,
}

/// SQLite integers are i64; the wire's are u64. Negative never gets stored
/// (CHECK constraints), so clamping only guards against a hand-edited file.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An amount of units as stored: integer thousandths.
pub(crate) fn units_of(db: i64) -> Units {
    Units::from_milli(to_u64(db))
}

pub(crate) fn units_db(u: Units) -> Result<i64, QuotaError> {
    to_i64(u.milli(), "units")
}

fn to_i64(v: u64, what: &str) -> Result<i64, QuotaError> {
    i64::try_from(v).map_err(|_| QuotaError::BadRequest(format!("{what} is too large")))
}

fn slot_rule_str(rule: SlotRule) -> &'static str {
    match rule {
        SlotRule::PerItem => "per_item",
        SlotRule::PerTask => "per_task",
    }
}

fn slot_rule_parse(s: &str) -> SlotRule {
    if s == "per_task" {
        SlotRule::PerTask
    } else {
        SlotRule::PerItem
    }
}

/// Tokens travel in a cookie and a header: keep them to characters that need
/// no quoting in either, so a token can never inject a header attribute.
pub fn valid_token(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` (`:memory:` for none) and
    /// brings its schema up to date.
    pub fn open(path: &str, hub: Hub) -> Result<Self, StoreError> {
        let mut conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        conn.pragma_update(None, "foreign_keys", true)?;
        if path != ":memory:" {
            // WAL keeps readers of the file (sqlite3 CLI, backups) from
            // blocking the server; NORMAL is durable enough for WAL mode.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            hub,
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` in one immediate transaction; if it reports a change for
    /// `account`, commits and publishes the new state before unlocking.
    fn change<T>(
        &self,
        account: AccountId,
        now: Millis,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, bool), QuotaError>,
    ) -> Result<T, QuotaError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (out, changed) = f(&tx)?;
        if changed {
            tx.execute(
                "UPDATE accounts SET revised_at_ms = ?2 WHERE id = ?1",
                params![account, now],
            )?;
        }
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
            let limit = if kind == "image" {
                spec.image_limit
            } else {
                spec.video_limit
            };
            tx.execute(
                "INSERT INTO pools (account_id, kind, slot_limit, unit_cost, slot_rule) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account, kind, limit, units_db(unit_cost)?, slot_rule_str(rule)],
            )?;
        }
        for p in &spec.packages {
            insert_package(&tx, account, p, now)?;
        }
        tx.commit()?;
        Ok(account)
    }

    /// Creates the account unless its token exists; returns its id either way.
    pub fn ensure_account(
        &self,
        token: &str,
        spec: &AccountSpec,
        now: Millis,
    ) -> Result<AccountId, QuotaError> {
        match self.create_account(token, spec, now) {
            Err(QuotaError::AccountExists) => self
                .account_by_token(token)?
                .ok_or_else(|| QuotaError::BadRequest("account vanished".into())),
            other => other,
        }
    }

    pub fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        let conn = self.lock()?;
        read_state(&conn, account, now)
    }

    pub fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        read_revision(&conn, account)
    }

    /// R1-R3: checks slots and units and inserts the task, in one transaction.
    pub fn submit(
        &self,
        account: AccountId,
        req: &SubmitRequest,
        now: Millis,
    ) -> Result<SubmitOutcome, QuotaError> {
        self.submit_with(account, req, None, now)
    }

    /// As [`SqliteStore::submit`]; an accepted task also keeps what it is to be
    /// created upstream with (upstream mode).
    pub fn submit_with(
        &self,
        account: AccountId,
        req: &SubmitRequest,
        upstream: Option<&UpstreamFields<'_>>,
        now: Millis,
    ) -> Result<SubmitOutcome, QuotaError> {
        check_submit(req)?;
        self.change(account, now, |tx| {
            let pool: Option<(i64, i64, String)> = tx
                .query_row(
                    "SELECT slot_limit, unit_cost, slot_rule FROM pools WHERE account_id = ?1 AND kind = ?2",
                    params![account, req.kind],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let prior: Option<(i64, i64, i64, i64)> = tx
                .query_row(
                    "SELECT id, slots, cost, accepted_revision FROM tasks
                     WHERE account_id = ?1 AND client_request_id = ?2 AND status <> 'refused'",
                    params![account, req.client_request_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let in_use: i64 = tx.query_row(
                "SELECT COALESCE(SUM(slots), 0) FROM tasks WHERE account_id = ?1 AND kind = ?2 AND status = 'running'",
                params![account, req.kind],
                |r| r.get(0),
            )?;
            let reserved: i64 = tx.query_row(
                "SELECT COALESCE(SUM(cost), 0) FROM tasks WHERE account_id = ?1 AND status = 'running'",
                [account],
                |r| r.get(0),
            )?;
            let rows = SubmitRows {
                pool: pool.map(|(limit, unit_cost, rule)| {
                    (u32::try_from(limit).unwrap_or(0), units_of(unit_cost), slot_rule_parse(&rule))
                }),
                prior: prior.map(|(id, slots, cost, rev)| SubmitAccepted {
                    task_id: task_wire_id(id),
                    client_request_id: req.client_request_id.clone(),
                    slots: u32::try_from(slots).unwrap_or(0),
                    reserved_units: units_of(cost),
                    revision: to_u64(rev),
                }),
                in_use: u32::try_from(in_use).unwrap_or(u32::MAX),
                reserved: units_of(reserved),
                packages: read_packages(tx, account, now)?,
            };

            match decide_submit(req, &rows, now)? {
                SubmitDecision::Repeat(accepted) => Ok((SubmitOutcome::Accepted { accepted, repeat: true }, false)),
                SubmitDecision::Start { slots, cost } => {
                    let revision = bump_revision(tx, account)?;
                    let revision_db = to_i64(revision, "revision")?;
                    tx.execute(
                        "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                            accepted_revision, started_at_ms, upstream_family, upstream_params)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10)",
                        params![
                            account,
                            req.kind,
                            req.count,
                            slots,
                            units_db(cost)?,
                            req.client_request_id,
                            revision_db,
                            now,
                            upstream.map(|u| u.family),
                            upstream.map(|u| u.params)
                        ],
                    )?;
                    let accepted = SubmitAccepted {
                        task_id: task_wire_id(tx.last_insert_rowid()),
                        client_request_id: req.client_request_id.clone(),
                        slots,
                        reserved_units: cost,
                        revision,
                    };
                    Ok((SubmitOutcome::Accepted { accepted, repeat: false }, true))
                }
                SubmitDecision::Refuse { refusal, slots, cost } => {
                    let revision = insert_refusal(tx, account, req, slots, cost, &refusal, now)?;
                    Ok((SubmitOutcome::Refused { refusal, revision }, true))
                }
            }
        })
    }

    /// Ends a running task of `account`: success turns its hold into a
    /// deduction, failure releases it (R3).
    pub fn finish(
        &self,
        account: AccountId,
        task_id: i64,
        end: &TaskEnd,
        now: Millis,
    ) -> Result<Ended, QuotaError> {
        self.change(account, now, |tx| {
            let task: Option<(String, i64)> = tx
                .query_row(
                    "SELECT status, cost FROM tasks WHERE id = ?1 AND account_id = ?2",
                    params![task_id, account],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let rows = FinishRows {
                task: task.map(|(status, cost)| (status, units_of(cost))),
                packages: read_packages(tx, account, now)?,
            };
            let ended = match decide_finish(task_id, &rows, end, now)? {
                FinishDecision::Succeed { amount, plan } => {
                    let charged = match mirror::load_ledger(tx, account)? {
                        // The service deducts; the ledger shows it until the
                        // service's own figure does.
                        Some(mut ledger) => {
                            ledger.charge(task_wire_id(task_id), amount, now);
                            mirror::save_ledger(tx, account, &ledger)?;
                            mirror::show(tx, account, &ledger, now)?;
                            amount
                        }
                        None => deduct(tx, task_id, &plan)?,
                    };
                    tx.execute(
                        "UPDATE tasks SET status = 'succeeded', units_charged = ?1, finished_at_ms = ?2 WHERE id = ?3",
                        params![units_db(charged)?, now, task_id],
                    )?;
                    (Outcome::Succeeded, charged)
                }
                FinishDecision::Fail { reason } => {
                    tx.execute(
                        "UPDATE tasks SET status = 'failed', units_charged = 0, reason = ?1, finished_at_ms = ?2
                         WHERE id = ?3",
                        params![reason, now, task_id],
                    )?;
                    (Outcome::Failed, Units::ZERO)
                }
            };
            let revision = bump_revision(tx, account)?;
            Ok((Ended { outcome: ended.0, units_charged: ended.1, revision }, true))
        })
    }

    /// Adds a package (dev grant). Returns its wire id and the new revision.
    pub fn grant_package(
        &self,
        account: AccountId,
        spec: &PackageSpec,
        now: Millis,
    ) -> Result<(String, u64), QuotaError> {
        self.change(account, now, |tx| {
            let id = insert_package(tx, account, spec, now)?;
            let revision = bump_revision(tx, account)?;
            Ok(((package_wire_id(id), revision), true))
        })
    }

    /// Sets a pool's limit (dev). Running tasks keep their slots even if the
    /// new limit is below what they hold; new submits see no free slot.
    pub fn set_limit(
        &self,
        account: AccountId,
        kind: &str,
        limit: u32,
        now: Millis,
    ) -> Result<u64, QuotaError> {
        self.change(account, now, |tx| {
            let n = tx.execute(
                "UPDATE pools SET slot_limit = ?1 WHERE account_id = ?2 AND kind = ?3",
                params![limit, account, kind],
            )?;
            if n == 0 {
                return Err(QuotaError::BadRequest(format!("unknown kind {kind:?}")));
            }
            Ok((bump_revision(tx, account)?, true))
        })
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
            bump_revision(&tx, a)?;
            tx.execute("UPDATE accounts SET revised_at_ms = ?2 WHERE id = ?1", params![a, upto])?;
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
    Ok(())
}

/// A refusal is recorded, so the activity list can say "refused, not
/// charged", and it is a change (R4). Returns the new revision.
fn insert_refusal(
    tx: &Transaction<'_>,
    account: AccountId,
    req: &SubmitRequest,
    slots: u32,
    cost: Units,
    refusal: &Refusal,
    now: Millis,
) -> Result<u64, QuotaError> {
    let revision = bump_revision(tx, account)?;
    tx.execute(
        "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                            units_charged, reason, started_at_ms, finished_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'refused', ?6, 0, ?7, ?8, ?8)",
        params![
            account,
            req.kind,
            req.count,
            slots,
            units_db(cost)?,
            req.client_request_id,
            refusal.message(),
            now
        ],
    )?;
    Ok(revision)
}

pub(crate) fn bump_revision(tx: &Transaction<'_>, account: AccountId) -> Result<u64, rusqlite::Error> {
    let rev: i64 = tx.query_row(
        "UPDATE accounts SET revision = revision + 1 WHERE id = ?1 RETURNING revision",
        [account],
        |r| r.get(0),
    )?;
    Ok(to_u64(rev))
}

fn insert_package(
    tx: &Transaction<'_>,
    account: AccountId,
    p: &PackageSpec,
    now: Millis,
) -> Result<i64, QuotaError> {
    check_package(p)?;
    let total = units_db(p.total)?;
    let effective = now.saturating_add(p.effective_in_ms);
    let expires = now.saturating_add(p.expires_in_ms);
    tx.execute(
        "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
        params![account, p.name, total, effective, expires],
    )?;
    Ok(tx.last_insert_rowid())
}

/// R6: takes what `plan` says from each package and records who paid.
/// Returns the units deducted.
fn deduct(tx: &Transaction<'_>, task_id: i64, plan: &[(i64, Units)]) -> Result<Units, QuotaError> {
    let mut charged = Units::ZERO;
    for &(package, units) in plan {
        let units_db = units_db(units)?;
        tx.execute(
            "UPDATE packages SET remaining = remaining - ?1 WHERE id = ?2",
            params![units_db, package],
        )?;
        tx.execute(
            "INSERT INTO charges (task_id, package_id, units) VALUES (?1, ?2, ?3)",
            params![task_id, package, units_db],
        )?;
        charged += units;
    }
    Ok(charged)
}

fn read_revision(conn: &Connection, account: AccountId) -> Result<u64, StoreError> {
    let rev: i64 = conn.query_row(
        "SELECT revision FROM accounts WHERE id = ?1",
        [account],
        |r| r.get(0),
    )?;
    Ok(to_u64(rev))
}

fn outcome_parse(s: &str) -> Outcome {
    match s {
        "succeeded" => Outcome::Succeeded,
        "failed" => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

/// The account's packages as its state shows them at `now`, with their
/// store ids, in spending order (earliest expiry first). A package the
/// service no longer reports is kept (tasks' charges may name it) but not
/// shown, and so never counts.
fn read_packages(conn: &Connection, account: AccountId, now: Millis) -> Result<Vec<(i64, Package)>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, total, remaining, effective_at_ms, expires_at_ms, upstream_status FROM packages
         WHERE account_id = ?1 AND COALESCE(upstream_status, '') <> 'gone' ORDER BY expires_at_ms, id",
    )?;
    let rows = stmt.query_map([account], |r| {
        let id: i64 = r.get(0)?;
        let remaining = units_of(r.get(3)?);
        let effective_at_ms: i64 = r.get(4)?;
        let expires_at_ms: i64 = r.get(5)?;
        let local = rules::package_status(remaining, effective_at_ms, expires_at_ms, now);
        let upstream: Option<String> = r.get(6)?;
        let package = Package {
            id: package_wire_id(id),
            name: r.get(1)?,
            total: units_of(r.get(2)?),
            remaining,
            effective_at_ms,
            expires_at_ms,
            status: mirror::status(upstream.as_deref(), local),
        };
        Ok((id, package))
    })?;
    rows.collect()
}

/// The packages whose units count at `now` by the core's rule (R2,
/// [`rules::counts`]), as `(store id, remaining)` in the order given: what
/// a submit may spend and, in spending order, what a deduction takes from.
pub(crate) fn counting(packages: &[(i64, Package)], now: Millis) -> Vec<(i64, Units)> {
    packages.iter().filter(|(_, p)| rules::counts(p, now)).map(|(id, p)| (*id, p.remaining)).collect()
}

/// What a submit decides on, as the store's transaction loads it (under the
/// store's lock, or the account's row lock on PostgreSQL).
pub(crate) struct SubmitRows {
    /// The requested kind's pool: its limit, cost per item and slot rule.
    pub pool: Option<(u32, Units, SlotRule)>,
    /// The first answer to an accepted task with the request's id.
    pub prior: Option<SubmitAccepted>,
    /// Slots held by the running tasks of the kind.
    pub in_use: u32,
    /// Units reserved by the running tasks of every kind.
    pub reserved: Units,
    /// The account's packages as its state shows them ([`read_packages`]).
    pub packages: Vec<(i64, Package)>,
}

/// What a submit's transaction is to save.
pub(crate) enum SubmitDecision {
    /// The request id was accepted before: answer as then, save nothing.
    Repeat(SubmitAccepted),
    /// Start a task that holds `slots` and reserves `cost`.
    Start { slots: u32, cost: Units },
    /// Record the refusal.
    Refuse { refusal: Refusal, slots: u32, cost: Units },
}

/// The submit decision of both stores (R1-R3 by the core's rules), written
/// once over the rows they load.
pub(crate) fn decide_submit(req: &SubmitRequest, rows: &SubmitRows, now: Millis) -> Result<SubmitDecision, QuotaError> {
    let Some((limit, unit_cost, rule)) = rows.pool else {
        return Err(QuotaError::BadRequest(format!("unknown kind {:?}", req.kind)));
    };
    if let Some(accepted) = &rows.prior {
        return Ok(SubmitDecision::Repeat(accepted.clone()));
    }
    let slots = rule.slots_for(req.count);
    let cost = unit_cost.times(req.count);
    let cap = Capacity {
        limit,
        in_use: rows.in_use,
        spendable: counting(&rows.packages, now).into_iter().map(|(_, u)| u).sum(),
        reserved: rows.reserved,
    };
    Ok(match cap.admit(slots, cost) {
        Ok(()) => SubmitDecision::Start { slots, cost },
        Err(shortfall) => SubmitDecision::Refuse { refusal: shortfall.into(), slots, cost },
    })
}

/// What ending a task decides on, as the store's transaction loads it.
pub(crate) struct FinishRows {
    /// The task, if it is the account's: its status and reserved cost.
    pub task: Option<(String, Units)>,
    /// The account's packages as its state shows them ([`read_packages`]).
    pub packages: Vec<(i64, Package)>,
}

/// What ending a task's transaction is to save.
pub(crate) enum FinishDecision<'a> {
    /// Charge `amount`: `plan` says which packages pay what (R6; less than
    /// `amount` if the units are short). An upstream account charges its
    /// ledger instead.
    Succeed { amount: Units, plan: Vec<(i64, Units)> },
    /// Charge nothing (R3).
    Fail { reason: &'a str },
}

/// How both stores end a task: once, and a success paid by the packages
/// that count now (the core's rules), earliest expiry first.
pub(crate) fn decide_finish<'a>(
    task_id: i64,
    rows: &FinishRows,
    end: &'a TaskEnd,
    now: Millis,
) -> Result<FinishDecision<'a>, QuotaError> {
    // Another account's task is "not found", not "forbidden": its
    // existence is none of this account's business.
    let Some((status, cost)) = &rows.task else {
        return Err(QuotaError::TaskNotFound(task_wire_id(task_id)));
    };
    if status != "running" {
        return Err(QuotaError::TaskEnded(task_wire_id(task_id)));
    }
    Ok(match end {
        TaskEnd::Succeed { units } => {
            let amount = units.unwrap_or(*cost);
            FinishDecision::Succeed { amount, plan: rules::plan_deduction(&counting(&rows.packages, now), amount) }
        }
        TaskEnd::Fail { reason } => FinishDecision::Fail { reason },
    })
}

/// The account's state at `now`. Read without a transaction of its own: the
/// caller holds the only connection, so nothing changes while it reads.
fn read_state(
    conn: &Connection,
    account: AccountId,
    now: Millis,
) -> Result<ServerState, StoreError> {
    let revision = read_revision(conn, account)?;

    let mut stmt = conn.prepare_cached(
        "SELECT p.kind, p.slot_limit, p.unit_cost, p.slot_rule,
                (SELECT COALESCE(SUM(t.slots), 0) FROM tasks t
                 WHERE t.account_id = p.account_id AND t.kind = p.kind AND t.status = 'running')
         FROM pools p WHERE p.account_id = ?1 ORDER BY p.kind",
    )?;
    let pools = stmt
        .query_map([account], |r| {
            Ok(SlotPool {
                kind: r.get(0)?,
                limit: r.get(1)?,
                unit_cost: units_of(r.get(2)?),
                slot_rule: slot_rule_parse(&r.get::<_, String>(3)?),
                in_use: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let packages = read_packages(conn, account, now)?.into_iter().map(|(_, p)| p).collect();

    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, slots, cost, client_request_id, started_at_ms FROM tasks
         WHERE account_id = ?1 AND status = 'running' ORDER BY started_at_ms, id",
    )?;
    let running = stmt
        .query_map([account], |r| {
            Ok(RunningTask {
                id: task_wire_id(r.get(0)?),
                kind: r.get(1)?,
                slots: r.get(2)?,
                reserved_units: units_of(r.get(3)?),
                client_request_id: r.get(4)?,
                started_at_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, slots, status, units_charged, reason, client_request_id, finished_at_ms FROM tasks
         WHERE account_id = ?1 AND status <> 'running' ORDER BY finished_at_ms DESC, id DESC LIMIT ?2",
    )?;
    let finished = stmt
        .query_map(params![account, FINISHED_WINDOW], |r| {
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
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let packages_synced_at_ms = mirror::synced_at(conn, account)?;
    Ok(ServerState {
        revision,
        server_time_ms: now,
        pools,
        packages,
        running,
        finished,
        packages_synced_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quota_widget::core::wire::PackageStatus;

    fn store_with(spec: &AccountSpec) -> (SqliteStore, AccountId) {
        let store = SqliteStore::open(":memory:", Hub::default()).expect("open");
        let a = store.create_account("t1", spec, 1_000).expect("account");
        (store, a)
    }

    fn req(id: &str, kind: &str, count: u32) -> SubmitRequest {
        SubmitRequest {
            kind: kind.into(),
            count,
            client_request_id: id.into(),
            prompt: None,
        }
    }

    #[test]
    fn schema_version_is_set() {
        let store = SqliteStore::open(":memory:", Hub::default()).expect("open");
        let conn = store.lock().expect("lock");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("pragma");
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

    #[test]
    fn refusal_and_accept_bump_revision() {
        let (store, a) = store_with(&AccountSpec::demo());
        let r0 = store.revision(a).expect("rev");
        let out = store
            .submit(a, &req("x", "video", 1), 2_000)
            .expect("submit");
        let SubmitOutcome::Accepted {
            accepted,
            repeat: false,
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(accepted.revision, r0 + 1);
        let out = store
            .submit(a, &req("y", "video", 1), 2_000)
            .expect("submit");
        assert_eq!(
            out,
            SubmitOutcome::Refused {
                refusal: Refusal::OverConcurrency,
                revision: r0 + 2
            }
        );
    }

    #[test]
    fn bad_requests_change_nothing() {
        let (store, a) = store_with(&AccountSpec::demo());
        let r0 = store.revision(a).expect("rev");
        assert!(matches!(
            store.submit(a, &req("x", "audio", 1), 2_000),
            Err(QuotaError::BadRequest(_))
        ));
        assert!(matches!(
            store.submit(a, &req("x", "image", 0), 2_000),
            Err(QuotaError::BadRequest(_))
        ));
        assert!(matches!(
            store.submit(a, &req("x", "image", 17), 2_000),
            Err(QuotaError::BadRequest(_))
        ));
        assert!(matches!(
            store.submit(a, &req("", "image", 1), 2_000),
            Err(QuotaError::BadRequest(_))
        ));
        assert_eq!(store.revision(a).expect("rev"), r0);
    }

    #[test]
    fn short_units_deduct_what_exists() {
        let spec = AccountSpec {
            image_limit: 4,
            video_limit: 1,
            packages: vec![PackageSpec {
                name: "p".into(),
                total: Units::whole(10),
                effective_in_ms: 0,
                expires_in_ms: DAY_MS,
            }],
        };
        let (store, a) = store_with(&spec);
        let SubmitOutcome::Accepted { accepted, .. } = store
            .submit(a, &req("x", "image", 1), 2_000)
            .expect("submit")
        else {
            panic!("refused")
        };
        let id = parse_task_id(&accepted.task_id).expect("id");
        let ended = store
            .finish(a, id, &TaskEnd::Succeed { units: Some(Units::whole(50)) }, 3_000)
            .expect("finish");
        assert_eq!(ended.units_charged, Units::whole(10));
        let s = store.state(a, 3_000).expect("state");
        assert_eq!(s.packages[0].remaining, Units::ZERO);
        assert_eq!(s.packages[0].status, PackageStatus::Exhausted);
    }

    #[test]
    fn boundaries_bump_revision() {
        let (store, a) = store_with(&AccountSpec::demo());
        let r0 = store.revision(a).expect("rev");
        // The demo's starter pack expires 3 days after creation at t=1000.
        assert!(store
            .pass_boundaries(1_000, 2_000)
            .expect("pass")
            .is_empty());
        assert_eq!(
            store
                .pass_boundaries(1_000, 1_000 + 3 * DAY_MS)
                .expect("pass"),
            vec![a]
        );
        assert_eq!(store.revision(a).expect("rev"), r0 + 1);
    }

    #[test]
    fn a_boundary_already_in_the_published_state_bumps_nothing() {
        // The demo account is created at t=1000 with a package effective
        // then: the state published at creation already shows it active.
        let (store, a) = store_with(&AccountSpec::demo());
        let r0 = store.revision(a).expect("rev");
        assert!(store.pass_boundaries(0, 1_500).expect("pass").is_empty());
        assert_eq!(store.revision(a).expect("rev"), r0);
    }
}
