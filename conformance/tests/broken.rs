//! Each check catches its fault: a proxy in front of the reference server
//! breaks one part of the contract, and the matching line must say FAIL
//! and the run must fail.

mod common;

use common::{assert_status, config, proxy, reference, reference_for_the_queue, show, Break};
use qw_conformance::{Check, Status};

/// Runs every check through a proxy that breaks `brk`; `check` must fail.
async fn caught(brk: Break, check: Check) -> qw_conformance::Report {
    let server = reference().await;
    let url = proxy(&server.url, brk).await;
    let report = qw_conformance::run(&config(&url, true)).await;
    assert_status(&report, check, Status::Fail);
    assert!(!report.passed(), "{}", show(&report));
    assert_eq!(report.exit_code(), 1, "{}", show(&report));
    report
}

fn detail(report: &qw_conformance::Report, check: Check) -> String {
    report.get(check).map(|r| r.detail.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_access_fails_auth() {
    let r = caught(Break::AuthOptional, Check::Auth).await;
    assert!(detail(&r, Check::Auth).contains("without credentials answered 200"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_decimal_fails_state_shape() {
    let r = caught(Break::MalformedUnits, Check::StateShape).await;
    assert!(detail(&r, Check::StateShape).contains("packages[0].remaining"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_etag_fails_etag() {
    let r = caught(Break::NoEtag, Check::Etag).await;
    assert!(detail(&r, Check::Etag).contains("no ETag"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_200_to_if_none_match_fails_etag() {
    let r = caught(Break::IgnoreIfNoneMatch, Check::Etag).await;
    assert!(detail(&r, Check::Etag).contains("answered 200, want 304"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_fails_revisions() {
    let r = caught(Break::StaleReplica, Check::Revisions).await;
    assert!(detail(&r, Check::Revisions).contains("went back"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_one_revision_fail_revisions() {
    let r = caught(Break::FrozenRevision, Check::Revisions).await;
    assert!(detail(&r, Check::Revisions).contains("two different contents"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_pings_fails_events_ping() {
    let r = caught(Break::NoPings, Check::EventsPing).await;
    assert!(detail(&r, Check::EventsPing).contains("no ping within"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_misses_changes_fails_events_change() {
    caught(Break::DropStateEvents, Check::EventsChange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_events_without_ids_fail_events() {
    let r = caught(Break::StreamWithoutIds, Check::Events).await;
    assert!(detail(&r, Check::Events).contains("has no id"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_the_last_event_id_fails_events_resume() {
    let r = caught(Break::ResendLastEventId, Check::EventsResume).await;
    assert!(detail(&r, Check::EventsResume).contains("again"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_the_last_event_id_query_fails_events_resume_by_query() {
    let r = caught(Break::IgnoreLastEventIdQuery, Check::EventsResumeQuery).await;
    let d = detail(&r, Check::EventsResumeQuery);
    assert!(d.contains("?last_event_id=") && d.contains("again"), "{}", show(&r));
    // The header still works: only the query's check fails.
    assert_status(&r, Check::EventsResume, Status::Ok);
    assert_eq!(r.count(Status::Fail), 1, "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_taken_as_current_fails_events_resume_by_query() {
    let r = caught(Break::QueryMeansCurrent, Check::EventsResumeQuery).await;
    assert!(detail(&r, Check::EventsResumeQuery).contains("want the current state"), "{}", show(&r));
    assert_eq!(r.count(Status::Fail), 1, "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_resume_fails_events_resume_by_query() {
    let r = caught(Break::SilentResume, Check::EventsResumeQuery).await;
    assert!(detail(&r, Check::EventsResumeQuery).contains("nothing came for 1 s"), "{}", show(&r));
    assert_eq!(r.count(Status::Fail), 1, "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_200_instead_of_429_fails_over_slots() {
    let r = caught(Break::Accept429, Check::OverSlots).await;
    assert!(detail(&r, Check::OverSlots).contains("want 429 code 1303"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_fails_over_slots() {
    let r = caught(Break::NoRetryAfter, Check::OverSlots).await;
    assert!(detail(&r, Check::OverSlots).contains("Retry-After"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_with_the_wrong_code_fails_over_units() {
    let r = caught(Break::WrongUnitsCode, Check::OverUnits).await;
    assert!(detail(&r, Check::OverUnits).contains("want 1102"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_for_a_malformed_submit_fails_bad_request() {
    let r = caught(Break::BadRequestAs500, Check::BadRequest).await;
    assert!(detail(&r, Check::BadRequest).contains("want 400 code 1200"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_task_for_a_repeated_id_fails_idempotency() {
    let r = caught(Break::RepeatCreatesTask, Check::Idempotency).await;
    assert!(detail(&r, Check::Idempotency).contains("started"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charging_a_failed_task_fails_failure() {
    let r = caught(Break::ChargeFailure, Check::Failure).await;
    assert!(detail(&r, Check::Failure).contains("changed the units"), "{}", show(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deducting_more_than_charged_fails_success() {
    caught(Break::ChargeSuccessTwice, Check::Success).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_leaves_the_request_queued_fails_queue() {
    let server = reference_for_the_queue().await;
    let url = proxy(&server.url, Break::CancelIgnored).await;
    let report = qw_conformance::run(&config(&url, true)).await;
    assert_status(&report, Check::Queue, Status::Fail);
    assert!(detail(&report, Check::Queue).contains("still queued"), "{}", show(&report));
    assert_eq!(report.exit_code(), 1, "{}", show(&report));
}
