//! The widget with the `queue` option (R8 on the client), case by case: the
//! gate says when a submit will wait in the server's queue instead of
//! blocking it, a waiting hold reserves units and no slot, the queued
//! requests are listed with their place and a cancel control, and the
//! remaining units never move for a queued, cancelled or failed request
//! (R3). The queue's rules are the core's `queue::Figures`, shared with the
//! server.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::wire::*;
use quota_widget::core::*;

/// State `revision` with all 4 image slots taken by one running task
/// reserving 8 units.
fn full(revision: u64) -> ServerState {
    let mut s = state(revision);
    s.pools[0].in_use = 4;
    s.running.push(running("t0", "image", 4, 8, None));
    s
}

fn queued(id: &str, count: u32, reserved: u64, place: u32, client: Option<&str>) -> QueuedRequest {
    QueuedRequest {
        id: id.into(),
        kind: "image".into(),
        count,
        reserved_units: units(reserved),
        place,
        client_request_id: client.map(Into::into),
        queued_at_ms: T0,
    }
}

fn with_queue(s: ServerState) -> Quota {
    let mut q = Quota::new(Config::default());
    q.set_queue(true);
    q.apply_state(s, T0).unwrap();
    q
}

#[test]
fn without_the_option_busy_slots_block_as_before() {
    let mut q = Quota::new(Config::default());
    q.apply_state(full(1), T0).unwrap();
    assert_eq!(q.gate(T0), Err(Blocked::Slots { kind: "image".into(), free: 0, needed: 1, limit: 4 }));
    let v = q.view(T0, &PlainFmt);
    assert!(!v.enabled && !v.queues);
    // Requests that wait already close the kind to a request that does not
    // queue, even with a slot free: they come first.
    let mut s = state(2);
    s.queued.push(queued("q1", 1, 2, 1, None));
    q.apply_state(s, T0).unwrap();
    assert_eq!(q.gate(T0), Err(Blocked::Slots { kind: "image".into(), free: 0, needed: 1, limit: 4 }));
}

#[test]
fn with_the_option_busy_slots_queue_and_the_button_says_so() {
    let q = with_queue(full(1));
    assert_eq!(q.gate(T0), Ok(Gate::Queue { ahead: 0 }));
    let v = q.view(T0, &PlainFmt);
    assert!(v.enabled && v.queues);
    assert_eq!(v.blocked, None);
    assert_eq!(v.reason, "Queue · starts when a slot frees, 0 ahead");
    // Free slots start as always, with nothing to say.
    let q = with_queue(state(1));
    assert_eq!(q.gate(T0), Ok(Gate::Start));
    let v = q.view(T0, &PlainFmt);
    assert!(v.enabled && !v.queues);
    assert_eq!(v.reason, "");
}

#[test]
fn a_waiting_hold_reserves_units_holds_no_slot_and_counts_as_ahead() {
    let mut q = with_queue(full(1));
    q.set_request("image", 2);
    let h = q.begin_submit("r1".into(), T0).unwrap();
    assert!(h.waits());
    assert_eq!((h.slots, h.cost), (0, units(4)));
    assert_eq!(q.held_units(), units(4));
    // 100 remaining, 8 reserved by the running task, 4 held by the waiting one.
    assert_eq!(q.available_units(), Some(units(88)));
    assert_eq!(q.remaining_units(), Some(units(100)), "a queued request moves no remaining unit (R3)");
    assert_eq!(q.view(T0, &PlainFmt).meters[0].held, 0, "it holds no slot");
    // The next one waits behind it.
    assert_eq!(q.gate(T0), Ok(Gate::Queue { ahead: 1 }));
    assert_eq!(q.view(T0, &PlainFmt).reason, "Queue · starts when a slot frees, 1 ahead");
}

#[test]
fn requests_the_server_shows_waiting_are_ahead_and_close_the_kind() {
    let mut s = state(1);
    s.queued = vec![queued("q1", 1, 2, 1, None), queued("q2", 1, 2, 2, None)];
    let q = with_queue(s);
    // Every slot is free, yet two wait: a new request waits behind them.
    assert_eq!(q.gate(T0), Ok(Gate::Queue { ahead: 2 }));
    assert_eq!(q.view(T0, &PlainFmt).reason, "Queue · starts when a slot frees, 2 ahead");
    // And their units are reserved (R2).
    assert_eq!(q.available_units(), Some(units(96)));
}

#[test]
fn a_queue_never_promises_what_the_units_cannot_pay() {
    let mut s = full(1);
    s.packages[0].remaining = units(10);
    let mut q = with_queue(s);
    q.set_request("image", 2);
    assert_eq!(q.gate(T0), Err(Blocked::Units { available: units(2), cost: units(4) }));
    // Nor a request larger than the limit, which waiting would never start.
    let mut q = with_queue(full(2));
    q.set_request("image", 5);
    let v = q.view(T0, &PlainFmt);
    assert!(!v.enabled);
    assert_eq!(v.reason, "This request needs 5 image slots; the limit is 4.");
}

#[test]
fn a_queued_request_is_listed_with_its_place_and_a_cancel_control() {
    let mut q = with_queue(full(1));
    q.begin_submit("r1".into(), T0).unwrap();
    let mut s = full(2);
    s.queued = vec![queued("q0", 1, 2, 1, None), queued("q1", 1, 2, 2, Some("r1"))];
    q.apply_state(s, T0 + 10).unwrap();
    assert!(q.holds().is_empty(), "the state shows the request: its hold ends");
    let v = q.view(T0 + 10, &PlainFmt);
    let rows: Vec<_> = v.attempts.iter().filter(|a| a.status == AttemptStatus::Queued).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].key.as_str(), rows[0].task_id.as_deref()), ("q0", Some("q0")));
    assert_eq!((rows[1].key.as_str(), rows[1].task_id.as_deref()), ("r1", Some("q1")));
    assert_eq!(rows[1].text, "Image ×1 · queued, place 2 · 2 units reserved");
    assert_eq!(rows[1].cancel_label, "Cancel the queued request: Image ×1, place 2");
    // Other rows have no cancel control.
    let running = v.attempts.iter().find(|a| a.status == AttemptStatus::Running).unwrap();
    assert_eq!((running.task_id.as_deref(), running.cancel_label.as_str()), (None, ""));
    // The note under the headline counts what queued requests reserve.
    let u = v.units.unwrap();
    assert_eq!(u.remaining_text, "100 units remaining");
    assert_eq!(u.detail_text, "Running and queued requests hold 12 · 88 can be spent now");
}

#[test]
fn every_queued_request_is_listed_past_the_attempt_limit() {
    let mut s = full(1);
    s.queued = (1..=12).map(|i| queued(&format!("q{i}"), 1, 2, i, None)).collect();
    let q = with_queue(s);
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.attempts.iter().filter(|a| a.status == AttemptStatus::Queued).count(), 12);
}

#[test]
fn remaining_units_move_only_on_a_success() {
    let mut q = with_queue(full(1));
    q.begin_submit("r1".into(), T0).unwrap();
    let remaining = |q: &Quota| q.view(T0, &PlainFmt).units.unwrap().remaining_text.clone();
    assert_eq!(remaining(&q), "100 units remaining");
    // Queued on the server.
    let mut s = full(2);
    s.queued = vec![queued("q1", 1, 2, 1, Some("r1"))];
    q.apply_state(s.clone(), T0).unwrap();
    assert_eq!(remaining(&q), "100 units remaining");
    // Started, then failed: nothing charged.
    let mut s3 = state(3);
    s3.pools[0].in_use = 1;
    s3.running.push(running("q1", "image", 1, 2, Some("r1")));
    q.apply_state(s3, T0).unwrap();
    assert_eq!(remaining(&q), "100 units remaining");
    let mut s4 = state(4);
    s4.finished.push(finished("q1", "image", Outcome::Failed, 0, Some("r1")));
    q.apply_state(s4, T0).unwrap();
    assert_eq!(remaining(&q), "100 units remaining");
    // Cancelled while queued: shown as refused, nothing charged.
    let mut s5 = full(5);
    s5.finished.push(finished("q2", "image", Outcome::Refused, 0, Some("r2")));
    q.apply_state(s5, T0).unwrap();
    assert_eq!(remaining(&q), "100 units remaining");
    assert!(q.view(T0, &PlainFmt).attempts.iter().all(|a| a.charged == Units::ZERO));
}

#[test]
fn a_followers_ask_carries_the_queue_and_the_leader_judges_it() {
    let mut leader = Quota::new(Config::default());
    let mut lt = Tabs::new("L".into(), TabConfig::default(), true);
    let settled = T0 - TabConfig::default().settle_ms;
    lt.lead(&mut leader, settled);
    lt.server_link(&mut leader, Link::Live, T0);
    let read = |text: &str| -> Result<ServerState, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        quota_widget::core::parse::read_state(&J(v)).map_err(|e| e.to_string())
    };
    lt.server_state(&mut leader, &serde_json::to_string(&full(1)).unwrap(), T0, &read);
    let ask = |queue: bool| {
        let m = TabMsg::Ask { from: "F".into(), id: format!("r-{queue}"), kind: "image".into(), count: 1, queue };
        serde_json::to_value(&m).unwrap()
    };
    // Without the queue, the busy slots refuse it.
    let out = lt.receive(&mut leader, &J(ask(false)), T0, &read, &PlainFmt);
    assert!(out.iter().any(|c| matches!(c, TabCmd::Post(TabMsg::Denied { .. }))), "{out:?}");
    // With it, the leader grants a hold that waits: no slot, its units.
    let out = lt.receive(&mut leader, &J(ask(true)), T0, &read, &PlainFmt);
    let granted: Vec<_> =
        out.iter().filter_map(|c| if let TabCmd::Post(TabMsg::Grant { hold, .. }) = c { Some(hold.clone()) } else { None }).collect();
    assert_eq!(granted.len(), 1, "{out:?}");
    assert_eq!((granted[0].slots, granted[0].cost), (0, units(2)));
    // The leader's own request is left as it was: no queue.
    assert!(!leader.queue());
}
