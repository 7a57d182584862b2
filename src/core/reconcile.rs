//! Reconciles an upstream service's lagging balance with the charges this
//! server has seen (issue: the service's balance can lag its own deductions
//! by hours). Pure: syncs and charges go in as values, figures come out.
//!
//! The rule, by amounts (the service says how much each pack has left, never
//! which task a deduction was for):
//! - A **charge** is a task this server saw succeed, with the service's final
//!   deduction. It is *pending* until the service's figure reflects it, and
//!   the figure shown is the service's minus what is pending.
//! - At each **sync**, the *drop* is how much the packs that were online at
//!   the previous sync lost since: an online pack's decrease, or all of a pack
//!   that ran out. A pack that expired or vanished is not a drop (its units
//!   lapsed, nobody spent them); a pack that grew (a refund) is not either.
//! - The drop reflects pending charges, oldest first, amount by amount. What
//!   is left of it is *credit*: a deduction the service made before this
//!   server heard of it (a callback that came late), or someone else's
//!   spending on the same account. A charge recorded later uses credit first,
//!   so a deduction is never counted twice, and credit lapses after
//!   `credit_ms`: past that, the drop was someone else's, and the service's
//!   lower figure is shown as it is.
//! - A charge still pending after `window_ms` (by default a day: twice the
//!   lag the service documents) is taken as reflected and reported, so that a
//!   figure never stays below the service's forever.
//!
//! A failed or refused task is never a charge, so it never moves the figure.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::wire::{Millis, Units};

/// A pack as the service reports it at a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackFigure {
    pub id: String,
    pub remaining: Units,
    pub standing: Standing,
}

/// What the service says of a pack, as far as spending goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Can pay (online and unexpired).
    Online,
    /// Used up.
    RunOut,
    /// Not yet effective, or expired: its units are not spendable.
    Idle,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    task: String,
    left: Units,
    at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Credit {
    left: Units,
    at: Millis,
}

/// What a sync decided, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// How much the online packs lost since the previous sync.
    pub drop: Units,
    /// How much of that reflected pending charges.
    pub reflected: Units,
    /// Tasks whose charge was still pending after the window: taken as
    /// reflected.
    pub lapsed: Vec<String>,
}

/// Serializable, so that a server keeps it across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    window_ms: Millis,
    credit_ms: Millis,
    pending: VecDeque<Pending>,
    credit: VecDeque<Credit>,
    /// The online packs at the last sync.
    last: Option<Vec<(String, Units)>>,
}

impl Ledger {
    /// Defaults: charges lapse after a day, credit after ten minutes.
    pub const WINDOW_MS: Millis = 24 * 3_600_000;
    pub const CREDIT_MS: Millis = 10 * 60_000;

    pub fn new(window_ms: Millis, credit_ms: Millis) -> Ledger {
        Ledger { window_ms, credit_ms, pending: VecDeque::new(), credit: VecDeque::new(), last: None }
    }

    /// Units charged here that the service's figure does not show yet.
    pub fn pending(&self) -> Units {
        self.pending.iter().map(|p| p.left).sum()
    }

    /// Tasks with a charge not yet reflected, oldest first.
    pub fn pending_tasks(&self) -> impl Iterator<Item = (&str, Units)> {
        self.pending.iter().map(|p| (p.task.as_str(), p.left))
    }

    /// A task succeeded and the service deducted `amount` for it. Call once
    /// per task (the store ends a task once).
    pub fn charge(&mut self, task: String, amount: Units, at: Millis) {
        self.lapse_credit(at);
        let mut left = amount;
        // A deduction the service already showed (credit) pays first.
        while !left.is_zero() {
            let Some(c) = self.credit.front_mut() else { break };
            let take = c.left.min(left);
            c.left = c.left.saturating_sub(take);
            left = left.saturating_sub(take);
            if c.left.is_zero() {
                self.credit.pop_front();
            }
        }
        if !left.is_zero() {
            self.pending.push_back(Pending { task, left, at });
        }
    }

    /// The service's figures at `now`.
    pub fn sync(&mut self, packs: &[PackFigure], now: Millis) -> SyncReport {
        let mut report = SyncReport::default();
        if let Some(last) = &self.last {
            for (id, before) in last {
                match packs.iter().find(|p| &p.id == id) {
                    Some(p) if p.standing == Standing::Online => {
                        report.drop += before.saturating_sub(p.remaining);
                    }
                    Some(p) if p.standing == Standing::RunOut => report.drop += *before,
                    // Expired, not effective, or gone: lapsed, not spent.
                    _ => {}
                }
            }
        }
        let mut drop = report.drop;
        while !drop.is_zero() {
            let Some(p) = self.pending.front_mut() else { break };
            let take = p.left.min(drop);
            p.left = p.left.saturating_sub(take);
            drop = drop.saturating_sub(take);
            report.reflected += take;
            if p.left.is_zero() {
                self.pending.pop_front();
            }
        }
        if !drop.is_zero() {
            self.credit.push_back(Credit { left: drop, at: now });
        }
        self.lapse_credit(now);
        while self.pending.front().is_some_and(|p| now - p.at >= self.window_ms) {
            if let Some(p) = self.pending.pop_front() {
                report.lapsed.push(p.task);
            }
        }
        self.last = Some(
            packs.iter().filter(|p| p.standing == Standing::Online).map(|p| (p.id.clone(), p.remaining)).collect(),
        );
        report
    }

    fn lapse_credit(&mut self, now: Millis) {
        while self.credit.front().is_some_and(|c| now - c.at >= self.credit_ms) {
            self.credit.pop_front();
        }
    }

    /// Each online pack's figure to show, in the order given (the order the
    /// service is expected to spend them, earliest expiry first): pending
    /// charges are taken from the first packs first. The sum is exact; which
    /// pack the service charged is its own business.
    pub fn shown(&self, packs: &[PackFigure]) -> Vec<Units> {
        let mut owed = self.pending();
        packs
            .iter()
            .map(|p| {
                if p.standing != Standing::Online {
                    return p.remaining;
                }
                let take = p.remaining.min(owed);
                owed = owed.saturating_sub(take);
                p.remaining.saturating_sub(take)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(milli: u64) -> Units {
        Units::from_milli(milli)
    }

    fn online(id: &str, milli: u64) -> PackFigure {
        PackFigure { id: id.into(), remaining: u(milli), standing: Standing::Online }
    }

    fn ledger() -> Ledger {
        Ledger::new(Ledger::WINDOW_MS, Ledger::CREDIT_MS)
    }

    #[test]
    fn the_service_catches_up() {
        let mut l = ledger();
        l.sync(&[online("a", 10_000)], 0);
        l.charge("t1".into(), u(1_500), 10);
        assert_eq!(l.shown(&[online("a", 10_000)]), vec![u(8_500)], "lagging: our charge shows at once");
        let r = l.sync(&[online("a", 8_500)], 20);
        assert_eq!((r.drop, r.reflected), (u(1_500), u(1_500)));
        assert_eq!(l.pending(), Units::ZERO);
        assert_eq!(l.shown(&[online("a", 8_500)]), vec![u(8_500)], "caught up: counted once");
    }

    #[test]
    fn the_service_catches_up_partly() {
        let mut l = ledger();
        l.sync(&[online("a", 10_000)], 0);
        l.charge("t1".into(), u(1_000), 10);
        l.charge("t2".into(), u(250), 11);
        l.sync(&[online("a", 9_000)], 20);
        assert_eq!(l.pending_tasks().collect::<Vec<_>>(), vec![("t2", u(250))]);
        assert_eq!(l.shown(&[online("a", 9_000)]), vec![u(8_750)]);
    }

    #[test]
    fn the_service_never_catches_up_within_the_window() {
        let mut l = ledger();
        l.sync(&[online("a", 10_000)], 0);
        l.charge("t1".into(), u(1_000), 10);
        let r = l.sync(&[online("a", 10_000)], 10 + Ledger::WINDOW_MS);
        assert_eq!(r.lapsed, vec!["t1".to_owned()]);
        assert_eq!(l.shown(&[online("a", 10_000)]), vec![u(10_000)], "after the window, the service's figure");
    }

    #[test]
    fn someone_else_spent_units_the_lower_figure_shows() {
        let mut l = ledger();
        l.sync(&[online("a", 10_000)], 0);
        l.charge("t1".into(), u(1_000), 10);
        // Our 1 and another client's 3: the service shows 6.
        l.sync(&[online("a", 6_000)], 20);
        assert_eq!(l.pending(), Units::ZERO);
        assert_eq!(l.shown(&[online("a", 6_000)]), vec![u(6_000)]);
        // The other client's 3 is credit until it lapses; it is never shown twice.
        l.sync(&[online("a", 6_000)], 20 + Ledger::CREDIT_MS);
        l.charge("t2".into(), u(500), 30 + Ledger::CREDIT_MS);
        assert_eq!(l.shown(&[online("a", 6_000)]), vec![u(5_500)]);
    }

    #[test]
    fn a_late_callback_is_not_counted_twice() {
        let mut l = ledger();
        l.sync(&[online("a", 10_000)], 0);
        // The service deducted (no lag) before this server heard the task end.
        l.sync(&[online("a", 9_750)], 10);
        l.charge("t1".into(), u(250), 11);
        assert_eq!(l.shown(&[online("a", 9_750)]), vec![u(9_750)]);
        l.sync(&[online("a", 9_750)], 20);
        assert_eq!(l.shown(&[online("a", 9_750)]), vec![u(9_750)]);
    }

    #[test]
    fn expiry_is_not_spending_and_running_out_is() {
        let mut l = ledger();
        l.sync(&[online("a", 1_000), online("b", 5_000)], 0);
        l.charge("t1".into(), u(1_000), 10);
        let idle = PackFigure { id: "b".into(), remaining: u(5_000), standing: Standing::Idle };
        let out = PackFigure { id: "a".into(), remaining: Units::ZERO, standing: Standing::RunOut };
        let r = l.sync(&[out.clone(), idle.clone()], 20);
        assert_eq!((r.drop, r.reflected), (u(1_000), u(1_000)), "the expired pack's 5 are no drop");
        assert_eq!(l.shown(&[out, idle]), vec![Units::ZERO, u(5_000)]);
    }

    #[test]
    fn pending_charges_are_shown_against_the_first_packs() {
        let mut l = ledger();
        l.sync(&[online("a", 300), online("b", 10_000)], 0);
        l.charge("t1".into(), u(800), 1);
        assert_eq!(l.shown(&[online("a", 300), online("b", 10_000)]), vec![Units::ZERO, u(9_500)]);
    }
}
