//! Three instances of quota-server on one PostgreSQL database, as separate
//! processes on their own ports, as behind a load balancer: no overshoot of
//! slots or units under parallel submits spread over them, request ids
//! idempotent across them, a change made through one reaching the event
//! streams of another, and the tasks of an instance killed with SIGKILL
//! ended exactly once by the others.
//!
//! Needs the test cluster of `scripts/pg` (`QW_TEST_PG_DIR`); without it
//! the tests say so and pass without running (`scripts/test` always sets it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quota_widget::core::wire::{Outcome, ServerState, SubmitAccepted, Units};
use serde_json::{json, Value};

/// A fresh database on the test cluster, or `None` without one.
async fn database(name: &str) -> Option<String> {
    let Ok(dir) = std::env::var("QW_TEST_PG_DIR") else {
        eprintln!("QW_TEST_PG_DIR is not set (scripts/pg start): the multi-instance test {name} did not run");
        return None;
    };
    let db = format!("qw_inst_{}_{name}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&format!("host={dir} user=postgres dbname=postgres"), tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {db}")).await.expect("create database");
    Some(format!("postgresql:///{db}?host={dir}&user=postgres"))
}

struct Instance {
    child: Child,
    url: String,
}

impl Instance {
    fn start(db: &str, extra: &[&str]) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quota-server"))
            .args(["--addr", "127.0.0.1:0", "--db", db, "--dev", "--ping-ms", "1000", "--rate-limit", "0"])
            .args(extra)
            .env_remove("QW_DB")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quota-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a first line");
        let url = line.trim().strip_prefix("quota-server listening on ").expect("the listening line").to_owned();
        Instance { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

fn three(db: &str, extra: &[&str]) -> Vec<Instance> {
    (0..3).map(|_| Instance::start(db, extra)).collect()
}

async fn create_account(http: &reqwest::Client, at: &Instance, token: &str, image_limit: u32, units: u64) {
    let res = http
        .post(format!("{}/api/dev/accounts", at.url))
        .json(&json!({ "token": token, "image_limit": image_limit, "video_limit": 1,
                       "packages": [{ "name": "p", "total": units, "expires_in_ms": 86_400_000 }] }))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
}

async fn state(http: &reqwest::Client, at: &Instance, token: &str) -> ServerState {
    http.get(format!("{}/api/state", at.url)).bearer_auth(token).send().await.expect("state").json().await.expect("json")
}

/// Fires `n` one-image submits spread over the instances, all at once, with
/// `n / 2` request ids each sent twice (to two different instances).
/// Returns (status, body) per submit, with its request id.
async fn fire(http: &reqwest::Client, at: &[Instance], token: &str, n: usize) -> Vec<(String, u16, Value)> {
    let calls = (0..n).map(|i| {
        let id = format!("r{}", i % (n / 2));
        let url = format!("{}/api/generations", at[i % at.len()].url);
        let http = http.clone();
        let token = token.to_owned();
        async move {
            let res = http
                .post(url)
                .bearer_auth(&token)
                .json(&json!({ "kind": "image", "count": 1, "client_request_id": id }))
                .send()
                .await
                .expect("submit");
            let status = res.status().as_u16();
            (id, status, res.json::<Value>().await.expect("json"))
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_never_overshoot_and_request_ids_hold_across_them() {
    let Some(db) = database("overshoot").await else { return };
    let at = three(&db, &["--no-worker"]);
    let http = reqwest::Client::new();

    // Slots: 4 of them, 300 submits for 150 ids.
    create_account(&http, &at[0], "slots", 4, 10_000).await;
    let answers = fire(&http, &at, "slots", 300).await;
    let s = state(&http, &at[1], "slots").await;
    assert_eq!(s.running.len(), 4, "exactly the limit runs");
    assert_eq!(s.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use), Some(4));
    // Every accepted id has one task, and its repeat (on another instance)
    // got the same answer.
    let mut tasks: HashMap<String, String> = HashMap::new();
    for (id, status, body) in &answers {
        match status {
            200 | 201 => {
                let a: SubmitAccepted = serde_json::from_value(body.clone()).expect("accepted");
                if let Some(task) = tasks.insert(id.clone(), a.task_id.clone()) {
                    assert_eq!(task, a.task_id, "request id {id} got two tasks");
                }
            }
            429 => assert_eq!(body["code"], 1303),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    let accepted_ids = answers.iter().filter(|(_, s, _)| *s == 201).count();
    assert_eq!(accepted_ids, 4, "one 201 per task, repeats 200 or refused");

    // Units: enough for exactly 7 images (4 units each) among 1000 slots.
    create_account(&http, &at[2], "units", 1000, 28).await;
    let answers = fire(&http, &at, "units", 300).await;
    let s = state(&http, &at[0], "units").await;
    assert_eq!(s.running.len(), 7, "exactly the units' worth runs");
    let reserved: Units = s.running.iter().map(|t| t.reserved_units).sum();
    assert_eq!(reserved, Units::whole(28));
    assert!(answers.iter().all(|(_, s, b)| [200, 201].contains(s) || (*s == 402 && b["code"] == 1102)));
    println!(
        "300 submits over 3 instances: {} accepted against 4 slots; {} against units for 7",
        tasks.len(),
        s.running.len()
    );
}

/// Reads `state` events off a stream until one has a revision >= `want`.
async fn wait_revision(stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin), buf: &mut String, want: u64) {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if event.contains("event: state") {
                if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id: ")) {
                    if id.trim().parse::<u64>().is_ok_and(|r| r >= want) {
                        return;
                    }
                }
            }
        }
        let chunk = stream.next().await.expect("the stream stays open").expect("a chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_instance_reaches_the_streams_of_another() {
    let Some(db) = database("events").await else { return };
    let at = three(&db, &["--no-worker"]);
    let http = reqwest::Client::new();
    create_account(&http, &at[0], "ev", 1000, 100_000).await;
    let res = http.get(format!("{}/api/events", at[1].url)).bearer_auth("ev").send().await.expect("stream");
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    wait_revision(&mut stream, &mut buf, 1).await;
    let mut delays = Vec::new();
    for i in 0..100 {
        let started = Instant::now();
        let res = http
            .post(format!("{}/api/generations", at[i % 2 * 2].url))
            .bearer_auth("ev")
            .json(&json!({ "kind": "image", "count": 1, "client_request_id": format!("e{i}") }))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 201);
        let accepted: SubmitAccepted = res.json().await.expect("accepted");
        tokio::time::timeout(Duration::from_secs(5), wait_revision(&mut stream, &mut buf, accepted.revision))
            .await
            .expect("the change reached the other instance's stream");
        delays.push(started.elapsed());
    }
    delays.sort();
    let p50 = delays[delays.len() / 2];
    let p99 = delays[delays.len() * 99 / 100];
    println!("submit on instance A or C -> state on instance B's stream: p50 {p50:?}, p99 {p99:?} (100 submits)");

    // Last-Event-ID resumes exactly on another instance: nothing is resent
    // for the revision the client has; a newer one comes.
    let rev = state(&http, &at[0], "ev").await.revision;
    let res = http
        .get(format!("{}/api/events", at[2].url))
        .bearer_auth("ev")
        .header("last-event-id", rev.to_string())
        .send()
        .await
        .expect("stream");
    let mut resumed = res.bytes_stream();
    let mut buf = String::new();
    http.post(format!("{}/api/generations", at[0].url))
        .bearer_auth("ev")
        .json(&json!({ "kind": "image", "count": 1, "client_request_id": "after" }))
        .send()
        .await
        .expect("submit");
    tokio::time::timeout(Duration::from_secs(5), wait_revision(&mut resumed, &mut buf, rev + 1)).await.expect("newer state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tasks_of_a_killed_instance_end_exactly_once() {
    let Some(db) = database("kill").await else { return };
    // Tasks take 1.5-2 s; the others take a task for dead 2 s past that.
    let mut at = three(&db, &["--task-ms", "1500..2000", "--fail-rate", "0.5", "--seed", "3"]);
    let http = reqwest::Client::new();
    create_account(&http, &at[1], "k", 8, 10_000).await;
    let before = state(&http, &at[1], "k").await;
    let spendable = |s: &ServerState| -> Units { s.packages.iter().map(|p| p.remaining).sum() };
    for i in 0..6 {
        let res = http
            .post(format!("{}/api/generations", at[0].url))
            .bearer_auth("k")
            .json(&json!({ "kind": "image", "count": 1, "client_request_id": format!("k{i}") }))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 201);
    }
    // Instance A, which took them and scheduled their ends, dies at once.
    at[0].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = state(&http, &at[2], "k").await;
        if s.running.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "tasks of the dead instance still running: {:?}", s.running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s.finished.len(), 6, "each task ended once: {:?}", s.finished);
    let charged: Units = s.finished.iter().map(|t| t.units_charged).sum();
    let succeeded = s.finished.iter().filter(|t| t.outcome == Outcome::Succeeded).count();
    assert_eq!(charged, Units::whole(4 * succeeded as u64), "a success charges its cost once, a failure nothing");
    assert_eq!(spendable(&s), spendable(&before).saturating_sub(charged), "the ledger adds up");
    println!("instance killed with 6 tasks running: {succeeded} succeeded, {} failed, all ended by the others", 6 - succeeded);
}
