//! Test backends: the reference server in-process on a real socket, and a
//! proxy in front of it that breaks one part of the contract at a time.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, ETAG, HOST, IF_NONE_MATCH,
    RETRY_AFTER, TRANSFER_ENCODING,
};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use qw_conformance::sse::{Event, Parser};
use qw_conformance::{Check, Config, Credentials, Report, Status};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const TOKEN: &str = "conformance";

/// A reference server listening on 127.0.0.1, with the test account.
pub struct Reference {
    pub url: String,
    pub app: quota_server::App,
}

impl Drop for Reference {
    fn drop(&mut self) {
        // Ends open event streams and the server's background loops.
        self.app.shutdown();
    }
}

/// The reference server with `--dev --no-worker --db :memory:`, pings every
/// 200 ms (so that runs are short), adjusted by `tune`, and an account
/// whose 10 units let every refusal be provoked: 1 image (4 units) runs,
/// 2 more would cost 8 of the 6 left (402), 4 would need 4 of the 3 free
/// slots (429).
pub async fn reference_with(tune: impl FnOnce(&mut quota_server::Config)) -> Reference {
    let packages = json!([
        {"name": "Test pack", "total": 10, "expires_in_ms": 30 * 86_400_000_i64},
        {"name": "Next month", "total": 500, "effective_in_ms": 10 * 86_400_000_i64,
         "expires_in_ms": 40 * 86_400_000_i64},
        {"name": "Lapsed", "total": 50, "effective_in_ms": -20 * 86_400_000_i64,
         "expires_in_ms": -86_400_000_i64}
    ]);
    reference_account(tune, packages).await
}

/// The reference server whose account has 100 units: enough to busy every
/// image slot and queue one more (the queue check), too many for the
/// over-units check.
pub async fn reference_for_the_queue() -> Reference {
    reference_account(|_| {}, json!([{"name": "Big pack", "total": 100, "expires_in_ms": 30 * 86_400_000_i64}])).await
}

async fn reference_account(tune: impl FnOnce(&mut quota_server::Config), packages: Value) -> Reference {
    let mut config = quota_server::Config::for_tests();
    config.ping_ms = 200;
    tune(&mut config);
    let app = quota_server::build(&config).await.expect("build the reference server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let url = format!("http://{addr}");
    let res = reqwest::Client::new()
        .post(format!("{url}/api/dev/accounts"))
        .json(&json!({
            "token": TOKEN,
            "image_limit": 4,
            "video_limit": 1,
            "packages": packages
        }))
        .send()
        .await
        .expect("create the account");
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    Reference { url, app }
}

pub async fn reference() -> Reference {
    reference_with(|_| {}).await
}

/// A checker configuration for tests: short waits (the reference server
/// pings every 200 ms), and the dev endpoints as end URLs when `ends`.
pub fn config(url: &str, ends: bool) -> Config {
    let mut c = Config::new(url, Credentials::Bearer(TOKEN.into()));
    c.request_timeout = Duration::from_secs(5);
    c.event_timeout = Duration::from_secs(3);
    c.ping_timeout = Duration::from_secs(2);
    c.task_wait = Duration::from_millis(500);
    if ends {
        c.fail_url = Some(format!("{url}/api/dev/tasks/{{task_id}}/fail"));
        c.succeed_url = Some(format!("{url}/api/dev/tasks/{{task_id}}/succeed"));
    }
    c
}

/// The report as the binary prints it, for assertion messages.
pub fn show(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.results {
        out.push_str(&format!("{r}\n"));
    }
    for n in &report.notes {
        out.push_str(&format!("note {n}\n"));
    }
    out.push_str(&report.summary());
    out
}

/// Every check passed but the queue's, skipped for want of units: the
/// account of [`reference`] has too few to busy every slot and queue one
/// more ([`reference_for_the_queue`] has them).
pub fn assert_ok_but_the_queue(report: &Report) {
    for check in Check::ALL.into_iter().filter(|c| *c != Check::Queue) {
        assert_status(report, check, Status::Ok);
    }
    assert_status(report, Check::Queue, Status::Skip);
    assert!(report.get(Check::Queue).is_some_and(|r| r.detail.contains("more units")), "{}", show(report));
}

pub fn assert_status(report: &Report, check: Check, status: Status) {
    assert_eq!(report.status(check), Some(status), "{}: want {status:?}\n{}", check.name(), show(report));
}

/// One way to break the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// Requests without credentials are let through as the test account.
    AuthOptional,
    /// `packages[0].remaining` of GET /api/state gets a fourth decimal.
    MalformedUnits,
    /// No ETag on the state.
    NoEtag,
    /// If-None-Match is not passed on: always 200.
    IgnoreIfNoneMatch,
    /// After a submit, every other GET /api/state is the first state read
    /// (a stale replica behind a load balancer).
    StaleReplica,
    /// Every state claims revision 1 (ETag, body, event id): changes come
    /// without a new revision.
    FrozenRevision,
    /// The stream drops its pings.
    NoPings,
    /// The stream sends its first state event and no later ones.
    DropStateEvents,
    /// State events without an `id` line.
    StreamWithoutIds,
    /// Last-Event-ID is not passed on: a reconnect gets the same state again.
    ResendLastEventId,
    /// The `last_event_id` query parameter of GET /api/events is dropped, as
    /// by a server that does not know it: a stream opened with
    /// `?last_event_id=` of the current revision gets that state again.
    IgnoreLastEventIdQuery,
    /// `?last_event_id=N` is taken as "the client has the current state",
    /// whatever N: the stream is opened upstream with `Last-Event-ID` of the
    /// current revision, so a client behind gets no state on connect.
    QueryMeansCurrent,
    /// A stream opened with `Last-Event-ID` or `?last_event_id=` sends no
    /// ping for its first 2 s: a server that writes nothing on a resume at
    /// the current revision until its first timed ping.
    SilentResume,
    /// 429 becomes 200.
    Accept429,
    /// No Retry-After on 429.
    NoRetryAfter,
    /// 402 says code 1303 instead of 1102.
    WrongUnitsCode,
    /// A malformed submit gets 500.
    BadRequestAs500,
    /// A repeated client_request_id is passed on as a new one; the answer
    /// is dressed up as a repeat (200, the original id).
    RepeatCreatesTask,
    /// After a task is failed, every state shows a unit fewer.
    ChargeFailure,
    /// After a task succeeds, every state shows a unit fewer than charged.
    ChargeSuccessTwice,
    /// Not a fault: every third request is answered 429 with code 1302
    /// ("rate limited") and `Retry-After: 0`, as a backend may do.
    RateLimited,
    /// Not a fault: a backend without the queue (an older server): `queue`
    /// is dropped from submits and `queued` from states.
    NoQueue,
    /// A cancel is answered 200 and never reaches the server: the request
    /// stays queued.
    CancelIgnored,
}

struct Proxy {
    upstream: String,
    brk: Break,
    client: reqwest::Client,
    memory: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    requests: u64,
    first_state: Option<(HeaderMap, Bytes)>,
    submitted: bool,
    gets_after_submit: u32,
    seen_request_ids: HashSet<String>,
    /// Units to take off every state from now on.
    deduct: f64,
}

impl Proxy {
    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrites a state's JSON for the breaks that falsify states.
    fn rewrite_state(&self, body: &[u8], from_get: bool) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        match self.brk {
            Break::MalformedUnits if from_get => {
                let r = v["packages"][0]["remaining"].as_f64()?;
                v["packages"][0]["remaining"] = json!(r + 0.0005);
            }
            Break::FrozenRevision => v["revision"] = json!(1),
            Break::NoQueue => {
                v.as_object_mut()?.remove("queued")?;
            }
            Break::ChargeFailure | Break::ChargeSuccessTwice => {
                let deduct = self.memory().deduct;
                if deduct == 0.0 {
                    return None;
                }
                let r = v["packages"][0]["remaining"].as_f64()?;
                v["packages"][0]["remaining"] = json!((r - deduct).max(0.0));
            }
            _ => return None,
        }
        serde_json::to_vec(&v).ok()
    }

    /// An event of the stream, rewritten or dropped (`None`).
    fn rewrite_event(&self, mut ev: Event, states_sent: &mut usize) -> Option<Event> {
        match (self.brk, ev.event.as_str()) {
            (Break::NoPings, "ping") => return None,
            (Break::DropStateEvents, "state") if *states_sent > 0 => return None,
            (Break::StreamWithoutIds, "state") => ev.id = None,
            (Break::FrozenRevision, "state") => ev.id = Some("1".into()),
            (Break::FrozenRevision, "ping") => ev.data = "1".into(),
            _ => {}
        }
        if ev.event == "state" {
            *states_sent += 1;
            if let Some(data) = self.rewrite_state(ev.data.as_bytes(), false) {
                ev.data = String::from_utf8_lossy(&data).into_owned();
            }
        }
        Some(ev)
    }
}

/// Starts a proxy to `upstream` that breaks `brk`; returns its base URL.
pub async fn proxy(upstream: &str, brk: Break) -> String {
    let proxy = Arc::new(Proxy {
        upstream: upstream.to_owned(),
        brk,
        client: reqwest::Client::new(),
        memory: Mutex::new(Memory::default()),
    });
    let router = Router::new().fallback(forward).with_state(proxy);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut res = (status, body).into_response();
    for (name, value) in &headers {
        res.headers_mut().append(name, value.clone());
    }
    res
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(mut body) = axum::body::to_bytes(body, 1 << 20).await.map(|b| b.to_vec()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let mut target = format!("{}{}", p.upstream, parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let mut headers = parts.headers.clone();
    headers.remove(HOST);
    headers.remove(CONTENT_LENGTH);
    let by_query = path == "/api/events" && parts.uri.query().is_some_and(|q| q.contains("last_event_id="));
    let resumed = by_query || (path == "/api/events" && parts.headers.contains_key("last-event-id"));
    let is_state = method == Method::GET && path == "/api/state";
    let is_submit = method == Method::POST && path == "/api/generations";

    if p.brk == Break::RateLimited {
        let mut m = p.memory();
        m.requests += 1;
        if m.requests % 3 == 0 {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static("0"));
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = json!({"code": 1302, "message": "too many requests"}).to_string();
            return respond(StatusCode::TOO_MANY_REQUESTS, h, Body::from(body));
        }
    }
    match p.brk {
        Break::AuthOptional if !headers.contains_key(AUTHORIZATION) && !headers.contains_key(COOKIE) => {
            headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer conformance"));
        }
        Break::IgnoreIfNoneMatch => {
            headers.remove(IF_NONE_MATCH);
        }
        Break::ResendLastEventId => {
            headers.remove("last-event-id");
        }
        Break::IgnoreLastEventIdQuery if by_query => target = format!("{}{path}", p.upstream),
        Break::QueryMeansCurrent if by_query => {
            let current = p
                .client
                .get(format!("{}/api/state", p.upstream))
                .headers(headers.clone())
                .send()
                .await
                .ok()
                .and_then(|r| r.headers().get(ETAG).cloned())
                .and_then(|e| e.to_str().ok().map(|e| e.trim_matches('"').to_owned()));
            if let Some(revision) = current.and_then(|r| HeaderValue::from_str(&r).ok()) {
                target = format!("{}{path}", p.upstream);
                headers.insert("last-event-id", revision);
            }
        }
        Break::FrozenRevision => {
            // The ETag of every state is "1": the real revision decides.
            headers.remove(IF_NONE_MATCH);
        }
        Break::StaleReplica if is_state => {
            let mut m = p.memory();
            if m.submitted {
                m.gets_after_submit += 1;
                if m.gets_after_submit % 2 == 0 {
                    if let Some((h, b)) = m.first_state.clone() {
                        return respond(StatusCode::OK, h, Body::from(b));
                    }
                }
            }
        }
        _ => {}
    }
    if p.brk == Break::NoQueue && is_submit {
        if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
            if v.as_object_mut().and_then(|o| o.remove("queue")).is_some() {
                body = v.to_string().into_bytes();
            }
        }
    }
    if p.brk == Break::CancelIgnored && method == Method::DELETE {
        if let Some(task) = path.strip_prefix("/api/generations/") {
            let body = json!({"task_id": task, "units_released": 4, "revision": 1}).to_string();
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return respond(StatusCode::OK, h, Body::from(body));
        }
    }
    let mut repeated = None;
    if p.brk == Break::RepeatCreatesTask && is_submit {
        if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
            if let Some(id) = v["client_request_id"].as_str().map(str::to_owned) {
                if !p.memory().seen_request_ids.insert(id.clone()) {
                    v["client_request_id"] = json!(format!("{id}-again"));
                    body = v.to_string().into_bytes();
                    repeated = Some(id);
                }
            }
        }
    }

    let upstream = match p.client.request(method.clone(), &target).headers(headers).body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut status = upstream.status();
    let mut headers = upstream.headers().clone();
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    if headers.get(CONTENT_TYPE).is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream")) {
        let quiet_until = (p.brk == Break::SilentResume && resumed).then(|| Instant::now() + Duration::from_secs(2));
        let stream = futures_util::stream::unfold((upstream, Parser::new(), p, 0usize), move |(mut up, mut parser, p, mut sent)| async move {
            loop {
                let Ok(Some(bytes)) = up.chunk().await else { return None };
                let quiet = quiet_until.is_some_and(|t| Instant::now() < t);
                let out: String = parser
                    .feed(&bytes)
                    .into_iter()
                    .filter(|ev| !(quiet && ev.event == "ping"))
                    .filter_map(|ev| p.rewrite_event(ev, &mut sent))
                    .map(|ev| ev.encode())
                    .collect();
                if !out.is_empty() {
                    return Some((Ok::<_, std::io::Error>(Bytes::from(out)), (up, parser, p, sent)));
                }
            }
        });
        return respond(status, headers, Body::from_stream(stream));
    }
    let Ok(bytes) = upstream.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut bytes = bytes.to_vec();

    if status.is_success() && method == Method::POST {
        if path.ends_with("/fail") && p.brk == Break::ChargeFailure {
            p.memory().deduct += 1.0;
        }
        if path.ends_with("/succeed") && p.brk == Break::ChargeSuccessTwice {
            p.memory().deduct += 1.0;
        }
    }
    if is_state && status == StatusCode::OK {
        if let Some(b) = p.rewrite_state(&bytes, true) {
            bytes = b;
        }
    }
    match p.brk {
        Break::NoEtag => {
            headers.remove(ETAG);
        }
        Break::FrozenRevision if is_state => {
            headers.insert(ETAG, HeaderValue::from_static("\"1\""));
        }
        Break::StaleReplica if is_state && status == StatusCode::OK => {
            let mut m = p.memory();
            if m.first_state.is_none() {
                m.first_state = Some((headers.clone(), Bytes::from(bytes.clone())));
            }
        }
        Break::StaleReplica if is_submit && status == StatusCode::CREATED => p.memory().submitted = true,
        Break::Accept429 if status == StatusCode::TOO_MANY_REQUESTS => status = StatusCode::OK,
        Break::NoRetryAfter => {
            headers.remove(RETRY_AFTER);
        }
        Break::WrongUnitsCode if status == StatusCode::PAYMENT_REQUIRED => {
            bytes = json!({"code": 1303, "message": "parallel task over resource pack limit"}).to_string().into_bytes();
        }
        Break::BadRequestAs500 if is_submit && status == StatusCode::BAD_REQUEST => {
            status = StatusCode::INTERNAL_SERVER_ERROR;
            bytes = json!({"code": 1500, "message": "internal error"}).to_string().into_bytes();
        }
        Break::RepeatCreatesTask => {
            if let Some(id) = &repeated {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) {
                    v["client_request_id"] = json!(id);
                    bytes = v.to_string().into_bytes();
                    status = StatusCode::OK;
                }
            }
        }
        _ => {}
    }
    respond(status, headers, Body::from(bytes))
}
