//! The tabs shell: the browser's side of [`crate::core::tabs`], in the
//! package's tabs build (cargo feature `tabs`). It elects the leader with
//! Web Locks (`js/tab-lock.js`), carries the core's messages over a
//! `BroadcastChannel`, connects while leading, and holds back a follower's
//! submit until the leader's word. Every decision is the core's
//! (`docs/tabs.md`).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, Document, EventTarget, MessageEvent, VisibilityState};

use crate::api::{flush, new_request_id, now, on_sync, read_text, to_js, Inner, WidgetEvent};
use crate::core::tabs::{scope, TabCmd, TabConfig, Tabs};
use crate::core::{HoldEnd, Quota, SubmitError};
use crate::sync::{Sync, SyncEvent, SyncOptions};

/// This tab's place among the tabs that share a connection.
pub struct TabLink {
    core: Tabs,
    io: TabIo,
    doc: Document,
    /// How the leader connects.
    sync: SyncOptions,
    /// The core's commands still to carry out (outside the widget's borrow).
    cmds: Vec<TabCmd>,
    /// Page-level listeners: visibility, pagehide, pageshow.
    _page: [EventListener; 3],
    /// Submits waiting for the leader's word (`awaitGrant`), and words
    /// given before anyone asked: `null` to send, or why not.
    waiting: Vec<(String, Function)>,
    decided: Vec<(String, JsValue)>,
    /// Wakes the core at its next deadline (a leader settles, an ask or
    /// another tab's hold times out), sooner than the widget's 1 s tick.
    timer: Option<(i64, Timeout)>,
}

fn visible(doc: &Document) -> bool {
    doc.visibility_state() != VisibilityState::Hidden
}

impl TabLink {
    /// Begins this tab's submit `id`: the leader grants at once, a follower
    /// holds (R7) and asks.
    pub fn submit(&mut self, q: &mut Quota, id: String, t: i64) -> Result<(), SubmitError> {
        let cmds = self.core.submit(q, id, t)?;
        self.cmds.extend(cmds);
        Ok(())
    }

    /// Ends one of this tab's holds, here and in every tab.
    pub fn end_hold(&mut self, q: &mut Quota, id: &str, end: HoldEnd, reason: Option<String>, t: i64) {
        let cmds = self.core.end_hold(q, id, end, reason, t);
        self.cmds.extend(cmds);
    }

    /// Moves the clock, in place of `Quota::tick`.
    pub fn tick(&mut self, q: &mut Quota, t: i64) {
        let cmds = self.core.tick(q, t);
        self.cmds.extend(cmds);
    }

    /// What the leader's connection brought: applied here and relayed. Gives
    /// back what the widget itself must handle: an error to report.
    pub fn server(&mut self, q: &mut Quota, event: SyncEvent, t: i64) -> Option<SyncEvent> {
        let before = q.error().map(str::as_ptr);
        let cmds = match event {
            SyncEvent::State(body) => self.core.server_state(q, &body.as_string().unwrap_or_default(), t, &read_text),
            SyncEvent::Current => self.core.server_current(q, t),
            SyncEvent::Link(link) => self.core.server_link(q, link, t),
            error => return Some(error),
        };
        self.cmds.extend(cmds);
        new_error(q, before)
    }

    /// `done(null)` when the request of hold `id` may leave the browser,
    /// `done(reason)` when not; now, if the leader has spoken already.
    pub fn await_grant(&mut self, id: String, done: &Function) -> Option<JsValue> {
        match self.decided.iter().position(|(d, _)| *d == id) {
            Some(i) => Some(self.decided.remove(i).1),
            None => {
                self.waiting.push((id, done.clone()));
                None
            }
        }
    }

    /// The widget is destroyed: the others learn at once that this tab
    /// no longer leads, and submits still waiting are not sent.
    pub fn leave(&mut self, q: &mut Quota) {
        self.step_away(q);
        for (_, f) in self.waiting.drain(..) {
            let _ = f.call1(&JsValue::NULL, &JsValue::from("the quota widget was removed"));
        }
    }

    /// Says goodbye on the channel at once (the page may be going), then
    /// releases the lock and closes the channel, so that no dead or cached
    /// page leads.
    fn step_away(&mut self, q: &mut Quota) {
        for cmd in self.core.leave(q) {
            if let TabCmd::Post(msg) = cmd {
                self.io.post(&to_js(&msg));
            }
        }
        self.io.close();
    }
}

/// A new error the core recorded (a bad state or message: reported, never
/// shown as figures), as an event for the dashboard.
fn new_error(q: &Quota, before: Option<*const u8>) -> Option<SyncEvent> {
    q.error().filter(|e| Some(e.as_ptr()) != before).map(|e| SyncEvent::Error(e.to_owned()))
}

/// Joins the tabs of this endpoint and account: follows whoever leads and
/// queues to lead. False when the browser cannot (no Web Locks or no
/// BroadcastChannel): the widget then connects by itself.
pub fn start(rc: &Rc<RefCell<Inner>>, doc: &Document, sync: &SyncOptions, account: &str) -> bool {
    let (w1, w2) = (Rc::downgrade(rc), Rc::downgrade(rc));
    let Some(io) = TabIo::open(scope(&sync.endpoint, account), move |data| on_message(&w1, data), move || on_lead(&w2)) else {
        return false;
    };
    let on = |target: &EventTarget, name: &'static str| {
        let weak = Rc::downgrade(rc);
        EventListener::new(target, name, move |_| on_page(&weak, name))
    };
    let global: EventTarget = GLOBAL.with(|g| g.clone().unchecked_into());
    let page = [on(doc, "visibilitychange"), on(&global, "pagehide"), on(&global, "pageshow")];
    // A name unique in the browser: the time and 52 random bits.
    let mut core = Tabs::new(new_request_id(), TabConfig::default(), visible(doc));
    let mut inner = rc.borrow_mut();
    let cmds = core.start(&mut inner.quota);
    inner.tabs = Some(TabLink { core, io, doc: doc.clone(), sync: sync.clone(), cmds, _page: page, waiting: vec![], decided: vec![], timer: None });
    true
}

/// Carries out the core's commands, outside the borrow: an answer to a
/// waiting submit runs the dashboard's code.
pub fn run(rc: &Rc<RefCell<Inner>>) {
    loop {
        let answer = {
            let mut inner = rc.borrow_mut();
            let inner = &mut *inner;
            let Some(tl) = &mut inner.tabs else { return };
            if tl.cmds.is_empty() {
                return wake(rc, tl, &inner.quota);
            }
            let (id, word) = match tl.cmds.remove(0) {
                TabCmd::Post(msg) => {
                    tl.io.post(&to_js(&msg));
                    continue;
                }
                TabCmd::Send(hold) => (hold.id, JsValue::NULL),
                TabCmd::Cancel { id, reason } => (id, JsValue::from(reason)),
                TabCmd::Yield => {
                    // A visible tab waits to lead: this one steps back and
                    // queues again, behind it.
                    tl.io.release();
                    tl.io.queue();
                    inner.sync = None;
                    continue;
                }
            };
            match tl.waiting.iter().position(|(w, _)| *w == id) {
                Some(i) => Some((tl.waiting.remove(i).1, word)),
                None => {
                    // Nobody waits yet (a gate's hold, claimed later), or
                    // ever (a form posted natively): kept a short while.
                    if tl.decided.len() >= 16 {
                        tl.decided.remove(0);
                    }
                    tl.decided.push((id, word));
                    None
                }
            }
        };
        if let Some((f, word)) = answer {
            let _ = f.call1(&JsValue::NULL, &word);
        }
    }
}

/// Sets the timer for the core's next deadline, if it is sooner than the
/// one set.
fn wake(rc: &Rc<RefCell<Inner>>, tl: &mut TabLink, q: &Quota) {
    let Some(at) = tl.core.next_deadline(q) else { return };
    if tl.timer.as_ref().is_some_and(|(set, _)| *set <= at) {
        return;
    }
    let weak = Rc::downgrade(rc);
    // A deadline already past waits a little: a tick that did not clear it
    // must not spin.
    let ms = match at - now() {
        d if d < 0 => 250,
        d => d.min(60_000) as u32 + 1,
    };
    let timer = Timeout::new(ms, move || {
        let Some(rc) = weak.upgrade() else { return };
        if let Some(tl) = &mut rc.borrow_mut().tabs {
            tl.timer = None;
        }
        flush(&rc, vec![]);
    });
    tl.timer = Some((at, timer));
}

/// This tab took the leadership lock: it leads, and connects, resuming from
/// the revision it shows.
fn on_lead(weak: &Weak<RefCell<Inner>>) {
    let Some(rc) = weak.upgrade() else { return };
    let (doc, opts) = {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        let Some(tl) = &mut inner.tabs else { return };
        let cmds = tl.core.lead(&mut inner.quota, now());
        tl.cmds.extend(cmds);
        let mut opts = tl.sync.clone();
        opts.resume = tl.core.resume_from(&inner.quota);
        (tl.doc.clone(), opts)
    };
    // The snapshot that says so goes out before the connection's first word.
    flush(&rc, vec![]);
    let weak = Rc::downgrade(&rc);
    let sync = Sync::start(doc, opts, Rc::new(move |e| on_sync(&weak, e)));
    let mut inner = rc.borrow_mut();
    // Unless it stopped leading meanwhile (a subscriber may have destroyed
    // the widget while the first link went out).
    if inner.tabs.as_ref().is_some_and(|t| t.core.is_leader()) {
        inner.sync = Some(sync);
    }
}

/// A message from another tab.
fn on_message(weak: &Weak<RefCell<Inner>>, data: JsValue) {
    let Some(rc) = weak.upgrade() else { return };
    let error = {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        let Some(tl) = &mut inner.tabs else { return };
        let q = &mut inner.quota;
        let before = q.error().map(str::as_ptr);
        let cmds = tl.core.receive(q, &data, now(), &read_text, inner.viewer.fmt());
        tl.cmds.extend(cmds);
        new_error(q, before)
    };
    let events = match error {
        Some(SyncEvent::Error(message)) => vec![WidgetEvent::Error { message }],
        _ => vec![],
    };
    flush(&rc, events);
}

/// The page was shown or hidden, goes away (`pagehide`), or came back from
/// the back/forward cache (`pageshow`).
fn on_page(weak: &Weak<RefCell<Inner>>, event: &str) {
    let Some(rc) = weak.upgrade() else { return };
    {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        let Some(tl) = &mut inner.tabs else { return };
        let q = &mut inner.quota;
        let cmds = match event {
            "pagehide" => {
                tl.step_away(q);
                inner.sync = None;
                return;
            }
            "pageshow" if tl.io.reopen() => tl.core.start(q),
            "pageshow" => return,
            _ => tl.core.set_visible(q, visible(&tl.doc)),
        };
        tl.cmds.extend(cmds);
    }
    flush(&rc, vec![]);
}

#[wasm_bindgen(module = "/js/tab-lock.js")]
extern "C" {
    /// Queues for the lock `name`; `granted()` runs once this tab holds it.
    /// Gives back the function that releases it (or leaves the queue), or
    /// undefined without Web Locks or BroadcastChannel.
    #[wasm_bindgen(js_name = tabLock)]
    fn tab_lock(name: &str, granted: &JsValue) -> Option<Function>;
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis` (the window, for pagehide and pageshow), read directly
    /// rather than through `js_sys::global()`'s search of four candidates.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;
}

type OnMessage = Rc<dyn Fn(JsValue)>;

/// The lock and the channel of one scope (`core::tabs::scope`).
pub struct TabIo {
    name: String,
    channel: Option<(BroadcastChannel, EventListener)>,
    on_message: OnMessage,
    granted: Closure<dyn FnMut()>,
    release: Option<Function>,
}

impl TabIo {
    /// Opens the channel and queues for the lock; `None` when the browser
    /// has no Web Locks or no BroadcastChannel (the widget then connects by
    /// itself, as with tabs turned off).
    pub fn open(name: String, on_message: impl Fn(JsValue) + 'static, granted: impl FnMut() + 'static) -> Option<TabIo> {
        let mut io = TabIo {
            name,
            channel: None,
            on_message: Rc::new(on_message),
            granted: Closure::new(granted),
            release: None,
        };
        io.queue();
        io.release.as_ref()?;
        io.listen();
        io.channel.as_ref()?;
        Some(io)
    }

    fn listen(&mut self) {
        let Ok(channel) = BroadcastChannel::new(&self.name) else { return };
        let on_message = Rc::clone(&self.on_message);
        let listener = EventListener::new(&channel, "message", move |e| {
            on_message(e.dyn_ref::<MessageEvent>().map_or(JsValue::UNDEFINED, MessageEvent::data))
        });
        self.channel = Some((channel, listener));
    }

    /// Queues for the lock (again), unless already queued or holding it.
    pub fn queue(&mut self) {
        if self.release.is_none() {
            self.release = tab_lock(&self.name, self.granted.as_ref());
        }
    }

    /// Releases the lock, or leaves its queue.
    pub fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }

    pub fn post(&self, msg: &JsValue) {
        if let Some((channel, _)) = &self.channel {
            let _ = channel.post_message(msg);
        }
    }

    /// The page goes away (or into the back/forward cache): the lock is
    /// released and the channel closed, so that no dead tab leads.
    pub fn close(&mut self) {
        self.release();
        if let Some((channel, _)) = self.channel.take() {
            channel.close();
        }
    }

    /// The page came back from the back/forward cache: channel and queue
    /// again. False when it was not closed.
    pub fn reopen(&mut self) -> bool {
        if self.channel.is_some() {
            return false;
        }
        self.listen();
        self.queue();
        true
    }
}

impl Drop for TabIo {
    fn drop(&mut self) {
        self.close();
    }
}
