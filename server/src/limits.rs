//! Limits that keep one account from hurting the others on an instance: a
//! request rate per account, and caps on open event streams per account
//! and per instance. (The body size limit is a layer: `http::router`.)
//! Each instance counts for itself.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as Rate, RateLimiter};

use crate::ids::AccountId;

/// The limits of one instance.
pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<AccountId>>,
    streams: Mutex<Streams>,
    per_account: usize,
    per_instance: usize,
}

#[derive(Default)]
struct Streams {
    by_account: HashMap<AccountId, usize>,
    total: usize,
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefusal {
    /// The account has its maximum of streams open on this instance.
    Account(usize),
    /// The instance holds its maximum of streams.
    Instance(usize),
}

impl Limits {
    /// `rate_per_s` requests a second per account with bursts of `burst`
    /// (0: no limit); at most `per_account` streams per account and
    /// `per_instance` in all.
    pub fn new(rate_per_s: u32, burst: u32, per_account: usize, per_instance: usize) -> Self {
        let rate = NonZeroU32::new(rate_per_s).map(|r| {
            let burst = NonZeroU32::new(burst.max(rate_per_s)).unwrap_or(r);
            RateLimiter::keyed(Rate::per_second(r).allow_burst(burst))
        });
        Limits { rate, streams: Mutex::default(), per_account, per_instance }
    }

    /// Takes one request of `account` from its rate; `Err` with how long to
    /// wait when it has none left.
    pub fn request(&self, account: AccountId) -> Result<(), Duration> {
        let Some(rate) = &self.rate else { return Ok(()) };
        rate.check_key(&account).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// A place for one more event stream of `account`, held until the
    /// returned guard is dropped (when the stream ends).
    pub fn open_stream(self: &Arc<Self>, account: AccountId) -> Result<StreamGuard, StreamRefusal> {
        let mut s = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total >= self.per_instance {
            return Err(StreamRefusal::Instance(self.per_instance));
        }
        let open = s.by_account.entry(account).or_default();
        if *open >= self.per_account {
            return Err(StreamRefusal::Account(self.per_account));
        }
        *open += 1;
        s.total += 1;
        Ok(StreamGuard { limits: Arc::clone(self), account })
    }

    /// Open streams: of `account`, and in all.
    pub fn streams(&self, account: AccountId) -> (usize, usize) {
        let s = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        (s.by_account.get(&account).copied().unwrap_or(0), s.total)
    }
}

/// One open stream's place; gives it back when dropped.
pub struct StreamGuard {
    limits: Arc<Limits>,
    account: AccountId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut s = self.limits.streams.lock().unwrap_or_else(PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(open) = s.by_account.get_mut(&self.account) {
            *open -= 1;
            if *open == 0 {
                s.by_account.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_account_and_per_instance_and_given_back() {
        let limits = Arc::new(Limits::new(0, 0, 2, 3));
        let a1 = limits.open_stream(1).expect("first");
        let _a2 = limits.open_stream(1).expect("second");
        assert_eq!(limits.open_stream(1).err(), Some(StreamRefusal::Account(2)));
        let _b1 = limits.open_stream(2).expect("another account");
        assert_eq!(limits.open_stream(3).err(), Some(StreamRefusal::Instance(3)));
        drop(a1);
        assert_eq!(limits.streams(1), (1, 2));
        assert!(limits.open_stream(1).is_ok(), "a closed stream gives its place back");
    }

    #[test]
    fn requests_beyond_the_burst_wait() {
        let limits = Limits::new(2, 3, 1, 1);
        for _ in 0..3 {
            assert_eq!(limits.request(7), Ok(()));
        }
        let wait = limits.request(7).expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        // Another account has its own budget.
        assert_eq!(limits.request(8), Ok(()));
        // No limit at 0.
        let off = Limits::new(0, 0, 1, 1);
        assert!((0..1000).all(|_| off.request(7).is_ok()));
    }
}
