//! The widget's plain options (`new QuotaWidget(options)`, and what the
//! `<quota-widget>` element passes on from its attributes): read by the
//! same [`Source`] reader as a server state, naming the option at fault.
//! The elements and message tables beside them are the browser shell's.
//!
//! tsify declares this type for TypeScript from its serde names; the
//! reader reads the same names, and `tests/options.rs` writes every option
//! with serde and reads it back, so the two cannot drift apart.

use serde::Serialize;
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use super::parse::{opt_bool_at, opt_str_at, opt_u32_at, Source};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct QuotaOptions {
    /// Base URL of the quota API, for example "/api". When set, the widget
    /// keeps itself in sync with the server (the page must be signed in:
    /// see the README); otherwise call `pushState`. Default: none.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub endpoint: Option<String>,
    /// Kind of work of the request being prepared. Default "image".
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub kind: Option<String>,
    /// Items in the request being prepared. Default 1.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub count: Option<u32>,
    /// BCP 47 locale for numbers, dates and plurals. Default: the page's
    /// `lang`, else the browser's.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub locale: Option<String>,
    /// A state older than this blocks submit (the figures may be wrong).
    /// Default 30000.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub stale_after_ms: Option<u32>,
    /// A submit the server never confirms is released after this; also
    /// how long `submit()` waits for an answer. Default 20000.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub hold_timeout_ms: Option<u32>,
    /// Active packages expiring within this many days are highlighted.
    /// Default 7.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub expiring_soon_days: Option<u32>,
    /// Units that can be spent under this are announced as low. Default 20.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub low_units: Option<u32>,
    /// Poll interval when server-sent events are unavailable. Default 5000.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub poll_ms: Option<u32>,
    /// Use server-sent events. Default true; false polls only.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub events: Option<bool>,
    /// Share one connection, and every hold, between the tabs of this
    /// browser that show the same endpoint and account (the README's
    /// "Several tabs"). Default true; false connects from this tab alone,
    /// as does a browser without Web Locks or `BroadcastChannel`.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub tabs: Option<bool>,
    /// Let a request whose slots are all busy wait in the server's queue
    /// instead of being blocked: while the units suffice the button stays
    /// usable and says so ("Queue · starts when a slot frees, 2 ahead"),
    /// `submit()` sends the request with `queue: true`, and queued requests
    /// are listed with a cancel button. Needs a server with the queue.
    /// Default false.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub queue: Option<bool>,
    /// The signed-in account, as a name that is not a
    /// secret (an id); tabs share only with tabs of the same `endpoint` and
    /// `account`. Default: none, which is right while the session cookie
    /// alone decides the account.
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub account: Option<String>,
    /// Name of a hidden input in the form that receives the client request
    /// id on submit. Default "client_request_id".
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub request_id_field: Option<String>,
}

impl QuotaOptions {
    /// Reads the options object; the error names the option at fault
    /// ("options.count must be a whole number from 0 to 4294967295").
    pub fn read<S: Source>(v: &S) -> Result<QuotaOptions, String> {
        if !v.is_object() {
            return Err("options must be an object".to_owned());
        }
        // By kind, in loops: one call site per kind of option, not one per
        // option (about 300 bytes of the package, gzipped).
        const TEXTS: [&str; 5] = ["endpoint", "kind", "locale", "account", "requestIdField"];
        const WHOLES: [&str; 6] = ["count", "staleAfterMs", "holdTimeoutMs", "expiringSoonDays", "lowUnits", "pollMs"];
        const FLAGS: [&str; 3] = ["events", "tabs", "queue"];
        let mut t: [Option<String>; 5] = Default::default();
        let mut w = [None; 6];
        let mut f = [None; 3];
        for (slot, key) in t.iter_mut().zip(TEXTS) {
            *slot = opt_str_at(v, "options", key)?;
        }
        for (slot, key) in w.iter_mut().zip(WHOLES) {
            *slot = opt_u32_at(v, "options", key)?;
        }
        for (slot, key) in f.iter_mut().zip(FLAGS) {
            *slot = opt_bool_at(v, "options", key)?;
        }
        let [endpoint, kind, locale, account, request_id_field] = t;
        let [count, stale_after_ms, hold_timeout_ms, expiring_soon_days, low_units, poll_ms] = w;
        let [events, tabs, queue] = f;
        Ok(QuotaOptions {
            endpoint,
            kind,
            count,
            locale,
            stale_after_ms,
            hold_timeout_ms,
            expiring_soon_days,
            low_units,
            poll_ms,
            events,
            tabs,
            queue,
            account,
            request_id_field,
        })
    }
}
