//! Callbacks: a task created with a `callback_url` has its state changes
//! POSTed there, in order, as the task's query `data`; a receiver that fails
//! gets the same callback again; with callbacks off, none arrive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::common::Sim;

/// A receiver of callbacks on 127.0.0.1 that records each body it accepts
/// and answers 500 to the first `fail_first` POSTs.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    posts: Arc<Mutex<u32>>,
    fail_first: u32,
}

impl Receiver {
    async fn start(fail_first: u32) -> (Receiver, String) {
        let receiver = Receiver {
            fail_first,
            ..Receiver::default()
        };
        let app = Router::new()
            .route("/cb", post(accept))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}/cb", listener.local_addr().expect("has an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("not poisoned").clone()
    }

    /// Waits until a body with `task_status == status` arrived (timeout s).
    async fn wait_for(&self, status: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let bodies = self.bodies();
            if bodies.iter().any(|b| b["task_status"] == status) {
                return bodies;
            }
            assert!(Instant::now() < deadline, "no {status} callback: {bodies:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept(State(receiver): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let mut posts = receiver.posts.lock().expect("not poisoned");
    *posts += 1;
    if *posts <= receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.bodies.lock().expect("not poisoned").push(body);
    StatusCode::OK
}

#[tokio::test]
async fn state_changes_are_posted_in_order_as_the_query_shows_them() {
    let sim = Sim::start().await;
    let (receiver, url) = Receiver::start(0).await;
    sim.script(json!([{"outcome": "succeed"}])).await;
    let created = sim
        .create_images(json!({"prompt": "p", "n": 2, "external_task_id": "cb-1", "callback_url": url}))
        .await;
    let id = created["task_id"].as_str().expect("a task id").to_owned();

    let bodies = receiver.wait_for("succeed", Duration::from_secs(5)).await;
    let statuses: Vec<_> = bodies.iter().map(|b| b["task_status"].clone()).collect();
    assert_eq!(statuses, [json!("processing"), json!("succeed")]);
    let last = bodies.last().expect("a last callback");
    assert_eq!(last["task_id"], id);
    assert_eq!(last["task_info"]["external_task_id"], "cb-1");
    assert_eq!(last["final_unit_deduction"], "0.5");
    // The callback carries exactly what a query answers.
    let queried = sim.get(&format!("/v1/images/generations/{id}")).await.ok().clone();
    assert_eq!(*last, queried);
}

#[tokio::test]
async fn a_failed_task_is_posted_with_its_reason_and_no_deduction() {
    let sim = Sim::start().await;
    let (receiver, url) = Receiver::start(0).await;
    sim.script(json!([{"outcome": "failed", "reason": "content moderation: no"}])).await;
    sim.create_images(json!({"prompt": "p", "callback_url": url})).await;
    let bodies = receiver.wait_for("failed", Duration::from_secs(5)).await;
    let last = bodies.last().expect("a last callback");
    assert_eq!(last["task_status_msg"], "content moderation: no");
    assert!(last.get("final_unit_deduction").is_none(), "{last}");
}

#[tokio::test]
async fn a_refused_callback_is_sent_again() {
    let sim = Sim::start().await;
    // The first POST (processing) is answered 500: it arrives once more.
    let (receiver, url) = Receiver::start(1).await;
    sim.script(json!([{"outcome": "succeed"}])).await;
    sim.create_images(json!({"prompt": "p", "callback_url": url})).await;
    let bodies = receiver.wait_for("succeed", Duration::from_secs(6)).await;
    let statuses: Vec<_> = bodies.iter().map(|b| b["task_status"].clone()).collect();
    assert_eq!(statuses, [json!("processing"), json!("succeed")]);
    assert_eq!(*receiver.posts.lock().expect("not poisoned"), 3);
}

#[tokio::test]
async fn no_callbacks_arrive_when_they_are_switched_off() {
    let sim = Sim::start().await;
    sim.settings(json!({"callbacks": false})).await;
    let (receiver, url) = Receiver::start(0).await;
    sim.script(json!([{"outcome": "succeed"}])).await;
    let created = sim.create_images(json!({"prompt": "p", "callback_url": url})).await;
    let id = created["task_id"].as_str().expect("a task id").to_owned();
    sim.wait_for("images/generations", &id, "succeed").await;
    // Past the end, give a late POST time to land: none does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.bodies().is_empty(), "{:?}", receiver.bodies());
}
