//! The view model: what the button and the display should say, as plain
//! values. The DOM view writes it to the page; tests read it directly.

use super::fmt::{age, title, Fmt};
use super::machine::{counts, Blocked, HoldEnd, Link, Quota};
use super::wire::{Millis, Outcome, PackageStatus};
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

// The view model reaches JavaScript as JSON written by miniserde (far
// smaller wasm than serde's serializers). miniserde reads only per-field
// `#[serde(rename)]`, which tsify reads too: the TypeScript declarations
// and the JSON agree by construction.

const DAY_MS: Millis = 86_400_000;

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct ViewModel {
    /// Whether the submit button is enabled.
    pub enabled: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "BlockedKind | null"))]
    pub blocked: Option<Blocked>,
    /// Why submit is blocked, for the user; empty when enabled.
    pub reason: String,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "UnitsView | null"))]
    pub units: Option<UnitsView>,
    pub meters: Vec<MeterView>,
    pub packages: Vec<PackageView>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "CostView | null"))]
    pub cost: Option<CostView>,
    pub attempts: Vec<AttemptView>,
    /// "Live · updated 3 s ago · revision 42".
    pub freshness: String,
    /// Whether the figures are too old or the link is down.
    pub stale: bool,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "number | null"))]
    pub revision: Option<u64>,
    /// The last input error, shown until a good state arrives.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string | null"))]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct UnitsView {
    /// Units left in active packages; moves only on a deduction (R3).
    pub remaining: u64,
    /// Set aside for running tasks.
    pub reserved: u64,
    /// Held by submits the server has not shown yet.
    pub held: u64,
    /// What a new request may use: remaining - reserved - held.
    pub available: u64,
    pub low: bool,
    /// "1,200 units remaining".
    #[serde(rename = "remainingText")]
    pub remaining_text: String,
    /// "40 reserved by running tasks · 1,160 available".
    #[serde(rename = "detailText")]
    pub detail_text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct CostView {
    pub slots: u32,
    pub cost: u64,
    #[serde(rename = "leftAfter")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "number | null"))]
    pub left_after: Option<u64>,
    /// "Uses 4 units, 96 left after".
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, miniserde::Serialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, miniserde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct AttemptView {
    /// Stable across updates: the client request id, else the task id.
    pub key: String,
    pub status: AttemptStatus,
    pub charged: u64,
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
                f.number(*cost),
                f.number(*available)
            ),
        }
    }
}

/// How an ended attempt reads: "done, 8 units charged", "failed, not
/// charged: content moderation".
fn ended(status: AttemptStatus, charged: u64, reason: Option<&str>, f: &dyn Fmt) -> String {
    let how = match status {
        AttemptStatus::Succeeded => return format!("done, {} units charged", f.number(charged)),
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

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        one.to_owned()
    } else {
        many.to_owned()
    }
}

impl Quota {
    /// What the page should show at local time `now`.
    pub fn view(&self, now: Millis, f: &dyn Fmt) -> ViewModel {
        let blocked = self.blocked(now);
        let reason = blocked.as_ref().map(|b| b.message(f)).unwrap_or_default();
        let state = self.state.as_ref();
        let units = state.map(|_| {
            let remaining = self.remaining_units().unwrap_or(0);
            let reserved = self.reserved_units().unwrap_or(0);
            let held = self.held_units();
            let available = self.available_units().unwrap_or(0);
            let mut detail = vec![];
            if reserved > 0 {
                detail.push(format!("{} reserved by running tasks", f.number(reserved)));
            }
            if held > 0 {
                detail.push(format!("{} held by submits in flight", f.number(held)));
            }
            detail.push(format!("{} available", f.number(available)));
            UnitsView {
                remaining,
                reserved,
                held,
                available,
                low: available < self.config.low_units,
                remaining_text: format!(
                    "{} {} remaining",
                    f.number(remaining),
                    plural(remaining, "unit", "units")
                ),
                detail_text: join(&detail, " · "),
            }
        });
        let meters = state
            .map(|s| {
                s.pools
                    .iter()
                    .map(|p| {
                        let held = self.held_slots(&p.kind);
                        let value = (p.in_use.saturating_add(held)).min(p.limit);
                        let mut text = format!(
                            "{} of {} in use",
                            f.number(u64::from(p.in_use)),
                            f.number(u64::from(p.limit))
                        );
                        if held > 0 {
                            text.push_str(&format!(", {} being submitted", f.number(u64::from(held))));
                        }
                        MeterView {
                            kind: p.kind.clone(),
                            label: format!("{} generation slots", title(&p.kind)),
                            in_use: p.in_use,
                            held,
                            limit: p.limit,
                            value,
                            text,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let packages = state
            .map(|s| {
                let soon = Millis::from(self.config.expiring_soon_days) * DAY_MS;
                s.packages
                    .iter()
                    .map(|p| {
                        let counts = counts(s, p);
                        let expiring_soon = counts && p.expires_at_ms - s.server_time_ms <= soon;
                        let status = match p.status {
                            PackageStatus::Pending => format!("starts {}", f.date(p.effective_at_ms)),
                            PackageStatus::Active if expiring_soon => {
                                format!("expires soon, {}", f.date(p.expires_at_ms))
                            }
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
                            units_text: format!("{} of {} units", f.number(p.remaining), f.number(p.total)),
                            status_text: status,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cost = self.demand().map(|(slots, cost)| {
            let left_after = self.available_units().and_then(|a| a.checked_sub(cost));
            let text = match left_after {
                Some(left) => format!(
                    "Uses {} {}, {} left after",
                    f.number(cost),
                    plural(cost, "unit", "units"),
                    f.number(left)
                ),
                None => format!("Uses {} {}, more than available", f.number(cost), plural(cost, "unit", "units")),
            };
            CostView { slots, cost, left_after, text }
        });
        let freshness = match (self.age(now), self.link) {
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
                format!("{lead} {} · revision {}", age(a), self.revision().unwrap_or(0))
            }
        };
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
            attempts: self.attempts(f),
            freshness,
            stale,
            revision: self.revision(),
            error: self.error.clone(),
        }
    }

    fn attempts(&self, f: &dyn Fmt) -> Vec<AttemptView> {
        // Newest first: submits in flight, then the server's running tasks,
        // then ended ones (the server's and the locally ended), by time.
        let mut out: Vec<(i64, AttemptView)> = Vec::new();
        let mut add = |at: i64, key: &str, status, charged, kind: &str, count: u32, how: String| {
            let text = format!("{} ×{} · {how}", title(kind), f.number(count.into()));
            out.push((at, AttemptView { key: key.to_owned(), status, charged, text }));
        };
        for h in &self.holds {
            let how = format!("sending, {} units held", f.number(h.cost));
            add(i64::MAX, &h.id, AttemptStatus::Sending, 0, &h.kind, h.count, how);
        }
        if let Some(s) = &self.state {
            for t in &s.running {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let how = format!("running, {} units reserved", f.number(t.reserved_units));
                add(i64::MAX - 1, key, AttemptStatus::Running, 0, &t.kind, t.slots, how);
            }
            for t in &s.finished {
                let key = t.client_request_id.as_deref().unwrap_or(&t.id);
                let status = match t.outcome {
                    Outcome::Succeeded => AttemptStatus::Succeeded,
                    Outcome::Failed => AttemptStatus::Failed,
                    Outcome::Refused => AttemptStatus::Refused,
                };
                let how = ended(status, t.units_charged, t.reason.as_deref(), f);
                add(t.finished_at_ms, key, status, t.units_charged, &t.kind, t.slots, how);
            }
        }
        for a in &self.local {
            let status = match a.end {
                HoldEnd::Refused => AttemptStatus::Refused,
                HoldEnd::TimedOut => AttemptStatus::TimedOut,
                _ => AttemptStatus::Failed,
            };
            let how = ended(status, 0, a.reason.as_deref(), f);
            add(a.at, &a.hold.id, status, 0, &a.hold.kind, a.hold.count, how);
        }
        // Newest first. An insertion sort: a few dozen entries at most, and
        // std's sorts would add kilobytes to the wasm.
        for i in 1..out.len() {
            let mut j = i;
            while j > 0 && out[j - 1].0 < out[j].0 {
                out.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut shown: Vec<AttemptView> = Vec::new();
        for (_, a) in out {
            if shown.len() < self.config.max_attempts && !shown.iter().any(|s| s.key == a.key) {
                shown.push(a);
            }
        }
        shown
    }
}

/// JavaScript sees a blocking reason by its name; the details are in the
/// reason text, the meters and the cost preview.
impl miniserde::Serialize for Blocked {
    fn begin(&self) -> miniserde::ser::Fragment<'_> {
        miniserde::ser::Fragment::Str(std::borrow::Cow::Borrowed(self.kind()))
    }
}
