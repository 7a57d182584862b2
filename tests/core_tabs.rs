//! Several tabs over one connection (core part), rule by rule: the relay
//! of states and links, holds shared between tabs, the leader's arbitration
//! of submits, handover, and the messages as the channel carries them:
//! plain objects, written by serde and read by `TabMsg::read` (the server
//! states' `parse::Source` reader), here over serde_json values.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::cell::Cell;

use common::*;
use quota_widget::core::parse::read_state;
use quota_widget::core::wire::*;
use quota_widget::core::*;
use serde_json::{json, Value};

/// The server state reader, as the browser shell has it (`JSON.parse`,
/// then the core's reader).
fn read(text: &str) -> Result<ServerState, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "malformed quota state: not valid JSON".to_owned())?;
    read_state(&J(v)).map_err(|e| e.to_string())
}

fn json(s: &ServerState) -> String {
    serde_json::to_string(s).unwrap()
}

struct Tab {
    q: Quota,
    t: Tabs,
}

impl Tab {
    fn new(id: &str) -> Tab {
        Tab { q: Quota::new(Config::default()), t: Tabs::new(id.into(), TabConfig::default(), true) }
    }

    /// Takes messages as the channel carries them: plain objects, as serde
    /// writes them (serde-wasm-bindgen in the browser, serde_json here).
    fn take(&mut self, msgs: &[TabMsg], now: i64) -> Vec<TabCmd> {
        let mut out = Vec::new();
        for m in msgs {
            let v = serde_json::to_value(m).unwrap();
            out.extend(self.t.receive(&mut self.q, &J(v), now, &read, &PlainFmt));
        }
        out
    }

    fn free(&self) -> u32 {
        self.q.free_slots("image").unwrap()
    }
}

fn posts(cmds: &[TabCmd]) -> Vec<TabMsg> {
    cmds.iter().filter_map(|c| if let TabCmd::Post(m) = c { Some(m.clone()) } else { None }).collect()
}

fn sends(cmds: &[TabCmd]) -> Vec<Hold> {
    cmds.iter().filter_map(|c| if let TabCmd::Send(h) = c { Some(h.clone()) } else { None }).collect()
}

fn cancels(cmds: &[TabCmd]) -> Vec<(String, String)> {
    cmds.iter()
        .filter_map(|c| if let TabCmd::Cancel { id, reason } = c { Some((id.clone(), reason.clone())) } else { None })
        .collect()
}

/// Time enough for a new leader to grant.
const SETTLED: i64 = T0 + 1_000;

/// A leader, settled and live at `T0`, with state `s`; and what it posted.
fn leader(s: &ServerState) -> (Tab, Vec<TabMsg>) {
    let mut l = Tab::new("L");
    let mut out = l.t.lead(&mut l.q, T0 - TabConfig::default().settle_ms);
    out.extend(l.t.server_link(&mut l.q, Link::Live, T0));
    out.extend(l.t.server_state(&mut l.q, &json(s), T0, &read));
    (l, posts(&out))
}

/// A tab that opens beside leader `l` and takes its snapshot.
fn join(l: &mut Tab, id: &str, now: i64) -> Tab {
    let mut f = Tab::new(id);
    let hello = posts(&f.t.start(&mut f.q));
    let snapshot = posts(&l.take(&hello, now));
    f.take(&snapshot, now);
    f
}

/// State `revision` with `in_use` of the 4 image slots taken.
fn busy(revision: u64, in_use: u32) -> ServerState {
    let mut s = state(revision);
    s.pools[0].in_use = in_use;
    if in_use > 0 {
        s.running.push(running("t0", "image", in_use, 0, None));
    }
    s
}

// ---- relay: state and link ------------------------------------------------

#[test]
fn a_joining_tab_gets_the_state_at_once_without_a_request() {
    let (mut l, _) = leader(&state(7));
    let mut f = Tab::new("F");
    let hello = posts(&f.t.start(&mut f.q));
    assert!(matches!(&hello[..], [TabMsg::Hello { visible: true, .. }]));
    assert!(!f.q.view(T0, &PlainFmt).enabled, "no state yet");
    let answer = posts(&l.take(&hello, T0));
    let [TabMsg::Snapshot { link: Link::Live, state: Some(st), .. }] = &answer[..] else {
        panic!("a snapshot with the state: {answer:?}")
    };
    assert_eq!(st.revision, 7);
    f.take(&answer, T0);
    assert_eq!(f.q.revision(), Some(7));
    assert_eq!(f.q.link(), Link::Live);
    assert_eq!(f.t.leader(), Some("L"));
    assert!(f.q.view(T0, &PlainFmt).enabled, "{}", f.q.view(T0, &PlainFmt).reason);
}

#[test]
fn relayed_states_keep_revision_order_and_an_older_one_is_not_even_read() {
    let (mut l, _) = leader(&state(1));
    let mut f = join(&mut l, "F", T0);
    let s2 = posts(&l.t.server_state(&mut l.q, &json(&state(2)), T0, &read));
    let s3 = posts(&l.t.server_state(&mut l.q, &json(&state(3)), T0, &read));
    f.take(&s3, T0);
    assert_eq!(f.q.revision(), Some(3));
    let reads = Cell::new(0);
    let counting = |t: &str| {
        reads.set(reads.get() + 1);
        read(t)
    };
    for m in s2.iter().chain(&s3) {
        f.t.receive_msg(&mut f.q, m.clone(), T0, &counting, &PlainFmt);
    }
    assert_eq!(f.q.revision(), Some(3), "R4: never an older revision");
    assert_eq!(reads.get(), 0, "older and same revisions are dropped unread");
    // The leader relays a duplicate from the server as a confirmation only.
    let dup = posts(&l.t.server_state(&mut l.q, &json(&state(3)), T0 + 5_000, &read));
    assert!(matches!(&dup[..], [TabMsg::Current { revision: 3, .. }]), "{dup:?}");
}

#[test]
fn a_confirmation_refreshes_only_the_revision_it_names() {
    let (mut l, _) = leader(&state(2));
    let mut f = join(&mut l, "F", T0);
    let later = T0 + 20_000;
    l.t.server_state(&mut l.q, &json(&state(3)), later, &read); // lost on the way to F
    let current = posts(&l.t.server_current(&mut l.q, later));
    f.take(&current, later);
    assert_eq!(f.q.age(later), Some(20_000), "revision 2 must not look fresh for a ping of 3");
    let (mut l2, _) = leader(&state(2));
    let mut f2 = join(&mut l2, "G", T0);
    f2.take(&posts(&l2.t.server_current(&mut l2.q, later)), later + 50);
    assert_eq!(f2.q.age(later + 50), Some(50), "fresh as of the leader's ping");
}

#[test]
fn link_changes_reach_followers_in_order() {
    let (mut l, _) = leader(&state(1));
    let mut f = join(&mut l, "F", T0);
    let down = posts(&l.t.server_link(&mut l.q, Link::Reconnecting { attempt: 1 }, T0));
    let up = posts(&l.t.server_link(&mut l.q, Link::Live, T0));
    f.take(&up, T0);
    f.take(&down, T0);
    assert_eq!(f.q.link(), Link::Live, "a reordered older link is ignored");
    f.take(&posts(&l.t.server_link(&mut l.q, Link::Reconnecting { attempt: 2 }, T0)), T0);
    assert_eq!(f.q.view(T0, &PlainFmt).blocked, Some(Blocked::Reconnecting), "R5 in the follower too");
}

#[test]
fn a_bad_relayed_state_is_reported_and_never_shown() {
    let (mut l, _) = leader(&state(1));
    let mut f = join(&mut l, "F", T0);
    // A state is read whoever relays it: its revision orders it (R4).
    let stamp = Stamp { leader: "X".into(), epoch: 1, seq: 1, at: T0 };
    let bad = |text: String, revision: u64| TabMsg::State { stamp: stamp.clone(), state: StateText { revision, text } };
    f.take(&[bad("{\"revision\": 5".into(), 5)], T0);
    assert_eq!(f.q.error(), Some("malformed quota state: not valid JSON"));
    let mut over = state(6);
    over.packages[0].remaining = units(101);
    f.take(&[bad(json(&over), 6)], T0);
    assert!(f.q.error().unwrap().contains("remaining of a total"), "{:?}", f.q.error());
    f.take(&[bad(json(&state(8)), 9)], T0);
    assert!(f.q.error().unwrap().contains("revision 8, not the 9"), "{:?}", f.q.error());
    assert_eq!(f.q.revision(), Some(1), "the last good state stays");
    f.take(&[bad(json(&state(9)), 9)], T0);
    assert_eq!((f.q.revision(), f.q.error()), (Some(9), None));
}

#[test]
fn a_malformed_message_is_reported_and_changes_nothing() {
    let (mut l, _) = leader(&state(1));
    let mut f = join(&mut l, "F", T0);
    let before = f.q.view(T0, &PlainFmt);
    let mut grant = serde_json::to_value(TabMsg::Grant { stamp: Stamp { leader: "L".into(), epoch: 1, seq: 1, at: T0 }, hold: shared("r9") }).unwrap();
    grant["stamp"]["at"] = json!("x");
    let out = f.t.receive(&mut f.q, &J(grant), T0, &read, &PlainFmt);
    assert!(out.is_empty());
    assert_eq!(f.q.error(), Some("malformed tab message: grant.stamp.at must be a whole number of milliseconds"));
    // A message of the text protocol (qw1) is not an object.
    let out = f.t.receive(&mut f.q, &J(json!("qw1 grant L 1 1 5 r9 tab%2 image 2 2 2.5 5 10")), T0, &read, &PlainFmt);
    assert!(out.is_empty());
    assert_eq!(f.q.error(), Some("malformed tab message: it must be an object"));
    let after = f.q.view(T0, &PlainFmt);
    assert_eq!((after.revision, after.units, after.meters), (before.revision, before.units, before.meters));
    assert_eq!(f.q.holds().len(), 0, "no hold from a malformed grant");
}

// ---- holds shared between tabs ---------------------------------------------

#[test]
fn another_tabs_hold_counts_exactly_like_a_local_one() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    a.q.set_request("image", 2);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    assert_eq!(sends(&a.take(&grant, SETTLED)).len(), 1);
    b.take(&grant, SETTLED);
    let (va, vb, vl) = (a.q.view(SETTLED, &PlainFmt), b.q.view(SETTLED, &PlainFmt), l.q.view(SETTLED, &PlainFmt));
    assert_eq!((a.free(), b.free(), l.free()), (2, 2, 2), "R1: 2 of 4 image slots held in every tab");
    assert_eq!(vb.units, va.units, "R2: the same units held and available");
    assert_eq!(vb.units.as_ref().unwrap().available, units(96));
    assert_eq!(vb.meters, va.meters);
    assert_eq!(vl.meters, va.meters);
    assert!(b.t.counts_remote("r1") && !a.t.counts_remote("r1"));
    // Listed as a submit in flight, as the server's running tasks are
    // listed in every tab.
    let sending = vb.attempts.iter().find(|x| x.key == "r1").unwrap();
    assert_eq!(sending.status, AttemptStatus::Sending);
}

#[test]
fn a_hold_received_twice_or_echoed_back_counts_once() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    // Asked twice (a repeated message): the same grant again, held once.
    let again = posts(&l.take(&ask, SETTLED));
    let hold_of = |m: &TabMsg| match m {
        TabMsg::Grant { hold, .. } => hold.clone(),
        other => panic!("not a grant: {other:?}"),
    };
    assert_eq!(again.len(), 1);
    assert_eq!(hold_of(&again[0]), hold_of(&grant[0]));
    assert_eq!(l.q.holds().len(), 1);
    let sent = sends(&a.take(&grant, SETTLED));
    assert_eq!(sent.len(), 1);
    assert!(sends(&a.take(&again, SETTLED)).is_empty(), "one request leaves, however often granted");
    b.take(&grant, SETTLED);
    b.take(&again, SETTLED);
    // And once more in a hello and a snapshot.
    let hello = posts(&a.t.set_visible(&mut a.q, true));
    let snapshot = posts(&l.take(&hello, SETTLED));
    b.take(&hello, SETTLED);
    b.take(&snapshot, SETTLED);
    a.take(&snapshot, SETTLED);
    for t in [&a, &b, &l] {
        assert_eq!(t.q.holds().len(), 1);
        assert_eq!(t.free(), 3);
    }
}

/// Leader `l`, tabs `a` (who holds `r1`) and `b` (who counts it).
fn with_remote_hold() -> (Tab, Tab, Tab, Vec<TabMsg>) {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    a.take(&grant, SETTLED);
    b.take(&grant, SETTLED);
    assert_eq!(b.free(), 3);
    (l, a, b, grant)
}

#[test]
fn a_remote_hold_ends_with_its_end_message_silently() {
    let (mut l, mut a, mut b, grant) = with_remote_hold();
    b.q.take_announcements(&PlainFmt);
    let ended = posts(&a.t.end_hold(&mut a.q, "r1", HoldEnd::Refused, Some("over limit".into()), SETTLED));
    assert_eq!(ended, vec![TabMsg::Ended { id: "r1".into(), end: HoldEnd::Refused }]);
    b.take(&ended, SETTLED);
    l.take(&ended, SETTLED);
    assert_eq!((b.free(), l.free()), (4, 4));
    // The origin tells the story; the others list nothing and say nothing.
    assert!(b.q.take_announcements(&PlainFmt).is_empty());
    assert!(b.q.view(SETTLED, &PlainFmt).attempts.is_empty());
    assert_eq!(a.q.view(SETTLED, &PlainFmt).attempts[0].status, AttemptStatus::Refused);
    // A late copy of the grant does not bring it back.
    b.take(&grant, SETTLED + 1);
    l.take(&grant, SETTLED + 1);
    assert_eq!((b.free(), l.free()), (4, 4));
}

#[test]
fn a_remote_hold_ends_when_a_state_shows_its_request() {
    let (mut l, _, mut b, grant) = with_remote_hold();
    let mut s = state(2);
    s.pools[0].in_use = 1;
    s.running.push(running("t1", "image", 1, 2, Some("r1")));
    let relay = posts(&l.t.server_state(&mut l.q, &json(&s), SETTLED, &read));
    b.take(&relay, SETTLED);
    assert_eq!(b.q.holds().len(), 0);
    assert_eq!(b.free(), 3, "counted once: by the server now");
    b.take(&grant, SETTLED);
    assert_eq!(b.free(), 3, "a late grant of a shown request is not counted again");
}

#[test]
fn a_grant_that_comes_after_the_state_showing_its_task_is_not_counted() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut c = join(&mut l, "C", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    let mut s = state(2);
    s.pools[0].in_use = 1;
    s.running.push(running("t1", "image", 1, 2, Some("r1")));
    let relay = posts(&l.t.server_state(&mut l.q, &json(&s), SETTLED, &read));
    // C never heard of the hold before the state that shows its task.
    c.take(&relay, SETTLED);
    c.take(&grant, SETTLED);
    assert_eq!((c.q.holds().len(), c.free()), (0, 3));
}

#[test]
fn a_remote_hold_ends_at_its_expiry_even_when_its_end_is_lost() {
    let (_, _, mut b, grant) = with_remote_hold();
    let TabMsg::Grant { hold, .. } = &grant[0] else { unreachable!() };
    assert_eq!(hold.expires_at, SETTLED + Config::default().hold_timeout_ms);
    assert_eq!(b.t.next_deadline(&b.q), Some(hold.expires_at));
    b.t.tick(&mut b.q, hold.expires_at - 1);
    assert_eq!(b.free(), 3);
    b.q.take_announcements(&PlainFmt);
    b.t.tick(&mut b.q, hold.expires_at);
    assert_eq!(b.free(), 4, "no hold outlives its expiry");
    assert!(b.q.take_announcements(&PlainFmt).is_empty(), "another tab's timeout is not announced here");
    assert!(b.q.view(hold.expires_at, &PlainFmt).attempts.is_empty());
    b.take(&grant, hold.expires_at + 1);
    assert_eq!(b.free(), 4, "an expired hold arriving late is not counted");
}

#[test]
fn a_shorter_expiry_from_another_tab_is_kept() {
    // The granting tab has a 5 s hold timeout; this one 20 s.
    let mut b = Tab::new("B");
    b.q.apply_state(state(1), T0).unwrap();
    let hold = SharedHold { expires_at: SETTLED + 5_000, begun_at: SETTLED, ..shared("r2") };
    let stamp = Stamp { leader: "L".into(), epoch: 1, seq: 1, at: SETTLED };
    b.take(&[TabMsg::Grant { stamp, hold }], SETTLED);
    assert_eq!(b.free(), 2);
    b.t.tick(&mut b.q, SETTLED + 4_999);
    assert_eq!(b.free(), 2);
    b.t.tick(&mut b.q, SETTLED + 5_000);
    assert_eq!(b.free(), 4);
}

#[test]
fn an_end_that_overtakes_its_grant_wins() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    a.take(&grant, SETTLED);
    let ended = posts(&a.t.end_hold(&mut a.q, "r1", HoldEnd::Failed, None, SETTLED));
    b.take(&ended, SETTLED);
    b.take(&grant, SETTLED);
    assert_eq!(b.free(), 4);
}

// ---- arbitration: who lets a submit go --------------------------------------

#[test]
fn a_follower_sends_only_on_the_leaders_grant() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    a.q.set_request("image", 3);
    let out = a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap();
    assert!(sends(&out).is_empty(), "nothing leaves before the grant");
    assert!(matches!(&posts(&out)[..], [TabMsg::Ask { count: 3, .. }]));
    assert_eq!(a.free(), 1, "R7: held locally meanwhile");
    assert!(matches!(a.t.submit(&mut a.q, "r2".into(), SETTLED), Err(SubmitError::Blocked(Blocked::Slots { free: 1, .. }))));
    let grant = posts(&l.take(&posts(&out), SETTLED));
    let sent = sends(&a.take(&grant, SETTLED));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].id.as_str(), sent[0].slots), ("r1", 3));
}

#[test]
fn two_tabs_clicking_for_the_last_slot_in_one_frame_send_one_request() {
    let (mut l, _) = leader(&busy(1, 3));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    // Both gates are open: each tab sees one free slot.
    let ask_a = posts(&a.t.submit(&mut a.q, "ra".into(), SETTLED).unwrap());
    let ask_b = posts(&b.t.submit(&mut b.q, "rb".into(), SETTLED).unwrap());
    let mut answers = posts(&l.take(&ask_a, SETTLED));
    answers.extend(posts(&l.take(&ask_b, SETTLED)));
    let mut out = a.take(&answers, SETTLED);
    out.extend(b.take(&answers, SETTLED));
    let sent = sends(&out);
    assert_eq!(sent.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["ra"], "one request leaves the browser");
    let why = Blocked::Slots { kind: "image".into(), free: 0, needed: 1, limit: 4 }.message(&PlainFmt);
    assert_eq!(cancels(&out), vec![("rb".to_owned(), why.clone())]);
    // The other tab shows the reason, and counts the winner's hold.
    let v = b.q.view(SETTLED, &PlainFmt);
    let refused = v.attempts.iter().find(|a| a.key == "rb").unwrap();
    assert_eq!(refused.status, AttemptStatus::Refused);
    assert!(refused.text.contains(&why), "{}", refused.text);
    assert_eq!(b.q.take_announcements(&PlainFmt).len(), 1);
    assert_eq!((a.free(), b.free(), l.free()), (0, 0, 0));
}

#[test]
fn the_leaders_own_click_and_a_followers_ask_are_judged_alike() {
    let (mut l, _) = leader(&busy(1, 3));
    let mut a = join(&mut l, "A", T0);
    let ask = posts(&a.t.submit(&mut a.q, "ra".into(), SETTLED).unwrap());
    let own = l.t.submit(&mut l.q, "rl".into(), SETTLED).unwrap();
    assert_eq!(sends(&own).len(), 1, "the leader decides its own at once");
    let grant = posts(&own);
    assert!(matches!(&grant[..], [TabMsg::Grant { hold, .. }] if hold.origin == "L"));
    let answer = posts(&l.take(&ask, SETTLED));
    assert!(matches!(&answer[..], [TabMsg::Denied { to, .. }] if to == "A"));
    a.take(&grant, SETTLED);
    let out = a.take(&answer, SETTLED);
    assert!(sends(&out).is_empty());
    assert_eq!(cancels(&out).len(), 1);
    assert_eq!(a.free(), 0, "the leader's hold counts in the follower");
}

#[test]
fn an_ask_with_no_answer_is_never_sent() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let deadline = SETTLED + TabConfig::default().ask_timeout_ms;
    assert_eq!(a.t.next_deadline(&a.q), Some(deadline));
    assert!(a.t.tick(&mut a.q, deadline - 1).is_empty());
    let out = a.t.tick(&mut a.q, deadline);
    assert_eq!(cancels(&out), vec![("r1".to_owned(), Msg::TabNoAnswer.en().to_owned())]);
    let ended = posts(&out);
    assert_eq!(ended, vec![TabMsg::Ended { id: "r1".into(), end: HoldEnd::Failed }]);
    assert_eq!(a.free(), 4);
    // The grant was only slow: it is released, not sent.
    let grant = posts(&l.take(&ask, deadline));
    let out = a.take(&grant, deadline);
    assert!(sends(&out).is_empty());
    let release = posts(&out);
    assert_eq!(release, ended);
    l.take(&release, deadline);
    assert_eq!(l.free(), 4);
}

#[test]
fn asks_to_a_leader_that_is_gone_are_cancelled_at_once() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let slow_grant = posts(&l.take(&ask, SETTLED));
    // L dies before its answer arrives; B leads.
    let lead = posts(&b.t.lead(&mut b.q, SETTLED + 1));
    let out = a.take(&lead, SETTLED + 1);
    assert_eq!(cancels(&out), vec![("r1".to_owned(), Msg::TabHandover.en().to_owned())]);
    assert!(posts(&out).contains(&TabMsg::Ended { id: "r1".into(), end: HoldEnd::Failed }));
    assert_eq!(a.free(), 4);
    let out = a.take(&slow_grant, SETTLED + 2);
    assert!(sends(&out).is_empty(), "the old leader's late grant is not acted on");
    b.take(&slow_grant, SETTLED + 2);
    b.take(&posts(&out), SETTLED + 2);
    assert_eq!(b.free(), 4, "and is released in the new leader");
}

#[test]
fn a_repeated_ask_after_its_hold_ended_is_not_granted_again() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let ask = posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    a.take(&grant, SETTLED);
    l.take(&posts(&a.t.end_hold(&mut a.q, "r1", HoldEnd::Failed, None, SETTLED)), SETTLED);
    assert!(l.take(&ask, SETTLED).is_empty());
    assert_eq!(l.free(), 4);
}

#[test]
fn a_duplicate_request_id_is_refused() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let ask_a = posts(&a.t.submit(&mut a.q, "same".into(), SETTLED).unwrap());
    let ask_b = posts(&b.t.submit(&mut b.q, "same".into(), SETTLED).unwrap());
    l.take(&ask_a, SETTLED);
    let answer = posts(&l.take(&ask_b, SETTLED));
    assert!(matches!(&answer[..], [TabMsg::Denied { reason, .. }] if reason == Msg::TabDuplicate.en()));
}

// ---- handover ---------------------------------------------------------------

#[test]
fn while_no_tab_is_live_submit_is_blocked_with_the_reason() {
    let (mut l, _) = leader(&state(3));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let bye = posts(&l.t.leave(&mut l.q));
    assert!(matches!(&bye[..], [TabMsg::Bye { from, epoch }] if from == "L" && *epoch > 0), "{bye:?}");
    a.take(&bye, SETTLED);
    b.take(&bye, SETTLED);
    assert_eq!(a.q.view(SETTLED, &PlainFmt).blocked, Some(Blocked::Reconnecting), "R5 in every tab");
    assert_eq!(a.t.submit(&mut a.q, "r1".into(), SETTLED), Err(SubmitError::Blocked(Blocked::Reconnecting)));
    // B takes the lock: it resumes after the last revision and grants
    // nothing until settled and live.
    let t = SETTLED + 10;
    let lead = posts(&b.t.lead(&mut b.q, t));
    assert_eq!(b.t.resume_from(&b.q), Some(3));
    a.take(&lead, t);
    assert_eq!(a.t.leader(), Some("B"));
    assert_eq!(a.q.revision(), Some(3), "no older state in between");
    assert_eq!(a.q.view(t, &PlainFmt).blocked, Some(Blocked::Connecting));
    assert_eq!(b.t.submit(&mut b.q, "rb".into(), t), Err(SubmitError::Blocked(Blocked::Connecting)));
    // Its connection is up at once, but it shows (and relays) live only once
    // settled: no gate looks open while submits would be refused.
    a.take(&posts(&b.t.server_link(&mut b.q, Link::Live, t)), t);
    assert_eq!((a.q.link(), b.q.link()), (Link::Connecting, Link::Connecting));
    assert_eq!(a.t.submit(&mut a.q, "r2".into(), t), Err(SubmitError::Blocked(Blocked::Connecting)));
    // An ask that comes anyway (a tab that saw the old leader live) is denied.
    let asked = TabMsg::Ask { from: "A".into(), id: "r2".into(), kind: "image".into(), count: 1, queue: false };
    assert!(matches!(&posts(&b.take(&[asked], t))[..], [TabMsg::Denied { reason, .. }] if reason == Msg::TabHandover.en()));
    let t2 = t + TabConfig::default().settle_ms;
    assert_eq!(b.t.next_deadline(&b.q), Some(t2), "the shell wakes the leader when it settles");
    let live = posts(&b.t.tick(&mut b.q, t2));
    assert!(matches!(&live[..], [TabMsg::Link { link: Link::Live, .. }]), "{live:?}");
    a.take(&live, t2);
    assert_eq!((a.q.link(), b.q.link()), (Link::Live, Link::Live));
    let ask = posts(&a.t.submit(&mut a.q, "r3".into(), t2).unwrap());
    let out = a.take(&posts(&b.take(&ask, t2)), t2);
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn a_dead_leaders_late_messages_do_not_move_the_link() {
    let (mut l, _) = leader(&state(3));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let late_live = posts(&l.t.server_link(&mut l.q, Link::Live, T0));
    // L dies without a word; B leads.
    let lead = posts(&b.t.lead(&mut b.q, SETTLED));
    let out = a.take(&lead, SETTLED);
    assert!(matches!(&posts(&out)[..], [TabMsg::Hello { .. }]), "the new leader learns this tab's holds");
    a.take(&late_live, SETTLED);
    assert_eq!(a.q.link(), Link::Connecting);
    assert!(!a.q.view(SETTLED, &PlainFmt).enabled);
}

#[test]
fn a_new_leader_counts_the_holds_the_old_one_granted() {
    let (mut l, _) = leader(&busy(1, 3));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    let mut c = join(&mut l, "C", T0);
    let ask = posts(&a.t.submit(&mut a.q, "ra".into(), SETTLED).unwrap());
    let grant = posts(&l.take(&ask, SETTLED));
    a.take(&grant, SETTLED);
    c.take(&grant, SETTLED);
    // B missed the grant; the old leader dies. B leads and hears A's hello.
    let t = SETTLED + 1;
    let lead = posts(&b.t.lead(&mut b.q, t));
    let hello = posts(&a.take(&lead, t));
    c.take(&lead, t);
    b.take(&hello, t);
    c.take(&posts(&b.t.server_link(&mut b.q, Link::Live, t)), t);
    assert_eq!(b.free(), 0, "the new leader counts A's hold");
    let t2 = t + TabConfig::default().settle_ms;
    c.take(&posts(&b.t.tick(&mut b.q, t2)), t2);
    assert!(
        matches!(c.t.submit(&mut c.q, "rc".into(), t2), Err(SubmitError::Blocked(Blocked::Slots { free: 0, .. }))),
        "C's own gate sees the slot taken"
    );
    let asked = TabMsg::Ask { from: "C".into(), id: "rc".into(), kind: "image".into(), count: 1, queue: false };
    assert!(matches!(&posts(&b.take(&[asked], t2))[..], [TabMsg::Denied { .. }]));
}

// ---- visibility -------------------------------------------------------------

#[test]
fn a_hidden_leader_gives_way_to_a_visible_tab() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let hidden = posts(&a.t.set_visible(&mut a.q, false));
    l.take(&hidden, T0);
    assert!(l.t.set_visible(&mut l.q, false).is_empty(), "no visible tab to lead: keep leading");
    let shown = posts(&a.t.set_visible(&mut a.q, true));
    let out = l.take(&shown, T0);
    assert!(out.contains(&TabCmd::Yield));
    assert!(!l.t.is_leader());
    assert!(posts(&out).iter().any(|m| matches!(m, TabMsg::Bye { from, .. } if from == "L")));
    // And a visible leader that is hidden while a visible tab waits.
    let (mut l, _) = leader(&state(1));
    let _a = join(&mut l, "A", T0);
    assert_eq!(l.t.set_visible(&mut l.q, false).last(), Some(&TabCmd::Yield));
}

// ---- the messages on the channel --------------------------------------------

fn stamp() -> Stamp {
    Stamp { leader: "tab 1".into(), epoch: 1_795_000_000_000, seq: 7, at: T0 }
}

fn shared(id: &str) -> SharedHold {
    SharedHold {
        id: id.into(),
        origin: "tab%2".into(),
        kind: "image".into(),
        count: 2,
        slots: 2,
        cost: Units::from_milli(2_500),
        begun_at: T0,
        expires_at: T0 + 20_000,
    }
}

/// The largest integer a message carries (2^53 - 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`, the largest that serde-wasm-bindgen writes):
/// the largest count, and the largest time either way.
const EXACT: u64 = (1 << 53) - 1;
/// The next JSON number above it.
const OVER: u64 = EXACT + 1;

/// A message as the channel carries it.
fn carried(m: &TabMsg) -> Value {
    serde_json::to_value(m).unwrap()
}

fn read_msg(v: &Value) -> Result<TabMsg, TabMsgError> {
    TabMsg::read(&J(v.clone()))
}

#[test]
fn every_message_reads_back_as_written() {
    let text = json(&state(4));
    let ms = EXACT as i64;
    let big = SharedHold { count: u32::MAX, slots: 0, cost: Units::MAX, begun_at: -ms, expires_at: ms, ..shared("big") };
    let all = vec![
        TabMsg::Hello { from: "a b\nc%\"{}".into(), visible: true, holds: vec![shared("r1"), shared("r 2"), big.clone()] },
        TabMsg::Hello { from: "a".into(), visible: false, holds: vec![] },
        TabMsg::Hello { from: "é".repeat(100), visible: true, holds: (0..256).map(|i| shared(&format!("r{i}"))).collect() },
        TabMsg::Snapshot { stamp: stamp(), link: Link::Reconnecting { attempt: 3 }, holds: vec![shared("r1")], state: Some(StateText { revision: 4, text: text.clone() }) },
        TabMsg::Snapshot { stamp: stamp(), link: Link::Live, holds: vec![], state: None },
        TabMsg::Snapshot { stamp: stamp(), link: Link::Paused, holds: vec![shared("x")], state: Some(StateText { revision: 0, text: String::new() }) },
        TabMsg::Snapshot { stamp: stamp(), link: Link::Reconnecting { attempt: u32::MAX }, holds: vec![], state: None },
        TabMsg::Snapshot { stamp: stamp(), link: Link::Connecting, holds: vec![], state: None },
        TabMsg::State { stamp: stamp(), state: StateText { revision: 4, text: "line 1\nline 2\n".into() } },
        TabMsg::Link { stamp: stamp(), link: Link::Manual },
        TabMsg::Current { stamp: Stamp { at: -5, ..stamp() }, revision: EXACT },
        TabMsg::Current { stamp: Stamp { at: -ms, epoch: 0, seq: 0, ..stamp() }, revision: 0 },
        TabMsg::Current { stamp: Stamp { at: ms, epoch: EXACT, seq: EXACT, ..stamp() }, revision: 10 },
        TabMsg::Bye { from: "a".into(), epoch: 0 },
        TabMsg::Bye { from: "a".repeat(200), epoch: EXACT },
        TabMsg::Ask { from: "a".into(), id: "qw-1".into(), kind: "video clip".into(), count: 1, queue: true },
        TabMsg::Ask { from: "a".into(), id: "qw-1".into(), kind: "image".into(), count: u32::MAX, queue: false },
        TabMsg::Grant { stamp: stamp(), hold: shared("r1") },
        TabMsg::Grant { stamp: stamp(), hold: SharedHold { cost: Units::from_milli(1), ..big } },
        TabMsg::Denied { stamp: stamp(), to: "a".into(), id: "r1".into(), reason: "All image slots are busy: 0 of 4 free.".into() },
        TabMsg::Denied { stamp: stamp(), to: "a".into(), id: "r1".into(), reason: "x".repeat(1000) },
        TabMsg::Ended { id: "r1".into(), end: HoldEnd::Confirmed },
        TabMsg::Ended { id: "r1".into(), end: HoldEnd::Refused },
        TabMsg::Ended { id: "r1".into(), end: HoldEnd::Failed },
        TabMsg::Ended { id: "r1".into(), end: HoldEnd::TimedOut },
    ];
    for m in all {
        let v = carried(&m);
        assert!(v.is_object(), "{v}");
        assert_eq!(read_msg(&v).as_ref(), Ok(&m), "{v}");
        // Nothing but JSON: it reads the same after a trip through JSON text.
        let again: Value = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(read_msg(&again), Ok(m));
    }

    // The wire form, pinned.
    let ask = TabMsg::Ask { from: "a".into(), id: "50% off".into(), kind: "image".into(), count: 2, queue: false };
    assert_eq!(carried(&ask), json!({ "t": "ask", "from": "a", "id": "50% off", "kind": "image", "count": 2 }));
    let queued = TabMsg::Ask { from: "a".into(), id: "50% off".into(), kind: "image".into(), count: 2, queue: true };
    assert_eq!(carried(&queued), json!({ "t": "ask", "from": "a", "id": "50% off", "kind": "image", "count": 2, "queue": true }));
    let bad = json!({ "t": "ask", "from": "a", "id": "r", "kind": "image", "count": 2, "queue": "yes" });
    assert_eq!(read_msg(&bad).unwrap_err().to_string(), "malformed tab message: ask.queue must be true or false");
    let stamp_json = json!({ "leader": "tab 1", "epoch": 1_795_000_000_000u64, "seq": 7, "at": T0 });
    assert_eq!(
        carried(&TabMsg::Grant { stamp: stamp(), hold: shared("r1") }),
        json!({
            "t": "grant",
            "stamp": stamp_json,
            "hold": {
                "id": "r1", "origin": "tab%2", "kind": "image", "count": 2, "slots": 2, "cost": 2.5,
                "begun_at": T0, "expires_at": T0 + 20_000,
            },
        })
    );
    let snapshot = TabMsg::Snapshot { stamp: stamp(), link: Link::Reconnecting { attempt: 3 }, holds: vec![], state: None };
    assert_eq!(
        carried(&snapshot),
        json!({ "t": "snapshot", "stamp": stamp_json, "link": { "state": "reconnecting", "attempt": 3 }, "holds": [], "state": null })
    );
    let relay = TabMsg::State { stamp: stamp(), state: StateText { revision: 4, text: "{}".into() } };
    assert_eq!(carried(&relay), json!({ "t": "state", "stamp": stamp_json, "state": { "revision": 4, "text": "{}" } }));
    assert_eq!(carried(&TabMsg::Link { stamp: stamp(), link: Link::Live }), json!({ "t": "link", "stamp": stamp_json, "link": { "state": "live" } }));
    assert_eq!(carried(&TabMsg::Ended { id: "r1".into(), end: HoldEnd::TimedOut }), json!({ "t": "ended", "id": "r1", "end": "timed_out" }));
    assert_eq!(carried(&TabMsg::Bye { from: "a".into(), epoch: 0 }), json!({ "t": "bye", "from": "a", "epoch": 0 }));

    // Just past what a JSON number carries exactly: refused, never rounded.
    let over_ms = OVER as i64;
    let over: Vec<(TabMsg, &str)> = vec![
        (TabMsg::Current { stamp: stamp(), revision: OVER }, "current.revision must be a whole number of 0 or more"),
        (TabMsg::Current { stamp: Stamp { epoch: OVER, ..stamp() }, revision: 1 }, "current.stamp.epoch must be a whole number of 0 or more"),
        (TabMsg::Current { stamp: Stamp { seq: OVER, ..stamp() }, revision: 1 }, "current.stamp.seq must be a whole number of 0 or more"),
        (TabMsg::Current { stamp: Stamp { at: over_ms, ..stamp() }, revision: 1 }, "current.stamp.at must be a whole number of milliseconds"),
        (TabMsg::Current { stamp: Stamp { at: -over_ms, ..stamp() }, revision: 1 }, "current.stamp.at must be a whole number of milliseconds"),
        (TabMsg::Current { stamp: Stamp { at: i64::MIN, ..stamp() }, revision: 1 }, "current.stamp.at must be a whole number of milliseconds"),
        (TabMsg::Bye { from: "a".into(), epoch: u64::MAX }, "bye.epoch must be a whole number of 0 or more"),
        (
            TabMsg::Snapshot { stamp: stamp(), link: Link::Live, holds: vec![], state: Some(StateText { revision: OVER, text: "{}".into() }) },
            "snapshot.state.revision must be a whole number of 0 or more",
        ),
        (
            TabMsg::Grant { stamp: stamp(), hold: SharedHold { expires_at: over_ms, ..shared("r1") } },
            "grant.hold.expires_at must be a whole number of milliseconds",
        ),
        (
            TabMsg::Grant { stamp: stamp(), hold: SharedHold { cost: Units::from_milli(Units::MAX.milli() + 1), ..shared("r1") } },
            "grant.hold.cost must be a number of units of 0 or more, with at most 3 decimals",
        ),
    ];
    for (m, want) in over {
        assert_eq!(read_msg(&carried(&m)).map_err(|e| e.to_string()), Err(format!("malformed tab message: {want}")), "{m:?}");
    }
}

/// One good object of each type, as the channel carries it.
fn valid(t: &str) -> Value {
    let stamp = json!({ "leader": "L", "epoch": 1, "seq": 1, "at": 5 });
    let hold = json!({ "id": "r1", "origin": "b", "kind": "image", "count": 2, "slots": 2, "cost": 2.5, "begun_at": 10, "expires_at": 50 });
    let state = json!({ "revision": 3, "text": "{}" });
    match t {
        "hello" => json!({ "t": "hello", "from": "a", "visible": true, "holds": [hold] }),
        "snapshot" => json!({ "t": "snapshot", "stamp": stamp, "link": { "state": "reconnecting", "attempt": 1 }, "holds": [hold], "state": state }),
        "state" => json!({ "t": "state", "stamp": stamp, "state": state }),
        "link" => json!({ "t": "link", "stamp": stamp, "link": { "state": "live" } }),
        "current" => json!({ "t": "current", "stamp": stamp, "revision": 3 }),
        "bye" => json!({ "t": "bye", "from": "a", "epoch": 0 }),
        "ask" => json!({ "t": "ask", "from": "a", "id": "r1", "kind": "image", "count": 2 }),
        "grant" => json!({ "t": "grant", "stamp": stamp, "hold": hold }),
        "denied" => json!({ "t": "denied", "stamp": stamp, "to": "a", "id": "r1", "reason": "busy" }),
        "ended" => json!({ "t": "ended", "id": "r1", "end": "failed" }),
        other => panic!("no type {other}"),
    }
}

/// The good `t` with the value at `pointer` replaced.
fn set(t: &str, pointer: &str, x: Value) -> Value {
    let mut v = valid(t);
    *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{t} has no {pointer}")) = x;
    v
}

/// The good `t` without the member at `pointer`.
fn without(t: &str, pointer: &str) -> Value {
    let mut v = valid(t);
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let removed = v.pointer_mut(parent).and_then(Value::as_object_mut).and_then(|o| o.remove(key));
    assert!(removed.is_some(), "{t} has no {pointer}");
    v
}

/// A hello with these holds.
fn hello_with(holds: Vec<Value>) -> Value {
    set("hello", "/holds", Value::Array(holds))
}

fn good_hold(id: String) -> Value {
    let mut h = valid("grant")["hold"].clone();
    h["id"] = Value::String(id);
    h
}

#[test]
fn malformed_messages_are_errors_that_name_the_fault() {
    const TYPES: [&str; 10] = ["hello", "snapshot", "state", "link", "current", "bye", "ask", "grant", "denied", "ended"];
    // Each case breaks one field of a good message, which reads.
    for t in TYPES {
        assert!(read_msg(&valid(t)).is_ok(), "{t}: {:?}", read_msg(&valid(t)));
    }
    let holds = |n: usize| hello_with((0..n).map(|i| good_hold(format!("r{i}"))).collect());
    let edges = [
        holds(256),
        set("bye", "/from", json!("a".repeat(200))),
        set("denied", "/reason", json!("x".repeat(1000))),
        set("state", "/state/text", json!("x".repeat(tabs::MAX_MESSAGE))),
        set("current", "/stamp/at", json!(-(EXACT as i64))),
        set("ask", "/count", json!(u32::MAX)),
        set("grant", "/hold/cost", json!(Units::MAX.to_number())),
        // Extra members are not a fault; nor an absent or null state in a snapshot.
        {
            let mut v = valid("ended");
            v["extra"] = json!([1, 2]);
            v
        },
        without("snapshot", "/state"),
        set("snapshot", "/state", json!(null)),
    ];
    for v in &edges {
        assert!(read_msg(v).is_ok(), "{:?}", read_msg(v));
    }

    let one_of_types = "t must be one of: hello, snapshot, state, link, current, bye, ask, grant, denied, ended";
    let whole = "must be a whole number of 0 or more";
    let millis = "must be a whole number of milliseconds";
    let units = "must be a number of units of 0 or more, with at most 3 decimals";
    let mut repeated = holds(2);
    repeated["holds"][1]["id"] = json!("r0");
    let cases: Vec<(Value, String)> = vec![
        // Not a message at all.
        (json!(null), "it must be an object".into()),
        (json!(""), "it must be an object".into()),
        (json!("qw1 hello a visible 0"), "it must be an object".into()),
        (json!(7), "it must be an object".into()),
        (json!(true), "it must be an object".into()),
        (json!([valid("hello")]), "it must be an object".into()),
        // The type.
        (json!({}), "t is missing".into()),
        (without("hello", "/t"), "t is missing".into()),
        (set("hello", "/t", json!(null)), "t is missing".into()),
        (set("hello", "/t", json!("shout")), one_of_types.into()),
        (set("hello", "/t", json!("Hello")), one_of_types.into()),
        (set("hello", "/t", json!("")), one_of_types.into()),
        (set("hello", "/t", json!(0)), one_of_types.into()),
        (set("hello", "/t", json!(["hello"])), one_of_types.into()),
        // Text: missing, empty, of another type, too long.
        (without("hello", "/from"), "hello.from is missing".into()),
        (set("hello", "/from", json!(null)), "hello.from is missing".into()),
        (set("hello", "/from", json!("")), "hello.from is empty".into()),
        (set("hello", "/from", json!(7)), "hello.from must be a string".into()),
        (set("hello", "/from", json!({ "name": "a" })), "hello.from must be a string".into()),
        (set("bye", "/from", json!("a".repeat(201))), "bye.from is longer than 200 bytes".into()),
        (set("ask", "/kind", json!("é".repeat(101))), "ask.kind is longer than 200 bytes".into()),
        (without("ask", "/id"), "ask.id is missing".into()),
        (set("denied", "/to", json!("")), "denied.to is empty".into()),
        (set("denied", "/reason", json!("x".repeat(1001))), "denied.reason is longer than 1000 bytes".into()),
        (set("grant", "/stamp/leader", json!("")), "grant.stamp.leader is empty".into()),
        (set("grant", "/hold/origin", json!(["b"])), "grant.hold.origin must be a string".into()),
        (set("ended", "/id", json!("")), "ended.id is empty".into()),
        (without("state", "/state/text"), "state.state.text is missing".into()),
        (set("state", "/state/text", json!(3)), "state.state.text must be a string".into()),
        (set("state", "/state/text", json!("x".repeat(tabs::MAX_MESSAGE + 1))), format!("state.state.text is longer than {} bytes", tabs::MAX_MESSAGE)),
        // Visibility.
        (set("hello", "/visible", json!("visible")), "hello.visible must be true or false".into()),
        (set("hello", "/visible", json!(1)), "hello.visible must be true or false".into()),
        (set("hello", "/visible", json!(null)), "hello.visible".into()),
        (without("hello", "/visible"), "hello.visible".into()),
        // Holds.
        (without("hello", "/holds"), "hello.holds is missing".into()),
        (set("hello", "/holds", json!({})), "hello.holds must be a list".into()),
        (set("hello", "/holds", json!("r1")), "hello.holds must be a list".into()),
        (set("hello", "/holds/0", json!(null)), "hello.holds[0] must be an object".into()),
        (set("hello", "/holds/0", json!(["r1", "b"])), "hello.holds[0] must be an object".into()),
        (holds(257), "hello.holds must be at most 256".into()),
        (repeated, "hello.holds[1] repeats the id of an earlier one".into()),
        (set("hello", "/holds/0/expires_at", json!(10)), "hello.holds[0].expires_at must be after begun_at".into()),
        (set("hello", "/holds/0/expires_at", json!(9)), "hello.holds[0].expires_at must be after begun_at".into()),
        (set("hello", "/holds/0/count", json!(0)), "hello.holds[0].count must be 1 or more".into()),
        (set("hello", "/holds/0/cost", json!(-1)), format!("hello.holds[0].cost {units}")),
        (set("snapshot", "/holds/0/cost", json!(2.5001)), format!("snapshot.holds[0].cost {units}")),
        (set("grant", "/hold/cost", json!("2.5")), format!("grant.hold.cost {units}")),
        (set("grant", "/hold/cost", json!(Units::MAX.to_number() + 1.0)), format!("grant.hold.cost {units}")),
        (without("hello", "/holds/0/expires_at"), "hello.holds[0].expires_at is missing".into()),
        (set("grant", "/hold/slots", json!(-1)), "grant.hold.slots must be a whole number from 0 to 4294967295".into()),
        (set("grant", "/hold/count", json!(1.5)), "grant.hold.count must be a whole number from 0 to 4294967295".into()),
        (without("grant", "/hold"), "grant.hold is missing".into()),
        // Numbers: of another type, fractional, negative, out of range, null.
        (without("state", "/state"), "state.state is missing".into()),
        (set("state", "/state/revision", json!("3")), format!("state.state.revision {whole}")),
        (set("state", "/state/revision", json!(3.5)), format!("state.state.revision {whole}")),
        (set("state", "/state/revision", json!(-1)), format!("state.state.revision {whole}")),
        (set("snapshot", "/state/revision", json!("x")), format!("snapshot.state.revision {whole}")),
        (set("state", "/stamp/at", json!(5.5)), format!("state.stamp.at {millis}")),
        (set("state", "/stamp/at", json!("5")), format!("state.stamp.at {millis}")),
        (set("state", "/stamp/epoch", json!(OVER)), format!("state.stamp.epoch {whole}")),
        (set("state", "/stamp/epoch", json!(-1)), format!("state.stamp.epoch {whole}")),
        (set("state", "/stamp/seq", json!(1e300)), format!("state.stamp.seq {whole}")),
        (set("state", "/stamp/seq", json!(true)), format!("state.stamp.seq {whole}")),
        (set("ask", "/count", json!(4_294_967_296u64)), "ask.count must be a whole number from 0 to 4294967295".into()),
        (set("ask", "/count", json!("2")), "ask.count must be a whole number from 0 to 4294967295".into()),
        (without("current", "/revision"), "current.revision is missing".into()),
        (set("current", "/stamp/at", json!(-(OVER as i64))), format!("current.stamp.at {millis}")),
        (set("current", "/stamp/at", json!(OVER)), format!("current.stamp.at {millis}")),
        (set("current", "/stamp/at", json!(null)), "current.stamp.at is missing".into()),
        (without("bye", "/epoch"), "bye.epoch is missing".into()),
        // Links.
        (set("snapshot", "/link/state", json!("up")), "snapshot.link.state must be one of: manual, connecting, live, paused, reconnecting".into()),
        (set("snapshot", "/link/state", json!("reconnecting:1")), "snapshot.link.state must be one of".into()),
        (without("snapshot", "/link/attempt"), "snapshot.link.attempt is missing".into()),
        (set("snapshot", "/link/attempt", json!(-1)), "snapshot.link.attempt must be a whole number from 0 to 4294967295".into()),
        (without("link", "/link"), "link.link is missing".into()),
        (without("link", "/link/state"), "link.link.state is missing".into()),
        // Ends.
        (set("ended", "/end", json!("lost")), "ended.end must be one of: confirmed, refused, failed, timed_out".into()),
        (set("ended", "/end", json!("timedOut")), "ended.end must be one of".into()),
        (without("ended", "/end"), "ended.end is missing".into()),
        // An array, a string or a number where an object must be: the
        // error names that field.
        (set("grant", "/hold", json!([good_hold("r1".into())])), "grant.hold".into()),
        (set("grant", "/stamp", json!(["L", 1, 1, 5])), "grant.stamp".into()),
        (set("link", "/link", json!("live")), "link.link".into()),
        (set("state", "/state", json!("{}")), "state.state".into()),
        (set("snapshot", "/state", json!(["{}"])), "snapshot.state".into()),
        (set("current", "/stamp", json!(5)), "current.stamp".into()),
    ];
    for (input, want) in &cases {
        let shown: String = input.to_string().chars().take(300).collect();
        match read_msg(input) {
            Ok(m) => panic!("{shown} read as {m:?}"),
            Err(e) => {
                let msg = e.to_string();
                let fault = msg.strip_prefix("malformed tab message: ").unwrap_or_else(|| panic!("{msg:?}"));
                assert!(fault.starts_with(want.as_str()), "{shown}: {msg:?} should say {want:?}");
            }
        }
    }
    assert_eq!(read_msg(&set("bye", "/from", json!("a".repeat(201)))).unwrap_err().0, "bye.from is longer than 200 bytes");
}

#[test]
fn the_scope_separates_endpoints_and_accounts_and_spells_out_neither() {
    let a = tabs::scope("/api", "acct-1");
    assert_eq!(tabs::PROTOCOL, "qw2", "messages as plain objects");
    assert_eq!(a, tabs::scope("/api", "acct-1"), "the same for every tab");
    assert!(a.starts_with("quota-widget/qw2/"), "{a}");
    assert_ne!(a, tabs::scope("/api", "acct-2"));
    assert_ne!(a, tabs::scope("/other", "acct-1"));
    // The separator keeps ("/ap", "iacct") and ("/api", "acct") apart.
    assert_ne!(tabs::scope("/ap", "i"), tabs::scope("/api", ""));
    assert!(!a.contains("acct") && !a.contains("/api"), "{a}");
}

#[test]
fn a_message_claiming_the_largest_epoch_leaves_a_new_leader_one_it_can_still_write() {
    // Any script of the page's origin can post on the channel: a claim of
    // the largest epoch must not make the next leader stamp one past what a
    // message carries (the browser's writer would post null in its place).
    let mut b = Tab::new("b");
    let claim = TabMsg::Current { stamp: Stamp { leader: "x".into(), epoch: EXACT, seq: 1, at: T0 }, revision: 1 };
    b.take(&[claim], T0);
    let out = posts(&b.t.lead(&mut b.q, T0 + 1));
    let [TabMsg::Snapshot { stamp, .. }] = &out[..] else { panic!("{out:?}") };
    assert_eq!(stamp.epoch, EXACT);
    let carried = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(TabMsg::read(&J(carried)), Ok(out[0].clone()), "it reads back");
}

#[test]
fn refusals_among_tabs_are_worded_by_the_page_s_table() {
    let (mut l, _) = leader(&state(1));
    let mut a = join(&mut l, "A", T0);
    let mut b = join(&mut l, "B", T0);
    a.t.word(&Keyed::new());
    assert_eq!(a.t.text(Why::Handover), keyed(Msg::TabHandover));
    assert_eq!(a.t.text(Why::NoAnswer), keyed(Msg::TabNoAnswer));
    assert_eq!(a.t.text(Why::Duplicate), keyed(Msg::TabDuplicate));
    // A handover cancels A's ask with A's own words.
    posts(&a.t.submit(&mut a.q, "r1".into(), SETTLED).unwrap());
    let lead = posts(&b.t.lead(&mut b.q, SETTLED + 1));
    let out = a.take(&lead, SETTLED + 1);
    assert_eq!(cancels(&out), vec![("r1".to_owned(), keyed(Msg::TabHandover))]);
    // An ask that is never answered: the page's words again.
    let mut c = join(&mut l, "C", T0);
    c.t.word(&Keyed::new());
    posts(&c.t.submit(&mut c.q, "r2".into(), SETTLED).unwrap());
    let out = c.t.tick(&mut c.q, SETTLED + 60_000);
    assert_eq!(cancels(&out), vec![("r2".to_owned(), keyed(Msg::TabNoAnswer))]);
}
