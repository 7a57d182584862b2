//! Property tests: random interleavings of server states (in order, out of
//! order, duplicated, stale, malformed), clicks, refusals, successes,
//! failures, link drops, the clock and its jumps, over one to three tabs
//! (each its own widget) on one account, against a small model of the
//! server. The rules are checked in every tab after every step.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use proptest::prelude::*;
use quota_widget::core::wire::*;
use quota_widget::core::*;

#[derive(Clone, Debug)]
enum Op {
    /// The user clicks submit in tab `tab` for `count` items of kind `kind`.
    Click { tab: usize, kind: usize, count: u32 },
    /// The server receives the n-th request still in transit.
    Receive { n: usize },
    /// The dashboard reports the n-th request in transit refused or failed,
    /// without the server ever seeing it (network error).
    Report { n: usize, refused: bool },
    /// The n-th running task ends on the server.
    End { n: usize, success: bool },
    /// Tab `tab` receives the server's k-th newest state (0 = latest).
    Deliver { tab: usize, back: usize },
    /// Tab `tab` receives a state that breaks the contract.
    Malformed { tab: usize },
    /// Tab `tab`'s link drops or comes back.
    Link { tab: usize, up: bool },
    /// Time passes for every tab, confirmed by a ping.
    Tick { ms: i64 },
    /// The clock jumps ahead with nothing heard meanwhile: a laptop that
    /// slept, a tab the browser froze. (The shell's clock is monotonic, so
    /// it never jumps back.)
    Jump { ms: i64 },
}

/// Tabs of one browser on the same account, each with its own widget.
const TABS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TABS, 0..2usize, 0..6u32).prop_map(|(tab, kind, count)| Op::Click { tab, kind, count }),
        3 => (0..4usize).prop_map(|n| Op::Receive { n }),
        1 => (0..4usize, any::<bool>()).prop_map(|(n, refused)| Op::Report { n, refused }),
        3 => (0..4usize, any::<bool>()).prop_map(|(n, success)| Op::End { n, success }),
        4 => (0..TABS, 0..4usize).prop_map(|(tab, back)| Op::Deliver { tab, back }),
        1 => (0..TABS).prop_map(|tab| Op::Malformed { tab }),
        1 => (0..TABS, any::<bool>()).prop_map(|(tab, up)| Op::Link { tab, up }),
        2 => (0..12_000i64).prop_map(|ms| Op::Tick { ms }),
        1 => (60_001..86_400_000i64).prop_map(|ms| Op::Jump { ms }),
    ]
}

const KINDS: [&str; 2] = ["image", "video"];

/// The server, reduced to what the rules need.
struct Model {
    state: ServerState,
    history: Vec<ServerState>,
    next_task: u64,
    /// Requests the tabs sent that the server has not received, with the
    /// tab that sent each.
    in_transit: Vec<(usize, Hold)>,
}

impl Model {
    /// `units` and `image_cost` in thousandths: fractional amounts such as
    /// 0.1, 0.2 and 0.3 go through every rule.
    fn new(limit: u32, units: u64, image_cost: u64) -> Model {
        let mut s = state(1);
        s.pools[0].limit = limit;
        s.pools[0].unit_cost = Units::from_milli(image_cost);
        let mut a = package("a", 0, 0, 2);
        let mut b = package("b", 0, 0, 20);
        for p in [&mut a, &mut b] {
            p.total = Units::from_milli(units);
            p.remaining = Units::from_milli(units);
            p.status = PackageStatus::Active;
        }
        s.packages = vec![a, b];
        Model { history: vec![s.clone()], state: s, next_task: 0, in_transit: vec![] }
    }

    fn publish(&mut self) {
        self.state.revision += 1;
        self.history.push(self.state.clone());
    }

    fn available(&self) -> Units {
        let rem: Units = self.state.packages.iter().map(|p| p.remaining).sum();
        rem.checked_sub(self.state.running.iter().map(|t| t.reserved_units).sum()).expect("the model reserves what it has")
    }

    fn finish(&mut self, t: FinishedTask) {
        self.state.finished.insert(0, t);
        self.state.finished.truncate(10);
    }

    fn receive(&mut self, h: Hold) {
        let available = self.available();
        let pool = self.state.pools.iter_mut().find(|p| p.kind == h.kind).unwrap();
        let fits = pool.in_use + h.slots <= pool.limit;
        let id = format!("t{}", self.next_task);
        self.next_task += 1;
        if fits && available >= h.cost {
            pool.in_use += h.slots;
            self.state.running.push(RunningTask {
                id,
                kind: h.kind,
                slots: h.slots,
                reserved_units: h.cost,
                client_request_id: Some(h.id),
                started_at_ms: T0,
            });
        } else {
            self.finish(FinishedTask {
                id,
                kind: h.kind,
                slots: h.slots,
                outcome: Outcome::Refused,
                units_charged: Units::ZERO,
                reason: Some("parallel task over resource pack limit".into()),
                client_request_id: Some(h.id),
                finished_at_ms: T0,
            });
        }
        self.publish();
    }

    fn end(&mut self, n: usize, success: bool) {
        let done = end_running(&mut self.state, n, success, (!success).then(|| "content moderation".into()));
        self.finish(done);
        self.publish();
    }
}

fn remaining_of(s: &ServerState) -> Units {
    s.packages.iter().filter(|p| p.status == PackageStatus::Active).map(|p| p.remaining).sum()
}

/// One tab: its widget, the newest state it accepted, and the long-lived
/// viewer it renders from (which must show exactly what a fresh view shows).
struct Tab {
    q: Quota,
    shown: ServerState,
    viewer: Viewer<Memo<PlainFmt>>,
}

fn run(limit: u32, units: u64, image_cost: u64, tabs: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::new(limit, units, image_cost);
    let mut now = T0;
    let mut tabs: Vec<Tab> = (0..tabs)
        .map(|_| {
            let mut q = Quota::new(Config { stale_after_ms: 60_000, ..Config::default() });
            q.apply_state(model.state.clone(), now).unwrap();
            Tab { q, shown: model.state.clone(), viewer: Viewer::new(Memo::new(PlainFmt)) }
        })
        .collect();
    let timeout = tabs[0].q.config().hold_timeout_ms;
    let mut ids = 0u64;

    for op in ops {
        let before: Vec<ViewModel> = tabs.iter().map(|t| t.q.view(now, &PlainFmt)).collect();
        // Tabs that took a state in this step: only these may show other units.
        let mut delivered = vec![false; tabs.len()];
        match op {
            Op::Click { tab, kind, count } => {
                let Some(t) = tabs.get_mut(tab) else { continue };
                t.q.set_request(KINDS[kind], count);
                let gate = t.q.view(now, &PlainFmt);
                ids += 1;
                let res = t.q.begin_submit(format!("c{ids}"), now);
                prop_assert_eq!(res.is_ok(), gate.enabled, "a click passes exactly when the gate is open");
                if let Ok(h) = res {
                    // The gate opened: slots in use plus this tab's holds,
                    // this one included, stay within the limit (R1, R7);
                    // the cost was available (R2).
                    let pool = t.shown.pools.iter().find(|p| p.kind == h.kind).unwrap();
                    let held: u32 = t.q.holds().iter().filter(|x| x.kind == h.kind).map(|x| x.slots).sum();
                    prop_assert!(pool.in_use + held <= pool.limit, "R1/R7 overshoot: {} + {} > {}", pool.in_use, held, pool.limit);
                    let avail_before = before[tab].units.as_ref().unwrap().available;
                    prop_assert!(h.cost <= avail_before, "R2: cost {} > available {}", h.cost, avail_before);
                    model.in_transit.push((tab, h));
                }
            }
            Op::Receive { n } => {
                if n < model.in_transit.len() {
                    let (_, h) = model.in_transit.remove(n);
                    model.receive(h);
                    // The server never runs more than the limit, whatever
                    // several tabs sent.
                    for p in &model.state.pools {
                        prop_assert!(p.in_use <= p.limit, "the server overshot {}: {} > {}", p.kind, p.in_use, p.limit);
                    }
                }
            }
            Op::Report { n, refused } => {
                if n < model.in_transit.len() {
                    let (tab, h) = model.in_transit.remove(n);
                    let end = if refused { HoldEnd::Refused } else { HoldEnd::Failed };
                    tabs[tab].q.end_hold(&h.id, end, None, now);
                }
            }
            Op::End { n, success } => {
                if n < model.state.running.len() {
                    if !success {
                        // Catch every tab up first, so that this step
                        // isolates the failure from earlier deductions.
                        let s = model.state.clone();
                        for t in &mut tabs {
                            if s.revision > t.shown.revision {
                                t.q.apply_state(s.clone(), now).unwrap();
                                t.shown = s.clone();
                            }
                        }
                    }
                    let caught_up: Vec<ViewModel> = tabs.iter().map(|t| t.q.view(now, &PlainFmt)).collect();
                    model.end(n, success);
                    if !success {
                        // Deliver the failure to every tab right away: the
                        // units shown must not move, neither now nor later.
                        let s = model.state.clone();
                        for (i, t) in tabs.iter_mut().enumerate() {
                            t.q.apply_state(s.clone(), now).unwrap();
                            t.shown = s.clone();
                            delivered[i] = true;
                            let after = t.q.view(now, &PlainFmt);
                            prop_assert_eq!(
                                after.units.as_ref().unwrap().remaining,
                                caught_up[i].units.as_ref().unwrap().remaining,
                                "R3: a failure moved the units shown"
                            );
                        }
                    }
                }
            }
            Op::Deliver { tab, back } => {
                let Some(t) = tabs.get_mut(tab) else { continue };
                let k = model.history.len().saturating_sub(1 + back);
                let s = model.history[k].clone();
                let applied = t.q.apply_state(s.clone(), now).unwrap();
                if s.revision > t.shown.revision {
                    prop_assert_eq!(applied, machine::Applied::Newer);
                    t.shown = s;
                    delivered[tab] = true;
                } else {
                    prop_assert_ne!(applied, machine::Applied::Newer);
                }
            }
            Op::Malformed { tab } => {
                let Some(t) = tabs.get_mut(tab) else { continue };
                let mut bad = model.state.clone();
                bad.revision += 100;
                bad.packages[0].remaining = bad.packages[0].total + Units::from_milli(1);
                prop_assert!(t.q.apply_state(bad, now).is_err());
            }
            Op::Link { tab, up } => {
                let Some(t) = tabs.get_mut(tab) else { continue };
                t.q.set_link(if up { Link::Live } else { Link::Reconnecting { attempt: 1 } });
            }
            Op::Tick { ms } => {
                now += ms;
                for t in &mut tabs {
                    t.q.tick(now);
                    t.q.confirm_current(now);
                }
            }
            Op::Jump { ms } => {
                now += ms;
                for t in &mut tabs {
                    t.q.tick(now);
                    // Nothing was heard meanwhile: the state is stale (R5).
                    prop_assert!(!t.q.view(now, &PlainFmt).enabled, "R5: gate open after {} ms of silence", ms);
                }
            }
        }
        for (i, t) in tabs.iter_mut().enumerate() {
            let v = t.q.view(now, &PlainFmt);
            prop_assert_eq!(&t.viewer.view(&t.q, now), &v, "the cached view differs from a fresh one");
            let units = v.units.as_ref().unwrap();
            // Remaining shown is exactly the newest accepted state's remaining.
            prop_assert_eq!(units.remaining, remaining_of(&t.shown));
            if !delivered[i] {
                prop_assert_eq!(units.remaining, before[i].units.as_ref().unwrap().remaining, "units moved without a state");
            }
            // R4: the revision shown never goes back.
            prop_assert!(v.revision >= before[i].revision);
            prop_assert_eq!(v.revision, Some(t.shown.revision));
            // The gate, when open, leaves room for the request.
            if v.enabled {
                let (kind, count) = t.q.request();
                let pool = t.shown.pools.iter().find(|p| p.kind == kind).unwrap();
                let held: u32 = t.q.holds().iter().filter(|x| x.kind == kind).map(|x| x.slots).sum();
                prop_assert!(pool.in_use + held + pool.slot_rule.slots_for(count) <= pool.limit);
                prop_assert!(units.available >= pool.unit_cost.times(count));
                prop_assert!(!matches!(t.q.link(), Link::Reconnecting { .. }), "R5: gate open while the link is down");
            }
            // No hold outlives its timeout.
            prop_assert!(t.q.holds().iter().all(|h| now - h.begun_at < timeout));
            // Nothing failed or refused is ever shown as charged.
            for a in &v.attempts {
                if !matches!(a.status, AttemptStatus::Succeeded) {
                    prop_assert_eq!(a.charged, Units::ZERO);
                }
            }
        }
    }
    // Every hold ends: confirmed, reported, or timed out.
    now += timeout;
    for t in &mut tabs {
        t.q.tick(now);
        prop_assert!(t.q.holds().is_empty());
    }
    Ok(())
}


proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases(), ..ProptestConfig::default() })]

    #[test]
    fn rules_hold_at_every_step(
        limit in 1..6u32,
        units in 0..40_000u64,
        image_cost in prop::sample::select(vec![100u64, 200, 300, 250, 1_000, 2_000, 2_500]),
        tabs in 1..=TABS,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(limit, units, image_cost, tabs, ops)?;
    }
}
