//! The checker against the reference server: every check passes, the end
//! checks really run with the dev endpoints, and the binary prints and
//! exits as documented.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    assert_ok_but_the_queue, assert_status, config, proxy, reference, reference_for_the_queue, reference_with, show, Break, TOKEN,
};
use qw_conformance::{Check, Credentials, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_the_reference_server() {
    let server = reference().await;
    let report = qw_conformance::run(&config(&server.url, true)).await;
    // The queue needs more units than the over-units check allows: it is
    // checked on an account of its own (below).
    assert_ok_but_the_queue(&report);
    assert_eq!(report.results.len(), Check::ALL.len(), "{}", show(&report));
    assert!(report.passed() && report.exit_code() == 0, "{}", show(&report));
    // The end checks ran through the dev endpoints, not by waiting.
    let detail = |c| report.get(c).map(|r| r.detail.clone()).unwrap_or_default();
    assert!(detail(Check::Failure).contains("through --fail-url"), "{}", show(&report));
    assert!(detail(Check::Success).contains("through --succeed-url"), "{}", show(&report));
    // Nothing of the checker's is left running on the account.
    let state: quota_widget::core::wire::ServerState = reqwest::Client::new()
        .get(format!("{}/api/state", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(state.running.is_empty(), "{:?}\n{}", state.running, show(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_works_as_credentials() {
    let server = reference().await;
    // Sign in as the dashboard does; the cookie's value is the server's
    // business (a session id, not the token).
    let res = reqwest::Client::new()
        .post(format!("{}/api/session", server.url))
        .json(&serde_json::json!({ "token": TOKEN }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 204);
    let set_cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a cookie");
    let cookie = set_cookie.split(';').next().expect("name=value").trim().to_owned();
    let mut c = config(&server.url, true);
    c.credentials = Credentials::Cookie(cookie);
    let report = qw_conformance::run(&c).await;
    assert!(report.passed(), "{}", show(&report));
    assert_status(&report, Check::Auth, Status::Ok);
    assert_status(&report, Check::Success, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_end_urls_the_end_checks_skip_and_the_run_passes() {
    let server = reference().await;
    let report = qw_conformance::run(&config(&server.url, false)).await;
    assert_status(&report, Check::Failure, Status::Skip);
    assert_status(&report, Check::Success, Status::Skip);
    assert_eq!(report.count(Status::Fail), 0, "{}", show(&report));
    assert_eq!(report.exit_code(), 0);
    assert!(report.notes.iter().any(|n| n.starts_with("left running")), "{}", show(&report));
}

/// A backend with a worker ends tasks while the checks run: the checks
/// must allow for it, never report it as a fault. Outcomes are random, so
/// only the absence of failures is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_is_not_mistaken_for_a_fault() {
    let server = reference_with(|c| {
        c.no_worker = false;
        c.task_ms = "50..400".parse().expect("range");
        c.fail_rate = 0.5;
    })
    .await;
    let mut c = config(&server.url, false);
    c.task_wait = Duration::from_secs(5);
    let report = qw_conformance::run(&c).await;
    assert!(report.passed(), "{}", show(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_or_template_stops_the_run() {
    let server = reference().await;
    let mut c = config(&server.url, true);
    c.kind = Some("music".into());
    let report = qw_conformance::run(&c).await;
    assert_eq!(report.exit_code(), 2, "{}", show(&report));
    assert!(report.fatal.as_deref().is_some_and(|f| f.contains("image, video")), "{:?}", report.fatal);

    let mut c = config(&server.url, true);
    c.fail_url = Some(format!("{}/api/dev/tasks/fail", server.url));
    let report = qw_conformance::run(&c).await;
    assert_eq!(report.exit_code(), 2);
    assert!(report.fatal.as_deref().is_some_and(|f| f.contains("{task_id}")), "{:?}", report.fatal);
}

async fn binary(url: &str, ends: bool) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_qw-conformance"));
    cmd.args(["--url", url, "--event-timeout", "3", "--ping-timeout", "2", "--task-wait", "0.5"])
        .env("QWC_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if ends {
        cmd.arg("--fail-url")
            .arg(format!("{url}/api/dev/tasks/{{task_id}}/fail"))
            .arg("--succeed-url")
            .arg(format!("{url}/api/dev/tasks/{{task_id}}/succeed"));
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the binary finishes")
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_line_per_check_and_exits_0_or_1() {
    let server = reference().await;
    let (code, out) = binary(&server.url, true).await;
    assert_eq!(code, 0, "{out}");
    let checks: Vec<&str> = out.lines().filter(|l| l.starts_with("ok   ")).collect();
    assert_eq!(checks.len(), Check::ALL.len() - 1, "{out}");
    for check in Check::ALL {
        // The queue is skipped on this account (too few units).
        let status = if check == Check::Queue { "skip" } else { "ok  " };
        assert!(out.lines().any(|l| l.starts_with(&format!("{status} {}: ", check.name()))), "{}: {out}", check.name());
    }
    assert!(out.lines().last().is_some_and(|l| l.starts_with("qw-conformance: passed: 16 ok, 0 FAIL, 1 skip")), "{out}");

    let broken = proxy(&server.url, Break::NoEtag).await;
    let (code, out) = binary(&broken, true).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL etag: ")), "{out}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("qw-conformance: FAILED: ")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_2_on_bad_usage() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_qw-conformance"));
    cmd.args(["--url", "ftp://example", "--token", "x"]).env_remove("QWC_TOKEN").stdin(Stdio::null());
    let out = cmd.output().await.expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_qw-conformance"))
        .args(["--url", "http://127.0.0.1:1"])
        .env_remove("QWC_TOKEN")
        .env_remove("QWC_COOKIE")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "no credentials is a usage error");
}

/// A server that is not there fails the run at the first check and skips
/// the rest with the reason, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_auth_and_skips_the_rest() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let report = qw_conformance::run(&config(&url, true)).await;
    assert_status(&report, Check::Auth, Status::Fail);
    assert_eq!(report.count(Status::Skip), Check::ALL.len() - 1, "{}", show(&report));
    assert_eq!(report.exit_code(), 1);
}

/// Rate limiting (429, code 1302) is the backend's right: the checker
/// waits as told and tries again rather than reporting a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_answers_are_retried_not_failed() {
    let server = reference().await;
    let url = proxy(&server.url, Break::RateLimited).await;
    let report = qw_conformance::run(&config(&url, true)).await;
    assert_ok_but_the_queue(&report);
}

/// The queue on an account with units enough to busy every slot and queue
/// one more: a queued request, its place and reservation, and its cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_checked_where_the_units_allow_it() {
    let server = reference_for_the_queue().await;
    let report = qw_conformance::run(&config(&server.url, true)).await;
    assert_status(&report, Check::Queue, Status::Ok);
    let detail = report.get(Check::Queue).map(|r| r.detail.clone()).unwrap_or_default();
    assert!(detail.contains("place 1") && detail.contains("released"), "{}", show(&report));
    assert!(report.passed(), "{}", show(&report));
}

/// A backend without the queue (an older server, or another backend that
/// never offered it): the queue check is skipped and the run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_the_queue_still_passes() {
    let server = reference_for_the_queue().await;
    let url = proxy(&server.url, Break::NoQueue).await;
    let report = qw_conformance::run(&config(&url, true)).await;
    assert_status(&report, Check::Queue, Status::Skip);
    let detail = report.get(Check::Queue).map(|r| r.detail.clone()).unwrap_or_default();
    assert!(detail.contains("does not queue"), "{}", show(&report));
    assert!(report.passed() && report.exit_code() == 0, "{}", show(&report));
}
