//! Reading a server state the way the widget does, plus the few rules of
//! `docs/wire.md` that the widget's validation leaves to the server, and
//! the arithmetic the checks use to compare two states.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use quota_widget::core::parse::{read_state, Source};
use quota_widget::core::queue::{places, Figures, Waiting};
use quota_widget::core::rules::{self, Capacity};
use quota_widget::core::validate::validate;
use quota_widget::core::wire::{Outcome, ServerState, SlotPool, Units};
use serde_json::Value;

/// serde_json's values as the core's [`Source`], so that a state is read by
/// the same code the widget runs in the browser (which names the first
/// field at fault).
struct J<'a>(&'a Value);

impl<'a> Source for J<'a> {
    fn get(&self, key: &'static str) -> Option<Self> {
        self.0.as_object()?.get(key).map(J)
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
        Some(self.0.as_array()?.iter().map(J).collect())
    }
}

/// Reads a state out of a body: JSON, the widget's reader, the wire's serde
/// types, the widget's validation, then the rules below. The error says
/// what is wrong in the widget's words where it has them.
pub fn read(body: &[u8]) -> Result<ServerState, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", snippet(body)))?;
    let state = read_state(&J(&v)).map_err(|e| e.to_string())?;
    // The widget reads through `read_state`; other clients (the TypeScript
    // declarations, the server) through serde. Both must take it.
    if let Err(e) = serde_json::from_value::<ServerState>(v) {
        return Err(format!("the wire's serde types reject the state: {e}"));
    }
    validate(&state).map_err(|e| e.to_string())?;
    wire_rules(&state)?;
    Ok(state)
}

/// Rules of `docs/wire.md` the widget's validation does not check because
/// the widget can live with them broken, but which make its figures wrong.
fn wire_rules(s: &ServerState) -> Result<(), String> {
    for pool in &s.pools {
        let held: u64 = s.running.iter().filter(|t| t.kind == pool.kind).map(|t| u64::from(t.slots)).sum();
        if u64::from(pool.in_use) != held {
            return Err(format!(
                "pool \"{}\" says in_use {} but its running tasks hold {held} slots",
                pool.kind, pool.in_use
            ));
        }
    }
    if let Some(synced) = s.packages_synced_at_ms {
        if synced > s.server_time_ms {
            return Err(format!(
                "packages_synced_at_ms {synced} is after server_time_ms {}",
                s.server_time_ms
            ));
        }
    }
    if let Some(w) = s.finished.windows(2).find(|w| w[0].finished_at_ms < w[1].finished_at_ms) {
        return Err(format!(
            "finished is not newest first: \"{}\" ended at {} before \"{}\" at {}",
            w[0].id, w[0].finished_at_ms, w[1].id, w[1].finished_at_ms
        ));
    }
    let mut ids = HashSet::new();
    let queued = s.queued.iter().map(|q| &q.id);
    for id in s.running.iter().map(|t| &t.id).chain(s.finished.iter().map(|t| &t.id)).chain(queued) {
        if !ids.insert(id) {
            return Err(format!("task \"{id}\" is listed twice (running, queued and finished, or twice in one list)"));
        }
    }
    // The queue: places count within each kind, in the list's order.
    for (q, place) in s.queued.iter().zip(places(&waiting(s))) {
        if q.place != place {
            return Err(format!(
                "queued request \"{}\" says place {}, but it is number {place} of its kind ({}) in the list",
                q.id, q.place, q.kind
            ));
        }
    }
    Ok(())
}

/// The first 200 characters of a body on one line, for messages (a report
/// line is one line whatever the server sent).
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.as_str();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// What a state says, without the clock: two states with the same
/// revision must have the same fingerprint (R4: a client ignores a repeated
/// revision, so a change under an old revision is never shown).
pub fn fingerprint(s: &ServerState) -> u64 {
    let mut s = s.clone();
    s.server_time_ms = 0;
    // The time of the last package sync moves without the figures moving.
    s.packages_synced_at_ms = None;
    let mut h = DefaultHasher::new();
    // Serializing the wire types cannot fail (strings, integers, units).
    serde_json::to_string(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

pub fn pool<'a>(s: &'a ServerState, kind: &str) -> Option<&'a SlotPool> {
    s.pools.iter().find(|p| p.kind == kind)
}

/// The figures a request of `kind` is judged on (R1, R2 and the queue),
/// from the core's own rules: units reserved by running and queued
/// requests, and no slot free for a newcomer while requests of its kind
/// wait.
pub fn capacity(s: &ServerState, kind: &str) -> Option<Capacity> {
    let waiting = waiting(s);
    let figures = Figures {
        pools: &s.pools,
        spendable: rules::remaining(s),
        running_reserved: s.running.iter().map(|t| t.reserved_units).sum(),
        waiting: &waiting,
        held: &[],
    };
    figures.capacity(kind)
}

/// The state's queued requests as the core's waiting requests.
fn waiting(s: &ServerState) -> Vec<Waiting<String>> {
    s.queued
        .iter()
        .map(|q| Waiting {
            id: q.id.clone(),
            kind: q.kind.clone(),
            slots: pool(s, &q.kind).map_or(q.count, |p| p.slot_rule.slots_for(q.count)),
            cost: q.reserved_units,
        })
        .collect()
}

/// Units left in all packages, whatever their status: only a deduction
/// (a success) may lower it.
pub fn units_left(s: &ServerState) -> Units {
    s.packages.iter().map(|p| p.remaining).sum()
}

/// Checks that between `before` and `after` the packages lost exactly what
/// the tasks that succeeded in between were charged, no more, no less (R3:
/// holds, refusals and failures deduct nothing). Returns the units charged.
pub fn ledger(before: &ServerState, after: &ServerState) -> Result<Units, String> {
    let known: HashSet<&str> = before.finished.iter().map(|t| t.id.as_str()).collect();
    let charged: Units = after
        .finished
        .iter()
        .filter(|t| !known.contains(t.id.as_str()) && t.outcome == Outcome::Succeeded)
        .map(|t| t.units_charged)
        .sum();
    let (was, now) = (units_left(before), units_left(after));
    let want = was.checked_sub(charged);
    if want == Some(now) {
        return Ok(charged);
    }
    let succeeded = if charged.is_zero() {
        "no task succeeded in between".to_owned()
    } else {
        format!("tasks that succeeded in between were charged {charged}")
    };
    Err(format!(
        "packages held {was} units (revision {}) and now {now} (revision {}), but {succeeded}",
        before.revision, after.revision
    ))
}

/// Running tasks of `after` that `before` did not have.
pub fn new_running<'a>(before: &ServerState, after: &'a ServerState) -> Vec<&'a str> {
    let known: HashSet<&str> = before.running.iter().map(|t| t.id.as_str()).collect();
    after.running.iter().map(|t| t.id.as_str()).filter(|id| !known.contains(id)).collect()
}

/// Whether some task other than the one asked with `ours` ended between the
/// two states: the account moved under a check, whose figures then prove
/// nothing.
pub fn others_ended(before: &ServerState, after: &ServerState, ours: &str) -> bool {
    let known: HashSet<&str> = before.finished.iter().map(|t| t.id.as_str()).collect();
    after
        .finished
        .iter()
        .any(|t| !known.contains(t.id.as_str()) && t.client_request_id.as_deref() != Some(ours))
}

/// Whether the account moved under a request sent with the id `ours`:
/// another task started or some other task ended between the two states.
pub fn moved(before: &ServerState, after: &ServerState, ours: &str) -> bool {
    let known: HashSet<&str> = before.running.iter().map(|t| t.id.as_str()).collect();
    others_ended(before, after, ours)
        || after
            .running
            .iter()
            .any(|t| !known.contains(t.id.as_str()) && t.client_request_id.as_deref() != Some(ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(extra: Value) -> Value {
        let mut s = json!({
            "revision": 3, "server_time_ms": 1000,
            "pools": [{"kind": "image", "limit": 4, "in_use": 2, "unit_cost": 4, "slot_rule": "per_item"}],
            "packages": [{"id": "p", "name": "P", "total": 10, "remaining": 9.5,
                          "effective_at_ms": 0, "expires_at_ms": 5000, "status": "active"}],
            "running": [{"id": "t2", "kind": "image", "slots": 2, "reserved_units": 8,
                         "client_request_id": "c2", "started_at_ms": 900}],
            "finished": [{"id": "t1", "kind": "image", "slots": 1, "outcome": "failed", "units_charged": 0,
                          "reason": "x", "client_request_id": "c1", "finished_at_ms": 800}]
        });
        if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        s
    }

    fn read_value(v: &Value) -> Result<ServerState, String> {
        read(v.to_string().as_bytes())
    }

    #[test]
    fn reads_a_good_state_and_names_faults() {
        let s = read_value(&state(json!({}))).expect("good state");
        assert_eq!(units_left(&s), Units::from_milli(9500));
        let e = read_value(&state(json!({"revision": -1}))).unwrap_err();
        assert!(e.contains("revision"), "{e}");
        let mut v = state(json!({}));
        v["packages"][0]["remaining"] = json!(9.0005);
        assert!(read_value(&v).unwrap_err().contains("packages[0].remaining"));
        let mut v = state(json!({}));
        v["pools"][0]["in_use"] = json!(1);
        assert!(read_value(&v).unwrap_err().contains("in_use 1"));
        let e = read_value(&state(json!({"packages_synced_at_ms": 2000}))).unwrap_err();
        assert!(e.contains("packages_synced_at_ms"), "{e}");
        assert!(read(b"<html>").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn ledger_counts_only_new_successes() {
        let a = read_value(&state(json!({}))).expect("a");
        let mut v = state(json!({"revision": 4}));
        v["running"] = json!([]);
        v["pools"][0]["in_use"] = json!(0);
        v["finished"] = json!([
            {"id": "t2", "kind": "image", "slots": 2, "outcome": "succeeded", "units_charged": 8,
             "reason": null, "client_request_id": "c2", "finished_at_ms": 950},
            a.finished[0].clone(),
        ]);
        v["packages"][0]["remaining"] = json!(1.5);
        let b = read_value(&v).expect("b");
        assert_eq!(ledger(&a, &b), Ok(Units::whole(8)));
        assert!(others_ended(&a, &b, "c9"));
        assert!(!others_ended(&a, &b, "c2"));
        v["packages"][0]["remaining"] = json!(1);
        let c = read_value(&v).expect("c");
        assert!(ledger(&a, &c).is_err());
        assert_ne!(fingerprint(&b), fingerprint(&c));
    }
}
