//! The state machine. Every method takes the clock as a value (`now`, local
//! milliseconds since the epoch) and does no I/O.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt as stdfmt;

use super::queue::{Admission, Figures, Refusal, Waiting};
use super::rules::{self, Capacity};
use super::text::Msg;
use super::words::say;
use super::validate::{validate, StateError};
use super::wire::{Millis, Outcome, ServerState, SlotPool, Units};

/// Tunables, all with defaults a dashboard can keep.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// A state older than this (by the local clock, since it arrived or was
    /// last confirmed current) blocks submit (R5).
    pub stale_after_ms: Millis,
    /// A submit hold the server never confirms is released after this.
    pub hold_timeout_ms: Millis,
    /// Active packages expiring within this many days are highlighted.
    pub expiring_soon_days: u32,
    /// Available units under this are announced as low.
    pub low_units: Units,
    /// How many recent attempts the list keeps.
    pub max_attempts: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stale_after_ms: 30_000,
            hold_timeout_ms: 20_000,
            expiring_soon_days: 7,
            low_units: Units::whole(20),
            max_attempts: 8,
        }
    }
}

/// The state of the link to the server, as the sync layer reports it (and
/// as a leading tab relays it: `{"state": "reconnecting", "attempt": 2}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Link {
    /// The page pushes states itself; there is no connection to judge.
    Manual,
    /// First connection under way.
    Connecting,
    /// Connected: states arrive as the server makes them.
    Live,
    /// The connection dropped; the sync layer is trying again.
    Reconnecting { attempt: u32 },
    /// Paused while the tab is hidden; resyncs when it shows again.
    Paused,
}

/// A submit that has begun and that the server has not yet shown (R1, R3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The client request id, for the dashboard to send to its server.
    pub id: String,
    pub kind: String,
    pub count: u32,
    /// Slots it holds: 0 for a request that will wait in the server's
    /// queue (R8), which holds no slot until it starts ([`Hold::waits`]).
    pub slots: u32,
    pub cost: Units,
    pub begun_at: Millis,
}

impl Hold {
    /// Whether it will wait in the server's queue: it was begun while its
    /// kind had no slot free for it, with the queue on ([`Gate::Queue`]).
    pub fn waits(&self) -> bool {
        self.slots == 0
    }
}

/// What a submit of the current request does when the gate is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Its slots are free and the units suffice: it starts.
    Start,
    /// Every slot it needs is busy, or requests of its kind wait already,
    /// and the units suffice: sent with `queue`, it waits on the server
    /// behind `ahead` requests of its kind (R8), its units reserved.
    Queue { ahead: u32 },
}

/// How a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldEnd {
    /// The server's state shows the task: its own figures now count it.
    Confirmed,
    /// The dashboard reports that the server refused the request.
    Refused,
    /// The dashboard reports that the request failed (network, 5xx, ...).
    Failed,
    /// No word within `hold_timeout_ms`.
    TimedOut,
}

/// Why submit is blocked. The first that applies, in this order, is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    NoState,
    Connecting,
    Reconnecting,
    Paused,
    Stale { age_ms: Millis },
    EmptyRequest,
    UnknownKind { kind: String },
    Slots { kind: String, free: u32, needed: u32, limit: u32 },
    Units { available: Units, cost: Units },
    /// The server asked to wait (`Retry-After` on a refusal): `why` it
    /// refused, in words, and how long is left.
    Wait { left_ms: Millis, why: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    Blocked(Blocked),
    /// A hold with this client request id already exists.
    DuplicateId(String),
}

impl SubmitError {
    /// The error in words, with numbers worded by `f`.
    pub fn message(&self, f: &dyn super::Fmt) -> String {
        match self {
            SubmitError::Blocked(b) => b.message(f),
            SubmitError::DuplicateId(id) => format!("a submit with request id \"{id}\" is already in flight"),
        }
    }
}

impl stdfmt::Display for SubmitError {
    fn fmt(&self, f: &mut stdfmt::Formatter<'_>) -> stdfmt::Result {
        f.write_str(&self.message(&super::PlainFmt))
    }
}

impl std::error::Error for SubmitError {}

/// What `apply_state` did with a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Newer than what we had: it is now the state shown.
    Newer,
    /// The revision we already have: only freshness was renewed.
    Duplicate,
    /// Older than what we have: ignored (R4).
    Older,
}

/// An attempt that ended on the client side without the server ever
/// showing it (refused, failed in transit, timed out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LocalAttempt {
    pub hold: Hold,
    pub end: HoldEnd,
    pub reason: Option<String>,
    pub at: Millis,
}

/// The widget's whole state. See the module docs of `core`.
#[derive(Clone, Debug)]
pub struct Quota {
    pub(crate) config: Config,
    pub(crate) state: Option<ServerState>,
    /// Local time the current revision arrived or was last confirmed.
    pub(crate) confirmed_at: Millis,
    /// Local time the current revision arrived.
    pub(crate) arrived_at: Millis,
    pub(crate) link: Link,
    pub(crate) holds: Vec<Hold>,
    pub(crate) kind: String,
    pub(crate) count: u32,
    /// Whether a request may wait in the server's queue when its slots are
    /// busy (the `queue` option).
    pub(crate) queue: bool,
    pub(crate) local: VecDeque<LocalAttempt>,
    pub(crate) error: Option<String>,
    /// Until when the server asked submits to wait, and why.
    pub(crate) wait: Option<(Millis, String)>,
    announcements: Vec<Announcement>,
}

/// A change a user must hear about, kept as values until it is worded in
/// the page's locale by `take_announcements`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Announcement {
    SlotFree { kind: String, free: u32, limit: u32 },
    UnitsLow { available: Units },
    Done { charged: Units },
    Failed,
    RequestFailed,
    Refused,
    NoAnswer,
}

impl Announcement {
    fn text(&self, f: &dyn super::Fmt) -> String {
        match self {
            Announcement::SlotFree { kind, free, limit } => say(
                f,
                Msg::SaySlotFree,
                Some(f64::from(*free)),
                &[
                    ("kind", &super::words::kind_title(f, kind)),
                    ("free", &f.number(u64::from(*free))),
                    ("limit", &f.number(u64::from(*limit))),
                ],
            ),
            Announcement::UnitsLow { available } => {
                say(f, Msg::SayUnitsLow, Some(available.to_number()), &[("available", &f.units(*available))])
            }
            Announcement::Done { charged } => {
                say(f, Msg::SayDone, Some(charged.to_number()), &[("units", &f.units(*charged))])
            }
            Announcement::Failed => say(f, Msg::SayFailed, None, &[]),
            Announcement::RequestFailed => say(f, Msg::SayRequestFailed, None, &[]),
            Announcement::Refused => say(f, Msg::SayRefused, None, &[]),
            Announcement::NoAnswer => say(f, Msg::SayNoAnswer, None, &[]),
        }
    }
}

impl Quota {
    pub fn new(config: Config) -> Self {
        Quota {
            config,
            state: None,
            confirmed_at: 0,
            arrived_at: 0,
            link: Link::Manual,
            holds: Vec::new(),
            kind: "image".to_owned(),
            count: 1,
            queue: false,
            local: VecDeque::new(),
            error: None,
            wait: None,
            announcements: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> Option<&ServerState> {
        self.state.as_ref()
    }

    pub fn holds(&self) -> &[Hold] {
        &self.holds
    }

    pub fn link(&self) -> Link {
        self.link
    }

    pub fn revision(&self) -> Option<u64> {
        self.state.as_ref().map(|s| s.revision)
    }

    /// The last input error (a bad state), until a good state replaces it.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn request(&self) -> (&str, u32) {
        (&self.kind, self.count)
    }

    /// Announcements for `aria-live` made since the last call, worded with
    /// `f` (the page's locale in the browser).
    pub fn take_announcements(&mut self, f: &dyn super::Fmt) -> Vec<String> {
        std::mem::take(&mut self.announcements).iter().map(|a| a.text(f)).collect()
    }

    /// The request the dashboard is preparing: its kind and item count.
    pub fn set_request(&mut self, kind: &str, count: u32) {
        self.kind = kind.to_owned();
        self.count = count;
    }

    /// Whether a request whose slots are busy may wait in the server's
    /// queue (R8) instead of being blocked: the `queue` option.
    pub fn set_queue(&mut self, queue: bool) {
        self.queue = queue;
    }

    pub fn queue(&self) -> bool {
        self.queue
    }

    /// The server asked submits to wait until local time `until`
    /// (`Retry-After`), because of `why` (worded): the gate stays closed,
    /// with that reason, until then.
    pub fn wait_until(&mut self, until: Millis, why: String) {
        self.wait = Some((until, why));
    }

    pub fn set_link(&mut self, link: Link) {
        self.link = link;
    }

    /// Records an error from outside the core (a bad payload that never
    /// parsed), keeping the last good state.
    pub fn report_error(&mut self, message: String) {
        self.error = Some(message);
    }

    /// The server said nothing changed (an HTTP 304, a keep-alive on a live
    /// stream): the state shown is current as of `now`.
    pub fn confirm_current(&mut self, now: Millis) {
        if self.state.is_some() {
            self.confirmed_at = now;
        }
    }

    /// Takes a state from the server. A bad one is an error and changes
    /// nothing but the error shown; an older one is ignored (R4).
    pub fn apply_state(&mut self, next: ServerState, now: Millis) -> Result<Applied, StateError> {
        if let Err(e) = validate(&next) {
            self.error = Some(e.to_string());
            return Err(e);
        }
        self.error = None;
        let applied = match &self.state {
            Some(cur) if next.revision < cur.revision => return Ok(Applied::Older),
            Some(cur) if next.revision == cur.revision => {
                self.confirmed_at = now;
                return Ok(Applied::Duplicate);
            }
            _ => Applied::Newer,
        };
        let before = self.state.as_ref().map(|s| Snapshot::of(self, s));
        // The server's figures now count every task it shows, so the holds
        // for those tasks end: counting both would block twice (R1, R3).
        self.holds.retain(|h| !next.shows_request(&h.id));
        self.local.retain(|a| !next.shows_request(&a.hold.id));
        if let Some(before) = before {
            self.announce_changes(&before, &next);
        }
        self.state = Some(next);
        self.confirmed_at = now;
        self.arrived_at = now;
        Ok(applied)
    }

    /// Begins a submit of the current request: checks the gate and takes a
    /// hold on its slots and units (R7). `id` is the client request id.
    pub fn begin_submit(&mut self, id: String, now: Millis) -> Result<Hold, SubmitError> {
        self.expire_holds(now);
        let gate = self.gate(now).map_err(SubmitError::Blocked)?;
        if self.holds.iter().any(|h| h.id == id) {
            return Err(SubmitError::DuplicateId(id));
        }
        let (slots, cost) = self.demand().expect("the gate checked the kind");
        // A request that will wait holds no slot, only its units (R8).
        let slots = if gate == Gate::Start { slots } else { 0 };
        let hold = Hold { id, kind: self.kind.clone(), count: self.count, slots, cost, begun_at: now };
        self.holds.push(hold.clone());
        Ok(hold)
    }

    /// Ends a hold on the dashboard's word (refused or failed). Nothing is
    /// charged: the remaining units never counted the hold (R3). Returns
    /// whether such a hold existed.
    pub fn end_hold(&mut self, id: &str, end: HoldEnd, reason: Option<String>, now: Millis) -> bool {
        let Some(i) = self.holds.iter().position(|h| h.id == id) else {
            return false;
        };
        let hold = self.holds.remove(i);
        if end != HoldEnd::Confirmed {
            self.announcements.push(match end {
                HoldEnd::Refused => Announcement::Refused,
                HoldEnd::TimedOut => Announcement::NoAnswer,
                _ => Announcement::RequestFailed,
            });
            self.local.push_front(LocalAttempt { hold, end, reason, at: now });
            self.local.truncate(self.config.max_attempts);
        }
        true
    }

    /// Moves the clock: releases holds that waited too long.
    pub fn tick(&mut self, now: Millis) {
        self.expire_holds(now);
    }

    fn expire_holds(&mut self, now: Millis) {
        let timeout = self.config.hold_timeout_ms;
        let late: Vec<String> =
            self.holds.iter().filter(|h| now - h.begun_at >= timeout).map(|h| h.id.clone()).collect();
        for id in late {
            self.end_hold(&id, HoldEnd::TimedOut, None, now);
        }
    }

    /// The earliest local time at which `tick` would change something.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.holds.iter().map(|h| h.begun_at + self.config.hold_timeout_ms).min()
    }

    pub(crate) fn pool(&self, kind: &str) -> Option<&SlotPool> {
        self.state.as_ref()?.pools.iter().find(|p| p.kind == kind)
    }

    /// Slots and units the current request asks for.
    pub fn demand(&self) -> Option<(u32, Units)> {
        let pool = self.pool(&self.kind)?;
        Some((pool.slot_rule.slots_for(self.count), pool.unit_cost.times(self.count)))
    }

    /// Slots this tab's holds of `kind` take; a hold that will wait takes
    /// none.
    pub(crate) fn held_slots(&self, kind: &str) -> u32 {
        self.holds.iter().filter(|h| h.kind == kind).map(|h| h.slots).sum()
    }

    /// The server's figures as the queue's rules read them
    /// ([`Figures`]): its pools, its packages, its running tasks and
    /// its waiting requests, which reserve their units (R2) and close
    /// their kind to a request that does not queue. With `holds`, this
    /// tab's holds count as the server will count them: a hold that starts
    /// takes its slots and reserves its units, one that will wait joins
    /// the end of its kind's queue.
    fn counted(&self, holds: bool) -> Option<Counted<'_>> {
        let s = self.state.as_ref()?;
        let slots = |kind: &str, count| s.pools.iter().find(|p| p.kind == kind).map_or(0, |p| p.slot_rule.slots_for(count));
        let mut waiting: Vec<Waiting<()>> =
            s.queued.iter().map(|q| Waiting { id: (), kind: q.kind.clone(), slots: slots(&q.kind, q.count), cost: q.reserved_units }).collect();
        let mut running_reserved = s.running.iter().map(|t| t.reserved_units).sum();
        let mut pools = Cow::Borrowed(&s.pools[..]);
        if holds && !self.holds.is_empty() {
            let pools = pools.to_mut();
            for h in &self.holds {
                if h.waits() {
                    waiting.push(Waiting { id: (), kind: h.kind.clone(), slots: slots(&h.kind, h.count), cost: h.cost });
                } else {
                    running_reserved += h.cost;
                    if let Some(p) = pools.iter_mut().find(|p| p.kind == h.kind) {
                        p.in_use = p.in_use.saturating_add(h.slots);
                    }
                }
            }
        }
        Some(Counted { pools, waiting, running_reserved, spendable: rules::remaining(s) })
    }

    /// The figures of a kind's pool that a request is judged on: the
    /// server's, with this tab's holds counted ([`Quota::counted`]).
    fn capacity(&self, kind: &str) -> Option<Capacity> {
        self.counted(true)?.figures().capacity(kind)
    }

    /// Free slots of a kind (R1): limit - in use - held locally.
    pub fn free_slots(&self, kind: &str) -> Option<u32> {
        Some(self.capacity(kind)?.free_slots())
    }

    /// Units in active, effective, unexpired packages, by the server's clock.
    /// Holds and reservations do not change it: only a deduction does (R3).
    pub fn remaining_units(&self) -> Option<Units> {
        let s = self.state.as_ref()?;
        Some(rules::remaining(s))
    }

    /// Units the server sets aside: for running tasks and for waiting
    /// requests.
    pub fn reserved_units(&self) -> Option<Units> {
        Some(self.counted(false)?.figures().reserved())
    }

    pub fn held_units(&self) -> Units {
        self.holds.iter().map(|h| h.cost).sum()
    }

    /// Units a new request may use (R2).
    pub fn available_units(&self) -> Option<Units> {
        Some(self.remaining_units()?.saturating_sub(self.reserved_units()?).saturating_sub(self.held_units()))
    }

    /// Age of the state shown, by the local clock.
    pub fn age(&self, now: Millis) -> Option<Millis> {
        self.state.as_ref().map(|_| (now - self.confirmed_at).max(0))
    }

    /// How old the package figures are at local time `now`, when the
    /// server reads them from an upstream service: its sync time as of the
    /// state's server time, plus the time since that state arrived.
    pub fn packages_age(&self, now: Millis) -> Option<Millis> {
        let s = self.state.as_ref()?;
        let synced = s.packages_synced_at_ms?;
        Some((s.server_time_ms - synced).max(0) + (now - self.arrived_at).max(0))
    }

    /// Why submit is blocked now, or `None` when the gate is open.
    pub fn blocked(&self, now: Millis) -> Option<Blocked> {
        self.gate(now).err()
    }

    /// What a submit of the current request would do now: start, wait in
    /// the server's queue (with the `queue` option), or nothing, and why.
    /// The slot, unit and queue rules are the queue's
    /// ([`Figures::admit`]), with this tab's holds counted.
    pub fn gate(&self, now: Millis) -> Result<Gate, Blocked> {
        if self.state.is_none() {
            return Err(Blocked::NoState);
        }
        match self.link {
            Link::Connecting => return Err(Blocked::Connecting),
            Link::Reconnecting { .. } => return Err(Blocked::Reconnecting),
            Link::Paused => return Err(Blocked::Paused),
            Link::Manual | Link::Live => {}
        }
        let age = self.age(now).unwrap_or(0);
        if age > self.config.stale_after_ms {
            return Err(Blocked::Stale { age_ms: age });
        }
        if let Some((until, why)) = &self.wait {
            if *until > now {
                return Err(Blocked::Wait { left_ms: until - now, why: why.clone() });
            }
        }
        if self.count == 0 {
            return Err(Blocked::EmptyRequest);
        }
        let kind = &self.kind;
        let admission = self.counted(true).map(|c| c.figures().admit(kind, self.count, self.queue, u32::MAX));
        let limit = self.pool(kind).map_or(0, |p| p.limit);
        match admission {
            Some(Admission::Start { .. }) => Ok(Gate::Start),
            Some(Admission::Queue { ahead, .. }) => Ok(Gate::Queue { ahead }),
            Some(Admission::Refuse(Refusal::Slots { free, needed, .. })) => {
                Err(Blocked::Slots { kind: kind.clone(), free, needed, limit })
            }
            Some(Admission::Refuse(Refusal::OverLimit { needed, limit })) => {
                Err(Blocked::Slots { kind: kind.clone(), free: 0, needed, limit })
            }
            Some(Admission::Refuse(Refusal::Units { available, cost })) => Err(Blocked::Units { available, cost }),
            // No limit is set on the queue here: the server says when its
            // own is reached.
            Some(Admission::Refuse(Refusal::UnknownKind | Refusal::QueueFull { .. })) | None => {
                Err(Blocked::UnknownKind { kind: kind.clone() })
            }
        }
    }

    fn announce_changes(&mut self, before: &Snapshot, next: &ServerState) {
        for pool in &next.pools {
            let was = before.free.iter().find(|(k, _)| *k == pool.kind).map(|(_, f)| *f);
            let now = pool.limit.saturating_sub(pool.in_use).saturating_sub(self.held_slots(&pool.kind));
            if was == Some(0) && now > 0 {
                self.announcements.push(Announcement::SlotFree { kind: pool.kind.clone(), free: now, limit: pool.limit });
            }
        }
        let reserved: Units = next.running.iter().map(|t| t.reserved_units).sum();
        let available = rules::remaining(next).saturating_sub(reserved).saturating_sub(self.held_units());
        let low = self.config.low_units;
        if before.available >= low && available < low {
            self.announcements.push(Announcement::UnitsLow { available });
        }
        for t in &next.finished {
            if before.finished.contains(&t.id) {
                continue;
            }
            self.announcements.push(match t.outcome {
                Outcome::Succeeded => Announcement::Done { charged: t.units_charged },
                Outcome::Failed => Announcement::Failed,
                Outcome::Refused => Announcement::Refused,
            });
        }
    }
}

/// The server's figures as [`Quota::counted`] gathers them, owned, for
/// the queue's rules to read ([`Counted::figures`]).
struct Counted<'a> {
    pools: Cow<'a, [SlotPool]>,
    waiting: Vec<Waiting<()>>,
    running_reserved: Units,
    spendable: Units,
}

impl Counted<'_> {
    fn figures(&self) -> Figures<'_, ()> {
        Figures { pools: &self.pools, spendable: self.spendable, running_reserved: self.running_reserved, waiting: &self.waiting, held: &[] }
    }
}

/// What announcements compare against.
struct Snapshot {
    free: Vec<(String, u32)>,
    available: Units,
    finished: Vec<String>,
}

impl Snapshot {
    fn of(q: &Quota, s: &ServerState) -> Snapshot {
        Snapshot {
            free: s.pools.iter().map(|p| (p.kind.clone(), q.free_slots(&p.kind).unwrap_or(0))).collect(),
            available: q.available_units().unwrap_or_default(),
            finished: s.finished.iter().map(|t| t.id.clone()).collect(),
        }
    }
}

