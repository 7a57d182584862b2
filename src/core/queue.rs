//! R8, the queue: a request sent with `queue` while its slots are busy
//! waits on the server instead of being refused. Its units are reserved at
//! once (R2 counts them, so the queue never promises what the packages
//! cannot pay), it holds no slot, and it starts in order, first in first
//! out per kind, the moment its slots are free. Cancelled, failed or
//! refused, it is charged nothing (R3). At most a set number of requests
//! wait per account.
//!
//! Two layers, both pure:
//! - decisions over one account's figures as a store transaction loads
//!   them ([`Figures`]): [`Figures::admit`] judges a new request (start,
//!   queue or refuse), [`Figures::starts`] says which waiting requests
//!   start once slots are free (and which can never start), and
//!   [`Figures::ahead`] gives a waiting request's place. A store calls them
//!   with the rows it read and writes what they say, in the same
//!   transaction: `admit` on a submit, `starts` after every change that
//!   frees slots (a task ends, a waiting request is cancelled, the limit
//!   rises, a hold ends).
//!
//!   ```text
//!   // in the account's transaction (the store serialises them, as for
//!   // today's submit, so that a request starts exactly once):
//!   let f = Figures { pools: &pools, spendable, running_reserved, waiting: &rows, held: &held };
//!   match f.admit(&req.kind, req.count, req.queue, max_waiting) {
//!       Admission::Start { slots, cost } => /* insert a running task */,
//!       Admission::Queue { slots, cost, ahead } => /* insert a queued row: 201, place ahead + 1 */,
//!       Admission::Refuse(why) => /* a refusal, charged nothing */,
//!   }
//!   // after a task ends or a queued row is cancelled, with the rows re-read:
//!   let Starts { start, refuse } = f.starts(); // mark `start` running, in order
//!   ```
//!
//!   `rows` are the account's queued rows in arrival order, every kind: the
//!   order in which the account's transactions admitted them (a store's
//!   ids grow in that order, so `ORDER BY id`), not the clock's, which
//!   differs between instances. A request put back (below) takes its place
//!   by arrival again: ahead of every request that came after it.
//! - Holds ([`held_kinds`]): upstream, the service may refuse a create as
//!   over its own concurrency (its 1303: slots taken by tasks started
//!   elsewhere). A request that may wait is then put back in the queue
//!   instead of refused, and its kind is held until the backoff passes:
//!   while held, no waiting request of the kind starts and a newcomer of it
//!   finds no slot free.
//! - [`Book`], one account held in memory that applies those decisions:
//!   the reference for what a store does with them, and what the property
//!   tests drive.
//!
//! The slot and unit rules are [`Capacity`]'s and
//! [`SlotRule`](super::wire::SlotRule)'s, and a success is paid by
//! [`rules::plan_deduction`] (R6): nothing is restated here.

use super::rules::{self, Capacity, Shortfall};
use super::wire::{Millis, SlotPool, Units};

/// A request waiting for its slots: a queued row. It reserves `cost` and
/// holds no slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting<Id> {
    pub id: Id,
    pub kind: String,
    /// Slots it will hold once it starts
    /// ([`SlotRule::slots_for`](super::wire::SlotRule::slots_for)).
    pub slots: u32,
    /// Units reserved for it from the moment it was queued.
    pub cost: Units,
}

/// One account's figures, as a transaction loads them: what every decision
/// of the queue reads.
#[derive(Clone, Copy, Debug)]
pub struct Figures<'a, Id> {
    /// The account's pools. `in_use` counts running tasks only: a waiting
    /// request holds no slot.
    pub pools: &'a [SlotPool],
    /// Units in the packages that count ([`rules::remaining`], or the
    /// store's sum over the same packages).
    pub spendable: Units,
    /// Units reserved by running tasks, every kind.
    pub running_reserved: Units,
    /// Every waiting request of the account, every kind, in arrival order.
    pub waiting: &'a [Waiting<Id>],
    /// Kinds held now ([`held_kinds`]): none of their waiting requests
    /// starts, and a newcomer finds no slot free.
    pub held: &'a [String],
}

/// The kinds whose hold runs at `now`, out of `(kind, held until)` pairs: a
/// hold lasts until its time, exclusive.
pub fn held_kinds<'k>(holds: impl IntoIterator<Item = (&'k str, Millis)>, now: Millis) -> Vec<String> {
    holds.into_iter().filter(|&(_, until)| until > now).map(|(kind, _)| kind.to_owned()).collect()
}

/// What the service's refusal of a create as over its own concurrency
/// (its 1303: slots taken by tasks started elsewhere) does to a request
/// that the queue had started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterBusy {
    /// Sent with `queue`: it waits again, in its place by arrival, its
    /// units still reserved, its kind held until the backoff passes.
    Wait,
    /// Sent without: the service's refusal is its answer, charged nothing.
    Refuse,
}

/// R8 upstream: what the service's 1303 does to a started request, sent
/// with `queue` or not. [`Book::put_back`] and a store's transaction both
/// follow it.
pub fn after_busy(sent_with_queue: bool) -> AfterBusy {
    if sent_with_queue {
        AfterBusy::Wait
    } else {
        AfterBusy::Refuse
    }
}

/// The answer to a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Its slots are free and the units suffice: it runs now, holding
    /// `slots` and reserving `cost`.
    Start { slots: u32, cost: Units },
    /// It waits, reserving `cost` now and holding no slot; `ahead` requests
    /// of its kind wait before it.
    Queue { slots: u32, cost: Units, ahead: u32 },
    /// Nothing runs, nothing is reserved, nothing is charged.
    Refuse(Refusal),
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The account has no pool of that kind.
    UnknownKind,
    /// R1, for a request sent without `queue` (the service's 1303). `free`
    /// is what it may take: none while `waiting` requests of its kind wait,
    /// since they come first.
    Slots { free: u32, needed: u32, waiting: u32 },
    /// R2, queued reservations counted (1102).
    Units { available: Units, cost: Units },
    /// It asks more slots than the pool's limit, so waiting would never
    /// start it.
    OverLimit { needed: u32, limit: u32 },
    /// `max` requests of the account wait already.
    QueueFull { max: u32 },
}

/// What becomes of waiting requests once slots are free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Starts<Id> {
    /// Requests that start now, in the order to start them. Together they
    /// stay within every pool's limit.
    pub start: Vec<Id>,
    /// Requests that can never start: their kind is gone, or they ask more
    /// slots than its limit (lowered since they were queued). Refuse them,
    /// charged nothing.
    pub refuse: Vec<Id>,
}

impl<Id> Default for Starts<Id> {
    fn default() -> Self {
        Starts { start: Vec::new(), refuse: Vec::new() }
    }
}

impl<Id> Starts<Id> {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.refuse.is_empty()
    }
}

impl<Id: Clone + PartialEq> Figures<'_, Id> {
    pub fn pool(&self, kind: &str) -> Option<&SlotPool> {
        self.pools.iter().find(|p| p.kind == kind)
    }

    /// Units reserved by running and waiting requests (R2 counts both).
    pub fn reserved(&self) -> Units {
        self.running_reserved + self.waiting.iter().map(|w| w.cost).sum()
    }

    /// Requests of `kind` waiting.
    pub fn waiting_of(&self, kind: &str) -> u32 {
        count(self.waiting.iter().filter(|w| w.kind == kind))
    }

    /// Whether `kind` is held ([`held_kinds`]).
    pub fn is_held(&self, kind: &str) -> bool {
        self.held.iter().any(|k| k == kind)
    }

    /// The figures a request of `kind` is judged on. A kind with requests
    /// waiting has no slot free for a newcomer: the waiting come first. A
    /// held kind has none either.
    pub fn capacity(&self, kind: &str) -> Option<Capacity> {
        let pool = self.pool(kind)?;
        let closed = self.waiting_of(kind) > 0 || self.is_held(kind);
        let in_use = if closed { pool.in_use.max(pool.limit) } else { pool.in_use };
        Some(Capacity { limit: pool.limit, in_use, spendable: self.spendable, reserved: self.reserved() })
    }

    /// Judges a new request for `count` items of `kind` (already checked:
    /// 1 to [`rules::MAX_COUNT`]), sent with `queue` or not. At most
    /// `max_waiting` requests wait per account.
    pub fn admit(&self, kind: &str, count: u32, queue: bool, max_waiting: u32) -> Admission {
        let (Some(pool), Some(cap)) = (self.pool(kind), self.capacity(kind)) else {
            return Admission::Refuse(Refusal::UnknownKind);
        };
        let slots = pool.slot_rule.slots_for(count);
        let cost = pool.unit_cost.times(count);
        let free = match cap.admit(slots, cost) {
            Ok(()) => return Admission::Start { slots, cost },
            Err(Shortfall::Units { available }) => return Admission::Refuse(Refusal::Units { available, cost }),
            Err(Shortfall::Slots { free }) => free,
        };
        let waiting = self.waiting_of(kind);
        if !queue {
            return Admission::Refuse(Refusal::Slots { free, needed: slots, waiting });
        }
        if slots > pool.limit {
            return Admission::Refuse(Refusal::OverLimit { needed: slots, limit: pool.limit });
        }
        let available = cap.available_units();
        if available < cost {
            return Admission::Refuse(Refusal::Units { available, cost });
        }
        if count_usize(self.waiting.len()) >= max_waiting {
            return Admission::Refuse(Refusal::QueueFull { max: max_waiting });
        }
        Admission::Queue { slots, cost, ahead: waiting }
    }

    /// Which waiting requests start now, in order, with the pools as they
    /// are (after slots were freed): in each kind, from the oldest, every
    /// request whose slots are free once those before it started; the
    /// first that does not fit stops its kind, so none overtakes another
    /// of its kind. A held kind starts none. Units are not judged again:
    /// they were reserved when the request was queued.
    pub fn starts(&self) -> Starts<Id> {
        let mut out = Starts::default();
        // Slots taken as requests start, and kinds stopped, per pool.
        let mut taken: Vec<u32> = self.pools.iter().map(|p| p.in_use).collect();
        let mut stopped: Vec<bool> = self.pools.iter().map(|p| self.is_held(&p.kind)).collect();
        for w in self.waiting {
            let Some(i) = self.pools.iter().position(|p| p.kind == w.kind) else {
                out.refuse.push(w.id.clone());
                continue;
            };
            let pool = &self.pools[i];
            if w.slots > pool.limit {
                out.refuse.push(w.id.clone());
                continue;
            }
            if stopped[i] {
                continue;
            }
            let cap =
                Capacity { limit: pool.limit, in_use: taken[i], spendable: self.spendable, reserved: Units::ZERO };
            if cap.free_slots() >= w.slots {
                taken[i] += w.slots;
                out.start.push(w.id.clone());
            } else {
                stopped[i] = true;
            }
        }
        out
    }

    /// How many requests of its kind wait before the waiting request `id`.
    pub fn ahead(&self, id: &Id) -> Option<u32> {
        let i = self.waiting.iter().position(|w| w.id == *id)?;
        let kind = &self.waiting[i].kind;
        Some(count(self.waiting[..i].iter().filter(|w| w.kind == *kind)))
    }
}

/// The place of each waiting request within its kind (1 starts next), in
/// the order given (arrival order): what a state shows of the queue.
pub fn places<Id>(waiting: &[Waiting<Id>]) -> Vec<u32> {
    waiting
        .iter()
        .enumerate()
        .map(|(i, w)| count(waiting[..i].iter().filter(|x| x.kind == w.kind)).saturating_add(1))
        .collect()
}

fn count<T>(it: impl Iterator<Item = T>) -> u32 {
    count_usize(it.count())
}

fn count_usize(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A running task, as [`Book`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task<Id> {
    pub id: Id,
    pub kind: String,
    pub slots: u32,
    /// Units reserved; deducted only if it succeeds.
    pub cost: Units,
}

/// What ending a running task or cancelling a waiting request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended<Id> {
    /// Units deducted: what a success cost (as far as the packages had
    /// them, R6); zero for a failure or a cancel.
    pub charged: Units,
    /// Units whose reservation ended (charged or released).
    pub released: Units,
    /// What the freed slots did to the queue, already applied.
    pub starts: Starts<Id>,
}

/// One account in memory: its pools, its packages, its running tasks and
/// its queue, changed only through the decisions of [`Figures`]. What a
/// store does in its transactions, without the store.
#[derive(Clone, Debug)]
pub struct Book<Id> {
    pools: Vec<SlotPool>,
    /// Remaining units of the packages that count, in spending order
    /// (earliest expiry first, R6).
    packages: Vec<Units>,
    running: Vec<Task<Id>>,
    waiting: Vec<Waiting<Id>>,
    max_waiting: u32,
    /// Kinds held (upstream: the service's 1303, until released).
    held: Vec<String>,
    /// Every admitted request, in arrival order: where a request put back
    /// takes its place again.
    arrivals: Vec<Id>,
    /// Requests sent with `queue`: only those are put back.
    may_wait: Vec<Id>,
}

impl<Id: Clone + PartialEq> Book<Id> {
    /// An account with nothing running or waiting. Each pool's `in_use`
    /// is set to zero: the book counts its own tasks.
    pub fn new(mut pools: Vec<SlotPool>, packages: Vec<Units>, max_waiting: u32) -> Book<Id> {
        for p in &mut pools {
            p.in_use = 0;
        }
        Book { pools, packages, running: Vec::new(), waiting: Vec::new(), max_waiting, held: Vec::new(), arrivals: Vec::new(), may_wait: Vec::new() }
    }

    pub fn figures(&self) -> Figures<'_, Id> {
        Figures {
            pools: &self.pools,
            spendable: self.packages.iter().copied().sum(),
            running_reserved: self.running.iter().map(|t| t.cost).sum(),
            waiting: &self.waiting,
            held: &self.held,
        }
    }

    pub fn pools(&self) -> &[SlotPool] {
        &self.pools
    }

    pub fn packages(&self) -> &[Units] {
        &self.packages
    }

    pub fn running(&self) -> &[Task<Id>] {
        &self.running
    }

    /// Waiting requests, oldest first.
    pub fn waiting(&self) -> &[Waiting<Id>] {
        &self.waiting
    }

    pub fn max_waiting(&self) -> u32 {
        self.max_waiting
    }

    /// Kinds held now.
    pub fn held(&self) -> &[String] {
        &self.held
    }

    /// A new request `id` for `count` items of `kind`: admitted, and
    /// started or queued, as [`Figures::admit`] says.
    pub fn submit(&mut self, id: Id, kind: &str, count: u32, queue: bool) -> Admission {
        let admission = self.figures().admit(kind, count, queue, self.max_waiting);
        if queue && !matches!(admission, Admission::Refuse(_)) {
            self.may_wait.push(id.clone());
        }
        match admission {
            Admission::Start { slots, cost } => {
                self.arrivals.push(id.clone());
                self.run(Task { id, kind: kind.to_owned(), slots, cost });
            }
            Admission::Queue { slots, cost, .. } => {
                self.arrivals.push(id.clone());
                self.waiting.push(Waiting { id, kind: kind.to_owned(), slots, cost });
            }
            Admission::Refuse(_) => {}
        }
        admission
    }

    /// Running task `id` ends, in success or failure. A success pays its
    /// reservation from the packages (R6); a failure pays nothing (R3).
    /// Its slots free, and the queue moves.
    pub fn finish(&mut self, id: &Id, succeeded: bool) -> Option<Ended<Id>> {
        let i = self.running.iter().position(|t| t.id == *id)?;
        let task = self.running.remove(i);
        if let Some(p) = self.pools.iter_mut().find(|p| p.kind == task.kind) {
            p.in_use = p.in_use.saturating_sub(task.slots);
        }
        let mut charged = Units::ZERO;
        if succeeded {
            let order: Vec<(usize, Units)> = self.packages.iter().copied().enumerate().collect();
            for (k, take) in rules::plan_deduction(&order, task.cost) {
                self.packages[k] = self.packages[k].saturating_sub(take);
                charged += take;
            }
        }
        Some(Ended { charged, released: task.cost, starts: self.advance() })
    }

    /// Cancels waiting request `id`: its units are released, nothing is
    /// charged, and those behind it may start. `None` if it is not waiting
    /// (a running task ends through [`Book::finish`]).
    pub fn cancel(&mut self, id: &Id) -> Option<Ended<Id>> {
        let i = self.waiting.iter().position(|w| w.id == *id)?;
        let w = self.waiting.remove(i);
        Some(Ended { charged: Units::ZERO, released: w.cost, starts: self.advance() })
    }

    /// The plan changes a pool's limit: a higher one starts waiting
    /// requests, a lower one refuses those that could never start.
    pub fn set_limit(&mut self, kind: &str, limit: u32) -> Starts<Id> {
        if let Some(p) = self.pools.iter_mut().find(|p| p.kind == kind) {
            p.limit = limit;
        }
        self.advance()
    }

    /// Upstream: the service refused to create running task `id` as over
    /// its own concurrency (1303). A request sent with `queue` is put back:
    /// it gives up its slots, keeps its reservation, charges nothing, and
    /// waits again in its place by arrival (ahead of every request that
    /// came after it), even past the longest queue (it was admitted
    /// already: the bound stops newcomers); its kind is held until
    /// [`Book::release`]. `None` if `id` is not running or was sent
    /// without `queue` (the service's refusal is then its answer: ended,
    /// charged nothing).
    pub fn put_back(&mut self, id: &Id) -> Option<Starts<Id>> {
        if after_busy(self.may_wait.contains(id)) == AfterBusy::Refuse {
            return None;
        }
        let i = self.running.iter().position(|t| t.id == *id)?;
        let task = self.running.remove(i);
        if let Some(p) = self.pools.iter_mut().find(|p| p.kind == task.kind) {
            p.in_use = p.in_use.saturating_sub(task.slots);
        }
        let arrival = |x: &Id| self.arrivals.iter().position(|a| a == x);
        let mine = arrival(&task.id);
        let at = self.waiting.iter().position(|w| arrival(&w.id) > mine).unwrap_or(self.waiting.len());
        self.waiting.insert(at, Waiting { id: task.id, kind: task.kind.clone(), slots: task.slots, cost: task.cost });
        self.hold(&task.kind);
        Some(self.advance())
    }

    /// Holds `kind`: none of its waiting requests starts until released.
    pub fn hold(&mut self, kind: &str) {
        if !self.held.iter().any(|k| k == kind) {
            self.held.push(kind.to_owned());
        }
    }

    /// Ends the hold of `kind` (its backoff passed): those of its waiting
    /// requests that fit start.
    pub fn release(&mut self, kind: &str) -> Starts<Id> {
        self.held.retain(|k| k != kind);
        self.advance()
    }

    /// Applies [`Figures::starts`].
    fn advance(&mut self) -> Starts<Id> {
        let starts = self.figures().starts();
        for id in &starts.refuse {
            self.waiting.retain(|w| w.id != *id);
        }
        for id in &starts.start {
            if let Some(i) = self.waiting.iter().position(|w| w.id == *id) {
                let w = self.waiting.remove(i);
                self.run(Task { id: w.id, kind: w.kind, slots: w.slots, cost: w.cost });
            }
        }
        starts
    }

    fn run(&mut self, task: Task<Id>) {
        if let Some(p) = self.pools.iter_mut().find(|p| p.kind == task.kind) {
            p.in_use += task.slots;
        }
        self.running.push(task);
    }
}
