//! The HTTP side: requests to the backend with or without the test
//! account's credentials, and its event stream read in the background.
//!
//! Every error is a sentence for the report ("GET /api/state: connection
//! refused"): the checker's errors end up as the detail of a check line.

use std::time::{Duration, Instant};

use quota_widget::core::wire::{codes, ApiError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use reqwest::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sse;
use crate::state::snippet;
use crate::Credentials;

/// Sends of a request answered "rate limited" (1302) before the answer
/// stands, and the longest wait before one.
const RATE_LIMIT_RETRIES: u32 = 3;
const RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(5);

/// Which credentials a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// The test account's.
    Account,
    /// None at all.
    Without,
    /// A bearer token no account has.
    Unknown,
}

/// An answer read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as the wire's `ApiError`.
    pub fn api_error(&self) -> Result<ApiError, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the body is not an ApiError ({e}): {}", snippet(&self.body)))
    }

    /// How long to wait if this is a "rate limited" answer (429, code 1302).
    fn rate_limited(&self) -> Option<Duration> {
        if self.status != 429 || !self.api_error().is_ok_and(|e| e.code == codes::RATE_LIMITED) {
            return None;
        }
        let wait = self
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        Some(wait.min(RATE_LIMIT_MAX_WAIT))
    }

    /// Status and body, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.status, snippet(&self.body))
    }
}

/// The backend, as the test account sees it.
pub struct Api {
    client: reqwest::Client,
    base: String,
    credentials: Credentials,
    timeout: Duration,
    /// A token that names no account (for the auth check).
    unknown_token: String,
}

impl Api {
    pub fn new(base: &str, credentials: Credentials, timeout: Duration, tag: &str) -> Result<Api, String> {
        // No client-wide timeout: it would also cut the event stream, which
        // is meant to stay open. Each plain request gets `timeout` instead.
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("qw-conformance/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            timeout,
            unknown_token: format!("qw-conformance-no-such-account-{tag}"),
        })
    }

    /// The absolute URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn builder(&self, method: Method, url: &str, auth: Auth) -> reqwest::RequestBuilder {
        let b = self.client.request(method, url);
        match (auth, &self.credentials) {
            (Auth::Account, Credentials::Bearer(t)) => b.header(AUTHORIZATION, format!("Bearer {t}")),
            (Auth::Account, Credentials::Cookie(c)) => b.header(COOKIE, c.as_str()),
            (Auth::Unknown, _) => b.header(AUTHORIZATION, format!("Bearer {}", self.unknown_token)),
            (Auth::Without, _) => b,
        }
    }

    /// Sends a request and reads the whole answer. `url` is a path under the
    /// base URL, or an absolute URL (the --fail-url and --succeed-url).
    ///
    /// A backend may limit the rate of an account's requests (429 with code
    /// 1302): that is allowed by the contract and is not what any check is
    /// about, so the request is sent again after the `Retry-After` it named
    /// (a few times, a few seconds at most). 1303 is never retried here: the
    /// over-slots check provokes it on purpose.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        auth: Auth,
        headers: &[(&str, &str)],
        json_body: Option<Vec<u8>>,
    ) -> Result<Reply, String> {
        let mut tries = 0;
        loop {
            let reply = self.send_once(method.clone(), url, auth, headers, json_body.clone()).await?;
            tries += 1;
            match reply.rate_limited() {
                Some(wait) if tries <= RATE_LIMIT_RETRIES => tokio::time::sleep(wait).await,
                _ => return Ok(reply),
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        auth: Auth,
        headers: &[(&str, &str)],
        json_body: Option<Vec<u8>>,
    ) -> Result<Reply, String> {
        let full = if url.starts_with('/') { self.url(url) } else { url.to_owned() };
        let what = format!("{method} {url}");
        let mut b = self.builder(method, &full, auth).timeout(self.timeout);
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        if let Some(body) = json_body {
            b = b.header(CONTENT_TYPE, "application/json").body(body);
        }
        let res = b.send().await.map_err(|e| format!("{what}: {}", error_chain(&e)))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| format!("{what}: reading the body: {}", error_chain(&e)))?;
        Ok(Reply { status, headers, body: body.to_vec() })
    }

    /// Opens the event stream: the answer's head is awaited for at most the
    /// request timeout; events then arrive on the returned stream. A "rate
    /// limited" answer is retried as in [`Api::send`]. `last_event_id` is
    /// sent as the `Last-Event-ID` header, as `EventSource` does on its own
    /// reconnects.
    pub async fn events(&self, auth: Auth, last_event_id: Option<u64>) -> Result<Opened, String> {
        self.open_events(auth, "/api/events", last_event_id).await
    }

    /// Opens the event stream as a new `EventSource` resuming from
    /// `last_event_id` does (it cannot set headers):
    /// `GET /api/events?last_event_id=N`, no `Last-Event-ID` header.
    pub async fn events_by_query(&self, auth: Auth, last_event_id: u64) -> Result<Opened, String> {
        self.open_events(auth, &format!("/api/events?last_event_id={last_event_id}"), None).await
    }

    async fn open_events(&self, auth: Auth, path: &str, last_event_id: Option<u64>) -> Result<Opened, String> {
        let mut tries = 0;
        loop {
            let opened = self.events_once(auth, path, last_event_id).await?;
            tries += 1;
            match &opened {
                Opened::Refused(reply) if tries <= RATE_LIMIT_RETRIES => match reply.rate_limited() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Ok(opened),
                },
                _ => return Ok(opened),
            }
        }
    }

    async fn events_once(&self, auth: Auth, path: &str, last_event_id: Option<u64>) -> Result<Opened, String> {
        let mut b = self
            .builder(Method::GET, &self.url(path), auth)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_event_id {
            b = b.header(HeaderName::from_static("last-event-id"), HeaderValue::from(id));
        }
        let res = match tokio::time::timeout(self.timeout, b.send()).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return Err(format!("GET {path}: {}", error_chain(&e))),
            Err(_) => return Err(format!("GET {path}: no answer within {}", secs(self.timeout))),
        };
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        if status != 200 {
            // An error answer is short: read it for the message, bounded.
            let body = match tokio::time::timeout(self.timeout, res.bytes()).await {
                Ok(Ok(b)) => b.to_vec(),
                _ => Vec::new(),
            };
            return Ok(Opened::Refused(Reply { status, headers, body }));
        }
        Ok(Opened::Stream(EventStream::spawn(res, headers)))
    }
}

/// What opening the event stream gave.
pub enum Opened {
    Stream(EventStream),
    /// Anything but 200, read in full.
    Refused(Reply),
}

/// What the background reader saw.
#[derive(Debug)]
pub enum Item {
    Event { at: Instant, event: sse::Event },
    /// The stream ended (closed by the server, or an error).
    End { at: Instant, why: String },
}

/// An open event stream, read by a background task so that event times are
/// taken when the bytes arrive, not when a check gets round to them.
pub struct EventStream {
    pub opened: Instant,
    pub headers: HeaderMap,
    rx: mpsc::UnboundedReceiver<Item>,
    task: JoinHandle<()>,
}

impl EventStream {
    fn spawn(mut res: reqwest::Response, headers: HeaderMap) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut parser = sse::Parser::new();
            let why = loop {
                match res.chunk().await {
                    Ok(Some(bytes)) => {
                        let at = Instant::now();
                        for event in parser.feed(&bytes) {
                            if tx.send(Item::Event { at, event }).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break "the server closed the stream".to_owned(),
                    Err(e) => break format!("the stream failed: {}", error_chain(&e)),
                }
            };
            let _ = tx.send(Item::End { at: Instant::now(), why });
        });
        EventStream { opened: Instant::now(), headers, rx, task }
    }

    /// The next item, waiting until `deadline` at most; `None` on timeout or
    /// once the stream's end was handed out.
    pub async fn next_until(&mut self, deadline: Instant) -> Option<Item> {
        tokio::time::timeout_at(deadline.into(), self.rx.recv()).await.ok().flatten()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Closes the connection.
        self.task.abort();
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// "2.5 s".
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}
