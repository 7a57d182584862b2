//! Upstream mode in the store: an account whose packages mirror an upstream
//! service's (docs/kling.md). The service's figures are kept as it reports
//! them; what the state shows is reconciled by the core's
//! [`Ledger`](quota_widget::core::reconcile::Ledger), which lives in the
//! same transactions as the tasks whose charges it holds, so a restart loses
//! nothing and counts nothing twice.

use quota_widget::core::reconcile::{Ledger, PackFigure, Standing, SyncReport};
use quota_widget::core::wire::{Millis, PackageStatus, SubmitRequest, Units};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{
    bump_revision, insert_refusal, slot_rule_parse, task_wire_id, to_u64, units_db, units_of,
    AccountId, SqliteStore,
};
use crate::error::{QuotaError, Refusal};

/// A resource pack as the service reports it, in the store's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorPack {
    pub upstream_id: String,
    pub name: String,
    pub total: Units,
    /// The service's figure, which can lag its own deductions.
    pub remaining: Units,
    pub effective_at_ms: Millis,
    pub expires_at_ms: Millis,
    /// The service's status: `toBeOnline`, `online`, `expired`, `runOut`.
    pub status: String,
}

/// A task of upstream mode, as the server tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTask {
    pub account: AccountId,
    pub id: i64,
    pub kind: String,
    pub count: u32,
    pub client_request_id: String,
    pub family: String,
    /// The JSON object of the dashboard's generation fields.
    pub params: String,
    /// The service's id, once the create call answered.
    pub upstream_task_id: Option<String>,
    /// `running`, `succeeded`, `failed` or `refused`.
    pub status: String,
    pub started_at_ms: Millis,
    /// What it reserved: charged if the service reports no deduction.
    pub reserved: Units,
}

/// What the service's status means for spending (the ledger's view).
fn standing(status: &str, effective_at_ms: Millis, expires_at_ms: Millis, now: Millis) -> Standing {
    match status {
        "online" if effective_at_ms <= now && now < expires_at_ms => Standing::Online,
        "runOut" => Standing::RunOut,
        _ => Standing::Idle,
    }
}

/// The wire status of a mirrored package: the service's word where it has
/// one, else what the figures and the clock say.
pub(super) fn status(upstream: Option<&str>, local: PackageStatus) -> PackageStatus {
    match upstream {
        Some("toBeOnline") => PackageStatus::Pending,
        Some("expired") => PackageStatus::Expired,
        Some("runOut") if local != PackageStatus::Expired => PackageStatus::Exhausted,
        _ => local,
    }
}

pub(super) fn load_ledger(tx: &Transaction<'_>, account: AccountId) -> Result<Option<Ledger>, QuotaError> {
    let text: Option<String> = tx
        .query_row("SELECT ledger FROM mirrors WHERE account_id = ?1", [account], |r| r.get(0))
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| QuotaError::BadRequest(format!("the stored reconciliation ledger is unreadable: {e}")))
    })
    .transpose()
}

pub(super) fn save_ledger(tx: &Transaction<'_>, account: AccountId, ledger: &Ledger) -> Result<(), QuotaError> {
    let text = serde_json::to_string(ledger)
        .map_err(|e| QuotaError::BadRequest(format!("cannot store the ledger: {e}")))?;
    tx.execute("UPDATE mirrors SET ledger = ?2 WHERE account_id = ?1", params![account, text])?;
    Ok(())
}

/// Writes each mirrored package's shown figure: the service's, less the
/// charges it does not reflect yet, taken in spending order.
pub(super) fn show(
    tx: &Transaction<'_>,
    account: AccountId,
    ledger: &Ledger,
    now: Millis,
) -> Result<(), QuotaError> {
    let rows: Vec<(i64, String, i64, String, Millis, Millis)> = {
        let mut stmt = tx.prepare(
            "SELECT id, upstream_id, upstream_remaining, upstream_status, effective_at_ms, expires_at_ms
             FROM packages WHERE account_id = ?1 AND upstream_id IS NOT NULL AND upstream_status <> 'gone'
             ORDER BY expires_at_ms, id",
        )?;
        let rows = stmt.query_map([account], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let figures: Vec<PackFigure> = rows
        .iter()
        .map(|(_, id, remaining, status, effective, expires)| PackFigure {
            id: id.clone(),
            remaining: units_of(*remaining),
            standing: standing(status, *effective, *expires, now),
        })
        .collect();
    for ((package, ..), shown) in rows.iter().zip(ledger.shown(&figures)) {
        tx.execute(
            "UPDATE packages SET remaining = ?2 WHERE id = ?1",
            params![package, units_db(shown)?],
        )?;
    }
    Ok(())
}

pub(super) fn synced_at(conn: &Connection, account: AccountId) -> Result<Option<Millis>, rusqlite::Error> {
    Ok(conn
        .query_row(
            "SELECT synced_at_ms FROM mirrors WHERE account_id = ?1",
            [account],
            |r| r.get::<_, Option<Millis>>(0),
        )
        .optional()?
        .flatten())
}

const TASK_COLUMNS: &str = "account_id, id, kind, count, client_request_id, upstream_family, upstream_params,
     upstream_task_id, status, started_at_ms, cost";

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpstreamTask> {
    Ok(UpstreamTask {
        account: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        count: r.get(3)?,
        client_request_id: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        family: r.get(5)?,
        params: r.get::<_, Option<String>>(6)?.unwrap_or_else(|| "{}".to_owned()),
        upstream_task_id: r.get(7)?,
        status: r.get(8)?,
        started_at_ms: r.get(9)?,
        reserved: units_of(r.get(10)?),
    })
}

impl SqliteStore {
    /// Makes `account` mirror an upstream service, if it does not yet, and
    /// returns the secret part of its callback URL (`new_secret` the first
    /// time; the stored one after).
    pub fn ensure_mirror(&self, account: AccountId, new_secret: &str) -> Result<String, QuotaError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ledger = serde_json::to_string(&Ledger::new(Ledger::WINDOW_MS, Ledger::CREDIT_MS))
            .map_err(|e| QuotaError::BadRequest(e.to_string()))?;
        tx.execute(
            "INSERT INTO mirrors (account_id, ledger, callback_secret) VALUES (?1, ?2, ?3)
             ON CONFLICT (account_id) DO NOTHING",
            params![account, ledger, new_secret],
        )?;
        let secret: String = tx.query_row(
            "SELECT callback_secret FROM mirrors WHERE account_id = ?1",
            [account],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(secret)
    }

    /// Sets a pool's limit and estimated cost per item (upstream mode: both
    /// come from configuration, since the service reports neither).
    pub fn configure_pool(
        &self,
        account: AccountId,
        kind: &str,
        limit: u32,
        unit_cost: Units,
        now: Millis,
    ) -> Result<(), QuotaError> {
        self.change(account, now, |tx| {
            let before: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT slot_limit, unit_cost FROM pools WHERE account_id = ?1 AND kind = ?2",
                    params![account, kind],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some(before) = before else {
                return Err(QuotaError::BadRequest(format!("unknown kind {kind:?}")));
            };
            let after = (i64::from(limit), units_db(unit_cost)?);
            if before == after {
                return Ok(((), false));
            }
            tx.execute(
                "UPDATE pools SET slot_limit = ?3, unit_cost = ?4 WHERE account_id = ?1 AND kind = ?2",
                params![account, kind, after.0, after.1],
            )?;
            bump_revision(tx, account)?;
            Ok(((), true))
        })
    }

    /// Takes in the service's packs: keeps its figures, reconciles them with
    /// the charges seen here (the ledger), writes what to show, and notes the
    /// time of this good sync. A pack the service stopped reporting is hidden.
    pub fn sync_packages(
        &self,
        account: AccountId,
        packs: &[MirrorPack],
        now: Millis,
    ) -> Result<SyncReport, QuotaError> {
        self.change(account, now, |tx| {
            let mut ledger = load_ledger(tx, account)?
                .ok_or_else(|| QuotaError::BadRequest("the account does not mirror a service".into()))?;
            for p in packs {
                if p.name.chars().count() > 200 {
                    return Err(QuotaError::BadRequest(format!(
                        "the service's pack {:?} has a name longer than 200 characters",
                        p.upstream_id
                    )));
                }
                let total = units_db(p.total)?;
                // The wire promises remaining <= total.
                let remaining = units_db(p.remaining.min(p.total))?;
                let n = tx.execute(
                    "UPDATE packages SET name = ?3, total = ?4, upstream_remaining = ?5, upstream_status = ?6,
                            effective_at_ms = ?7, expires_at_ms = ?8, remaining = MIN(remaining, ?4)
                     WHERE account_id = ?1 AND upstream_id = ?2",
                    params![account, p.upstream_id, p.name, total, remaining, p.status, p.effective_at_ms, p.expires_at_ms],
                )?;
                if n == 0 {
                    tx.execute(
                        "INSERT INTO packages (account_id, name, total, remaining, effective_at_ms, expires_at_ms,
                                               upstream_id, upstream_remaining, upstream_status)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?4, ?8)",
                        params![account, p.name, total, remaining, p.effective_at_ms, p.expires_at_ms, p.upstream_id, p.status],
                    )?;
                }
            }
            let known: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT upstream_id FROM packages WHERE account_id = ?1 AND upstream_id IS NOT NULL",
                )?;
                let rows = stmt.query_map([account], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in known.iter().filter(|id| !packs.iter().any(|p| &p.upstream_id == *id)) {
                tx.execute(
                    "UPDATE packages SET upstream_status = 'gone' WHERE account_id = ?1 AND upstream_id = ?2",
                    params![account, id],
                )?;
            }
            let figures: Vec<PackFigure> = packs
                .iter()
                .map(|p| PackFigure {
                    id: p.upstream_id.clone(),
                    remaining: p.remaining.min(p.total),
                    standing: standing(&p.status, p.effective_at_ms, p.expires_at_ms, now),
                })
                .collect();
            let report = ledger.sync(&figures, now);
            save_ledger(tx, account, &ledger)?;
            show(tx, account, &ledger, now)?;
            tx.execute(
                "UPDATE mirrors SET synced_at_ms = ?2 WHERE account_id = ?1",
                params![account, now],
            )?;
            bump_revision(tx, account)?;
            Ok((report, true))
        })
    }

    /// Units charged here that the service's figures do not show yet.
    pub fn pending_charges(&self, account: AccountId) -> Result<Units, QuotaError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        Ok(load_ledger(&tx, account)?.map(|l| l.pending()).unwrap_or(Units::ZERO))
    }

    /// When the account's packages were last read from the service (`None`:
    /// never, so the figures here are not the service's yet).
    pub fn mirror_synced_at(&self, account: AccountId) -> Result<Option<Millis>, QuotaError> {
        let conn = self.lock()?;
        Ok(synced_at(&conn, account)?)
    }

    /// Records the service's id of a task it created.
    pub fn attach_upstream(&self, task_id: i64, upstream_task_id: &str) -> Result<(), QuotaError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE tasks SET upstream_task_id = ?2 WHERE id = ?1 AND upstream_task_id IS NULL",
            params![task_id, upstream_task_id],
        )?;
        Ok(())
    }

    /// A running task the service refused: its slots and units are released,
    /// nothing is charged, and the refusal is shown with its reason.
    pub fn end_refused(
        &self,
        account: AccountId,
        task_id: i64,
        refusal: &Refusal,
        now: Millis,
    ) -> Result<u64, QuotaError> {
        self.change(account, now, |tx| {
            let n = tx.execute(
                "UPDATE tasks SET status = 'refused', units_charged = 0, reason = ?3, finished_at_ms = ?4
                 WHERE id = ?1 AND account_id = ?2 AND status = 'running'",
                params![task_id, account, refusal.message(), now],
            )?;
            if n == 0 {
                return Err(QuotaError::TaskEnded(task_wire_id(task_id)));
            }
            Ok((bump_revision(tx, account)?, true))
        })
    }

    /// Records a refusal decided before any reservation (the server is
    /// backing off after the service's 1303). Returns the new revision.
    pub fn refuse(
        &self,
        account: AccountId,
        req: &SubmitRequest,
        refusal: &Refusal,
        now: Millis,
    ) -> Result<u64, QuotaError> {
        self.change(account, now, |tx| {
            let pool: Option<(i64, String)> = tx
                .query_row(
                    "SELECT unit_cost, slot_rule FROM pools WHERE account_id = ?1 AND kind = ?2",
                    params![account, req.kind],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((unit_cost, rule)) = pool else {
                return Err(QuotaError::BadRequest(format!("unknown kind {:?}", req.kind)));
            };
            let slots = slot_rule_parse(&rule).slots_for(req.count);
            let cost = units_of(unit_cost).times(req.count);
            Ok((insert_refusal(tx, account, req, slots, cost, refusal, now)?, true))
        })
    }

    /// Running tasks of upstream mode, oldest first.
    pub fn upstream_running(&self) -> Result<Vec<UpstreamTask>, QuotaError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running' AND upstream_family IS NOT NULL
             ORDER BY started_at_ms, id"
        ))?;
        let rows = stmt.query_map([], task_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A task of upstream mode by its local id.
    pub fn upstream_task(&self, id: i64) -> Result<Option<UpstreamTask>, QuotaError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 AND upstream_family IS NOT NULL"),
                [id],
                task_row,
            )
            .optional()?)
    }

    /// A task by the id the service gave it: only tasks this server created.
    pub fn task_by_upstream_id(&self, upstream_task_id: &str) -> Result<Option<UpstreamTask>, QuotaError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE upstream_task_id = ?1"),
                [upstream_task_id],
                task_row,
            )
            .optional()?)
    }

    /// How many upstream tasks of `kind` hold slots (tests, logs).
    pub fn upstream_slots_in_use(&self, account: AccountId, kind: &str) -> Result<u64, QuotaError> {
        let conn = self.lock()?;
        let n: i64 = conn.query_row(
            "SELECT COALESCE(SUM(slots), 0) FROM tasks
             WHERE account_id = ?1 AND kind = ?2 AND status = 'running' AND upstream_family IS NOT NULL",
            params![account, kind],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::store::{AccountSpec, SubmitOutcome};
    use quota_widget::core::rules;

    fn pack(id: &str, remaining: u64, status: &str) -> MirrorPack {
        MirrorPack {
            upstream_id: id.into(),
            name: id.into(),
            total: Units::whole(100),
            remaining: Units::whole(remaining),
            effective_at_ms: 0,
            expires_at_ms: 1_000_000,
            status: status.into(),
        }
    }

    /// A submit spends what the state shows as remaining (the core's R2):
    /// a pack the service calls expired, or no longer reports, does not
    /// count though its window is open.
    #[test]
    fn a_submit_counts_only_the_packs_the_state_counts() {
        let store = SqliteStore::open(":memory:", Hub::default()).expect("open");
        let spec = AccountSpec { image_limit: 4, video_limit: 1, packages: vec![] };
        let a = store.create_account("t1", &spec, 1_000).expect("account");
        store.ensure_mirror(a, "secret").expect("mirror");
        let packs = [pack("on", 4, "online"), pack("off", 100, "expired"), pack("gone", 100, "online")];
        store.sync_packages(a, &packs, 2_000).expect("sync");
        store.sync_packages(a, &packs[..2], 3_000).expect("sync without the gone pack");
        let s = store.state(a, 3_000).expect("state");
        assert_eq!(rules::remaining(&s), Units::whole(4));
        let req = |id: &str, count| SubmitRequest { kind: "image".into(), count, client_request_id: id.into(), prompt: None };
        let out = store.submit(a, &req("r1", 2), 3_000).expect("submit");
        assert!(matches!(out, SubmitOutcome::Refused { refusal: Refusal::UnitsExhausted, .. }), "{out:?}");
        let out = store.submit(a, &req("r2", 1), 3_000).expect("submit");
        assert!(matches!(out, SubmitOutcome::Accepted { .. }), "{out:?}");
    }

    #[test]
    fn statuses_from_the_service() {
        assert_eq!(status(Some("toBeOnline"), PackageStatus::Active), PackageStatus::Pending);
        assert_eq!(status(Some("expired"), PackageStatus::Active), PackageStatus::Expired);
        assert_eq!(status(Some("runOut"), PackageStatus::Active), PackageStatus::Exhausted);
        assert_eq!(status(Some("runOut"), PackageStatus::Expired), PackageStatus::Expired);
        assert_eq!(status(Some("online"), PackageStatus::Exhausted), PackageStatus::Exhausted);
        assert_eq!(status(None, PackageStatus::Active), PackageStatus::Active);
        assert_eq!(standing("online", 0, 10, 5), Standing::Online);
        assert_eq!(standing("online", 0, 10, 10), Standing::Idle, "past its invalid time");
        assert_eq!(standing("runOut", 0, 10, 5), Standing::RunOut);
        assert_eq!(standing("toBeOnline", 6, 10, 5), Standing::Idle);
    }
}
