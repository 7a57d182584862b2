//! The simulated generation worker, and the clock that makes package
//! boundaries visible.
//!
//! The worker gives each accepted task a random duration and outcome drawn
//! from a seedable RNG (so a demo or a test can replay the same run), sleeps,
//! and ends the task through the same store call as the dev endpoints.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;

use crate::error::QuotaError;
use crate::now_ms;
use crate::storage::Storage;
use crate::store::{AccountId, TaskEnd};

/// Reasons a simulated task fails; the first mirrors the service's most
/// common one. None of them is charged (R3).
const FAILURE_REASONS: [&str; 3] = ["content moderation", "generation error", "upstream timeout"];

/// How long past its longest duration a task may run before another
/// instance takes it for dead and ends it.
const SWEEP_GRACE_MS: i64 = 2_000;

#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Storage>,
    rng: Arc<Mutex<StdRng>>,
    /// A task's duration, in milliseconds.
    duration: RangeInclusive<u64>,
    fail_rate: f64,
}

impl Worker {
    pub fn new(store: Arc<dyn Storage>, seed: u64, duration: RangeInclusive<u64>, fail_rate: f64) -> Self {
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
        let (ms, end) = self.draw();
        let worker = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            worker.end(account, task_id, &end).await;
        });
    }

    /// Ends a task, and runs the queued requests its end started.
    async fn end(&self, account: AccountId, task_id: i64, end: &TaskEnd) {
        match self.store.finish(account, task_id, end, now_ms()).await {
            Ok(ended) => {
                for id in ended.started {
                    self.schedule(account, id);
                }
            }
            // A dev endpoint may have ended it first: nothing to do.
            Err(QuotaError::TaskEnded(_) | QuotaError::TaskNotFound(_)) => {}
            Err(e) => eprintln!("quota-server: worker could not end task {task_id}: {e}"),
        }
    }

    /// On a database that other instances share: once a second, ends the
    /// tasks that should have ended long ago (an instance that took them
    /// died). Every instance sweeps; a task ends once whichever gets there
    /// first, since the store refuses to end an ended task.
    pub fn spawn_sweeper(&self, mut shutdown: watch::Receiver<bool>) {
        if !self.store.shared() {
            return;
        }
        let worker = self.clone();
        // Past its longest duration and a grace for the instance that owns it.
        let overdue_after = i64::try_from(*self.duration.end()).unwrap_or(i64::MAX).saturating_add(SWEEP_GRACE_MS);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tick.tick() => {}
                }
                match worker.store.overdue_tasks(now_ms().saturating_sub(overdue_after)).await {
                    Ok(tasks) => {
                        for (account, task) in tasks {
                            worker.end_now(account, task).await;
                        }
                    }
                    Err(e) => eprintln!("quota-server: worker sweep: {e}"),
                }
            }
        });
    }

    /// Ends a task now with a drawn outcome.
    async fn end_now(&self, account: AccountId, task_id: i64) {
        let end = self.draw().1;
        self.end(account, task_id, &end).await;
    }

    /// A task's duration and end, from the seeded RNG.
    fn draw(&self) -> (u64, TaskEnd) {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = rng.random_range(self.duration.clone());
        let end = if rng.random_bool(self.fail_rate) {
            let reason = FAILURE_REASONS[rng.random_range(0..FAILURE_REASONS.len())];
            TaskEnd::Fail { reason: reason.to_string() }
        } else {
            TaskEnd::Succeed { units: None }
        };
        (ms, end)
    }

    /// Picks up tasks left running by a previous process (file database).
    /// On a shared database the running tasks may be other instances':
    /// those of a dead one are the sweeper's.
    pub async fn resume(&self) -> Result<usize, QuotaError> {
        if self.store.shared() {
            return Ok(0);
        }
        let tasks = self.store.running_tasks().await?;
        for &(account, task) in &tasks {
            self.schedule(account, task);
        }
        Ok(tasks.len())
    }
}

/// Checks once a second whether a package became effective or expired, and
/// if so bumps that account's revision (see `Storage::pass_boundaries`).
pub fn spawn_boundary_clock(store: Arc<dyn Storage>, mut shutdown: watch::Receiver<bool>) {
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
                match store.pass_boundaries(last, now).await {
                    Ok(_) => last = now,
                    Err(e) => eprintln!("quota-server: boundary clock: {e}"),
                }
            }
        }
    });
}
