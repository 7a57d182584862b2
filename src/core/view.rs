//! The view model: what the button and the display should say, as plain
//! values. The DOM view writes it to the page; tests read it directly.
//!
//! A [`Viewer`] builds view models one after another and reuses every row
//! and text whose inputs did not change since the previous one: a state
//! that moves one package's balance formats one package row, and the rows
//! it reuses are the same `Rc`, so comparing two view models (to write only
//! what changed) costs a pointer comparison per unchanged row.

use std::rc::Rc;

use serde::Serialize;

use super::fmt::Fmt;
use super::text::Msg;
use super::words::{age, kind_name, kind_title, say};
use super::machine::{Blocked, Gate, HoldEnd, Link, Quota};
use super::rules::counts;
use super::wire::{Millis, Outcome, Package, PackageStatus, SlotPool, Units};
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

// The view model reaches JavaScript through serde-wasm-bindgen with these
// serde derives, which tsify reads too: the TypeScript declarations and the
// objects agree by construction.

const DAY_MS: Millis = 86_400_000;

/// Why submit is blocked, by name (the view model's `blocked`); the
/// view model's `reason` says it in words. tsify declares it for
/// TypeScript from this definition; it serializes as its name in
/// [`BlockedKind::NAMES`], which a test keeps in step with the declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(target_arch = "wasm32", serde(rename_all = "snake_case"))]
pub enum BlockedKind {
    NoState,
    Connecting,
    Reconnecting,
    Paused,
    Stale,
    EmptyRequest,
    UnknownKind,
    Slots,
    Units,
    Wait,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct ViewModel {
    /// Whether the submit button is enabled.
    pub enabled: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "BlockedKind | null"))]
    pub blocked: Option<Blocked>,
    /// Why submit is blocked, for the user; when enabled, what a submit
    /// will do if it does not start at once ("Queue · starts when a slot
    /// frees, 2 ahead"); else empty.
    pub reason: String,
    /// Whether a submit now waits in the server's queue instead of starting
    /// (the `queue` option, every slot of its kind busy, units enough).
    pub queues: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "UnitsView | null"))]
    pub units: Option<Rc<UnitsView>>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "MeterView[]"))]
    pub meters: Vec<Rc<MeterView>>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "PackageView[]"))]
    pub packages: Vec<Rc<PackageView>>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "CostView | null"))]
    pub cost: Option<Rc<CostView>>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "AttemptView[]"))]
    pub attempts: Vec<Rc<AttemptView>>,
    /// "Live · updated 3 s ago · revision 42", and when the server reads its
    /// packages from an upstream service, " · package figures from the
    /// service, 5 min ago".
    pub freshness: String,
    /// Whether the figures are too old or the link is down.
    pub stale: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "number | null"))]
    pub revision: Option<u64>,
    /// The last input error, shown until a good state arrives.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string | null"))]
    pub error: Option<String>,
    /// That error as the page says it ("Could not use the latest quota
    /// update: ... Showing the last good figures."); empty without one.
    #[serde(rename = "errorText")]
    pub error_text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct UnitsView {
    /// Units left in active packages; moves only on a deduction (R3).
    pub remaining: Units,
    /// Set aside for running tasks.
    pub reserved: Units,
    /// Held by submits the server has not shown yet.
    pub held: Units,
    /// What a new request may use: remaining - reserved - held.
    pub available: Units,
    pub low: bool,
    /// "1,200 units remaining".
    #[serde(rename = "remainingText")]
    pub remaining_text: String,
    /// "40 reserved by running tasks · 1,160 available".
    #[serde(rename = "detailText")]
    pub detail_text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct MeterView {
    pub kind: String,
    pub label: String,
    #[serde(rename = "inUse")]
    pub in_use: u32,
    pub held: u32,
    pub limit: u32,
    /// Value for `aria-valuenow`, within 0..=limit.
    pub value: u32,
    /// "3 of 4 in use".
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct PackageView {
    pub id: String,
    pub name: String,
    pub status: PackageStatus,
    pub counts: bool,
    #[serde(rename = "expiringSoon")]
    pub expiring_soon: bool,
    /// "800 of 1,000 units".
    #[serde(rename = "unitsText")]
    pub units_text: String,
    /// "active · expires 2026-12-01".
    #[serde(rename = "statusText")]
    pub status_text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct CostView {
    pub slots: u32,
    pub cost: Units,
    #[serde(rename = "leftAfter")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "number | null"))]
    pub left_after: Option<Units>,
    /// "Uses 4 units, 96 left after".
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub enum AttemptStatus {
    #[serde(rename = "sending")]
    Sending,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "refused")]
    Refused,
    #[serde(rename = "timed_out")]
    TimedOut,
    /// Waiting in the server's queue: no slot yet, its units reserved.
    #[serde(rename = "queued")]
    Queued,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct AttemptView {
    /// Stable across updates: the client request id, else the task id.
    pub key: String,
    pub status: AttemptStatus,
    pub charged: Units,
    /// "Image ×4 · failed, not charged: content moderation".
    pub text: String,
    /// For a queued request: the server's id, which
    /// `DELETE /api/generations/{id}` cancels; its row has a cancel button.
    #[serde(rename = "taskId")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string | null"))]
    pub task_id: Option<String>,
    /// For a queued request: the cancel button's accessible name
    /// ("Cancel the queued Image ×1, 2nd in line"); else empty.
    #[serde(rename = "cancelLabel")]
    pub cancel_label: String,
}

impl Blocked {
    /// The reason's name, as JavaScript sees it in `view().blocked`.
    pub fn kind(&self) -> BlockedKind {
        match self {
            Blocked::NoState => BlockedKind::NoState,
            Blocked::Connecting => BlockedKind::Connecting,
            Blocked::Reconnecting => BlockedKind::Reconnecting,
            Blocked::Paused => BlockedKind::Paused,
            Blocked::Stale { .. } => BlockedKind::Stale,
            Blocked::EmptyRequest => BlockedKind::EmptyRequest,
            Blocked::UnknownKind { .. } => BlockedKind::UnknownKind,
            Blocked::Slots { .. } => BlockedKind::Slots,
            Blocked::Units { .. } => BlockedKind::Units,
            Blocked::Wait { .. } => BlockedKind::Wait,
        }
    }

    pub fn message(&self, f: &dyn Fmt) -> String {
        let n = |v: u32| f.number(u64::from(v));
        match self {
            Blocked::NoState => say(f, Msg::BlockedNoState, None, &[]),
            Blocked::Connecting => say(f, Msg::BlockedConnecting, None, &[]),
            Blocked::Reconnecting => say(f, Msg::BlockedReconnecting, None, &[]),
            Blocked::Paused => say(f, Msg::BlockedPaused, None, &[]),
            Blocked::Stale { age_ms } => say(f, Msg::BlockedStale, None, &[("age", &age(f, *age_ms))]),
            Blocked::EmptyRequest => say(f, Msg::BlockedEmpty, None, &[]),
            Blocked::UnknownKind { kind } => say(f, Msg::BlockedUnknownKind, None, &[("kind", &kind_name(f, kind))]),
            Blocked::Slots { kind, free, needed, limit } => say(
                f,
                if needed > limit { Msg::BlockedOverLimit } else { Msg::BlockedSlots },
                Some(f64::from(*needed)),
                &[("kind", &kind_name(f, kind)), ("free", &n(*free)), ("needed", &n(*needed)), ("limit", &n(*limit))],
            ),
            Blocked::Units { available, cost } => say(
                f,
                Msg::BlockedUnits,
                Some(cost.to_number()),
                &[("cost", &f.units(*cost)), ("available", &f.units(*available))],
            ),
            Blocked::Wait { left_ms, why } => {
                let seconds = ((left_ms + 999) / 1000).max(1) as u64;
                say(f, Msg::BlockedWait, Some(seconds as f64), &[("seconds", &f.number(seconds)), ("why", why)])
            }
        }
    }
}

/// How an ended attempt reads: "done, 8 units charged", "failed, not
/// charged: content moderation".
fn ended(status: AttemptStatus, charged: Units, reason: Option<&str>, f: &dyn Fmt) -> String {
    let how = match status {
        AttemptStatus::Succeeded => {
            return say(f, Msg::AttemptDone, Some(charged.to_number()), &[("units", &f.units(charged))])
        }
        AttemptStatus::Refused => Msg::AttemptRefused,
        AttemptStatus::TimedOut => Msg::AttemptTimedOut,
        _ => Msg::AttemptFailed,
    };
    let how = say(f, how, None, &[]);
    // A hold that timed out has no reason of its own: nothing answered.
    let no_answer;
    let reason = match (reason, status) {
        (Some(r), _) => r,
        (None, AttemptStatus::TimedOut) => {
            no_answer = say(f, Msg::ReasonNoAnswer, None, &[]);
            &no_answer
        }
        (None, _) => return how,
    };
    say(f, Msg::WithReason, None, &[("how", &how), ("reason", reason)])
}

/// JavaScript sees a blocking reason by its name; the details are in the
/// reason text, the meters and the cost preview.
impl BlockedKind {
    /// The names, in the order of the variants.
    pub const NAMES: [&'static str; 10] =
        ["no_state", "connecting", "reconnecting", "paused", "stale", "empty_request", "unknown_kind", "slots", "units", "wait"];
}

impl Serialize for BlockedKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::NAMES[*self as usize])
    }
}

impl Serialize for Blocked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.kind().serialize(s)
    }
}

/// The rows of the previous view model, each with the inputs it was made
/// from. Rows are found by their inputs alone, so a row that moved is
/// reused too. (Each entry is `Some` between builds; `None` marks a row
/// taken during one.)
struct Rows<K, V> {
    rows: Vec<Option<(K, Rc<V>)>>,
}

impl<K, V> Default for Rows<K, V> {
    fn default() -> Self {
        Rows { rows: Vec::new() }
    }
}

impl<K, V> Rows<K, V> {
    /// The rows for `inputs`, in order: the previous row made from equal
    /// inputs where there is one, else a new row from `make`.
    fn build<I>(
        &mut self,
        inputs: impl IntoIterator<Item = I>,
        same: impl Fn(&K, &I) -> bool,
        own: impl Fn(&I) -> K,
        mut make: impl FnMut(&I) -> V,
    ) -> Vec<Rc<V>> {
        let mut old = std::mem::take(&mut self.rows);
        let mut out = Vec::with_capacity(old.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let matches = |slot: &Option<(K, Rc<V>)>| slot.as_ref().is_some_and(|(k, _)| same(k, &input));
            // The same place first: lists rarely reorder.
            let found = if old.get(i).is_some_and(matches) { Some(i) } else { old.iter().position(matches) };
            let (key, row) = match found.and_then(|j| old[j].take()) {
                Some(kept) => kept,
                None => (own(&input), Rc::new(make(&input))),
            };
            out.push(Rc::clone(&row));
            self.rows.push(Some((key, row)));
        }
        out
    }
    /// [`Rows::build`] for a single row.
    fn one<I>(&mut self, input: I, same: impl Fn(&K, &I) -> bool, own: impl Fn(&I) -> K, make: impl FnOnce(&I) -> V) -> Rc<V> {
        if let Some(Some((k, row))) = self.rows.first() {
            if same(k, &input) {
                return Rc::clone(row);
            }
        }
        let row = Rc::new(make(&input));
        self.rows = vec![Some((own(&input), Rc::clone(&row)))];
        row
    }
}

/// What an attempt row is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AttemptIn<S> {
    key: S,
    status: AttemptStatus,
    kind: S,
    count: u32,
    /// Units held, reserved or charged, by status.
    amount: Units,
    reason: Option<S>,
    /// When it ended; `None` while it runs or waits.
    at: Option<Millis>,
    /// A queued request's server id and place (1 starts next).
    queued: Option<(S, u32)>,
}

impl AttemptIn<&str> {
    fn owned(&self) -> AttemptIn<String> {
        AttemptIn {
            key: self.key.to_owned(),
            status: self.status,
            kind: self.kind.to_owned(),
            count: self.count,
            amount: self.amount,
            reason: self.reason.map(str::to_owned),
            at: self.at,
            queued: self.queued.map(|(id, place)| (id.to_owned(), place)),
        }
    }
}

impl AttemptIn<String> {
    fn same(&self, o: &AttemptIn<&str>) -> bool {
        self.key == o.key
            && self.status == o.status
            && self.kind == o.kind
            && self.count == o.count
            && self.amount == o.amount
            && self.reason.as_deref() == o.reason
            && self.at == o.at
            && self.queued.as_ref().map(|(id, p)| (id.as_str(), *p)) == o.queued
    }
}

/// (remaining, reserved, held, available, low, whether requests wait)
type UnitsIn = (Units, Units, Units, Units, bool, bool);
/// (slots, cost, available, cost of one item, estimate, kind)
type CostIn = (u32, Units, Units, Units, bool, String);

/// Builds view models, one after another, with the formatter `F` (the
/// page's `Intl` in the browser). Rows and texts whose inputs did not change
/// since the previous view model are reused as they were, so an update
/// formats only what moved. It keeps no rule of its own: every figure comes
/// from [`Quota`], and a fresh `Viewer` builds the same view model.
pub struct Viewer<F> {
    fmt: F,
    reason: Option<(Result<Gate, Blocked>, String)>,
    units: Rows<UnitsIn, UnitsView>,
    meters: Rows<(SlotPool, u32), MeterView>,
    packages: Rows<(Package, bool, bool), PackageView>,
    cost: Rows<CostIn, CostView>,
    attempts: Rows<AttemptIn<String>, AttemptView>,
}

impl<F: Fmt> Viewer<F> {
    pub fn new(fmt: F) -> Self {
        Viewer {
            fmt,
            reason: None,
            units: Rows::default(),
            meters: Rows::default(),
            packages: Rows::default(),
            cost: Rows::default(),
            attempts: Rows::default(),
        }
    }

    pub fn fmt(&self) -> &F {
        &self.fmt
    }

    /// What the page should show at local time `now`.
    pub fn view(&mut self, q: &Quota, now: Millis) -> ViewModel {
        let f = &self.fmt;
        let gate = q.gate(now);
        let reason = match (&gate, &self.reason) {
            (Ok(Gate::Start), _) => String::new(),
            (g, Some((last, text))) if g == last => text.clone(),
            (g, _) => {
                let text = match g {
                    Err(b) => b.message(f),
                    Ok(Gate::Queue { ahead }) => {
                        say(f, Msg::GateQueue, Some(f64::from(*ahead)), &[("ahead", &f.number(u64::from(*ahead)))])
                    }
                    // Answered above: an open gate that starts says nothing.
                    Ok(Gate::Start) => String::new(),
                };
                self.reason = Some((g.clone(), text.clone()));
                text
            }
        };
        let queues = matches!(gate, Ok(Gate::Queue { .. }));
        let blocked = gate.err();
        let state = q.state.as_ref();
        let units = state.map(|_| {
            let available = q.available_units().unwrap_or_default();
            let input: UnitsIn = (
                q.remaining_units().unwrap_or_default(),
                q.reserved_units().unwrap_or_default(),
                q.held_units(),
                available,
                available < q.config.low_units,
                state.is_some_and(|s| !s.queued.is_empty()),
            );
            self.units.one(input, |k, i| k == i, |i| *i, |&(remaining, reserved, held, available, low, queued)| {
                // Only while something is held: at rest, what can be spent
                // is the remaining figure, which the headline already says.
                let taken = reserved.saturating_add(held);
                let detail_text = if taken.is_zero() {
                    String::new()
                } else {
                    let m = if queued { Msg::UnitsNoteQueued } else { Msg::UnitsNote };
                    say(f, m, None, &[("held", &f.units(taken)), ("available", &f.units(available))])
                };
                UnitsView {
                    remaining,
                    reserved,
                    held,
                    available,
                    low,
                    remaining_text: say(
                        f,
                        Msg::UnitsRemaining,
                        Some(remaining.to_number()),
                        &[("units", &f.units(remaining))],
                    ),
                    detail_text,
                }
            })
        });
        let meters = match state {
            None => Vec::new(),
            Some(s) => self.meters.build(
                s.pools.iter().map(|p| (p, q.held_slots(&p.kind))),
                |(kp, kh), (p, h)| kp == *p && kh == h,
                |(p, h)| ((*p).clone(), *h),
                |&(p, held)| {
                    let in_use = f.number(u64::from(p.in_use));
                    let limit = f.number(u64::from(p.limit));
                    let text = say(
                        f,
                        if held > 0 { Msg::MeterTextHeld } else { Msg::MeterText },
                        Some(f64::from(p.in_use)),
                        &[("in_use", &in_use), ("limit", &limit), ("held", &f.number(u64::from(held)))],
                    );
                    MeterView {
                        kind: p.kind.clone(),
                        label: say(f, Msg::MeterLabel, None, &[("kind", &kind_title(f, &p.kind))]),
                        in_use: p.in_use,
                        held,
                        limit: p.limit,
                        value: p.in_use.saturating_add(held).min(p.limit),
                        text,
                    }
                },
            ),
        };
        let packages = match state {
            None => Vec::new(),
            Some(s) => {
                let soon = Millis::from(q.config.expiring_soon_days) * DAY_MS;
                self.packages.build(
                    s.packages.iter().map(|p| {
                        let counts = counts(p, s.server_time_ms);
                        (p, counts, counts && p.expires_at_ms - s.server_time_ms <= soon)
                    }),
                    |(kp, kc, ke), (p, c, e)| kc == c && ke == e && kp == *p,
                    |(p, c, e)| ((*p).clone(), *c, *e),
                    |&(p, counts, expiring_soon)| {
                        let (m, at) = match p.status {
                            PackageStatus::Pending => (Msg::PackagePending, Some(p.effective_at_ms)),
                            PackageStatus::Active if expiring_soon => (Msg::PackageExpiring, Some(p.expires_at_ms)),
                            PackageStatus::Active => (Msg::PackageActive, Some(p.expires_at_ms)),
                            PackageStatus::Expired => (Msg::PackageExpired, Some(p.expires_at_ms)),
                            PackageStatus::Exhausted => (Msg::PackageUsedUp, None),
                        };
                        let date = at.map(|at| f.date(at)).unwrap_or_default();
                        let status = say(f, m, None, &[("date", &date)]);
                        PackageView {
                            id: p.id.clone(),
                            name: p.name.clone(),
                            status: p.status,
                            counts,
                            expiring_soon,
                            units_text: say(
                                f,
                                Msg::PackageUnits,
                                Some(p.total.to_number()),
                                &[("remaining", &f.units(p.remaining)), ("total", &f.units(p.total))],
                            ),
                            status_text: status,
                        }
                    },
                )
            }
        };
        let cost = q.demand().and_then(|(slots, cost)| {
            let available = q.available_units()?;
            let each = q.pool(&q.kind)?.unit_cost;
            // Where the server prices through an upstream service, the
            // service's final charge can differ from the preview.
            let estimate = state.is_some_and(|s| s.packages_synced_at_ms.is_some());
            let input: CostIn = (slots, cost, available, each, estimate, q.kind.clone());
            Some(self.cost.one(input, |k, i| k == i, |i| i.clone(), |(slots, cost, available, each, estimate, kind)| {
                let left_after = available.checked_sub(*cost);
                let (m, left) = match left_after {
                    Some(left) => (Msg::Cost, left),
                    None => (Msg::CostOver, *available),
                };
                let left = f.units(left);
                let (cost_text, each) = (f.units(*cost), f.units(*each));
                let kind = kind_name(f, kind);
                let args = [("cost", &*cost_text), ("each", &*each), ("kind", &*kind), ("left", &left), ("available", &left)];
                let mut text = say(f, m, Some(cost.to_number()), &args);
                if *estimate {
                    text = say(f, Msg::CostEstimate, None, &[("cost", &text)]);
                }
                CostView { slots: *slots, cost: *cost, left_after, text }
            }))
        });
        let mut freshness = match (q.age(now), q.link) {
            (None, Link::Reconnecting { .. }) => say(f, Msg::FreshReconnecting, None, &[]),
            (None, _) => say(f, Msg::FreshWaiting, None, &[]),
            (Some(a), link) => {
                let m = match link {
                    Link::Manual => Msg::FreshManual,
                    Link::Live => Msg::FreshLive,
                    Link::Connecting => Msg::FreshConnecting,
                    Link::Reconnecting { .. } => Msg::FreshReconnectingAge,
                    Link::Paused => Msg::FreshPaused,
                };
                say(f, m, None, &[("age", &age(f, a))])
            }
        };
        if let Some(a) = q.packages_age(now) {
            freshness = say(f, Msg::FreshPackages, None, &[("line", &freshness), ("age", &age(f, a))]);
        }
        let stale = matches!(
            blocked,
            Some(Blocked::NoState | Blocked::Connecting | Blocked::Reconnecting | Blocked::Paused | Blocked::Stale { .. })
        );
        let error_text = q.error.as_deref().map_or_else(String::new, |e| {
            // Before any good state there are no last good figures to keep.
            let m = if state.is_some() { Msg::ErrorKept } else { Msg::ErrorFirst };
            say(f, m, None, &[("error", e)])
        });
        ViewModel {
            enabled: blocked.is_none(),
            blocked,
            reason,
            queues,
            units,
            meters,
            packages,
            cost,
            attempts: self.attempts(q),
            freshness,
            stale,
            revision: q.revision(),
            error: q.error.clone(),
            error_text,
        }
    }

    fn attempts(&mut self, q: &Quota) -> Vec<Rc<AttemptView>> {
        // Newest first: submits in flight, then the server's running tasks,
        // then ended ones (the server's and the locally ended), by time.
        let mut all: Vec<(i64, AttemptIn<&str>)> = Vec::new();
        for h in &q.holds {
            let a = AttemptIn { key: &*h.id, status: AttemptStatus::Sending, kind: &*h.kind, count: h.count, amount: h.cost, reason: None, at: None, queued: None };
            all.push((i64::MAX, a));
        }
        if let Some(s) = &q.state {
            for t in &s.running {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let a = AttemptIn { key, status: AttemptStatus::Running, kind: &*t.kind, count: t.slots, amount: t.reserved_units, reason: None, at: None, queued: None };
                all.push((i64::MAX - 1, a));
            }
            // Every queued request is listed, in the order they start.
            for t in &s.queued {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let queued = Some((&*t.id, t.place));
                let a = AttemptIn { key, status: AttemptStatus::Queued, kind: &*t.kind, count: t.count, amount: t.reserved_units, reason: None, at: None, queued };
                all.push((i64::MAX - 2, a));
            }
            for t in &s.finished {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let status = match t.outcome {
                    Outcome::Succeeded => AttemptStatus::Succeeded,
                    Outcome::Failed => AttemptStatus::Failed,
                    Outcome::Refused => AttemptStatus::Refused,
                };
                let a = AttemptIn { key, status, kind: &*t.kind, count: t.slots, amount: t.units_charged, reason: t.reason.as_deref(), at: Some(t.finished_at_ms), queued: None };
                all.push((t.finished_at_ms, a));
            }
        }
        for l in &q.local {
            let status = match l.end {
                HoldEnd::Refused => AttemptStatus::Refused,
                HoldEnd::TimedOut => AttemptStatus::TimedOut,
                _ => AttemptStatus::Failed,
            };
            let a = AttemptIn { key: &*l.hold.id, status, kind: &*l.hold.kind, count: l.hold.count, amount: Units::ZERO, reason: l.reason.as_deref(), at: Some(l.at), queued: None };
            all.push((l.at, a));
        }
        // Newest first. An insertion sort: a few dozen entries at most, and
        // std's sorts would add kilobytes to the wasm.
        for i in 1..all.len() {
            let mut j = i;
            while j > 0 && all[j - 1].0 < all[j].0 {
                all.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut shown: Vec<AttemptIn<&str>> = Vec::new();
        for (_, a) in all {
            // A queued request is always listed: its row is where it is
            // cancelled.
            let room = shown.len() < q.config.max_attempts || a.queued.is_some();
            if room && !shown.iter().any(|s| s.key == a.key) {
                shown.push(a);
            }
        }
        let f = &self.fmt;
        self.attempts.build(shown, |k, a| k.same(a), AttemptIn::owned, |a| {
            let units = || f.units(a.amount);
            let how = match a.status {
                AttemptStatus::Sending => say(f, Msg::AttemptSending, Some(a.amount.to_number()), &[("units", &units())]),
                AttemptStatus::Running => say(f, Msg::AttemptRunning, Some(a.amount.to_number()), &[("units", &units())]),
                AttemptStatus::Queued => {
                    let place = f.number(a.queued.map_or(0, |(_, p)| p).into());
                    say(f, Msg::AttemptQueued, Some(a.amount.to_number()), &[("units", &units()), ("place", &place)])
                }
                status => ended(status, a.amount, a.reason, f),
            };
            let time = a.at.map(|at| f.time(at)).unwrap_or_default();
            let kind = kind_title(f, a.kind);
            let count = f.number(a.count.into());
            let args = [("kind", &*kind), ("count", &count), ("how", &how), ("time", &time)];
            let cancel_label = match a.queued {
                Some((_, place)) => say(
                    f,
                    Msg::CancelLabel,
                    Some(a.count.into()),
                    &[("kind", &*kind), ("count", &count), ("place", &f.number(place.into()))],
                ),
                None => String::new(),
            };
            AttemptView {
                key: a.key.to_owned(),
                status: a.status,
                charged: if a.status == AttemptStatus::Succeeded { a.amount } else { Units::ZERO },
                text: say(f, if a.at.is_some() { Msg::AttemptAt } else { Msg::Attempt }, Some(a.count.into()), &args),
                task_id: a.queued.map(|(id, _)| id.to_owned()),
                cancel_label,
            }
        })
    }
}

impl Quota {
    /// What the page should show at local time `now`, built afresh. A
    /// widget keeps a [`Viewer`] instead, which reuses unchanged rows.
    pub fn view(&self, now: Millis, f: &dyn Fmt) -> ViewModel {
        Viewer::new(f).view(self, now)
    }
}

#[cfg(test)]
mod tests {
    use super::BlockedKind::{self, *};

    /// What tsify declares (the variants' names in snake_case) is what the
    /// view model carries.
    #[test]
    fn blocked_kinds_serialize_as_their_declared_names() {
        let all = [NoState, Connecting, Reconnecting, Paused, Stale, EmptyRequest, UnknownKind, Slots, Units, Wait];
        assert_eq!(all.len(), BlockedKind::NAMES.len());
        for (i, k) in all.iter().enumerate() {
            let mut snake = String::new();
            for c in format!("{k:?}").chars() {
                if c.is_uppercase() && !snake.is_empty() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(BlockedKind::NAMES[*k as usize], snake, "variant {i}");
        }
    }
}
