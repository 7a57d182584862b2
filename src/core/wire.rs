//! The wire types: what the quota server sends and accepts, written once and
//! shared by the widget and the reference server (`server/`).
//!
//! JSON uses `snake_case` field names. Times are integer milliseconds since
//! the Unix epoch (UTC); slots are non-negative integers; units are
//! non-negative JSON numbers with at most three decimals (0.25, 12.5, 100),
//! carried exactly as [`Units`].
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

/// An amount of units, exact to a thousandth: integer thousandths inside,
/// a JSON number in units on the wire (`0.25`, `12.5`, `100`). Sums and
/// differences are integer arithmetic, so 0.1 + 0.2 is 0.3 and nothing
/// drifts. A whole amount is written as an integer, so an integer-unit
/// server and this one write the same JSON for the same figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(target_arch = "wasm32", tsify(type = "number"))]
pub struct Units(u64);

/// On the wire a JSON number of units, at most three decimals, never
/// negative (the schema says so; utoipa cannot read it from a newtype).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Units {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(Units::MAX.0 / Units::SCALE))
            .multiple_of(Some(0.001))
            .description(Some("An amount of units, exact to a thousandth (at most 3 decimals)."))
            .examples([12.25])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Units {}

impl Units {
    pub const ZERO: Units = Units(0);
    /// Thousandths in one unit.
    pub const SCALE: u64 = 1000;
    /// Largest amount a JSON number (a double) carries exactly to a
    /// thousandth: 2^41 units (about 2.2 trillion), where doubles are still
    /// a quarter of a thousandth apart.
    pub const MAX: Units = Units(2_199_023_255_552_000);

    pub const fn from_milli(milli: u64) -> Units {
        Units(milli)
    }

    /// `n` whole units (saturating at [`Units::MAX`]).
    pub const fn whole(n: u64) -> Units {
        let m = n.saturating_mul(Self::SCALE);
        if m > Self::MAX.0 {
            Self::MAX
        } else {
            Units(m)
        }
    }

    pub const fn milli(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn saturating_sub(self, o: Units) -> Units {
        Units(self.0.saturating_sub(o.0))
    }

    pub fn checked_sub(self, o: Units) -> Option<Units> {
        self.0.checked_sub(o.0).map(Units)
    }

    pub fn saturating_add(self, o: Units) -> Units {
        Units(self.0.saturating_add(o.0))
    }

    /// `self` times a count (the cost of `count` items).
    pub fn times(self, count: u32) -> Units {
        Units(self.0.saturating_mul(u64::from(count)))
    }

    pub fn min(self, o: Units) -> Units {
        Units(self.0.min(o.0))
    }

    /// The amount a JSON number stands for, if it has at most three
    /// decimals and lies in `0..=MAX`: exactly when `x` is the double
    /// nearest to some amount of thousandths. Below `MAX` (< 2^51
    /// thousandths) `x * 1000` rounds to that amount's thousandths, and
    /// dividing them by 1000 is correctly rounded, so it gives back `x`;
    /// for a number with more decimals it gives another double.
    pub fn from_number(x: f64) -> Option<Units> {
        let m = x * Self::SCALE as f64;
        if !m.is_finite() || m < 0.0 || m > Self::MAX.0 as f64 {
            return None;
        }
        let r = m.round();
        (r / Self::SCALE as f64 == x).then_some(Units(r as u64))
    }

    /// The nearest number, for JavaScript and for formatting.
    pub fn to_number(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }

    /// The whole part and the thousandths.
    pub const fn split(self) -> (u64, u64) {
        (self.0 / Self::SCALE, self.0 % Self::SCALE)
    }

    /// The decimals after the point, without trailing zeros ("25" for
    /// 0.25); empty for a whole amount.
    pub fn decimals(self) -> String {
        let frac = self.0 % Self::SCALE;
        let digits = [frac / 100, frac / 10 % 10, frac % 10];
        let keep = if digits[2] != 0 { 3 } else if digits[1] != 0 { 2 } else { usize::from(digits[0] != 0) };
        digits[..keep].iter().map(|d| char::from(b'0' + *d as u8)).collect()
    }
}

/// Why decimal text is not an amount of units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitsParseError;

impl std::fmt::Display for UnitsParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a decimal number of units of 0 or more with at most 3 decimals")
    }
}

impl std::error::Error for UnitsParseError {}

/// Exact decimal text ("0.25", "12", "1.500"), as the upstream service writes
/// a deduction: read digit by digit, never through a float.
impl std::str::FromStr for Units {
    type Err = UnitsParseError;

    fn from_str(s: &str) -> Result<Units, UnitsParseError> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
            return Err(UnitsParseError);
        }
        // Trailing zeros past the thousandths carry nothing ("1.5000").
        let frac = frac.trim_end_matches('0');
        if frac.len() > 3 {
            return Err(UnitsParseError);
        }
        let w: u64 = whole.parse().map_err(|_| UnitsParseError)?;
        let f: u64 = format!("{frac:0<3}").parse().map_err(|_| UnitsParseError)?;
        w.checked_mul(Units::SCALE)
            .and_then(|m| m.checked_add(f))
            .filter(|m| *m <= Units::MAX.0)
            .map(Units)
            .ok_or(UnitsParseError)
    }
}

impl std::ops::Add for Units {
    type Output = Units;
    fn add(self, o: Units) -> Units {
        self.saturating_add(o)
    }
}

impl std::ops::AddAssign for Units {
    fn add_assign(&mut self, o: Units) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Units {
    fn sum<I: Iterator<Item = Units>>(iter: I) -> Units {
        iter.fold(Units::ZERO, |a, b| a + b)
    }
}

/// Decimal text with no float formatting ("0.25", "12.5", "100").
impl std::fmt::Display for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.split().0)?;
        let decimals = self.decimals();
        if !decimals.is_empty() {
            write!(f, ".{decimals}")?;
        }
        Ok(())
    }
}

impl Serialize for Units {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (whole, frac) = self.split();
        if frac == 0 {
            s.serialize_u64(whole)
        } else {
            s.serialize_f64(self.to_number())
        }
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Units, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Units;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of units of 0 or more, with at most 3 decimals")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Units, E> {
                n.checked_mul(Units::SCALE)
                    .filter(|m| *m <= Units::MAX.0)
                    .map(Units)
                    .ok_or_else(|| E::custom("a number of units too large to carry exactly"))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Units, E> {
                u64::try_from(n).map_err(|_| E::custom("a negative number of units")).and_then(|n| self.visit_u64(n))
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Units, E> {
                Units::from_number(x).ok_or_else(|| E::custom("not a number of units of 0 or more with at most 3 decimals"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A snapshot of one account's quota, as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Requests waiting in the server's queue (sent with `queue` while
    /// their slots were busy), in the order they start within each kind.
    /// They hold no slot and reserve their units. Absent from a server
    /// without the queue: read as empty.
    #[serde(default)]
    pub queued: Vec<QueuedRequest>,
    /// When the package figures were last read from an upstream service
    /// whose balances lag (absent when the server owns the packages): the
    /// widget says how old they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_synced_at_ms: Option<Millis>,
}

impl ServerState {
    /// Whether the state shows the request the client sent as `id` (its
    /// `client_request_id`): running, waiting in the queue, or ended. The
    /// server's figures then count it, and a client's hold for it would
    /// count it twice.
    pub fn shows_request(&self, id: &str) -> bool {
        let is = |c: &Option<String>| c.as_deref() == Some(id);
        self.running.iter().any(|t| is(&t.client_request_id))
            || self.queued.iter().any(|t| is(&t.client_request_id))
            || self.finished.iter().any(|t| is(&t.client_request_id))
    }
}

/// Concurrent generation slots of one kind of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotPool {
    /// The kind of work: "image", "video", ...; unique within a state.
    pub kind: String,
    /// Slots the account may hold at once. Fixed by the plan: buying packages
    /// adds units, never slots.
    pub limit: u32,
    /// Slots held by running tasks of this kind.
    pub in_use: u32,
    /// Units one item of this kind costs (one image, one video).
    pub unit_cost: Units,
    /// How a request of `count` items takes slots.
    pub slot_rule: SlotRule,
}

/// How many slots a request holds while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Package {
    /// Unique within a state.
    pub id: String,
    /// Shown to the user as text, never as markup.
    pub name: String,
    /// Units the package came with.
    pub total: Units,
    /// Units not yet deducted; never more than `total`.
    pub remaining: Units,
    /// When the package starts to count.
    pub effective_at_ms: Millis,
    /// When its unused units lapse.
    pub expires_at_ms: Millis,
    pub status: PackageStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl PackageStatus {
    /// Every status, in the order of [`PackageStatus::NAMES`].
    pub const ALL: [PackageStatus; 4] =
        [PackageStatus::Pending, PackageStatus::Active, PackageStatus::Expired, PackageStatus::Exhausted];
    /// Their names on the wire (and in the page's `data-status`).
    pub const NAMES: [&'static str; 4] = ["pending", "active", "expired", "exhausted"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A task holding slots and reserving units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningTask {
    pub id: String,
    pub kind: String,
    /// Slots it holds until it ends.
    pub slots: u32,
    /// Units set aside for it; deducted only if it succeeds.
    pub reserved_units: Units,
    /// The id the client sent with its submit, if any.
    // Absent or null on the wire (serde writes null): both are declared.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | null"))]
    pub client_request_id: Option<String>,
    pub started_at_ms: Millis,
}

/// A request waiting in the server's queue: it holds no slot, reserves
/// its units (R2 counts them), and starts, first in first out within its
/// kind, as soon as its slots are free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedRequest {
    /// The server's id of the request, which it keeps as a running task
    /// once it starts; `DELETE /api/generations/{id}` cancels it.
    pub id: String,
    pub kind: String,
    /// Items asked for.
    pub count: u32,
    /// Units set aside for it from the moment it was queued; deducted
    /// only if it starts and succeeds.
    pub reserved_units: Units,
    /// Its place among the waiting requests of its kind: 1 starts next.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub place: u32,
    /// The id the client sent with its submit, if any.
    // Absent or null on the wire (serde writes null): both are declared.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | null"))]
    pub client_request_id: Option<String>,
    /// When it began to wait.
    pub queued_at_ms: Millis,
}

/// A task that ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FinishedTask {
    pub id: String,
    pub kind: String,
    pub slots: u32,
    pub outcome: Outcome,
    /// Units deducted. Always 0 unless `outcome` is `succeeded`.
    pub units_charged: Units,
    /// Why it failed or was refused, as text for the user.
    // Absent or null on the wire (serde writes null): both are declared.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | null"))]
    pub reason: Option<String>,
    // Absent or null on the wire (serde writes null): both are declared.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | null"))]
    pub client_request_id: Option<String>,
    pub finished_at_ms: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitRequest {
    pub kind: String,
    /// Items asked for: images, or 1 for a video.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub count: u32,
    /// Chosen by the client; a repeat with the same id returns the first
    /// answer and reserves nothing more.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub client_request_id: String,
    // Absent or null on the wire (serde writes null): both are declared.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | null"))]
    pub prompt: Option<String>,
    /// When every slot of its kind is busy: wait in the server's queue
    /// (accepted as queued, its units reserved at once) instead of being
    /// refused with 1303. Absent: false. A server without the queue
    /// ignores it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub queue: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The answer to an accepted submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitAccepted {
    pub task_id: String,
    pub client_request_id: String,
    pub slots: u32,
    pub reserved_units: Units,
    /// The revision that first shows the task.
    pub revision: u64,
    /// Only for a request that waits in the queue: its place among the
    /// waiting requests of its kind (1 starts next). Absent: it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub place: Option<u32>,
}

/// The answer to `DELETE /api/generations/{id}`: the queued request is
/// cancelled, its units released, nothing charged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancelled {
    pub task_id: String,
    /// Units its reservation held, released.
    pub units_released: Units,
    /// The revision that shows it cancelled.
    pub revision: u64,
}

/// Every error body the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Too many requests in a short time.
    pub const RATE_LIMITED: u32 = 1302;
    /// The content breaks the service's policy.
    pub const CONTENT_POLICY: u32 = 1301;
    /// The account may not use that resource.
    pub const NO_PERMISSION: u32 = 1103;
    /// The upstream service could not be reached or failed.
    pub const UPSTREAM_UNAVAILABLE: u32 = 5001;
    /// The request itself is malformed (unknown kind, zero count, ...).
    pub const BAD_REQUEST: u32 = 1200;
    /// Missing or unknown credentials.
    pub const UNAUTHORIZED: u32 = 1000;
    /// The task does not exist for this account.
    pub const NOT_FOUND: u32 = 1404;
    /// A fault of the server; the detail goes to its log only.
    pub const INTERNAL_ERROR: u32 = 1500;
}

#[cfg(test)]
mod tests {
    use super::PackageStatus;

    #[test]
    fn package_status_names_are_the_wire_names() {
        for (i, s) in PackageStatus::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.name()));
        }
    }
}
