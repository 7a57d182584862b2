//! The tabs shell: the browser's side of tabs sharing one connection. It
//! elects the leader with Web Locks (`js/tab-lock.js`), carries messages
//! over a `BroadcastChannel`, watches the page (shown, hidden, gone, back from the
//! back/forward cache) and keeps the timer of the next deadline. It decides
//! nothing: what happens reaches the widget as a [`TabEvent`], whose session
//! (`core::Session`) says what to do, and the widget hands the commands
//! back here (`docs/tabs.md`).

use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, Document, EventTarget, MessageEvent, VisibilityState};

use crate::core::tabs::TabCmd;
use crate::js::to_js;

/// The tabs' part of the session: the whole protocol.
pub type PeerPart = crate::core::tabs::Tabs;

pub use crate::tab_events::{Carried, TabEvent};

type Sink = Rc<dyn Fn(TabEvent)>;

/// This tab's place among the tabs that share a connection: the lock, the
/// channel, the page's listeners, the deadline's timer, and the submits
/// waiting for the leader's word.
pub struct TabLink {
    io: TabIo,
    sink: Sink,
    /// Page-level listeners: visibility, pagehide, pageshow.
    _page: [EventListener; 3],
    /// Submits waiting for the leader's word (`awaitGrant`), and words
    /// given before anyone asked: `null` to send, or why not.
    waiting: Vec<(String, Function)>,
    decided: Vec<(String, JsValue)>,
    /// Wakes the widget at its next deadline (a leader settles, an ask or
    /// another tab's hold times out), sooner than its 1 s tick.
    timer: Option<(i64, Timeout)>,
}

pub fn visible(doc: &Document) -> bool {
    doc.visibility_state() != VisibilityState::Hidden
}

impl TabLink {
    /// Opens the channel that the tabs of `endpoint` and `account` share
    /// (`core::tabs::scope` names it) and queues for its lock. `None` when
    /// the browser cannot (no Web Locks or no BroadcastChannel): the widget
    /// then connects by itself.
    pub fn open(doc: &Document, endpoint: &str, account: &str, sink: impl Fn(TabEvent) + 'static) -> Option<TabLink> {
        let sink: Sink = Rc::new(sink);
        let (s1, s2) = (Rc::clone(&sink), Rc::clone(&sink));
        let name = crate::core::tabs::scope(endpoint, account);
        let io = TabIo::open(name, move |data| s1(TabEvent::Message(data)), move || s2(TabEvent::Lead))?;
        let on = |target: &EventTarget, name: &'static str| {
            let sink = Rc::clone(&sink);
            let doc = doc.clone();
            EventListener::new(target, name, move |_| {
                sink(match name {
                    "pagehide" => TabEvent::Hide,
                    "pageshow" => TabEvent::PageShow,
                    _ => TabEvent::Visible(visible(&doc)),
                })
            })
        };
        let global: EventTarget = GLOBAL.with(|g| g.clone().unchecked_into());
        let page = [on(doc, "visibilitychange"), on(&global, "pagehide"), on(&global, "pageshow")];
        Some(TabLink { io, sink, _page: page, waiting: vec![], decided: vec![], timer: None })
    }

    /// Carries out one of the session's commands.
    pub fn carry(&mut self, cmd: TabCmd) -> Carried {
        let (id, word) = match cmd {
            TabCmd::Post(msg) => {
                self.io.post(&to_js(&msg));
                return Carried::Done;
            }
            TabCmd::Send(hold) => (hold.id, JsValue::NULL),
            TabCmd::Cancel { id, reason } => (id, JsValue::from(reason)),
            TabCmd::Yield => {
                // Releases the lock and queues again, behind the tab that
                // waits to lead.
                self.io.release();
                self.io.queue();
                return Carried::Yielded;
            }
        };
        match self.decide(id, word) {
            Some((f, word)) => Carried::Answer(f, word),
            None => Carried::Done,
        }
    }

    /// Posts what the session says on stepping away, at once: the page may
    /// be going.
    pub fn say_goodbye(&mut self, cmd: TabCmd) {
        if let TabCmd::Post(msg) = cmd {
            self.io.post(&to_js(&msg));
        }
    }

    /// The page goes away: the lock is released and the channel closed, so
    /// that no dead or cached page leads.
    pub fn close(&mut self) {
        self.io.close();
    }

    /// The page came back from the back/forward cache: channel and queue
    /// again. False when it was not closed (a first `pageshow`).
    pub fn reopen(&mut self) -> bool {
        self.io.reopen()
    }

    /// The word on submit `id`: `null` to send it, or why not. Gives back the
    /// function to call with it, if a submit waits for it (called outside
    /// the widget's borrow: it runs the dashboard's code); else it is kept a
    /// short while for the submit that claims it later.
    fn decide(&mut self, id: String, word: JsValue) -> Option<(Function, JsValue)> {
        match self.waiting.iter().position(|(w, _)| *w == id) {
            Some(i) => Some((self.waiting.remove(i).1, word)),
            None => {
                // Nobody waits yet (a gate's hold, claimed later), or ever
                // (a form posted natively).
                if self.decided.len() >= 16 {
                    self.decided.remove(0);
                }
                self.decided.push((id, word));
                None
            }
        }
    }

    /// `done(null)` when the request of hold `id` may leave the browser,
    /// `done(reason)` when not: now, if the word has come already.
    pub fn await_grant(&mut self, id: String, done: &Function) -> Option<JsValue> {
        match self.decided.iter().position(|(d, _)| *d == id) {
            Some(i) => Some(self.decided.remove(i).1),
            None => {
                self.waiting.push((id, done.clone()));
                None
            }
        }
    }

    /// Submits still waiting are not sent: the widget is gone.
    pub fn drop_waiting(&mut self) -> Vec<Function> {
        self.waiting.drain(..).map(|(_, f)| f).collect()
    }

    /// Sets the timer for deadline `at` (in `ms` from now), unless one is
    /// set for it or sooner.
    pub fn wake_at(&mut self, at: i64, ms: u32) {
        if self.timer.as_ref().is_some_and(|(set, _)| *set <= at) {
            return;
        }
        let sink = Rc::clone(&self.sink);
        self.timer = Some((at, Timeout::new(ms, move || sink(TabEvent::Wake))));
    }

    /// The timer fired.
    pub fn woke(&mut self) {
        self.timer = None;
    }
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
struct TabIo {
    name: String,
    channel: Option<(BroadcastChannel, EventListener)>,
    on_message: OnMessage,
    granted: Closure<dyn FnMut()>,
    release: Option<Function>,
}

impl TabIo {
    fn open(name: String, on_message: impl Fn(JsValue) + 'static, granted: impl FnMut() + 'static) -> Option<TabIo> {
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
    fn queue(&mut self) {
        if self.release.is_none() {
            self.release = tab_lock(&self.name, self.granted.as_ref());
        }
    }

    /// Releases the lock, or leaves its queue.
    fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }

    fn post(&self, msg: &JsValue) {
        if let Some((channel, _)) = &self.channel {
            let _ = channel.post_message(msg);
        }
    }

    fn close(&mut self) {
        self.release();
        if let Some((channel, _)) = self.channel.take() {
            channel.close();
        }
    }

    fn reopen(&mut self) -> bool {
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

/// This tab's part in the session, once its link is open: a follower
/// until it takes the lock, named `id`.
pub fn peers(_: &TabLink, id: String, visible: bool) -> PeerPart {
    PeerPart::new(id, crate::core::tabs::TabConfig::default(), visible)
}
