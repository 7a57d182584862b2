//! Builders for server states used by the core's host tests.
#![allow(dead_code)]

use quota_widget::core::parse::Source;
use quota_widget::core::wire::*;

/// Cases per property: `QW_PROP_CASES`, else `default` (the quick count
/// that `scripts/test` runs; `scripts/props-long` runs a million).
pub fn prop_cases_or(default: u32) -> u32 {
    std::env::var("QW_PROP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Cases per property: `QW_PROP_CASES`, else 512.
pub fn prop_cases() -> u32 {
    prop_cases_or(512)
}

pub const DAY: i64 = 86_400_000;
pub const T0: i64 = 1_795_000_000_000;

/// `n` whole units.
pub fn units(n: u64) -> Units {
    Units::whole(n)
}

pub fn pool(kind: &str, limit: u32, in_use: u32, unit_cost: u64, slot_rule: SlotRule) -> SlotPool {
    SlotPool { kind: kind.into(), limit, in_use, unit_cost: units(unit_cost), slot_rule }
}

pub fn package(id: &str, total: u64, remaining: u64, expires_in_days: i64) -> Package {
    Package {
        id: id.into(),
        name: format!("Package {id}"),
        total: units(total),
        remaining: units(remaining),
        effective_at_ms: T0 - DAY,
        expires_at_ms: T0 + expires_in_days * DAY,
        status: if remaining == 0 { PackageStatus::Exhausted } else { PackageStatus::Active },
    }
}

pub fn state(revision: u64) -> ServerState {
    ServerState {
        revision,
        server_time_ms: T0,
        pools: vec![pool("image", 4, 0, 2, SlotRule::PerItem), pool("video", 1, 0, 10, SlotRule::PerTask)],
        packages: vec![package("p1", 100, 100, 30)],
        running: vec![],
        finished: vec![],
        queued: vec![],
        packages_synced_at_ms: None,
    }
}

pub fn running(id: &str, kind: &str, slots: u32, reserved: u64, client: Option<&str>) -> RunningTask {
    RunningTask {
        id: id.into(),
        kind: kind.into(),
        slots,
        reserved_units: units(reserved),
        client_request_id: client.map(Into::into),
        started_at_ms: T0,
    }
}

pub fn finished(id: &str, kind: &str, outcome: Outcome, charged: u64, client: Option<&str>) -> FinishedTask {
    FinishedTask {
        id: id.into(),
        kind: kind.into(),
        slots: 1,
        outcome,
        units_charged: units(charged),
        reason: (outcome != Outcome::Succeeded).then(|| "content moderation".into()),
        client_request_id: client.map(Into::into),
        finished_at_ms: T0,
    }
}

/// serde_json's values as a [`Source`], standing in on the host for the
/// browser's parsed objects.
pub struct J(pub serde_json::Value);

impl Source for J {
    fn get(&self, key: &str) -> Option<Self> {
        self.0.as_object()?.get(key).cloned().map(J)
    }
    fn is_object(&self) -> bool {
        self.0.is_object()
    }
    fn is_null(&self) -> bool {
        self.0.is_null()
    }
    fn number(&self) -> Option<f64> {
        self.0.as_f64()
    }
    fn string(&self) -> Option<String> {
        self.0.as_str().map(str::to_owned)
    }
    fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }
    fn items(&self) -> Option<Vec<Self>> {
        Some(self.0.as_array()?.iter().cloned().map(J).collect())
    }
}

/// A model server ends running task `n` of `state`: its slots are freed and,
/// on success, its reserved units are charged earliest expiry first (the
/// packages are in that order). Gives the finished task, with `reason`.
pub fn end_running(state: &mut ServerState, n: usize, success: bool, reason: Option<String>) -> FinishedTask {
    let t = state.running.remove(n);
    state.pools.iter_mut().find(|p| p.kind == t.kind).unwrap().in_use -= t.slots;
    let mut charged = Units::ZERO;
    if success {
        let mut due = t.reserved_units;
        for p in &mut state.packages {
            let take = due.min(p.remaining);
            p.remaining = p.remaining.saturating_sub(take);
            due = due.saturating_sub(take);
            charged += take;
        }
    }
    FinishedTask {
        id: t.id,
        kind: t.kind,
        slots: t.slots,
        outcome: if success { Outcome::Succeeded } else { Outcome::Failed },
        units_charged: charged,
        reason,
        client_request_id: t.client_request_id,
        finished_at_ms: T0,
    }
}

/// A page's table that names every message `[key]` and one more kind.
pub struct Keyed {
    table: quota_widget::core::Table,
}

impl Keyed {
    pub fn new() -> Keyed {
        let mut table = quota_widget::core::Table::default();
        table.add_all(quota_widget::core::Msg::ALL.iter().map(|m| keyed(*m)).collect());
        table.add("kind_audio", "[kind_audio]".into()).unwrap();
        Keyed { table }
    }
}

/// `[name]` and every placeholder of the English text: "[meter_label] {kind}".
pub fn keyed(m: quota_widget::core::Msg) -> String {
    let mut out = format!("[{}]", m.key());
    let mut seen = Vec::new();
    let mut rest = m.en();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        let name = &rest[open..open + close + 1];
        if !seen.contains(&name) {
            seen.push(name);
            out.push(' ');
            out.push_str(name);
        }
        rest = &rest[open + close + 1..];
    }
    out
}

impl quota_widget::core::Fmt for Keyed {
    fn number(&self, n: u64) -> String {
        quota_widget::core::PlainFmt.number(n)
    }
    fn units(&self, u: Units) -> String {
        quota_widget::core::PlainFmt.units(u)
    }
    fn date(&self, at: Millis) -> String {
        quota_widget::core::PlainFmt.date(at)
    }
    fn time(&self, at: Millis) -> String {
        quota_widget::core::PlainFmt.time(at)
    }
    fn template(&self, m: quota_widget::core::Msg) -> &str {
        self.table.template(m).unwrap_or(m.en())
    }
    fn kind(&self, kind: &str) -> Option<&str> {
        self.table.kind(kind)
    }
}

