//! The wire types: what the quota server sends and accepts, written once and
//! shared by the widget and the reference server (`server/`).
//!
//! JSON uses `snake_case` field names. Times are integer milliseconds since
//! the Unix epoch (UTC); units and slots are non-negative integers.
//! `docs/wire.md` shows each type as JSON with an example.
//!
//! On `wasm32` each type also derives `tsify::Tsify`, so the TypeScript
//! declarations in `pkg/quota_widget.d.ts` come from these definitions and no
//! copy is kept by hand.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

// serde serves the server (serde_json), the widget (serde-wasm-bindgen,
// through `parse::read_state`) and, through tsify, the TypeScript
// declarations: one model across every boundary.

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A snapshot of one account's quota, as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct ServerState {
    /// Grows by at least one with every change the server makes to this
    /// account. A client never lets an older revision replace a newer one (R4).
    pub revision: u64,
    /// The server's clock when it produced the snapshot. Expiry is judged
    /// against this, not against the browser's clock, which may be off.
    pub server_time_ms: Millis,
    /// Concurrency per kind of work ("image", "video", ...).
    pub pools: Vec<SlotPool>,
    /// The account's resource packages, in the order the server would spend
    /// them (earliest expiry first in the reference server, R6).
    pub packages: Vec<Package>,
    /// Tasks that hold slots and reserve units right now.
    pub running: Vec<RunningTask>,
    /// Recently ended tasks, newest first. The server keeps a short window.
    pub finished: Vec<FinishedTask>,
}

/// Concurrent generation slots of one kind of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct SlotPool {
    /// The kind of work: "image", "video", ...; unique within a state.
    pub kind: String,
    /// Slots the account may hold at once. Fixed by the plan: buying packages
    /// adds units, never slots.
    pub limit: u32,
    /// Slots held by running tasks of this kind.
    pub in_use: u32,
    /// Units one item of this kind costs (one image, one video).
    pub unit_cost: u64,
    /// How a request of `count` items takes slots.
    pub slot_rule: SlotRule,
}

/// How many slots a request holds while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub enum SlotRule {
    /// One slot per item: a request for 4 images holds 4 slots.
    #[serde(rename = "per_item")]
    PerItem,
    /// One slot per task, whatever its count (video).
    #[serde(rename = "per_task")]
    PerTask,
}

impl SlotRule {
    pub fn slots_for(self, count: u32) -> u32 {
        match self {
            SlotRule::PerItem => count,
            SlotRule::PerTask => u32::from(count > 0),
        }
    }
}

/// A resource package: a block of units with a validity window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct Package {
    /// Unique within a state.
    pub id: String,
    /// Shown to the user as text, never as markup.
    pub name: String,
    /// Units the package came with.
    pub total: u64,
    /// Units not yet deducted; never more than `total`.
    pub remaining: u64,
    /// When the package starts to count.
    pub effective_at_ms: Millis,
    /// When its unused units lapse.
    pub expires_at_ms: Millis,
    pub status: PackageStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub enum PackageStatus {
    /// Bought, not yet effective.
    #[serde(rename = "pending")]
    Pending,
    /// Its remaining units can be spent.
    #[serde(rename = "active")]
    Active,
    /// Past its expiry time; its remaining units are gone.
    #[serde(rename = "expired")]
    Expired,
    /// No units left.
    #[serde(rename = "exhausted")]
    Exhausted,
}

/// A task holding slots and reserving units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct RunningTask {
    pub id: String,
    pub kind: String,
    /// Slots it holds until it ends.
    pub slots: u32,
    /// Units set aside for it; deducted only if it succeeds.
    pub reserved_units: u64,
    /// The id the client sent with its submit, if any.
    pub client_request_id: Option<String>,
    pub started_at_ms: Millis,
}

/// A task that ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct FinishedTask {
    pub id: String,
    pub kind: String,
    pub slots: u32,
    pub outcome: Outcome,
    /// Units deducted. Always 0 unless `outcome` is `succeeded`.
    pub units_charged: u64,
    /// Why it failed or was refused, as text for the user.
    pub reason: Option<String>,
    pub client_request_id: Option<String>,
    pub finished_at_ms: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub enum Outcome {
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "refused")]
    Refused,
}

/// The body of `POST /api/generations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct SubmitRequest {
    pub kind: String,
    /// Items asked for: images, or 1 for a video.
    pub count: u32,
    /// Chosen by the client; a repeat with the same id returns the first
    /// answer and reserves nothing more.
    pub client_request_id: String,
    pub prompt: Option<String>,
}

/// The answer to an accepted submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct SubmitAccepted {
    pub task_id: String,
    pub client_request_id: String,
    pub slots: u32,
    pub reserved_units: u64,
    /// The revision that first shows the task.
    pub revision: u64,
}

/// Every error body the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
pub struct ApiError {
    /// One of the `codes` below.
    pub code: u32,
    pub message: String,
}

/// The service's error codes.
pub mod codes {
    /// The account is in arrears.
    pub const ACCOUNT_IN_ARREARS: u32 = 1101;
    /// No package has the units the request needs.
    pub const UNITS_EXHAUSTED: u32 = 1102;
    /// The request would exceed the concurrency limit; refused, not queued.
    pub const OVER_CONCURRENCY: u32 = 1303;
    /// The request itself is malformed (unknown kind, zero count, ...).
    pub const BAD_REQUEST: u32 = 1200;
    /// Missing or unknown credentials.
    pub const UNAUTHORIZED: u32 = 1000;
    /// The task does not exist for this account.
    pub const NOT_FOUND: u32 = 1404;
    /// A fault of the server; the detail goes to its log only.
    pub const INTERNAL_ERROR: u32 = 1500;
}
