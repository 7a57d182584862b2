//! The quota transactions, written once for both stores.
//!
//! A change of an account ([`Change`]) loads the rows it decides on and
//! saves what it decided through a narrow interface ([`Rows`]), under the
//! store's own lock: SQLite (`store/sqlite.rs`, the embedded default) runs
//! it in an immediate transaction on its one connection, PostgreSQL
//! (`store/pg.rs`, several instances on one database) in a transaction that
//! holds the account's row lock. [`apply`] is the one place where submit,
//! settle and the upstream mirror's changes are decided, and [`snapshot`]
//! the one place where a state is put together; every decision comes from
//! the core (`rules` for R1-R6, `queue` for the queue (R8), `reconcile`
//! for the upstream ledger), and the stores' SQL only loads and saves rows.
//!
//! The queue: a request sent with `queue` while its slots are busy is a
//! task row of status `queued`, reserving its cost and holding no slot.
//! Every change that can free slots (a task ends or is refused, a queued
//! request is cancelled, a limit changes, a hold ends) runs [`advance`] in
//! its own transaction: the core's `starts` over the rows as the change
//! left them, whose requests become `running` there and then. The lock
//! that serialises an account's changes makes each start happen once.

pub mod pg;
pub mod sqlite;

use futures_util::future::{try_join, try_join3, try_join4, try_join5, try_join_all};
use quota_widget::core::reconcile::{Ledger, PackFigure, Standing, SyncReport};
use quota_widget::core::queue::{self, held_kinds, AfterBusy, places, Admission, Figures, Starts, Waiting};
use quota_widget::core::rules::{self, MAX_COUNT};
use quota_widget::core::wire::{
    Cancelled, FinishedTask, Millis, Outcome, Package, PackageStatus, QueuedRequest, RunningTask, ServerState, SlotPool,
    SlotRule, SubmitAccepted, SubmitRequest, Units,
};

use crate::error::{QuotaError, Refusal, StoreError};
pub use crate::ids::{parse_task_id, task_wire_id, AccountId};
pub(crate) use crate::ids::package_wire_id;

/// How many ended tasks a state shows.
pub const FINISHED_WINDOW: u32 = 20;

/// Longest accepted `client_request_id`, to bound what a client can store.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Requests that may wait per account unless configured (`--max-queued`).
pub const DEFAULT_MAX_QUEUED: u32 = 20;

/// The reason a cancelled request shows.
const CANCELLED: &str = "cancelled while queued; nothing charged";
/// The reason of a queued request that can never start.
const NEVER_STARTS: &str = "the slot limit fell below what the request needs: it could never start; nothing charged";

/// The kinds of work every account has, with their fixed cost and slot rule.
pub const KINDS: [(&str, Units, SlotRule); 2] = [
    ("image", Units::whole(4), SlotRule::PerItem),
    ("video", Units::whole(20), SlotRule::PerTask),
];

const DAY_MS: i64 = 86_400_000;

// ---------------------------------------------------------------------------
// What a change is about.

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

impl AccountSpec {
    /// The demo account: a pack expiring soon, a big one, a pending one.
    pub fn demo() -> Self {
        AccountSpec {
            image_limit: 4,
            video_limit: 1,
            packages: vec![
                PackageSpec { name: "Starter pack".into(), total: Units::whole(200), effective_in_ms: 0, expires_in_ms: 3 * DAY_MS },
                PackageSpec { name: "Pro pack".into(), total: Units::whole(2000), effective_in_ms: 0, expires_in_ms: 60 * DAY_MS },
                PackageSpec {
                    name: "Next month".into(),
                    total: Units::whole(500),
                    effective_in_ms: 10 * DAY_MS,
                    expires_in_ms: 40 * DAY_MS,
                },
            ],
        }
    }

    /// A kind's slot limit in this plan.
    pub fn limit(&self, kind: &str) -> u32 {
        if kind == "image" {
            self.image_limit
        } else {
            self.video_limit
        }
    }
}

/// The answer of the store to a submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// `repeat` is true when the request id had already been accepted: the
    /// first answer is returned and nothing more is reserved.
    Accepted { accepted: SubmitAccepted, repeat: bool },
    Refused { refusal: Refusal, revision: u64 },
}

/// What an accepted task is to be created upstream with.
#[derive(Clone, Debug)]
pub struct UpstreamFields {
    /// The family of work (`kling::Family::name`).
    pub family: String,
    /// The JSON object of the dashboard's generation fields.
    pub params: String,
}

/// How a running task ends.
#[derive(Clone, Debug)]
pub enum TaskEnd {
    /// Deduct `units` (default: the reserved cost).
    Succeed { units: Option<Units> },
    Fail { reason: String },
}

/// What ending a task did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub outcome: Outcome,
    pub units_charged: Units,
    pub revision: u64,
    /// Queued requests that started in the same transaction, in order:
    /// the caller runs them (the worker, or upstream's create).
    pub started: Vec<i64>,
}

/// What a change that may move the queue did: the revision after it, and
/// the queued requests it started, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub revision: u64,
    pub started: Vec<i64>,
}

/// What the service's 1303 did to a running task (upstream mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busied {
    /// Sent with `queue`: put back, at this place in its kind's queue.
    /// `None`: refused, charged nothing.
    pub place: Option<u32>,
    pub revision: u64,
    pub started: Vec<i64>,
}

/// A resource pack as the upstream service reports it, in the store's terms.
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

/// The columns an [`UpstreamTask`] is read from, in [`UpstreamTask::from_row`]'s order.
pub(crate) const UPSTREAM_TASK_COLUMNS: &str = "account_id, id, kind, count, client_request_id, upstream_family,
     upstream_params, upstream_task_id, status, started_at_ms, cost";

/// An upstream task's columns as the stores read them.
pub(crate) type UpstreamTaskRow =
    (AccountId, i64, String, i64, Option<String>, Option<String>, Option<String>, Option<String>, String, i64, i64);

impl UpstreamTask {
    pub(crate) fn from_row(r: UpstreamTaskRow) -> UpstreamTask {
        let (account, id, kind, count, request_id, family, params, upstream_task_id, status, started_at_ms, cost) = r;
        UpstreamTask {
            account,
            id,
            kind,
            count: u32::try_from(count).unwrap_or(0),
            client_request_id: request_id.unwrap_or_default(),
            family: family.unwrap_or_default(),
            params: params.unwrap_or_else(|| "{}".to_owned()),
            upstream_task_id,
            status,
            started_at_ms,
            reserved: units_of(cost),
        }
    }
}

/// Which upstream task to read.
#[derive(Clone, Debug)]
pub enum TaskKey {
    /// By the store's id.
    Local(i64),
    /// By the id the service gave it.
    Upstream(String),
}

// ---------------------------------------------------------------------------
// What both stores check of a request before they decide on it.

/// Tokens travel in a cookie and a header: keep them to characters that need
/// no quoting in either, so a token can never inject a header attribute.
pub fn valid_token(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

pub(crate) fn check_token(token: &str) -> Result<(), QuotaError> {
    if valid_token(token) {
        Ok(())
    } else {
        Err(QuotaError::BadRequest("token must be 1-128 characters of A-Z a-z 0-9 - _ . ~".into()))
    }
}

fn check_submit(req: &SubmitRequest) -> Result<(), QuotaError> {
    if req.count == 0 || req.count > MAX_COUNT {
        return Err(QuotaError::BadRequest(format!("count must be between 1 and {MAX_COUNT}")));
    }
    if req.client_request_id.is_empty() || req.client_request_id.chars().count() > MAX_REQUEST_ID_LEN {
        return Err(QuotaError::BadRequest(format!("client_request_id must be 1 to {MAX_REQUEST_ID_LEN} characters")));
    }
    no_nul("client_request_id", &req.client_request_id)
}

/// A text a client gives the store may hold any character but NUL, which
/// PostgreSQL cannot store: both stores refuse it alike.
fn no_nul(field: &str, text: &str) -> Result<(), QuotaError> {
    if text.contains('\0') {
        return Err(QuotaError::BadRequest(format!("{field} must not contain the NUL character (\\u0000)")));
    }
    Ok(())
}

pub(crate) fn check_package(p: &PackageSpec) -> Result<(), QuotaError> {
    if p.name.chars().count() > 200 {
        return Err(QuotaError::BadRequest("package name is longer than 200 characters".into()));
    }
    no_nul("name", &p.name)
}

/// Hex SHA-256 of a secret: what the store keeps and looks up.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Stored forms.

/// Stored integers are i64; the wire's are u64. Negative never gets stored
/// (CHECK constraints), so clamping only guards against a hand-edited row.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An amount of units as stored: integer thousandths.
pub(crate) fn units_of(db: i64) -> Units {
    Units::from_milli(to_u64(db))
}

/// An amount the rules computed from stored amounts, as stored (it fits).
pub(crate) fn to_db(u: Units) -> i64 {
    i64::try_from(u.milli()).unwrap_or(i64::MAX)
}

pub(crate) fn units_db(u: Units) -> Result<i64, QuotaError> {
    i64::try_from(u.milli()).map_err(|_| QuotaError::BadRequest("units is too large".into()))
}

pub(crate) fn slot_rule_str(rule: SlotRule) -> &'static str {
    match rule {
        SlotRule::PerItem => "per_item",
        SlotRule::PerTask => "per_task",
    }
}

pub(crate) fn slot_rule_parse(s: &str) -> SlotRule {
    if s == "per_task" {
        SlotRule::PerTask
    } else {
        SlotRule::PerItem
    }
}

/// A stored end as the wire's outcome. A cancelled request shows as
/// `refused` (never ran, charged nothing, with its reason): an outcome the
/// wire did not know would make every older widget reject the state.
pub(crate) fn outcome_parse(s: &str) -> Outcome {
    match s {
        "succeeded" => Outcome::Succeeded,
        "failed" => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

// ---------------------------------------------------------------------------
// The narrow interface: rows loaded and saved under the store's lock.

/// A pool as stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolRow {
    pub limit: u32,
    pub unit_cost: Units,
    pub rule: SlotRule,
    /// Upstream mode: no queued request of the kind starts before this
    /// time (the service's 1303 and its backoff); 0 for none.
    pub held_until_ms: Millis,
}

/// A task as a change about it reads it.
#[derive(Clone, Debug)]
pub(crate) struct TaskRow {
    /// `queued`, `running`, `succeeded`, `failed`, `refused`, `cancelled`.
    pub status: String,
    pub kind: String,
    pub cost: Units,
    /// Sent with `queue`.
    pub may_queue: bool,
    /// The revision that ended it.
    pub finished_revision: Option<u64>,
}

/// A queued request as stored.
#[derive(Clone, Debug)]
pub(crate) struct QueuedRow {
    pub id: i64,
    pub kind: String,
    pub count: u32,
    pub slots: u32,
    pub cost: Units,
    pub client_request_id: Option<String>,
    pub queued_at_ms: Millis,
}

/// A package as stored, with the service's own figures in upstream mode.
#[derive(Clone, Debug)]
pub(crate) struct PackageRow {
    pub id: i64,
    pub name: String,
    pub total: Units,
    /// What the state shows (upstream: the service's figure less the
    /// charges it does not show yet).
    pub remaining: Units,
    pub effective_at_ms: Millis,
    pub expires_at_ms: Millis,
    /// Upstream mode: the service's id, remaining figure and status.
    pub upstream: Option<(String, Units, String)>,
}

/// A task to start (or, `queued`, to wait): it holds `slots` once it
/// runs and reserves `cost`, accepted at `revision`; upstream mode keeps
/// what it is to be created with.
pub(crate) struct NewTask<'a> {
    pub req: &'a SubmitRequest,
    pub slots: u32,
    pub cost: Units,
    pub revision: u64,
    pub upstream: Option<&'a UpstreamFields>,
    pub now: Millis,
    pub queued: bool,
}

/// A task accepted before under a request id: its id, slots, reserved units,
/// the revision that accepted it, and its status now.
pub(crate) type AcceptedRow = (i64, u32, Units, u64, String);

/// What the transactions load and save, for one account, inside the
/// store's transaction. Loads see every change committed before the lock
/// was taken; nothing here decides anything.
#[allow(async_fn_in_trait)]
pub(crate) trait Rows {
    /// Takes the account's lock (or, for a read, does nothing): its
    /// revision, which stays until this transaction changes it; `None` if
    /// there is no such account.
    async fn lock(&self) -> Result<Option<u64>, StoreError>;
    async fn revision(&self) -> Result<u64, StoreError>;
    async fn pool(&self, kind: &str) -> Result<Option<PoolRow>, StoreError>;
    /// Every pool of the account, with the slots its running tasks hold.
    async fn pools(&self) -> Result<Vec<SlotPool>, StoreError>;
    /// The task accepted under `request_id`, if any.
    async fn accepted(&self, request_id: &str) -> Result<Option<AcceptedRow>, StoreError>;
    /// Slots held by the running tasks of `kind`, and units reserved by the
    /// running tasks of every kind.
    async fn in_use(&self, kind: &str) -> Result<(u32, Units), StoreError>;
    /// The packages a state shows (not those the service stopped
    /// reporting), earliest expiry first.
    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError>;
    /// A task of the account.
    async fn task(&self, id: i64) -> Result<Option<TaskRow>, StoreError>;
    /// The account's queued requests, every kind, in arrival order (by id).
    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError>;
    /// The pools' holds: `(kind, held until)`, for pools that were ever held.
    async fn holds(&self) -> Result<Vec<(String, Millis)>, StoreError>;
    /// Running tasks, oldest first.
    async fn running(&self) -> Result<Vec<RunningTask>, StoreError>;
    /// The last `n` ended tasks, newest first.
    async fn finished(&self, n: u32) -> Result<Vec<FinishedTask>, StoreError>;
    /// Upstream mode: the reconciliation ledger (JSON) and the time of the
    /// last good sync; `None` if the account mirrors no service.
    async fn mirror(&self) -> Result<Option<(String, Option<Millis>)>, StoreError>;

    /// Counts a change: the revision one up, the time of the change kept,
    /// and the other instances told (PostgreSQL). Returns the revision.
    async fn bump(&self, now: Millis) -> Result<u64, StoreError>;
    /// Records a running task, or a queued one; its id.
    async fn start_task(&self, task: &NewTask<'_>) -> Result<i64, StoreError>;
    /// Queued requests start: they run from now, started at `revision`.
    async fn start_queued(&self, ids: &[i64], revision: u64, now: Millis) -> Result<(), StoreError>;
    /// A running task waits again (upstream: the service's 1303); it keeps
    /// its id, and with it its place by arrival.
    async fn requeue(&self, id: i64) -> Result<(), StoreError>;
    /// No queued request of `kind` starts before `until`.
    async fn hold(&self, kind: &str, until: Millis) -> Result<(), StoreError>;
    /// Records a refused request.
    async fn refuse_task(&self, req: &SubmitRequest, slots: u32, cost: Units, reason: &str, now: Millis) -> Result<(), StoreError>;
    /// Ends a task: `succeeded`, `failed`, `refused` or `cancelled`, with
    /// what it was charged, at `revision`.
    async fn end_task(&self, id: i64, status: &str, charged: Units, reason: Option<&str>, revision: u64, now: Millis) -> Result<(), StoreError>;
    /// Takes `units` from a package for a task, and records who paid (R6).
    async fn take(&self, task: i64, package: i64, units: Units) -> Result<(), StoreError>;
    /// Sets the figure a package shows.
    async fn set_remaining(&self, package: i64, units: Units) -> Result<(), StoreError>;
    /// Adds a package; its id.
    async fn insert_package(&self, name: &str, total: Units, effective_at_ms: Millis, expires_at_ms: Millis) -> Result<i64, StoreError>;
    async fn set_pool(&self, kind: &str, limit: u32, unit_cost: Units) -> Result<(), StoreError>;
    /// Makes the account mirror a service unless it does; the secret of
    /// its callback URL (`secret` the first time, the stored one after).
    async fn ensure_mirror(&self, ledger: &str, secret: &str) -> Result<String, StoreError>;
    async fn save_ledger(&self, ledger: &str) -> Result<(), StoreError>;
    /// Notes a good sync.
    async fn set_synced(&self, now: Millis) -> Result<(), StoreError>;
    /// Keeps a pack as the service reports it (adds it the first time); a
    /// kept pack shows no more than its total.
    async fn put_pack(&self, pack: &MirrorPack) -> Result<(), StoreError>;
    /// Marks a pack the service stopped reporting: kept (charges may name
    /// it), never shown.
    async fn hide_pack(&self, upstream_id: &str) -> Result<(), StoreError>;
    /// Records the service's id of a task it created.
    async fn attach(&self, task: i64, upstream_id: &str) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------------------
// The transactions.

/// A change of one account, which a store runs under its lock
/// (`Storage::change`).
#[derive(Clone, Debug)]
pub enum Change {
    /// R1-R3: reserve slots and units, or (sent with `queue`, R8) wait with
    /// the units reserved, or record the refusal. At most `max_queued`
    /// requests of the account wait. Upstream mode keeps what the task is
    /// to be created with.
    Submit { req: SubmitRequest, upstream: Option<UpstreamFields>, max_queued: u32 },
    /// Cancel a queued request: its units released, nothing charged.
    Cancel { task: i64 },
    /// Start what the queue can start now (a hold ended).
    Advance,
    /// Upstream mode: the service refused to create a running task as over
    /// its concurrency (its 1303). Its kind is held until `until`; sent
    /// with `queue`, it waits again, else it is refused (`refusal`).
    Busy { task: i64, refusal: Refusal, until: Millis },
    /// End a running task once: success deducts, failure releases (R3).
    Finish { task: i64, end: TaskEnd },
    /// Add a package (dev).
    Grant(PackageSpec),
    /// Set a pool's slot limit (dev) and, upstream, its estimated cost.
    SetPool { kind: String, limit: u32, unit_cost: Option<Units> },
    /// Upstream mode: mirror a service, with this callback secret unless
    /// the account has one.
    EnsureMirror { secret: String },
    /// Upstream mode: the service's packs, reconciled with the charges seen here.
    Sync(Vec<MirrorPack>),
    /// Upstream mode: the service created the task under this id.
    Attach { task: i64, upstream_id: String },
    /// Upstream mode: the service refused a reserved task; nothing charged.
    EndRefused { task: i64, refusal: Refusal },
    /// Upstream mode: a refusal decided before any reservation.
    Refuse { req: SubmitRequest, refusal: Refusal },
}

/// What a change came to.
#[derive(Clone, Debug)]
pub enum Changed {
    Submitted(SubmitOutcome),
    Ended(Ended),
    /// A cancel, and the queued requests it let start.
    Cancelled(Cancelled, Vec<i64>),
    Progress(Progress),
    Busied(Busied),
    /// A package's wire id and the new revision.
    Granted(String, u64),
    Revision(u64),
    /// The callback secret.
    Mirrored(String),
    Synced(SyncReport),
    /// Nothing to show (the state did not change).
    Nothing,
}

/// The packages a state shows, with their store ids: the wire status is the
/// service's word where it has one, else the figures' and the clock's.
fn shown(rows: &[PackageRow], now: Millis) -> Vec<(i64, Package)> {
    rows.iter()
        .map(|r| {
            let local = rules::package_status(r.remaining, r.effective_at_ms, r.expires_at_ms, now);
            let package = Package {
                id: package_wire_id(r.id),
                name: r.name.clone(),
                total: r.total,
                remaining: r.remaining,
                effective_at_ms: r.effective_at_ms,
                expires_at_ms: r.expires_at_ms,
                status: mirror_status(r.upstream.as_ref().map(|(_, _, s)| s.as_str()), local),
            };
            (r.id, package)
        })
        .collect()
}

/// The wire status of a mirrored package: the service's word where it has
/// one, else what the figures and the clock say.
fn mirror_status(upstream: Option<&str>, local: PackageStatus) -> PackageStatus {
    match upstream {
        Some("toBeOnline") => PackageStatus::Pending,
        Some("expired") => PackageStatus::Expired,
        Some("runOut") if local != PackageStatus::Expired => PackageStatus::Exhausted,
        _ => local,
    }
}

/// What the service's status means for spending (the ledger's view).
fn standing(status: &str, effective_at_ms: Millis, expires_at_ms: Millis, now: Millis) -> Standing {
    match status {
        "online" if effective_at_ms <= now && now < expires_at_ms => Standing::Online,
        "runOut" => Standing::RunOut,
        _ => Standing::Idle,
    }
}

/// The packages whose units count at `now` by the core's rule (R2), as
/// `(store id, remaining)` in spending order.
fn counting(packages: &[(i64, Package)], now: Millis) -> Vec<(i64, Units)> {
    packages.iter().filter(|(_, p)| rules::counts(p, now)).map(|(id, p)| (*id, p.remaining)).collect()
}

fn read_ledger(text: &str) -> Result<Ledger, QuotaError> {
    serde_json::from_str(text)
        .map_err(|e| QuotaError::BadRequest(format!("the stored reconciliation ledger is unreadable: {e}")))
}

fn write_ledger(ledger: &Ledger) -> Result<String, QuotaError> {
    serde_json::to_string(ledger).map_err(|e| QuotaError::BadRequest(format!("cannot store the ledger: {e}")))
}

/// Runs `change` over the account's rows; what it came to, and whether the
/// state changed (a new revision to publish).
pub(crate) async fn apply<R: Rows>(rows: &R, change: &Change, now: Millis) -> Result<(Changed, bool), QuotaError> {
    match change {
        Change::Submit { req, upstream, max_queued } => submit(rows, req, upstream.as_ref(), *max_queued, now).await,
        Change::Cancel { task } => cancel(rows, *task, now).await,
        Change::Advance => {
            let revision = locked(rows).await? + 1;
            let starts = advance(rows, revision, now).await?;
            if starts.is_empty() {
                return Ok((Changed::Progress(Progress { revision: revision - 1, started: Vec::new() }), false));
            }
            rows.bump(now).await?;
            Ok((Changed::Progress(Progress { revision, started: starts.start }), true))
        }
        Change::Busy { task, refusal, until } => busy(rows, *task, refusal, *until, now).await,
        Change::Finish { task, end } => {
            let ended = finish(rows, *task, end, now).await?;
            Ok((Changed::Ended(ended), true))
        }
        Change::Grant(spec) => {
            check_package(spec)?;
            locked(rows).await?;
            let id = rows
                .insert_package(&spec.name, spec.total, now.saturating_add(spec.effective_in_ms), now.saturating_add(spec.expires_in_ms))
                .await?;
            Ok((Changed::Granted(package_wire_id(id), rows.bump(now).await?), true))
        }
        Change::SetPool { kind, limit, unit_cost } => {
            let current = locked(rows).await?;
            let pool = rows.pool(kind).await?.ok_or_else(|| QuotaError::BadRequest(format!("unknown kind {kind:?}")))?;
            let unit_cost = unit_cost.unwrap_or(pool.unit_cost);
            if unit_cost == pool.unit_cost && *limit == pool.limit {
                return Ok((Changed::Progress(Progress { revision: current, started: Vec::new() }), false));
            }
            rows.set_pool(kind, *limit, unit_cost).await?;
            // A higher limit starts waiting requests; a lower one refuses
            // those that could never start.
            let started = advance(rows, current + 1, now).await?.start;
            Ok((Changed::Progress(Progress { revision: rows.bump(now).await?, started }), true))
        }
        Change::EnsureMirror { secret } => {
            locked(rows).await?;
            let ledger = write_ledger(&Ledger::new(Ledger::WINDOW_MS, Ledger::CREDIT_MS))?;
            Ok((Changed::Mirrored(rows.ensure_mirror(&ledger, secret).await?), false))
        }
        Change::Sync(packs) => sync(rows, packs, now).await,
        Change::Attach { task, upstream_id } => {
            locked(rows).await?;
            rows.attach(*task, upstream_id).await?;
            Ok((Changed::Nothing, false))
        }
        Change::EndRefused { task, refusal } => {
            let revision = locked(rows).await? + 1;
            match rows.task(*task).await? {
                Some(row) if row.status == "running" => {}
                _ => return Err(QuotaError::TaskEnded(task_wire_id(*task))),
            }
            rows.end_task(*task, "refused", Units::ZERO, Some(refusal.message()), revision, now).await?;
            let started = advance(rows, revision, now).await?.start;
            Ok((Changed::Progress(Progress { revision: rows.bump(now).await?, started }), true))
        }
        Change::Refuse { req, refusal } => {
            check_submit(req)?;
            locked(rows).await?;
            let pool = rows.pool(&req.kind).await?.ok_or_else(|| QuotaError::BadRequest(format!("unknown kind {:?}", req.kind)))?;
            let revision = rows.bump(now).await?;
            rows.refuse_task(req, pool.rule.slots_for(req.count), pool.unit_cost.times(req.count), refusal.message(), now).await?;
            Ok((Changed::Revision(revision), true))
        }
    }
}

/// The account's lock, or `Unauthorized` if there is no such account.
async fn locked<R: Rows>(rows: &R) -> Result<u64, QuotaError> {
    rows.lock().await?.ok_or(QuotaError::Unauthorized)
}

/// R1-R3 and the queue (R8) by the core's `queue::Figures` (slots and
/// units by `rules::Capacity`, R2's `counts`).
async fn submit<R: Rows>(
    rows: &R,
    req: &SubmitRequest,
    upstream: Option<&UpstreamFields>,
    max_queued: u32,
    now: Millis,
) -> Result<(Changed, bool), QuotaError> {
    check_submit(req)?;
    // Loaded together (PostgreSQL pipelines them on one connection; each
    // read runs after the lock is granted, so it sees the rows as the lock
    // left them).
    let ((current, pool, prior, (in_use, reserved), packages), queued) = try_join(
        try_join5(
            rows.lock(),
            rows.pool(&req.kind),
            rows.accepted(&req.client_request_id),
            rows.in_use(&req.kind),
            rows.packages(),
        ),
        rows.queued(),
    )
    .await?;
    let (Some(current), Some(pool)) = (current, pool) else {
        return Err(QuotaError::BadRequest(format!("unknown kind {:?}", req.kind)));
    };
    let waiting = waiting_of(&queued);
    if let Some((id, slots, reserved_units, revision, status)) = prior {
        let accepted = SubmitAccepted {
            task_id: task_wire_id(id),
            client_request_id: req.client_request_id.clone(),
            slots,
            reserved_units,
            revision,
            place: if status == "queued" { place_of(&waiting, id) } else { None },
        };
        return Ok((Changed::Submitted(SubmitOutcome::Accepted { accepted, repeat: true }), false));
    }
    // The request's own pool: all that `admit` reads of the pools.
    let pools = [SlotPool { kind: req.kind.clone(), limit: pool.limit, in_use, unit_cost: pool.unit_cost, slot_rule: pool.rule }];
    let held = held_kinds([(req.kind.as_str(), pool.held_until_ms)], now);
    let figures = Figures {
        pools: &pools,
        spendable: counting(&shown(&packages, now), now).into_iter().map(|(_, u)| u).sum(),
        running_reserved: reserved,
        waiting: &waiting,
        held: &held,
    };
    // The lock holds the revision: the next one is known, and the saves go
    // out together.
    let revision = current + 1;
    let (slots, cost, queued, place) = match figures.admit(&req.kind, req.count, req.queue, max_queued) {
        Admission::Start { slots, cost } => (slots, cost, false, None),
        Admission::Queue { slots, cost, ahead } => (slots, cost, true, Some(ahead.saturating_add(1))),
        Admission::Refuse(why) => {
            let refusal = refused(why, &req.kind)?;
            let (slots, cost) = (pool.rule.slots_for(req.count), pool.unit_cost.times(req.count));
            try_join(rows.bump(now), rows.refuse_task(req, slots, cost, refusal.message(), now)).await?;
            return Ok((Changed::Submitted(SubmitOutcome::Refused { refusal, revision }), true));
        }
    };
    let task = NewTask { req, slots, cost, revision, upstream, now, queued };
    let (_, id) = try_join(rows.bump(now), rows.start_task(&task)).await?;
    let accepted = SubmitAccepted {
        task_id: task_wire_id(id),
        client_request_id: req.client_request_id.clone(),
        slots,
        reserved_units: cost,
        revision,
        place,
    };
    Ok((Changed::Submitted(SubmitOutcome::Accepted { accepted, repeat: false }), true))
}

/// The core's refusal as the API says it.
fn refused(why: queue::Refusal, kind: &str) -> Result<Refusal, QuotaError> {
    Ok(match why {
        queue::Refusal::UnknownKind => return Err(QuotaError::BadRequest(format!("unknown kind {kind:?}"))),
        queue::Refusal::Slots { .. } => Refusal::OverConcurrency,
        queue::Refusal::Units { .. } => Refusal::UnitsExhausted,
        queue::Refusal::OverLimit { needed, limit } => Refusal::Queue {
            message: format!(
                "the request needs {needed} slots, more than the {limit} of its kind: it could never start; nothing was queued or charged"
            ),
        },
        queue::Refusal::QueueFull { max } => Refusal::Queue {
            message: format!(
                "{max} requests of this account wait already, the most the queue holds; nothing was queued or charged"
            ),
        },
    })
}

/// Queued rows as the core's waiting requests.
fn waiting_of(queued: &[QueuedRow]) -> Vec<Waiting<i64>> {
    queued.iter().map(|q| Waiting { id: q.id, kind: q.kind.clone(), slots: q.slots, cost: q.cost }).collect()
}

/// The place of waiting request `id` in its kind's queue (1 starts next).
fn place_of(waiting: &[Waiting<i64>], id: i64) -> Option<u32> {
    let i = waiting.iter().position(|w| w.id == id)?;
    places(waiting).get(i).copied()
}

/// Starts what the queue can start now, in the transaction of the change
/// that let it (slots freed, a limit changed, a hold ended): the core's
/// `starts` over the rows as the change left them. Requests that can never
/// start are refused, charged nothing. The caller bumps the revision
/// (`revision` is the one it bumps to).
async fn advance<R: Rows>(rows: &R, revision: u64, now: Millis) -> Result<Starts<i64>, StoreError> {
    let (pools, holds, queued) = try_join3(rows.pools(), rows.holds(), rows.queued()).await?;
    if queued.is_empty() {
        return Ok(Starts::default());
    }
    let waiting = waiting_of(&queued);
    let held = held_kinds(holds.iter().map(|(kind, until)| (kind.as_str(), *until)), now);
    // `starts` judges slots and holds only: the units were reserved when
    // each request was queued.
    let figures = Figures { pools: &pools, spendable: Units::ZERO, running_reserved: Units::ZERO, waiting: &waiting, held: &held };
    let starts = figures.starts();
    for &id in &starts.refuse {
        rows.end_task(id, "refused", Units::ZERO, Some(NEVER_STARTS), revision, now).await?;
    }
    if !starts.start.is_empty() {
        rows.start_queued(&starts.start, revision, now).await?;
    }
    Ok(starts)
}

/// Cancels a queued request: its units are released, nothing is charged,
/// and those behind it may start. A repeat answers as the first did.
async fn cancel<R: Rows>(rows: &R, task: i64, now: Millis) -> Result<(Changed, bool), QuotaError> {
    let (current, row) = try_join(rows.lock(), rows.task(task)).await?;
    let (Some(current), Some(row)) = (current, row) else {
        return Err(QuotaError::TaskNotFound(task_wire_id(task)));
    };
    let answer = |revision| Cancelled { task_id: task_wire_id(task), units_released: row.cost, revision };
    match row.status.as_str() {
        "queued" => {}
        "cancelled" => {
            return Ok((Changed::Cancelled(answer(row.finished_revision.unwrap_or(current)), Vec::new()), false));
        }
        "running" => return Err(QuotaError::NotQueued(task_wire_id(task))),
        _ => return Err(QuotaError::TaskEnded(task_wire_id(task))),
    }
    let revision = current + 1;
    rows.end_task(task, "cancelled", Units::ZERO, Some(CANCELLED), revision, now).await?;
    let started = advance(rows, revision, now).await?.start;
    rows.bump(now).await?;
    Ok((Changed::Cancelled(answer(revision), started), true))
}

/// Upstream mode: the service's 1303 for a running task. Its kind is held
/// until `until`; sent with `queue` it waits again in its place (the
/// core's put-back, `queue::Book::put_back`), else it is refused.
async fn busy<R: Rows>(rows: &R, task: i64, refusal: &Refusal, until: Millis, now: Millis) -> Result<(Changed, bool), QuotaError> {
    let (current, row) = try_join(rows.lock(), rows.task(task)).await?;
    let (Some(current), Some(row)) = (current, row) else {
        return Err(QuotaError::TaskNotFound(task_wire_id(task)));
    };
    if row.status != "running" {
        return Err(QuotaError::TaskEnded(task_wire_id(task)));
    }
    let revision = current + 1;
    rows.hold(&row.kind, until).await?;
    let after = queue::after_busy(row.may_queue);
    match after {
        AfterBusy::Wait => rows.requeue(task).await?,
        AfterBusy::Refuse => rows.end_task(task, "refused", Units::ZERO, Some(refusal.message()), revision, now).await?,
    }
    let started = advance(rows, revision, now).await?.start;
    let place = match after {
        AfterBusy::Wait => place_of(&waiting_of(&rows.queued().await?), task),
        AfterBusy::Refuse => None,
    };
    rows.bump(now).await?;
    Ok((Changed::Busied(Busied { place, revision, started }), true))
}

/// Ends a task once; a success is paid by the packages that count now,
/// earliest expiry first (R6), or in upstream mode charged to the ledger
/// (the service deducts; the ledger shows it until the service's figure does).
async fn finish<R: Rows>(rows: &R, task_id: i64, end: &TaskEnd, now: Millis) -> Result<Ended, QuotaError> {
    let ((current, task, packages, mirror), queued) =
        try_join(try_join4(rows.lock(), rows.task(task_id), rows.packages(), rows.mirror()), rows.queued()).await?;
    // Another account's task is "not found", not "forbidden": its
    // existence is none of this account's business.
    let (Some(current), Some(TaskRow { status, cost, .. })) = (current, task) else {
        return Err(QuotaError::TaskNotFound(task_wire_id(task_id)));
    };
    if status != "running" {
        return Err(QuotaError::TaskEnded(task_wire_id(task_id)));
    }
    let revision = current + 1;
    let (outcome, charged) = match end {
        TaskEnd::Succeed { units } => {
            let amount = units.unwrap_or(cost);
            let charged = match mirror {
                Some((text, _)) => {
                    let mut ledger = read_ledger(&text)?;
                    ledger.charge(task_wire_id(task_id), amount, now);
                    rows.save_ledger(&write_ledger(&ledger)?).await?;
                    show(rows, &packages, &ledger, now).await?;
                    amount
                }
                None => {
                    let plan = rules::plan_deduction(&counting(&shown(&packages, now), now), amount);
                    try_join_all(plan.iter().map(|&(package, units)| rows.take(task_id, package, units))).await?;
                    plan.iter().map(|&(_, units)| units).sum()
                }
            };
            try_join(rows.end_task(task_id, "succeeded", charged, None, revision, now), rows.bump(now)).await?;
            (Outcome::Succeeded, charged)
        }
        TaskEnd::Fail { reason } => {
            // A reason comes from outside (the service, a dev call): kept
            // whole but for NUL, which PostgreSQL cannot store.
            let reason = reason.replace('\0', "\u{fffd}");
            try_join(rows.end_task(task_id, "failed", Units::ZERO, Some(&reason), revision, now), rows.bump(now)).await?;
            (Outcome::Failed, Units::ZERO)
        }
    };
    // Its slots are free: the queue moves in this same transaction (read
    // again only when something waits).
    let started = if queued.is_empty() { Vec::new() } else { advance(rows, revision, now).await?.start };
    Ok(Ended { outcome, units_charged: charged, revision, started })
}

/// The service's figures as the ledger reads them.
fn figures(packs: impl Iterator<Item = (String, Units, String, Millis, Millis)>, now: Millis) -> Vec<PackFigure> {
    packs
        .map(|(id, remaining, status, effective, expires)| PackFigure {
            id,
            remaining,
            standing: standing(&status, effective, expires, now),
        })
        .collect()
}

/// Writes each mirrored package's shown figure: the service's, less the
/// charges it does not reflect yet, taken in spending order.
async fn show<R: Rows>(rows: &R, packages: &[PackageRow], ledger: &Ledger, now: Millis) -> Result<(), StoreError> {
    let mirrored: Vec<&PackageRow> = packages.iter().filter(|p| p.upstream.is_some()).collect();
    let figures = figures(
        mirrored.iter().filter_map(|p| {
            let (id, remaining, status) = p.upstream.clone()?;
            Some((id, remaining, status, p.effective_at_ms, p.expires_at_ms))
        }),
        now,
    );
    for (package, figure) in mirrored.iter().zip(ledger.shown(&figures)) {
        if figure != package.remaining {
            rows.set_remaining(package.id, figure).await?;
        }
    }
    Ok(())
}

/// Takes in the service's packs: keeps its figures, reconciles them with
/// the charges seen here (the ledger), writes what to show, and notes the
/// time of this good sync. A pack the service stopped reporting is hidden.
async fn sync<R: Rows>(rows: &R, packs: &[MirrorPack], now: Millis) -> Result<(Changed, bool), QuotaError> {
    if let Some(p) = packs.iter().find(|p| p.name.chars().count() > 200) {
        return Err(QuotaError::BadRequest(format!(
            "the service's pack {:?} has a name longer than 200 characters",
            p.upstream_id
        )));
    }
    let (current, mirror, before) = try_join3(rows.lock(), rows.mirror(), rows.packages()).await?;
    let (Some(_), Some((text, _))) = (current, mirror) else {
        return Err(QuotaError::BadRequest("the account does not mirror a service".into()));
    };
    let mut ledger = read_ledger(&text)?;
    for p in packs {
        units_db(p.total)?;
        rows.put_pack(p).await?;
    }
    for (id, ..) in before.iter().filter_map(|p| p.upstream.as_ref()) {
        if !packs.iter().any(|p| &p.upstream_id == id) {
            rows.hide_pack(id).await?;
        }
    }
    // The wire promises remaining <= total.
    let report = ledger.sync(
        &figures(
            packs.iter().map(|p| {
                (p.upstream_id.clone(), p.remaining.min(p.total), p.status.clone(), p.effective_at_ms, p.expires_at_ms)
            }),
            now,
        ),
        now,
    );
    let (_, after) = try_join(rows.save_ledger(&write_ledger(&ledger)?), rows.packages()).await?;
    show(rows, &after, &ledger, now).await?;
    rows.set_synced(now).await?;
    rows.bump(now).await?;
    Ok((Changed::Synced(report), true))
}

/// The account's reconciliation ledger and the time of its last good sync
/// (`None` if it mirrors no service).
pub(crate) async fn mirror<R: Rows>(rows: &R) -> Result<Option<(Ledger, Option<Millis>)>, QuotaError> {
    match rows.mirror().await? {
        Some((text, synced_at)) => Ok(Some((read_ledger(&text)?, synced_at))),
        None => Ok(None),
    }
}

/// The account's state at `now`, read in one snapshot of the store.
pub(crate) async fn snapshot<R: Rows>(rows: &R, now: Millis) -> Result<ServerState, StoreError> {
    let (revision, pools, packages, running) =
        try_join4(rows.revision(), rows.pools(), rows.packages(), rows.running()).await?;
    let (finished, mirror, queued) = try_join3(rows.finished(FINISHED_WINDOW), rows.mirror(), rows.queued()).await?;
    let places = places(&waiting_of(&queued));
    Ok(ServerState {
        revision,
        server_time_ms: now,
        pools,
        packages: shown(&packages, now).into_iter().map(|(_, p)| p).collect(),
        running,
        finished,
        queued: queued
            .into_iter()
            .zip(places)
            .map(|(q, place)| QueuedRequest {
                id: task_wire_id(q.id),
                kind: q.kind,
                count: q.count,
                reserved_units: q.cost,
                place,
                client_request_id: q.client_request_id,
                queued_at_ms: q.queued_at_ms,
            })
            .collect(),
        packages_synced_at_ms: mirror.and_then(|(_, at)| at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_the_service() {
        assert_eq!(mirror_status(Some("toBeOnline"), PackageStatus::Active), PackageStatus::Pending);
        assert_eq!(mirror_status(Some("expired"), PackageStatus::Active), PackageStatus::Expired);
        assert_eq!(mirror_status(Some("runOut"), PackageStatus::Active), PackageStatus::Exhausted);
        assert_eq!(mirror_status(Some("runOut"), PackageStatus::Expired), PackageStatus::Expired);
        assert_eq!(mirror_status(Some("online"), PackageStatus::Exhausted), PackageStatus::Exhausted);
        assert_eq!(mirror_status(None, PackageStatus::Active), PackageStatus::Active);
        assert_eq!(standing("online", 0, 10, 5), Standing::Online);
        assert_eq!(standing("online", 0, 10, 10), Standing::Idle, "past its invalid time");
        assert_eq!(standing("runOut", 0, 10, 5), Standing::RunOut);
        assert_eq!(standing("toBeOnline", 6, 10, 5), Standing::Idle);
    }
}
