//! Upstream mode through the whole chain: quota-server on a real port in
//! front of the service's simulator (kling-sim) on another, both in this
//! process, talking HTTP both ways (creates and queries one way, callbacks
//! the other). The simulator's `/sim/*` paths script task fates, another
//! client's spending and slots, and the lag of its balances, and tell the
//! truth (`/sim/ledger`) to check against.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quota_server::upstream::Upstream;
use quota_server::{build, App, Config};
use quota_widget::core::rules;
use quota_widget::core::wire::{Outcome, PackageStatus, ServerState, Units};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TOKEN: &str = "demo";

struct Chain {
    sim: kling_sim::Running,
    server: String,
    app: App,
    serving: JoinHandle<()>,
    http: reqwest::Client,
    dir: PathBuf,
}

struct Options {
    sim: kling_sim::Config,
    /// Extra quota-server flags.
    args: Vec<String>,
    /// A file database to reuse (restart tests); else in memory.
    db: Option<PathBuf>,
}

fn options() -> Options {
    Options { sim: kling_sim::Config::for_tests(), args: Vec::new(), db: None }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qw-upstream-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts quota-server in upstream mode against `sim_url`.
async fn start_server(sim_url: &str, dir: &std::path::Path, db: &str, args: &[String]) -> (String, App, JoinHandle<()>) {
    let ak = dir.join("access-key");
    let sk = dir.join("secret-key");
    std::fs::write(&ak, kling_sim::Config::for_tests().access_key).expect("key");
    std::fs::write(&sk, format!("{}\n", kling_sim::Config::for_tests().secret_key)).expect("key");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut argv: Vec<String> = [
        "quota-server",
        "--db",
        db,
        "--upstream",
        "kling",
        "--upstream-url",
        sim_url,
        "--access-key-file",
        ak.to_str().expect("utf-8"),
        "--secret-key-file",
        sk.to_str().expect("utf-8"),
        "--public-url",
        &format!("http://{addr}"),
        "--sync-ms",
        "3600000",
        "--poll-ms",
        "300",
        "--upstream-timeout-ms",
        "3000",
        "--ping-ms",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(args.iter().cloned());
    let config = <Config as clap::Parser>::parse_from(argv);
    let app = build(&config).await.expect("build");
    let router = app.router.clone();
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), app, serving)
}

async fn chain(o: Options) -> Chain {
    let sim = kling_sim::spawn(o.sim).await.expect("simulator");
    let dir = temp_dir(&format!("{}", rand_suffix()));
    let db = o.db.as_ref().map_or(":memory:".to_owned(), |p| p.to_str().expect("utf-8").to_owned());
    let (server, app, serving) = start_server(&sim.base_url(), &dir, &db, &o.args).await;
    let c = Chain { sim, server, app, serving, http: reqwest::Client::new(), dir };
    // The first sync runs at start; wait for its figures.
    c.wait_state("the first package sync", |s| s.packages_synced_at_ms.is_some()).await;
    c
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Chain {
    fn upstream(&self) -> &Arc<Upstream> {
        self.app.state.service.upstream().expect("upstream mode")
    }

    async fn state(&self) -> ServerState {
        let res = self
            .http
            .get(format!("{}/api/state", self.server))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("state");
        assert_eq!(res.status(), 200);
        res.json().await.expect("state json")
    }

    /// Polls the state until `ok`, failing after 15 s with the last state.
    async fn wait_state(&self, what: &str, ok: impl Fn(&ServerState) -> bool) -> ServerState {
        let mut last = None;
        for _ in 0..300 {
            let s = self.state().await;
            if ok(&s) {
                return s;
            }
            last = Some(s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}: {last:#?}");
    }

    async fn submit(&self, body: Value) -> (u16, Value, Option<String>) {
        let res = self
            .http
            .post(format!("{}/api/generations", self.server))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("submit");
        let status = res.status().as_u16();
        let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (status, res.json().await.expect("submit json"), retry)
    }

    async fn sim_post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .expect("sim control");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// The simulator's truth (its answer's `data`).
    async fn ledger(&self) -> Value {
        sim_ledger(&self.http, &self.sim).await
    }

    async fn creates(&self) -> u64 {
        self.ledger().await["creates"].as_u64().expect("creates")
    }

    async fn callback(&self, path_secret: Option<&str>, body: &str) -> (u16, Value) {
        let url = match path_secret {
            Some(s) => format!("{}/api/upstream/callback/{s}", self.server),
            None => self.upstream().callback_url().expect("callback url"),
        };
        let res = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("callback");
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.app.shutdown();
        self.serving.abort();
        self.sim.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the first package sync of the server at `server`.
async fn wait_synced(http: &reqwest::Client, server: &str) {
    for _ in 0..300 {
        let s: ServerState =
            http.get(format!("{server}/api/state")).bearer_auth(TOKEN).send().await.expect("s").json().await.expect("s");
        if s.packages_synced_at_ms.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the first package sync never happened");
}

async fn sim_ledger(http: &reqwest::Client, sim: &kling_sim::Running) -> Value {
    let v: Value = http
        .get(format!("{}/sim/ledger", sim.base_url()))
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("ledger json");
    v["data"].clone()
}

/// What the widget shows as remaining: the core's rule (R2).
fn spendable(s: &ServerState) -> Units {
    rules::remaining(s)
}

fn units(text: &str) -> Units {
    text.parse().expect("units")
}

fn image(id: &str, count: u32) -> Value {
    json!({ "kind": "image", "count": count, "client_request_id": id, "prompt": "a fox in the snow",
            "params": { "model_name": "kling-v1" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_come_from_the_service_with_fractions_and_statuses() {
    let c = chain(options()).await;
    let s = c.state().await;
    // The simulator's sample packs: 66.5 and 300 online, one not yet
    // effective, one expired.
    let by_name = |n: &str| s.packages.iter().find(|p| p.name == n).unwrap_or_else(|| panic!("{n}: {s:#?}"));
    assert_eq!(by_name("Trial pack").remaining, units("66.5"));
    assert_eq!(by_name("Trial pack").status, PackageStatus::Active);
    assert_eq!(by_name("Next month").status, PackageStatus::Pending);
    assert_eq!(by_name("Old pack").status, PackageStatus::Expired);
    assert_eq!(spendable(&s), units("366.5"));
    // Limits and estimated costs come from configuration.
    let image = s.pools.iter().find(|p| p.kind == "image").expect("image pool");
    assert_eq!((image.limit, image.unit_cost), (4, units("0.25")));
    assert!(s.packages_synced_at_ms.is_some_and(|t| t <= s.server_time_ms));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_never_moves_the_units_even_while_the_balance_lags() {
    let mut o = options();
    o.sim.lag_ms = 3_600_000;
    let c = chain(o).await;
    c.sim_post("/sim/script", json!({ "outcomes": [{ "outcome": "failed", "reason": "content moderation: blocked", "ms": 600 }] }))
        .await;
    let before = spendable(&c.state().await);
    let (status, body, _) = c.submit(image("f1", 2)).await;
    assert_eq!(status, 201, "{body}");
    // Sample the figure at every step until the task has ended.
    let mut samples = 0;
    let end = loop {
        let s = c.state().await;
        assert_eq!(spendable(&s), before, "units moved during a failing task: {s:#?}");
        samples += 1;
        if let Some(f) = s.finished.iter().find(|f| f.client_request_id.as_deref() == Some("f1")) {
            break f.clone();
        }
        assert!(samples < 400, "the task never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(end.outcome, Outcome::Failed);
    assert_eq!(end.units_charged, Units::ZERO);
    assert!(end.reason.as_deref().is_some_and(|r| r.contains("moderation")), "{end:?}");
    // A sync after the failure changes nothing either.
    c.upstream().sync_once().await.expect("sync");
    assert_eq!(spendable(&c.state().await), before);
    assert_eq!(c.creates().await, 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_charges_the_reported_fraction_once_also_after_the_service_catches_up() {
    let mut o = options();
    o.sim.lag_ms = 3_600_000;
    let c = chain(o).await;
    c.sim_post("/sim/script", json!({ "outcomes": [{ "outcome": "succeed", "ms": 300 }] })).await;
    let before = spendable(&c.state().await);
    let (status, body, _) = c.submit(image("s1", 3)).await;
    assert_eq!(status, 201, "{body}");
    let s = c
        .wait_state("the success", |s| s.finished.iter().any(|f| f.client_request_id.as_deref() == Some("s1")))
        .await;
    let f = s.finished.iter().find(|f| f.client_request_id.as_deref() == Some("s1")).expect("ended");
    assert_eq!((f.outcome, f.units_charged), (Outcome::Succeeded, units("0.75")));
    assert_eq!(spendable(&s), before.saturating_sub(units("0.75")), "lagging service: the charge shows at once");

    // Still lagging: a sync shows the charge once.
    c.upstream().sync_once().await.expect("sync");
    assert_eq!(spendable(&c.state().await), before.saturating_sub(units("0.75")));
    // The service catches up: still charged once.
    c.sim_post("/sim/settings", json!({ "lag_ms": 0 })).await;
    c.upstream().sync_once().await.expect("sync");
    let s = c.state().await;
    assert_eq!(spendable(&s), before.saturating_sub(units("0.75")), "caught up, counted once: {s:#?}");
    assert_eq!(c.upstream().pending_charges().await.expect("pending"), Units::ZERO);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_spending_shows_the_services_lower_figure() {
    let c = chain(options()).await;
    let before = spendable(&c.state().await);
    c.sim_post("/sim/spend", json!({ "units": "2.125" })).await;
    c.upstream().sync_once().await.expect("sync");
    assert_eq!(spendable(&c.state().await), before.saturating_sub(units("2.125")));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_1303_is_a_refusal_with_its_reason_and_the_server_backs_off() {
    let c = chain(options()).await;
    // Another client of the same account holds every image slot.
    c.sim_post("/sim/occupy", json!({ "kind": "image", "slots": 4, "ms": 5000 })).await;
    let (status, body, retry) = c.submit(image("b1", 1)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], 1303);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("parallel task limit"), "{message}");
    assert!(retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= 1), "{retry:?}");
    let s = c.state().await;
    let f = s.finished.iter().find(|f| f.client_request_id.as_deref() == Some("b1")).expect("recorded");
    assert_eq!((f.outcome, f.units_charged), (Outcome::Refused, Units::ZERO));
    assert_eq!(f.reason.as_deref(), Some(message));
    assert!(s.running.is_empty(), "slots released");
    // Within the backoff, the next submit is refused here, not sent.
    let creates = c.creates().await;
    let (status, body, _) = c.submit(image("b2", 1)).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(1303)));
    assert_eq!(c.creates().await, creates, "no create during the backoff");
    c.stop().await;
}

/// The queue upstream: while another client of the account holds every
/// image slot, requests sent with `queue` wait through the service's 1303s
/// (each puts the request back in its place and holds the kind for the
/// backoff) and start once the slots free: none is refused, each is
/// created once, never over the service's limit, and only successes are
/// charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_wait_through_the_services_1303s_and_start() {
    let c = chain(options()).await;
    c.sim_post("/sim/occupy", json!({ "kind": "image", "slots": 4, "ms": 2500 })).await;
    let queued = |id: &str| {
        let mut body = image(id, 1);
        body["queue"] = true.into();
        body
    };
    let mut places = Vec::new();
    for id in ["q1", "q2", "q3"] {
        let (status, body, _) = c.submit(queued(id)).await;
        assert_eq!(status, 201, "{id} is accepted, not refused: {body}");
        places.push(body["place"].as_u64());
    }
    // The first was created and refused (1303): back at the head; the
    // others wait behind it, the kind held.
    assert_eq!(places, [Some(1), Some(2), Some(3)]);
    assert!(c.ledger().await["over_concurrency"].as_u64().is_some_and(|n| n >= 1));
    let s = c.state().await;
    assert_eq!(s.queued.iter().map(|q| q.place).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(s.running.is_empty() && s.finished.is_empty(), "nothing runs, nothing is refused: {s:#?}");
    // Without `queue`, the same moment is a refusal, as before.
    let (status, body, _) = c.submit(image("plain", 1)).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(1303)));

    let s = c
        .wait_state("the queued requests to run and end", |s| {
            s.queued.is_empty()
                && s.running.is_empty()
                && s.finished.iter().filter(|f| f.client_request_id.as_deref().is_some_and(|r| r.starts_with('q'))).count() == 3
        })
        .await;
    for id in ["q1", "q2", "q3"] {
        let f = s.finished.iter().find(|f| f.client_request_id.as_deref() == Some(id)).expect("ended");
        assert_eq!(f.outcome, Outcome::Succeeded, "{id}: {f:?}");
    }
    let ledger = c.ledger().await;
    let tasks = ledger["tasks"].as_array().expect("tasks");
    for id in ["q1", "q2", "q3"] {
        let created = tasks.iter().filter(|t| t["external_task_id"] == id).count();
        assert_eq!(created, 1, "{id} created once upstream");
    }
    assert!(ledger["max_running"]["image"].as_u64().is_some_and(|n| n <= 4), "{ledger}");
    let charged: Units = s.finished.iter().map(|f| f.units_charged).sum();
    let deducted: Units = tasks.iter().filter_map(|t| t["deducted"].as_str()).map(units).sum();
    assert_eq!(charged, deducted, "charged here what the service deducted");
    println!(
        "3 queued requests behind another client's 4 slots: {} refusals of the service waited through, none shown",
        ledger["over_concurrency"]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_service_carry_their_codes() {
    let c = chain(options()).await;
    c.sim_post("/sim/settings", json!({ "arrears": true })).await;
    let (status, body, _) = c.submit(image("a1", 1)).await;
    assert_eq!((status, body["code"].as_u64()), (402, Some(1101)), "{body}");
    c.sim_post("/sim/settings", json!({ "arrears": false })).await;
    // A bad field of the dashboard's: the service's 1200 with its message.
    let (status, body, _) = c
        .submit(json!({ "kind": "video", "count": 1, "client_request_id": "v1", "prompt": "x",
                        "params": { "duration": "7" } }))
        .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(1200)), "{body}");
    let s = c.state().await;
    assert!(s.running.is_empty());
    assert_eq!(s.finished.iter().filter(|f| f.outcome == Outcome::Refused).count(), 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_id_never_creates_a_second_task() {
    let c = chain(options()).await;
    c.sim_post("/sim/script", json!({ "outcomes": [{ "outcome": "succeed", "ms": 2000 }] })).await;
    let (s1, b1, _) = c.submit(image("r1", 1)).await;
    let (s2, b2, _) = c.submit(image("r1", 1)).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(b1["task_id"], b2["task_id"]);
    assert_eq!(c.creates().await, 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_checked_and_confirmed() {
    let c = chain(options()).await;
    // A task that runs until the simulator is told to end it.
    c.sim_post("/sim/script", json!({ "outcomes": [{ "outcome": "succeed", "ms": 600000 }] })).await;
    let (status, _, _) = c.submit(image("c1", 1)).await;
    assert_eq!(status, 201);
    let task = c.wait_state("the task", |s| !s.running.is_empty()).await;
    let ledger = c.ledger().await;
    let upstream_id = ledger["tasks"][0]["task_id"].as_str().expect("task id").to_owned();
    let rev = c.state().await.revision;

    let forged = json!({ "task_id": upstream_id, "task_status": "succeed", "final_unit_deduction": "0.001",
                         "task_info": { "external_task_id": "c1" } })
    .to_string();
    // Wrong secret: not found, whatever the body.
    assert_eq!(c.callback(Some("not-the-secret"), &forged).await.0, 404);
    // Malformed.
    let (status, body) = c.callback(None, "{\"task_status\": ").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = c.callback(None, &json!({ "task_id": upstream_id, "task_status": "exploded" }).to_string()).await;
    assert_eq!(status, 400);
    // A task this server never created.
    let unknown = json!({ "task_id": "someone-elses", "task_status": "succeed" }).to_string();
    assert_eq!(c.callback(None, &unknown).await.0, 404);
    // The right id with another external id.
    let crossed = json!({ "task_id": upstream_id, "task_status": "failed", "task_info": { "external_task_id": "x" } });
    assert_eq!(c.callback(None, &crossed.to_string()).await.0, 404);
    // A forged end: the service says the task still runs.
    let (status, body) = c.callback(None, &forged).await;
    assert_eq!(status, 409, "{body}");
    let s = c.state().await;
    assert_eq!((s.revision, s.running.len()), (rev, 1), "nothing changed");
    assert_eq!(spendable(&s), spendable(&task));

    // The real end arrives by the simulator's callback, once.
    c.sim_post(&format!("/sim/end/{upstream_id}"), json!({ "outcome": "succeed" })).await;
    let s = c.wait_state("the end", |s| s.running.is_empty()).await;
    assert_eq!(s.finished[0].units_charged, units("0.25"));
    // A replay of the callback changes nothing.
    let replay = json!({ "task_id": upstream_id, "task_status": "succeed", "final_unit_deduction": "0.25" });
    let (status, body) = c.callback(None, &replay.to_string()).await;
    assert_eq!((status, body["message"].as_str()), (200, Some("already settled")));
    assert_eq!(c.state().await.revision, s.revision);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_callbacks_polling_settles_and_the_deadline_ends_the_rest() {
    let mut o = options();
    o.sim.no_callbacks = true;
    o.args = vec!["--deadline-ms".into(), "2500".into()];
    let c = chain(o).await;
    c.sim_post(
        "/sim/script",
        json!({ "outcomes": [{ "outcome": "succeed", "ms": 300 }, { "outcome": "succeed", "ms": 600000 }] }),
    )
    .await;
    assert_eq!(c.submit(image("p1", 1)).await.0, 201);
    let s = c
        .wait_state("the polled success", |s| s.finished.iter().any(|f| f.client_request_id.as_deref() == Some("p1")))
        .await;
    assert_eq!(s.finished[0].outcome, Outcome::Succeeded);
    assert_eq!(c.submit(image("p2", 1)).await.0, 201);
    let s = c
        .wait_state("the deadline", |s| s.finished.iter().any(|f| f.client_request_id.as_deref() == Some("p2")))
        .await;
    let f = &s.finished[0];
    assert_eq!((f.outcome, f.units_charged), (Outcome::Failed, Units::ZERO));
    assert!(f.reason.as_deref().is_some_and(|r| r.contains("in time")), "{f:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_task_resumes_and_settles_it_once() {
    let dir = temp_dir("restart");
    let db = dir.join("quota.sqlite3");
    let _ = std::fs::remove_file(&db);
    let mut sim_cfg = kling_sim::Config::for_tests();
    sim_cfg.no_callbacks = true;
    let sim = kling_sim::spawn(sim_cfg).await.expect("simulator");
    let http = reqwest::Client::new();
    http.post(format!("{}/sim/script", sim.base_url()))
        .json(&json!({ "outcomes": [{ "outcome": "succeed", "ms": 600000 }] }))
        .send()
        .await
        .expect("script");
    let db_s = db.to_str().expect("utf-8").to_owned();

    let (server, app, serving) = start_server(&sim.base_url(), &dir, &db_s, &[]).await;
    wait_synced(&http, &server).await;
    let res = http
        .post(format!("{server}/api/generations"))
        .bearer_auth(TOKEN)
        .json(&image("k1", 2))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201);
    // The server stops while the task runs upstream.
    app.shutdown();
    serving.abort();
    drop(app);

    let ledger = sim_ledger(&http, &sim).await;
    let upstream_id = ledger["tasks"][0]["task_id"].as_str().expect("id").to_owned();
    http.post(format!("{}/sim/end/{upstream_id}", sim.base_url()))
        .json(&json!({ "outcome": "succeed" }))
        .send()
        .await
        .expect("end");

    // A new process on the same database finds the task and settles it.
    let (server, app, serving) = start_server(&sim.base_url(), &dir, &db_s, &[]).await;
    let mut settled = None;
    for _ in 0..200 {
        let s: ServerState =
            http.get(format!("{server}/api/state")).bearer_auth(TOKEN).send().await.expect("s").json().await.expect("s");
        if s.running.is_empty() && !s.finished.is_empty() {
            settled = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = settled.expect("settled after the restart");
    assert_eq!((s.finished[0].outcome, s.finished[0].units_charged), (Outcome::Succeeded, units("0.5")));
    let ledger = sim_ledger(&http, &sim).await;
    assert_eq!(ledger["creates"], 1);
    app.shutdown();
    serving.abort();
    sim.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_sync_a_submit_is_refused_as_unavailable_not_as_short_of_units() {
    // Nothing listens at the service's address: no sync ever succeeds.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let dir = temp_dir("unsynced");
    let (server, app, serving) = start_server(&url, &dir, ":memory:", &[]).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{server}/api/generations"))
        .bearer_auth(TOKEN)
        .json(&image("u1", 1))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], 5001);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("still being loaded")), "{body}");
    let s: ServerState =
        http.get(format!("{server}/api/state")).bearer_auth(TOKEN).send().await.expect("s").json().await.expect("s");
    assert!(s.packages_synced_at_ms.is_none());
    assert!(s.finished.is_empty() && s.running.is_empty(), "nothing recorded: {s:#?}");
    app.shutdown();
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
