//! The sync layer: turns the network into core inputs.
//!
//! Server-sent events (`{endpoint}/events`) carry states and pings; a fetch
//! of `{endpoint}/state` with `If-None-Match` resyncs after every (re)connect
//! and is the polling fallback where the stream is unavailable. Reconnects
//! back off exponentially with jitter. While the tab is hidden the link is
//! paused; it resyncs when the tab shows again. Authentication rides on the
//! session cookie: nothing secret goes into a URL.
//!
//! gloo-net's EventSource stream ignores the `error` events fired while the
//! browser reconnects on its own, so a dead server would only show as
//! staleness. This layer listens to `web_sys::EventSource` through
//! gloo-events instead, and reconnects itself.

use std::rc::Rc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::future::{abortable, AbortHandle};
use futures::{select_biased as select, FutureExt, StreamExt};
use gloo_events::EventListener;
use gloo_net::http::Request;
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::JsCast;
use web_sys::{Document, EventSource, MessageEvent, VisibilityState};

use crate::core::backoff::backoff_ms;
use crate::core::Link;

/// What the sync layer tells the widget.
pub enum SyncEvent {
    /// A state body (JSON text) to parse and apply.
    State(String),
    /// The server confirmed the state shown is current (304, ping).
    Current,
    Link(Link),
    /// Something the user should know that is not a link state (HTTP 401).
    Error(String),
}

#[derive(Clone)]
pub struct SyncOptions {
    /// Base URL of the API, for example `/api`.
    pub endpoint: String,
    /// Poll interval when the event stream is unavailable.
    pub poll_ms: u32,
    /// Set false to poll only.
    pub use_events: bool,
}

/// A running sync loop. Dropping it stops the loop, closes the stream and
/// removes its listeners.
pub struct Sync {
    abort: AbortHandle,
    _visibility: EventListener,
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

type Sink = Rc<dyn Fn(SyncEvent)>;

fn hidden(doc: &Document) -> bool {
    doc.visibility_state() == VisibilityState::Hidden
}

impl Sync {
    pub fn start(doc: Document, opts: SyncOptions, sink: Sink) -> Sync {
        let (tx, rx) = unbounded::<bool>();
        let d = doc.clone();
        let visibility = EventListener::new(&doc, "visibilitychange", move |_| {
            let _ = tx.unbounded_send(!hidden(&d));
        });
        let (task, abort) = abortable(run(doc, opts, sink, rx));
        wasm_bindgen_futures::spawn_local(async move {
            let _ = task.await;
        });
        Sync { abort, _visibility: visibility }
    }
}

enum End {
    /// The tab was hidden: pause, then resync.
    Hidden,
    /// The connection failed; `delivered` says whether it ever carried data.
    Lost { delivered: bool },
    Stopped,
}

async fn run(doc: Document, opts: SyncOptions, sink: Sink, mut visible: UnboundedReceiver<bool>) {
    let mut attempt: u32 = 0;
    let mut etag: Option<String> = None;
    // Streams that fail before delivering anything, in a row: after three,
    // the stream is taken as unavailable here and polling takes over.
    let mut dead_streams = 0;
    loop {
        if hidden(&doc) {
            sink(SyncEvent::Link(Link::Paused));
            while hidden(&doc) {
                if visible.next().await.is_none() {
                    return;
                }
            }
            attempt = 0;
        }
        sink(SyncEvent::Link(if attempt == 0 { Link::Connecting } else { Link::Reconnecting { attempt } }));
        match fetch_state(&opts.endpoint, &mut etag).await {
            Ok(body) => sink(body.map_or(SyncEvent::Current, SyncEvent::State)),
            Err(Fetch::Refused(msg)) => sink(SyncEvent::Error(msg)),
            Err(Fetch::Network) => {}
        }
        let end = if opts.use_events && dead_streams < 3 {
            stream(&opts, &sink, &mut visible).await
        } else {
            poll(&opts, &sink, &mut visible, &mut etag).await
        };
        match end {
            End::Stopped => return,
            End::Hidden => attempt = 0,
            End::Lost { delivered } => {
                dead_streams = if delivered { 0 } else { dead_streams + 1 };
                attempt = attempt.saturating_add(1);
                sink(SyncEvent::Link(Link::Reconnecting { attempt }));
                let wait = backoff_ms(attempt, js_sys::Math::random());
                // Becoming visible again cuts the wait short: resync now.
                select! {
                    _ = TimeoutFuture::new(wait).fuse() => {}
                    v = visible.next() => if v.is_none() { return },
                }
            }
        }
    }
}

enum Fetch {
    Network,
    Refused(String),
}

/// `Ok(None)`: not modified. `Ok(Some(body))`: a new state.
async fn fetch_state(endpoint: &str, etag: &mut Option<String>) -> Result<Option<String>, Fetch> {
    let mut req = Request::get(&format!("{endpoint}/state")).header("Accept", "application/json");
    if let Some(tag) = etag.as_deref() {
        req = req.header("If-None-Match", tag);
    }
    let resp = req.send().await.map_err(|_| Fetch::Network)?;
    match resp.status() {
        304 => Ok(None),
        200 => {
            *etag = resp.headers().get("etag");
            resp.text().await.map(Some).map_err(|_| Fetch::Network)
        }
        401 | 403 => Err(Fetch::Refused(format!(
            "the quota server did not accept this session (HTTP {}); sign in again",
            resp.status()
        ))),
        s if s >= 500 => Err(Fetch::Network),
        s => Err(Fetch::Refused(format!("the quota server answered HTTP {s} for the state"))),
    }
}

fn data(e: &web_sys::Event) -> String {
    e.dyn_ref::<MessageEvent>().and_then(|m| m.data().as_string()).unwrap_or_default()
}

enum Msg {
    Open,
    State(String),
    Ping,
    Error,
}

async fn stream(opts: &SyncOptions, sink: &Sink, visible: &mut UnboundedReceiver<bool>) -> End {
    let Ok(es) = EventSource::new(&format!("{}/events", opts.endpoint)) else {
        return End::Lost { delivered: false };
    };
    let (tx, mut rx) = unbounded::<Msg>();
    let on = |name: &'static str, f: fn(&web_sys::Event) -> Msg, tx: UnboundedSender<Msg>| {
        EventListener::new(&es, name, move |e| {
            let _ = tx.unbounded_send(f(e));
        })
    };
    let _listeners = [
        on("open", |_| Msg::Open, tx.clone()),
        on("state", |e| Msg::State(data(e)), tx.clone()),
        on("ping", |_| Msg::Ping, tx.clone()),
        on("error", |_| Msg::Error, tx),
    ];
    let mut delivered = false;
    let end = loop {
        select! {
            m = rx.next() => match m {
                Some(Msg::Open) => sink(SyncEvent::Link(Link::Live)),
                Some(Msg::State(body)) => {
                    delivered = true;
                    sink(SyncEvent::Link(Link::Live));
                    sink(SyncEvent::State(body));
                }
                Some(Msg::Ping) => {
                    delivered = true;
                    sink(SyncEvent::Link(Link::Live));
                    sink(SyncEvent::Current);
                }
                Some(Msg::Error) | None => break End::Lost { delivered },
            },
            v = visible.next() => match v {
                Some(false) => break End::Hidden,
                Some(true) => {}
                None => break End::Stopped,
            },
        }
    };
    // Closing stops the browser's own reconnects; this loop does its own.
    es.close();
    end
}

async fn poll(
    opts: &SyncOptions,
    sink: &Sink,
    visible: &mut UnboundedReceiver<bool>,
    etag: &mut Option<String>,
) -> End {
    loop {
        select! {
            _ = TimeoutFuture::new(opts.poll_ms).fuse() => {}
            v = visible.next() => match v {
                Some(false) => return End::Hidden,
                Some(true) => continue,
                None => return End::Stopped,
            },
        }
        match fetch_state(&opts.endpoint, etag).await {
            Ok(body) => {
                sink(SyncEvent::Link(Link::Live));
                sink(body.map_or(SyncEvent::Current, SyncEvent::State));
            }
            Err(Fetch::Refused(msg)) => sink(SyncEvent::Error(msg)),
            Err(Fetch::Network) => return End::Lost { delivered: true },
        }
    }
}
