//! The queue's rules (R8), case by case, on the host: what a new request
//! gets (start, queue, refusal and why), in what order waiting requests
//! start, and what a success, a failure and a cancel charge.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::queue::*;
use quota_widget::core::wire::*;

/// image: 4 slots, 2 units an image, a slot per image; video: 1 slot, 10
/// units, a slot per task. Packages of `packages` whole units, spent in
/// that order.
fn book(packages: &[u64], max_waiting: u32) -> Book<&'static str> {
    let pools = state(1).pools;
    Book::new(pools, packages.iter().map(|&n| units(n)).collect(), max_waiting)
}

fn waiting_ids(b: &Book<&'static str>) -> Vec<&'static str> {
    b.waiting().iter().map(|w| w.id).collect()
}

fn running_ids(b: &Book<&'static str>) -> Vec<&'static str> {
    b.running().iter().map(|t| t.id).collect()
}

fn in_use(b: &Book<&'static str>, kind: &str) -> u32 {
    b.pools().iter().find(|p| p.kind == kind).unwrap().in_use
}

fn available(b: &Book<&'static str>) -> Units {
    let f = b.figures();
    f.spendable.saturating_sub(f.reserved())
}

#[test]
fn a_request_that_fits_starts_whether_or_not_it_may_queue() {
    let mut b = book(&[100], 5);
    assert_eq!(b.submit("a", "image", 3, false), Admission::Start { slots: 3, cost: units(6) });
    assert_eq!(b.submit("b", "image", 1, true), Admission::Start { slots: 1, cost: units(2) });
    assert_eq!(running_ids(&b), ["a", "b"]);
    assert_eq!(in_use(&b, "image"), 4);
    assert!(b.waiting().is_empty());
    assert_eq!(available(&b), units(92));
}

#[test]
fn busy_slots_refuse_a_request_without_queue_and_reserve_nothing() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 3, false);
    assert_eq!(b.submit("b", "image", 2, false), Admission::Refuse(Refusal::Slots { free: 1, needed: 2, waiting: 0 }));
    assert_eq!(running_ids(&b), ["a"]);
    assert!(b.waiting().is_empty());
    assert_eq!(available(&b), units(94));
}

#[test]
fn a_queued_request_reserves_its_units_at_once_and_holds_no_slot() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 4, false);
    assert_eq!(b.submit("b", "image", 2, true), Admission::Queue { slots: 2, cost: units(4), ahead: 0 });
    assert_eq!(waiting_ids(&b), ["b"]);
    assert_eq!(in_use(&b, "image"), 4, "a waiting request holds no slot");
    assert_eq!(b.figures().reserved(), units(12));
    assert_eq!(available(&b), units(88));
    // The packages are untouched: reserving is not deducting (R3).
    assert_eq!(b.packages(), [units(100)]);
}

#[test]
fn queued_reservations_count_against_the_units_of_every_later_request() {
    // 20 units: 8 running, 8 waiting, 4 left.
    let mut b = book(&[20], 5);
    b.submit("a", "image", 4, false);
    b.submit("b", "image", 4, true);
    assert_eq!(available(&b), units(4));
    assert_eq!(
        b.submit("c", "image", 3, true),
        Admission::Refuse(Refusal::Units { available: units(4), cost: units(6) })
    );
    // A video fits its own free slot but not the units the queue holds.
    assert_eq!(
        b.submit("v", "video", 1, false),
        Admission::Refuse(Refusal::Units { available: units(4), cost: units(10) })
    );
    assert_eq!(b.submit("d", "image", 2, true), Admission::Queue { slots: 2, cost: units(4), ahead: 1 });
    assert_eq!(available(&b), Units::ZERO);
    assert_eq!(waiting_ids(&b), ["b", "d"]);
}

#[test]
fn past_the_longest_queue_a_request_is_refused_with_the_maximum() {
    let mut b = book(&[1000], 2);
    b.submit("a", "image", 4, false);
    b.submit("v", "video", 1, false);
    assert!(matches!(b.submit("b", "image", 1, true), Admission::Queue { .. }));
    assert!(matches!(b.submit("w", "video", 1, true), Admission::Queue { .. }));
    // The bound is per account: every kind counts.
    assert_eq!(b.submit("c", "image", 1, true), Admission::Refuse(Refusal::QueueFull { max: 2 }));
    assert_eq!(b.submit("x", "video", 1, true), Admission::Refuse(Refusal::QueueFull { max: 2 }));
    assert_eq!(waiting_ids(&b), ["b", "w"]);
    assert_eq!(b.figures().reserved(), units(8 + 10 + 2 + 10));
}

#[test]
fn with_no_queue_allowed_every_busy_request_is_refused() {
    let mut b = book(&[1000], 0);
    b.submit("a", "image", 4, false);
    assert_eq!(b.submit("b", "image", 1, true), Admission::Refuse(Refusal::QueueFull { max: 0 }));
}

#[test]
fn a_newcomer_never_overtakes_a_waiting_request_of_its_kind() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 3, false);
    // Needs 2, one is free: it waits.
    assert_eq!(b.submit("b", "image", 2, true), Admission::Queue { slots: 2, cost: units(4), ahead: 0 });
    // One slot is free and this needs one, but "b" came first.
    assert_eq!(b.submit("c", "image", 1, true), Admission::Queue { slots: 1, cost: units(2), ahead: 1 });
    assert_eq!(b.submit("d", "image", 1, false), Admission::Refuse(Refusal::Slots { free: 0, needed: 1, waiting: 2 }));
    assert_eq!(running_ids(&b), ["a"]);
    // Another kind is not held up.
    assert_eq!(b.submit("v", "video", 1, true), Admission::Start { slots: 1, cost: units(10) });
}

#[test]
fn freed_slots_start_waiting_requests_in_order_within_the_limit() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 2, false);
    b.submit("b", "image", 2, false);
    for (id, n) in [("c", 2), ("d", 1), ("e", 2)] {
        assert!(matches!(b.submit(id, "image", n, true), Admission::Queue { .. }));
    }
    let f = b.figures();
    assert_eq!([f.ahead(&"c"), f.ahead(&"d"), f.ahead(&"e"), f.ahead(&"a")], [Some(0), Some(1), Some(2), None]);

    // Two slots free: "c" takes both; "d" waits although nothing is left.
    let ended = b.finish(&"a", false).unwrap();
    assert_eq!(ended.starts, Starts { start: vec!["c"], refuse: vec![] });
    assert_eq!(running_ids(&b), ["b", "c"]);
    assert_eq!(in_use(&b, "image"), 4);

    // Two more: "d" takes one, and "e" (two) waits for the next.
    let ended = b.finish(&"b", true).unwrap();
    assert_eq!(ended.starts.start, ["d"]);
    assert_eq!(waiting_ids(&b), ["e"]);
    assert_eq!(in_use(&b, "image"), 3);
    assert_eq!(b.figures().ahead(&"e"), Some(0));

    let ended = b.finish(&"c", true).unwrap();
    assert_eq!(ended.starts.start, ["e"]);
    assert!(b.waiting().is_empty());
    assert_eq!(in_use(&b, "image"), 3);
}

#[test]
fn a_small_request_behind_a_large_one_waits_even_when_it_would_fit() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 4, false);
    b.submit("big", "image", 4, true);
    b.submit("small", "image", 1, true);
    b.submit("a2", "video", 1, false);
    // A video ends: no image slot frees, nothing starts.
    assert!(b.finish(&"a2", true).unwrap().starts.is_empty());
    assert_eq!(waiting_ids(&b), ["big", "small"]);
    let ended = b.finish(&"a", false).unwrap();
    assert_eq!(ended.starts.start, ["big"]);
    assert_eq!(waiting_ids(&b), ["small"]);
}

#[test]
fn a_success_pays_its_reservation_earliest_package_first() {
    let mut b = book(&[5, 100], 5);
    b.submit("a", "image", 4, false);
    b.submit("b", "image", 3, true);
    let ended = b.finish(&"a", true).unwrap();
    assert_eq!((ended.charged, ended.released), (units(8), units(8)));
    assert_eq!(b.packages(), [Units::ZERO, units(97)]);
    assert_eq!(ended.starts.start, ["b"]);
    // Starting moved its reservation from the queue to the running task:
    // nothing was charged for it yet.
    assert_eq!(b.figures().reserved(), units(6));
    assert_eq!(b.packages(), [Units::ZERO, units(97)]);
}

#[test]
fn a_failure_charges_nothing_and_releases_its_units() {
    let mut b = book(&[20], 5);
    b.submit("a", "image", 4, false);
    b.submit("b", "image", 4, true);
    let ended = b.finish(&"a", false).unwrap();
    assert_eq!((ended.charged, ended.released), (Units::ZERO, units(8)));
    assert_eq!(b.packages(), [units(20)]);
    // The request that started from the queue fails too: still nothing.
    let ended = b.finish(&"b", false).unwrap();
    assert_eq!(ended.charged, Units::ZERO);
    assert_eq!(b.packages(), [units(20)]);
    assert_eq!(available(&b), units(20));
    // A video, one slot whatever its count, fails: nothing either.
    b.submit("v", "video", 1, false);
    assert_eq!(b.finish(&"v", false).unwrap().charged, Units::ZERO);
    assert_eq!(b.packages(), [units(20)]);
}

#[test]
fn a_cancel_releases_the_units_charges_nothing_and_lets_the_next_start() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 3, false);
    b.submit("big", "image", 2, true);
    b.submit("small", "image", 1, true);
    assert_eq!(available(&b), units(100 - 6 - 4 - 2));
    let ended = b.cancel(&"big").unwrap();
    assert_eq!((ended.charged, ended.released), (Units::ZERO, units(4)));
    // "small" was held up only by "big": the free slot is its now.
    assert_eq!(ended.starts.start, ["small"]);
    assert_eq!(b.packages(), [units(100)]);
    assert_eq!(available(&b), units(100 - 6 - 2));
    // Only a waiting request can be cancelled, and only once.
    assert_eq!(b.cancel(&"big"), None);
    assert_eq!(b.cancel(&"a"), None);
    assert_eq!(running_ids(&b), ["a", "small"]);
}

#[test]
fn a_request_larger_than_the_limit_is_never_queued() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 1, false);
    assert_eq!(b.submit("b", "image", 5, true), Admission::Refuse(Refusal::OverLimit { needed: 5, limit: 4 }));
    assert_eq!(b.submit("c", "image", 5, false), Admission::Refuse(Refusal::Slots { free: 3, needed: 5, waiting: 0 }));
    // A video holds one slot whatever its count.
    b.submit("v", "video", 1, false);
    assert_eq!(b.submit("w", "video", 3, true), Admission::Queue { slots: 1, cost: units(30), ahead: 0 });
}

#[test]
fn an_unknown_kind_is_refused() {
    let mut b = book(&[100], 5);
    assert_eq!(b.submit("a", "audio", 1, true), Admission::Refuse(Refusal::UnknownKind));
    assert!(b.running().is_empty() && b.waiting().is_empty());
}

#[test]
fn a_raised_limit_starts_waiting_requests_and_a_lowered_one_refuses_those_that_never_fit() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 4, false);
    b.submit("b", "image", 3, true);
    b.submit("c", "image", 1, true);
    b.submit("d", "image", 2, true);
    // The plan now allows 2: "b" (3) can never start, and no longer holds
    // up the others; nothing is free yet.
    let s = b.set_limit("image", 2);
    assert_eq!(s, Starts { start: vec![], refuse: vec!["b"] });
    assert_eq!(waiting_ids(&b), ["c", "d"]);
    assert_eq!(available(&b), units(100 - 8 - 2 - 4));
    // Raised to 7: the running 4 stay, and 3 more start in order.
    let s = b.set_limit("image", 7);
    assert_eq!(s.start, ["c", "d"]);
    assert_eq!(in_use(&b, "image"), 7);
}

#[test]
fn a_store_decides_from_the_rows_it_loaded() {
    // What a transaction reads: pools with the running slots, the spendable
    // sum, the running reservations, the waiting rows with their ids.
    let mut pools = state(1).pools;
    pools[0].in_use = 3;
    let waiting = vec![
        Waiting { id: 7_i64, kind: "image".into(), slots: 2, cost: units(4) },
        Waiting { id: 9, kind: "video".into(), slots: 1, cost: units(10) },
        Waiting { id: 11, kind: "image".into(), slots: 1, cost: units(2) },
        Waiting { id: 12, kind: "audio".into(), slots: 1, cost: units(1) },
    ];
    let f = Figures { pools: &pools, spendable: units(50), running_reserved: units(16), waiting: &waiting, held: &[] };
    assert_eq!(f.reserved(), units(33));
    assert_eq!(f.waiting_of("image"), 2);
    assert_eq!(f.ahead(&11), Some(1));
    assert_eq!(f.ahead(&9), Some(0));
    assert_eq!(f.ahead(&8), None);
    // Image: one slot free, "7" needs two, so neither image starts; the
    // video slot is free; the audio pool is gone.
    assert_eq!(f.starts(), Starts { start: vec![9], refuse: vec![12] });
    assert_eq!(f.admit("image", 1, true, 10), Admission::Queue { slots: 1, cost: units(2), ahead: 2 });
    assert_eq!(f.admit("image", 1, true, 4), Admission::Refuse(Refusal::QueueFull { max: 4 }));
    assert_eq!(f.admit("image", 9, true, 10), Admission::Refuse(Refusal::OverLimit { needed: 9, limit: 4 }));
    assert_eq!(
        f.admit("video", 2, true, 10),
        Admission::Refuse(Refusal::Units { available: units(17), cost: units(20) })
    );
    assert_eq!(f.admit("image", 4, true, 10), Admission::Queue { slots: 4, cost: units(8), ahead: 2 });
    // A slot frees in the same transaction: "7" and then "11" start.
    pools[0].in_use = 1;
    let f = Figures { pools: &pools, spendable: units(50), running_reserved: units(16), waiting: &waiting, held: &[] };
    assert_eq!(f.starts().start, [7, 9, 11]);
}

#[test]
fn a_limit_lowered_below_the_slots_in_use_frees_none() {
    let mut pools = state(1).pools;
    pools[0].limit = 1;
    pools[0].in_use = 3;
    let waiting = vec![Waiting { id: 1, kind: "image".into(), slots: 1, cost: units(2) }];
    let f = Figures { pools: &pools, spendable: units(50), running_reserved: Units::ZERO, waiting: &waiting, held: &[] };
    assert!(f.starts().is_empty());
    assert_eq!(f.admit("image", 1, false, 10), Admission::Refuse(Refusal::Slots { free: 0, needed: 1, waiting: 1 }));
}

#[test]
fn a_held_kind_starts_nothing_and_queues_newcomers_until_released() {
    let mut b = book(&[100], 5);
    b.hold("image");
    // Every image slot is free, yet none is for a newcomer while held.
    assert_eq!(b.submit("a", "image", 1, false), Admission::Refuse(Refusal::Slots { free: 0, needed: 1, waiting: 0 }));
    assert_eq!(b.submit("b", "image", 2, true), Admission::Queue { slots: 2, cost: units(4), ahead: 0 });
    assert_eq!(b.submit("c", "image", 1, true), Admission::Queue { slots: 1, cost: units(2), ahead: 1 });
    // Another kind is not held up.
    assert_eq!(b.submit("v", "video", 1, true), Admission::Start { slots: 1, cost: units(10) });
    // A task ending frees nothing for a held kind.
    assert!(b.finish(&"v", true).unwrap().starts.is_empty());
    assert_eq!(waiting_ids(&b), ["b", "c"]);
    let s = b.release("image");
    assert_eq!(s.start, ["b", "c"]);
    assert!(b.held().is_empty());
    assert_eq!(in_use(&b, "image"), 3);
}

#[test]
fn a_request_put_back_waits_again_ahead_of_those_that_came_after_it() {
    let mut b = book(&[100], 5);
    b.submit("a", "image", 2, true);
    b.submit("b", "image", 2, true);
    b.submit("c", "image", 1, true);
    b.submit("d", "image", 1, true);
    assert_eq!(running_ids(&b), ["a", "b"]);
    assert_eq!(waiting_ids(&b), ["c", "d"]);
    let before = b.figures().reserved();
    // The service says 1303 for "b": it goes back ahead of "c" and "d",
    // which came after it, and its kind is held.
    let s = b.put_back(&"b").unwrap();
    assert!(s.is_empty(), "nothing of a held kind starts: {s:?}");
    assert_eq!(waiting_ids(&b), ["b", "c", "d"]);
    assert_eq!(in_use(&b, "image"), 2);
    assert_eq!(b.figures().reserved(), before, "its units stay reserved");
    assert_eq!(b.packages(), [units(100)], "nothing charged");
    assert_eq!(b.figures().ahead(&"b"), Some(0));
    // Then "a" too: it came first, so it is the head again.
    b.put_back(&"a").unwrap();
    assert_eq!(waiting_ids(&b), ["a", "b", "c", "d"]);
    assert_eq!(b.put_back(&"a"), None, "only a running task can be put back");
    // The backoff passes: they start in arrival order, within the limit.
    let s = b.release("image");
    assert_eq!(s.start, ["a", "b"]);
    assert_eq!(waiting_ids(&b), ["c", "d"]);
}

#[test]
fn holds_last_until_their_time() {
    let holds = [("image", 1_000), ("video", 999)];
    assert_eq!(held_kinds(holds, 999), ["image"]);
    assert!(held_kinds(holds, 1_000).is_empty());
}

#[test]
fn places_count_within_each_kind() {
    let w = |id: i64, kind: &str| Waiting { id, kind: kind.into(), slots: 1, cost: units(1) };
    assert_eq!(places(&[w(1, "image"), w(2, "video"), w(3, "image"), w(4, "image")]), [1, 1, 2, 3]);
    assert!(places::<i64>(&[]).is_empty());
}

/// A request waiting on the server, as the state lists it.
fn waiting(id: &str, kind: &str, count: u32, reserved: u64, place: u32) -> QueuedRequest {
    QueuedRequest {
        id: id.into(),
        kind: kind.into(),
        count,
        reserved_units: units(reserved),
        place,
        client_request_id: None,
        queued_at_ms: T0,
    }
}

/// The widget's gate reads the same figures as the server's queue: waiting
/// requests reserve their units (R2) and close their kind to a request that
/// does not queue; the remaining units never move for them (R3).
#[test]
fn the_widgets_gate_counts_the_servers_queue() {
    use quota_widget::core::{Blocked, Config, Link, Quota, SubmitError};
    let mut q = Quota::new(Config::default());
    q.set_link(Link::Live);
    let mut s = state(1);
    s.pools[0].in_use = 4; // every image slot busy
    s.running = (0..4).map(|i| running(&format!("t{i}"), "image", 1, 2, None)).collect();
    q.apply_state(s.clone(), T0).unwrap();
    let (remaining, available) = (q.remaining_units().unwrap(), q.available_units().unwrap());
    assert_eq!((remaining, available), (units(100), units(92)));

    // Two image requests wait: 6 units set aside, none deducted.
    s.revision = 2;
    s.queued = vec![waiting("q1", "image", 1, 2, 1), waiting("q2", "image", 2, 4, 2)];
    q.apply_state(s.clone(), T0).unwrap();
    assert_eq!(q.remaining_units(), Some(units(100)), "the headline does not move (R3)");
    assert_eq!(q.reserved_units(), Some(units(14)));
    assert_eq!(q.available_units(), Some(units(86)));
    let mut viewer = quota_widget::core::Viewer::new(quota_widget::core::PlainFmt);
    let vm = viewer.view(&q, T0);
    let u = vm.units.as_ref().unwrap();
    assert_eq!(u.remaining_text, "100 units remaining");
    assert_eq!(u.detail_text, "Running and queued requests hold 14 · 86 can be spent now");

    // A slot frees while they still wait: a request that does not queue
    // finds the kind closed, as the server would refuse it.
    s.revision = 3;
    s.pools[0].in_use = 3;
    s.running.pop();
    q.apply_state(s.clone(), T0).unwrap();
    assert_eq!(q.free_slots("image"), Some(0));
    assert!(matches!(q.begin_submit("r1".into(), T0), Err(SubmitError::Blocked(Blocked::Slots { .. }))));
    // Another kind is open.
    q.set_request("video", 1);
    assert!(q.begin_submit("r2".into(), T0).is_ok());

    // The queue empties: the kind opens again.
    s.revision = 4;
    s.queued.clear();
    q.apply_state(s, T0).unwrap();
    assert_eq!(q.free_slots("image"), Some(1));
}

#[test]
fn the_services_1303_puts_back_only_a_request_sent_with_queue() {
    use quota_widget::core::queue::{after_busy, AfterBusy};
    assert_eq!(after_busy(true), AfterBusy::Wait);
    assert_eq!(after_busy(false), AfterBusy::Refuse);
}
