//! What every store promises, written once and run on each store through
//! the storage trait (`Storage`): the SQLite store in memory always, and the
//! PostgreSQL store on a fresh database of the test cluster of `scripts/pg`
//! when `QW_TEST_PG_DIR` is set (`scripts/test` sets it). With it set, a
//! cluster that does not answer fails the PostgreSQL runs; without it they
//! say so and do not run.
//!
//! The clock is a value here: every call is given its `now`, so package
//! windows and the order of ended tasks are exact.

use futures_util::future::join_all;
use quota_server::error::{QuotaError, Refusal};
use quota_server::hub::Hub;
use quota_server::storage::{SqliteStorage, Storage};
use quota_server::store::pg::PgStore;
use quota_server::store::sqlite::SqliteStore;
use quota_server::store::{
    parse_task_id, AccountId, AccountSpec, MirrorPack, PackageSpec, SubmitOutcome, TaskEnd, TaskKey, UpstreamFields,
};
use quota_widget::core::rules;
use quota_widget::core::wire::{Millis, Outcome, PackageStatus, ServerState, SubmitAccepted, SubmitRequest, Units};

const T0: Millis = 1_700_000_000_000;
/// Requests that may wait per account, as the server's default.
const MAXQ: u32 = quota_server::store::DEFAULT_MAX_QUEUED;
const DAY: i64 = 86_400_000;

/// Image costs 4 units an item and takes a slot an item; video costs 20
/// and takes one slot a task (`store::KINDS`).
fn u(n: u64) -> Units {
    Units::whole(n)
}

fn package(name: &str, total: u64, effective_in_ms: i64, expires_in_ms: i64) -> PackageSpec {
    PackageSpec { name: name.into(), total: u(total), effective_in_ms, expires_in_ms }
}

fn plan(image_limit: u32, packages: Vec<PackageSpec>) -> AccountSpec {
    AccountSpec { image_limit, video_limit: 1, packages }
}

fn req(id: &str, kind: &str, count: u32) -> SubmitRequest {
    SubmitRequest { kind: kind.into(), count, client_request_id: id.into(), prompt: None, queue: false }
}

/// The same, sent with `queue`.
fn queued(id: &str, kind: &str, count: u32) -> SubmitRequest {
    SubmitRequest { queue: true, ..req(id, kind, count) }
}

async fn account(s: &dyn Storage, spec: &AccountSpec) -> AccountId {
    s.create_account("scenario", spec, T0).await.expect("account")
}

async fn accept(s: &dyn Storage, a: AccountId, r: &SubmitRequest, now: Millis) -> SubmitAccepted {
    match s.submit(a, r, MAXQ, now).await.expect("submit") {
        SubmitOutcome::Accepted { accepted, repeat: false } => accepted,
        other => panic!("{} should be accepted anew: {other:?}", r.client_request_id),
    }
}

async fn refusal(s: &dyn Storage, a: AccountId, r: &SubmitRequest, now: Millis) -> (Refusal, u64) {
    match s.submit(a, r, MAXQ, now).await.expect("submit") {
        SubmitOutcome::Refused { refusal, revision } => (refusal, revision),
        other => panic!("{} should be refused: {other:?}", r.client_request_id),
    }
}

fn task(accepted: &SubmitAccepted) -> i64 {
    parse_task_id(&accepted.task_id).expect("a task id of the store's form")
}

fn in_use(s: &ServerState, kind: &str) -> u32 {
    s.pools.iter().find(|p| p.kind == kind).expect("pool").in_use
}

fn left(s: &ServerState, name: &str) -> (Units, PackageStatus) {
    let p = s.packages.iter().find(|p| p.name == name).expect("package");
    (p.remaining, p.status)
}

/// R1-R3 within the limit: the task runs, holds its slots and reserves its
/// cost; the packages are not touched until it ends.
async fn submit_within_the_limit(s: &dyn Storage) {
    let a = account(s, &plan(3, vec![package("p", 100, 0, DAY)])).await;
    let r0 = s.revision(a).await.expect("revision");
    let t = accept(s, a, &req("r1", "image", 2), T0 + 1).await;
    assert_eq!((t.slots, t.reserved_units, t.revision), (2, u(8), r0 + 1));
    let st = s.state(a, T0 + 1).await.expect("state");
    assert_eq!(st.revision, r0 + 1);
    assert_eq!(in_use(&st, "image"), 2);
    assert_eq!(st.running.len(), 1);
    assert_eq!((st.running[0].id.as_str(), st.running[0].reserved_units), (t.task_id.as_str(), u(8)));
    assert_eq!(left(&st, "p"), (u(100), PackageStatus::Active), "a reservation deducts nothing");
    // The last free slot is still free, and a video has a pool of its own.
    accept(s, a, &req("r2", "image", 1), T0 + 2).await;
    accept(s, a, &req("r3", "video", 1), T0 + 3).await;
}

/// R1: a request over the free slots is refused, recorded as refused and
/// not charged, and changes the revision; the running tasks keep theirs.
async fn over_the_limit_is_refused(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 100, 0, DAY)])).await;
    accept(s, a, &req("r1", "image", 2), T0 + 1).await;
    let (why, rev) = refusal(s, a, &req("r2", "image", 1), T0 + 2).await;
    assert_eq!(why, Refusal::OverConcurrency);
    // Slots first: over the limit and over the units is a slot refusal.
    let (why, _) = refusal(s, a, &req("r3", "image", 16), T0 + 3).await;
    assert_eq!(why, Refusal::OverConcurrency);
    accept(s, a, &req("v1", "video", 1), T0 + 4).await;
    let (why, _) = refusal(s, a, &req("v2", "video", 1), T0 + 5).await;
    assert_eq!(why, Refusal::OverConcurrency, "a video takes one slot a task, and there is one");

    let st = s.state(a, T0 + 5).await.expect("state");
    assert_eq!(in_use(&st, "image"), 2);
    assert_eq!(st.running.len(), 2);
    let refused = st.finished.iter().find(|f| f.client_request_id.as_deref() == Some("r2")).expect("r2 shown");
    assert_eq!((refused.outcome, refused.units_charged), (Outcome::Refused, Units::ZERO));
    assert!(st.revision > rev, "later refusals changed the state again");
    assert_eq!(left(&st, "p").0, u(100));
}

/// R2: a request that costs more than the available units (spendable less
/// reserved) is refused; only packages that count now are spendable.
async fn over_the_units_is_refused(s: &dyn Storage) {
    let spec = plan(
        16,
        vec![
            package("now", 10, 0, DAY),
            package("later", 1_000, DAY, 2 * DAY),
            package("over", 1_000, -2 * DAY, -DAY),
        ],
    );
    let a = account(s, &spec).await;
    let st = s.state(a, T0).await.expect("state");
    assert_eq!(rules::remaining(&st), u(10), "only the package in its window counts (R2)");
    let (why, _) = refusal(s, a, &req("r1", "image", 3), T0 + 1).await;
    assert_eq!(why, Refusal::UnitsExhausted, "12 units asked of 10");
    accept(s, a, &req("r2", "image", 2), T0 + 2).await;
    let (why, _) = refusal(s, a, &req("r3", "image", 1), T0 + 3).await;
    assert_eq!(why, Refusal::UnitsExhausted, "4 asked, 10 less 8 reserved available");
    let (why, _) = refusal(s, a, &req("r4", "image", 1), T0 + DAY - 1).await;
    assert_eq!(why, Refusal::UnitsExhausted, "the later package is not effective yet");
    // From its effective time on, the later package's units count.
    accept(s, a, &req("r5", "image", 1), T0 + DAY).await;
}

/// R3, R6: a success is charged its final amount, from the package that
/// expires first; what it cannot pay is not charged.
async fn a_success_is_charged_earliest_expiry_first(s: &dyn Storage) {
    // Granted in the other order than they expire: the order is by expiry.
    let spec = plan(4, vec![package("late", 100, 0, 10 * DAY), package("soon", 6, 0, 2 * DAY)]);
    let a = account(s, &spec).await;
    let t = accept(s, a, &req("r1", "image", 2), T0 + 1).await;
    let ended = s.finish(a, task(&t), &TaskEnd::Succeed { units: Some(u(10)) }, T0 + 2).await.expect("finish");
    assert_eq!((ended.outcome, ended.units_charged), (Outcome::Succeeded, u(10)), "the final amount, not the 8 reserved");
    let st = s.state(a, T0 + 2).await.expect("state");
    assert_eq!(st.revision, ended.revision);
    assert_eq!(left(&st, "soon"), (Units::ZERO, PackageStatus::Exhausted));
    assert_eq!(left(&st, "late"), (u(96), PackageStatus::Active));
    assert!(st.running.is_empty());
    assert_eq!(in_use(&st, "image"), 0, "its slots are free again");
    assert_eq!((st.finished[0].outcome, st.finished[0].units_charged), (Outcome::Succeeded, u(10)));

    // Without a final amount, the reserved cost is charged.
    let t = accept(s, a, &req("r2", "image", 1), T0 + 3).await;
    let ended = s.finish(a, task(&t), &TaskEnd::Succeed { units: None }, T0 + 4).await.expect("finish");
    assert_eq!(ended.units_charged, u(4));
    assert_eq!(left(&s.state(a, T0 + 4).await.expect("state"), "late").0, u(92));

    // More than every package holds: what exists is taken, no more.
    let t = accept(s, a, &req("r3", "image", 1), T0 + 5).await;
    let ended = s.finish(a, task(&t), &TaskEnd::Succeed { units: Some(u(500)) }, T0 + 6).await.expect("finish");
    assert_eq!(ended.units_charged, u(92));
    assert_eq!(rules::remaining(&s.state(a, T0 + 6).await.expect("state")), Units::ZERO);
}

/// R3: a failure is charged nothing and frees its slots and reservation.
async fn a_failure_is_charged_nothing(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 8, 0, DAY)])).await;
    let t = accept(s, a, &req("r1", "image", 2), T0 + 1).await;
    let ended = s
        .finish(a, task(&t), &TaskEnd::Fail { reason: "the model is down".into() }, T0 + 2)
        .await
        .expect("finish");
    assert_eq!((ended.outcome, ended.units_charged), (Outcome::Failed, Units::ZERO));
    let st = s.state(a, T0 + 2).await.expect("state");
    assert_eq!(left(&st, "p"), (u(8), PackageStatus::Active));
    assert_eq!(in_use(&st, "image"), 0);
    let f = &st.finished[0];
    assert_eq!((f.outcome, f.units_charged, f.reason.as_deref()), (Outcome::Failed, Units::ZERO, Some("the model is down")));
    // The whole reservation is free again.
    let t2 = accept(s, a, &req("r2", "image", 2), T0 + 3).await;
    // A reason from outside is kept whole but for a NUL, which PostgreSQL
    // cannot store.
    s.finish(a, task(&t2), &TaskEnd::Fail { reason: "bad\0byte".into() }, T0 + 4).await.expect("finish");
    let st = s.state(a, T0 + 4).await.expect("state");
    assert_eq!(st.finished[0].reason.as_deref(), Some("bad\u{fffd}byte"));
}

/// A repeated client request id gets the first answer and reserves nothing
/// more; a refused id may be tried again.
async fn a_repeated_request_id_is_answered_once(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 100, 0, DAY)])).await;
    let first = accept(s, a, &req("r1", "image", 1), T0 + 1).await;
    let rev = s.revision(a).await.expect("revision");
    match s.submit(a, &req("r1", "image", 1), MAXQ, T0 + 2).await.expect("submit") {
        SubmitOutcome::Accepted { accepted, repeat: true } => assert_eq!(accepted, first),
        other => panic!("a repeat should get the first answer: {other:?}"),
    }
    assert_eq!(s.revision(a).await.expect("revision"), rev, "a repeat changes nothing");
    let st = s.state(a, T0 + 2).await.expect("state");
    assert_eq!((st.running.len(), in_use(&st, "image")), (1, 1));

    // Refused for want of slots, then accepted under the same id.
    accept(s, a, &req("r2", "image", 1), T0 + 3).await;
    let (why, _) = refusal(s, a, &req("r3", "image", 1), T0 + 4).await;
    assert_eq!(why, Refusal::OverConcurrency);
    s.finish(a, task(&first), &TaskEnd::Fail { reason: "x".into() }, T0 + 5).await.expect("finish");
    accept(s, a, &req("r3", "image", 1), T0 + 6).await;
    // An ended task's id still answers with it, and starts nothing.
    match s.submit(a, &req("r1", "image", 1), MAXQ, T0 + 7).await.expect("submit") {
        SubmitOutcome::Accepted { accepted, repeat: true } => assert_eq!(accepted.task_id, first.task_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(in_use(&s.state(a, T0 + 7).await.expect("state"), "image"), 2);
}

/// A task ends once: a second end, of either kind, is refused and changes
/// nothing; another account's task is not found.
async fn a_task_is_settled_once(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 100, 0, DAY)])).await;
    let t = accept(s, a, &req("r1", "image", 1), T0 + 1).await;
    let id = task(&t);
    s.finish(a, id, &TaskEnd::Succeed { units: None }, T0 + 2).await.expect("finish");
    let rev = s.revision(a).await.expect("revision");
    for end in [TaskEnd::Succeed { units: None }, TaskEnd::Fail { reason: "late".into() }] {
        let again = s.finish(a, id, &end, T0 + 3).await;
        assert!(matches!(again, Err(QuotaError::TaskEnded(_))), "{again:?}");
    }
    let st = s.state(a, T0 + 3).await.expect("state");
    assert_eq!(st.revision, rev);
    assert_eq!(left(&st, "p").0, u(96), "charged once");
    assert_eq!(st.finished.len(), 1);

    let b = s.create_account("other", &plan(2, vec![]), T0).await.expect("account");
    let t = accept(s, a, &req("r2", "image", 1), T0 + 4).await;
    let theirs = s.finish(b, task(&t), &TaskEnd::Succeed { units: None }, T0 + 5).await;
    assert!(matches!(theirs, Err(QuotaError::TaskNotFound(_))), "{theirs:?}");

    // Ends that race: exactly one of them ends the task.
    let end = TaskEnd::Succeed { units: None };
    let ends = join_all((0..6).map(|_| s.finish(a, task(&t), &end, T0 + 6))).await;
    assert_eq!(ends.iter().filter(|e| e.is_ok()).count(), 1, "{ends:?}");
    assert_eq!(left(&s.state(a, T0 + 6).await.expect("state"), "p").0, u(92));
}

/// Every change is one revision more, and a snapshot names the revision of
/// the last change it shows; running tasks oldest first, ended newest first.
async fn snapshots_follow_the_revisions(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 100, 0, DAY)])).await;
    let mut expected = s.state(a, T0).await.expect("state").revision;
    let t1 = accept(s, a, &req("r1", "image", 1), T0 + 1).await;
    let t2 = accept(s, a, &req("r2", "image", 1), T0 + 2).await;
    let (_, r3) = refusal(s, a, &req("r3", "image", 1), T0 + 3).await;
    let e2 = s.finish(a, task(&t2), &TaskEnd::Succeed { units: None }, T0 + 4).await.expect("finish").revision;
    let e1 = s.finish(a, task(&t1), &TaskEnd::Fail { reason: "x".into() }, T0 + 5).await.expect("finish").revision;
    let (_, g) = s.grant_package(a, &package("q", 5, 0, DAY), T0 + 6).await.expect("grant");
    let l = s.set_limit(a, "image", 3, T0 + 7).await.expect("limit").revision;
    for rev in [t1.revision, t2.revision, r3, e2, e1, g, l] {
        expected += 1;
        assert_eq!(rev, expected);
    }
    let st = s.state(a, T0 + 8).await.expect("state");
    assert_eq!((st.revision, s.revision(a).await.expect("revision")), (expected, expected));
    let ended: Vec<_> = st.finished.iter().map(|f| f.client_request_id.as_deref().unwrap_or("")).collect();
    assert_eq!(ended, ["r1", "r2", "r3"], "newest first");

    let t4 = accept(s, a, &req("r4", "image", 1), T0 + 9).await;
    let t5 = accept(s, a, &req("r5", "image", 1), T0 + 10).await;
    let running: Vec<_> = s.state(a, T0 + 10).await.expect("state").running.into_iter().map(|r| r.id).collect();
    assert_eq!(running, [t4.task_id, t5.task_id], "oldest first");
}

/// Submits that race for the last slots and units: no check passes twice.
async fn racing_submits_never_overshoot(s: &dyn Storage) {
    let a = account(s, &plan(5, vec![package("p", 12, 0, DAY)])).await;
    let reqs: Vec<_> = (0..12).map(|i| req(&format!("r{i}"), "image", 1)).collect();
    let outs = join_all(reqs.iter().map(|r| s.submit(a, r, MAXQ, T0 + 1))).await;
    let accepted = outs.iter().filter(|o| matches!(o, Ok(SubmitOutcome::Accepted { .. }))).count();
    assert_eq!(accepted, 3, "12 units pay for 3 images of 4, though 5 slots are free: {outs:?}");
    let st = s.state(a, T0 + 1).await.expect("state");
    assert_eq!((in_use(&st, "image"), st.running.len()), (3, 3));
    assert_eq!(st.finished.len(), 9);
}

/// A malformed request is refused before anything is decided: no revision.
async fn bad_requests_change_nothing(s: &dyn Storage) {
    let a = account(s, &plan(4, vec![package("p", 100, 0, DAY)])).await;
    let r0 = s.revision(a).await.expect("revision");
    // A NUL in the request id: PostgreSQL cannot store it, so neither store does.
    for bad in [req("x", "audio", 1), req("x", "image", 0), req("x", "image", 17), req("", "image", 1), req("a\0b", "image", 1)] {
        let out = s.submit(a, &bad, MAXQ, T0 + 1).await;
        assert!(matches!(out, Err(QuotaError::BadRequest(_))), "{bad:?}: {out:?}");
    }
    assert_eq!(s.revision(a).await.expect("revision"), r0);
    assert!(s.state(a, T0 + 1).await.expect("state").finished.is_empty(), "nothing recorded");
}

/// A package that becomes effective or expires changes the state without a
/// request: one revision more, once; a boundary the last state already
/// showed changes nothing.
async fn package_boundaries_are_changes(s: &dyn Storage) {
    let a = account(s, &plan(4, vec![package("now", 10, 0, DAY), package("later", 10, DAY, 2 * DAY)])).await;
    let r0 = s.revision(a).await.expect("revision");
    assert!(s.pass_boundaries(T0 - 1, T0 + 1).await.expect("pass").is_empty(), "effective at creation: already shown");
    assert!(s.pass_boundaries(T0 + 1, T0 + DAY - 1).await.expect("pass").is_empty());
    assert_eq!(s.pass_boundaries(T0 + DAY - 1, T0 + DAY).await.expect("pass"), vec![a]);
    assert_eq!(s.revision(a).await.expect("revision"), r0 + 1);
    assert!(s.pass_boundaries(T0 + DAY - 1, T0 + DAY).await.expect("pass").is_empty(), "once");
    assert_eq!(left(&s.state(a, T0 + DAY).await.expect("state"), "now").1, PackageStatus::Expired);
}

/// Tokens and sessions are found by their hashes; a session ends at its
/// expiry or at sign-out.
async fn tokens_and_sessions(s: &dyn Storage) {
    let a = account(s, &plan(1, vec![])).await;
    assert_eq!(s.account_by_token("scenario").await.expect("lookup"), Some(a));
    assert_eq!(s.account_by_token("other").await.expect("lookup"), None);
    assert!(matches!(s.create_account("scenario", &plan(1, vec![]), T0).await, Err(QuotaError::AccountExists)));
    assert_eq!(s.ensure_account("scenario", &plan(1, vec![]), T0).await.expect("ensure"), a);
    let id = s.create_session(a, T0, T0 + 1_000).await.expect("session");
    assert_eq!(s.session_account(&id, T0 + 999).await.expect("session"), Some(a));
    assert_eq!(s.session_account(&id, T0 + 1_000).await.expect("session"), None, "expired");
    let id = s.create_session(a, T0, T0 + 1_000).await.expect("session");
    s.delete_session(&id).await.expect("sign out");
    assert_eq!(s.session_account(&id, T0 + 1).await.expect("session"), None);
}

fn pack(id: &str, remaining: &str, status: &str) -> MirrorPack {
    MirrorPack {
        upstream_id: id.into(),
        name: id.into(),
        total: u(100),
        remaining: remaining.parse().expect("units"),
        effective_at_ms: T0 - DAY,
        expires_at_ms: T0 + 30 * DAY,
        status: status.into(),
    }
}

fn units(text: &str) -> Units {
    text.parse().expect("units")
}

/// An account that mirrors a service (upstream mode), synced once.
async fn mirrored(s: &dyn Storage, packs: Vec<MirrorPack>) -> AccountId {
    let a = account(s, &AccountSpec { image_limit: 4, video_limit: 1, packages: vec![] }).await;
    assert_eq!(s.ensure_mirror(a, "first", T0).await.expect("mirror"), "first");
    assert_eq!(s.ensure_mirror(a, "second", T0).await.expect("mirror"), "first", "the secret is kept");
    s.set_pool(a, "image", 8, Some(units("0.25")), T0).await.expect("pool");
    assert!(s.mirror(a).await.expect("mirror").is_some_and(|(_, synced)| synced.is_none()), "not synced yet");
    s.sync_packages(a, packs, T0).await.expect("sync");
    a
}

/// Upstream mode: a submit spends what the state shows as remaining (R2):
/// a pack the service calls expired, or no longer reports, does not count.
async fn a_mirrored_submit_counts_only_the_packs_the_state_counts(s: &dyn Storage) {
    let packs = vec![pack("on", "1", "online"), pack("off", "100", "expired"), pack("gone", "100", "online")];
    let a = mirrored(s, packs.clone()).await;
    s.sync_packages(a, packs[..2].to_vec(), T0 + 1).await.expect("sync without the gone pack");
    let st = s.state(a, T0 + 1).await.expect("state");
    assert_eq!(st.packages_synced_at_ms, Some(T0 + 1));
    assert_eq!(st.packages.len(), 2, "the gone pack is not shown: {:?}", st.packages);
    assert_eq!(left(&st, "off").1, PackageStatus::Expired, "the service's word");
    assert_eq!(rules::remaining(&st), u(1));
    let (why, _) = refusal(s, a, &req("r1", "image", 5), T0 + 2).await;
    assert_eq!(why, Refusal::UnitsExhausted, "1.25 asked of 1");
    accept(s, a, &req("r2", "image", 4), T0 + 3).await;
}

/// Upstream mode: a success is charged to the ledger and shown at once,
/// and once only when the service's figure catches up; a failure, a
/// refusal of the service and one decided here charge nothing.
async fn a_mirrored_success_is_charged_once(s: &dyn Storage) {
    let a = mirrored(s, vec![pack("p", "100", "online")]).await;
    let fields = UpstreamFields { family: "images".into(), params: "{\"model_name\":\"m\"}".into() };
    let t = match s.submit_upstream(a, &req("r1", "image", 3), Some(fields.clone()), MAXQ, T0 + 1).await.expect("submit") {
        SubmitOutcome::Accepted { accepted, repeat: false } => accepted,
        other => panic!("{other:?}"),
    };
    let id = task(&t);
    s.attach_upstream(a, id, "up-1", T0 + 2).await.expect("attach");
    let found = s.upstream_task(TaskKey::Upstream("up-1".into())).await.expect("by id").expect("found");
    assert_eq!((found.id, found.family.as_str(), found.params.as_str()), (id, "images", fields.params.as_str()));
    assert_eq!(found.reserved, units("0.75"));
    assert_eq!(s.upstream_task(TaskKey::Local(id)).await.expect("by id").map(|t| t.upstream_task_id), Some(Some("up-1".into())));
    assert_eq!(s.upstream_running().await.expect("running").len(), 1);

    let ended = s.finish(a, id, &TaskEnd::Succeed { units: Some(units("0.5")) }, T0 + 3).await.expect("finish");
    assert_eq!(ended.units_charged, units("0.5"));
    assert_eq!(rules::remaining(&s.state(a, T0 + 3).await.expect("state")), units("99.5"), "shown at once");
    assert_eq!(s.pending_charges(a).await.expect("pending"), units("0.5"));
    s.sync_packages(a, vec![pack("p", "100", "online")], T0 + 4).await.expect("lagging sync");
    assert_eq!(rules::remaining(&s.state(a, T0 + 4).await.expect("state")), units("99.5"));
    s.sync_packages(a, vec![pack("p", "99.5", "online")], T0 + 5).await.expect("caught up");
    assert_eq!(rules::remaining(&s.state(a, T0 + 5).await.expect("state")), units("99.5"), "counted once");
    assert_eq!(s.pending_charges(a).await.expect("pending"), Units::ZERO);

    let t2 = accept(s, a, &req("r2", "image", 1), T0 + 6).await;
    s.end_refused(a, task(&t2), &Refusal::Upstream { code: 1303, message: "busy".into() }, T0 + 7).await.expect("refused");
    let again = s.end_refused(a, task(&t2), &Refusal::UnitsExhausted, T0 + 8).await;
    assert!(matches!(again, Err(QuotaError::TaskEnded(_))), "{again:?}");
    s.refuse(a, &req("r3", "image", 2), &Refusal::Upstream { code: 1303, message: "backing off".into() }, T0 + 9).await.expect("refuse");
    let st = s.state(a, T0 + 9).await.expect("state");
    let reasons: Vec<_> = st.finished.iter().map(|f| (f.outcome, f.units_charged, f.reason.as_deref())).collect();
    assert_eq!(
        reasons,
        [
            (Outcome::Refused, Units::ZERO, Some("backing off")),
            (Outcome::Refused, Units::ZERO, Some("busy")),
            (Outcome::Succeeded, units("0.5"), None)
        ]
    );
    assert_eq!(rules::remaining(&st), units("99.5"));
    assert!(st.running.is_empty() && s.upstream_running().await.expect("running").is_empty());
}

fn sqlite() -> SqliteStorage {
    SqliteStorage::start(|| SqliteStore::open(":memory:", Hub::default())).expect("SQLite in memory")
}

/// The queue (R8): a request sent with `queue` while its slots are busy
/// waits with its units reserved and no slot; it starts, in order, in the
/// transaction that frees its slots; a cancel releases its units; nothing
/// is charged for a wait, a cancel or a failure.
async fn queued_requests_start_in_order_as_slots_free(s: &dyn Storage) {
    let a = account(s, &plan(4, vec![package("p", 100, 0, DAY)])).await;
    let t = accept(s, a, &queued("r1", "image", 4), T0 + 1).await;
    assert_eq!(t.place, None, "it fits: it runs");
    let b = accept(s, a, &queued("b", "image", 2), T0 + 2).await;
    let c = accept(s, a, &queued("c", "image", 1), T0 + 3).await;
    let d = accept(s, a, &queued("d", "image", 2), T0 + 4).await;
    assert_eq!([b.place, c.place, d.place], [Some(1), Some(2), Some(3)]);
    assert_eq!((b.slots, b.reserved_units), (2, u(8)));
    let st = s.state(a, T0 + 4).await.expect("state");
    assert_eq!(in_use(&st, "image"), 4, "waiting requests hold no slot");
    let shown: Vec<_> = st.queued.iter().map(|q| (q.id.as_str(), q.place, q.count, q.reserved_units, q.queued_at_ms)).collect();
    assert_eq!(
        shown,
        [(b.task_id.as_str(), 1, 2, u(8), T0 + 2), (c.task_id.as_str(), 2, 1, u(4), T0 + 3), (d.task_id.as_str(), 3, 2, u(8), T0 + 4)]
    );
    assert_eq!(st.queued[0].client_request_id.as_deref(), Some("b"));
    // R2 counts the queue: 100 - 16 running - 20 waiting = 64 available.
    let (why, _) = refusal(s, a, &req("v1", "video", 4), T0 + 5).await;
    assert_eq!(why, Refusal::UnitsExhausted, "a video of 80 units is over the 64 left");
    accept(s, a, &req("v2", "video", 3), T0 + 5).await;
    // A repeat of a queued request is answered with its place, nothing more.
    match s.submit(a, &queued("c", "image", 1), MAXQ, T0 + 6).await.expect("repeat") {
        SubmitOutcome::Accepted { accepted, repeat: true } => assert_eq!(accepted, c),
        other => panic!("a repeat: {other:?}"),
    }
    // Without `queue`, a newcomer finds no slot: the waiting come first.
    let (why, _) = refusal(s, a, &req("e", "image", 1), T0 + 6).await;
    assert_eq!(why, Refusal::OverConcurrency);

    // The running task fails: "b" and "c" start in the same change; "d"
    // (2) does not fit in the one slot left, and waits at the head.
    let ended = s.finish(a, task(&t), &TaskEnd::Fail { reason: "x".into() }, T0 + 7).await.expect("finish");
    assert_eq!(ended.started, [task(&b), task(&c)]);
    let st = s.state(a, T0 + 7).await.expect("state");
    assert_eq!(st.revision, ended.revision);
    assert_eq!(in_use(&st, "image"), 3);
    let running: Vec<_> = st.running.iter().filter(|r| r.kind == "image").map(|r| (r.id.as_str(), r.started_at_ms)).collect();
    assert_eq!(running, [(b.task_id.as_str(), T0 + 7), (c.task_id.as_str(), T0 + 7)]);
    assert_eq!(st.queued.iter().map(|q| (q.id.as_str(), q.place)).collect::<Vec<_>>(), [(d.task_id.as_str(), 1)]);
    assert_eq!(left(&st, "p").0, u(100), "a failure, a wait and a start charge nothing");

    // Cancel "d": its units come back, nothing is charged, and a second
    // cancel answers the same.
    let before = s.state(a, T0 + 8).await.expect("state");
    let (cancelled, started) = s.cancel(a, task(&d), T0 + 8).await.expect("cancel");
    assert_eq!((cancelled.task_id.as_str(), cancelled.units_released, cancelled.revision), (d.task_id.as_str(), u(8), before.revision + 1));
    assert!(started.is_empty());
    assert_eq!(s.cancel(a, task(&d), T0 + 9).await.expect("again").0, cancelled);
    let st = s.state(a, T0 + 9).await.expect("state");
    assert_eq!(st.revision, cancelled.revision, "a repeated cancel changes nothing");
    assert!(st.queued.is_empty());
    let shown = st.finished.iter().find(|f| f.id == d.task_id).expect("the cancel is shown");
    assert_eq!((shown.outcome, shown.units_charged), (Outcome::Refused, Units::ZERO));
    assert!(shown.reason.as_deref().is_some_and(|r| r.contains("cancelled")), "{shown:?}");
    assert_eq!(left(&st, "p").0, u(100));
    // Only a waiting request can be cancelled.
    assert!(matches!(s.cancel(a, task(&b), T0 + 10).await, Err(QuotaError::NotQueued(_))));
    s.finish(a, task(&b), &TaskEnd::Succeed { units: None }, T0 + 10).await.expect("success");
    assert!(matches!(s.cancel(a, task(&b), T0 + 11).await, Err(QuotaError::TaskEnded(_))));
    assert!(matches!(s.cancel(a, 987_654, T0 + 11).await, Err(QuotaError::TaskNotFound(_))));
    // The request id of a cancelled request may be used again.
    let again = accept(s, a, &queued("d", "image", 1), T0 + 12).await;
    assert_ne!(again.task_id, d.task_id);
    // The ledger: only the success was charged.
    assert_eq!(left(&s.state(a, T0 + 12).await.expect("state"), "p").0, u(92));
}

/// The queue's bound and the requests it never takes: refused, recorded,
/// charged nothing. A lowered limit refuses a waiting request that could
/// never start; a raised one starts those that fit.
async fn the_queue_has_a_bound(s: &dyn Storage) {
    let a = account(s, &plan(2, vec![package("p", 100, 0, DAY)])).await;
    accept(s, a, &req("r1", "image", 2), T0 + 1).await;
    let w1 = match s.submit(a, &queued("w1", "image", 2), 2, T0 + 2).await.expect("submit") {
        SubmitOutcome::Accepted { accepted, .. } => accepted,
        other => panic!("{other:?}"),
    };
    assert!(matches!(s.submit(a, &queued("w2", "video", 1), 2, T0 + 3).await, Ok(SubmitOutcome::Accepted { .. })));
    accept(s, a, &queued("w3", "video", 1), T0 + 4).await;
    let rev = s.revision(a).await.expect("revision");
    let out = s.submit(a, &queued("w4", "image", 1), 2, T0 + 5).await.expect("submit");
    let SubmitOutcome::Refused { refusal: Refusal::Queue { message }, revision } = out else { panic!("queue full: {out:?}") };
    assert!(message.contains("2 requests of this account wait already"), "{message}");
    assert_eq!(revision, rev + 1, "a refusal is recorded");
    let out = s.submit(a, &queued("w5", "image", 3), MAXQ, T0 + 6).await.expect("submit");
    let SubmitOutcome::Refused { refusal: Refusal::Queue { message }, .. } = out else { panic!("over the limit: {out:?}") };
    assert!(message.contains("needs 3 slots"), "{message}");
    let st = s.state(a, T0 + 6).await.expect("state");
    assert_eq!(st.queued.len(), 2);
    assert_eq!(left(&st, "p").0, u(100));

    // The limit falls to 1: "w1" (2 slots) could never start.
    let p = s.set_limit(a, "image", 1, T0 + 7).await.expect("limit");
    assert!(p.started.is_empty());
    let st = s.state(a, T0 + 7).await.expect("state");
    assert_eq!(st.queued.iter().map(|q| q.kind.as_str()).collect::<Vec<_>>(), ["video"]);
    let gone = st.finished.iter().find(|f| f.id == w1.task_id).expect("refused");
    assert_eq!((gone.outcome, gone.units_charged), (Outcome::Refused, Units::ZERO));
    // Raised to 4: a queued image starts at once, in the same change.
    let w6 = accept(s, a, &queued("w6", "image", 1), T0 + 8).await;
    assert_eq!(w6.place, Some(1));
    let p = s.set_limit(a, "image", 4, T0 + 9).await.expect("limit");
    assert_eq!(p.started, [task(&w6)]);
    assert_eq!(s.state(a, T0 + 9).await.expect("state").revision, p.revision);
}

/// Upstream's 1303 for a running task: its kind is held until the backoff
/// passes; sent with `queue` it waits again at the head of its kind's
/// queue (by arrival), else it is refused; nothing is charged either way.
async fn a_busy_service_puts_a_queued_request_back(s: &dyn Storage) {
    let a = account(s, &plan(4, vec![package("p", 100, 0, DAY)])).await;
    let t1 = accept(s, a, &queued("r1", "image", 2), T0 + 1).await;
    let t2 = accept(s, a, &req("r2", "image", 1), T0 + 2).await;
    let busy = Refusal::Queue { message: "busy".into() };
    let b = s.busy(a, task(&t1), &busy, T0 + 1_000, T0 + 3).await.expect("busy");
    assert_eq!((b.place, b.started.len()), (Some(1), 0));
    let st = s.state(a, T0 + 3).await.expect("state");
    assert_eq!((in_use(&st, "image"), st.queued.len()), (1, 1));
    assert_eq!((st.queued[0].id.as_str(), st.queued[0].queued_at_ms), (t1.task_id.as_str(), T0 + 1));
    // Held: free slots, yet a newcomer that may wait waits behind it, and
    // one that may not is refused; a task ending starts nothing.
    let t3 = accept(s, a, &queued("r3", "image", 1), T0 + 4).await;
    assert_eq!(t3.place, Some(2));
    assert_eq!(refusal(s, a, &req("r4", "image", 1), T0 + 4).await.0, Refusal::OverConcurrency);
    let ended = s.finish(a, task(&t2), &TaskEnd::Fail { reason: "x".into() }, T0 + 5).await.expect("finish");
    assert!(ended.started.is_empty());
    assert!(s.advance(a, T0 + 999).await.expect("advance").started.is_empty(), "still held");
    let r = s.revision(a).await.expect("revision");
    assert_eq!(r, ended.revision, "a queue that did not move is no change");
    // The hold ends: both start, the one put back first.
    let p = s.advance(a, T0 + 1_000).await.expect("advance");
    assert_eq!((p.started, p.revision), (vec![task(&t1), task(&t3)], r + 1));
    // A task sent without `queue` is refused on the service's 1303.
    let t5 = accept(s, a, &req("r5", "image", 1), T0 + 1_001).await;
    let b = s.busy(a, task(&t5), &busy, T0 + 2_000, T0 + 1_002).await.expect("busy");
    assert_eq!(b.place, None);
    let st = s.state(a, T0 + 1_002).await.expect("state");
    let f = st.finished.iter().find(|f| f.id == t5.task_id).expect("refused");
    assert_eq!((f.outcome, f.units_charged, f.reason.as_deref()), (Outcome::Refused, Units::ZERO, Some("busy")));
    assert_eq!(left(&st, "p").0, u(100));
    assert!(matches!(s.busy(a, task(&t5), &busy, T0 + 2_000, T0 + 1_003).await, Err(QuotaError::TaskEnded(_))));
}

/// A fresh database on the test cluster, as the API suite makes them; `None`
/// only when no cluster is named.
async fn postgres(scenario: &str) -> Option<PgStore> {
    let Ok(dir) = std::env::var("QW_TEST_PG_DIR") else {
        eprintln!("QW_TEST_PG_DIR is not set (scripts/pg start): {scenario} did not run on PostgreSQL");
        return None;
    };
    let name = format!("qw_scn_{}_{scenario}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&format!("host={dir} user=postgres dbname=postgres"), tokio_postgres::NoTls)
        .await
        .expect("the test cluster named by QW_TEST_PG_DIR answers");
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let url = format!("postgresql:///{name}?host={dir}&user=postgres");
    Some(PgStore::open(&url, Hub::default()).await.expect("PostgreSQL store"))
}

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    if let Some(store) = super::postgres(stringify!($scenario)).await {
                        super::$scenario(&store).await;
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    submit_within_the_limit,
    over_the_limit_is_refused,
    over_the_units_is_refused,
    a_success_is_charged_earliest_expiry_first,
    a_failure_is_charged_nothing,
    a_repeated_request_id_is_answered_once,
    a_task_is_settled_once,
    snapshots_follow_the_revisions,
    racing_submits_never_overshoot,
    bad_requests_change_nothing,
    package_boundaries_are_changes,
    tokens_and_sessions,
    a_mirrored_submit_counts_only_the_packs_the_state_counts,
    a_mirrored_success_is_charged_once,
    queued_requests_start_in_order_as_slots_free,
    the_queue_has_a_bound,
    a_busy_service_puts_a_queued_request_back,
);
