//! Parses a server state from JSON text.
//!
//! miniserde does the parsing: its non-generic design keeps the wasm small.
//! Its error carries no detail, so when parsing fails a second pass over the
//! JSON value finds the first field that breaks the wire format and names
//! it ("packages[1].remaining must be a whole number of 0 or more"). The
//! shapes below mirror `wire.rs`; a test keeps them in step with it.

use miniserde::json::{self, Number, Value};

use super::validate::StateError;
use super::wire::ServerState;

pub fn parse_state(text: &str) -> Result<ServerState, StateError> {
    json::from_str::<ServerState>(text).map_err(|_| StateError::Malformed(diagnose(text)))
}

#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// A whole number >= 0 that fits in 32 bits.
    U32,
    /// A whole number >= 0.
    U64,
    /// A whole number, maybe negative (times).
    I64,
    Str,
    OptStr,
    OneOf(&'static [&'static str]),
    List(&'static [Field]),
}

pub(crate) type Field = (&'static str, Shape);

use Shape::*;

pub(crate) const POOL: &[Field] = &[
    ("kind", Str),
    ("limit", U32),
    ("in_use", U32),
    ("unit_cost", U64),
    ("slot_rule", OneOf(&["per_item", "per_task"])),
];
pub(crate) const PACKAGE: &[Field] = &[
    ("id", Str),
    ("name", Str),
    ("total", U64),
    ("remaining", U64),
    ("effective_at_ms", I64),
    ("expires_at_ms", I64),
    ("status", OneOf(&["pending", "active", "expired", "exhausted"])),
];
pub(crate) const RUNNING: &[Field] = &[
    ("id", Str),
    ("kind", Str),
    ("slots", U32),
    ("reserved_units", U64),
    ("client_request_id", OptStr),
    ("started_at_ms", I64),
];
pub(crate) const FINISHED: &[Field] = &[
    ("id", Str),
    ("kind", Str),
    ("slots", U32),
    ("outcome", OneOf(&["succeeded", "failed", "refused"])),
    ("units_charged", U64),
    ("reason", OptStr),
    ("client_request_id", OptStr),
    ("finished_at_ms", I64),
];
pub(crate) const STATE: &[Field] = &[
    ("revision", U64),
    ("server_time_ms", I64),
    ("pools", List(POOL)),
    ("packages", List(PACKAGE)),
    ("running", List(RUNNING)),
    ("finished", List(FINISHED)),
];

fn diagnose(text: &str) -> String {
    match json::from_str::<Value>(text) {
        Err(_) => "not valid JSON".to_owned(),
        Ok(v) => match object(&v, "the state", STATE) {
            Err(why) => why,
            // Parsed as JSON and every field fits, yet the typed parse
            // failed: say so rather than guess.
            Ok(()) => "it does not match the wire format (docs/wire.md)".to_owned(),
        },
    }
}

fn object(v: &Value, path: &str, fields: &[Field]) -> Result<(), String> {
    let Value::Object(o) = v else {
        return Err(format!("{path} must be an object"));
    };
    for (key, shape) in fields {
        let p = if path == "the state" { (*key).to_owned() } else { format!("{path}.{key}") };
        match (o.get(*key), shape) {
            (None | Some(Value::Null), OptStr) => {}
            (None, _) => return Err(format!("{p} is missing")),
            (Some(x), s) => value(x, &p, *s)?,
        }
    }
    Ok(())
}

fn value(v: &Value, p: &str, shape: Shape) -> Result<(), String> {
    let ok = match (shape, v) {
        (U32, Value::Number(Number::U64(n))) => *n <= u64::from(u32::MAX),
        (U64, Value::Number(Number::U64(_))) => true,
        (I64, Value::Number(Number::U64(n))) => *n <= i64::MAX as u64,
        (I64, Value::Number(Number::I64(_))) => true,
        (Str | OptStr, Value::String(_)) => true,
        (OneOf(names), Value::String(s)) => names.contains(&s.as_str()),
        (List(fields), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                object(item, &format!("{p}[{i}]"), fields)?;
            }
            true
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match shape {
        U32 => format!("{p} must be a whole number from 0 to {}", u32::MAX),
        U64 => format!("{p} must be a whole number of 0 or more"),
        I64 => format!("{p} must be a whole number of milliseconds"),
        Str => format!("{p} must be a string"),
        OptStr => format!("{p} must be a string or null"),
        OneOf(names) => format!("{p} must be one of: {}", names.join(", ")),
        List(_) => format!("{p} must be a list"),
    })
}
