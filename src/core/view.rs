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

use super::fmt::{age, title, Fmt};
use super::machine::{Blocked, HoldEnd, Link, Quota};
use super::rules::counts;
use super::wire::{Millis, Outcome, Package, PackageStatus, SlotPool, Units};
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

// The view model reaches JavaScript through serde-wasm-bindgen with these
// serde derives, which tsify reads too: the TypeScript declarations and the
// objects agree by construction.

const DAY_MS: Millis = 86_400_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct ViewModel {
    /// Whether the submit button is enabled.
    pub enabled: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "BlockedKind | null"))]
    pub blocked: Option<Blocked>,
    /// Why submit is blocked, for the user; empty when enabled.
    pub reason: String,
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
}

impl Blocked {
    /// The reason's name, as JavaScript sees it in `view().blocked`.
    pub fn kind(&self) -> &'static str {
        match self {
            Blocked::NoState => "no_state",
            Blocked::Connecting => "connecting",
            Blocked::Reconnecting => "reconnecting",
            Blocked::Paused => "paused",
            Blocked::Stale { .. } => "stale",
            Blocked::EmptyRequest => "empty_request",
            Blocked::UnknownKind { .. } => "unknown_kind",
            Blocked::Slots { .. } => "slots",
            Blocked::Units { .. } => "units",
        }
    }

    pub fn message(&self, f: &dyn Fmt) -> String {
        match self {
            Blocked::NoState => "Waiting for the quota state from the server.".to_owned(),
            Blocked::Connecting => "Connecting to the quota server.".to_owned(),
            Blocked::Reconnecting => "Connection lost. Reconnecting to the quota server.".to_owned(),
            Blocked::Paused => "Updates paused while this tab is hidden.".to_owned(),
            Blocked::Stale { age_ms } => {
                format!("Quota figures are out of date (updated {}).", age(*age_ms))
            }
            Blocked::EmptyRequest => "Choose how many items to generate.".to_owned(),
            Blocked::UnknownKind { kind } => format!("This account has no \"{kind}\" generation slots."),
            Blocked::Slots { kind, free, needed, limit } if needed > limit => format!(
                "This request needs {} {kind} slots; the limit is {}.",
                f.number(u64::from(*needed)),
                f.number(u64::from(*limit))
            ),
            Blocked::Slots { kind, free, needed, limit } => format!(
                "All {kind} slots are busy: {} of {} free, this request needs {}.",
                f.number(u64::from(*free)),
                f.number(u64::from(*limit)),
                f.number(u64::from(*needed))
            ),
            Blocked::Units { available, cost } => format!(
                "Not enough units: this request uses {}, {} available.",
                f.units(*cost),
                f.units(*available)
            ),
        }
    }
}

/// How an ended attempt reads: "done, 8 units charged", "failed, not
/// charged: content moderation".
fn ended(status: AttemptStatus, charged: Units, reason: Option<&str>, f: &dyn Fmt) -> String {
    let how = match status {
        AttemptStatus::Succeeded => return format!("done, {} units charged", f.units(charged)),
        AttemptStatus::Refused => "refused, not charged",
        AttemptStatus::TimedOut => "not confirmed, not charged",
        _ => "failed, not charged",
    };
    match reason {
        Some(r) => format!("{how}: {r}"),
        None => how.to_owned(),
    }
}

/// `parts` joined by `sep` (std's `join` costs the wasm more).
pub(crate) fn join(parts: &[String], sep: &str) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(p);
    }
    out
}

fn plural(n: Units, one: &str, many: &str) -> String {
    if n == Units::whole(1) {
        one.to_owned()
    } else {
        many.to_owned()
    }
}


/// JavaScript sees a blocking reason by its name; the details are in the
/// reason text, the meters and the cost preview.
impl Serialize for Blocked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.kind())
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
    }
}

/// (remaining, reserved, held, available, low)
type UnitsIn = (Units, Units, Units, Units, bool);

/// Builds view models, one after another, with the formatter `F` (the
/// page's `Intl` in the browser). Rows and texts whose inputs did not change
/// since the previous view model are reused as they were, so an update
/// formats only what moved. It keeps no rule of its own: every figure comes
/// from [`Quota`], and a fresh `Viewer` builds the same view model.
pub struct Viewer<F> {
    fmt: F,
    reason: Option<(Blocked, String)>,
    units: Rows<UnitsIn, UnitsView>,
    meters: Rows<(SlotPool, u32), MeterView>,
    packages: Rows<(Package, bool, bool), PackageView>,
    cost: Rows<(u32, Units, Option<Units>), CostView>,
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
        let blocked = q.blocked(now);
        let reason = match (&blocked, &self.reason) {
            (None, _) => String::new(),
            (Some(b), Some((last, text))) if b == last => text.clone(),
            (Some(b), _) => {
                let text = b.message(f);
                self.reason = Some((b.clone(), text.clone()));
                text
            }
        };
        let state = q.state.as_ref();
        let units = state.map(|_| {
            let available = q.available_units().unwrap_or_default();
            let input: UnitsIn = (
                q.remaining_units().unwrap_or_default(),
                q.reserved_units().unwrap_or_default(),
                q.held_units(),
                available,
                available < q.config.low_units,
            );
            self.units.one(input, |k, i| k == i, |i| *i, |&(remaining, reserved, held, available, low)| {
                let mut detail = vec![];
                if !reserved.is_zero() {
                    detail.push(format!("{} reserved by running tasks", f.units(reserved)));
                }
                if !held.is_zero() {
                    detail.push(format!("{} held by submits in flight", f.units(held)));
                }
                detail.push(format!("{} available", f.units(available)));
                UnitsView {
                    remaining,
                    reserved,
                    held,
                    available,
                    low,
                    remaining_text: format!("{} {} remaining", f.units(remaining), plural(remaining, "unit", "units")),
                    detail_text: join(&detail, " · "),
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
                    let mut text =
                        format!("{} of {} in use", f.number(u64::from(p.in_use)), f.number(u64::from(p.limit)));
                    if held > 0 {
                        text.push_str(&format!(", {} being submitted", f.number(u64::from(held))));
                    }
                    MeterView {
                        kind: p.kind.clone(),
                        label: format!("{} generation slots", title(&p.kind)),
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
                        let status = match p.status {
                            PackageStatus::Pending => format!("starts {}", f.date(p.effective_at_ms)),
                            PackageStatus::Active if expiring_soon => format!("expires soon, {}", f.date(p.expires_at_ms)),
                            PackageStatus::Active => format!("active · expires {}", f.date(p.expires_at_ms)),
                            PackageStatus::Expired => format!("expired {}", f.date(p.expires_at_ms)),
                            PackageStatus::Exhausted => "used up".to_owned(),
                        };
                        PackageView {
                            id: p.id.clone(),
                            name: p.name.clone(),
                            status: p.status,
                            counts,
                            expiring_soon,
                            units_text: format!("{} of {} units", f.units(p.remaining), f.units(p.total)),
                            status_text: status,
                        }
                    },
                )
            }
        };
        let cost = q.demand().map(|(slots, cost)| {
            let left_after = q.available_units().and_then(|a| a.checked_sub(cost));
            self.cost.one((slots, cost, left_after), |k, i| k == i, |i| *i, |&(slots, cost, left_after)| {
                let units = plural(cost, "unit", "units");
                let text = match left_after {
                    Some(left) => format!("Uses {} {units}, {} left after", f.units(cost), f.units(left)),
                    None => format!("Uses {} {units}, more than available", f.units(cost)),
                };
                CostView { slots, cost, left_after, text }
            })
        });
        let mut freshness = match (q.age(now), q.link) {
            (None, Link::Reconnecting { .. }) => "Reconnecting…".to_owned(),
            (None, _) => "Waiting for data…".to_owned(),
            (Some(a), link) => {
                let lead = match link {
                    Link::Manual => "Updated",
                    Link::Live => "Live · updated",
                    Link::Connecting => "Connecting… · updated",
                    Link::Reconnecting { .. } => "Reconnecting… · last updated",
                    Link::Paused => "Paused · updated",
                };
                format!("{lead} {} · revision {}", age(a), q.revision().unwrap_or(0))
            }
        };
        if let Some(a) = q.packages_age(now) {
            freshness.push_str(&format!(" · package figures from the service, {}", age(a)));
        }
        let stale = matches!(
            blocked,
            Some(Blocked::NoState | Blocked::Connecting | Blocked::Reconnecting | Blocked::Paused | Blocked::Stale { .. })
        );
        ViewModel {
            enabled: blocked.is_none(),
            blocked,
            reason,
            units,
            meters,
            packages,
            cost,
            attempts: self.attempts(q),
            freshness,
            stale,
            revision: q.revision(),
            error: q.error.clone(),
        }
    }

    fn attempts(&mut self, q: &Quota) -> Vec<Rc<AttemptView>> {
        // Newest first: submits in flight, then the server's running tasks,
        // then ended ones (the server's and the locally ended), by time.
        let mut all: Vec<(i64, AttemptIn<&str>)> = Vec::new();
        for h in &q.holds {
            let a = AttemptIn { key: &*h.id, status: AttemptStatus::Sending, kind: &*h.kind, count: h.count, amount: h.cost, reason: None };
            all.push((i64::MAX, a));
        }
        if let Some(s) = &q.state {
            for t in &s.running {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let a = AttemptIn { key, status: AttemptStatus::Running, kind: &*t.kind, count: t.slots, amount: t.reserved_units, reason: None };
                all.push((i64::MAX - 1, a));
            }
            for t in &s.finished {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let status = match t.outcome {
                    Outcome::Succeeded => AttemptStatus::Succeeded,
                    Outcome::Failed => AttemptStatus::Failed,
                    Outcome::Refused => AttemptStatus::Refused,
                };
                let a = AttemptIn { key, status, kind: &*t.kind, count: t.slots, amount: t.units_charged, reason: t.reason.as_deref() };
                all.push((t.finished_at_ms, a));
            }
        }
        for l in &q.local {
            let status = match l.end {
                HoldEnd::Refused => AttemptStatus::Refused,
                HoldEnd::TimedOut => AttemptStatus::TimedOut,
                _ => AttemptStatus::Failed,
            };
            let a = AttemptIn { key: &*l.hold.id, status, kind: &*l.hold.kind, count: l.hold.count, amount: Units::ZERO, reason: l.reason.as_deref() };
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
            if shown.len() < q.config.max_attempts && !shown.iter().any(|s| s.key == a.key) {
                shown.push(a);
            }
        }
        let f = &self.fmt;
        self.attempts.build(shown, |k, a| k.same(a), AttemptIn::owned, |a| {
            let how = match a.status {
                AttemptStatus::Sending => format!("sending, {} units held", f.units(a.amount)),
                AttemptStatus::Running => format!("running, {} units reserved", f.units(a.amount)),
                status => ended(status, a.amount, a.reason, f),
            };
            AttemptView {
                key: a.key.to_owned(),
                status: a.status,
                charged: if a.status == AttemptStatus::Succeeded { a.amount } else { Units::ZERO },
                text: format!("{} ×{} · {how}", title(a.kind), f.number(a.count.into())),
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
