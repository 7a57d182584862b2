//! The quota rules (R1-R3, R6 of PRODUCT.md) as pure functions, so that they
//! can be read and tested apart from SQL. The store feeds them the figures it
//! reads inside its transaction and applies what they decide.

use quota_widget::core::wire::{Millis, PackageStatus, Units};

use crate::error::Refusal;

/// Largest number of items one request may ask for.
pub const MAX_COUNT: u32 = 16;

/// Package status at `now`, computed at read time so that expiry needs no job.
pub fn package_status(
    remaining: Units,
    effective_at_ms: Millis,
    expires_at_ms: Millis,
    now: Millis,
) -> PackageStatus {
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

/// The figures a submit is judged on, all read in the submit's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// The pool's limit (plan figure).
    pub limit: u32,
    /// Slots held by running tasks of that kind.
    pub in_use: u32,
    /// Sum of remaining units over active packages.
    pub spendable: Units,
    /// Units reserved by running tasks (all kinds: they share the packages).
    pub reserved: Units,
}

impl Capacity {
    pub fn free_slots(&self) -> u32 {
        self.limit.saturating_sub(self.in_use)
    }

    pub fn available_units(&self) -> Units {
        self.spendable.saturating_sub(self.reserved)
    }
}

/// R1 then R2: slots first, because a request over concurrency is refused
/// with 1303 even if the units would also be short (the client backs off and
/// retries; units do not come back by waiting).
pub fn admit(cap: Capacity, slots: u32, cost: Units) -> Result<(), Refusal> {
    if cap.free_slots() < slots {
        return Err(Refusal::OverConcurrency);
    }
    if cap.available_units() < cost {
        return Err(Refusal::UnitsExhausted);
    }
    Ok(())
}

/// R6: which packages pay `amount`. `active` must hold the spendable packages
/// as `(id, remaining)` in spending order (earliest expiry first). If the
/// units are short, what exists is taken and the shortfall is not charged.
pub fn plan_deduction(active: &[(i64, Units)], amount: Units) -> Vec<(i64, Units)> {
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
        let cap = Capacity {
            limit: 4,
            in_use: 3,
            spendable: u(100),
            reserved: u(90),
        };
        assert_eq!(admit(cap, 1, u(10)), Ok(()));
        assert_eq!(admit(cap, 2, u(10)), Err(Refusal::OverConcurrency));
        assert_eq!(admit(cap, 1, u(11)), Err(Refusal::UnitsExhausted));
        assert_eq!(admit(cap, 1, Units::from_milli(10_001)), Err(Refusal::UnitsExhausted));
        assert_eq!(admit(cap, 2, u(11)), Err(Refusal::OverConcurrency));
    }

    #[test]
    fn admit_with_limit_lowered_below_use() {
        let cap = Capacity {
            limit: 1,
            in_use: 3,
            spendable: u(100),
            reserved: Units::ZERO,
        };
        assert_eq!(cap.free_slots(), 0);
        assert_eq!(admit(cap, 1, u(1)), Err(Refusal::OverConcurrency));
    }

    #[test]
    fn deduction_earliest_first_and_short() {
        assert_eq!(
            plan_deduction(&[(1, u(5)), (2, u(100))], u(12)),
            vec![(1, u(5)), (2, u(7))]
        );
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
