//! The checks, run as one sequence against one test account.
//!
//! The sequence is the order in which a widget meets a backend: sign in,
//! read the state, revalidate it, follow the stream, submit, repeat a
//! submit, get refused, see tasks end. Each step checks what it can and
//! records one line; a step that cannot run says why (`skip`).
//!
//! The account may move under the checker (a real backend has a worker
//! that ends tasks): comparisons between two states therefore account for
//! tasks that ended in between instead of expecting identical figures, and
//! a refusal check whose figures were overtaken is tried again.

mod basics;
mod ends;
mod queue;
mod stream;
mod submits;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quota_widget::core::rules::{Shortfall, MAX_COUNT};
use quota_widget::core::wire::{codes, Cancelled, Outcome, ServerState, SlotRule, SubmitAccepted, SubmitRequest, Units};
use reqwest::Method;

use crate::api::{secs, Api, Auth, EventStream, Item, Opened, Reply};
use crate::state::{self, snippet};
use crate::{Check, CheckResult, Config, Report, Status};

/// Filler tasks the over-slots check may start to fill a large pool.
const MAX_FILLERS: usize = 8;
/// Tries of a refusal check whose figures other tasks overtook.
const MAX_MOVED: usize = 3;
/// How often a state is polled while waiting for a task to end.
const POLL_ENDED: Duration = Duration::from_millis(100);
const POLL_NATURAL: Duration = Duration::from_millis(250);
/// Without end URLs: further tasks started, one at a time, when all of the
/// checker's tasks ended without the outcome a check waits for.
const MAX_EXTRA_TASKS: usize = 3;

/// Runs every check (see [`crate::run_with`]); every check gets exactly one
/// result, `skip` with the reason for those the run did not reach.
pub async fn run(config: &Config, on_result: impl FnMut(&CheckResult)) -> Report {
    let started = Instant::now();
    let tag = unique_tag();
    let api = match config.check().and_then(|()| {
        Api::new(&config.base_url, config.credentials.clone(), config.request_timeout, &tag)
    }) {
        Ok(api) => api,
        Err(e) => {
            return Report { fatal: Some(e), elapsed: started.elapsed(), ..Report::default() };
        }
    };
    let mut run = Run {
        cfg: config,
        api,
        on_result,
        results: Vec::new(),
        notes: Vec::new(),
        fatal: None,
        reads: Vec::new(),
        revisions: Revisions::default(),
        ours: Vec::new(),
        base_mark: None,
        tag,
        seq: 0,
        event_problems: Vec::new(),
    };
    let halted = run.flow().await;
    let why = halted.unwrap_or_else(|| "not reached".to_owned());
    for check in Check::ALL {
        if run.results.iter().all(|r| r.check != check) {
            run.record(check, Status::Skip, why.clone());
        }
    }
    Report { results: run.results, notes: run.notes, fatal: run.fatal, elapsed: started.elapsed() }
}

/// A short tag unique to this run, in every client_request_id it sends, so
/// that its tasks are told from others' and a rerun never repeats an id.
fn unique_tag() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:x}", mixed & 0xffff_ffff_ffff)
}

/// A task the checker started (to watch, and to end at the end).
#[derive(Clone, Debug)]
struct Ours {
    task_id: String,
    /// Started only to fill a pool (the over-slots check).
    filler: bool,
    /// Index in `reads` of the last state read before its submit.
    before_mark: usize,
}

/// The first accepted submit, which later checks repeat and end.
struct Accepted {
    req: SubmitRequest,
    acc: SubmitAccepted,
    answered_at: Instant,
}

/// Revisions seen so far and what broke the rule that they never go back
/// and that a revision names one content.
#[derive(Default)]
struct Revisions {
    /// Revision → fingerprint of its content, and where it was first seen.
    seen: HashMap<u64, (u64, String)>,
    problems: Vec<String>,
    gets: usize,
    events: usize,
    lowest: Option<u64>,
    highest: Option<u64>,
}

impl Revisions {
    fn content(&mut self, s: &ServerState, source: String) {
        self.lowest = Some(self.lowest.map_or(s.revision, |l| l.min(s.revision)));
        self.highest = Some(self.highest.map_or(s.revision, |h| h.max(s.revision)));
        let fp = state::fingerprint(s);
        match self.seen.get(&s.revision) {
            Some((f, first)) if *f != fp => {
                let p = format!(
                    "revision {} came with two different contents ({first}, then {source}): a change without a new revision",
                    s.revision
                );
                self.problem(p);
            }
            Some(_) => {}
            None => {
                self.seen.insert(s.revision, (fp, source));
            }
        }
    }

    fn problem(&mut self, p: String) {
        // The first few say it; a broken server would repeat them all run long.
        if self.problems.len() < 4 && !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }
}

/// One run: the backend, what was read from it, and the results so far.
struct Run<'a, F: FnMut(&CheckResult)> {
    cfg: &'a Config,
    api: Api,
    on_result: F,
    results: Vec<CheckResult>,
    notes: Vec<String>,
    fatal: Option<String>,
    /// Every state read with GET, in order: revisions and ledgers chain
    /// over them.
    reads: Vec<ServerState>,
    revisions: Revisions,
    ours: Vec<Ours>,
    /// The last read before the checker's first submit.
    base_mark: Option<usize>,
    tag: String,
    seq: u32,
    /// Problems in opening the stream and with its first event.
    event_problems: Vec<String>,
}

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    /// Decides a check. A check is decided once: a later word on it (a
    /// skip for "not reached") is dropped.
    fn record(&mut self, check: Check, status: Status, detail: impl Into<String>) {
        if self.results.iter().any(|r| r.check == check) {
            return;
        }
        let result = CheckResult { check, status, detail: detail.into() };
        (self.on_result)(&result);
        self.results.push(result);
    }

    fn record_outcome(&mut self, check: Check, outcome: Result<String, (Status, String)>) {
        match outcome {
            Ok(detail) => self.record(check, Status::Ok, detail),
            Err((status, detail)) => self.record(check, status, detail),
        }
    }

    /// All checks; `Some(why)` if the run stopped early (the checks not
    /// reached are skipped with that reason).
    async fn flow(&mut self) -> Option<String> {
        let Some(first) = self.auth().await else {
            return Some("needs the state as the test account sees it (see auth)".into());
        };
        let Some(s0) = self.shape(&first) else {
            return Some("needs a state the widget accepts (see state shape)".into());
        };
        let kind = match &self.cfg.kind {
            Some(k) if state::pool(&s0, k).is_none() => {
                let kinds: Vec<&str> = s0.pools.iter().map(|p| p.kind.as_str()).collect();
                self.fatal = Some(format!("--kind {k}: the account has no such pool (it has: {})", kinds.join(", ")));
                return Some("not run: --kind names no pool".into());
            }
            Some(k) => Some(k.clone()),
            None => s0.pools.first().map(|p| p.kind.clone()),
        };
        self.etag().await;

        let mut stream = self.open_stream().await;
        let t1 = match &kind {
            Some(k) => self.submit(k).await,
            None => {
                self.record(Check::Submit, Status::Skip, "the account has no pools to submit to");
                None
            }
        };
        match (&mut stream, &t1) {
            (Some(w), Some(t1)) => {
                let outcome = self.events_change(w, t1).await;
                self.record_outcome(Check::EventsChange, outcome);
            }
            (None, _) => self.record(Check::EventsChange, Status::Skip, "no event stream (see events)"),
            (_, None) => self.record(Check::EventsChange, Status::Skip, "needs an accepted submit (see submit)"),
        }
        let mut resumed = match &stream {
            Some(w) => self.open_resumed(w).await,
            None => Err((Status::Skip, "no event stream (see events)".into())),
        };
        let mut by_query = match &stream {
            Some(_) => self.open_by_query().await,
            None => Err((Status::Skip, "no event stream (see events)".into())),
        };

        match &t1 {
            Some(t1) => {
                let outcome = self.idempotency(t1).await;
                self.record_outcome(Check::Idempotency, outcome);
            }
            None => self.record(Check::Idempotency, Status::Skip, "needs an accepted submit (see submit)"),
        }
        match &kind {
            Some(k) => {
                let outcome = self.bad_request(k).await;
                self.record_outcome(Check::BadRequest, outcome);
                let outcome = self.over_units(k).await;
                self.record_outcome(Check::OverUnits, outcome);
                let outcome = self.over_slots(k).await;
                self.record_outcome(Check::OverSlots, outcome);
                let outcome = self.queue(k).await;
                self.record_outcome(Check::Queue, outcome);
                self.end_fillers().await;
                self.outcomes(k).await;
            }
            None => {
                for check in [Check::BadRequest, Check::OverUnits, Check::OverSlots, Check::Queue, Check::Failure, Check::Success] {
                    self.record(check, Status::Skip, "the account has no pools to submit to");
                }
            }
        }
        self.cleanup().await;

        let outcome = match &mut resumed {
            Ok((w, r)) => self.resume(w, *r).await,
            Err(e) => Err(e.clone()),
        };
        self.record_outcome(Check::EventsResume, outcome);
        let outcome = match &mut by_query {
            Ok((w, r, first)) => self.resume_by_query(w, *r, *first).await,
            Err(e) => Err(e.clone()),
        };
        self.record_outcome(Check::EventsResumeQuery, outcome);
        match &mut stream {
            Some(w) => {
                let outcome = self.pings(w).await;
                self.record_outcome(Check::EventsPing, outcome);
            }
            None => self.record(Check::EventsPing, Status::Skip, "no event stream (see events)"),
        }
        let others: Vec<&stream::Watch> = [resumed.as_ref().ok().map(|(w, _)| w), by_query.as_ref().ok().map(|(w, _, _)| w)]
            .into_iter()
            .flatten()
            .collect();
        self.events_summary(stream.as_ref(), &others);
        self.revisions_summary();
        None
    }


    /// GET /api/state with the credentials, read as the widget reads it.
    async fn state(&mut self) -> Result<ServerState, String> {
        let reply = self.api.send(Method::GET, "/api/state", Auth::Account, &[], None).await?;
        if reply.status != 200 {
            return Err(format!("GET /api/state answered {}", reply.describe()));
        }
        let s = state::read(&reply.body).map_err(|e| format!("GET /api/state: {e}"))?;
        self.observe(&s);
        Ok(s)
    }

    /// Records a state read with GET: reads are sequential, so their
    /// revisions must never go back.
    fn observe(&mut self, s: &ServerState) {
        if let Some(prev) = self.reads.last().map(|p| p.revision).filter(|p| s.revision < *p) {
            self.revisions.problem(format!(
                "GET /api/state went back from revision {prev} to {} (a stale replica or cache?)",
                s.revision
            ));
        }
        self.revisions.gets += 1;
        let source = format!("GET #{}", self.revisions.gets);
        self.revisions.content(s, source);
        self.reads.push(s.clone());
    }

    /// The index of the last state read.
    fn mark(&self) -> usize {
        self.reads.len().saturating_sub(1)
    }

    /// Checks the ledger over every pair of consecutive reads since `mark`:
    /// the packages lost exactly what the tasks that succeeded in between
    /// were charged. Returns the units charged.
    fn ledger_since(&self, mark: usize) -> Result<Units, String> {
        let reads = self.reads.get(mark..).unwrap_or_default();
        let mut charged = Units::ZERO;
        for pair in reads.windows(2) {
            charged += state::ledger(&pair[0], &pair[1])?;
        }
        Ok(charged)
    }

    fn request(&mut self, kind: &str, count: u32) -> SubmitRequest {
        SubmitRequest {
            kind: kind.to_owned(),
            count,
            client_request_id: self.new_request_id(),
            prompt: Some("qw-conformance check".into()),
            queue: false,
        }
    }

    fn new_request_id(&mut self) -> String {
        self.seq += 1;
        format!("qwc-{}-{}", self.tag, self.seq)
    }

    async fn post(&self, req: &SubmitRequest) -> Result<Reply, String> {
        // Serializing strings and integers cannot fail.
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.api.send(Method::POST, "/api/generations", Auth::Account, &[], Some(body)).await
    }

    /// Remembers the tasks a submit started, from its answer and from the
    /// state after it (a server that should have refused may still have
    /// started one), so that they are ended at the end.
    fn adopt(&mut self, reply: &Reply, client_request_id: &str, filler: bool, mark: usize, after: Option<&ServerState>) {
        let mut ids = Vec::new();
        if reply.is_success() {
            if let Ok(acc) = serde_json::from_slice::<SubmitAccepted>(&reply.body) {
                ids.push(acc.task_id);
            }
        }
        if let Some(s) = after {
            ids.extend(
                s.running
                    .iter()
                    .filter(|t| t.client_request_id.as_deref() == Some(client_request_id))
                    .map(|t| t.id.clone()),
            );
        }
        for id in ids {
            if self.ours.iter().all(|o| o.task_id != id) {
                self.ours.push(Ours {
                    task_id: id,
                    filler,
                    before_mark: mark,
                });
            }
        }
    }

    /// Starts a task of `count` items (for fillers and for end checks).
    async fn start_task(&mut self, kind: &str, count: u32, filler: bool) -> Result<String, String> {
        let before = self.state().await?;
        let mark = self.mark();
        let pool = state::pool(&before, kind).ok_or_else(|| format!("the account has no pool \"{kind}\" any more"))?;
        let (slots, cost) = (pool.slot_rule.slots_for(count), pool.unit_cost.times(count));
        if let Some(cap) = state::capacity(&before, kind) {
            cap.admit(slots, cost).map_err(|short| shortfall(&short, count, kind))?;
        }
        let req = self.request(kind, count);
        let reply = self.post(&req).await?;
        self.adopt(&reply, &req.client_request_id, filler, mark, None);
        if reply.status != 201 {
            return Err(format!("a submit of {count} {kind} was answered {}", reply.describe()));
        }
        let acc: SubmitAccepted = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("a submit's answer is not a SubmitAccepted ({e}): {}", snippet(&reply.body)))?;
        Ok(acc.task_id)
    }

    /// Polls the state until `task` no longer runs (an end URL may act
    /// asynchronously), for at most the event timeout.
    async fn wait_ended(&mut self, task: &str) -> Result<ServerState, String> {
        let deadline = Instant::now() + self.cfg.event_timeout;
        loop {
            let s = self.state().await?;
            if s.running.iter().all(|t| t.id != task) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{task} still runs {} after the end URL answered (revision {})",
                    secs(self.cfg.event_timeout),
                    s.revision
                ));
            }
            tokio::time::sleep(POLL_ENDED).await;
        }
    }

    async fn end_task(&self, template: &str, task: &str) -> Result<Reply, String> {
        let url = fill_template(template, task);
        self.api.send(Method::POST, &url, Auth::Account, &[], None).await
    }
}


/// Why a request does not fit, in words.
fn shortfall(short: &Shortfall, count: u32, kind: &str) -> String {
    match short {
        Shortfall::Slots { free } => format!("{count} {kind} needs more slots than the {free} free"),
        Shortfall::Units { available } => format!("{count} {kind} costs more than the {available} units available"),
    }
}

/// The problem with an answer that must be 401 with an ApiError 1000.
fn expect_401(r: &Reply, what: &str) -> Option<String> {
    if r.status != 401 {
        return Some(format!("{what} answered {}, want 401", r.describe()));
    }
    match r.api_error() {
        Ok(e) if e.code == codes::UNAUTHORIZED => None,
        Ok(e) => Some(format!("{what}: 401 with code {}, want 1000", e.code)),
        Err(e) => Some(format!("{what}: 401, but {e}")),
    }
}

/// Delay-seconds or an HTTP date (RFC 9110, 10.2.3).
fn retry_after_ok(v: &str) -> bool {
    let v = v.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) || v.ends_with(" GMT")
}

/// The template with `{task_id}` replaced by the id, percent-encoded as a
/// path segment.
fn fill_template(template: &str, task: &str) -> String {
    let mut id = String::new();
    for b in task.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("%{b:02X}"));
        }
    }
    template.replace("{task_id}", &id)
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
    }
}

fn compact(a: &SubmitAccepted) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

/// "1 slot", "2 slots".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn join(revs: &[u64]) -> String {
    revs.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_retry_after() {
        assert_eq!(fill_template("http://h/api/dev/tasks/{task_id}/fail", "task-4"), "http://h/api/dev/tasks/task-4/fail");
        assert_eq!(fill_template("/t/{task_id}", "a/b c"), "/t/a%2Fb%20c");
        assert!(retry_after_ok("1"));
        assert!(retry_after_ok("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert!(!retry_after_ok("soon"));
        assert!(!retry_after_ok(""));
    }
}
