//! The PostgreSQL store, for several instances of the server on one
//! database (`--db postgres://...`).
//!
//! **No overshoot across instances.** Every change takes the account's row
//! lock first (`SELECT ... FOR UPDATE` in a `READ COMMITTED` transaction)
//! and only then reads the figures it decides on: two submits for one
//! account, on any instances, are serialised by that lock, while other
//! accounts proceed in parallel. A lock rather than `SERIALIZABLE`: the
//! conflict is certain (every submit of an account reads and writes the
//! same figures), so serialisable transactions would mostly abort and retry;
//! the lock makes them wait their turn instead, and the code needs no retry
//! loop.
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

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::{try_join, try_join4};
use futures_util::{stream, StreamExt};
use quota_widget::core::rules;
use quota_widget::core::wire::{
    FinishedTask, Millis, Outcome, Package, RunningTask, ServerState, SlotPool, SubmitAccepted, SubmitRequest, Units,
};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    decide_finish, decide_submit, outcome_parse, package_wire_id, secret_hash, slot_rule_parse, slot_rule_str, task_wire_id, to_u64, units_db,
    units_of, AccountId, AccountSpec, Ended, PackageSpec, FinishDecision, FinishRows, SubmitDecision, SubmitOutcome, SubmitRows, TaskEnd, FINISHED_WINDOW, KINDS,
};
use crate::error::{QuotaError, StoreError};
use crate::hub::{Hub, Message};
use crate::storage::Storage;

/// The channel of state changes.
const CHANNEL: &str = "qw_state";
/// Key of the advisory lock under which one instance migrates at a time.
const MIGRATION_LOCK: i64 = 0x7177_5f6d_6967; // "qw_mig"

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
"#];

/// Whether `--db` names a PostgreSQL database.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

pub struct PgStore {
    pool: Pool,
    hub: Hub,
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

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
        let store = PgStore { pool, hub };
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

    /// Begins a change of `account`: its row lock first, so that every
    /// change of one account, on any instance, waits for the one before.
    async fn begin(client: &mut Object, account: AccountId) -> Result<Tx<'_>, QuotaError> {
        let tx = client.transaction().await?;
        if tx.query_opt("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", &[&account]).await?.is_none() {
            return Err(QuotaError::Unauthorized);
        }
        Ok(tx)
    }

    /// Ends a change: bumps the revision, marks when, and tells every
    /// instance (delivered at commit). Returns the new revision.
    async fn changed(tx: &Tx<'_>, account: AccountId, now: Millis) -> Result<u64, StoreError> {
        let row = tx
            .query_one(
                "UPDATE accounts SET revision = revision + 1, revised_at_ms = $2 WHERE id = $1 RETURNING revision",
                &[&account, &now],
            )
            .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &account.to_string()]).await?;
        Ok(to_u64(row.get(0)))
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
            let limit = i64::from(if kind == "image" { spec.image_limit } else { spec.video_limit });
            tx.execute(
                "INSERT INTO pools (account_id, kind, slot_limit, unit_cost, slot_rule) VALUES ($1, $2, $3, $4, $5)",
                &[&account, &kind, &limit, &units_db(unit_cost)?, &slot_rule_str(rule)],
            )
            .await?;
        }
        for p in &spec.packages {
            insert_package(&tx, account, p, now).await?;
        }
        tx.commit().await?;
        Ok(account)
    }

    async fn state(&self, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for the revision and every row it describes.
        let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let state = read_state(&tx, account, now).await?;
        tx.commit().await?;
        Ok(state)
    }

    async fn revision(&self, account: AccountId) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT revision FROM accounts WHERE id = $1", &[&account]).await?;
        Ok(to_u64(row.get(0)))
    }

    async fn submit(&self, account: AccountId, req: &SubmitRequest, now: Millis) -> Result<SubmitOutcome, QuotaError> {
        super::check_submit(req)?;
        let mut client = self.client().await?;
        let tx = Self::begin(&mut client, account).await?;
        // Sent together: tokio-postgres pipelines the queries of one
        // connection, so the rows come in one round trip.
        let (pool, prior, figures, packages) = try_join4(
            tx.query_opt(
                "SELECT slot_limit, unit_cost, slot_rule FROM pools WHERE account_id = $1 AND kind = $2",
                &[&account, &req.kind],
            ),
            // An accepted request id, from whichever instance took it.
            tx.query_opt(
                "SELECT id, slots, cost, accepted_revision FROM tasks
                 WHERE account_id = $1 AND client_request_id = $2 AND status <> 'refused'",
                &[&account, &req.client_request_id],
            ),
            tx.query_one(
                "SELECT
                   (SELECT COALESCE(SUM(slots), 0)::BIGINT FROM tasks WHERE account_id = $1 AND kind = $2 AND status = 'running'),
                   (SELECT COALESCE(SUM(cost), 0)::BIGINT FROM tasks WHERE account_id = $1 AND status = 'running')",
                &[&account, &req.kind],
            ),
            read_packages(&tx, account, now),
        )
        .await?;
        let rows = SubmitRows {
            pool: pool.map(|p| {
                (u32::try_from(p.get::<_, i64>(0)).unwrap_or(0), units_of(p.get(1)), slot_rule_parse(p.get(2)))
            }),
            prior: prior.map(|p| SubmitAccepted {
                task_id: task_wire_id(p.get(0)),
                client_request_id: req.client_request_id.clone(),
                slots: u32::try_from(p.get::<_, i64>(1)).unwrap_or(0),
                reserved_units: units_of(p.get(2)),
                revision: to_u64(p.get::<_, Option<i64>>(3).unwrap_or(0)),
            }),
            in_use: u32::try_from(figures.get::<_, i64>(0)).unwrap_or(u32::MAX),
            reserved: units_of(figures.get(1)),
            packages,
        };
        let outcome = match decide_submit(req, &rows, now)? {
            SubmitDecision::Repeat(accepted) => {
                tx.commit().await?;
                return Ok(SubmitOutcome::Accepted { accepted, repeat: true });
            }
            SubmitDecision::Start { slots, cost } => {
                let revision = Self::changed(&tx, account, now).await?;
                let rev_db = i64::try_from(revision).unwrap_or(i64::MAX);
                let row = tx
                    .query_one(
                        "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                            accepted_revision, started_at_ms)
                         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING id",
                        &[
                            &account,
                            &req.kind,
                            &i64::from(req.count),
                            &i64::from(slots),
                            &units_db(cost)?,
                            &req.client_request_id,
                            &rev_db,
                            &now,
                        ],
                    )
                    .await?;
                let accepted = SubmitAccepted {
                    task_id: task_wire_id(row.get(0)),
                    client_request_id: req.client_request_id.clone(),
                    slots,
                    reserved_units: cost,
                    revision,
                };
                SubmitOutcome::Accepted { accepted, repeat: false }
            }
            SubmitDecision::Refuse { refusal, slots, cost } => {
                let revision = Self::changed(&tx, account, now).await?;
                tx.execute(
                    "INSERT INTO tasks (account_id, kind, count, slots, cost, status, client_request_id,
                                        units_charged, reason, started_at_ms, finished_at_ms)
                     VALUES ($1, $2, $3, $4, $5, 'refused', $6, 0, $7, $8, $8)",
                    &[
                        &account,
                        &req.kind,
                        &i64::from(req.count),
                        &i64::from(slots),
                        &units_db(cost)?,
                        &req.client_request_id,
                        &refusal.message(),
                        &now,
                    ],
                )
                .await?;
                SubmitOutcome::Refused { refusal, revision }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn finish(&self, account: AccountId, task_id: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError> {
        let mut client = self.client().await?;
        // No such account: no such task of it either, as the SQLite store says.
        let tx = Self::begin(&mut client, account).await.map_err(|e| match e {
            QuotaError::Unauthorized => QuotaError::TaskNotFound(task_wire_id(task_id)),
            e => e,
        })?;
        let (task, packages) = try_join(
            tx.query_opt("SELECT status, cost FROM tasks WHERE id = $1 AND account_id = $2", &[&task_id, &account]),
            read_packages(&tx, account, now),
        )
        .await?;
        // Under the account's lock: a task another instance ended is seen
        // ended here, so no task ends twice.
        let rows = FinishRows {
            task: task.map(|r| (r.get(0), units_of(r.get(1)))),
            packages,
        };
        let (outcome, charged) = match decide_finish(task_id, &rows, end, now)? {
            FinishDecision::Succeed { plan, .. } => {
                let charged = deduct(&tx, task_id, &plan).await?;
                tx.execute(
                    "UPDATE tasks SET status = 'succeeded', units_charged = $1, finished_at_ms = $2 WHERE id = $3",
                    &[&units_db(charged)?, &now, &task_id],
                )
                .await?;
                (Outcome::Succeeded, charged)
            }
            FinishDecision::Fail { reason } => {
                tx.execute(
                    "UPDATE tasks SET status = 'failed', units_charged = 0, reason = $1, finished_at_ms = $2 WHERE id = $3",
                    &[&reason, &now, &task_id],
                )
                .await?;
                (Outcome::Failed, Units::ZERO)
            }
        };
        let revision = Self::changed(&tx, account, now).await?;
        tx.commit().await?;
        Ok(Ended { outcome, units_charged: charged, revision })
    }

    async fn grant_package(&self, account: AccountId, spec: &PackageSpec, now: Millis) -> Result<(String, u64), QuotaError> {
        let mut client = self.client().await?;
        let tx = Self::begin(&mut client, account).await?;
        let id = insert_package(&tx, account, spec, now).await?;
        let revision = Self::changed(&tx, account, now).await?;
        tx.commit().await?;
        Ok((package_wire_id(id), revision))
    }

    async fn set_limit(&self, account: AccountId, kind: &str, limit: u32, now: Millis) -> Result<u64, QuotaError> {
        let mut client = self.client().await?;
        let tx = Self::begin(&mut client, account).await?;
        let n = tx
            .execute(
                "UPDATE pools SET slot_limit = $1 WHERE account_id = $2 AND kind = $3",
                &[&i64::from(limit), &account, &kind],
            )
            .await?;
        if n == 0 {
            return Err(QuotaError::BadRequest(format!("unknown kind {kind:?}")));
        }
        let revision = Self::changed(&tx, account, now).await?;
        tx.commit().await?;
        Ok(revision)
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
            Self::changed(&tx, a, upto).await?;
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

async fn insert_package(tx: &Tx<'_>, account: AccountId, p: &PackageSpec, now: Millis) -> Result<i64, QuotaError> {
    super::check_package(p)?;
    let total = units_db(p.total)?;
    let effective = now.saturating_add(p.effective_in_ms);
    let expires = now.saturating_add(p.expires_in_ms);
    let row = tx
        .query_one(
            "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $3, $4, $5) RETURNING id",
            &[&account, &p.name, &total, &effective, &expires],
        )
        .await?;
    Ok(row.get(0))
}

/// R6, as the SQLite store's `deduct`: takes what `plan` says from each
/// package and records who paid.
async fn deduct(tx: &Tx<'_>, task_id: i64, plan: &[(i64, Units)]) -> Result<Units, QuotaError> {
    let mut charged = Units::ZERO;
    for &(package, units) in plan {
        let units_db = units_db(units)?;
        tx.execute("UPDATE packages SET remaining = remaining - $1 WHERE id = $2", &[&units_db, &package])
            .await?;
        tx.execute(
            "INSERT INTO charges (task_id, package_id, units) VALUES ($1, $2, $3)",
            &[&task_id, &package, &units_db],
        )
        .await?;
        charged += units;
    }
    Ok(charged)
}

/// As the SQLite store's: the account's packages as its state shows them
/// at `now`, with their store ids, earliest expiry first.
async fn read_packages(tx: &Tx<'_>, account: AccountId, now: Millis) -> Result<Vec<(i64, Package)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT id, name, total, remaining, effective_at_ms, expires_at_ms FROM packages
             WHERE account_id = $1 ORDER BY expires_at_ms, id",
            &[&account],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let remaining = units_of(r.get(3));
            let (effective_at_ms, expires_at_ms): (i64, i64) = (r.get(4), r.get(5));
            let package = Package {
                id: package_wire_id(id),
                name: r.get(1),
                total: units_of(r.get(2)),
                remaining,
                effective_at_ms,
                expires_at_ms,
                status: rules::package_status(remaining, effective_at_ms, expires_at_ms, now),
            };
            (id, package)
        })
        .collect())
}

async fn read_state(tx: &Tx<'_>, account: AccountId, now: Millis) -> Result<ServerState, StoreError> {
    let revision = to_u64(tx.query_one("SELECT revision FROM accounts WHERE id = $1", &[&account]).await?.get(0));
    let pools = tx
        .query(
            "SELECT p.kind, p.slot_limit, p.unit_cost, p.slot_rule,
                    (SELECT COALESCE(SUM(t.slots), 0)::BIGINT FROM tasks t
                     WHERE t.account_id = p.account_id AND t.kind = p.kind AND t.status = 'running')
             FROM pools p WHERE p.account_id = $1 ORDER BY p.kind",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| SlotPool {
            kind: r.get(0),
            limit: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            unit_cost: units_of(r.get(2)),
            slot_rule: slot_rule_parse(r.get(3)),
            in_use: u32::try_from(r.get::<_, i64>(4)).unwrap_or(u32::MAX),
        })
        .collect();
    let packages = read_packages(tx, account, now).await?.into_iter().map(|(_, p)| p).collect();
    let running = tx
        .query(
            "SELECT id, kind, slots, cost, client_request_id, started_at_ms FROM tasks
             WHERE account_id = $1 AND status = 'running' ORDER BY started_at_ms, id",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| RunningTask {
            id: task_wire_id(r.get(0)),
            kind: r.get(1),
            slots: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
            reserved_units: units_of(r.get(3)),
            client_request_id: r.get(4),
            started_at_ms: r.get(5),
        })
        .collect();
    let finished = tx
        .query(
            "SELECT id, kind, slots, status, units_charged, reason, client_request_id, finished_at_ms FROM tasks
             WHERE account_id = $1 AND status <> 'running' ORDER BY finished_at_ms DESC, id DESC LIMIT $2",
            &[&account, &i64::from(FINISHED_WINDOW)],
        )
        .await?
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
        .collect();
    Ok(ServerState { revision, server_time_ms: now, pools, packages, running, finished, packages_synced_at_ms: None })
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
    if let Ok(state) = read_state(&tx, account, now).await {
        if let Some(msg) = Message::state(&state) {
            hub.send(account, msg);
        }
    }
    let _ = tx.commit().await;
}
