//! qw-conformance: checks that a quota backend keeps the contract the quota
//! widget relies on (`docs/wire.md`, `docs/api.md`), from the outside, over
//! HTTP, with a test account's credentials. `docs/conformance.md` is the
//! guide for backend developers.
//!
//! [`run`] takes a [`Config`] and returns a [`Report`] with one
//! [`CheckResult`] per [`Check`]; the `qw-conformance` binary prints it.
//! States are judged by the widget's own code (`quota_widget::core`): its
//! reader, its validation and its quota rules, so the checker accepts what
//! the widget accepts and expects what the widget expects.

pub mod api;
mod runner;
pub mod sse;
pub mod state;

use std::fmt;
use std::time::Duration;

/// How the checker authenticates as the test account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A `Cookie` header value sent as is, e.g. `qw_session=abc`.
    Cookie(String),
}

/// What to check and how long to wait.
#[derive(Clone, Debug)]
pub struct Config {
    /// The backend's base URL (`http://127.0.0.1:8787`); the API is under
    /// `/api/...` of it.
    pub base_url: String,
    pub credentials: Credentials,
    /// The kind of work to submit; `None`: the first pool of the state.
    pub kind: Option<String>,
    /// A URL with `{task_id}`, POSTed with the credentials to end a task as
    /// failed (the reference server's `/api/dev/tasks/{task_id}/fail`).
    pub fail_url: Option<String>,
    /// Likewise, to end a task as succeeded.
    pub succeed_url: Option<String>,
    /// Longest wait for one plain request.
    pub request_timeout: Duration,
    /// Longest wait for a change to show (on the stream, or in the state
    /// after an end URL answered).
    pub event_timeout: Duration,
    /// Longest silence allowed before the first ping and between pings.
    pub ping_timeout: Duration,
    /// Without an end URL: how long to wait for the checker's tasks to end
    /// by themselves.
    pub task_wait: Duration,
}

impl Config {
    /// A configuration with the default waits.
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Config {
        Config {
            base_url: base_url.into(),
            credentials,
            kind: None,
            fail_url: None,
            succeed_url: None,
            request_timeout: Duration::from_secs(10),
            event_timeout: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(15),
            task_wait: Duration::from_secs(30),
        }
    }

    /// Whether the configuration can be used at all.
    pub fn check(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!("the URL must start with http:// or https://, got {:?}", self.base_url));
        }
        for (flag, url) in [("--fail-url", &self.fail_url), ("--succeed-url", &self.succeed_url)] {
            if let Some(url) = url {
                if !url.contains("{task_id}") {
                    return Err(format!("{flag} must contain {{task_id}}, got {url:?}"));
                }
                if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/')) {
                    return Err(format!("{flag} must be an http(s) URL or a path, got {url:?}"));
                }
            }
        }
        match &self.credentials {
            Credentials::Bearer(t) if t.is_empty() => Err("the token is empty".into()),
            Credentials::Cookie(c) if c.is_empty() => Err("the cookie is empty".into()),
            _ => Ok(()),
        }
    }
}

/// The checks, in the order they are listed in the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// 401 with an ApiError 1000 without credentials; 200 with them.
    Auth,
    /// The state reads as the wire's ServerState and passes the widget's
    /// validation.
    StateShape,
    /// ETag = the revision; If-None-Match gives 304; a stale one 200.
    Etag,
    /// Revisions never go back, and every change has a new one.
    Revisions,
    /// The event stream: content type, the current state first, an id on
    /// every state, well-formed states and pings.
    Events,
    /// A change arrives on the stream as a new state event.
    EventsChange,
    /// Pings arrive within the ping timeout.
    EventsPing,
    /// A reconnect with Last-Event-ID gets only newer states.
    EventsResume,
    /// A new stream with `?last_event_id=N` gets only states newer than N,
    /// and the current state first when N is older.
    EventsResumeQuery,
    /// An accepted submit: 201 and a SubmitAccepted that matches the pool.
    Submit,
    /// A repeated client_request_id: 200, same answer, nothing more held.
    Idempotency,
    /// A malformed submit: 400 with code 1200, nothing changed.
    BadRequest,
    /// More units than available: 402 with code 1102, nothing charged or held.
    OverUnits,
    /// More slots than free: 429 with code 1303 and Retry-After, nothing
    /// charged or held.
    OverSlots,
    /// Optional: a request sent with `queue` while every slot is busy
    /// waits (201 with its place, units reserved, no slot), and a cancel
    /// releases it, charging nothing; a backend without the queue (1303)
    /// is skipped.
    Queue,
    /// A failed task charges nothing.
    Failure,
    /// A succeeded task is charged exactly once.
    Success,
}

impl Check {
    pub const ALL: [Check; 17] = [
        Check::Auth,
        Check::StateShape,
        Check::Etag,
        Check::Revisions,
        Check::Events,
        Check::EventsChange,
        Check::EventsPing,
        Check::EventsResume,
        Check::EventsResumeQuery,
        Check::Submit,
        Check::Idempotency,
        Check::BadRequest,
        Check::OverUnits,
        Check::OverSlots,
        Check::Queue,
        Check::Failure,
        Check::Success,
    ];

    /// The name printed on the check's line.
    pub fn name(self) -> &'static str {
        match self {
            Check::Auth => "auth",
            Check::StateShape => "state shape",
            Check::Etag => "etag",
            Check::Revisions => "revisions",
            Check::Events => "events",
            Check::EventsChange => "events change",
            Check::EventsPing => "events ping",
            Check::EventsResume => "events resume",
            Check::EventsResumeQuery => "events resume by query",
            Check::Submit => "submit",
            Check::Idempotency => "idempotency",
            Check::BadRequest => "bad request",
            Check::OverUnits => "over units",
            Check::OverSlots => "over slots",
            Check::Queue => "queue",
            Check::Failure => "failure",
            Check::Success => "success",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Could not run against this server (and does not fail the run).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub check: Check,
    pub status: Status,
    /// What the checker saw, on one line.
    pub detail: String,
}

/// `ok   state shape: 2 pools, ...` / `FAIL etag: ...`.
impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4} {}: {}", self.status.label(), self.check.name(), self.detail)
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One per check, in the order they were decided.
    pub results: Vec<CheckResult>,
    /// Remarks that are not checks (tasks left running, ...).
    pub notes: Vec<String>,
    /// Why the run could not be carried out at all (bad configuration).
    pub fatal: Option<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn get(&self, check: Check) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.check == check)
    }

    pub fn status(&self, check: Check) -> Option<Status> {
        self.get(check).map(|r| r.status)
    }

    pub fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    /// True when nothing failed (skips allowed) and the run was carried out.
    pub fn passed(&self) -> bool {
        self.fatal.is_none() && self.count(Status::Fail) == 0
    }

    /// 0: every check passed or was skipped; 1: a check failed; 2: the run
    /// could not be carried out (configuration).
    pub fn exit_code(&self) -> u8 {
        match (&self.fatal, self.passed()) {
            (Some(_), _) => 2,
            (None, true) => 0,
            (None, false) => 1,
        }
    }

    /// `13 ok, 1 FAIL, 1 skip in 5.2 s`.
    pub fn summary(&self) -> String {
        format!(
            "{} ok, {} FAIL, {} skip in {}",
            self.count(Status::Ok),
            self.count(Status::Fail),
            self.count(Status::Skip),
            api::secs(self.elapsed)
        )
    }
}

/// Runs every check against the backend.
pub async fn run(config: &Config) -> Report {
    run_with(config, |_| {}).await
}

/// Like [`run`], calling `on_result` with each result as soon as it is
/// decided (the binary prints them as they come: some checks wait).
pub async fn run_with(config: &Config, on_result: impl FnMut(&CheckResult)) -> Report {
    runner::run(config, on_result).await
}
