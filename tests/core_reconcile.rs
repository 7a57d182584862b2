//! The reconciliation of a lagging upstream balance against a model of the
//! service: our tasks' deductions (whose callbacks come late), other
//! clients' spending, and syncs that report the balance as it was up to
//! twelve hours ago.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::prop_cases;
use proptest::prelude::*;
use quota_widget::core::reconcile::{Ledger, PackFigure, Standing};
use quota_widget::core::wire::{Millis, Units};

const HOUR: Millis = 3_600_000;

#[derive(Clone, Debug)]
enum Op {
    /// A task of ours succeeds upstream, deducting `milli`; this server
    /// hears of it `delay` ms later.
    Ours { milli: u64, delay: Millis },
    /// Another client of the same account spends `milli`.
    Others { milli: u64 },
    /// A sync reporting the balance as it was `lag` ms ago.
    Sync { lag: Millis },
    Wait { ms: Millis },
}

fn op(others: bool) -> impl Strategy<Value = Op> {
    let amount = prop::sample::select(vec![100u64, 200, 300, 250, 1_500, 4_000]);
    prop_oneof![
        3 => (amount.clone(), 0..Ledger::CREDIT_MS / 2).prop_map(|(milli, delay)| Op::Ours { milli, delay }),
        (if others { 1 } else { 0 }) => amount.prop_map(|milli| Op::Others { milli }),
        // Lags short enough to land between a deduction and its callback,
        // and lags of hours, as the service documents.
        2 => (0..Ledger::CREDIT_MS / 2).prop_map(|lag| Op::Sync { lag }),
        2 => (0..12 * HOUR).prop_map(|lag| Op::Sync { lag }),
        1 => (1..Ledger::CREDIT_MS / 2).prop_map(|ms| Op::Wait { ms }),
        1 => (1..HOUR).prop_map(|ms| Op::Wait { ms }),
    ]
}

struct Service {
    /// (time, balance) after every change, oldest first.
    history: Vec<(Millis, u64)>,
    /// The latest snapshot time reported: snapshots never go back.
    reported: Millis,
}

impl Service {
    fn balance_at(&self, t: Millis) -> u64 {
        self.history.iter().rev().find(|(at, _)| *at <= t).map_or(self.history[0].1, |(_, b)| *b)
    }
    fn now(&self) -> u64 {
        self.history.last().unwrap().1
    }
    fn spend(&mut self, at: Millis, milli: u64) {
        let b = self.now().saturating_sub(milli);
        self.history.push((at, b));
    }
}

fn pack(milli: u64) -> [PackFigure; 1] {
    [PackFigure { id: "a".into(), remaining: Units::from_milli(milli), standing: Standing::Online }]
}

fn run(ops: Vec<Op>, others: bool) -> Result<(), TestCaseError> {
    let start = 1_000_000_000;
    let mut now = start;
    let mut svc = Service { history: vec![(start, 1_000_000)], reported: start };
    let mut ledger = Ledger::new(Ledger::WINDOW_MS, Ledger::CREDIT_MS);
    ledger.sync(&pack(svc.now()), now);
    let mut last = svc.now();
    // Our deductions: (deducted at, heard at, amount, recorded?).
    let mut ours: Vec<(Millis, Millis, u64, bool)> = vec![];
    let mut task = 0;
    for op in ops {
        match op {
            Op::Ours { milli, delay } => {
                // Strictly after the last snapshot taken at `now`.
                now += 1;
                svc.spend(now, milli);
                ours.push((now, now + delay, milli, false));
            }
            Op::Others { milli } => {
                now += 1;
                svc.spend(now, milli);
            }
            Op::Sync { lag } => {
                let at = (now - lag).max(svc.reported);
                svc.reported = at;
                last = svc.balance_at(at);
                ledger.sync(&pack(last), now);
            }
            Op::Wait { ms } => now += ms,
        }
        // Callbacks that have arrived by now, in the order they arrive.
        let mut arrived: Vec<usize> = (0..ours.len()).filter(|&i| !ours[i].3 && ours[i].1 <= now).collect();
        arrived.sort_by_key(|&i| ours[i].1);
        for i in arrived {
            ours[i].3 = true;
            task += 1;
            ledger.charge(format!("t{task}"), Units::from_milli(ours[i].2), ours[i].1);
        }
        let shown = ledger.shown(&pack(last))[0].milli();
        // Never above the service's own figure.
        prop_assert!(shown <= last);
        if !others {
            // Alone on the account, with every deduction up to the snapshot
            // heard: exactly the snapshot minus what we heard of since.
            let snap = svc.reported;
            let all_heard_before = ours.iter().filter(|o| o.0 <= snap).all(|o| o.3);
            let recent = ours.iter().filter(|o| o.3 && o.0 > snap).all(|o| now - o.1 < Ledger::WINDOW_MS);
            if all_heard_before && recent {
                let after: u64 = ours.iter().filter(|o| o.3 && o.0 > snap).map(|o| o.2).sum();
                prop_assert_eq!(shown, last.saturating_sub(after), "snapshot {} at {}", last, snap);
            }
        }
    }
    // The service catches up and every callback has come: the figure shown is
    // the service's, each deduction counted exactly once.
    now += Ledger::CREDIT_MS;
    for o in ours.iter_mut().filter(|o| !o.3) {
        o.3 = true;
        task += 1;
        ledger.charge(format!("t{task}"), Units::from_milli(o.2), o.1);
    }
    svc.reported = now;
    ledger.sync(&pack(svc.now()), now);
    prop_assert_eq!(ledger.shown(&pack(svc.now()))[0].milli(), svc.now(), "caught up, pending {:?}", ledger.pending());
    Ok(())
}


proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases(), ..ProptestConfig::default() })]

    #[test]
    fn alone_on_the_account_the_figure_is_exact(ops in prop::collection::vec(op(false), 1..60)) {
        run(ops, false)?;
    }

    #[test]
    fn with_other_clients_the_figure_converges(ops in prop::collection::vec(op(true), 1..60)) {
        run(ops, true)?;
    }
}
