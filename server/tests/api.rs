//! End-to-end tests of the HTTP API, in-process (tower `oneshot`), on an
//! in-memory store with the worker off: tasks end only through the dev
//! endpoints, so every step is deterministic.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use quota_server::{build, App, Config};
use quota_widget::core::wire::{
    codes, ApiError, Cancelled, Units, Outcome, PackageStatus, ServerState, SubmitAccepted, SubmitRequest,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const DAY: i64 = 86_400_000;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error(&self) -> ApiError {
        self.json()
    }
}

/// The app on the store under test: the config's own, or with
/// `QW_TEST_STORE=postgres` a fresh database on the test cluster of
/// `scripts/pg` (`QW_TEST_PG_DIR`) in place of `:memory:`. Tests that name a
/// SQLite file keep it.
async fn app_with(mut config: Config) -> App {
    if config.db == ":memory:" {
        if let Some(url) = pg_database().await {
            config.db = url;
        }
    }
    build(&config).await.expect("build app")
}

async fn pg_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    if std::env::var("QW_TEST_STORE").ok().as_deref() != Some("postgres") {
        return None;
    }
    let dir = std::env::var("QW_TEST_PG_DIR").expect("QW_TEST_PG_DIR: start the test cluster with scripts/pg start");
    let name = format!("qw_api_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let (client, conn) = tokio_postgres::connect(&format!("host={dir} user=postgres dbname=postgres"), tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    Some(format!("postgresql:///{name}?host={dir}&user=postgres"))
}

async fn app() -> App {
    app_with(Config::for_tests()).await
}

fn request(method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .expect("request"),
        None => b.body(Body::empty()).expect("request"),
    }
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    send(router, request(method, path, token, body)).await
}

/// Creates an account through the dev endpoint.
async fn account(router: &Router, token: &str, image_limit: u32, packages: Value) -> ServerState {
    let r = call(
        router,
        Method::POST,
        "/api/dev/accounts",
        None,
        Some(json!({ "token": token, "image_limit": image_limit, "video_limit": 1, "packages": packages })),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

async fn state(router: &Router, token: &str) -> ServerState {
    let r = call(router, Method::GET, "/api/state", Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

async fn submit(router: &Router, token: &str, kind: &str, count: u32, id: &str) -> Reply {
    let body = serde_json::to_value(SubmitRequest {
        kind: kind.into(),
        count,
        client_request_id: id.into(),
        prompt: Some("a cat".into()),
        queue: false,
    })
    .expect("json");
    call(
        router,
        Method::POST,
        "/api/generations",
        Some(token),
        Some(body),
    )
    .await
}

async fn end(router: &Router, token: &str, task: &str, how: &str, body: Option<Value>) -> Reply {
    call(
        router,
        Method::POST,
        &format!("/api/dev/tasks/{task}/{how}"),
        Some(token),
        body,
    )
    .await
}

fn one_pack(total: u64) -> Value {
    json!([{ "name": "pack", "total": total, "expires_in_ms": 30 * DAY }])
}

/// `n` whole units.
fn u(n: u64) -> Units {
    Units::whole(n)
}

fn remaining(s: &ServerState) -> Vec<(String, Units)> {
    s.packages
        .iter()
        .map(|p| (p.name.clone(), p.remaining))
        .collect()
}

#[tokio::test]
async fn accepts_within_limits() {
    let app = app().await;
    let r = &app.router;
    let s0 = account(r, "a", 4, one_pack(100)).await;
    let res = submit(r, "a", "image", 3, "req-1").await;
    assert_eq!(res.status, StatusCode::CREATED);
    let acc: SubmitAccepted = res.json();
    assert_eq!(
        (
            acc.slots,
            acc.reserved_units,
            acc.client_request_id.as_str()
        ),
        (3, u(12), "req-1")
    );
    assert!(acc.revision > s0.revision);

    let s = state(r, "a").await;
    assert_eq!(s.revision, acc.revision);
    let image = s
        .pools
        .iter()
        .find(|p| p.kind == "image")
        .expect("image pool");
    assert_eq!((image.limit, image.in_use), (4, 3));
    assert_eq!(s.running.len(), 1);
    assert_eq!(s.running[0].id, acc.task_id);
    assert_eq!(s.running[0].reserved_units, u(12));
    assert_eq!(s.running[0].client_request_id.as_deref(), Some("req-1"));
    // R3: a hold never deducts.
    assert_eq!(s.packages[0].remaining, u(100));

    // Video holds one slot whatever its count.
    let res = submit(r, "a", "video", 2, "req-2").await;
    assert_eq!(res.status, StatusCode::CREATED);
    let acc: SubmitAccepted = res.json();
    assert_eq!((acc.slots, acc.reserved_units), (1, u(40)));
}

#[tokio::test]
async fn over_concurrency_is_1303_and_recorded_as_refused() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(1000)).await;
    assert_eq!(
        submit(r, "a", "image", 3, "one").await.status,
        StatusCode::CREATED
    );
    let before = state(r, "a").await;

    let res = submit(r, "a", "image", 2, "two").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let err = res.error();
    assert_eq!(err.code, codes::OVER_CONCURRENCY);
    assert_eq!(err.message, "parallel task over resource pack limit");

    let s = state(r, "a").await;
    assert!(s.revision > before.revision, "a refusal is a change");
    assert_eq!(s.running.len(), 1);
    assert_eq!(s.finished.len(), 1);
    let f = &s.finished[0];
    assert_eq!(f.outcome, Outcome::Refused);
    assert_eq!(f.units_charged, Units::ZERO);
    assert_eq!(f.slots, 2);
    assert_eq!(f.client_request_id.as_deref(), Some("two"));
    assert_eq!(
        f.reason.as_deref(),
        Some("parallel task over resource pack limit")
    );
    assert_eq!(remaining(&s), remaining(&before));
}

/// `params` go to an upstream service: a server without one refuses them,
/// and nothing is reserved or recorded.
#[tokio::test]
async fn params_without_an_upstream_are_400() {
    let app = app().await;
    let r = &app.router;
    let before = account(r, "a", 4, one_pack(10)).await;
    let body = json!({ "kind": "image", "count": 1, "client_request_id": "p1", "params": { "model_name": "kling-v1" } });
    let res = call(r, Method::POST, "/api/generations", Some("a"), Some(body)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error().code, codes::BAD_REQUEST);
    assert_eq!(res.error().message, "params are passed to an upstream service: this server runs without one");
    let s = state(r, "a").await;
    assert_eq!(s.revision, before.revision);
    assert!(s.running.is_empty() && s.finished.is_empty());
}

#[tokio::test]
async fn short_units_is_1102() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(10)).await;
    // 2 images cost 8 of 10: accepted; the 8 are now reserved.
    assert_eq!(
        submit(r, "a", "image", 2, "one").await.status,
        StatusCode::CREATED
    );
    // 1 more costs 4 but only 2 are available.
    let res = submit(r, "a", "image", 1, "two").await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(res.error().code, codes::UNITS_EXHAUSTED);
    assert_eq!(res.error().message, "resource pack exhausted");
    let s = state(r, "a").await;
    assert_eq!(s.finished[0].outcome, Outcome::Refused);
    assert_eq!(
        s.finished[0].reason.as_deref(),
        Some("resource pack exhausted")
    );
    assert_eq!(s.packages[0].remaining, u(10));
}

#[tokio::test]
async fn success_deducts_exact_cost_earliest_expiry_first() {
    let app = app().await;
    let r = &app.router;
    // Created later-expiring first, so that the order cannot come from ids.
    account(
        r,
        "a",
        4,
        json!([
            { "name": "late", "total": 100, "expires_in_ms": 20 * DAY },
            { "name": "early", "total": 10, "expires_in_ms": 2 * DAY },
        ]),
    )
    .await;
    let s = state(r, "a").await;
    assert_eq!(
        s.packages[0].name, "early",
        "packages are listed earliest expiry first"
    );

    let acc: SubmitAccepted = submit(r, "a", "image", 4, "x").await.json();
    assert_eq!(acc.reserved_units, u(16));
    let res = end(r, "a", &acc.task_id, "succeed", None).await;
    assert_eq!(res.status, StatusCode::OK);
    let body: Value = res.json();
    assert_eq!(body["units_charged"], 16);
    assert_eq!(body["outcome"], "succeeded");

    let s = state(r, "a").await;
    assert_eq!(
        remaining(&s),
        vec![("early".into(), Units::ZERO), ("late".into(), u(94))]
    );
    assert_eq!(s.packages[0].status, PackageStatus::Exhausted);
    assert!(s.running.is_empty());
    assert_eq!(s.finished[0].outcome, Outcome::Succeeded);
    assert_eq!(s.finished[0].units_charged, u(16));
    assert_eq!(
        s.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use),
        Some(0)
    );

    // A final cost other than the reservation (dev body `units`).
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "y").await.json();
    let body: Value = end(r, "a", &acc.task_id, "succeed", Some(json!({ "units": 3 })))
        .await
        .json();
    assert_eq!(body["units_charged"], 3);
    assert_eq!(
        remaining(&state(r, "a").await),
        vec![("early".into(), Units::ZERO), ("late".into(), u(91))]
    );

    // Ending it twice is a conflict and changes nothing.
    let again = end(r, "a", &acc.task_id, "fail", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn failure_charges_nothing_at_any_instant() {
    let app = app().await;
    let r = &app.router;
    account(
        r,
        "a",
        4,
        json!([
            { "name": "one", "total": 50, "expires_in_ms": DAY },
            { "name": "two", "total": 50, "expires_in_ms": 2 * DAY },
        ]),
    )
    .await;
    let before = remaining(&state(r, "a").await);
    let acc: SubmitAccepted = submit(r, "a", "image", 4, "x").await.json();
    assert_eq!(
        remaining(&state(r, "a").await),
        before,
        "running: held, not deducted"
    );

    let res = end(
        r,
        "a",
        &acc.task_id,
        "fail",
        Some(json!({ "reason": "content moderation" })),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json::<Value>()["units_charged"], 0);

    let s = state(r, "a").await;
    assert_eq!(remaining(&s), before);
    assert!(s.running.is_empty());
    let f = &s.finished[0];
    assert_eq!((f.outcome, f.units_charged), (Outcome::Failed, Units::ZERO));
    assert_eq!(f.reason.as_deref(), Some("content moderation"));
    assert_eq!(
        s.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use),
        Some(0)
    );
}

#[tokio::test]
async fn revision_increases_on_every_change_and_survives_reopen() {
    let path = std::env::temp_dir().join(format!(
        "quota-server-test-{}-{}.sqlite3",
        std::process::id(),
        quota_server::now_ms()
    ));
    let mut config = Config::for_tests();
    config.db = path.to_string_lossy().into_owned();

    let last = {
        let app = app_with(config.clone()).await;
        let r = &app.router;
        let mut revs = vec![account(r, "a", 1, one_pack(100)).await.revision];
        let acc: SubmitAccepted = submit(r, "a", "image", 1, "x").await.json();
        revs.push(acc.revision);
        assert_eq!(
            submit(r, "a", "image", 1, "y").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        revs.push(state(r, "a").await.revision);
        end(r, "a", &acc.task_id, "succeed", None).await;
        revs.push(state(r, "a").await.revision);
        let limit = call(
            r,
            Method::PUT,
            "/api/dev/limits/image",
            Some("a"),
            Some(json!({ "limit": 2 })),
        )
        .await;
        assert_eq!(limit.status, StatusCode::OK);
        revs.push(state(r, "a").await.revision);
        let grant = call(
            r,
            Method::POST,
            "/api/dev/packages",
            Some("a"),
            Some(json!({ "name": "g", "total": 5 })),
        )
        .await;
        assert_eq!(grant.status, StatusCode::CREATED);
        revs.push(state(r, "a").await.revision);
        // A bad request is not a change.
        assert_eq!(
            submit(r, "a", "image", 0, "z").await.status,
            StatusCode::BAD_REQUEST
        );
        revs.push(state(r, "a").await.revision);
        let strictly: Vec<bool> = revs.windows(2).map(|w| w[1] > w[0]).collect();
        assert_eq!(
            strictly,
            vec![true, true, true, true, true, false],
            "{revs:?}"
        );
        app.shutdown();
        *revs.last().expect("revs")
    };

    let app = app_with(config).await;
    let r = &app.router;
    let s = state(r, "a").await;
    assert_eq!(s.revision, last, "the revision is stored");
    assert_eq!(
        s.pools.iter().find(|p| p.kind == "image").map(|p| p.limit),
        Some(2)
    );
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "after").await.json();
    assert!(acc.revision > last);
    app.shutdown();
    drop(app);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn submit_is_idempotent_on_accepted_ids_only() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 2, one_pack(100)).await;
    let first = submit(r, "a", "image", 2, "same").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let rev = state(r, "a").await.revision;
    let again = submit(r, "a", "image", 2, "same").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.json::<SubmitAccepted>(),
        first.json::<SubmitAccepted>()
    );
    let s = state(r, "a").await;
    assert_eq!(s.revision, rev, "a repeat changes nothing");
    assert_eq!(s.running.len(), 1);
    assert_eq!(
        s.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use),
        Some(2)
    );

    // A refused id is judged again once there is room.
    assert_eq!(
        submit(r, "a", "image", 1, "retry").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let task = first.json::<SubmitAccepted>().task_id;
    end(r, "a", &task, "fail", None).await;
    assert_eq!(
        submit(r, "a", "image", 1, "retry").await.status,
        StatusCode::CREATED
    );
    // The first id still answers with its first answer after its task ended.
    assert_eq!(
        submit(r, "a", "image", 2, "same").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn state_etag_and_304() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let first = call(r, Method::GET, "/api/state", Some("a"), None).await;
    let s: ServerState = first.json();
    let tag = first
        .headers
        .get(header::ETAG)
        .expect("etag")
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(tag, format!("\"{}\"", s.revision));
    assert_eq!(
        first
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-cache"[..])
    );

    let cond = |tag: &str| {
        Request::get("/api/state")
            .header(header::AUTHORIZATION, "Bearer a")
            .header(header::IF_NONE_MATCH, tag)
            .body(Body::empty())
            .expect("request")
    };
    let not_modified = send(r, cond(&tag)).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(
        not_modified.headers.get(header::ETAG).map(|v| v.as_bytes()),
        Some(tag.as_bytes())
    );

    submit(r, "a", "image", 1, "x").await;
    let changed = send(r, cond(&tag)).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(changed.json::<ServerState>().revision > s.revision);
}

/// Reads server-sent events from a response body.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    async fn open(
        router: &Router,
        token: &str,
        last_event_id: Option<u64>,
    ) -> (StatusCode, HeaderMap, Events) {
        let header = last_event_id.map(|id| id.to_string());
        Events::open_with(router, token, header.as_deref(), None).await
    }

    /// Opens with a raw `Last-Event-ID` header and a raw `last_event_id`
    /// query value (as it goes in the URL, percent-encoded), each if given.
    async fn open_with(
        router: &Router,
        token: &str,
        header: Option<&str>,
        query: Option<&str>,
    ) -> (StatusCode, HeaderMap, Events) {
        let uri = match query {
            Some(q) => format!("/api/events?last_event_id={q}"),
            None => "/api/events".to_owned(),
        };
        let mut b = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = header {
            b = b.header("last-event-id", id);
        }
        let res = router
            .clone()
            .oneshot(b.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (status, headers) = (res.status(), res.headers().clone());
        (
            status,
            headers,
            Events {
                body: res.into_body(),
                buf: String::new(),
            },
        )
    }

    /// The next event other than a ping: a ping may come at any time (every
    /// `--ping-ms`, sooner than a slow store answers a submit).
    async fn next_change(&mut self) -> (String, Option<String>, String) {
        loop {
            let ev = self.next().await;
            if ev.0 != "ping" {
                return ev;
            }
        }
    }

    /// The next event as (event, id, data).
    async fn next(&mut self) -> (String, Option<String>, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_string());
                    }
                }
                return (event, id, data.join("\n"));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("an event within 5 s")
                .expect("stream open")
                .expect("frame");
            if let Ok(bytes) = frame.into_data() {
                self.buf
                    .push_str(std::str::from_utf8(&bytes).expect("utf-8"));
            }
        }
    }
}

#[tokio::test]
async fn sse_sends_state_first_with_revision_id() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let rev = state(r, "a").await.revision;
    let (status, headers, mut events) = Events::open(r, "a", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    assert_eq!(
        headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-cache, no-transform"[..])
    );
    assert_eq!(
        headers.get("x-accel-buffering").map(|v| v.as_bytes()),
        Some(&b"no"[..])
    );

    let (event, id, data) = events.next().await;
    assert_eq!(event, "state");
    assert_eq!(id, Some(rev.to_string()));
    assert!(!data.contains('\n'), "state JSON is one line");
    let s: ServerState = serde_json::from_str(&data).expect("state json");
    assert_eq!(s.revision, rev);

    // A change is pushed with the next revision.
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "x").await.json();
    let (event, id, data) = events.next_change().await;
    assert_eq!(event, "state");
    assert_eq!(id, Some(acc.revision.to_string()));
    let s: ServerState = serde_json::from_str(&data).expect("state json");
    assert_eq!(s.running.len(), 1);

    // The raw dev event reaches the stream unchanged, without an id.
    let raw = Request::post("/api/dev/raw-event")
        .header(header::AUTHORIZATION, "Bearer a")
        .body(Body::from("{not json"))
        .expect("request");
    let delivered = send(r, raw).await;
    assert_eq!(delivered.json::<Value>()["receivers"], 1);
    assert_eq!(
        events.next_change().await,
        ("state".into(), None, "{not json".into())
    );
    assert_eq!(
        state(r, "a").await.revision,
        acc.revision,
        "a raw event changes nothing"
    );
}

#[tokio::test]
async fn sse_resumes_without_initial_state_and_pings() {
    let mut config = Config::for_tests();
    config.ping_ms = 50;
    let app = app_with(config).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let rev = state(r, "a").await.revision;

    let (_, _, mut events) = Events::open(r, "a", Some(rev)).await;
    assert_eq!(events.next().await, ("ping".into(), None, rev.to_string()));

    // Behind: the state comes first.
    let (_, _, mut behind) = Events::open(r, "a", Some(rev - 1)).await;
    assert_eq!(behind.next().await.1, Some(rev.to_string()));

    // Then a change arrives as a state event, within a few pings.
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "x").await.json();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no state event within 5 s of the change, only pings");
        let (event, id, _) = events.next().await;
        if event == "state" {
            assert_eq!(id, Some(acc.revision.to_string()));
            break;
        }
        assert_eq!(event, "ping");
    }
}

#[tokio::test]
async fn sse_resumes_from_the_query_and_the_header_wins() {
    let mut config = Config::for_tests();
    config.ping_ms = 50;
    let app = app_with(config).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let shown = state(r, "a").await.revision.to_string();

    // The query alone: the state at its revision is not resent...
    let (status, _, mut resumed) = Events::open_with(r, "a", None, Some(&shown)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed.next().await, ("ping".into(), None, shown.clone()));
    // ...a newer one is.
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "x").await.json();
    loop {
        let (event, id, _) = resumed.next().await;
        if event == "state" {
            assert_eq!(id, Some(acc.revision.to_string()));
            break;
        }
        assert_eq!(event, "ping");
    }

    // What a new stream sends first: a ping (nothing resent) or the state.
    async fn first(r: &Router, header: Option<&str>, query: Option<&str>) -> (String, Option<String>) {
        let (status, _, mut events) = Events::open_with(r, "a", header, query).await;
        assert_eq!(status, StatusCode::OK, "header {header:?}, query {query:?}");
        let (event, id, _) = events.next().await;
        (event, id)
    }
    let (now, behind) = (acc.revision.to_string(), shown);
    let ping = ("ping".to_owned(), None);
    let state_now = ("state".to_owned(), Some(now.clone()));
    // A query behind the current revision: the state comes first.
    assert_eq!(first(r, None, Some(&behind)).await, state_now);
    // Leading zeros are still decimal digits.
    assert_eq!(first(r, None, Some(&format!("00{now}"))).await, ping);

    // The header wins over the query, either way round.
    assert_eq!(first(r, Some(&now), Some(&behind)).await, ping);
    assert_eq!(first(r, Some(&behind), Some(&now)).await, state_now);
    // An unreadable header is ignored as before: the query counts.
    assert_eq!(first(r, Some("junk"), Some(&now)).await, ping);
    assert_eq!(first(r, Some("junk"), None).await, state_now);
}

#[tokio::test]
async fn a_malformed_last_event_id_query_is_400_json() {
    let app = app_with(config_with(&["--max-streams-per-account", "1"])).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let rev = state(r, "a").await.revision.to_string();
    let twice = format!("{rev}&last_event_id={rev}");
    let bad = [
        "", "abc", "-1", "%2B1", "%201", "1%20", "1.0", "1e3", "0x10", "18446744073709551616", twice.as_str(),
    ];
    for value in bad {
        // Also with a valid header: a malformed request is malformed.
        for header in [None, Some(rev.as_str())] {
            let (status, headers, events) = Events::open_with(r, "a", header, Some(value)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "last_event_id={value}, header {header:?}");
            assert_eq!(
                headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
                Some(&b"application/json"[..]),
                "last_event_id={value}"
            );
            let body = events.body.collect().await.expect("body").to_bytes();
            let e: ApiError = serde_json::from_slice(&body).expect("an ApiError");
            assert_eq!(e.code, codes::BAD_REQUEST, "last_event_id={value}");
            assert!(e.message.contains("last_event_id"), "{}", e.message);
        }
    }
    // Credentials are checked first.
    let (status, _, _) = Events::open_with(r, "nobody", None, Some("abc")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The refused requests held no stream place: the account's only one is free.
    let (status, _, _stream) = Events::open_with(r, "a", None, Some(&rev)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn sse_requires_auth() {
    let app = app().await;
    let (status, _, _) = Events::open(&app.router, "nobody", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn accounts_are_isolated() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    account(r, "b", 4, one_pack(100)).await;
    let b_task: SubmitAccepted = submit(r, "b", "image", 2, "b-1").await.json();

    let a = state(r, "a").await;
    assert!(a.running.is_empty());
    assert_eq!(
        a.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use),
        Some(0)
    );

    for how in ["succeed", "fail"] {
        let res = end(r, "a", &b_task.task_id, how, None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        assert_eq!(res.error().code, codes::NOT_FOUND);
    }
    let b = state(r, "b").await;
    assert_eq!(b.running.len(), 1);
    assert_eq!(b.packages[0].remaining, u(100));

    // The same request id in two accounts is two requests.
    assert_eq!(
        submit(r, "a", "image", 1, "b-1").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn auth_by_bearer_or_session_cookie() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;

    let res = call(r, Method::GET, "/api/state", None, None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.error().code, codes::UNAUTHORIZED);
    assert_eq!(
        call(r, Method::GET, "/api/state", Some("zzz"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let bad = call(
        r,
        Method::POST,
        "/api/session",
        None,
        Some(json!({ "token": "zzz" })),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let login = call(
        r,
        Method::POST,
        "/api/session",
        None,
        Some(json!({ "token": "a" })),
    )
    .await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    let cookie = login
        .headers
        .get(header::SET_COOKIE)
        .expect("cookie")
        .to_str()
        .expect("ascii");
    // The cookie carries a random session id, not the token.
    let id = cookie
        .strip_prefix("qw_session=")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    assert_eq!(id.len(), 64, "{cookie}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
    assert_eq!(&cookie[11 + 64..], "; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    assert!(login.body.is_empty(), "nothing echoed");

    let with_cookie = Request::get("/api/state")
        .header(header::COOKIE, format!("other=1; qw_session={id}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(r, with_cookie).await.status, StatusCode::OK);
    // A page asks whether it is signed in without an error status either way.
    let status_of = |cookie: Option<String>| {
        let mut b = Request::get("/api/session");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::empty()).expect("request")
    };
    let yes = send(r, status_of(Some(format!("qw_session={id}")))).await;
    assert_eq!(yes.status, StatusCode::OK);
    let yes: Value = yes.json();
    assert_eq!(yes["signed_in"], true, "{yes}");
    assert!(yes["account"].is_string(), "{yes}");
    let no = send(r, status_of(None)).await;
    assert_eq!((no.status, no.body.as_slice()), (StatusCode::OK, br#"{"signed_in":false}"#.as_slice()));
    let unknown = send(r, status_of(Some("qw_session=nope".into()))).await;
    assert_eq!(unknown.body.as_slice(), br#"{"signed_in":false}"#.as_slice());
    // The token itself is no session.
    let token_as_cookie = Request::get("/api/state")
        .header(header::COOKIE, "qw_session=a")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(r, token_as_cookie).await.status, StatusCode::UNAUTHORIZED);

    let logout = Request::delete("/api/session")
        .header(header::COOKIE, format!("qw_session={id}"))
        .body(Body::empty())
        .expect("request");
    let logout = send(r, logout).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    // Signing out ended the session on the server: a kept copy is refused.
    let replay = Request::get("/api/state")
        .header(header::COOKIE, format!("qw_session={id}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(r, replay).await.status, StatusCode::UNAUTHORIZED);
    let cleared = logout
        .headers
        .get(header::SET_COOKIE)
        .expect("cookie")
        .to_str()
        .expect("ascii");
    assert!(
        cleared.starts_with("qw_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    assert_eq!(
        call(r, Method::GET, "/healthz", None, None).await.body,
        b"ok"
    );
}

/// `GET /api/session` names the signed-in account with a stable id that is
/// not a secret, and says nothing of an account when signed out.
#[tokio::test]
async fn the_session_answer_names_the_account_only_when_signed_in() {
    let app = app().await;
    let r = &app.router;
    account(r, "token-a", 4, one_pack(100)).await;
    account(r, "token-b", 4, one_pack(100)).await;
    let ask = |cookie: Option<&str>, token: Option<&str>| {
        let mut b = Request::get("/api/session");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c.split(';').next().expect("name=value"));
        }
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::empty()).expect("request")
    };
    let answer = |reply: Reply| -> Value {
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()
    };

    let cookie_a = sign_in(r, "token-a", &[]).await;
    let a = answer(send(r, ask(Some(&cookie_a), None)).await);
    assert_eq!(a.as_object().map(|o| o.len()), Some(2), "{a}");
    assert_eq!(a["signed_in"], true);
    let id_a = a["account"].as_str().expect("account is a string").to_owned();
    assert!(!id_a.is_empty());
    // Not the token nor the session id, nor anything containing them.
    let session_a = cookie_a["qw_session=".len()..].split(';').next().expect("id");
    assert!(!id_a.contains("token-a") && !id_a.contains(session_a), "{id_a}");

    // Stable: another sign-in and the bearer token name the same account.
    let again = sign_in(r, "token-a", &[]).await;
    assert_ne!(again, cookie_a);
    assert_eq!(answer(send(r, ask(Some(&again), None)).await)["account"], id_a.as_str());
    assert_eq!(answer(send(r, ask(None, Some("token-a"))).await)["account"], id_a.as_str());
    // Another account has another id.
    let cookie_b = sign_in(r, "token-b", &[]).await;
    let id_b = answer(send(r, ask(Some(&cookie_b), None)).await)["account"].clone();
    assert!(id_b.is_string() && id_b != id_a.as_str(), "{id_b} vs {id_a}");

    // Signed out, or with an unknown credential: no account at all.
    for (cookie, token) in [(None, None), (Some("qw_session=nope"), None), (None, Some("zzz"))] {
        let reply = send(r, ask(cookie, token)).await;
        assert_eq!(
            (reply.status, reply.body.as_slice()),
            (StatusCode::OK, br#"{"signed_in":false}"#.as_slice()),
            "{cookie:?} {token:?}"
        );
    }
    let logout = Request::delete("/api/session")
        .header(header::COOKIE, cookie_a.split(';').next().expect("name=value"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(r, logout).await.status, StatusCode::NO_CONTENT);
    let after = send(r, ask(Some(&cookie_a), None)).await;
    assert_eq!(after.body.as_slice(), br#"{"signed_in":false}"#.as_slice());
}

#[tokio::test]
async fn bad_requests_are_1200_and_not_recorded() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let rev = state(r, "a").await.revision;
    for (kind, count) in [("audio", 1), ("image", 0), ("image", 17)] {
        let res = submit(r, "a", kind, count, "x").await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{kind} {count}");
        assert_eq!(res.error().code, codes::BAD_REQUEST);
    }
    let garbage = call(
        r,
        Method::POST,
        "/api/generations",
        Some("a"),
        Some(json!({ "kind": "image" })),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.error().code, codes::BAD_REQUEST);
    let s = state(r, "a").await;
    assert_eq!(s.revision, rev);
    assert!(s.finished.is_empty());
    // 16 is the largest count.
    assert_eq!(
        submit(r, "a", "image", 16, "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn dev_endpoints_404_without_dev() {
    let mut config = Config::for_tests();
    config.dev = false;
    let app = app_with(config).await;
    let r = &app.router;
    let create = call(
        r,
        Method::POST,
        "/api/dev/accounts",
        None,
        Some(json!({ "token": "a" })),
    )
    .await;
    assert_eq!(create.status, StatusCode::NOT_FOUND);
    assert_eq!(create.error().code, codes::NOT_FOUND);
    for (method, path) in [
        (Method::POST, "/api/dev/packages"),
        (Method::PUT, "/api/dev/limits/image"),
        (Method::POST, "/api/dev/tasks/task-1/succeed"),
        (Method::POST, "/api/dev/tasks/task-1/fail"),
        (Method::POST, "/api/dev/raw-event"),
    ] {
        let res = call(r, method, path, Some("demo"), Some(json!({}))).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn dev_account_defaults_and_conflict() {
    let app = app().await;
    let r = &app.router;
    let s: ServerState = {
        let res = call(
            r,
            Method::POST,
            "/api/dev/accounts",
            None,
            Some(json!({ "token": "d" })),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED);
        res.json()
    };
    let names: Vec<_> = s
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.status))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Starter pack", PackageStatus::Active),
            ("Next month", PackageStatus::Pending),
            ("Pro pack", PackageStatus::Active)
        ]
    );
    let image = s.pools.iter().find(|p| p.kind == "image").expect("image");
    assert_eq!((image.limit, image.unit_cost), (4, u(4)));
    let video = s.pools.iter().find(|p| p.kind == "video").expect("video");
    assert_eq!((video.limit, video.unit_cost), (1, u(20)));

    let again = call(
        r,
        Method::POST,
        "/api/dev/accounts",
        None,
        Some(json!({ "token": "d" })),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let bad = call(
        r,
        Method::POST,
        "/api/dev/accounts",
        None,
        Some(json!({ "token": "a b;c" })),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submits_never_overshoot() {
    let app = app().await;
    let r = app.router.clone();
    account(&r, "a", 4, one_pack(10_000)).await;
    let mut handles = Vec::new();
    for i in 0..50 {
        let r = r.clone();
        handles.push(tokio::spawn(async move {
            submit(&r, "a", "image", 1, &format!("c-{i}")).await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for h in handles {
        let res = h.await.expect("task");
        match res.status {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(res.error().code, codes::OVER_CONCURRENCY);
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (4, 46));
    let s = state(&r, "a").await;
    assert_eq!(s.running.len(), 4);
    assert_eq!(
        s.pools.iter().find(|p| p.kind == "image").map(|p| p.in_use),
        Some(4)
    );
    assert_eq!(s.finished.len(), 20, "the window shows the 20 latest");
    assert!(s
        .finished
        .iter()
        .all(|f| f.outcome == Outcome::Refused && f.units_charged.is_zero()));
}

#[tokio::test]
async fn expired_and_pending_packages_do_not_count() {
    let app = app().await;
    let r = &app.router;
    account(
        r,
        "a",
        4,
        json!([
            { "name": "expired", "total": 1000, "effective_in_ms": -2 * DAY, "expires_in_ms": -1 },
            { "name": "pending", "total": 1000, "effective_in_ms": DAY, "expires_in_ms": 30 * DAY },
            { "name": "active", "total": 6, "expires_in_ms": 2 * DAY },
        ]),
    )
    .await;
    let s = state(r, "a").await;
    let statuses: Vec<_> = s
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("expired", PackageStatus::Expired),
            ("active", PackageStatus::Active),
            ("pending", PackageStatus::Pending)
        ]
    );
    // 1 image costs 4 of the 6 active units; the second is short.
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "one").await.json();
    assert_eq!(
        submit(r, "a", "image", 1, "two").await.error().code,
        codes::UNITS_EXHAUSTED
    );
    // Success takes only from the active package.
    end(r, "a", &acc.task_id, "succeed", None).await;
    let s = state(r, "a").await;
    assert_eq!(
        remaining(&s),
        vec![
            ("expired".into(), u(1000)),
            ("active".into(), u(2)),
            ("pending".into(), u(1000))
        ]
    );
}

#[tokio::test]
async fn security_headers_everywhere_and_static_files() {
    let dir = std::env::temp_dir().join(format!(
        "quota-server-static-{}-{}",
        std::process::id(),
        quota_server::now_ms()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("index.html"), "<p>hi</p>").expect("write");
    std::fs::write(dir.join("w.wasm"), b"\0asm\x01\0\0\0").expect("write");
    let mut config = Config::for_tests();
    config.static_dir = Some(dir.clone());
    let app = app_with(config).await;
    let r = &app.router;

    let index = call(r, Method::GET, "/", None, None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.body, b"<p>hi</p>");
    let wasm = call(r, Method::GET, "/w.wasm", None, None).await;
    assert_eq!(
        wasm.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/wasm"[..])
    );
    let api_missing = call(r, Method::GET, "/api/nothing", None, None).await;
    assert_eq!(api_missing.error().code, codes::NOT_FOUND);

    for res in [
        index,
        wasm,
        api_missing,
        call(r, Method::GET, "/missing.js", None, None).await,
    ] {
        let csp = res
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .expect("csp")
            .to_str()
            .expect("ascii");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'")
                && csp.contains("frame-ancestors 'none'")
        );
        assert_eq!(
            res.headers
                .get(header::X_CONTENT_TYPE_OPTIONS)
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn fractional_units_are_charged_exactly_and_written_as_decimals() {
    let app = app().await;
    let r = &app.router;
    account(r, "a", 4, json!([{ "name": "pack", "total": 10.5, "expires_in_ms": 30 * DAY }])).await;
    // Three final charges of a tenth, two tenths and three tenths: 0.6 in all, exactly.
    for (id, units) in [("x", 0.1), ("y", 0.2), ("z", 0.3)] {
        let acc: SubmitAccepted = submit(r, "a", "image", 1, id).await.json();
        let body: Value = end(r, "a", &acc.task_id, "succeed", Some(json!({ "units": units }))).await.json();
        assert_eq!(body["units_charged"], json!(units));
    }
    let s = state(r, "a").await;
    assert_eq!(s.packages[0].total, Units::from_milli(10_500));
    assert_eq!(s.packages[0].remaining, Units::from_milli(9_900));
    let raw = call(r, Method::GET, "/api/state", Some("a"), None).await;
    let text = String::from_utf8_lossy(&raw.body).into_owned();
    assert!(text.contains(r#""total":10.5,"remaining":9.9,"#), "{text}");
    // Whole amounts stay integers on the wire, as an integer-unit server writes them.
    assert!(text.contains(r#""unit_cost":4,"#), "{text}");
    // Finer than a thousandth is refused with a clear error, and changes nothing.
    let acc: SubmitAccepted = submit(r, "a", "image", 1, "w").await.json();
    let bad = end(r, "a", &acc.task_id, "succeed", Some(json!({ "units": 0.0001 }))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let err: ApiError = bad.json();
    assert_eq!(err.code, codes::BAD_REQUEST);
    assert!(err.message.contains("at most 3 decimals"), "{}", err.message);
    assert_eq!(state(r, "a").await.packages[0].remaining, Units::from_milli(9_900));
}

fn config_with(extra: &[&str]) -> Config {
    let mut args = vec!["quota-server", "--no-worker", "--dev", "--addr", "127.0.0.1:0"];
    if !extra.contains(&"--db") {
        args.extend(["--db", ":memory:"]);
    }
    args.extend_from_slice(extra);
    <Config as clap::Parser>::parse_from(args)
}

#[tokio::test]
async fn event_streams_are_capped_per_account_and_per_instance() {
    let app = app_with(config_with(&["--max-streams-per-account", "2", "--max-streams", "3"])).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    account(r, "b", 4, one_pack(100)).await;
    let (s1, _, first) = Events::open(r, "a", None).await;
    let (s2, _, _second) = Events::open(r, "a", None).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    // The account's third stream is refused, with a reason and a wait.
    let (s3, h3, mut refused) = Events::open(r, "a", None).await;
    assert_eq!(s3, StatusCode::TOO_MANY_REQUESTS);
    assert!(h3.get(header::RETRY_AFTER).is_some());
    let body = refused.body.collect().await.expect("body").to_bytes();
    let e: ApiError = serde_json::from_slice(&body).expect("an ApiError");
    assert_eq!(e.code, codes::RATE_LIMITED);
    assert!(e.message.contains("poll GET /api/state"), "{}", e.message);
    refused.buf.clear();
    // Another account still gets one, up to the instance's cap.
    let (s4, _, _b1) = Events::open(r, "b", None).await;
    assert_eq!(s4, StatusCode::OK);
    let (s5, _, _) = Events::open(r, "b", None).await;
    assert_eq!(s5, StatusCode::SERVICE_UNAVAILABLE);
    // A closed stream gives its place back.
    drop(first);
    let (s6, _, _again) = Events::open(r, "a", None).await;
    assert_eq!(s6, StatusCode::OK);
    // Polling stays open to the account whose streams are full.
    assert_eq!(call(r, Method::GET, "/api/state", Some("a"), None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_account_over_its_request_rate_gets_1302_and_others_do_not() {
    let app = app_with(config_with(&["--rate-limit", "2", "--rate-burst", "5"])).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    account(r, "b", 4, one_pack(100)).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(call(r, Method::GET, "/api/state", Some("a"), None).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5, "{statuses:?}");
    let over = call(r, Method::GET, "/api/state", Some("a"), None).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.error().code, codes::RATE_LIMITED);
    let wait: u64 = over.headers[header::RETRY_AFTER].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=1).contains(&wait), "{wait}");
    // Submits count too, and a refused request changes nothing.
    let refused = submit(r, "a", "image", 1, "r1").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // Another account is not slowed down.
    assert_eq!(call(r, Method::GET, "/api/state", Some("b"), None).await.status, StatusCode::OK);
    // After a second the rate has room again, and nothing was recorded.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = state(r, "a").await;
    assert!(s.running.is_empty() && s.finished.is_empty(), "{s:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_the_error_body() {
    let app = app_with(config_with(&["--max-body-bytes", "2048"])).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;
    let big = json!({ "kind": "image", "count": 1, "client_request_id": "x", "prompt": "p".repeat(4000) });
    let res = call(r, Method::POST, "/api/generations", Some("a"), Some(big)).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.error().code, codes::BAD_REQUEST);
    // The raw-event endpoint reads its body raw: the same answer.
    let raw = Request::post("/api/dev/raw-event")
        .header(header::AUTHORIZATION, "Bearer a")
        .body(Body::from("x".repeat(3000)))
        .expect("request");
    let res = send(r, raw).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.error().code, codes::BAD_REQUEST);
    // Nothing was recorded; a body within the limit works.
    assert!(state(r, "a").await.finished.is_empty());
    assert_eq!(submit(r, "a", "image", 1, "ok").await.status, StatusCode::CREATED);
}

async fn sign_in(r: &Router, token: &str, headers: &[(&str, &str)]) -> String {
    let mut b = Request::post("/api/session").header(header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = send(r, b.body(Body::from(json!({ "token": token }).to_string())).expect("request")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    res.headers[header::SET_COOKIE].to_str().expect("ascii").to_owned()
}

fn with_session(cookie: &str) -> Request<Body> {
    let pair = cookie.split(';').next().expect("name=value");
    Request::get("/api/state").header(header::COOKIE, pair).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn sessions_expire_survive_a_restart_and_are_secure_over_https() {
    let dir = std::env::temp_dir().join(format!("qw-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("s.sqlite3");
    let _ = std::fs::remove_file(&db);
    let db = db.to_str().expect("utf-8");
    let args = ["--db", db, "--session-ttl-ms", "1500", "--trust-proxy"];
    let app = app_with(config_with(&args)).await;
    let r = &app.router;
    account(r, "a", 4, one_pack(100)).await;

    // Over plain HTTP no Secure; behind a proxy that says HTTPS, Secure.
    let plain = sign_in(r, "a", &[]).await;
    assert!(!plain.contains("Secure") && plain.contains("Max-Age=1"), "{plain}");
    let https = sign_in(r, "a", &[("x-forwarded-proto", "https")]).await;
    assert!(https.ends_with("; Secure"), "{https}");
    assert_eq!(send(r, with_session(&plain)).await.status, StatusCode::OK);

    // Sessions are in the store: a new process on it knows them.
    drop(app);
    let app = app_with(config_with(&args)).await;
    let r = &app.router;
    assert_eq!(send(r, with_session(&plain)).await.status, StatusCode::OK);
    // ... until they expire.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(send(r, with_session(&plain)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(r, with_session(&https)).await.status, StatusCode::UNAUTHORIZED);
    // Without --trust-proxy the header is not believed; --secure-cookies always sets it.
    let app = app_with(config_with(&["--db", db])).await;
    assert!(!sign_in(&app.router, "a", &[("x-forwarded-proto", "https")]).await.contains("Secure"));
    let app = app_with(config_with(&["--db", db, "--secure-cookies"])).await;
    assert!(sign_in(&app.router, "a", &[]).await.ends_with("; Secure"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_store_keeps_no_token_and_an_old_store_is_migrated() {
    let dir = std::env::temp_dir().join(format!("qw-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("t.sqlite3");
    let _ = std::fs::remove_file(&path);
    // This server builds the store; then it is rolled back to what the
    // previous release left (schema version 4, a plain token in a row).
    let db = path.to_str().expect("utf-8");
    {
        let app = app_with(config_with(&["--db", db])).await;
        account(&app.router, "fresh", 4, one_pack(10)).await;
    }
    let conn = rusqlite::Connection::open(&path).expect("open");
    let stored: String = conn.query_row("SELECT token FROM accounts", [], |r| r.get(0)).expect("row");
    assert_ne!(stored, "fresh", "the token itself is not stored");
    assert_eq!(stored.len(), 64);
    // Rows as version 4 kept them (plain tokens); the migration hashes them.
    // (What version 6 added goes too: the pools' hold; its rebuilt tasks
    // table is rebuilt again.)
    conn.execute_batch(
        "UPDATE accounts SET token = 'fresh';
         DROP INDEX accounts_token_hash; DROP TABLE sessions; ALTER TABLE accounts DROP COLUMN token_hash;
         ALTER TABLE pools DROP COLUMN held_until_ms;
         INSERT INTO accounts (token, revision, created_at_ms, revised_at_ms) VALUES ('old-token', 1, 0, 0);
         PRAGMA user_version = 4;",
    )
    .expect("roll back");
    drop(conn);
    let app = app_with(config_with(&["--db", db])).await;
    assert_eq!(call(&app.router, Method::GET, "/api/state", Some("old-token"), None).await.status, StatusCode::OK);
    assert_eq!(call(&app.router, Method::GET, "/api/state", Some("fresh"), None).await.status, StatusCode::OK);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let plain: i64 = conn
        .query_row("SELECT COUNT(*) FROM accounts WHERE token IN ('old-token', 'fresh')", [], |r| r.get(0))
        .expect("count");
    assert_eq!(plain, 0, "no token is kept in the clear");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn submit_queued(router: &Router, token: &str, count: u32, id: &str) -> Reply {
    let body = json!({ "kind": "image", "count": count, "client_request_id": id, "queue": true });
    call(router, Method::POST, "/api/generations", Some(token), Some(body)).await
}

async fn cancel(router: &Router, token: &str, task: &str) -> Reply {
    call(router, Method::DELETE, &format!("/api/generations/{task}"), Some(token), None).await
}

#[tokio::test]
async fn a_queued_request_waits_with_its_place_and_a_cancel_releases_it() {
    let app = app_with(config_with(&["--max-queued", "2"])).await;
    let r = &app.router;
    account(r, "q", 2, one_pack(100)).await;
    account(r, "other", 2, one_pack(100)).await;
    let first = submit_queued(r, "q", 2, "r1").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let body: Value = first.json();
    assert!(body.get("place").is_none(), "a request that fits runs: {body}");
    let running: SubmitAccepted = first.json();

    let res = submit_queued(r, "q", 1, "q1").await;
    assert_eq!(res.status, StatusCode::CREATED);
    let q1: SubmitAccepted = res.json();
    let q2: SubmitAccepted = submit_queued(r, "q", 2, "q2").await.json();
    assert_eq!((q1.place, q2.place, q2.reserved_units), (Some(1), Some(2), u(8)));
    // Past --max-queued: 429, code 1303, Retry-After, nothing recorded as held.
    let full = submit_queued(r, "q", 1, "q3").await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(full.headers.contains_key(header::RETRY_AFTER));
    let e: ApiError = full.json();
    assert_eq!(e.code, codes::OVER_CONCURRENCY);
    assert!(e.message.contains("wait already"), "{}", e.message);
    let s = state(r, "q").await;
    let queued: Vec<_> = s.queued.iter().map(|q| (q.id.clone(), q.place, q.reserved_units)).collect();
    assert_eq!(queued, [(q1.task_id.clone(), 1, u(4)), (q2.task_id.clone(), 2, u(8))]);
    assert_eq!(s.pools[0].in_use, 2);
    let text = String::from_utf8(call(r, Method::GET, "/api/state", Some("q"), None).await.body).expect("utf-8");
    assert!(text.contains(r#""queued":[{"id":"#), "{text}");

    // Cancels: only the account's own, only while queued, the same answer twice.
    assert_eq!(cancel(r, "other", &q1.task_id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(cancel(r, "q", "task-999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(cancel(r, "q", "nonsense").await.status, StatusCode::NOT_FOUND);
    let busy = cancel(r, "q", &running.task_id).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.json::<ApiError>().code, codes::BAD_REQUEST);
    let c = cancel(r, "q", &q1.task_id).await;
    assert_eq!(c.status, StatusCode::OK);
    let cancelled: Cancelled = c.json();
    assert_eq!((cancelled.task_id.as_str(), cancelled.units_released), (q1.task_id.as_str(), u(4)));
    assert_eq!(cancel(r, "q", &q1.task_id).await.json::<Cancelled>(), cancelled);
    let s = state(r, "q").await;
    assert_eq!(s.revision, cancelled.revision);
    assert_eq!((s.queued.len(), s.queued[0].place), (1, 1));
    assert_eq!(s.packages[0].remaining, u(100));

    // The running task ends: q2 starts in that same change.
    let ended = end(r, "q", &running.task_id, "fail", None).await;
    assert_eq!(ended.status, StatusCode::OK);
    let s = state(r, "q").await;
    assert_eq!(s.running.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [q2.task_id.as_str()]);
    assert!(s.queued.is_empty());
    assert_eq!(cancel(r, "q", &q2.task_id).await.status, StatusCode::CONFLICT);
    // A repeat of q2's submit now answers without a place: it runs.
    let again: SubmitAccepted = submit_queued(r, "q", 2, "q2").await.json();
    assert_eq!((again.task_id, again.place), (q2.task_id.clone(), None));
    assert_eq!(end(r, "q", &q2.task_id, "succeed", None).await.status, StatusCode::OK);
    assert_eq!(state(r, "q").await.packages[0].remaining, u(92), "only the success is charged");
}

/// With the simulated worker: queued requests start as the worker ends
/// tasks, each once, never over the limit in any state read, and the ledger is
/// exactly the successes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_what_the_queue_starts() {
    let config = <Config as clap::Parser>::parse_from([
        "quota-server", "--dev", "--addr", "127.0.0.1:0", "--db", ":memory:", "--task-ms", "20..60", "--fail-rate", "0.3",
        "--seed", "20",
    ]);
    let app = app_with(config).await;
    let r = &app.router;
    account(r, "w", 2, one_pack(1000)).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let res = submit_queued(r, "w", 1, &format!("w{i}")).await;
        assert_eq!(res.status, StatusCode::CREATED);
        ids.push(res.json::<SubmitAccepted>().task_id);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = state(r, "w").await;
        assert!(s.pools[0].in_use <= 2, "over the limit: {s:?}");
        if s.running.is_empty() && s.queued.is_empty() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the queue did not drain: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut ended: Vec<_> = s.finished.iter().map(|f| f.id.clone()).collect();
    ended.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(ended, all, "every request ended once");
    let charged: Units = s.finished.iter().map(|f| f.units_charged).sum();
    assert_eq!(s.packages[0].remaining, u(1000).checked_sub(charged).expect("charged within the pack"));
    assert!(s.finished.iter().all(|f| f.outcome == Outcome::Succeeded || f.units_charged.is_zero()));
}
