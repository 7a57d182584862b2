//! The quota rules themselves (R1, R2, R6 of the product), as pure
//! functions over figures. The widget's gate ([`super::Quota::blocked`]) and
//! the reference server's submit and settle (in its store's transactions)
//! both decide with these, so a rule is written once.

use super::wire::{Millis, Package, PackageStatus, ServerState, Units};

/// Largest number of items one request may ask for.
pub const MAX_COUNT: u32 = 16;

/// Whether a package's units count towards the remaining units at the
/// server's time `now`: active, effective and not yet expired (R2).
pub fn counts(p: &Package, now: Millis) -> bool {
    p.status == PackageStatus::Active && p.effective_at_ms <= now && now < p.expires_at_ms
}

/// Units in the packages of `s` that count (R2). Holds and reservations do
/// not change it: only a deduction does (R3).
pub fn remaining(s: &ServerState) -> Units {
    s.packages.iter().filter(|p| counts(p, s.server_time_ms)).map(|p| p.remaining).sum()
}

/// A package's status at `now`, for a server that derives it from the
/// package's figures (so that expiry needs no job).
pub fn package_status(remaining: Units, effective_at_ms: Millis, expires_at_ms: Millis, now: Millis) -> PackageStatus {
    if now < effective_at_ms {
        PackageStatus::Pending
    } else if now >= expires_at_ms {
        PackageStatus::Expired
    } else if remaining.is_zero() {
        PackageStatus::Exhausted
    } else {
        PackageStatus::Active
    }
}

/// The figures a request is judged on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// The pool's limit (the plan's figure, not raised by packages).
    pub limit: u32,
    /// Slots taken: by running tasks, and in the widget by its holds.
    pub in_use: u32,
    /// Units in packages that count ([`remaining`]).
    pub spendable: Units,
    /// Units set aside: by running tasks (all kinds: they share the
    /// packages), and in the widget by its holds.
    pub reserved: Units,
}

/// Why a request does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// R1: fewer free slots than the request needs (the service's 1303).
    Slots { free: u32 },
    /// R2: fewer available units than the request costs (1102).
    Units { available: Units },
}

impl Capacity {
    /// R1: limit - slots taken.
    pub fn free_slots(&self) -> u32 {
        self.limit.saturating_sub(self.in_use)
    }

    /// R2: spendable - reserved.
    pub fn available_units(&self) -> Units {
        self.spendable.saturating_sub(self.reserved)
    }

    /// R1 then R2: slots first, because a request over concurrency is
    /// refused even if the units would also be short (slots come back by
    /// waiting; units do not).
    pub fn admit(&self, slots: u32, cost: Units) -> Result<(), Shortfall> {
        let free = self.free_slots();
        if free < slots {
            return Err(Shortfall::Slots { free });
        }
        let available = self.available_units();
        if available < cost {
            return Err(Shortfall::Units { available });
        }
        Ok(())
    }
}

/// R6: which packages pay `amount`. `active` holds the spendable packages as
/// `(id, remaining)` in spending order (earliest expiry first). If the units
/// are short, what exists is taken and the shortfall is not charged.
pub fn plan_deduction<K: Copy>(active: &[(K, Units)], amount: Units) -> Vec<(K, Units)> {
    let mut left = amount;
    let mut plan = Vec::new();
    for &(id, remaining) in active {
        if left.is_zero() {
            break;
        }
        let take = remaining.min(left);
        if !take.is_zero() {
            plan.push((id, take));
            left = left.saturating_sub(take);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u64) -> Units {
        Units::whole(n)
    }

    #[test]
    fn status_boundaries() {
        assert_eq!(package_status(u(5), 100, 200, 99), PackageStatus::Pending);
        assert_eq!(package_status(u(5), 100, 200, 100), PackageStatus::Active);
        assert_eq!(package_status(u(5), 100, 200, 200), PackageStatus::Expired);
        assert_eq!(package_status(Units::ZERO, 100, 200, 150), PackageStatus::Exhausted);
        assert_eq!(package_status(Units::from_milli(1), 100, 200, 150), PackageStatus::Active);
        // Expired wins over exhausted: the package is gone either way.
        assert_eq!(package_status(Units::ZERO, 100, 200, 250), PackageStatus::Expired);
    }

    #[test]
    fn admit_checks_slots_then_units() {
        let cap = Capacity { limit: 4, in_use: 3, spendable: u(100), reserved: u(90) };
        assert_eq!(cap.admit(1, u(10)), Ok(()));
        assert_eq!(cap.admit(2, u(10)), Err(Shortfall::Slots { free: 1 }));
        assert_eq!(cap.admit(1, u(11)), Err(Shortfall::Units { available: u(10) }));
        assert_eq!(cap.admit(1, Units::from_milli(10_001)), Err(Shortfall::Units { available: u(10) }));
        assert_eq!(cap.admit(2, u(11)), Err(Shortfall::Slots { free: 1 }));
    }

    #[test]
    fn admit_with_limit_lowered_below_use() {
        let cap = Capacity { limit: 1, in_use: 3, spendable: u(100), reserved: Units::ZERO };
        assert_eq!(cap.free_slots(), 0);
        assert_eq!(cap.admit(1, u(1)), Err(Shortfall::Slots { free: 0 }));
    }

    #[test]
    fn deduction_earliest_first_and_short() {
        assert_eq!(plan_deduction(&[(1, u(5)), (2, u(100))], u(12)), vec![(1, u(5)), (2, u(7))]);
        assert_eq!(plan_deduction(&[(1, u(5)), (2, u(100))], u(5)), vec![(1, u(5))]);
        assert_eq!(plan_deduction(&[(1, Units::ZERO), (2, u(3))], u(10)), vec![(2, u(3))]);
        assert_eq!(plan_deduction(&[(1, u(5))], Units::ZERO), vec![]);
        let tenth = Units::from_milli(100);
        assert_eq!(
            plan_deduction(&[(1, Units::from_milli(200)), (2, u(1))], Units::from_milli(300)),
            vec![(1, Units::from_milli(200)), (2, tenth)]
        );
    }
}
