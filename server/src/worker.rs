//! The simulated generation worker, and the clock that makes package
//! boundaries visible.
//!
//! The worker gives each accepted task a random duration and outcome drawn
//! from a seedable RNG (so a demo or a test can replay the same run), sleeps,
//! and ends the task through the same store call as the dev endpoints.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;

use crate::config::MsRange;
use crate::error::QuotaError;
use crate::now_ms;
use crate::store::{AccountId, Store, TaskEnd};

/// Reasons a simulated task fails; the first mirrors the service's most
/// common one. None of them is charged (R3).
const FAILURE_REASONS: [&str; 3] = ["content moderation", "generation error", "upstream timeout"];

#[derive(Clone)]
pub struct Worker {
    store: Arc<Store>,
    rng: Arc<Mutex<StdRng>>,
    duration: MsRange,
    fail_rate: f64,
}

impl Worker {
    pub fn new(store: Arc<Store>, seed: u64, duration: MsRange, fail_rate: f64) -> Self {
        Worker {
            store,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            duration,
            fail_rate,
        }
    }

    /// Draws the task's fate now (in submit order, so a seed replays a run)
    /// and ends it later. Must be called inside a tokio runtime.
    pub fn schedule(&self, account: AccountId, task_id: i64) {
        let (ms, end) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let ms = rng.random_range(self.duration.as_range());
            let end = if rng.random_bool(self.fail_rate) {
                let reason = FAILURE_REASONS[rng.random_range(0..FAILURE_REASONS.len())];
                TaskEnd::Fail {
                    reason: reason.to_string(),
                }
            } else {
                TaskEnd::Succeed { units: None }
            };
            (ms, end)
        };
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match store.finish(account, task_id, &end, now_ms()) {
                // A dev endpoint may have ended it first: nothing to do.
                Ok(_) | Err(QuotaError::TaskEnded(_) | QuotaError::TaskNotFound(_)) => {}
                Err(e) => eprintln!("quota-server: worker could not end task {task_id}: {e}"),
            }
        });
    }

    /// Picks up tasks left running by a previous process (file database).
    pub fn resume(&self) -> Result<usize, QuotaError> {
        let tasks = self.store.running_tasks()?;
        for &(account, task) in &tasks {
            self.schedule(account, task);
        }
        Ok(tasks.len())
    }
}

/// Checks once a second whether a package became effective or expired, and
/// if so bumps that account's revision (see `Store::pass_boundaries`).
pub fn spawn_boundary_clock(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut last = now_ms();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if now > last {
                match store.pass_boundaries(last, now) {
                    Ok(_) => last = now,
                    Err(e) => eprintln!("quota-server: boundary clock: {e}"),
                }
            }
        }
    });
}
