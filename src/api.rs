//! The wasm-bindgen surface: the only file that knows JavaScript types.
//! It wires the core, the DOM view and the sync layer together and owns
//! every listener and timer it makes; `destroy()` drops them all.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, Ordering};

use gloo_events::{EventListener, EventListenerOptions, EventListenerPhase};
use gloo_timers::callback::Interval;
use js_sys::Function;
use serde::Serialize;
use tsify::{Ts, Tsify};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlFormElement, HtmlInputElement};

use crate::core::parse::{read_repeat, read_state, Source, CHANGING};
use crate::core::wire::{ServerState, Units};
use crate::core::{settle, Config, Gate, Hold, HoldEnd, Memo, Msg, QuotaOptions, Table, Quota, Reply, SubmitError, ViewModel, Viewer};
use crate::dom::Dom;
use crate::intl::IntlFmt;
use crate::sync::{Sync, SyncEvent, SyncOptions};
use crate::core::{Body, Session};
use crate::js::to_js;
use crate::source::json_parse;
use crate::tabs::{Carried, PeerPart, TabEvent, TabLink};

/// Options for `new QuotaWidget(options)`: the elements and message tables
/// the shell takes as they are, and the plain options that the core reads
/// ([`QuotaOptions`]). The TypeScript declaration of the whole object.
#[derive(Tsify)]
#[serde(rename_all = "camelCase")]
pub struct WidgetOptions {
    /// The element, or a CSS selector for it, that the widget renders into.
    #[tsify(type = "HTMLElement | string")]
    pub host: JsValue,
    /// The dashboard's submit button, or a CSS selector for it. Default:
    /// none, and the widget only displays; `setButton` gates one later.
    #[tsify(optional, type = "HTMLElement | string | null")]
    pub button: JsValue,
    /// The form whose submit takes a hold. Default: the button's form.
    #[tsify(optional, type = "HTMLFormElement | string | null")]
    pub form: JsValue,
    /// Where the blocking reason is written, for example an element next
    /// to the button. Default: inside the widget.
    #[tsify(optional, type = "HTMLElement | string | null")]
    pub reason: JsValue,
    /// Texts replacing the built-in English ones: a language table
    /// (`quota-widget/locales/zh-CN`), the dashboard's own wording of any
    /// message by name, or a list of those, later ones winning. Every name,
    /// with its English text: the package's `messages.md`. Templates keep
    /// their `{placeholders}`. Default: the built-in English texts.
    #[tsify(optional, type = "MessageTable | Record<string, string> | Array<MessageTable | Record<string, string>>")]
    pub messages: JsValue,
    #[serde(flatten)]
    pub options: QuotaOptions,
}

/// The request a hold was taken for: send exactly this with the request.
#[derive(Tsify, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRequest {
    /// The client request id: send it as `client_request_id`.
    pub request_id: String,
    pub kind: String,
    pub count: u32,
    /// Send it as `queue`: true with the `queue` option, so that the
    /// server queues the request rather than refusing it when its slots
    /// are busy (it starts at once when they are free).
    pub queue: bool,
}

/// What the core made of a submit's answer (`settleSubmit`). `message` is
/// for people, in the page's language.
#[derive(Tsify, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settlement {
    pub outcome: crate::core::Verdict,
    /// Why it did not start, in words; absent when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub message: Option<String>,
    /// How long the server asked to wait; submit stays blocked until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub retry_after_ms: Option<i64>,
}

/// What subscribers receive, written by serde-wasm-bindgen and declared for
/// TypeScript by tsify from this one definition.
#[derive(Tsify, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum WidgetEvent {
    /// The view changed (figures, gate, freshness).
    Change { view: ViewModel },
    /// A state could not be used; the last good state is kept.
    Error { message: String },
    /// A submit took a hold: send `requestId` with the request.
    Hold { request_id: String, slots: u32, cost: Units },
    /// A message for the user, also given to the page's live region.
    Announce { message: String },
    /// The person asked to cancel a queued request (its row's cancel
    /// button): send `DELETE /api/generations/{taskId}`. The server's next
    /// state shows it cancelled, its units released, nothing charged.
    Cancel { task_id: String },
}

#[wasm_bindgen(typescript_custom_section)]
const TS_LISTENER: &'static str = r#"
/** Milliseconds since the Unix epoch, UTC. */
export type Millis = number;
/** A subscriber: receives every widget event. */
export type WidgetListener = (event: WidgetEvent) => void;
/** A language table: one text per message, in the order of messages.md. */
export type MessageTable = readonly string[];
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "WidgetListener")]
    pub type WidgetListener;
    #[wasm_bindgen(typescript_type = "ServerState | string")]
    pub type StateInput;
}

/// The button's own attributes before the widget took it over.
struct Saved {
    aria_disabled: Option<String>,
    described_by: Option<String>,
}

pub(crate) struct Inner {
    /// The quota and, with tabs sharing a connection, this tab's part:
    /// every rule's answer comes from here.
    session: Session<PeerPart>,
    /// Reads the states this widget takes.
    reader: Reader,
    pub(crate) viewer: Viewer<Memo<IntlFmt>>,
    dom: Dom,
    /// The gated button, with its own attributes from before.
    button: Option<(Element, Saved)>,
    form: Option<HtmlFormElement>,
    request_field: String,
    /// The gate's listeners, on the button and its form.
    listeners: Vec<EventListener>,
    ticker: Option<Interval>,
    /// Clicks on the attempt list's cancel buttons.
    cancel_click: Option<EventListener>,
    pub(crate) sync: Option<Sync>,
    subscribers: Vec<(u32, Function)>,
    next_subscriber: u32,
    last_request_id: Option<String>,
    /// The hold the gate took for a submit event, until `submit()` claims
    /// it: the dashboard's submit handler then sends that very request.
    gate_hold: Option<String>,
    /// With tabs sharing a connection: the lock, the channel and the page's
    /// listeners; the session's commands still to carry out; and how the
    /// tab connects when it leads.
    tabs: Option<TabLink>,
    lead_sync: Option<(Document, SyncOptions)>,
}


/// The quota display and submit gate. See the README for a walk-through.
#[wasm_bindgen]
pub struct QuotaWidget {
    inner: Option<Rc<RefCell<Inner>>>,
}

static NEXT_UID: AtomicU32 = AtomicU32::new(1);

#[wasm_bindgen]
extern "C" {
    /// `globalThis.document`: undefined outside a browser. Read directly, not
    /// through `web_sys::window()`, whose search for the global object (four
    /// candidates, each an import) the widget does not need.
    #[wasm_bindgen(thread_local_v2, js_namespace = globalThis, js_name = document)]
    static DOCUMENT: JsValue;
}

fn document() -> Result<Document, JsError> {
    DOCUMENT.with(|d| d.clone().dyn_into::<Document>().ok()).ok_or_else(|| JsError::new("quota-widget needs a browser document"))
}

/// An optional element: absent (`undefined`, `null`) is `None`.
fn resolve_opt(doc: &Document, what: &str, v: &JsValue) -> Result<Option<Element>, JsError> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    resolve(doc, what, v).map(Some)
}

fn resolve(doc: &Document, what: &str, v: &JsValue) -> Result<Element, JsError> {
    if let Some(sel) = v.as_string() {
        return doc
            .query_selector(&sel)
            .map_err(|_| JsError::new(&format!("quota-widget: \"{sel}\" is not a valid CSS selector for the {what}")))?
            .ok_or_else(|| JsError::new(&format!("quota-widget: no element matches \"{sel}\" for the {what}")));
    }
    v.dyn_ref::<Element>()
        .cloned()
        .ok_or_else(|| JsError::new(&format!("quota-widget: the {what} must be an element or a CSS selector")))
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(thread_local_v2, js_namespace = performance, js_name = timeOrigin)]
    static TIME_ORIGIN: f64;
}

/// The core's clock: wall-clock milliseconds that never go back. The
/// page's start in wall time plus a monotonic clock, so that setting the
/// system clock back (or an NTP step) cannot keep a hold alive or make a
/// stale state look fresh.
pub(crate) fn now() -> i64 {
    (TIME_ORIGIN.with(|t| *t) + performance_now()) as i64
}

#[wasm_bindgen(module = "/js/read.js")]
extern "C" {
    #[wasm_bindgen(js_name = cut)]
    fn cut_changing(text: &JsValue, a: &str, b: &str, last: &JsValue) -> JsValue;
}

/// Reads one widget's states with the core's reader. A state that comes
/// as JSON text (from the server, or relayed by a tab) and repeats the last
/// one read but for the members that change every time
/// (`parse::CHANGING`: its revision and time) is read by `read_repeat`
/// from those two numbers alone: `js/read.js` cuts them out of the text,
/// and the rest of the text is compared with the last one's as a string,
/// with no `JSON.parse`. An object the page pushes is always read in full:
/// the page may change it afterwards, and a copy to compare with
/// (`structuredClone`) cost an update whose figures move more than the
/// comparison saved.
#[derive(Default)]
pub(crate) struct Reader {
    /// The last state read from text: what `cut` keeps of its text (the
    /// text, cut), and the state as read. Nothing of it outlives the widget.
    last: RefCell<Option<(JsValue, ServerState)>>,
}

impl Reader {
    /// A state the page pushed as an object.
    fn value(&self, v: &JsValue) -> Result<ServerState, String> {
        read_state(v).map_err(|e| e.to_string())
    }

    /// A state as JSON text: a repeat of the last one is taken from its two
    /// numbers; any other is parsed by the browser (nothing but the widget
    /// holds the parsed value) and read in full.
    fn json(&self, text: &JsValue) -> Result<ServerState, String> {
        // The repeated state's two numbers (an object), or what to keep of
        // the text (an array, which `Source::is_object` is not).
        let cut = {
            let last = self.last.borrow();
            let cut = cut_changing(text, CHANGING[0], CHANGING[1], last.as_ref().map_or(&JsValue::UNDEFINED, |(key, _)| key));
            match &*last {
                Some((_, state)) if Source::is_object(&cut) => return read_repeat(&cut, state).map_err(|e| e.to_string()),
                _ => cut,
            }
        };
        let v = json_parse(text).map_err(|_| "malformed quota state: not valid JSON".to_owned())?;
        let state = self.value(&v)?;
        *self.last.borrow_mut() = js_sys::Array::is_array(&cut).then(|| (cut, state.clone()));
        Ok(state)
    }

    /// A state as JSON text in wasm memory (a state relayed by a tab).
    fn text(&self, text: &str) -> Result<ServerState, String> {
        self.json(&JsValue::from_str(text))
    }
}

/// Reads `new QuotaWidget(options)` with the core's reader
/// (`core::options`), which checks every plain option; the elements and
/// the message tables are taken as they are, for `resolve` and
/// `read_messages`. The `WidgetOptions` type above is the TypeScript
/// declaration of the same object; `tests/options.rs` keeps the two in step.
fn read_options(o: &JsValue) -> Result<WidgetOptions, JsError> {
    let plain = QuotaOptions::read(o).map_err(|e| JsError::new(&format!("quota-widget: {e}")))?;
    let get = |key: &'static str| o.get(key).unwrap_or(JsValue::UNDEFINED);
    Ok(WidgetOptions { host: get("host"), button: get("button"), form: get("form"), reason: get("reason"), messages: get("messages"), options: plain })
}

/// The `messages` option: a language table (an array with one text per
/// message, in the order of `messages.md`, such as
/// `quota-widget/locales/zh-CN`), texts by message name, or a list of
/// those, later ones winning. A name the widget does not have, a table of
/// the wrong length or a text that is not a string is a clear error, not a
/// text that silently stays English.
fn read_messages(v: &JsValue) -> Result<Table, JsError> {
    let mut texts = Table::default();
    add_messages(v, &mut texts, true)?;
    Ok(texts)
}

fn add_messages(v: &JsValue, texts: &mut Table, list: bool) -> Result<(), JsError> {
    if v.is_undefined() || v.is_null() {
        return Ok(());
    }
    let bad = || {
        JsError::new(
            "quota-widget: option \"messages\" must be a table with one text per message (see messages.md), texts by message name, or a list of those",
        )
    };
    if js_sys::Array::is_array(v) {
        let items: Vec<JsValue> = js_sys::Array::from(v).iter().collect();
        if items.iter().all(JsValue::is_string) {
            if items.len() != Msg::ALL.len() {
                return Err(bad());
            }
            texts.add_all(items.iter().map(|t| t.as_string().unwrap_or_default()).collect());
            return Ok(());
        }
        if !list {
            return Err(bad());
        }
        return items.iter().try_for_each(|t| add_messages(t, texts, false));
    }
    if !v.is_object() {
        return Err(bad());
    }
    for entry in js_sys::Object::entries(v.unchecked_ref()).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let key = entry.get(0).as_string().unwrap_or_default();
        let text = entry.get(1).as_string().ok_or_else(bad)?;
        texts.add(&key, text).map_err(|e| JsError::new(&format!("quota-widget: {e}")))?;
    }
    Ok(())
}

pub(crate) fn new_request_id() -> String {
    // Unique enough to correlate: the time plus 52 random bits.
    let r = (js_sys::Math::random() * 4_503_599_627_370_496.0) as u64;
    let mut id = String::from("qw-");
    push_hex(&mut id, now() as u64);
    id.push('-');
    push_hex(&mut id, r);
    id
}

/// `n` in lower-case hexadecimal. (By hand: `{:x}` would link the
/// formatter's hexadecimal code for this one id, about 100 bytes gzipped.)
fn push_hex(s: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        s.push(char::from(b"0123456789abcdef"[((n >> (4 * i)) & 15) as usize]));
    }
}

impl Inner {
    /// Gates the button: blocked, it stays focusable and announced, with
    /// `aria-disabled` and the reason tied to it (not the native `disabled`,
    /// which takes it out of the tab order); its clicks and its form's
    /// submits are stopped by the gate's listeners.
    /// The reason is also tied to an enabled button that will queue its
    /// request (`described`), which says so.
    fn apply_button(&self, enabled: bool, described: bool) {
        let Some((b, saved)) = &self.button else { return };
        let reason_id = self.dom.reason_id();
        if enabled {
            restore(b, "aria-disabled", &saved.aria_disabled);
        } else {
            let _ = b.set_attribute("aria-disabled", "true");
        }
        let mut ids = String::new();
        let own = saved.described_by.as_deref().unwrap_or("").split_whitespace().filter(|t| *t != reason_id);
        for t in own.chain(described.then_some(reason_id.as_str())) {
            if !ids.is_empty() {
                ids.push(' ');
            }
            ids.push_str(t);
        }
        let ids = ids.as_str();
        if ids.is_empty() {
            let _ = b.remove_attribute("aria-describedby");
        } else {
            let _ = b.set_attribute("aria-describedby", ids);
        }
    }

    /// Hands the button back with its own attributes.
    fn release_button(&mut self) {
        self.listeners.clear();
        if let Some((b, saved)) = self.button.take() {
            restore(&b, "aria-disabled", &saved.aria_disabled);
            restore(&b, "aria-describedby", &saved.described_by);
        }
    }

    /// Begins a submit of the current request; on success writes the id to
    /// the form's field of that name, if there is one.
    fn begin(&mut self) -> Result<Hold, SubmitError> {
        // With tabs, the leader decides: at once in the leader, by message
        // in a follower, which holds meanwhile (R7).
        let hold = self.session.submit(new_request_id(), now())?;
        if let Some(form) = &self.form {
            // By name through the form's controls: no selector built from
            // the option's text.
            if let Some(input) = form.elements().named_item(&self.request_field).and_then(|e| e.dyn_into::<HtmlInputElement>().ok()) {
                input.set_value(&hold.id);
            }
        }
        self.last_request_id = Some(hold.id.clone());
        Ok(hold)
    }

    /// Ends one of this tab's holds; with tabs, every tab learns of it.
    fn end_hold(&mut self, id: &str, end: HoldEnd, reason: Option<String>, t: i64) -> bool {
        self.session.end_hold(id, end, reason, t)
    }

    /// This tab steps away from the others (the page goes, or the widget):
    /// they learn at once, then the lock is released and the channel closed,
    /// so that no dead or cached page leads.
    fn step_away(&mut self) {
        self.session.leave();
        let Some(tl) = &mut self.tabs else { return };
        while let Some(cmd) = self.session.next_cmd() {
            tl.say_goodbye(cmd);
        }
        tl.close();
        self.sync = None;
    }

}

/// Sets attribute `name` back to `value`, or removes it.
fn restore(e: &Element, name: &str, value: &Option<String>) {
    let _ = match value {
        Some(v) => e.set_attribute(name, v),
        None => e.remove_attribute(name),
    };
}

impl HeldRequest {
    fn of(h: &Hold, queue: bool) -> Self {
        HeldRequest { request_id: h.id.clone(), kind: h.kind.clone(), count: h.count, queue }
    }
}

impl From<Hold> for WidgetEvent {
    fn from(h: Hold) -> Self {
        WidgetEvent::Hold { request_id: h.id, slots: h.slots, cost: h.cost }
    }
}

/// Takes over the gating of `button` and `form` (default: the button's
/// form), handing the previous button back. A blocked submit is stopped
/// before the dashboard's own handlers see it; an allowed one takes its
/// hold first (R7).
fn gate(rc: &Rc<RefCell<Inner>>, button: Option<Element>, form: Option<Element>) {
    let mut inner = rc.borrow_mut();
    inner.release_button();
    let Some(button) = button else {
        inner.form = None;
        return;
    };
    let form = form.or_else(|| button.closest("form").ok().flatten()).and_then(|f| f.dyn_into::<HtmlFormElement>().ok());
    let capture = EventListenerOptions { phase: EventListenerPhase::Capture, passive: false };
    // With a form, its submit takes the hold (a click, Enter in a field);
    // the button's click is only stopped while blocked, since the button
    // stays clickable for keyboards and screen readers.
    let form_gated = form.is_some();
    let weak = Rc::downgrade(rc);
    inner.listeners.push(EventListener::new_with_options(&button, "click", capture, move |e| {
        let Some(rc) = weak.upgrade() else { return };
        if form_gated {
            if rc.borrow().session.quota.blocked(now()).is_some() {
                e.prevent_default();
                e.stop_immediate_propagation();
                flush(&rc, vec![]);
            }
        } else {
            take_hold(&rc, e);
        }
    }));
    if let Some(f) = &form {
        let weak = Rc::downgrade(rc);
        inner.listeners.push(EventListener::new_with_options(f, "submit", capture, move |e| {
            if let Some(rc) = weak.upgrade() {
                take_hold(&rc, e);
            }
        }));
    }
    let saved = Saved {
        aria_disabled: button.get_attribute("aria-disabled"),
        described_by: button.get_attribute("aria-describedby"),
    };
    inner.button = Some((button, saved));
    inner.form = form;
    let gate = inner.session.quota.gate(now());
    inner.apply_button(gate.is_ok(), gate != Ok(Gate::Start));
}

/// The gate's decision for a click or submit event: a hold, or the event
/// stopped.
fn take_hold(rc: &Rc<RefCell<Inner>>, e: &web_sys::Event) {
    let result = rc.borrow_mut().begin();
    match result {
        Ok(hold) => {
            rc.borrow_mut().gate_hold = Some(hold.id.clone());
            flush(rc, vec![hold.into()])
        }
        Err(_) => {
            e.prevent_default();
            e.stop_immediate_propagation();
            flush(rc, vec![]);
        }
    }
}

/// Renders the current view and tells subscribers, outside the borrow so a
/// subscriber may call back into the widget.
pub(crate) fn flush(rc: &Rc<RefCell<Inner>>, mut events: Vec<WidgetEvent>) {
    let (subscribers, values): (Vec<Function>, Vec<JsValue>) = {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        let t = now();
        // With tabs, another tab's hold ends here without a word.
        inner.session.tick(t);
        let said = inner.session.quota.take_announcements(inner.viewer.fmt());
        for message in said {
            inner.dom.announce(&message);
            events.push(WidgetEvent::Announce { message });
        }
        // The page is written, and subscribers told, only when the view
        // changed: this runs every second for the freshness line.
        let vm = inner.viewer.view(&inner.session.quota, t);
        let last = inner.dom.last();
        if last != Some(&vm) {
            let described = !vm.reason.is_empty();
            if last.map(|l| (l.enabled, !l.reason.is_empty())) != Some((vm.enabled, described)) {
                inner.apply_button(vm.enabled, described);
            }
            if !inner.subscribers.is_empty() {
                events.push(WidgetEvent::Change { view: vm.clone() });
            }
            inner.dom.render(vm);
        }
        // Events become JavaScript values only when someone listens.
        if events.is_empty() || inner.subscribers.is_empty() {
            (vec![], vec![])
        } else {
            (inner.subscribers.iter().map(|(_, f)| f.clone()).collect(), events.iter().map(to_js).collect())
        }
    };
    run_tabs(rc);
    for value in values {
        for f in &subscribers {
            // A throwing subscriber must not stop the others or the widget.
            let _ = f.call1(&JsValue::NULL, &value);
        }
    }
}

/// A state body from the connection, as the session reads it.
struct JsBody<'a>(&'a JsValue, &'a Reader);

impl Body for JsBody<'_> {
    fn read(self) -> Result<ServerState, String> {
        self.1.json(self.0)
    }
    fn text(&self) -> String {
        self.0.as_string().unwrap_or_default()
    }
}

fn on_sync(weak: &Weak<RefCell<Inner>>, event: SyncEvent) {
    let Some(rc) = weak.upgrade() else { return };
    let mut events = vec![];
    {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        // With tabs, the leading tab's session also relays what it takes.
        let s = &mut inner.session;
        let r = &inner.reader;
        match event {
            SyncEvent::State(body) => {
                if let Err(message) = s.server_state(JsBody(&body, r), now(), &|t| r.text(t)) {
                    events.push(WidgetEvent::Error { message });
                }
            }
            SyncEvent::Current => s.server_current(now()),
            SyncEvent::Link(link) => s.server_link(link, now()),
            SyncEvent::Refused(status) => {
                let message = s.server_refused(status, inner.viewer.fmt());
                events.push(WidgetEvent::Error { message });
            }
        }
    }
    flush(&rc, events);
}

/// Joins the tabs of this endpoint and account: follows whoever leads and
/// queues to lead. False when the browser cannot (no Web Locks or no
/// BroadcastChannel): the widget then connects by itself.
fn join_tabs(rc: &Rc<RefCell<Inner>>, doc: &Document, opts: &SyncOptions, account: &str) -> bool {
    let weak = Rc::downgrade(rc);
    let Some(link) = TabLink::open(doc, &opts.endpoint, account, move |e| on_tab(&weak, e)) else {
        return false;
    };
    // A name unique in the browser: the time and 52 random bits.
    let mut peers = crate::tabs::peers(&link, new_request_id(), crate::tabs::visible(doc));
    let mut inner = rc.borrow_mut();
    peers.word(inner.viewer.fmt());
    inner.session.join(peers);
    inner.tabs = Some(link);
    inner.lead_sync = Some((doc.clone(), opts.clone()));
    true
}

/// What happened among the tabs, taken by the session.
fn on_tab(weak: &Weak<RefCell<Inner>>, event: TabEvent) {
    let Some(rc) = weak.upgrade() else { return };
    if let TabEvent::Lead = event {
        return lead(&rc);
    }
    let mut events = vec![];
    {
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        let Some(tl) = &mut inner.tabs else { return };
        let s = &mut inner.session;
        let r = &inner.reader;
        match event {
            TabEvent::Message(data) => {
                if let Err(message) = s.receive(&data, now(), &|t| r.text(t), inner.viewer.fmt()) {
                    events.push(WidgetEvent::Error { message });
                }
            }
            TabEvent::Lead => {}
            TabEvent::Visible(visible) => s.set_visible(visible),
            TabEvent::Hide => return inner.step_away(),
            TabEvent::PageShow if tl.reopen() => s.rejoin(),
            TabEvent::PageShow => return,
            TabEvent::Wake => tl.woke(),
        }
    }
    flush(&rc, events);
}

/// This tab took the leadership lock: it leads, and connects, resuming from
/// the revision it shows.
fn lead(rc: &Rc<RefCell<Inner>>) {
    let (doc, opts) = {
        let mut inner = rc.borrow_mut();
        inner.session.lead(now());
        let Some((doc, mut opts)) = inner.lead_sync.clone() else { return };
        opts.resume = inner.session.resume_from();
        (doc, opts)
    };
    // The snapshot that says so goes out before the connection's first word.
    flush(rc, vec![]);
    let weak = Rc::downgrade(rc);
    let sync = Sync::start(doc, opts, Rc::new(move |e| on_sync(&weak, e)));
    let mut inner = rc.borrow_mut();
    // Unless it stopped leading meanwhile (a subscriber may have destroyed
    // the widget while the first link went out).
    if inner.session.leads() {
        inner.sync = Some(sync);
    }
}

/// Carries out the session's commands for the tabs, outside the borrow: an
/// answer to a waiting submit runs the dashboard's code.
fn run_tabs(rc: &Rc<RefCell<Inner>>) {
    loop {
        let answer = {
            let mut inner = rc.borrow_mut();
            let inner = &mut *inner;
            let Some(tl) = &mut inner.tabs else { return };
            let Some(cmd) = inner.session.next_cmd() else {
                // Wake at the session's next deadline; a deadline already
                // past waits a little, so that a tick that did not clear it
                // cannot spin.
                if let Some(at) = inner.session.next_deadline() {
                    let ms = match at - now() {
                        d if d < 0 => 250,
                        d => d.min(60_000) as u32 + 1,
                    };
                    tl.wake_at(at, ms);
                }
                return;
            };
            match tl.carry(cmd) {
                Carried::Done => None,
                Carried::Answer(f, word) => Some((f, word)),
                Carried::Yielded => {
                    // A visible tab waits to lead: this one stepped back.
                    inner.sync = None;
                    None
                }
            }
        };
        if let Some((f, word)) = answer {
            let _ = f.call1(&JsValue::NULL, &word);
        }
    }
}

#[wasm_bindgen]
impl QuotaWidget {
    /// Mounts the widget into `options.host` and takes over the gating of
    /// `options.button`. Throws when an element cannot be found.
    #[wasm_bindgen(constructor)]
    pub fn new(options: Ts<WidgetOptions>) -> Result<QuotaWidget, JsError> {
        let WidgetOptions { host, button, form, reason, messages, options } = read_options(&options.js_value())?;
        let doc = document()?;
        let host = resolve(&doc, "host", &host)?;
        let button = resolve_opt(&doc, "button", &button)?;
        let form = resolve_opt(&doc, "form", &form)?;
        let reason_host = resolve_opt(&doc, "reason", &reason)?;

        let defaults = Config::default();
        let config = Config {
            stale_after_ms: options.stale_after_ms.map_or(defaults.stale_after_ms, i64::from),
            hold_timeout_ms: options.hold_timeout_ms.map_or(defaults.hold_timeout_ms, i64::from),
            expiring_soon_days: options.expiring_soon_days.unwrap_or(defaults.expiring_soon_days),
            low_units: options.low_units.map_or(defaults.low_units, |n| Units::whole(u64::from(n))),
            max_attempts: defaults.max_attempts,
        };
        let mut quota = Quota::new(config);
        quota.set_request(options.kind.as_deref().unwrap_or("image"), options.count.unwrap_or(1));
        quota.set_queue(options.queue == Some(true));

        let uid = format!("qw{}", NEXT_UID.fetch_add(1, Ordering::Relaxed));
        // The page's language when the dashboard names none.
        let lang = doc.document_element().and_then(|e| e.get_attribute("lang")).filter(|l| !l.is_empty());
        let fmt = Memo::new(IntlFmt::new(options.locale.or(lang).as_deref(), read_messages(&messages)?));
        let dom = Dom::new(doc.clone(), &host, reason_host.as_ref(), &uid, &fmt);
        let inner = Rc::new(RefCell::new(Inner {
            session: Session::new(quota),
            reader: Reader::default(),
            viewer: Viewer::new(fmt),
            dom,
            button: None,
            form: None,
            request_field: options.request_id_field.unwrap_or_else(|| "client_request_id".to_owned()),
            listeners: Vec::new(),
            ticker: None,
            cancel_click: None,
            sync: None,
            subscribers: Vec::new(),
            next_subscriber: 1,
            last_request_id: None,
            gate_hold: None,
            tabs: None,
            lead_sync: None,
        }));
        gate(&inner, button, form);

        let weak = Rc::downgrade(&inner);
        // Once a second: freshness text, staleness (R5) and hold timeouts.
        let ticker = Interval::new(1000, move || {
            if let Some(rc) = weak.upgrade() {
                flush(&rc, vec![]);
            }
        });
        inner.borrow_mut().ticker = Some(ticker);
        // One listener for every cancel button of the attempt list.
        let weak = Rc::downgrade(&inner);
        let list = inner.borrow().dom.attempt_list();
        let cancel_click = EventListener::new(&list, "click", move |e| {
            let target = e.target().and_then(|t| t.dyn_into::<Element>().ok());
            let task = target.and_then(|t| t.closest("button[data-task]").ok().flatten()).and_then(|b| b.get_attribute("data-task"));
            if let (Some(task_id), Some(rc)) = (task, weak.upgrade()) {
                flush(&rc, vec![WidgetEvent::Cancel { task_id }]);
            }
        });
        inner.borrow_mut().cancel_click = Some(cancel_click);
        if let Some(endpoint) = options.endpoint {
            let weak = Rc::downgrade(&inner);
            let opts = SyncOptions {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                poll_ms: options.poll_ms.unwrap_or(5000).max(250),
                use_events: options.events.unwrap_or(true),
                resume: None,
            };
            let shared = options.tabs != Some(false) && join_tabs(&inner, &doc, &opts, options.account.as_deref().unwrap_or(""));
            if !shared {
                // Not under a borrow: the first link state reaches on_sync at once.
                let sync = Sync::start(doc, opts, Rc::new(move |e| on_sync(&weak, e)));
                inner.borrow_mut().sync = Some(sync);
            }
        }
        flush(&inner, vec![]);
        Ok(QuotaWidget { inner: Some(inner) })
    }

    /// Gates another button (an element or a CSS selector; `null` for
    /// none), and the form whose submit takes a hold (default: the button's
    /// form). The previous button gets its own attributes back; holds and
    /// figures stay. For a button that a re-render replaced, or that did
    /// not exist yet when the widget was made.
    #[wasm_bindgen(js_name = setButton)]
    pub fn set_button(
        &self,
        #[wasm_bindgen(unchecked_param_type = "HTMLElement | string | null")] button: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "HTMLFormElement | string | null")] form: Option<JsValue>,
    ) -> Result<(), JsError> {
        let rc = self.rc()?;
        let doc = document()?;
        let button = resolve_opt(&doc, "button", &button)?;
        let form = resolve_opt(&doc, "form", &form.unwrap_or(JsValue::UNDEFINED))?;
        gate(rc, button, form);
        Ok(())
    }

    fn rc(&self) -> Result<&Rc<RefCell<Inner>>, JsError> {
        self.inner.as_ref().ok_or_else(|| JsError::new("quota-widget: this widget was destroyed"))
    }

    /// Gives the widget a state from the server, as an object or JSON text.
    /// A bad state throws, emits an `error` event, and leaves the last good
    /// state on screen. An older revision than the one shown is ignored.
    #[wasm_bindgen(js_name = pushState)]
    pub fn push_state(&self, state: StateInput) -> Result<(), JsError> {
        let rc = self.rc()?;
        let result = {
            let mut inner = rc.borrow_mut();
            let inner = &mut *inner;
            let r = &inner.reader;
            let parsed = if state.is_string() { r.json(&state) } else { r.value(&state) };
            inner.session.server_state(parsed, now(), &|t| r.text(t))
        };
        match result {
            Ok(()) => {
                flush(rc, vec![]);
                Ok(())
            }
            Err(message) => {
                flush(rc, vec![WidgetEvent::Error { message: message.clone() }]);
                Err(JsError::new(&message))
            }
        }
    }

    /// Sets the request being prepared: its kind of work and item count.
    #[wasm_bindgen(js_name = setRequest)]
    pub fn set_request(&self, kind: &str, count: u32) -> Result<(), JsError> {
        let rc = self.rc()?;
        rc.borrow_mut().session.quota.set_request(kind, count);
        flush(rc, vec![]);
        Ok(())
    }

    /// Turns the `queue` option on or off: whether a request whose slots
    /// are all busy may wait in the server's queue.
    #[wasm_bindgen(js_name = setQueue)]
    pub fn set_queue(&self, queue: bool) -> Result<(), JsError> {
        let rc = self.rc()?;
        rc.borrow_mut().session.quota.set_queue(queue);
        flush(rc, vec![]);
        Ok(())
    }

    /// Begins a submit for `submit()`: takes the hold and returns the
    /// request it is for (the hold the gate just took for a form's submit,
    /// if `submit()` runs in its handler). Throws, with the reason, when
    /// submit is blocked.
    #[wasm_bindgen(js_name = beginHold)]
    pub fn begin_hold(&self) -> Result<Ts<HeldRequest>, JsError> {
        let rc = self.rc()?;
        // Called from the submit handler of a gated form, the gate already
        // took the hold for this submit: that is the request to send.
        let claimed = {
            let mut inner = rc.borrow_mut();
            let id = inner.gate_hold.take();
            id.and_then(|id| inner.session.quota.holds().iter().find(|h| h.id == id).cloned())
        };
        let queue = rc.borrow().session.quota.queue();
        if let Some(h) = claimed {
            return Ok(Ts::new_unchecked(to_js(&HeldRequest::of(&h, queue))));
        }
        let hold = rc.borrow_mut().begin();
        match hold {
            Ok(hold) => {
                let request = HeldRequest::of(&hold, queue);
                flush(rc, vec![hold.into()]);
                Ok(Ts::new_unchecked(to_js(&request)))
            }
            Err(e) => {
                flush(rc, vec![]);
                Err(JsError::new(&e.message(rc.borrow().viewer.fmt())))
            }
        }
    }

    /// Ends the hold of `requestId` from what its request got back, for
    /// `submit()`: `status` 0 when no HTTP answer came (then `timedOutMs`
    /// says whether it was a timeout), else the status, its `Retry-After`,
    /// whether the body was JSON, and the body's error `code`. The
    /// meaning of each answer is the core's (`core::submit`).
    // Plumbing of `submit()` (js/widget.js), not part of the declared API.
    // Positional, not one object read by the core's reader: measured, the
    // object cost the package 195 bytes gzipped more.
    #[wasm_bindgen(js_name = settleSubmit, skip_typescript)]
    #[allow(clippy::too_many_arguments)]
    pub fn settle_submit(
        &self,
        request_id: &str,
        status: u16,
        timed_out_ms: Option<u32>,
        retry_after: Option<String>,
        json: bool,
        code: Option<u32>,
    ) -> Result<Ts<Settlement>, JsError> {
        let rc = self.rc()?;
        let outcome = {
            let mut inner = rc.borrow_mut();
            let inner = &mut *inner;
            let kind = match inner.session.quota.holds().iter().find(|h| h.id == request_id) {
                Some(h) => h.kind.clone(),
                None => inner.session.quota.request().0.to_owned(),
            };
            let reply = match (status, timed_out_ms) {
                (0, Some(ms)) => Reply::TimedOut { after_ms: i64::from(ms) },
                (0, None) => Reply::Threw,
                _ => Reply::Http { status, retry_after: retry_after.as_deref(), json, code },
            };
            let settled = settle(inner.viewer.fmt(), &kind, &reply);
            let t = now();
            if let Some(end) = settled.end {
                // The server's state may have ended it already: then this
                // changes nothing.
                inner.end_hold(request_id, end, settled.reason.clone(), t);
            }
            if let (Some(ms), Some(why)) = (settled.retry_after_ms, &settled.reason) {
                inner.session.quota.wait_until(t + ms, why.clone());
            }
            Settlement { outcome: settled.verdict, message: settled.reason, retry_after_ms: settled.retry_after_ms }
        };
        flush(rc, vec![]);
        Ok(Ts::new_unchecked(to_js(&outcome)))
    }

    /// Calls `done(null)` once the request of hold `requestId` may leave the
    /// browser, or `done(reason)` if it must not: with tabs sharing a
    /// connection, a follower's submit waits for the leader's grant.
    // Plumbing of `submit()` (js/widget.js), not part of the declared API.
    #[wasm_bindgen(js_name = awaitGrant, skip_typescript)]
    pub fn await_grant(&self, request_id: String, done: Function) -> Result<(), JsError> {
        let rc = self.rc()?;
        let word = {
            let mut inner = rc.borrow_mut();
            match &mut inner.tabs {
                None => Some(JsValue::NULL),
                Some(tl) => tl.await_grant(request_id, &done),
            }
        };
        if let Some(word) = word {
            let _ = done.call1(&JsValue::NULL, &word);
        }
        Ok(())
    }

    /// How long a hold waits for the server (the `holdTimeoutMs` option).
    #[wasm_bindgen(getter, js_name = holdTimeoutMs)]
    pub fn hold_timeout_ms(&self) -> u32 {
        self.inner.as_ref().map_or(0, |rc| rc.borrow().session.quota.config().hold_timeout_ms as u32)
    }

    /// The server refused the request: its hold ends, nothing is charged.
    #[wasm_bindgen(js_name = submitRefused)]
    pub fn submit_refused(&self, request_id: &str, reason: Option<String>) -> Result<bool, JsError> {
        self.end(request_id, HoldEnd::Refused, reason)
    }

    /// The request failed on the way (network, server error): its hold
    /// ends, nothing is charged.
    #[wasm_bindgen(js_name = submitFailed)]
    pub fn submit_failed(&self, request_id: &str, reason: Option<String>) -> Result<bool, JsError> {
        self.end(request_id, HoldEnd::Failed, reason)
    }

    fn end(&self, id: &str, end: HoldEnd, reason: Option<String>) -> Result<bool, JsError> {
        let rc = self.rc()?;
        let found = rc.borrow_mut().end_hold(id, end, reason, now());
        flush(rc, vec![]);
        Ok(found)
    }

    /// Calls `listener` with every widget event; returns an id for
    /// `unsubscribe`. (`subscribe` returns a function that unsubscribes.)
    #[wasm_bindgen(js_name = subscribeId)]
    pub fn subscribe_id(&self, listener: WidgetListener) -> Result<u32, JsError> {
        let rc = self.rc()?;
        let f: Function = listener.dyn_into().map_err(|_| JsError::new("quota-widget: subscribe needs a function"))?;
        let mut inner = rc.borrow_mut();
        let id = inner.next_subscriber;
        inner.next_subscriber += 1;
        inner.subscribers.push((id, f));
        Ok(id)
    }

    pub fn unsubscribe(&self, id: u32) -> bool {
        let Ok(rc) = self.rc() else { return false };
        let mut inner = rc.borrow_mut();
        let before = inner.subscribers.len();
        inner.subscribers.retain(|(i, _)| *i != id);
        inner.subscribers.len() != before
    }

    /// What the widget shows now, as a plain object.
    pub fn view(&self) -> Result<Ts<ViewModel>, JsError> {
        let rc = self.rc()?;
        let mut inner = rc.borrow_mut();
        let inner = &mut *inner;
        Ok(Ts::new_unchecked(to_js(&inner.viewer.view(&inner.session.quota, now()))))
    }

    /// The client request id of the most recent submit.
    #[wasm_bindgen(getter, js_name = lastRequestId)]
    pub fn last_request_id(&self) -> Option<String> {
        self.inner.as_ref()?.borrow().last_request_id.clone()
    }

    /// Removes the widget: its DOM, every listener and timer, the stream,
    /// and restores the button's own attributes. Safe to call twice.
    pub fn destroy(&mut self) {
        if let Some(rc) = self.inner.take() {
            let waiting = {
                let mut inner = rc.borrow_mut();
                let inner = &mut *inner;
                // The other tabs learn at once that this one no longer leads.
                inner.step_away();
                let waiting = inner.tabs.take().map(|mut tl| tl.drop_waiting()).unwrap_or_default();
                inner.sync = None;
                inner.ticker = None;
                inner.cancel_click = None;
                inner.subscribers.clear();
                inner.release_button();
                inner.dom.remove();
                waiting
            };
            // Submits still waiting for the leader's word are not sent.
            for f in waiting {
                let _ = f.call1(&JsValue::NULL, &JsValue::from("the quota widget was removed"));
            }
        }
    }
}

impl Drop for QuotaWidget {
    fn drop(&mut self) {
        self.destroy();
    }
}
