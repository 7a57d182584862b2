//! Every text the widget shows or announces, by name, in one table.
//!
//! A message is a template with named placeholders (`{units}`), filled with
//! values already worded by a [`Fmt`] (numbers and dates in the page's
//! locale). A template may have plural variants, `one=...|other=...`, of
//! which the one for the count's CLDR category is used (in the browser,
//! `Intl.PluralRules` picks it); a template without `=` variants is used for
//! every count. A [`Fmt`](super::fmt::Fmt) gives the template for each
//! message, so a page can replace any of them; English is built in.
//! [`super::words`] fills them in.

macro_rules! messages {
    ($($name:ident = $key:literal : $en:literal,)*) => {
        /// A message's name. Its `key` is how a dashboard names it to
        /// replace its text.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        pub enum Msg { $($name,)* }

        // Statics, so that a lookup is one load, not an array built per call.
        static KEYS: &[&str] = &[$($key,)*];
        static EN: &[&str] = &[$($en,)*];

        impl Msg {
            /// Every message, in table order.
            pub const ALL: &'static [Msg] = &[$(Msg::$name,)*];

            /// The name a dashboard uses for this message.
            pub fn key(self) -> &'static str {
                KEYS[self as usize]
            }

            /// The built-in English template.
            pub fn en(self) -> &'static str {
                EN[self as usize]
            }
        }
    };
}

messages! {
    // The widget's landmarks.
    RegionLabel = "region_label": "Generation quota",
    HeadingPackages = "heading_packages": "Packages",
    HeadingAttempts = "heading_attempts": "Recent attempts",
    // Why submit is blocked: full sentences, read next to the button.
    BlockedNoState = "blocked_no_state": "Waiting for the quota figures from the server.",
    BlockedConnecting = "blocked_connecting": "Connecting to the quota server.",
    BlockedReconnecting = "blocked_reconnecting": "Connection lost. Reconnecting to the quota server.",
    BlockedPaused = "blocked_paused": "Updates paused while this tab is hidden.",
    BlockedStale = "blocked_stale": "Quota figures are out of date (updated {age}).",
    BlockedEmpty = "blocked_empty": "Choose how many items to generate.",
    BlockedUnknownKind = "blocked_unknown_kind": "This account has no \"{kind}\" generation slots.",
    BlockedOverLimit = "blocked_over_limit": "This request needs {needed} {kind} slots; the limit is {limit}.",
    BlockedSlots = "blocked_slots": "All {kind} slots are busy: {free} of {limit} free, this request needs {needed}.",
    BlockedUnits = "blocked_units": "Not enough units: this request uses {cost}, {available} can be spent.",
    BlockedWait = "blocked_wait": "Try again in {seconds} s: {why}.",
    // What an enabled submit does when its slots are busy (the queue).
    GateQueue = "gate_queue": "Queue · starts when a slot frees, {ahead} ahead",
    // Ages, for the freshness line.
    AgeSeconds = "age_seconds": "{n} s ago",
    AgeMinutes = "age_minutes": "{n} min ago",
    AgeHours = "age_hours": "{n} h ago",
    // The figures.
    UnitsRemaining = "units_remaining": "one={units} unit remaining|other={units} units remaining",
    UnitsNote = "units_note": "Running tasks hold {held} · {available} can be spent now",
    UnitsNoteQueued = "units_note_queued": "Running and queued requests hold {held} · {available} can be spent now",
    MeterLabel = "meter_label": "{kind} generation slots",
    MeterText = "meter_text": "{in_use} of {limit} in use",
    MeterTextHeld = "meter_text_held": "{in_use} of {limit} in use, {held} being submitted",
    PackageUnits = "package_units": "{remaining} of {total} units",
    PackagePending = "package_pending": "scheduled · starts {date}",
    PackageExpiring = "package_expiring": "expires soon, {date}",
    PackageActive = "package_active": "active · expires {date}",
    PackageExpired = "package_expired": "expired {date}",
    PackageUsedUp = "package_used_up": "used up",
    Cost = "cost": "one=This request: {cost} unit · {each} per {kind} · {left} left after|other=This request: {cost} units · {each} per {kind} · {left} left after",
    CostOver = "cost_over": "one=This request: {cost} unit · {each} per {kind} · more than the {available} that can be spent|other=This request: {cost} units · {each} per {kind} · more than the {available} that can be spent",
    CostEstimate = "cost_estimate": "{cost} · an estimate: the final charge can differ",
    // The attempt list.
    Attempt = "attempt": "{kind} ×{count} · {how}",
    AttemptAt = "attempt_at": "{kind} ×{count} · {how} · {time}",
    AttemptSending = "attempt_sending": "sending, {units} units held",
    AttemptRunning = "attempt_running": "running, {units} units reserved",
    AttemptQueued = "attempt_queued": "queued, place {place} · {units} units reserved",
    CancelButton = "cancel_button": "Cancel",
    CancelLabel = "cancel_label": "Cancel the queued request: {kind} ×{count}, place {place}",
    AttemptDone = "attempt_done": "done, {units} units charged",
    AttemptRefused = "attempt_refused": "refused, not charged",
    AttemptTimedOut = "attempt_timed_out": "not confirmed, not charged",
    AttemptFailed = "attempt_failed": "failed, not charged",
    WithReason = "with_reason": "{how}: {reason}",
    // The freshness line.
    FreshWaiting = "fresh_waiting": "Waiting for the first figures…",
    FreshReconnecting = "fresh_reconnecting": "Reconnecting…",
    FreshManual = "fresh_manual": "Updated {age}",
    FreshLive = "fresh_live": "Live · updated {age}",
    FreshConnecting = "fresh_connecting": "Connecting… · updated {age}",
    FreshReconnectingAge = "fresh_reconnecting_age": "Reconnecting… · last updated {age}",
    FreshPaused = "fresh_paused": "Paused · updated {age}",
    FreshPackages = "fresh_packages": "{line} · package figures from the service, {age}",
    // A state that could not be used.
    ErrorKept = "error_kept": "Could not use the latest quota update: {error}. Showing the last good figures.",
    ErrorFirst = "error_first": "Could not use the quota update from the server: {error}.",
    // What the server's refusal of the state means, as the {error} above.
    ErrorSession = "error_session": "the quota server did not accept this session (HTTP {status}); sign in again",
    ErrorStatus = "error_status": "the quota server answered HTTP {status} for the state",
    // Announcements (aria-live).
    SaySlotFree = "say_slot_free": "{kind} slot free: {free} of {limit} available.",
    SayUnitsLow = "say_units_low": "Units are low: {available} can be spent.",
    SayDone = "say_done": "Generation done: {units} units charged.",
    SayFailed = "say_failed": "Generation failed. No units were charged.",
    SayRequestFailed = "say_request_failed": "Request failed. No units were charged.",
    SayRefused = "say_refused": "Request refused. No units were charged.",
    SayNoAnswer = "say_no_answer": "No answer from the server. No units were charged.",
    // Why a submit did not start: reasons in the attempt list and the
    // outcome of `submit()`.
    ReasonNoAnswer = "reason_no_answer": "no answer from the server",
    ReasonTimeout = "reason_timeout": "no answer within {seconds} s",
    ReasonNetwork = "reason_network": "the request did not reach the server",
    ReasonServer = "reason_server": "server error (HTTP {status})",
    ReasonNotJson = "reason_not_json": "the server's answer could not be read (HTTP {status})",
    ReasonSignedOut = "reason_signed_out": "signed out: sign in again",
    ReasonRefused = "reason_refused": "refused by the server (HTTP {status})",
    Reason1101 = "reason_1101": "the account has an unpaid balance",
    Reason1102 = "reason_1102": "not enough units",
    Reason1103 = "reason_1103": "this account may not make this request",
    Reason1200 = "reason_1200": "the request was not valid",
    Reason1301 = "reason_1301": "refused by the content policy",
    Reason1302 = "reason_1302": "too many requests",
    Reason1303 = "reason_1303": "all {kind} slots are busy",
    Reason5001 = "reason_5001": "the generation service is unavailable",
    // Why another tab's submit did not leave, when tabs share a connection.
    TabHandover = "tab_handover": "Another tab is taking over the connection to the quota server. Try again in a moment.",
    TabNoAnswer = "tab_no_answer": "No answer from the tab that holds the connection to the quota server.",
    TabDuplicate = "tab_duplicate": "A submit with this request id is already in flight.",
    // The kinds' names, as the texts above show them in a sentence ("all
    // image slots are busy"; a text that starts with one capitalizes it).
    // A page names any other kind `kind_<name>` in its table; a kind
    // without a name shows as the server names it.
    KindImage = "kind_image": "image",
    KindVideo = "kind_video": "video",
}

impl Msg {
    /// The message named `key`, for a dashboard's replacement texts.
    pub fn by_key(key: &str) -> Option<Msg> {
        Msg::ALL.iter().copied().find(|m| m.key() == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_found() {
        for (i, m) in Msg::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
            assert_eq!(Msg::by_key(m.key()), Some(*m));
            assert!(Msg::ALL[..i].iter().all(|o| o.key() != m.key()), "{} twice", m.key());
        }
        assert_eq!(Msg::by_key("nope"), None);
    }
}
