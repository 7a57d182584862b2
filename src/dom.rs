//! Writes a [`ViewModel`] to the page. The structure is built once; each
//! render compares against the previous view model and touches only the
//! nodes whose values changed. Server text goes in through `textContent`
//! only. No inline styles: the meter's fill width is set through CSSOM,
//! which a strict `style-src 'self'` allows.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlElement};

use crate::core::{say, AttemptStatus, AttemptView, Fmt, MeterView, Msg, PackageView, UnitsView, ViewModel};

pub struct Dom {
    doc: Document,
    root: Element,
    remaining: Element,
    detail: Element,
    meters: Element,
    cost: Element,
    reason: Element,
    error: Element,
    packages: Element,
    attempts: Element,
    freshness: Element,
    live: Element,
    meter_rows: Keyed<MeterRow>,
    package_rows: Keyed<PackageRow>,
    attempt_rows: Keyed<AttemptRow>,
    last: Option<ViewModel>,
    uid: String,
    next_id: std::cell::Cell<u32>,
    /// The cancel buttons' text, in the page's language.
    cancel_word: String,
}

/// Rows by key, in page order. A Vec: lists are short, and a hash map
/// would add kilobytes to the wasm.
struct Keyed<R> {
    rows: Vec<(String, R)>,
}

impl<R> Keyed<R> {
    fn new() -> Self {
        Keyed { rows: Vec::new() }
    }
}

struct MeterRow {
    el: Element,
    label: Element,
    bar: Element,
    fill: HtmlElement,
    text: Element,
    last: Option<Rc<MeterView>>,
}

struct PackageRow {
    el: Element,
    name: Element,
    units: Element,
    status: Element,
    last: Option<Rc<PackageView>>,
}

struct AttemptRow {
    el: Element,
    text: Element,
    /// A queued request's cancel button, kept while it waits, so that
    /// keyboard focus stays on it as its place moves.
    cancel: Option<Element>,
    last: Option<Rc<AttemptView>>,
}

fn el(doc: &Document, tag: &str, class: &str) -> Element {
    // Creating standard elements cannot fail in a live document. (Not
    // `expect`: its message would format a JsValue, which costs the glue
    // a debug printer.)
    #[allow(clippy::ok_expect)]
    let e = doc.create_element(tag).ok().expect("create_element");
    e.set_class_name(class);
    e
}

fn set_attr(e: &Element, name: &str, value: &str) {
    let _ = e.set_attribute(name, value);
}

impl Dom {
    /// Builds the widget's structure inside `host`, with the blocking
    /// reason in `reason_host` when given (next to the button, say). `uid`
    /// makes ids unique when a page mounts several widgets; `f` words the
    /// headings.
    pub fn new(doc: Document, host: &Element, reason_host: Option<&Element>, uid: &str, f: &dyn Fmt) -> Dom {
        let words = |m| say(f, m, None, &[]);
        let root = el(&doc, "section", "qw");
        set_attr(&root, "aria-label", &words(Msg::RegionLabel));

        let units = el(&doc, "div", "qw-units");
        let remaining = el(&doc, "p", "qw-remaining");
        let detail = el(&doc, "p", "qw-units-detail");
        let _ = units.append_child(&remaining);
        let _ = units.append_child(&detail);

        let meters = el(&doc, "div", "qw-meters");
        let cost = el(&doc, "p", "qw-cost");
        let reason = el(&doc, "p", "qw-reason");
        reason.set_id(&format!("{uid}-reason"));
        let error = el(&doc, "p", "qw-error");
        set_attr(&error, "role", "alert");
        set_attr(&error, "hidden", "");

        let packages_box = el(&doc, "div", "qw-packages-box");
        let ph = el(&doc, "h3", "qw-heading");
        ph.set_text_content(Some(&words(Msg::HeadingPackages)));
        let packages = el(&doc, "ul", "qw-packages");
        set_attr(&packages, "aria-label", &words(Msg::HeadingPackages));
        let _ = packages_box.append_child(&ph);
        let _ = packages_box.append_child(&packages);

        let attempts_box = el(&doc, "div", "qw-attempts-box");
        let ah = el(&doc, "h3", "qw-heading");
        ah.set_text_content(Some(&words(Msg::HeadingAttempts)));
        let attempts = el(&doc, "ul", "qw-attempts");
        set_attr(&attempts, "aria-label", &words(Msg::HeadingAttempts));
        let _ = attempts_box.append_child(&ah);
        let _ = attempts_box.append_child(&attempts);

        let freshness = el(&doc, "p", "qw-freshness");
        let live = el(&doc, "div", "qw-sr-only qw-live");
        set_attr(&live, "aria-live", "polite");
        set_attr(&live, "role", "status");

        for child in [&units, &meters, &cost, &reason, &error, &packages_box, &attempts_box, &freshness, &live] {
            let _ = root.append_child(child);
        }
        if let Some(h) = reason_host {
            let _ = h.append_child(&reason);
        }
        let _ = host.append_child(&root);
        Dom {
            doc,
            root,
            remaining,
            detail,
            meters,
            cost,
            reason,
            error,
            packages,
            attempts,
            freshness,
            live,
            meter_rows: Keyed::new(),
            package_rows: Keyed::new(),
            attempt_rows: Keyed::new(),
            last: None,
            uid: uid.to_owned(),
            next_id: std::cell::Cell::new(0),
            cancel_word: words(Msg::CancelButton),
        }
    }

    /// The view model on the page, if any has been rendered.
    pub fn last(&self) -> Option<&ViewModel> {
        self.last.as_ref()
    }

    /// The attempt list, where the cancel buttons of queued requests are.
    pub fn attempt_list(&self) -> Element {
        self.attempts.clone()
    }

    pub fn reason_id(&self) -> String {
        self.reason.id()
    }

    pub fn remove(&self) {
        self.root.remove();
        // It may live outside the root, next to the button.
        self.reason.remove();
    }

    fn text(e: &Element, s: &str) {
        e.set_text_content(Some(s));
    }

    /// Announces a message to screen readers through the polite live region.
    pub fn announce(&mut self, message: &str) {
        // Replacing the text makes assistive technology read it once.
        Self::text(&self.live, message);
    }

    pub fn render(&mut self, vm: ViewModel) {
        let last = self.last.take();
        let changed = |f: &dyn Fn(&ViewModel) -> bool| last.as_ref().is_none_or(f);

        if changed(&|l| l.units != vm.units) {
            fn texts(u: Option<&UnitsView>) -> (&str, &str, bool) {
                match u {
                    Some(u) => (&u.remaining_text, &u.detail_text, u.low),
                    None => ("—", "", false),
                }
            }
            let (rem, detail, low) = texts(vm.units.as_deref());
            let old = last.as_ref().map(|l| texts(l.units.as_deref()));
            if old.map(|o| o.0) != Some(rem) {
                Self::text(&self.remaining, rem);
            }
            if old.map(|o| o.1) != Some(detail) {
                Self::text(&self.detail, detail);
                // Shown only while running tasks hold units.
                let _ = self.detail.toggle_attribute_with_force("hidden", detail.is_empty());
            }
            if old.map(|o| o.2) != Some(low) {
                toggle(&self.root, "qw-low", low);
            }
        }
        if changed(&|l| l.cost != vm.cost) {
            Self::text(&self.cost, vm.cost.as_deref().map_or("", |c| c.text.as_str()));
        }
        if changed(&|l| l.reason != vm.reason) {
            Self::text(&self.reason, &vm.reason);
        }
        if changed(&|l| l.enabled != vm.enabled) {
            toggle(&self.root, "qw-blocked", !vm.enabled);
        }
        if changed(&|l| l.error_text != vm.error_text) {
            Self::text(&self.error, &vm.error_text);
            let _ = self.error.toggle_attribute_with_force("hidden", vm.error_text.is_empty());
        }
        if changed(&|l| l.freshness != vm.freshness) {
            Self::text(&self.freshness, &vm.freshness);
        }
        if changed(&|l| l.revision != vm.revision) {
            // For developers and tests; people read the freshness words.
            set_attr(&self.freshness, "data-revision", &vm.revision.map_or(String::new(), |r| r.to_string()));
        }
        if changed(&|l| l.stale != vm.stale) {
            toggle(&self.root, "qw-stale", vm.stale);
        }
        if changed(&|l| l.meters != vm.meters) {
            let doc = &self.doc;
            reconcile(&mut self.meter_rows, &self.meters, &vm.meters, |m| &m.kind, |_| {
                let e = el(doc, "div", "qw-meter");
                let label = el(doc, "span", "qw-meter-label");
                // A counter, not the kind: ids must not carry server text.
                let n = self.next_id.get() + 1;
                self.next_id.set(n);
                label.set_id(&format!("{}-meter-{n}", self.uid));
                let bar = el(doc, "div", "qw-meter-bar");
                set_attr(&bar, "role", "meter");
                set_attr(&bar, "aria-valuemin", "0");
                set_attr(&bar, "aria-labelledby", &label.id());
                let fill: HtmlElement = el(doc, "div", "qw-meter-fill").unchecked_into();
                let _ = bar.append_child(&fill);
                let text = el(doc, "span", "qw-meter-text");
                for c in [&label, &bar, &text] {
                    let _ = e.append_child(c);
                }
                MeterRow { el: e, label, bar, fill, text, last: None }
            }, |r| &r.el, |row, m| {
                if row.last.as_ref().is_some_and(|o| Rc::ptr_eq(o, m)) {
                    return;
                }
                let old = row.last.take();
                if old.as_ref().map(|o| &o.label) != Some(&m.label) {
                    Self::text(&row.label, &m.label);
                }
                // Each attribute is written only when its own value moved.
                let pct = |m: &MeterView| (m.value * 100).checked_div(m.limit).unwrap_or(100);
                if old.as_ref().map(|o| o.limit) != Some(m.limit) {
                    set_attr(&row.bar, "aria-valuemax", &m.limit.to_string());
                }
                if old.as_ref().map(|o| o.value) != Some(m.value) {
                    set_attr(&row.bar, "aria-valuenow", &m.value.to_string());
                }
                if old.as_ref().map(|o| &o.text) != Some(&m.text) {
                    set_attr(&row.bar, "aria-valuetext", &m.text);
                    Self::text(&row.text, &m.text);
                }
                if old.as_ref().map(|o| pct(o)) != Some(pct(m)) {
                    // Integer percent: float formatting would add kilobytes.
                    let _ = row.fill.style().set_property("width", &format!("{}%", pct(m)));
                }
                let full = |m: &MeterView| m.value >= m.limit;
                if old.as_ref().map(|o| full(o)) != Some(full(m)) {
                    toggle(&row.el, "qw-full", full(m));
                }
                row.last = Some(Rc::clone(m));
            });
        }
        if changed(&|l| l.packages != vm.packages) {
            let doc = &self.doc;
            reconcile(&mut self.package_rows, &self.packages, &vm.packages, |p| &p.id, |_| {
                let e = el(doc, "li", "qw-package");
                let name = el(doc, "span", "qw-package-name");
                let units = el(doc, "span", "qw-package-units");
                let status = el(doc, "span", "qw-package-status");
                for c in [&name, &units, &status] {
                    let _ = e.append_child(c);
                }
                PackageRow { el: e, name, units, status, last: None }
            }, |r| &r.el, |row, p| {
                if row.last.as_ref().is_some_and(|o| Rc::ptr_eq(o, p)) {
                    return;
                }
                let old = row.last.take();
                if old.as_ref().map(|o| &o.name) != Some(&p.name) {
                    Self::text(&row.name, &p.name);
                }
                if old.as_ref().map(|o| &o.units_text) != Some(&p.units_text) {
                    Self::text(&row.units, &p.units_text);
                }
                if old.as_ref().map(|o| &o.status_text) != Some(&p.status_text) {
                    Self::text(&row.status, &p.status_text);
                }
                if old.as_ref().map(|o| o.expiring_soon) != Some(p.expiring_soon) {
                    toggle(&row.el, "qw-expiring", p.expiring_soon);
                }
                if old.as_ref().map(|o| o.counts) != Some(p.counts) {
                    toggle(&row.el, "qw-inactive", !p.counts);
                }
                if old.as_ref().map(|o| o.status) != Some(p.status) {
                    set_attr(&row.el, "data-status", p.status.name());
                }
                row.last = Some(Rc::clone(p));
            });
        }
        if changed(&|l| l.attempts != vm.attempts) {
            let doc = &self.doc;
            let cancel_word = &self.cancel_word;
            reconcile(&mut self.attempt_rows, &self.attempts, &vm.attempts, |a| &a.key, |_| {
                let e = el(doc, "li", "qw-attempt");
                let text = el(doc, "span", "qw-attempt-text");
                let _ = e.append_child(&text);
                AttemptRow { el: e, text, cancel: None, last: None }
            }, |r| &r.el, |row, a| {
                if row.last.as_ref() == Some(a) {
                    return;
                }
                let old = row.last.take();
                if old.as_ref().map(|o| &o.text) != Some(&a.text) {
                    Self::text(&row.text, &a.text);
                }
                if old.as_ref().map(|o| o.status) != Some(a.status) {
                    set_attr(&row.el, "data-status", status_name(a.status));
                }
                match (&a.task_id, &row.cancel) {
                    (Some(task), cancel) => {
                        // Written only when new or moved: the row changes
                        // with every state while its place moves.
                        let was = old.as_ref().filter(|_| cancel.is_some());
                        let b = cancel.clone().unwrap_or_else(|| {
                            // A real button: reachable by Tab, pressed by
                            // Enter or Space; the widget's one listener on
                            // the list takes its clicks.
                            let b = el(doc, "button", "qw-cancel");
                            set_attr(&b, "type", "button");
                            b.set_text_content(Some(cancel_word));
                            let _ = row.el.append_child(&b);
                            b
                        });
                        if was.and_then(|o| o.task_id.as_ref()) != Some(task) {
                            set_attr(&b, "data-task", task);
                        }
                        if was.map(|o| &o.cancel_label) != Some(&a.cancel_label) {
                            set_attr(&b, "aria-label", &a.cancel_label);
                        }
                        row.cancel = Some(b);
                    }
                    (None, Some(b)) => {
                        b.remove();
                        row.cancel = None;
                    }
                    (None, None) => {}
                }
                row.last = Some(Rc::clone(a));
            });
        }
        self.last = Some(vm);
    }
}

fn status_name(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::Sending => "sending",
        AttemptStatus::Running => "running",
        AttemptStatus::Succeeded => "succeeded",
        AttemptStatus::Failed => "failed",
        AttemptStatus::Refused => "refused",
        AttemptStatus::TimedOut => "timed_out",
        AttemptStatus::Queued => "queued",
    }
}

fn toggle(e: &Element, class: &str, on: bool) {
    let _ = e.class_list().toggle_with_force(class, on);
}

/// Keyed list update: rows are created for new keys, updated in place,
/// moved only when the order changed, and removed when their key is gone.
/// When the keys are those of the last update, in the same order (the
/// common case), it allocates nothing.
#[allow(clippy::too_many_arguments)]
fn reconcile<T, R>(
    keyed: &mut Keyed<R>,
    parent: &Element,
    items: &[T],
    key: impl Fn(&T) -> &String,
    create: impl Fn(&T) -> R,
    elem: impl Fn(&R) -> &Element,
    update: impl Fn(&mut R, &T),
) {
    let same_keys = keyed.rows.len() == items.len() && keyed.rows.iter().zip(items).all(|((k, _), item)| k == key(item));
    if same_keys {
        for ((_, row), item) in keyed.rows.iter_mut().zip(items) {
            update(row, item);
        }
        return;
    }
    let mut old = std::mem::take(&mut keyed.rows);
    for (k, r) in &old {
        if !items.iter().any(|item| key(item) == k) {
            elem(r).remove();
        }
    }
    for item in items {
        let k = key(item);
        let mut row = match old.iter().position(|(ok, _)| ok == k) {
            Some(i) => old.swap_remove(i).1,
            None => create(item),
        };
        update(&mut row, item);
        keyed.rows.push((k.clone(), row));
    }
    // Every row in order, moving only those out of place: a row that stays
    // where it was keeps its focus (a queued request's cancel button as
    // the one before it leaves). insertBefore moves an existing node.
    let mut next = parent.first_child();
    for (_, r) in &keyed.rows {
        let e: &web_sys::Node = elem(r);
        if next.as_ref() == Some(e) {
            next = e.next_sibling();
        } else {
            let _ = parent.insert_before(e, next.as_ref());
        }
    }
}
