//! Tests of the real binary and of the simulated worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use quota_server::{build, Config};
use quota_widget::core::wire::{Outcome, ServerState, Units};
use tower::ServiceExt;

/// One HTTP/1.1 request over a plain socket; returns the raw response head.
fn raw_get(addr: &str, path: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read head");
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Starts the binary on a free port with the demo account (token `demo`)
/// and `extra` flags; returns the child and its address.
fn spawn_binary(extra: &[&str]) -> (std::process::Child, String) {
    spawn_with(&[&["--db", ":memory:", "--no-worker"], extra].concat())
}

/// Starts the binary on a free port with the demo account and `args`.
fn spawn_with(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quota-server"))
        .args(["--addr", "127.0.0.1:0", "--seed-demo"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let addr = line
        .trim()
        .strip_prefix("quota-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

#[cfg(unix)]
#[test]
fn binary_prints_its_port_serves_and_stops_on_sigterm() {
    let (mut child, addr) = spawn_binary(&[]);
    assert!(!addr.ends_with(":0"), "the real port is printed");

    let (_, head) = raw_get(&addr, "/healthz", "Connection: close\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("x-content-type-options: nosniff"));

    // An open event stream must not hold the shutdown up.
    let (_stream, head) = raw_get(&addr, "/api/events", "Authorization: Bearer demo\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no graceful exit within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn worker_ends_tasks_and_never_charges_failures() {
    let mut config = Config::for_tests();
    config.no_worker = false;
    config.task_ms = "10..40".parse().expect("range");
    config.fail_rate = 0.5;
    config.seed = Some(7);
    let app = build(&config).await.expect("build");
    let r = &app.router;
    let create = Request::post("/api/dev/accounts")
        .body(Body::from(r#"{"token":"w","image_limit":8,"packages":[{"name":"p","total":1000,"expires_in_ms":86400000}]}"#))
        .expect("request");
    assert_eq!(
        r.clone().oneshot(create).await.expect("res").status(),
        StatusCode::CREATED
    );
    for i in 0..8 {
        let req = Request::post("/api/generations")
            .header(header::AUTHORIZATION, "Bearer w")
            .body(Body::from(format!(
                r#"{{"kind":"image","count":1,"client_request_id":"r{i}"}}"#
            )))
            .expect("request");
        assert_eq!(
            r.clone().oneshot(req).await.expect("res").status(),
            StatusCode::CREATED
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let req = Request::get("/api/state")
            .header(header::AUTHORIZATION, "Bearer w")
            .body(Body::empty())
            .expect("req");
        let body = r
            .clone()
            .oneshot(req)
            .await
            .expect("res")
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let s: ServerState = serde_json::from_slice(&body).expect("state");
        if s.running.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "worker did not end the tasks");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state.finished.len(), 8);
    let succeeded = state
        .finished
        .iter()
        .filter(|f| f.outcome == Outcome::Succeeded)
        .count() as u64;
    for f in &state.finished {
        match f.outcome {
            Outcome::Succeeded => assert_eq!(f.units_charged, Units::whole(4)),
            Outcome::Failed => assert!(f.units_charged.is_zero() && f.reason.is_some()),
            Outcome::Refused => panic!("nothing was refused"),
        }
    }
    assert_eq!(state.packages[0].remaining, Units::whole(1000 - 4 * succeeded));
    app.shutdown();
}

/// A stream that resumes at the current revision has no state to send, yet
/// its first bytes (the head and an event) must leave at once, not with the
/// first timed ping: a proxy that holds a response's head until its first
/// body byte (Vite's dev server) would otherwise show the stream as not yet
/// open for a whole ping interval, and a tab taking over the stream of
/// other tabs would wait that long to be live. Over a real socket, so that
/// what is measured is what leaves the server.
#[cfg(unix)]
#[test]
fn a_resumed_stream_writes_its_first_bytes_at_once() {
    // Pings an hour apart: any event within the test's second is not one.
    let (mut child, addr) = spawn_binary(&["--ping-ms", "3600000"]);
    let (_, head) = raw_get(&addr, "/api/state", "Authorization: Bearer demo\r\nConnection: close\r\n");
    let revision: u64 = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("etag:").map(|v| v.trim().trim_matches('"').to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no revision ETag in {head}"));

    let query = format!("/api/events?last_event_id={revision}");
    let header = format!("Authorization: Bearer demo\r\nLast-Event-ID: {revision}\r\n");
    for (how, path, extra) in [
        ("?last_event_id=", query.as_str(), "Authorization: Bearer demo\r\n"),
        ("Last-Event-ID", "/api/events", header.as_str()),
    ] {
        let t0 = Instant::now();
        let (mut s, head) = raw_get(&addr, path, extra);
        assert!(head.starts_with("HTTP/1.1 200"), "{how}: {head}");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let want = format!("event: ping\ndata: {revision}\n\n");
        let mut body = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&body).contains(&want) {
            match s.read(&mut chunk) {
                Ok(0) => panic!("{how}: the stream ended; read {:?}", String::from_utf8_lossy(&body)),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "{how}: no ping within {:?} of opening ({e}); read {:?}",
                    t0.elapsed(),
                    String::from_utf8_lossy(&body)
                ),
            }
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "{how}: the first event took {took:?}");
        // Nothing was resent: the ping is all there is.
        assert!(!String::from_utf8_lossy(&body).contains("event: state"), "{how}: {body:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A queue waiting when the process is killed (SIGKILL) survives in the
/// SQLite file: after a restart the same requests wait in the same places,
/// the running tasks are resumed, and as they end the queue runs through,
/// each request once, in arrival order, the ledger exact.
#[tokio::test]
async fn a_queue_survives_kill_9_and_drains_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("qw-queue-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("q.sqlite3");
    let db = path.to_str().expect("utf-8");
    let http = reqwest::Client::new();
    let get_state = |addr: String| {
        let http = http.clone();
        async move {
            let res = http.get(format!("http://{addr}/api/state")).bearer_auth("demo").send().await.expect("state");
            res.json::<ServerState>().await.expect("json")
        }
    };
    // Tasks that would run for a minute: nothing ends before the kill.
    let (child, addr) = spawn_with(&["--db", db, "--task-ms", "60000..60000"]);
    let mut child = Killed(child);
    let mut ids = Vec::new();
    for i in 0..7 {
        let res = http
            .post(format!("http://{addr}/api/generations"))
            .bearer_auth("demo")
            .json(&serde_json::json!({ "kind": "image", "count": 1, "client_request_id": format!("k{i}"), "queue": true }))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 201);
        let body: serde_json::Value = res.json().await.expect("json");
        ids.push(body["task_id"].as_str().expect("task id").to_owned());
    }
    let before = get_state(addr.clone()).await;
    assert_eq!((before.running.len(), before.queued.len()), (4, 3), "the demo account has 4 image slots");
    child.0.kill().expect("kill -9");
    child.0.wait().expect("reaped");

    // Back without a worker: the queue is as it was.
    let (restarted, addr) = spawn_with(&["--db", db, "--no-worker"]);
    let mut child = Killed(restarted);
    let after = get_state(addr.clone()).await;
    assert_eq!(after.queued, before.queued, "the same requests wait in the same places");
    assert_eq!(after.running, before.running);
    child.0.kill().expect("kill -9");
    child.0.wait().expect("reaped");

    // Back with a worker: the resumed tasks end, and the queue runs through.
    let (restarted, addr) = spawn_with(&["--db", db, "--task-ms", "20..60", "--fail-rate", "0.3", "--seed", "9"]);
    let _child = Killed(restarted);
    let deadline = Instant::now() + Duration::from_secs(10);
    let drained = loop {
        let s = get_state(addr.clone()).await;
        if s.running.is_empty() && s.queued.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "the queue did not drain: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut ended: Vec<&str> = drained.finished.iter().map(|f| f.id.as_str()).collect();
    ended.sort_unstable();
    let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
    all.sort_unstable();
    assert_eq!(ended, all, "each request ended once");
    let charged: Units = drained.finished.iter().map(|f| f.units_charged).sum();
    let spendable = |s: &ServerState| -> Units { s.packages.iter().filter(|p| p.status == quota_widget::core::wire::PackageStatus::Active).map(|p| p.remaining).sum() };
    assert_eq!(spendable(&drained), spendable(&before).saturating_sub(charged), "the ledger adds up");
    // Arrival order: the store's start revisions never go back by id.
    let conn = rusqlite::Connection::open(&path).expect("open");
    let starts: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT started_revision FROM tasks ORDER BY id").expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    };
    assert_eq!(starts.len(), 7);
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "started out of order: {starts:?}");
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed (SIGKILL) when dropped, a failed test's too.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
