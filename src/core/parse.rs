//! Reads a server state out of an already parsed JSON value, naming the
//! first field that breaks the wire format ("packages[1].remaining must be
//! a whole number of 0 or more").
//!
//! The widget parses JSON with the browser's `JSON.parse` and reads the
//! result through [`Source`]; host tests read `serde_json` values. One pass
//! builds the typed state and finds the fault: no JSON parser, no generic
//! visitor code in the wasm. `tests/core_parse.rs` checks that this reader
//! takes exactly what the server's serde serialization writes.
//!
//! Why not serde's derive through serde-wasm-bindgen, as for everything the
//! widget hands to JavaScript: measured, it made the wasm 35 kB (gzipped)
//! larger, and an update of a busy account cost about 2,600 calls across
//! the wasm boundary against about 1,100 here. Every serde deserializer's
//! error path displays a `serde::de::Unexpected`, whose `Display` formats
//! floats, which links all of core's float formatting (about 22 kB before
//! compression); naming the field at fault took serde_path_to_error's
//! wrappers (8.6 kB gzipped) on top.

use super::validate::StateError;
use super::wire::*;

/// A parsed JSON value.
pub trait Source: Sized {
    /// The member `key` of an object; `None` if absent (or not an object).
    /// An absent member may also come back as a value that `is_null`.
    /// Keys are literals, so a source may cache what it makes of them.
    fn get(&self, key: &'static str) -> Option<Self>;
    fn is_object(&self) -> bool;
    /// JSON `null`, or nothing at all.
    fn is_null(&self) -> bool;
    fn number(&self) -> Option<f64>;
    fn string(&self) -> Option<String>;
    fn boolean(&self) -> Option<bool>;
    fn items(&self) -> Option<Vec<Self>>;
    /// The member `key` if it is a number: the reader's common case, which
    /// a source may answer in one step (in the browser, one call across
    /// the boundary instead of two).
    fn number_at(&self, key: &'static str) -> Option<f64> {
        self.get(key)?.number()
    }
    /// The member `key` if it is a string, likewise.
    fn string_at(&self, key: &'static str) -> Option<String> {
        self.get(key)?.string()
    }
}

/// Largest integer taken: 2^53 - 1, JavaScript's `Number.MAX_SAFE_INTEGER`,
/// the largest that a JSON number carries exactly and that
/// serde-wasm-bindgen writes back (a tab relays what it read).
pub const MAX_SAFE: u64 = (1 << 53) - 1;
const EXACT: f64 = MAX_SAFE as f64;

pub(super) type R<T> = Result<T, String>;

pub(super) fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn field<S: Source>(v: &S, path: &str, key: &'static str) -> R<S> {
    match v.get(key) {
        Some(x) if !x.is_null() => Ok(x),
        _ => Err(missing(path, key)),
    }
}

#[cold]
fn missing(path: &str, key: &str) -> String {
    format!("{} is missing", at(path, key))
}

/// Why `x`, which is not what `key` must be, is wrong: absent, or of the
/// wrong kind. Asked only on the error path, which saves the common path a
/// question per field.
#[cold]
fn wrong<S: Source>(x: Option<S>, path: &str, key: &str, what: &str) -> String {
    match x {
        Some(x) if !x.is_null() => format!("{} must be {what}", at(path, key)),
        _ => missing(path, key),
    }
}

fn whole<S: Source>(v: &S, path: &str, key: &'static str, min: f64, max: f64, what: &str) -> R<f64> {
    match v.number_at(key) {
        Some(n) if n.fract() == 0.0 && n >= min && n <= max => Ok(n),
        _ => Err(wrong(v.get(key), path, key, what)),
    }
}

pub(super) fn u64_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<u64> {
    whole(v, path, key, 0.0, EXACT, "a whole number of 0 or more").map(|n| n as u64)
}

pub(super) fn units_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Units> {
    match v.number_at(key).and_then(Units::from_number) {
        Some(u) => Ok(u),
        None => Err(wrong(v.get(key), path, key, "a number of units of 0 or more, with at most 3 decimals")),
    }
}

pub(super) fn u32_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<u32> {
    whole(v, path, key, 0.0, f64::from(u32::MAX), "a whole number from 0 to 4294967295").map(|n| n as u32)
}

/// An optional whole number from 0 to 4294967295: absent or null is `None`.
pub(super) fn opt_u32_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Option<u32>> {
    match v.get(key) {
        Some(x) if !x.is_null() => u32_at(v, path, key).map(Some),
        _ => Ok(None),
    }
}

pub(super) fn ms_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Millis> {
    whole(v, path, key, -EXACT, EXACT, "a whole number of milliseconds").map(|n| n as Millis)
}

pub(super) fn opt_ms_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Option<Millis>> {
    match v.get(key) {
        Some(x) if !x.is_null() => ms_at(v, path, key).map(Some),
        _ => Ok(None),
    }
}

pub(super) fn str_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<String> {
    match v.string_at(key) {
        Some(s) => Ok(s),
        None => Err(wrong(v.get(key), path, key, "a string")),
    }
}

pub(super) fn opt_str_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Option<String>> {
    if let Some(s) = v.string_at(key) {
        return Ok(Some(s));
    }
    match v.get(key) {
        Some(x) if !x.is_null() => Err(format!("{} must be a string or null", at(path, key))),
        _ => Ok(None),
    }
}

/// An optional flag: absent or null is `None`.
pub(super) fn opt_bool_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<Option<bool>> {
    match v.get(key) {
        Some(x) if !x.is_null() => x.boolean().map(Some).ok_or_else(|| format!("{} must be true or false", at(path, key))),
        _ => Ok(None),
    }
}

/// One of `names`, as its index.
pub(super) fn one_of<S: Source>(v: &S, path: &str, key: &'static str, names: &[&str]) -> R<usize> {
    let s = v.string_at(key);
    if let Some(i) = s.as_deref().and_then(|s| names.iter().position(|n| *n == s)) {
        return Ok(i);
    }
    field(v, path, key)?;
    let mut m = format!("{} must be one of: ", at(path, key));
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            m.push_str(", ");
        }
        m.push_str(n);
    }
    Err(m)
}

/// The list `key`: `each` reads every item, an object, at its path.
/// Through `dyn`, so that one copy serves every list (one per item type
/// cost the widget about 2.4 kB before compression).
pub(super) fn list<S: Source>(v: &S, key: &'static str, each: &mut dyn FnMut(&S, &str) -> R<()>) -> R<()> {
    let items = field(v, "", key)?.items().ok_or_else(|| format!("{key} must be a list"))?;
    // One path buffer for every item ("packages[12]"), written by hand: a
    // busy state has dozens of items, and a format! per item showed in
    // profiles.
    let mut path = String::with_capacity(key.len() + 6);
    for (i, item) in items.iter().enumerate() {
        path.clear();
        path.push_str(key);
        path.push('[');
        push_decimal(&mut path, i);
        path.push(']');
        if !item.is_object() {
            return Err(format!("{path} must be an object"));
        }
        each(item, &path)?;
    }
    Ok(())
}

/// `n` in decimal digits.
fn push_decimal(s: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(s, n / 10);
    }
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// The list `key` of items that `read` reads.
fn items<S: Source, T>(v: &S, key: &'static str, read: fn(&S, &str) -> R<T>) -> R<Vec<T>> {
    let mut out = Vec::new();
    list(v, key, &mut |item, path| {
        out.push(read(item, path)?);
        Ok(())
    })?;
    Ok(out)
}

fn pool<S: Source>(v: &S, p: &str) -> R<SlotPool> {
    Ok(SlotPool {
        kind: str_at(v, p, "kind")?,
        limit: u32_at(v, p, "limit")?,
        in_use: u32_at(v, p, "in_use")?,
        unit_cost: units_at(v, p, "unit_cost")?,
        slot_rule: [SlotRule::PerItem, SlotRule::PerTask][one_of(v, p, "slot_rule", &["per_item", "per_task"])?],
    })
}

fn package<S: Source>(v: &S, p: &str) -> R<Package> {
    Ok(Package {
        id: str_at(v, p, "id")?,
        name: str_at(v, p, "name")?,
        total: units_at(v, p, "total")?,
        remaining: units_at(v, p, "remaining")?,
        effective_at_ms: ms_at(v, p, "effective_at_ms")?,
        expires_at_ms: ms_at(v, p, "expires_at_ms")?,
        status: PackageStatus::ALL[one_of(v, p, "status", &PackageStatus::NAMES)?],
    })
}

fn running<S: Source>(v: &S, p: &str) -> R<RunningTask> {
    Ok(RunningTask {
        id: str_at(v, p, "id")?,
        kind: str_at(v, p, "kind")?,
        slots: u32_at(v, p, "slots")?,
        reserved_units: units_at(v, p, "reserved_units")?,
        client_request_id: opt_str_at(v, p, "client_request_id")?,
        started_at_ms: ms_at(v, p, "started_at_ms")?,
    })
}

fn finished<S: Source>(v: &S, p: &str) -> R<FinishedTask> {
    const OUTCOME: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::Refused];
    Ok(FinishedTask {
        id: str_at(v, p, "id")?,
        kind: str_at(v, p, "kind")?,
        slots: u32_at(v, p, "slots")?,
        outcome: OUTCOME[one_of(v, p, "outcome", &["succeeded", "failed", "refused"])?],
        units_charged: units_at(v, p, "units_charged")?,
        reason: opt_str_at(v, p, "reason")?,
        client_request_id: opt_str_at(v, p, "client_request_id")?,
        finished_at_ms: ms_at(v, p, "finished_at_ms")?,
    })
}

fn queued<S: Source>(v: &S, p: &str) -> R<QueuedRequest> {
    Ok(QueuedRequest {
        id: str_at(v, p, "id")?,
        kind: str_at(v, p, "kind")?,
        count: u32_at(v, p, "count")?,
        reserved_units: units_at(v, p, "reserved_units")?,
        place: u32_at(v, p, "place")?,
        client_request_id: opt_str_at(v, p, "client_request_id")?,
        queued_at_ms: ms_at(v, p, "queued_at_ms")?,
    })
}

/// The members of a state that change with every state the server sends,
/// whatever else changed: a state equal to the last one read but for these
/// is read by [`read_repeat`], without reading the rest again.
pub const CHANGING: [&str; 2] = ["revision", "server_time_ms"];

/// A state that repeats `last` but for [`CHANGING`]: `last` with this
/// state's revision and time, read and checked as [`read_state`] reads them.
pub fn read_repeat<S: Source>(v: &S, last: &ServerState) -> Result<ServerState, StateError> {
    let read = || -> R<ServerState> {
        Ok(ServerState { revision: u64_at(v, "", "revision")?, server_time_ms: ms_at(v, "", "server_time_ms")?, ..last.clone() })
    };
    read().map_err(StateError::Malformed)
}

/// Reads a state; the error names the first field at fault.
pub fn read_state<S: Source>(v: &S) -> Result<ServerState, StateError> {
    let read = || -> R<ServerState> {
        if !v.is_object() {
            return Err("the state must be an object".to_owned());
        }
        Ok(ServerState {
            revision: u64_at(v, "", "revision")?,
            server_time_ms: ms_at(v, "", "server_time_ms")?,
            pools: items(v, "pools", pool)?,
            packages: items(v, "packages", package)?,
            running: items(v, "running", running)?,
            finished: items(v, "finished", finished)?,
            // Optional: a server without the queue does not send it.
            queued: match v.get("queued") {
                Some(x) if !x.is_null() => items(v, "queued", queued)?,
                _ => Vec::new(),
            },
            packages_synced_at_ms: opt_ms_at(v, "", "packages_synced_at_ms")?,
        })
    };
    read().map_err(StateError::Malformed)
}
