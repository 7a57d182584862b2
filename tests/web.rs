//! The widget in a real page, in headless Chromium: what a user sees and
//! what assistive technology reads. Run by `./scripts/test`.
#![cfg(target_arch = "wasm32")]

use quota_widget::QuotaWidget;
use tsify::Ts;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Document, Element};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r##"
let live = 0, timers = 0, patched = false;
export function track() {
  if (patched) return;
  patched = true;
  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  const keys = new WeakMap();
  EventTarget.prototype.addEventListener = function (type, fn, opts) {
    let set = keys.get(this); if (!set) { set = new Set(); keys.set(this, set); }
    const capture = typeof opts === "boolean" ? opts : !!(opts && opts.capture);
    const k = type + "|" + capture;
    let fns = set[k] || (set[k] = new Set());
    if (!fns.has(fn)) { fns.add(fn); live++; }
    return add.call(this, type, fn, opts);
  };
  EventTarget.prototype.removeEventListener = function (type, fn, opts) {
    const set = keys.get(this);
    const capture = typeof opts === "boolean" ? opts : !!(opts && opts.capture);
    const fns = set && set[type + "|" + capture];
    if (fns && fns.delete(fn)) live--;
    return remove.call(this, type, fn, opts);
  };
  const si = globalThis.setInterval, ci = globalThis.clearInterval;
  const ids = new Set();
  globalThis.setInterval = function (...a) { const id = si(...a); ids.add(id); timers = ids.size; return id; };
  globalThis.clearInterval = function (id) { ids.delete(id); timers = ids.size; return ci(id); };
}
export function liveListeners() { return live; }
export function liveIntervals() { return timers; }
export function page(html) {
  const root = document.getElementById("qw-test") || document.body.appendChild(Object.assign(document.createElement("div"), { id: "qw-test" }));
  root.innerHTML = html;
  return root;
}
export function submit(form) {
  const e = new Event("submit", { cancelable: true, bubbles: true });
  form.dispatchEvent(e);
  return !e.defaultPrevented;
}
export function options(extra) {
  return Object.assign({ host: "#host", button: "#go", locale: "en-US" }, extra || {});
}
"##)]
extern "C" {
    fn track();
    #[wasm_bindgen(js_name = liveListeners)]
    fn live_listeners() -> u32;
    #[wasm_bindgen(js_name = liveIntervals)]
    fn live_intervals() -> u32;
    fn page(html: &str) -> Element;
    fn submit(form: &Element) -> bool;
    fn options(extra: JsValue) -> JsValue;
}

const PAGE: &str = r#"<form id="f"><input type="hidden" name="client_request_id"><button id="go" type="submit" aria-describedby="hint">Generate</button><span id="hint">Press to generate</span></form><div id="host"></div>"#;

fn doc() -> Document {
    web_sys::window().unwrap().document().unwrap()
}

fn q(sel: &str) -> Element {
    doc().query_selector(sel).unwrap().unwrap_or_else(|| panic!("no element {sel}"))
}

fn text(sel: &str) -> String {
    q(sel).text_content().unwrap_or_default()
}

fn widget(extra: &str) -> QuotaWidget {
    page(PAGE);
    let extra = if extra.is_empty() { JsValue::UNDEFINED } else { js_sys::JSON::parse(extra).unwrap() };
    QuotaWidget::new(Ts::new_unchecked(options(extra))).unwrap()
}

/// A state as the server sends it: 4 image slots with `in_use` taken,
/// one package of 100 units with `remaining` left.
fn state(revision: u64, in_use: u32, remaining: u64, running: &str, finished: &str) -> String {
    let now = js_sys::Date::now() as i64;
    format!(
        r#"{{"revision":{revision},"server_time_ms":{now},
        "pools":[{{"kind":"image","limit":4,"in_use":{in_use},"unit_cost":2,"slot_rule":"per_item"}},
                 {{"kind":"video","limit":1,"in_use":0,"unit_cost":10,"slot_rule":"per_task"}}],
        "packages":[{{"id":"p1","name":"Starter","total":100,"remaining":{remaining},
                     "effective_at_ms":{eff},"expires_at_ms":{exp},"status":"active"}},
                    {{"id":"p2","name":"Pro","total":500,"remaining":0,
                     "effective_at_ms":{eff},"expires_at_ms":{exp2},"status":"exhausted"}}],
        "running":[{running}],"finished":[{finished}]}}"#,
        eff = now - 86_400_000,
        exp = now + 3 * 86_400_000,
        exp2 = now + 60 * 86_400_000,
    )
}

fn push(w: &QuotaWidget, json: &str) {
    w.push_state(JsValue::from_str(json).unchecked_into()).unwrap();
}

#[wasm_bindgen_test]
fn shows_units_meter_and_open_button() {
    let w = widget("");
    let button = q("#go");
    assert_eq!(button.get_attribute("aria-disabled").as_deref(), Some("true"), "no state yet: fail closed");
    assert!(!button.has_attribute("disabled"), "blocked, the button stays in the tab order");
    assert_eq!(text(".qw-reason"), "Waiting for the quota figures from the server.");
    assert_eq!(text(".qw-freshness"), "Waiting for the first figures…");
    assert!(q(".qw-error").has_attribute("hidden"), "no error before the first state");
    push(&w, &state(1, 1, 100, r#"{"id":"t0","kind":"image","slots":1,"reserved_units":2,"started_at_ms":1}"#, ""));
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    assert_eq!(text(".qw-units-detail"), "Running tasks hold 2 · 98 can be spent now");
    let meter = q(".qw-meter-bar");
    assert_eq!(meter.get_attribute("role").as_deref(), Some("meter"));
    assert_eq!(meter.get_attribute("aria-valuenow").as_deref(), Some("1"));
    assert_eq!(meter.get_attribute("aria-valuemin").as_deref(), Some("0"));
    assert_eq!(meter.get_attribute("aria-valuemax").as_deref(), Some("4"));
    let label_id = meter.get_attribute("aria-labelledby").unwrap();
    assert_eq!(q(&format!("#{label_id}")).text_content().unwrap(), "Image generation slots");
    assert_eq!(button.get_attribute("aria-disabled"), None);
    assert_eq!(button.get_attribute("aria-describedby").as_deref(), Some("hint"), "the page's own description stays");
    assert_eq!(text(".qw-cost"), "This request: 2 units · 2 per image · 96 left after");
    assert_eq!(text(".qw-freshness"), "Updated 0 s ago", "no revision in words");
    assert_eq!(q(".qw-freshness").get_attribute("data-revision").as_deref(), Some("1"));
    // The package expiring in 3 days is highlighted, with its date.
    let first = q(".qw-package");
    assert!(first.class_list().contains("qw-expiring"));
    assert!(first.text_content().unwrap().contains("expires soon"));
    assert!(q(".qw-live").get_attribute("aria-live").as_deref() == Some("polite"));
}

#[wasm_bindgen_test]
fn full_slots_disable_the_button_with_the_reason() {
    let w = widget(r#"{"count":2}"#);
    push(&w, &state(1, 3, 100, "", ""));
    let button = q("#go");
    assert_eq!(button.get_attribute("aria-disabled").as_deref(), Some("true"));
    let described = button.get_attribute("aria-describedby").unwrap();
    let ids: Vec<&str> = described.split(' ').collect();
    assert_eq!(ids[0], "hint");
    let reason = q(&format!("#{}", ids[1])).text_content().unwrap();
    assert_eq!(reason, "All image slots are busy: 1 of 4 free, this request needs 2.");
    assert!(q(".qw-meter").class_list().contains("qw-meter") && q(".qw").class_list().contains("qw-blocked"));
    w.set_request("image", 1).unwrap();
    assert_eq!(button.get_attribute("aria-disabled"), None);
    assert_eq!(button.get_attribute("aria-describedby").as_deref(), Some("hint"));
}

#[wasm_bindgen_test]
fn a_failed_generation_leaves_the_units_text_unchanged() {
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    let before = text(".qw-remaining");
    let form = q("#f");
    assert!(submit(&form), "an open gate lets the submit through");
    let id = w.last_request_id().unwrap();
    let field: web_sys::HtmlInputElement = q("input[name=client_request_id]").unchecked_into();
    assert_eq!(field.value(), id, "the request id reaches the form");
    assert_eq!(text(".qw-remaining"), before, "a hold never moves remaining");
    assert_eq!(text(".qw-units-detail"), "Running tasks hold 2 · 98 can be spent now");
    let running = format!(r#"{{"id":"t1","kind":"image","slots":1,"reserved_units":2,"client_request_id":"{id}","started_at_ms":1}}"#);
    push(&w, &state(2, 1, 100, &running, ""));
    assert_eq!(text(".qw-remaining"), before);
    let failed = format!(r#"{{"id":"t1","kind":"image","slots":1,"outcome":"failed","units_charged":0,"reason":"content moderation","client_request_id":"{id}","finished_at_ms":2}}"#);
    push(&w, &state(3, 0, 100, "", &failed));
    assert_eq!(text(".qw-remaining"), before);
    assert!(text(".qw-attempt").starts_with("Image ×1 · failed, not charged: content moderation · "), "{}", text(".qw-attempt"));
    assert_eq!(q(".qw-attempt").get_attribute("data-status").as_deref(), Some("failed"));
    assert_eq!(text(".qw-live"), "Generation failed. No units were charged.");
}

#[wasm_bindgen_test]
fn a_double_submit_cannot_pass_the_gate() {
    let w = widget(r#"{"count":3}"#);
    push(&w, &state(1, 0, 100, "", ""));
    let form = q("#f");
    assert!(submit(&form));
    assert!(!submit(&form), "the second submit is stopped: only 1 slot is free");
    assert_eq!(q("#go").get_attribute("aria-disabled").as_deref(), Some("true"));
    let id = w.last_request_id().unwrap();
    assert!(w.submit_refused(&id, Some("parallel task over resource pack limit".into())).unwrap());
    assert_eq!(q("#go").get_attribute("aria-disabled"), None, "a refusal releases the hold");
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    assert!(text(".qw-attempt").starts_with("Image ×3 · refused, not charged: parallel task over resource pack limit · "));
}

#[wasm_bindgen_test]
fn a_bad_state_is_an_error_and_the_last_good_state_stays() {
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    let err = w.push_state(JsValue::from_str("{not json").unchecked_into());
    assert!(err.is_err());
    let alert = q(".qw-error");
    assert_eq!(alert.get_attribute("role").as_deref(), Some("alert"));
    assert!(!alert.has_attribute("hidden"));
    assert_eq!(
        alert.text_content().unwrap(),
        "Could not use the latest quota update: malformed quota state: not valid JSON. Showing the last good figures."
    );
    let bad = state(2, 0, 100, "", "").replace(r#""remaining":100"#, r#""remaining":101"#);
    assert!(w.push_state(JsValue::from_str(&bad).unchecked_into()).is_err());
    assert!(alert.text_content().unwrap().contains("has 101 units remaining of a total of 100"));
    let wrong_type = state(2, 0, 100, "", "").replace(r#""revision":2"#, r#""revision":"two""#);
    assert!(w.push_state(JsValue::from_str(&wrong_type).unchecked_into()).is_err());
    assert!(alert.text_content().unwrap().contains("malformed quota state"));
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    assert_eq!(q(".qw-freshness").get_attribute("data-revision").as_deref(), Some("1"));
    push(&w, &state(2, 0, 90, "", ""));
    assert!(alert.has_attribute("hidden"), "a good state clears the error");
    assert_eq!(text(".qw-remaining"), "90 units remaining");
}

#[wasm_bindgen_test]
fn server_text_is_never_markup() {
    let w = widget("");
    let evil = state(1, 0, 100, "", "").replace("\"Starter\"", r#""<img src=x onerror=alert(1)>""#);
    push(&w, &evil);
    assert_eq!(text(".qw-package-name"), "<img src=x onerror=alert(1)>");
    assert!(doc().query_selector("#host img").unwrap().is_none());
}

#[wasm_bindgen(inline_js = r##"
export function watchWrites(root) {
  const observer = new MutationObserver(() => {});
  observer.observe(root, { subtree: true, childList: true, attributes: true, characterData: true });
  return observer;
}
export function writesSince(observer) { return observer.takeRecords().length; }
"##)]
extern "C" {
    #[wasm_bindgen(js_name = watchWrites)]
    fn watch_writes(root: &Element) -> JsValue;
    #[wasm_bindgen(js_name = writesSince)]
    fn writes_since(observer: &JsValue) -> u32;
}

#[wasm_bindgen_test]
fn a_repeated_state_writes_nothing_to_the_dom() {
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    // Every change to the widget's nodes, as the page sees it.
    let observer = watch_writes(&q("#host"));
    push(&w, &state(1, 0, 100, "", ""));
    assert_eq!(writes_since(&observer), 0, "a duplicate revision is a no-op on the page");
    push(&w, &state(2, 1, 100, "", ""));
    let delta = writes_since(&observer);
    assert!(delta > 0 && delta <= 8, "one slot taken made {delta} changes");
}

#[wasm_bindgen_test]
fn numbers_follow_the_locale() {
    page(PAGE);
    let opts = options(js_sys::JSON::parse(r#"{"locale":"de-DE"}"#).unwrap());
    let w = QuotaWidget::new(Ts::new_unchecked(opts)).unwrap();
    push(&w, &state(1, 0, 100, "", "").replace(r#""total":500,"remaining":0"#, r#""total":5000,"remaining":0"#));
    assert_eq!(text(".qw-package:nth-child(2) .qw-package-units"), "0 of 5.000 units");
}

#[wasm_bindgen_test]
fn destroy_removes_every_listener_timer_and_node() {
    track();
    let listeners = live_listeners();
    let intervals = live_intervals();
    let mut w = widget("");
    push(&w, &state(1, 4, 100, "", ""));
    assert!(live_listeners() > listeners);
    assert!(live_intervals() > intervals);
    assert_eq!(q("#go").get_attribute("aria-disabled").as_deref(), Some("true"));
    w.destroy();
    assert_eq!(live_listeners(), listeners, "listeners left behind");
    assert_eq!(live_intervals(), intervals, "timers left behind");
    assert!(doc().query_selector("#host .qw").unwrap().is_none());
    let button = q("#go");
    assert_eq!(button.get_attribute("aria-disabled"), None, "the button is handed back as it was");
    assert_eq!(button.get_attribute("aria-describedby").as_deref(), Some("hint"));
    assert!(w.push_state(JsValue::from_str("{}").unchecked_into()).is_err());
    assert!(submit(&q("#f")), "no gate after destroy");
}

#[wasm_bindgen_test]
fn bad_selectors_are_clear_errors() {
    page(PAGE);
    let opts = options(js_sys::JSON::parse(r##"{"button":"#nope"}"##).unwrap());
    let err = QuotaWidget::new(Ts::new_unchecked(opts)).err().expect("should fail");
    let msg: js_sys::Error = JsValue::from(err).unchecked_into();
    assert_eq!(String::from(msg.message()), "quota-widget: no element matches \"#nope\" for the button");
}

#[wasm_bindgen(inline_js = r##"
export function recorder() {
  const events = [];
  const f = (e) => events.push(e);
  f.events = events;
  return f;
}
export function recorded(f) { return f.events; }
export function get(o, path) { return path.split(".").reduce((v, k) => (v == null ? v : v[k]), o); }
"##)]
extern "C" {
    fn recorder() -> js_sys::Function;
    fn recorded(f: &js_sys::Function) -> js_sys::Array;
    fn get(o: &JsValue, path: &str) -> JsValue;
}

#[wasm_bindgen_test]
fn view_and_events_reach_javascript_in_their_declared_shape() {
    let w = widget(r#"{"count":2}"#);
    let f = recorder();
    w.subscribe_id(f.clone().unchecked_into()).unwrap();
    push(&w, &state(1, 0, 100, "", ""));
    let v: JsValue = w.view().unwrap().js_value();
    assert_eq!(get(&v, "enabled"), JsValue::TRUE);
    assert_eq!(get(&v, "blocked"), JsValue::NULL);
    assert_eq!(get(&v, "units.remainingText").as_string().unwrap(), "100 units remaining");
    assert_eq!(get(&v, "units.available").as_f64(), Some(100.0));
    assert_eq!(get(&v, "meters.0.inUse").as_f64(), Some(0.0));
    assert_eq!(get(&v, "packages.0.expiringSoon"), JsValue::TRUE);
    assert_eq!(get(&v, "packages.0.status").as_string().unwrap(), "active");
    assert_eq!(get(&v, "cost.leftAfter").as_f64(), Some(96.0));
    assert_eq!(get(&v, "revision").as_f64(), Some(1.0));
    assert_eq!(get(&v, "error"), JsValue::NULL);

    let form = q("#f");
    assert!(submit(&form));
    push(&w, &state(2, 4, 100, "", ""));
    let v: JsValue = w.view().unwrap().js_value();
    assert_eq!(get(&v, "blocked").as_string().unwrap(), "slots");
    let _ = w.push_state(JsValue::from_str("nope").unchecked_into());

    let events = recorded(&f);
    let types: Vec<String> = events.iter().map(|e| get(&e, "type").as_string().unwrap()).collect();
    assert!(types.contains(&"change".to_owned()), "{types:?}");
    let hold = events.iter().find(|e| get(e, "type").as_string().as_deref() == Some("hold")).unwrap();
    assert_eq!(get(&hold, "requestId").as_string(), w.last_request_id());
    assert_eq!(get(&hold, "slots").as_f64(), Some(2.0));
    assert_eq!(get(&hold, "cost").as_f64(), Some(4.0));
    let change = events.iter().find(|e| get(e, "type").as_string().as_deref() == Some("change")).unwrap();
    assert!(get(&change, "view.units").is_object());
    let error = events.iter().find(|e| get(e, "type").as_string().as_deref() == Some("error")).unwrap();
    assert_eq!(get(&error, "message").as_string().unwrap(), "malformed quota state: not valid JSON");
}

#[wasm_bindgen_test]
fn fractional_units_read_exactly_in_the_pages_locale() {
    let w = widget(r#"{"count":3}"#);
    // 0.1 + 0.2 reserved, 0.5 per image: decimals as the server writes them.
    let s = state(1, 0, 100, r#"{"id":"t1","kind":"image","slots":1,"reserved_units":0.1,"started_at_ms":1},{"id":"t2","kind":"image","slots":1,"reserved_units":0.2,"started_at_ms":1}"#, "")
        .replace(r#""total":100,"remaining":100"#, r#""total":12.5,"remaining":10.25"#)
        .replace(r#""unit_cost":2"#, r#""unit_cost":0.5"#);
    push(&w, &s);
    assert_eq!(text(".qw-remaining"), "10.25 units remaining");
    assert_eq!(text(".qw-units-detail"), "Running tasks hold 0.3 · 9.95 can be spent now");
    assert_eq!(text(".qw-cost"), "This request: 1.5 units · 0.5 per image · 8.45 left after");
    assert_eq!(text(".qw-package-units"), "10.25 of 12.5 units");

    page(PAGE);
    let opts = options(js_sys::JSON::parse(r#"{"locale":"de-DE","count":3}"#).unwrap());
    let w = QuotaWidget::new(Ts::new_unchecked(opts)).unwrap();
    push(&w, &s);
    assert_eq!(text(".qw-remaining"), "10,25 units remaining");
    assert_eq!(text(".qw-cost"), "This request: 1,5 units · 0,5 per image · 8,45 left after");

    // More than three decimals is refused, and the last good figures stay.
    let finer = s.replace(r#""remaining":10.25"#, r#""remaining":10.2501"#).replace(r#""revision":1"#, r#""revision":2"#);
    assert!(w.push_state(JsValue::from_str(&finer).unchecked_into()).is_err());
    assert!(text(".qw-error").contains("packages[0].remaining must be a number of units"));
    assert_eq!(text(".qw-remaining"), "10,25 units remaining");
}

#[wasm_bindgen(inline_js = r##"
export function clickCounts(button, form) {
  const seen = { clicks: 0, submits: 0 };
  button.addEventListener("click", () => seen.clicks++);
  form.addEventListener("submit", (e) => { e.preventDefault(); seen.submits++; });
  return seen;
}
export function field(o, k) { return o[k]; }
"##)]
extern "C" {
    #[wasm_bindgen(js_name = clickCounts)]
    fn click_counts(button: &Element, form: &Element) -> JsValue;
    fn field(o: &JsValue, k: &str) -> JsValue;
}

#[wasm_bindgen_test]
fn a_blocked_button_stays_focusable_and_its_clicks_go_nowhere() {
    let w = widget("");
    push(&w, &state(1, 4, 100, "", ""));
    let button: web_sys::HtmlElement = q("#go").unchecked_into();
    let seen = click_counts(&button, &q("#f"));
    button.click();
    assert_eq!(field(&seen, "clicks").as_f64(), Some(0.0), "the page's click handler never saw it");
    assert_eq!(field(&seen, "submits").as_f64(), Some(0.0), "nothing was submitted");
    button.focus().unwrap();
    assert_eq!(doc().active_element().map(|e| e.id()), Some("go".to_owned()), "still reachable by keyboard");
    push(&w, &state(2, 0, 100, "", ""));
    button.click();
    assert_eq!(field(&seen, "submits").as_f64(), Some(1.0), "an open gate lets it through");
}

#[wasm_bindgen_test]
fn set_button_moves_the_gate_and_hands_the_old_button_back() {
    let w = widget("");
    push(&w, &state(1, 4, 100, "", ""));
    assert_eq!(q("#go").get_attribute("aria-disabled").as_deref(), Some("true"));
    // A re-render replaces the button.
    let form = q("#f");
    let fresh = doc().create_element("button").unwrap();
    fresh.set_id("go2");
    form.append_child(&fresh).unwrap();
    w.set_button(fresh.clone().into(), None).unwrap();
    assert_eq!(q("#go").get_attribute("aria-disabled"), None, "the old button is handed back");
    assert_eq!(q("#go").get_attribute("aria-describedby").as_deref(), Some("hint"));
    assert_eq!(fresh.get_attribute("aria-disabled").as_deref(), Some("true"), "the new one is gated at once");
    assert!(!submit(&form), "its form's submit is gated");
    w.set_button(JsValue::NULL, None).unwrap();
    assert_eq!(fresh.get_attribute("aria-disabled"), None);
    assert!(submit(&form), "no button, no gate");
}

#[wasm_bindgen_test]
fn the_reason_can_sit_next_to_the_button() {
    page(r#"<form id="f"><button id="go">Generate</button><span id="why"></span></form><div id="host"></div>"#);
    let opts = options(js_sys::JSON::parse(r##"{"reason":"#why"}"##).unwrap());
    let mut w = QuotaWidget::new(Ts::new_unchecked(opts)).unwrap();
    push(&w, &state(1, 4, 100, "", ""));
    assert_eq!(text("#why .qw-reason"), "All image slots are busy: 0 of 4 free, this request needs 1.");
    let described = q("#go").get_attribute("aria-describedby").unwrap();
    assert_eq!(q(&format!("#{described}")).text_content().unwrap(), text("#why .qw-reason"));
    assert!(doc().query_selector("#host .qw-reason").unwrap().is_none(), "not also inside the widget");
    w.destroy();
    assert!(doc().query_selector("#why .qw-reason").unwrap().is_none(), "destroy removes it too");
}

#[wasm_bindgen_test]
fn a_refusal_with_retry_after_blocks_with_its_reason_until_then() {
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    let id = String::from(field(&JsValue::from(w.begin_hold().unwrap()), "requestId").as_string().unwrap());
    let settled: JsValue = w.settle_submit(&id, 429, None, Some("2".into()), true, Some(1303)).unwrap().into();
    assert_eq!(field(&settled, "outcome").as_string().as_deref(), Some("refused"));
    assert_eq!(field(&settled, "message").as_string().as_deref(), Some("all image slots are busy"));
    assert_eq!(field(&settled, "retryAfterMs").as_f64(), Some(2000.0));
    assert_eq!(text(".qw-reason"), "Try again in 2 s: all image slots are busy.");
    assert_eq!(q("#go").get_attribute("aria-disabled").as_deref(), Some("true"));
    assert!(text(".qw-attempt").starts_with("Image ×1 · refused, not charged: all image slots are busy · "));
    // A proxy's HTML 502: a failure with its true reason, at once.
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    let id = String::from(field(&JsValue::from(w.begin_hold().unwrap()), "requestId").as_string().unwrap());
    let settled: JsValue = w.settle_submit(&id, 502, None, None, false, None).unwrap().into();
    assert_eq!(field(&settled, "outcome").as_string().as_deref(), Some("failed"));
    assert!(text(".qw-attempt").starts_with("Image ×1 · failed, not charged: server error (HTTP 502) · "));
    assert_eq!(q("#go").get_attribute("aria-disabled"), None, "the hold ended: the slot is free again");
}

#[wasm_bindgen_test]
fn a_bad_first_state_does_not_claim_last_good_figures() {
    let w = widget("");
    assert!(w.push_state(JsValue::from_str("{not json").unchecked_into()).is_err());
    assert_eq!(text(".qw-error"), "Could not use the quota update from the server: malformed quota state: not valid JSON.");
    assert_eq!(text(".qw-remaining"), "—");
}

#[wasm_bindgen_test]
fn submit_in_a_gated_forms_handler_sends_the_hold_the_gate_took() {
    let w = widget(r#"{"count":2}"#);
    push(&w, &state(1, 0, 100, "", ""));
    assert!(submit(&q("#f")), "the gate takes a hold for the submit");
    let gate_id = w.last_request_id().unwrap();
    let request: JsValue = w.begin_hold().unwrap().into();
    assert_eq!(field(&request, "requestId").as_string(), Some(gate_id), "the same hold, not a second one");
    assert_eq!(field(&request, "count").as_f64(), Some(2.0));
    assert_eq!(text(".qw-meter-text"), "0 of 4 in use, 2 being submitted", "2 slots held, not 4");
    // Outside a gated submit, it takes a hold of its own.
    let other: JsValue = w.begin_hold().unwrap().into();
    assert_ne!(field(&other, "requestId"), field(&request, "requestId"));
}

#[wasm_bindgen_test]
fn any_message_can_be_replaced_and_a_wrong_name_is_a_clear_error() {
    let w = widget(r#"{"messages":{"units_remaining":"one={units} Einheit übrig|other={units} Einheiten übrig","blocked_no_state":"Warte auf die Zahlen."}}"#);
    assert_eq!(text(".qw-reason"), "Warte auf die Zahlen.");
    push(&w, &state(1, 0, 100, "", ""));
    assert_eq!(text(".qw-remaining"), "100 Einheiten übrig");
    assert_eq!(text(".qw-meter-label"), "Image generation slots", "the others stay English");

    page(PAGE);
    let opts = options(js_sys::JSON::parse(r#"{"messages":{"units_left":"x"}}"#).unwrap());
    let err = QuotaWidget::new(Ts::new_unchecked(opts)).err().expect("an unknown name fails");
    let msg: js_sys::Error = JsValue::from(err).unchecked_into();
    assert_eq!(String::from(msg.message()), "quota-widget: no message is named \"units_left\"");
}

#[wasm_bindgen_test]
fn numbers_follow_the_pages_lang_when_no_locale_is_given() {
    let html = doc().document_element().unwrap();
    let before = html.get_attribute("lang");
    html.set_attribute("lang", "de-DE").unwrap();
    page(PAGE);
    let opts: JsValue = js_sys::JSON::parse(r##"{"host":"#host","button":"#go"}"##).unwrap();
    let w = QuotaWidget::new(Ts::new_unchecked(opts)).unwrap();
    push(&w, &state(1, 0, 1_000_000, "", "").replace(r#""total":100"#, r#""total":1000000"#));
    let shown = text(".qw-remaining");
    match before {
        Some(l) => html.set_attribute("lang", &l).unwrap(),
        None => html.remove_attribute("lang").unwrap(),
    }
    assert_eq!(shown, "1.000.000 units remaining");
}

/// A state that repeats the last one but for its revision and time is taken
/// without reading it again (js/read.js compares the two texts); whatever else
/// changes, and a bad revision, is still read and checked.
#[wasm_bindgen_test]
fn a_state_that_repeats_the_last_but_its_revision_is_taken_and_checked() {
    let w = widget("");
    let revision = || q(".qw-freshness").get_attribute("data-revision");
    push(&w, &state(1, 0, 100, "", ""));
    let repeat = state(1, 0, 100, "", "").replace(r#""revision":1"#, r#""revision":2"#);
    push(&w, &repeat);
    assert_eq!(revision().as_deref(), Some("2"), "the new revision is shown");
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    // A figure that moves is read, though the rest repeats.
    push(&w, &state(3, 0, 90, "", ""));
    assert_eq!(text(".qw-remaining"), "90 units remaining");
    // A repeat whose revision is wrong is a bad state, as any other.
    let bad = state(3, 0, 90, "", "").replace(r#""revision":3"#, r#""revision":"four""#);
    assert!(w.push_state(JsValue::from_str(&bad).unchecked_into()).is_err());
    assert!(text(".qw-error").contains("revision must be"), "{}", text(".qw-error"));
    assert_eq!(revision().as_deref(), Some("3"), "the last good state stays");
    // An object the page pushes is read in full.
    let object = js_sys::JSON::parse(&state(4, 2, 80, "", "")).unwrap();
    w.push_state(object.unchecked_into()).unwrap();
    assert_eq!(text(".qw-remaining"), "80 units remaining");
    assert_eq!(revision().as_deref(), Some("4"));
}

/// A repeat is told by its text: the pieces around its revision and time
/// equal the last state's (js/read.js, `cut`). Its numbers are still
/// checked, and a member named twice reads as JSON.parse reads it (the
/// last one), not as the cut finds it (the first).
#[wasm_bindgen_test]
fn a_repeat_is_told_by_its_text_and_read_as_json_parse_reads_it() {
    let w = widget("");
    let revision = || q(".qw-freshness").get_attribute("data-revision");
    let first = state(5, 0, 100, "", "");
    push(&w, &first);
    // Spaces around the values, as another server may write them.
    let spaced = first.replace(r#""revision":5"#, r#""revision": 6 "#);
    push(&w, &spaced);
    push(&w, &spaced.replace(r#""revision": 6 "#, r#""revision": 7 "#));
    assert_eq!(revision().as_deref(), Some("7"));
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    // A space that JSON does not allow there is no repeat but bad JSON.
    let nbsp = spaced.replace(r#""revision": 6 "#, "\"revision\":\u{a0}8 ");
    assert!(w.push_state(JsValue::from_str(&nbsp).unchecked_into()).is_err());
    assert!(text(".qw-error").contains("not valid JSON"), "{}", text(".qw-error"));
    assert_eq!(revision().as_deref(), Some("7"));
    // A fraction is no revision, on this path too; the last good state stays.
    let fraction = spaced.replace(r#""revision": 6 "#, r#""revision": 7.5 "#);
    assert!(w.push_state(JsValue::from_str(&fraction).unchecked_into()).is_err());
    assert!(text(".qw-error").contains("revision must be"), "{}", text(".qw-error"));
    assert_eq!(revision().as_deref(), Some("7"));
    // The revision named twice, the last one as JSON.parse reads it: a
    // text that changes only the first is the same state again (revision 9).
    let twice = state(9, 0, 100, "", "").replace(r#""finished":[]}"#, r#""finished":[],"revision":9}"#);
    push(&w, &twice);
    assert_eq!(revision().as_deref(), Some("9"));
    push(&w, &twice.replacen(r#""revision":9"#, r#""revision":10"#, 1));
    assert_eq!(revision().as_deref(), Some("9"), "JSON.parse reads revision 9");
}

#[wasm_bindgen_test]
fn kinds_are_named_by_the_table() {
    let w = widget(r#"{"messages":{"kind_image":"picture","kind_video":"clip"}}"#);
    push(&w, &state(1, 4, 100, "", ""));
    assert_eq!(text(".qw-meter-label"), "Picture generation slots", "capitalized where it starts the text");
    assert_eq!(text(".qw-reason"), "All picture slots are busy: 0 of 4 free, this request needs 1.");
}

#[wasm_bindgen(inline_js = r##"
export function withThrowingGetter(json) {
  const s = JSON.parse(json);
  Object.defineProperty(s.packages[0], "remaining", { get() { throw new Error("boom"); } });
  return s;
}
"##)]
extern "C" {
    #[wasm_bindgen(js_name = withThrowingGetter)]
    fn with_throwing_getter(json: &str) -> JsValue;
}

#[wasm_bindgen_test]
fn a_pushed_object_whose_getter_throws_is_a_bad_state() {
    let w = widget("");
    push(&w, &state(1, 0, 100, "", ""));
    let bad = with_throwing_getter(&state(2, 0, 90, "", ""));
    assert!(w.push_state(bad.unchecked_into()).is_err());
    assert!(text(".qw-error").contains("packages[0].remaining"), "{}", text(".qw-error"));
    assert_eq!(text(".qw-remaining"), "100 units remaining", "the last good state stays");
    push(&w, &state(3, 0, 90, "", ""));
    assert_eq!(text(".qw-remaining"), "90 units remaining", "and the widget goes on");
}

#[wasm_bindgen(inline_js = r##"
export function table(first, n) { return [first, ...Array.from({ length: n - 1 }, (_, i) => `t${i + 1}`)]; }
"##)]
extern "C" {
    fn table(first: &str, n: u32) -> JsValue;
}

#[wasm_bindgen_test]
fn a_language_table_and_the_pages_own_wording_combine_in_order() {
    let n = quota_widget::core::Msg::ALL.len() as u32;
    page(PAGE);
    // A table with one text per message, then the page's own wording of one.
    let list = js_sys::Array::of2(&table("Kontingent", n), &js_sys::JSON::parse(r#"{"heading_packages":"Pakete"}"#).unwrap());
    let extra = js_sys::Object::new();
    js_sys::Reflect::set(&extra, &"messages".into(), &list).unwrap();
    let w = QuotaWidget::new(Ts::new_unchecked(options(extra.into()))).unwrap();
    assert_eq!(q("#host .qw").get_attribute("aria-label").as_deref(), Some("Kontingent"), "region_label is first");
    assert_eq!(text(".qw-packages-box .qw-heading"), "Pakete", "the page's own wording wins");
    drop(w);

    // A table of the wrong length is refused, with the rule in words.
    page(PAGE);
    let extra = js_sys::Object::new();
    js_sys::Reflect::set(&extra, &"messages".into(), &table("x", n - 1)).unwrap();
    let err = QuotaWidget::new(Ts::new_unchecked(options(extra.into()))).err().expect("a short table fails");
    let msg: js_sys::Error = JsValue::from(err).unchecked_into();
    assert!(String::from(msg.message()).contains("one text per message"), "{}", String::from(msg.message()));
}

/// A state whose image slots are all busy, with `queued` waiting.
fn busy_with_queue(revision: u64, queued: &str) -> String {
    let s = state(revision, 4, 100, r#"{"id":"t0","kind":"image","slots":4,"reserved_units":8,"started_at_ms":1}"#, "");
    format!(r#"{},"queued":[{queued}]}}"#, s.trim_end().trim_end_matches('}'))
}

#[wasm_bindgen_test]
fn with_the_queue_a_busy_kind_queues_and_a_queued_request_is_cancelled_from_its_row() {
    let w = widget(r#"{"queue":true}"#);
    let f = recorder();
    w.subscribe_id(f.clone().unchecked_into()).unwrap();
    push(&w, &busy_with_queue(1, ""));
    let button = q("#go");
    // Usable, and it says what will happen, tied to the button.
    assert_eq!(button.get_attribute("aria-disabled"), None, "{}", text(".qw-reason"));
    assert_eq!(text(".qw-reason"), "Queue · starts when a slot frees, 0 ahead");
    let described = button.get_attribute("aria-describedby").unwrap();
    assert_eq!(described, format!("hint {}", q(".qw-reason").id()));
    let v: JsValue = w.view().unwrap().js_value();
    assert_eq!(get(&v, "queues"), JsValue::TRUE);
    // submit() sends the request with `queue: true`.
    let request: JsValue = w.begin_hold().unwrap().js_value();
    assert_eq!(get(&request, "queue"), JsValue::TRUE);
    let id = get(&request, "requestId").as_string().unwrap();
    assert_eq!(text(".qw-units-detail"), "Running tasks hold 10 · 90 can be spent now");

    // The server queues it: listed with its place and a cancel button.
    let row = |place: u32| {
        format!(r#"{{"id":"g7","kind":"image","count":1,"reserved_units":2,"place":{place},"client_request_id":"{id}","queued_at_ms":1}}"#)
    };
    let other = r#"{"id":"g6","kind":"image","count":1,"reserved_units":2,"place":1,"queued_at_ms":1}"#;
    push(&w, &busy_with_queue(2, &format!("{other},{}", row(2))));
    assert_eq!(text(".qw-remaining"), "100 units remaining", "a queued request moves no remaining unit");
    assert_eq!(text(".qw-units-detail"), "Running and queued requests hold 12 · 88 can be spent now");
    assert_eq!(text(".qw-reason"), "Queue · starts when a slot frees, 2 ahead");
    let queued = doc().query_selector_all(".qw-attempt[data-status=\"queued\"]").unwrap();
    assert_eq!(queued.length(), 2);
    let mine: Element = queued.item(1).unwrap().unchecked_into();
    assert_eq!(mine.query_selector(".qw-attempt-text").unwrap().unwrap().text_content().unwrap(), "Image ×1 · queued, place 2 · 2 units reserved");
    let cancel: web_sys::HtmlElement = mine.query_selector("button.qw-cancel").unwrap().unwrap().unchecked_into();
    assert_eq!(cancel.get_attribute("type").as_deref(), Some("button"), "never submits the dashboard's form");
    assert_eq!(cancel.text_content().as_deref(), Some("Cancel"));
    assert_eq!(cancel.get_attribute("aria-label").as_deref(), Some("Cancel the queued request: Image ×1, place 2"));
    assert!(cancel.tab_index() >= 0, "reachable by keyboard");
    cancel.focus().unwrap();

    // Its place moves: the same button, still focused.
    push(&w, &busy_with_queue(3, &row(1)));
    let again = q(".qw-attempt[data-status=\"queued\"] button.qw-cancel");
    assert!(again == *cancel.unchecked_ref::<Element>(), "the button is kept as its place moves");
    assert_eq!(doc().active_element().as_ref(), Some(cancel.unchecked_ref::<Element>()));
    assert_eq!(again.get_attribute("aria-label").as_deref(), Some("Cancel the queued request: Image ×1, place 1"));

    // Pressed, it asks the page to cancel that request.
    cancel.click();
    let events = recorded(&f);
    let asked: Vec<JsValue> = events.iter().filter(|e| get(e, "type").as_string().as_deref() == Some("cancel")).collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(get(&asked[0], "taskId").as_string().as_deref(), Some("g7"));

    // Cancelled: the row loses its button and reads as not charged.
    let done = format!(
        r#"{{"id":"g7","kind":"image","slots":1,"outcome":"refused","units_charged":0,"reason":"cancelled while queued; nothing charged","client_request_id":"{id}","finished_at_ms":1}}"#
    );
    let s = state(4, 4, 100, r#"{"id":"t0","kind":"image","slots":4,"reserved_units":8,"started_at_ms":1}"#, &done);
    push(&w, &s);
    assert!(doc().query_selector("button.qw-cancel").unwrap().is_none());
    assert_eq!(text(".qw-remaining"), "100 units remaining");
    drop(w);
}
