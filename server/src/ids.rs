//! Ids: an account's, and the wire forms of task and package ids. The
//! lowest layer: every other module may use it, it uses none.

pub type AccountId = i64;

/// Wire form of ids: distinct prefixes so a package id is never taken for a task id.
pub fn task_wire_id(id: i64) -> String {
    format!("task-{id}")
}

pub fn parse_task_id(s: &str) -> Option<i64> {
    s.strip_prefix("task-")?.parse().ok()
}

pub(crate) fn package_wire_id(id: i64) -> String {
    format!("pkg-{id}")
}
