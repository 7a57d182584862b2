//! Three instances of quota-server on one PostgreSQL database, as separate
//! processes on their own ports, as behind a load balancer: no overshoot of
//! slots or units under parallel submits spread over them, request ids
//! idempotent across them, a change made through one reaching the event
//! streams of another, and the tasks of an instance killed with SIGKILL
//! ended exactly once by the others; and upstream mode, three instances in
//! front of the service's simulator (kling-sim): one of them syncs at a
//! time, any takes callbacks, none creates a task twice or over the limit,
//! and when the syncing one is killed another takes over. The queue: 300
//! queued submits over three instances against 4 slots start each once, in
//! order, never more than 4 at a time, with the ledger exact; and a queue
//! waiting when its instance is killed drains through the others.
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
        Instance::spawn(db, &[&["--addr", "127.0.0.1:0", "--dev"], extra].concat())
    }

    fn spawn(db: &str, args: &[&str]) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quota-server"))
            .args(["--db", db, "--ping-ms", "1000", "--rate-limit", "0"])
            .args(args)
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

/// Units left in the account's packages.
fn spendable(s: &ServerState) -> Units {
    s.packages.iter().map(|p| p.remaining).sum()
}

async fn state(http: &reqwest::Client, at: &Instance, token: &str) -> ServerState {
    http.get(format!("{}/api/state", at.url)).bearer_auth(token).send().await.expect("state").json().await.expect("json")
}

/// Fires `n` one-image submits spread over the instances, all at once, with
/// `n / 2` request ids each sent twice (to two different instances).
/// Returns (status, body) per submit, with its request id.
async fn fire(http: &reqwest::Client, at: &[Instance], token: &str, n: usize) -> Vec<(String, u16, Value)> {
    fire_over(http, at, token, (n, n / 2), "r", Duration::ZERO, false).await
}

/// As [`fire`], `n` submits for `ids` request ids (`{prefix}N`), their
/// starts spread evenly over `spread`, sent with `queue` or not.
async fn fire_over(
    http: &reqwest::Client,
    at: &[Instance],
    token: &str,
    (n, ids): (usize, usize),
    prefix: &str,
    spread: Duration,
    queue: bool,
) -> Vec<(String, u16, Value)> {
    let calls = (0..n).map(|i| {
        let id = format!("{prefix}{}", i % ids);
        let after = spread.mul_f64(i as f64 / n as f64);
        let url = format!("{}/api/generations", at[i % at.len()].url);
        let http = http.clone();
        let token = token.to_owned();
        async move {
            tokio::time::sleep(after).await;
            let res = http
                .post(url)
                .bearer_auth(&token)
                .json(&json!({ "kind": "image", "count": 1, "client_request_id": id, "prompt": "a fox", "queue": queue }))
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

/// A task as the store recorded it, for the queue's audit (in id order,
/// which is arrival order): status, request id, slots, units charged, and
/// the revisions at which it started and ended.
#[derive(Debug)]
struct Audited {
    status: String,
    request: String,
    slots: i64,
    charged: i64,
    started: Option<i64>,
    finished: Option<i64>,
}

async fn audit(db: &str, account: i64) -> Vec<Audited> {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .expect("the database answers");
    tokio::spawn(conn);
    client
        .query(
            "SELECT status, client_request_id, slots, units_charged, started_revision, finished_revision
             FROM tasks WHERE account_id = $1 AND status <> 'refused' ORDER BY id",
            &[&account],
        )
        .await
        .expect("tasks")
        .iter()
        .map(|r| Audited {
            status: r.get(0),
            request: r.get(1),
            slots: r.get(2),
            charged: r.get(3),
            started: r.get(4),
            finished: r.get(5),
        })
        .collect()
}

/// What the audit promises of a drained queue: every task ended, started
/// once (one start revision each), in arrival order, and at no revision
/// more slots running than `limit` (replayed from the start and end
/// revisions: at one revision, what ended frees its slots before what
/// starts takes them, as in the transaction). The most slots that ran at
/// once, and the units charged.
fn check_audit(tasks: &[Audited], limit: i64) -> (i64, i64) {
    let mut last_start = 0;
    let mut events: Vec<(i64, i64)> = Vec::new();
    for t in tasks {
        assert!(["succeeded", "failed"].contains(&t.status.as_str()), "not ended: {t:?}");
        let (Some(started), Some(finished)) = (t.started, t.finished) else { panic!("never started or ended: {t:?}") };
        assert!(started >= last_start, "{t:?} started before a request that arrived earlier (revision {last_start})");
        assert!(finished > started, "{t:?}");
        last_start = started;
        events.push((started, t.slots));
        events.push((finished, -t.slots));
    }
    // Ends before starts at one revision.
    events.sort_by_key(|&(revision, delta)| (revision, delta));
    let (mut running, mut most) = (0, 0);
    for (revision, delta) in events {
        running += delta;
        assert!(running <= limit, "{running} slots running at revision {revision}, over the limit of {limit}");
        most = most.max(running);
    }
    (most, tasks.iter().map(|t| t.charged).sum())
}

/// The store's id of the account with `token` (`GET /api/session`).
async fn account_id(http: &reqwest::Client, at: &Instance, token: &str) -> i64 {
    let v: Value = http.get(format!("{}/api/session", at.url)).bearer_auth(token).send().await.expect("session").json().await.expect("json");
    v["account"].as_str().expect("signed in").parse().expect("an id")
}

async fn drained(http: &reqwest::Client, at: &Instance, token: &str, secs: u64) -> ServerState {
    eventually("the queue drains", secs, || state(http, at, token), |s| s.running.is_empty() && s.queued.is_empty()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_start_three_hundred_queued_requests_once_in_order() {
    let Some(db) = database("queue").await else { return };
    let at = three(&db, &["--task-ms", "5..40", "--fail-rate", "0.3", "--seed", "20", "--max-queued", "300"]);
    let http = reqwest::Client::new();
    create_account(&http, &at[0], "q", 4, 10_000).await;
    let before = state(&http, &at[0], "q").await;
    let answers = fire_over(&http, &at, "q", (300, 300), "q", Duration::ZERO, true).await;
    let mut waited = 0;
    for (id, status, body) in &answers {
        assert_eq!(*status, 201, "{id}: {body}");
        let a: SubmitAccepted = serde_json::from_value(body.clone()).expect("accepted");
        waited += usize::from(a.place.is_some());
    }
    assert!(waited >= 250, "most of 300 requests against 4 slots waited: {waited}");
    let s = drained(&http, &at[1], "q", 90).await;
    let tasks = audit(&db, account_id(&http, &at[0], "q").await).await;
    assert_eq!(tasks.len(), 300, "one task per request");
    let mut requests: Vec<&str> = tasks.iter().map(|t| t.request.as_str()).collect();
    requests.sort_unstable();
    requests.dedup();
    assert_eq!(requests.len(), 300);
    let (most, charged) = check_audit(&tasks, 4);
    assert_eq!(most, 4, "the queue kept every slot busy");
    let succeeded = tasks.iter().filter(|t| t.status == "succeeded").count() as i64;
    assert_eq!(charged, succeeded * 4_000, "a success charges its 4 units once, a failure nothing");
    assert_eq!(spendable(&s), spendable(&before).saturating_sub(Units::from_milli(charged as u64)), "the ledger adds up");
    println!("300 queued submits over 3 instances against 4 slots: {waited} waited, {succeeded} succeeded, all started once in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_waiting_when_its_instance_is_killed_drains_through_the_others() {
    let Some(db) = database("killq").await else { return };
    let mut at = three(&db, &["--task-ms", "1500..2000", "--fail-rate", "0.3", "--seed", "4"]);
    let http = reqwest::Client::new();
    create_account(&http, &at[1], "kq", 2, 10_000).await;
    let before = state(&http, &at[1], "kq").await;
    for i in 0..6 {
        let res = http
            .post(format!("{}/api/generations", at[0].url))
            .bearer_auth("kq")
            .json(&json!({ "kind": "image", "count": 1, "client_request_id": format!("kq{i}"), "queue": true }))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 201);
    }
    assert_eq!(state(&http, &at[1], "kq").await.queued.len(), 4);
    // Instance A took them all, and dies with two running and four waiting.
    at[0].kill();
    let s = drained(&http, &at[2], "kq", 40).await;
    let tasks = audit(&db, account_id(&http, &at[1], "kq").await).await;
    assert_eq!(tasks.len(), 6);
    let (most, charged) = check_audit(&tasks, 2);
    assert_eq!(most, 2);
    assert_eq!(spendable(&s), spendable(&before).saturating_sub(Units::from_milli(charged as u64)), "the ledger adds up");
    println!("instance killed with 2 running and 4 queued: all 6 ran once, in order, through the others");
}

/// A free port on the loopback, for an instance that must know its own
/// address before it starts (its callback URL).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// An instance in upstream mode in front of `sim`, its callbacks to itself.
fn upstream_instance(db: &str, sim: &str, dir: &std::path::Path) -> Instance {
    let port = free_port().to_string();
    let (addr, public) = (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"));
    let (ak, sk) = (dir.join("access-key"), dir.join("secret-key"));
    let args = [
        "--addr", &addr, "--public-url", &public, "--upstream", "kling", "--upstream-url", sim,
        "--access-key-file", ak.to_str().expect("utf-8"), "--secret-key-file", sk.to_str().expect("utf-8"),
        "--sync-ms", "1000", "--poll-ms", "500", "--upstream-timeout-ms", "3000", "--image-limit", "4",
    ];
    Instance::spawn(db, &args)
}

async fn sim_ledger(http: &reqwest::Client, sim: &kling_sim::Running) -> Value {
    let v: Value = http.get(format!("{}/sim/ledger", sim.base_url())).send().await.expect("ledger").json().await.expect("json");
    v["data"].clone()
}

/// Polls until `ok` holds, failing after `secs` seconds with what was last seen.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    secs: u64,
    mut probe: impl FnMut() -> F,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = probe().await;
        if ok(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s; last seen {seen:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The store's own record of every task, by request id: status, units
/// charged and the service's id.
async fn tasks_in_db(db: &tokio_postgres::Client) -> HashMap<String, (String, Units, Option<String>)> {
    db.query("SELECT client_request_id, status, units_charged, upstream_task_id FROM tasks WHERE status <> 'refused'", &[])
        .await
        .expect("tasks")
        .iter()
        .map(|r| (r.get(0), (r.get(1), Units::from_milli(r.get::<_, i64>(2).try_into().expect("units")), r.get(3))))
        .collect()
}

/// The fates of the simulator's next tasks.
async fn script(http: &reqwest::Client, sim: &kling_sim::Running, outcomes: Value) {
    let res = http.post(format!("{}/sim/script", sim.base_url())).json(&json!({ "outcomes": outcomes })).send().await.expect("script");
    assert!(res.status().is_success());
}

/// A one-image submit of the `demo` account through `at`, which must be
/// accepted and created upstream.
async fn created(http: &reqwest::Client, at: &Instance, id: &str) {
    let res = http
        .post(format!("{}/api/generations", at.url))
        .bearer_auth("demo")
        .json(&json!({ "kind": "image", "count": 1, "client_request_id": id, "prompt": "a fox" }))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201, "{id}");
}

async fn syncer(db: &tokio_postgres::Client) -> Option<String> {
    db.query_opt("SELECT syncer FROM mirrors", &[]).await.expect("mirrors").and_then(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_in_upstream_mode_sync_once_create_once_and_take_over() {
    let Some(url) = database("upstream").await else { return };
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("the test database");
    tokio::spawn(conn);
    let mut sim_config = kling_sim::Config::for_tests();
    // Tasks of 0.2-0.6 s, a third of them failing; balances that lag.
    sim_config.task_ms = "200..600".parse().expect("range");
    sim_config.fail_rate = 0.3;
    sim_config.lag_ms = 1_500;
    let sim = kling_sim::spawn(sim_config).await.expect("simulator");
    let dir = std::env::temp_dir().join(format!("qw-inst-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("access-key"), kling_sim::Config::for_tests().access_key).expect("key");
    std::fs::write(dir.join("secret-key"), kling_sim::Config::for_tests().secret_key).expect("key");
    let mut at: Vec<Instance> = (0..3).map(|_| upstream_instance(&url, &sim.base_url(), &dir)).collect();
    let http = reqwest::Client::new();
    for i in &at {
        eventually("the first package sync, seen on every instance", 15, || state(&http, i, "demo"), |s| {
            s.packages_synced_at_ms.is_some()
        })
        .await;
    }
    let first = syncer(&db).await.expect("an instance syncs");

    // 300 submits spread over the instances at once, each request id sent
    // twice (to two instances); then 300 more over 3 s, while tasks end.
    let mut answers = fire(&http, &at, "demo", 300).await;
    answers.extend(fire_over(&http, &at, "demo", (300, 150), "w", Duration::from_secs(3), false).await);
    let mut accepted: HashMap<String, String> = HashMap::new();
    for (id, status, body) in &answers {
        match status {
            200 | 201 => {
                let a: SubmitAccepted = serde_json::from_value(body.clone()).expect("accepted");
                if let Some(task) = accepted.insert(id.clone(), a.task_id.clone()) {
                    assert_eq!(task, a.task_id, "request id {id} got two tasks");
                }
            }
            // Refused here for want of slots: the service never hears of it.
            429 => assert_eq!(body["code"], 1303, "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!accepted.is_empty());
    eventually("every accepted task settled", 20, || state(&http, &at[2], "demo"), |s| s.running.is_empty()).await;

    // A success and a failure, each ended once whichever instance the
    // callback reaches.
    script(&http, &sim, json!([{ "outcome": "succeed", "ms": 400 }, { "outcome": "failed", "reason": "content moderation", "ms": 400 }]))
        .await;
    created(&http, &at[0], "ok-1").await;
    created(&http, &at[1], "fail-1").await;
    let s = eventually("the success and the failure", 15, || state(&http, &at[2], "demo"), |s| {
        ["ok-1", "fail-1"].iter().all(|id| s.finished.iter().any(|f| f.client_request_id.as_deref() == Some(id)))
    })
    .await;
    let ended = |id: &str| s.finished.iter().filter(|f| f.client_request_id.as_deref() == Some(id)).collect::<Vec<_>>();
    assert_eq!(ended("ok-1").len(), 1);
    assert_eq!((ended("ok-1")[0].outcome, ended("ok-1")[0].units_charged), (Outcome::Succeeded, Units::from_milli(250)));
    assert_eq!((ended("fail-1")[0].outcome, ended("fail-1")[0].units_charged), (Outcome::Failed, Units::ZERO));
    // Every instance takes the service's callbacks (one secret, in the
    // database): a replay of the success's, to each, changes nothing.
    let secret: String = db.query_one("SELECT callback_secret FROM mirrors", &[]).await.expect("secret").get(0);
    let ok_1 = sim_ledger(&http, &sim).await["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["external_task_id"] == "ok-1")
        .expect("ok-1 upstream")["task_id"]
        .clone();
    for i in &at {
        let res = http
            .post(format!("{}/api/upstream/callback/{secret}", i.url))
            .json(&json!({ "task_id": ok_1, "task_status": "succeed", "final_unit_deduction": "0.25",
                           "task_info": { "external_task_id": "ok-1" } }))
            .send()
            .await
            .expect("callback");
        assert_eq!(res.status(), 200, "{}", i.url);
        assert_eq!(res.json::<Value>().await.expect("json")["message"], "already settled");
    }

    // Tasks of the syncing instance still run when it is killed: their
    // callbacks go to it and find no one; the next syncing instance polls them.
    let syncing = at.iter().position(|i| first == format!("pid {}", i.child.id())).expect("the syncer is one of them");
    script(&http, &sim, json!([{ "outcome": "succeed", "ms": 2500 }, { "outcome": "succeed", "ms": 2500 }, { "outcome": "failed", "ms": 2500 }]))
        .await;
    for id in ["k-1", "k-2", "k-3"] {
        created(&http, &at[syncing], id).await;
    }
    let costs_before = sim_ledger(&http, &sim).await["costs_requests"].as_u64().expect("costs");
    let killed = Instant::now();
    let _ = Command::new("kill").args(["-9", &at[syncing].child.id().to_string()]).status().expect("kill -9");
    let dead = at.remove(syncing);
    let next = eventually("another instance syncing", 5, || syncer(&db), |s| s.as_ref().is_some_and(|s| *s != first)).await;
    let ledger = eventually("a read of the packs by the next syncer", 5, || sim_ledger(&http, &sim), |l| {
        l["costs_requests"].as_u64().is_some_and(|n| n > costs_before)
    })
    .await;
    let took_over = killed.elapsed();
    assert!(took_over < Duration::from_secs(5), "took over after {took_over:?}");
    assert!(at.iter().any(|i| next == Some(format!("pid {}", i.child.id()))), "{next:?}");
    drop(dead);
    let s = eventually("the killed instance's tasks settled", 20, || state(&http, &at[0], "demo"), |s| s.running.is_empty()).await;
    for id in ["k-1", "k-2", "k-3"] {
        assert_eq!(s.finished.iter().filter(|f| f.client_request_id.as_deref() == Some(id)).count(), 1, "{id}: {:?}", s.finished);
    }
    let _ = ledger;

    // The ledger exact: every task this server accepted was created once
    // upstream and ended as the service says, charged what it deducted;
    // the service was never asked more than once a second, and never had
    // more tasks running than the limit.
    http.post(format!("{}/sim/settings", sim.base_url())).json(&json!({ "lag_ms": 0 })).send().await.expect("settings");
    let truth = sim_ledger(&http, &sim).await;
    let mine = tasks_in_db(&db).await;
    let theirs = truth["tasks"].as_array().expect("tasks");
    assert_eq!(theirs.len(), mine.len(), "one create per accepted task: {} created, {} accepted", theirs.len(), mine.len());
    let mut deducted = Units::ZERO;
    for t in theirs {
        let external = t["external_task_id"].as_str().expect("external id");
        let (status, charged, upstream_id) = mine.get(external).unwrap_or_else(|| panic!("{external} is not this server's"));
        assert_eq!(upstream_id.as_deref(), t["task_id"].as_str(), "{external}");
        let want = match t["status"].as_str() {
            Some("succeed") => "succeeded",
            Some("failed") => "failed",
            other => panic!("{external} still {other:?} upstream"),
        };
        assert_eq!(status, want, "{external}");
        let units: Units = t["deducted"].as_str().expect("deducted").parse().expect("units");
        assert_eq!(*charged, units, "{external}");
        deducted += units;
    }
    let charged: Units = mine.values().map(|(_, c, _)| *c).sum();
    assert_eq!(charged, deducted);
    assert_eq!(truth["costs_refused"], 0, "a read of the packs within a second of another");
    assert_eq!(truth["over_concurrency"], 0, "a create over the limit");
    assert!(truth["max_running"]["image"].as_u64().is_some_and(|n| (1..=4).contains(&n)), "{}", truth["max_running"]);
    // Once the service's figures show every deduction, the state shows them as they are.
    let true_left: Units =
        truth["packs"].as_array().expect("packs").iter().map(|p| p["true_remaining"].as_str().expect("units").parse::<Units>().expect("units")).sum();
    let shown = |s: &ServerState| -> Units { s.packages.iter().map(|p| p.remaining).sum() };
    eventually("the state to show the service's figures", 10, || state(&http, &at[1], "demo"), |s| shown(s) == true_left).await;
    println!(
        "upstream, 3 instances: {} of 600 submits accepted ({} ids), {} created upstream, max {} image slots running; \
         the syncer killed, another took over in {took_over:?}",
        answers.iter().filter(|(_, s, _)| *s == 201).count(),
        accepted.len(),
        theirs.len(),
        truth["max_running"]["image"]
    );
    sim.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
