//! Property tests: random interleavings of server states (in order, out of
//! order, duplicated, stale, malformed), clicks, refusals, successes,
//! failures and the clock, against a small model of the server. The rules
//! are checked after every step.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use proptest::prelude::*;
use quota_widget::core::wire::*;
use quota_widget::core::*;

#[derive(Clone, Debug)]
enum Op {
    /// The user clicks submit for `count` items of kind `kind`.
    Click { kind: usize, count: u32 },
    /// The server receives the n-th request still in transit.
    Receive { n: usize },
    /// The dashboard reports the n-th request in transit refused or failed,
    /// without the server ever seeing it (network error).
    Report { n: usize, refused: bool },
    /// The n-th running task ends on the server.
    End { n: usize, success: bool },
    /// The client receives the server's k-th newest state (0 = latest).
    Deliver { back: usize },
    /// The client receives a state that breaks the contract.
    Malformed,
    /// The link drops or comes back.
    Link { up: bool },
    Tick { ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..6u32).prop_map(|(kind, count)| Op::Click { kind, count }),
        3 => (0..4usize).prop_map(|n| Op::Receive { n }),
        1 => (0..4usize, any::<bool>()).prop_map(|(n, refused)| Op::Report { n, refused }),
        3 => (0..4usize, any::<bool>()).prop_map(|(n, success)| Op::End { n, success }),
        4 => (0..4usize).prop_map(|back| Op::Deliver { back }),
        1 => Just(Op::Malformed),
        1 => any::<bool>().prop_map(|up| Op::Link { up }),
        2 => (0..12_000i64).prop_map(|ms| Op::Tick { ms }),
    ]
}

const KINDS: [&str; 2] = ["image", "video"];

/// The server, reduced to what the rules need.
struct Model {
    state: ServerState,
    history: Vec<ServerState>,
    next_task: u64,
    /// Requests the client sent that the server has not received.
    in_transit: Vec<Hold>,
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
        let t = self.state.running.remove(n);
        self.state.pools.iter_mut().find(|p| p.kind == t.kind).unwrap().in_use -= t.slots;
        let mut charged = Units::ZERO;
        if success {
            // Earliest expiry first (the packages are in that order).
            let mut due = t.reserved_units;
            for p in &mut self.state.packages {
                let take = due.min(p.remaining);
                p.remaining = p.remaining.saturating_sub(take);
                due = due.saturating_sub(take);
                charged += take;
            }
        }
        self.finish(FinishedTask {
            id: t.id,
            kind: t.kind,
            slots: t.slots,
            outcome: if success { Outcome::Succeeded } else { Outcome::Failed },
            units_charged: charged,
            reason: (!success).then(|| "content moderation".into()),
            client_request_id: t.client_request_id,
            finished_at_ms: T0,
        });
        self.publish();
    }
}

fn remaining_of(s: &ServerState) -> Units {
    s.packages.iter().filter(|p| p.status == PackageStatus::Active).map(|p| p.remaining).sum()
}

fn run(limit: u32, units: u64, image_cost: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::new(limit, units, image_cost);
    let mut q = Quota::new(Config { stale_after_ms: 60_000, ..Config::default() });
    let timeout = q.config().hold_timeout_ms;
    let mut now = T0;
    q.apply_state(model.state.clone(), now).unwrap();
    // The highest revision the client accepted, and its remaining units.
    let mut shown = model.state.clone();
    let mut ids = 0u64;
    // What the widget renders from: a long-lived viewer that reuses rows and
    // remembers formatting. It must show exactly what a fresh view shows.
    let mut viewer = Viewer::new(Memo::new(PlainFmt));

    for op in ops {
        let before = q.view(now, &PlainFmt);
        let mut must_keep_units = false;
        match op {
            Op::Click { kind, count } => {
                q.set_request(KINDS[kind], count);
                let gate = q.view(now, &PlainFmt);
                ids += 1;
                let res = q.begin_submit(format!("c{ids}"), now);
                prop_assert_eq!(res.is_ok(), gate.enabled, "a click passes exactly when the gate is open");
                if let Ok(h) = res {
                    // The gate opened: slots in use plus holds, this one
                    // included, stay within the limit; the cost was available.
                    let pool = shown.pools.iter().find(|p| p.kind == h.kind).unwrap();
                    let held: u32 = q.holds().iter().filter(|x| x.kind == h.kind).map(|x| x.slots).sum();
                    prop_assert!(pool.in_use + held <= pool.limit, "R1/R7 overshoot: {} + {} > {}", pool.in_use, held, pool.limit);
                    let avail_before = before.units.as_ref().unwrap().available;
                    prop_assert!(h.cost <= avail_before, "R2: cost {} > available {}", h.cost, avail_before);
                    model.in_transit.push(h);
                }
                must_keep_units = true;
            }
            Op::Receive { n } => {
                if n < model.in_transit.len() {
                    let h = model.in_transit.remove(n);
                    model.receive(h);
                }
                must_keep_units = true;
            }
            Op::Report { n, refused } => {
                if n < model.in_transit.len() {
                    let h = model.in_transit.remove(n);
                    let end = if refused { HoldEnd::Refused } else { HoldEnd::Failed };
                    q.end_hold(&h.id, end, None, now);
                }
                must_keep_units = true;
            }
            Op::End { n, success } => {
                if n < model.state.running.len() {
                    if !success {
                        // Catch the client up first, so that this step
                        // isolates the failure from earlier deductions.
                        let s = model.state.clone();
                        if s.revision > shown.revision {
                            q.apply_state(s.clone(), now).unwrap();
                            shown = s;
                        }
                    }
                    let before = q.view(now, &PlainFmt);
                    model.end(n, success);
                    if !success {
                        // Deliver the failure right away: the units shown
                        // must not move, neither now nor at any later step.
                        let s = model.state.clone();
                        q.apply_state(s.clone(), now).unwrap();
                        shown = s;
                        let after = q.view(now, &PlainFmt);
                        prop_assert_eq!(
                            after.units.as_ref().unwrap().remaining,
                            before.units.as_ref().unwrap().remaining,
                            "R3: a failure moved the units shown"
                        );
                    }
                }
            }
            Op::Deliver { back } => {
                let k = model.history.len().saturating_sub(1 + back);
                let s = model.history[k].clone();
                let applied = q.apply_state(s.clone(), now).unwrap();
                if s.revision > shown.revision {
                    prop_assert_eq!(applied, machine::Applied::Newer);
                    shown = s;
                } else {
                    prop_assert_ne!(applied, machine::Applied::Newer);
                }
            }
            Op::Malformed => {
                let mut bad = model.state.clone();
                bad.revision += 100;
                bad.packages[0].remaining = bad.packages[0].total + Units::from_milli(1);
                prop_assert!(q.apply_state(bad, now).is_err());
                must_keep_units = true;
            }
            Op::Link { up } => {
                q.set_link(if up { Link::Live } else { Link::Reconnecting { attempt: 1 } });
                must_keep_units = true;
            }
            Op::Tick { ms } => {
                now += ms;
                q.tick(now);
                q.confirm_current(now);
                must_keep_units = true;
            }
        }
        let v = q.view(now, &PlainFmt);
        prop_assert_eq!(&viewer.view(&q, now), &v, "the cached view differs from a fresh one");
        let units = v.units.as_ref().unwrap();
        // Remaining shown is exactly the newest accepted state's remaining.
        prop_assert_eq!(units.remaining, remaining_of(&shown));
        if must_keep_units {
            prop_assert_eq!(units.remaining, before.units.as_ref().unwrap().remaining);
        }
        // R4: the revision shown never goes back.
        prop_assert!(v.revision >= before.revision);
        prop_assert_eq!(v.revision, Some(shown.revision));
        // The gate, when open, leaves room for the request.
        if v.enabled {
            let (kind, count) = q.request();
            let pool = shown.pools.iter().find(|p| p.kind == kind).unwrap();
            let held: u32 = q.holds().iter().filter(|x| x.kind == kind).map(|x| x.slots).sum();
            prop_assert!(pool.in_use + held + pool.slot_rule.slots_for(count) <= pool.limit);
            prop_assert!(units.available >= pool.unit_cost.times(count));
            prop_assert!(!matches!(q.link(), Link::Reconnecting { .. }), "R5: gate open while the link is down");
        }
        // No hold outlives its timeout.
        prop_assert!(q.holds().iter().all(|h| now - h.begun_at < timeout));
        // Nothing failed or refused is ever shown as charged.
        for a in &v.attempts {
            if !matches!(a.status, AttemptStatus::Succeeded) {
                prop_assert_eq!(a.charged, Units::ZERO);
            }
        }
    }
    // Every hold ends: confirmed, reported, or timed out.
    now += timeout;
    q.tick(now);
    prop_assert!(q.holds().is_empty());
    Ok(())
}

/// Cases per property: `QW_PROP_CASES` (default 512, the quick count that
/// `scripts/test` runs).
fn cases() -> u32 {
    std::env::var("QW_PROP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn rules_hold_at_every_step(
        limit in 1..6u32,
        units in 0..40_000u64,
        image_cost in prop::sample::select(vec![100u64, 200, 300, 250, 1_000, 2_000, 2_500]),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(limit, units, image_cost, ops)?;
    }
}
