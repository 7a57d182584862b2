//! The quota rules, case by case, on the host.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::wire::*;
use quota_widget::core::*;

fn quota() -> Quota {
    Quota::new(Config::default())
}

fn live(revision: u64) -> Quota {
    let mut q = quota();
    q.apply_state(state(revision), T0).unwrap();
    q
}

#[test]
fn no_state_blocks_submit_with_a_reason() {
    let q = quota();
    let v = q.view(T0, &PlainFmt);
    assert!(!v.enabled);
    assert_eq!(v.blocked, Some(Blocked::NoState));
    assert_eq!(v.reason, "Waiting for the quota figures from the server.");
    assert!(v.units.is_none());
}

#[test]
fn open_gate_shows_units_meters_and_cost() {
    let mut q = live(1);
    q.set_request("image", 3);
    let v = q.view(T0, &PlainFmt);
    assert!(v.enabled, "{}", v.reason);
    assert_eq!(v.reason, "");
    let u = v.units.unwrap();
    assert_eq!((u.remaining, u.reserved, u.held, u.available), (units(100), units(0), units(0), units(100)));
    assert_eq!(u.remaining_text, "100 units remaining");
    assert_eq!(v.cost.unwrap().text, "This request: 6 units · 2 per image · 94 left after");
    assert_eq!(v.meters[0].text, "0 of 4 in use");
    assert_eq!(v.meters[0].label, "Image generation slots");
}

#[test]
fn r1_slots_in_use_plus_request_over_limit_blocks() {
    let mut q = quota();
    let mut s = state(1);
    s.pools[0].in_use = 3;
    s.running.push(running("t1", "image", 3, 6, None));
    q.apply_state(s, T0).unwrap();
    q.set_request("image", 2);
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.blocked, Some(Blocked::Slots { kind: "image".into(), free: 1, needed: 2, limit: 4 }));
    assert_eq!(v.reason, "All image slots are busy: 1 of 4 free, this request needs 2.");
    q.set_request("image", 1);
    assert!(q.view(T0, &PlainFmt).enabled);
}

#[test]
fn r1_request_larger_than_the_limit_says_so() {
    let mut q = live(1);
    q.set_request("image", 5);
    assert_eq!(q.view(T0, &PlainFmt).reason, "This request needs 5 image slots; the limit is 4.");
}

#[test]
fn r1_video_holds_one_slot_per_task() {
    let mut q = live(1);
    q.set_request("video", 1);
    q.begin_submit("v1".into(), T0).unwrap();
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.blocked, Some(Blocked::Slots { kind: "video".into(), free: 0, needed: 1, limit: 1 }));
}

#[test]
fn r2_units_reserved_by_running_tasks_are_not_available() {
    let mut q = quota();
    let mut s = state(1);
    s.pools[1].in_use = 0;
    s.packages[0].remaining = units(30);
    s.running.push(running("t1", "image", 1, 25, None));
    s.pools[0].in_use = 1;
    q.apply_state(s, T0).unwrap();
    q.set_request("image", 3); // costs 6, 5 available
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.blocked, Some(Blocked::Units { available: units(5), cost: units(6) }));
    assert_eq!(v.reason, "Not enough units: this request uses 6, 5 can be spent.");
    let u = v.units.unwrap();
    assert_eq!(u.remaining, units(30), "reservations do not move the remaining figure");
    assert_eq!(u.detail_text, "Running tasks hold 25 · 5 can be spent now");
    assert_eq!(v.cost.unwrap().text, "This request: 6 units · 2 per image · more than the 5 that can be spent");
}

#[test]
fn r2_only_active_effective_unexpired_packages_count() {
    let mut q = quota();
    let mut s = state(1);
    let mut pending = package("p2", 50, 50, 40);
    pending.status = PackageStatus::Pending;
    pending.effective_at_ms = T0 + DAY;
    let mut expired = package("p3", 70, 70, -1);
    expired.status = PackageStatus::Active; // the server's status lags: the clock decides
    s.packages.push(pending);
    s.packages.push(expired);
    q.apply_state(s, T0).unwrap();
    assert_eq!(q.remaining_units(), Some(units(100)));
}

#[test]
fn r3_a_hold_never_moves_remaining_and_a_refusal_releases_it() {
    let mut q = live(1);
    q.set_request("image", 2);
    let before = q.view(T0, &PlainFmt).units.unwrap();
    let hold = q.begin_submit("r1".into(), T0).unwrap();
    assert_eq!((hold.slots, hold.cost), (2, units(4)));
    let during = q.view(T0 + 10, &PlainFmt);
    let u = during.units.clone().unwrap();
    assert_eq!(u.remaining_text, before.remaining_text);
    assert_eq!((u.held, u.available), (units(4), units(96)));
    assert_eq!(during.meters[0].text, "0 of 4 in use, 2 being submitted");
    assert_eq!(during.attempts[0].text, "Image ×2 · sending, 4 units held");
    assert!(q.end_hold("r1", HoldEnd::Refused, Some("parallel task over resource pack limit".into()), T0 + 20));
    let after = q.view(T0 + 20, &PlainFmt);
    assert_eq!(after.units.unwrap(), before);
    assert_eq!(after.attempts[0].status, AttemptStatus::Refused);
    assert_eq!(after.attempts[0].text, "Image ×2 · refused, not charged: parallel task over resource pack limit · 11:06");
    assert_eq!(q.take_announcements(&PlainFmt), vec!["Request refused. No units were charged.".to_owned()]);
}

#[test]
fn r3_a_failed_task_shown_by_the_server_is_not_charged() {
    let mut q = live(1);
    q.set_request("image", 1);
    q.begin_submit("c1".into(), T0).unwrap();
    let mut s2 = state(2);
    s2.pools[0].in_use = 1;
    s2.running.push(running("t1", "image", 1, 2, Some("c1")));
    q.apply_state(s2, T0 + 5).unwrap();
    assert!(q.holds().is_empty(), "the server's state confirmed the hold");
    let v = q.view(T0 + 5, &PlainFmt);
    assert_eq!(v.units.as_ref().unwrap().remaining, units(100));
    assert_eq!(v.units.as_ref().unwrap().reserved, units(2));
    assert_eq!(v.attempts[0].status, AttemptStatus::Running);
    let mut s3 = state(3);
    s3.finished.push(finished("t1", "image", Outcome::Failed, 0, Some("c1")));
    q.apply_state(s3, T0 + 9).unwrap();
    let v = q.view(T0 + 9, &PlainFmt);
    assert_eq!(v.units.unwrap().remaining_text, "100 units remaining");
    assert_eq!(v.attempts[0].text, "Image ×1 · failed, not charged: content moderation · 11:06");
    assert!(q.take_announcements(&PlainFmt).contains(&"Generation failed. No units were charged.".to_owned()));
}

#[test]
fn r3_a_success_deducts_only_what_the_server_deducted() {
    let mut q = live(1);
    let mut s = state(2);
    s.packages[0].remaining = units(92);
    s.finished.push(finished("t1", "image", Outcome::Succeeded, 8, None));
    q.apply_state(s, T0).unwrap();
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.units.unwrap().remaining, units(92));
    assert_eq!(v.attempts[0].text, "Image ×1 · done, 8 units charged · 11:06");
}

#[test]
fn r4_older_revisions_are_ignored_and_duplicates_are_no_ops() {
    let mut q = live(5);
    let mut old = state(4);
    old.packages[0].remaining = units(1);
    assert_eq!(q.apply_state(old, T0 + 1).unwrap(), machine::Applied::Older);
    assert_eq!(q.remaining_units(), Some(units(100)));
    let before = q.view(T0 + 2, &PlainFmt);
    let mut dup = state(5);
    dup.packages[0].remaining = units(3);
    assert_eq!(q.apply_state(dup, T0 + 2).unwrap(), machine::Applied::Duplicate);
    assert_eq!(q.view(T0 + 2, &PlainFmt), before);
    assert_eq!(q.revision(), Some(5));
}

#[test]
fn the_age_of_package_figures_read_from_a_service_is_shown_and_grows() {
    // A server that mirrors an upstream service read its packages two
    // minutes before this state; a minute later they are three minutes old.
    let mut s = state(1);
    s.packages_synced_at_ms = Some(s.server_time_ms - 120_000);
    let mut q = quota();
    q.apply_state(s, T0).unwrap();
    assert_eq!(q.packages_age(T0 + 60_000), Some(180_000));
    let v = q.view(T0 + 60_000, &PlainFmt);
    assert!(v.freshness.ends_with(" · package figures from the service, 3 min ago"), "{}", v.freshness);
    // A ping confirms the state but not the package figures: they age on.
    q.confirm_current(T0 + 3_600_000);
    assert_eq!(q.packages_age(T0 + 3_600_000), Some(3_720_000));
    // A server with packages of its own says nothing of them.
    let q = live(1);
    assert_eq!(q.packages_age(T0), None);
    assert!(!q.view(T0, &PlainFmt).freshness.contains("package"));
}

#[test]
fn r5_stale_state_and_a_lost_link_block_submit() {
    let mut q = live(1);
    let limit = q.config().stale_after_ms;
    assert!(q.view(T0 + limit, &PlainFmt).enabled);
    let v = q.view(T0 + limit + 1, &PlainFmt);
    assert_eq!(v.blocked, Some(Blocked::Stale { age_ms: limit + 1 }));
    assert_eq!(v.reason, "Quota figures are out of date (updated 30 s ago).");
    assert!(v.stale);
    q.confirm_current(T0 + limit + 1);
    assert!(q.view(T0 + limit + 2, &PlainFmt).enabled, "a ping renews freshness");
    q.set_link(Link::Reconnecting { attempt: 1 });
    let v = q.view(T0 + limit + 2, &PlainFmt);
    assert_eq!(v.reason, "Connection lost. Reconnecting to the quota server.");
    assert!(v.freshness.starts_with("Reconnecting… · last updated"));
    assert!(q.begin_submit("x".into(), T0 + limit + 2).is_err());
    q.set_link(Link::Live);
    assert!(q.view(T0 + limit + 2, &PlainFmt).enabled);
}

#[test]
fn r7_a_second_click_cannot_take_more_slots_than_are_free() {
    let mut q = live(1);
    q.set_request("image", 3);
    q.begin_submit("a".into(), T0).unwrap();
    let second = q.begin_submit("b".into(), T0);
    assert_eq!(
        second,
        Err(SubmitError::Blocked(Blocked::Slots { kind: "image".into(), free: 1, needed: 3, limit: 4 }))
    );
    q.set_request("image", 1);
    q.begin_submit("c".into(), T0).unwrap();
    assert!(q.begin_submit("d".into(), T0).is_err());
    assert_eq!(q.free_slots("image"), Some(0));
}

#[test]
fn duplicate_request_ids_are_refused() {
    let mut q = live(1);
    q.begin_submit("a".into(), T0).unwrap();
    assert_eq!(q.begin_submit("a".into(), T0), Err(SubmitError::DuplicateId("a".into())));
}

#[test]
fn holds_time_out_and_say_so() {
    let mut q = live(1);
    q.begin_submit("a".into(), T0).unwrap();
    let deadline = q.next_deadline().unwrap();
    q.tick(deadline - 1);
    assert_eq!(q.holds().len(), 1);
    q.confirm_current(deadline);
    q.tick(deadline);
    assert!(q.holds().is_empty());
    let v = q.view(deadline, &PlainFmt);
    assert_eq!(v.attempts[0].status, AttemptStatus::TimedOut);
    assert_eq!(v.units.unwrap().available, units(100));
}

#[test]
fn bad_state_is_an_error_and_the_last_good_state_stays() {
    let mut q = live(1);
    let good = q.view(T0, &PlainFmt);
    let mut bad = state(2);
    bad.packages[0].remaining = units(101);
    let err = q.apply_state(bad, T0).unwrap_err();
    assert_eq!(err.to_string(), "package \"p1\" has 101 units remaining of a total of 100");
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.error.as_deref(), Some("package \"p1\" has 101 units remaining of a total of 100"));
    assert_eq!((v.units, v.revision), (good.units, good.revision));

    let mut charged = state(3);
    charged.finished.push(finished("t", "image", Outcome::Failed, 5, None));
    assert!(matches!(q.apply_state(charged, T0), Err(StateError::ChargedFailure { .. })));
    let mut dup = state(3);
    dup.pools.push(dup.pools[0].clone());
    assert!(matches!(q.apply_state(dup, T0), Err(StateError::DuplicatePool(_))));
    let mut long = state(3);
    long.packages[0].name = "x".repeat(500);
    assert!(matches!(q.apply_state(long, T0), Err(StateError::TooLong { .. })));
    assert_eq!(q.revision(), Some(1));
    q.apply_state(state(4), T0).unwrap();
    assert_eq!(q.view(T0, &PlainFmt).error, None, "a good state clears the error");
}

#[test]
fn packages_expiring_soon_are_highlighted_with_their_date() {
    let mut q = quota();
    let mut s = state(1);
    s.packages = vec![package("soon", 100, 40, 3), package("later", 100, 100, 30)];
    q.apply_state(s, T0).unwrap();
    let v = q.view(T0, &PlainFmt);
    assert!(v.packages[0].expiring_soon);
    assert_eq!(v.packages[0].status_text, format!("expires soon, {}", PlainFmt.date(T0 + 3 * DAY)));
    assert_eq!(v.packages[0].units_text, "40 of 100 units");
    assert!(!v.packages[1].expiring_soon);
    assert!(v.packages[1].status_text.starts_with("active · expires "));
}

#[test]
fn announces_a_freed_slot_and_low_units() {
    let mut q = quota();
    let mut s = state(1);
    s.pools[1].in_use = 1;
    s.running.push(running("v", "video", 1, 10, None));
    q.apply_state(s, T0).unwrap();
    assert!(q.take_announcements(&PlainFmt).is_empty());
    let mut s2 = state(2);
    s2.packages[0].remaining = units(15);
    s2.finished.push(finished("v", "video", Outcome::Succeeded, 10, None));
    q.apply_state(s2, T0).unwrap();
    let said = q.take_announcements(&PlainFmt);
    assert!(said.contains(&"Video slot free: 1 of 1 available.".to_owned()), "{said:?}");
    assert!(said.contains(&"Units are low: 15 can be spent.".to_owned()), "{said:?}");
    assert!(said.contains(&"Generation done: 10 units charged.".to_owned()), "{said:?}");
}

#[test]
fn unknown_kind_and_empty_request_block() {
    let mut q = live(1);
    q.set_request("audio", 1);
    assert_eq!(q.view(T0, &PlainFmt).reason, "This account has no \"audio\" generation slots.");
    q.set_request("image", 0);
    assert_eq!(q.view(T0, &PlainFmt).blocked, Some(Blocked::EmptyRequest));
}

#[test]
fn wire_json_round_trips_in_snake_case() {
    let mut s = state(7);
    s.running.push(running("t1", "image", 2, 4, Some("c1")));
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"server_time_ms\""));
    assert!(json.contains("\"slot_rule\":\"per_item\""));
    assert!(json.contains("\"status\":\"active\""));
    let back: ServerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_retry_after_keeps_the_gate_closed_with_its_reason_until_it_passes() {
    let mut q = live(1);
    q.wait_until(T0 + 2_500, "all image slots are busy".into());
    let v = q.view(T0, &PlainFmt);
    assert!(!v.enabled);
    assert_eq!(v.reason, "Try again in 3 s: all image slots are busy.");
    assert_eq!(q.view(T0 + 1_600, &PlainFmt).reason, "Try again in 1 s: all image slots are busy.");
    assert!(q.view(T0 + 2_500, &PlainFmt).enabled, "open once the wait is over");
    // R5 reasons come first: a dead link is the truer reason.
    q.set_link(Link::Reconnecting { attempt: 1 });
    q.wait_until(T0 + 9_000, "too many requests".into());
    assert_eq!(q.view(T0, &PlainFmt).blocked, Some(Blocked::Reconnecting));
}

#[test]
fn the_note_under_the_headline_shows_only_while_something_is_held() {
    let mut q = live(1);
    let u = q.view(T0, &PlainFmt).units.unwrap();
    assert_eq!(u.detail_text, "", "at rest the headline already says what can be spent");
    q.set_request("image", 2);
    q.begin_submit("r1".into(), T0).unwrap();
    let v = q.view(T0, &PlainFmt);
    let u = v.units.unwrap();
    assert_eq!(u.remaining_text, "100 units remaining", "R3: a hold never moves the headline");
    assert_eq!(u.detail_text, "Running tasks hold 4 · 96 can be spent now");
    assert!(!u.detail_text.contains(&u.remaining_text), "no figure twice");
}

#[test]
fn the_cost_preview_says_it_is_an_estimate_where_the_service_prices() {
    let mut s = state(1);
    s.packages_synced_at_ms = Some(s.server_time_ms);
    let mut q = quota();
    q.apply_state(s, T0).unwrap();
    let text = q.view(T0, &PlainFmt).cost.unwrap().text.clone();
    assert_eq!(text, "This request: 2 units · 2 per image · 98 left after · an estimate: the final charge can differ");
    assert!(!live(1).view(T0, &PlainFmt).cost.unwrap().text.contains("estimate"));
}

#[test]
fn a_hold_that_times_out_says_nothing_answered() {
    let mut q = live(1);
    q.begin_submit("r1".into(), T0).unwrap();
    q.tick(T0 + Config::default().hold_timeout_ms);
    let v = q.view(T0, &PlainFmt);
    assert!(v.attempts[0].text.starts_with("Image ×1 · not confirmed, not charged: no answer from the server · "), "{}", v.attempts[0].text);
}

#[test]
fn a_bad_first_state_is_worded_without_last_good_figures() {
    let mut q = quota();
    q.report_error("malformed quota state: not valid JSON".into());
    let v = q.view(T0, &PlainFmt);
    assert_eq!(v.error_text, "Could not use the quota update from the server: malformed quota state: not valid JSON.");
    let mut q = live(1);
    q.report_error("boom".into());
    assert_eq!(q.view(T0, &PlainFmt).error_text, "Could not use the latest quota update: boom. Showing the last good figures.");
    assert_eq!(live(1).view(T0, &PlainFmt).error_text, "");
}

#[test]
fn pending_packages_read_as_scheduled() {
    let mut s = state(1);
    let mut p = s.packages[0].clone();
    p.id = "later".into();
    p.status = PackageStatus::Pending;
    p.effective_at_ms = s.server_time_ms + 86_400_000;
    s.packages.push(p);
    let mut q = quota();
    q.apply_state(s, T0).unwrap();
    let v = q.view(T0, &PlainFmt);
    assert!(v.packages[1].status_text.starts_with("scheduled · starts "), "{}", v.packages[1].status_text);
}
