//! Checks a server state before the core believes it. A state that fails is
//! reported and dropped; the last good state stays.

use std::fmt;

use super::wire::{Outcome, ServerState, Units};

/// Longest id or name the widget accepts from the server, in UTF-8 bytes
/// (200 ASCII characters, fewer when they are wider).
pub const MAX_TEXT: usize = 200;
/// Most entries of any one list in a state.
pub const MAX_ITEMS: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not JSON, or JSON of the wrong shape.
    Malformed(String),
    DuplicatePool(String),
    DuplicatePackage(String),
    RemainingOverTotal { package: String, remaining: Units, total: Units },
    /// A failed or refused task with a charge: the contract forbids it.
    ChargedFailure { task: String, units: Units },
    UnknownKind { task: String, kind: String },
    TooLong { field: &'static str },
    TooMany { field: &'static str },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Malformed(why) => write!(f, "malformed quota state: {why}"),
            StateError::DuplicatePool(k) => write!(f, "quota state lists the slot pool \"{k}\" twice"),
            StateError::DuplicatePackage(id) => write!(f, "quota state lists the package \"{id}\" twice"),
            StateError::RemainingOverTotal { package, remaining, total } => write!(
                f,
                "package \"{package}\" has {remaining} units remaining of a total of {total}"
            ),
            StateError::ChargedFailure { task, units } => {
                write!(f, "task \"{task}\" did not succeed but is reported as charged {units} units")
            }
            StateError::UnknownKind { task, kind } => {
                write!(f, "task \"{task}\" is of kind \"{kind}\", which has no slot pool")
            }
            StateError::TooLong { field } => write!(f, "quota state has a {field} over {MAX_TEXT} bytes"),
            StateError::TooMany { field } => write!(f, "quota state has over {MAX_ITEMS} {field}"),
        }
    }
}

impl std::error::Error for StateError {}

fn text(field: &'static str, s: &str) -> Result<(), StateError> {
    if s.len() > MAX_TEXT {
        return Err(StateError::TooLong { field });
    }
    Ok(())
}

fn count(field: &'static str, n: usize) -> Result<(), StateError> {
    if n > MAX_ITEMS {
        return Err(StateError::TooMany { field });
    }
    Ok(())
}

/// The first value that occurs twice. A quadratic scan: the lists are
/// short (pools, packages), and a hash set or a sort would add kilobytes
/// to the wasm.
fn first_duplicate(items: Vec<&str>) -> Option<&str> {
    items.iter().enumerate().find(|(i, a)| items[..*i].contains(a)).map(|(_, a)| *a)
}

pub fn validate(s: &ServerState) -> Result<(), StateError> {
    count("pools", s.pools.len())?;
    count("packages", s.packages.len())?;
    count("running tasks", s.running.len())?;
    count("finished tasks", s.finished.len())?;
    count("queued requests", s.queued.len())?;
    let kinds: Vec<&str> = s.pools.iter().map(|p| p.kind.as_str()).collect();
    for k in &kinds {
        text("kind", k)?;
    }
    if let Some(k) = first_duplicate(kinds.clone()) {
        return Err(StateError::DuplicatePool(k.to_owned()));
    }
    if let Some(id) = first_duplicate(s.packages.iter().map(|p| p.id.as_str()).collect()) {
        return Err(StateError::DuplicatePackage(id.to_owned()));
    }
    for p in &s.packages {
        text("package id", &p.id)?;
        text("package name", &p.name)?;
        if p.remaining > p.total {
            return Err(StateError::RemainingOverTotal {
                package: p.id.clone(),
                remaining: p.remaining,
                total: p.total,
            });
        }
    }
    for t in &s.running {
        text("task id", &t.id)?;
        if let Some(c) = &t.client_request_id {
            text("client request id", c)?;
        }
        if !kinds.contains(&t.kind.as_str()) {
            return Err(StateError::UnknownKind { task: t.id.clone(), kind: t.kind.clone() });
        }
    }
    for q in &s.queued {
        text("task id", &q.id)?;
        if let Some(c) = &q.client_request_id {
            text("client request id", c)?;
        }
        if !kinds.contains(&q.kind.as_str()) {
            return Err(StateError::UnknownKind { task: q.id.clone(), kind: q.kind.clone() });
        }
    }
    for t in &s.finished {
        text("task id", &t.id)?;
        text("kind", &t.kind)?;
        if let Some(c) = &t.client_request_id {
            text("client request id", c)?;
        }
        if let Some(r) = &t.reason {
            text("reason", r)?;
        }
        if t.outcome != Outcome::Succeeded && !t.units_charged.is_zero() {
            return Err(StateError::ChargedFailure { task: t.id.clone(), units: t.units_charged });
        }
    }
    Ok(())
}
