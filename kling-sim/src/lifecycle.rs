//! What happens to a task after its creation: the timer that moves it
//! through its states, and the delivery of its callbacks.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use crate::task::{Outcome, TaskView};

/// A change of a running task's state.
#[derive(Debug, Clone)]
pub enum Transition {
    Processing,
    /// End with the task's own fate.
    Natural,
    /// End now with the given outcome (`POST /sim/end`).
    Forced { outcome: Outcome, reason: Option<String> },
}

/// A created task becomes `processing` this long after its creation (or at
/// its end, if it ends sooner).
const PROCESSING_AFTER: Duration = Duration::from_millis(200);
/// Attempts per callback: the first and two retries.
const CALLBACK_ATTEMPTS: u32 = 3;
/// Pause between two attempts of one callback.
const CALLBACK_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Resolves when the simulator stops (the signal turns true or its sender
/// is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    // An error means the sender was dropped: stopped too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Drives a task through `processing` to its end, `duration_ms` after now,
/// each move made by `step` (the simulator's transition; a task ended
/// earlier by `/sim/end` is left as it is), until `shutdown`.
pub fn spawn_driver(
    step: impl Fn(&str, Transition) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
    task_id: String,
    duration_ms: u64,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = stopped(shutdown) => {}
            () = drive(&step, &task_id, duration_ms) => {}
        }
    });
}

async fn drive(step: &impl Fn(&str, Transition), task_id: &str, duration_ms: u64) {
    let start = Instant::now();
    let duration = Duration::from_millis(duration_ms);
    sleep_until(start + PROCESSING_AFTER.min(duration)).await;
    step(task_id, Transition::Processing);
    // A scripted duration may be huge (a task that runs until `/sim/end`):
    // past what an `Instant` can hold, wait for the shutdown instead.
    match start.checked_add(duration) {
        Some(end) => sleep_until(end).await,
        None => std::future::pending::<()>().await,
    }
    step(task_id, Transition::Natural);
}

/// Starts the callback queue of one task: views sent to the returned sender
/// are POSTed to `url` one after the other, in order. The queue ends when the
/// sender is dropped (after the task's last state) or the simulator stops.
pub fn spawn_callbacks(
    http: reqwest::Client,
    url: String,
    shutdown: watch::Receiver<bool>,
) -> mpsc::UnboundedSender<TaskView> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<TaskView>();
    tokio::spawn(async move {
        let deliver_all = async {
            while let Some(view) = receiver.recv().await {
                deliver(&http, &url, &view).await;
            }
        };
        tokio::select! {
            () = stopped(shutdown) => {}
            () = deliver_all => {}
        }
    });
    sender
}

/// POSTs one callback, retrying twice a second apart; then gives up. Any
/// 2xx answer counts as delivered. Failures go to stderr: a test that sees
/// no callback can find why there.
async fn deliver(http: &reqwest::Client, url: &str, view: &TaskView) {
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let failure = match http.post(url).json(view).send().await {
            Ok(answer) if answer.status().is_success() => return,
            Ok(answer) => format!("answered {}", answer.status()),
            Err(e) => e.to_string(),
        };
        eprintln!(
            "kling-sim: callback of task {} ({:?}) to {url}, attempt {attempt} of {CALLBACK_ATTEMPTS}: {failure}",
            view.task_id, view.task_status
        );
        if attempt < CALLBACK_ATTEMPTS {
            sleep(CALLBACK_RETRY_PAUSE).await;
        }
    }
    eprintln!(
        "kling-sim: callback of task {} ({:?}) to {url} dropped",
        view.task_id, view.task_status
    );
}
