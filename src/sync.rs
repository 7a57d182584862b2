//! The sync shell: carries out the commands of the pure
//! [`SyncMachine`](crate::core::link::SyncMachine) with the browser's
//! EventSource, fetch and timers, and feeds back what happened.
//!
//! Server-sent events come from `web_sys::EventSource` with gloo-events
//! listeners rather than gloo-net's EventSource stream: gloo-net 0.7 drops
//! the `error` events fired while the browser reconnects on its own
//! (readyState CONNECTING), so a dead server would show only as staleness.
//! Here every error closes the stream and the machine reconnects with its
//! own backoff, showing "Reconnecting" at once (R5).
//!
//! Fetches go through a one-function JS snippet (`js/fetch-state.js`)
//! that answers into one closure this shell owns for its whole life:
//! gloo-net with an async executor cost the package 4.4 kB gzipped, about
//! a third of the size budget's margin, for one GET.
//!
//! Authentication rides on the session cookie: nothing secret in a URL.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, EventSource, MessageEvent, VisibilityState};

use crate::core::link::{FetchResult, SyncCmd, SyncInput, SyncMachine};
use crate::core::Link;

/// What the sync layer tells the widget.
pub enum SyncEvent {
    /// A state body (JSON text, as a JavaScript string) to parse and apply.
    State(JsValue),
    /// The server confirmed the state shown is current (304, ping).
    Current,
    Link(Link),
    /// The server refused the state with this HTTP status (401: signed out).
    Refused(u16),
}

#[derive(Clone)]
pub struct SyncOptions {
    /// Base URL of the API, for example `/api`.
    pub endpoint: String,
    /// Poll interval when the event stream is unavailable.
    pub poll_ms: u32,
    /// Set false to poll only.
    pub use_events: bool,
    /// The revision already shown, if any: the first stream opened asks
    /// only for newer states (`?last_event_id=`, since an `EventSource`
    /// cannot send the `Last-Event-ID` header on a new connection).
    pub resume: Option<u64>,
}

type Sink = Rc<dyn Fn(SyncEvent)>;

#[wasm_bindgen(module = "/js/fetch-state.js")]
extern "C" {
    /// GETs `url` (with `If-None-Match: etag` when given) and calls
    /// `done(seq, status, etag, body)`; status 0 when there was no answer.
    #[wasm_bindgen(js_name = fetchState)]
    fn fetch_state(url: &str, etag: Option<String>, seq: u32, done: &JsValue);
}

/// What `done` receives: sequence number, HTTP status (0: no answer), the
/// answer's ETag, and its body (for a 200), left a JavaScript string.
type FetchDone = Closure<dyn FnMut(u32, u16, Option<String>, JsValue)>;

struct Stream {
    es: EventSource,
    _listeners: [EventListener; 4],
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Closing stops the browser's own reconnects; the machine does its own.
        self.es.close();
    }
}

struct Shell {
    machine: SyncMachine,
    endpoint: String,
    resume: Option<u64>,
    sink: Sink,
    fetched: Option<FetchDone>,
    stream: Option<Stream>,
    timer: Option<Timeout>,
    visibility: Option<EventListener>,
    stopped: bool,
}

/// A running sync. Dropping it closes the stream, cancels the timer and
/// removes every listener; answers to fetches still in flight are ignored.
pub struct Sync(Rc<RefCell<Shell>>);

impl Drop for Sync {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.try_borrow_mut() {
            s.stopped = true;
            s.fetched = None;
            s.stream = None;
            s.timer = None;
            s.visibility = None;
        }
    }
}

fn hidden(doc: &Document) -> bool {
    doc.visibility_state() == VisibilityState::Hidden
}

impl Sync {
    /// Starts syncing. Must not be called while the sink's target is
    /// borrowed: the first commands (the link state) reach it at once.
    pub fn start(doc: Document, opts: SyncOptions, sink: Sink) -> Sync {
        let rc = Rc::new(RefCell::new(Shell {
            machine: SyncMachine::new(opts.use_events, opts.poll_ms),
            endpoint: opts.endpoint,
            resume: opts.resume,
            sink,
            fetched: None,
            stream: None,
            timer: None,
            visibility: None,
            stopped: false,
        }));
        let weak = Rc::downgrade(&rc);
        let done: FetchDone = Closure::new(move |seq, status, etag, body| {
            feed(&weak, SyncInput::Fetched { seq, result: fetch_result(status, etag, body) })
        });
        rc.borrow_mut().fetched = Some(done);
        let weak = Rc::downgrade(&rc);
        let d = doc.clone();
        let listener = EventListener::new(&doc, "visibilitychange", move |_| feed(&weak, SyncInput::Visible(!hidden(&d))));
        rc.borrow_mut().visibility = Some(listener);
        let cmds = rc.borrow_mut().machine.start(hidden(&doc));
        run(&rc, cmds);
        Sync(rc)
    }
}

fn feed(weak: &Weak<RefCell<Shell>>, input: SyncInput<JsValue>) {
    let Some(rc) = weak.upgrade() else { return };
    let cmds = {
        let mut s = rc.borrow_mut();
        if s.stopped {
            return;
        }
        s.machine.handle(input, js_sys::Math::random())
    };
    run(&rc, cmds);
}

/// Carries out commands one by one, never holding the borrow while the
/// sink runs (a subscriber may destroy the widget, and with it this shell).
fn run(rc: &Rc<RefCell<Shell>>, cmds: Vec<SyncCmd<JsValue>>) {
    let mut then = Vec::new();
    for cmd in cmds {
        if rc.borrow().stopped {
            return;
        }
        let weak = Rc::downgrade(rc);
        match cmd {
            SyncCmd::Fetch { seq, etag } => {
                let s = rc.borrow();
                if let Some(done) = &s.fetched {
                    fetch_state(&format!("{}/state", s.endpoint), etag, seq, done.as_ref());
                }
            }
            SyncCmd::OpenStream => {
                let url = {
                    let mut s = rc.borrow_mut();
                    match s.resume.take() {
                        // Only a tab that takes the lead resumes.
                        Some(r) => format!("{}/events?last_event_id={r}", s.endpoint),
                        _ => format!("{}/events", s.endpoint),
                    }
                };
                match open_stream(&url, weak) {
                    Some(stream) => rc.borrow_mut().stream = Some(stream),
                    None => then.push(SyncInput::StreamFailed),
                }
            }
            SyncCmd::CloseStream => drop(rc.borrow_mut().stream.take()),
            SyncCmd::SetTimer(ms) => {
                let timer = Timeout::new(ms, move || feed(&weak, SyncInput::Timer));
                rc.borrow_mut().timer = Some(timer);
            }
            SyncCmd::ClearTimer => drop(rc.borrow_mut().timer.take()),
            SyncCmd::State(body) => tell(rc, SyncEvent::State(body)),
            SyncCmd::Current => tell(rc, SyncEvent::Current),
            SyncCmd::Link(link) => tell(rc, SyncEvent::Link(link)),
            SyncCmd::Refused(status) => tell(rc, SyncEvent::Refused(status)),
        }
    }
    for input in then {
        feed(&Rc::downgrade(rc), input);
    }
}

fn tell(rc: &Rc<RefCell<Shell>>, event: SyncEvent) {
    let sink = rc.borrow().sink.clone();
    sink(event);
}

/// A message's data, left a JavaScript string for `JSON.parse`.
fn data(e: &web_sys::Event) -> JsValue {
    e.dyn_ref::<MessageEvent>().map_or(JsValue::UNDEFINED, MessageEvent::data)
}

fn open_stream(url: &str, weak: Weak<RefCell<Shell>>) -> Option<Stream> {
    let es = EventSource::new(url).ok()?;
    let on = |name: &'static str, input: fn(&web_sys::Event) -> SyncInput<JsValue>| {
        let weak = weak.clone();
        EventListener::new(&es, name, move |e| feed(&weak, input(e)))
    };
    let listeners = [
        on("open", |_| SyncInput::StreamOpened),
        on("state", |e| SyncInput::StreamState(data(e))),
        on("ping", |_| SyncInput::StreamPing),
        on("error", |_| SyncInput::StreamFailed),
    ];
    Some(Stream { es, _listeners: listeners })
}

fn fetch_result(status: u16, etag: Option<String>, body: JsValue) -> FetchResult<JsValue> {
    match status {
        304 => FetchResult::NotModified,
        200 => FetchResult::State { body, etag },
        0 | 500.. => FetchResult::Unreachable,
        s => FetchResult::Refused(s),
    }
}
