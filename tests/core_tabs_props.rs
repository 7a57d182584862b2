//! Property tests of several tabs over one connection: two to four tabs,
//! each with its own quota and tabs machine, a leadership lock as Web Locks
//! gives it (one holder, the others queued), a channel that reorders and
//! repeats messages and, in its lossy mode, drops them, leaders that die
//! or give way, and a small model of the server, under random clicks,
//! answers, states and clock moves. The rules are checked in every tab
//! after every step, every message crosses the channel as the plain object
//! serde writes (serde_json values here, standing in for the browser's
//! structured clone) and is checked to read back as posted; and the reader
//! of those objects is fuzzed with any JSON value and with broken messages.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::VecDeque;

use common::*;
use proptest::prelude::*;
use quota_widget::core::parse::read_state;
use quota_widget::core::wire::*;
use quota_widget::core::*;
use serde_json::{json, Value};

const KINDS: [&str; 2] = ["image", "video"];
const MAX_TABS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// The user clicks submit in tab `tab`.
    Click { tab: usize, kind: usize, count: u32 },
    /// The channel delivers its k-th message in flight (any order).
    Deliver { k: usize },
    /// ... delivers it and keeps a copy to deliver again.
    Repeat { k: usize },
    /// ... loses it (lossy channel only).
    Lose { k: usize },
    /// The server receives the n-th request in transit.
    Receive { n: usize },
    /// The dashboard reports the n-th request in transit failed or
    /// refused, never seen by the server.
    Report { n: usize, refused: bool },
    /// The n-th running task ends.
    End { n: usize, success: bool },
    /// The leader's connection opens: it fetches the newest state.
    Connect,
    /// The leader's connection brings the k-th newest state (a repeat, or
    /// an older one, for k > 0).
    Push { back: usize },
    /// A ping on the leader's connection.
    Ping,
    /// The leader's connection drops.
    Drop,
    /// Time passes.
    Tick { ms: i64 },
    /// Tab `tab` dies without a word (crash, killed process).
    Die { tab: usize },
    /// Tab `tab` closes (`pagehide`: it says bye).
    Close { tab: usize },
    /// A tab opens in slot `tab`, if that slot is free.
    Open { tab: usize },
    /// Tab `tab` is shown or hidden.
    Show { tab: usize, visible: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..MAX_TABS, 0..2usize, 0..4u32).prop_map(|(tab, kind, count)| Op::Click { tab, kind, count }),
        12 => any::<usize>().prop_map(|k| Op::Deliver { k }),
        1 => any::<usize>().prop_map(|k| Op::Repeat { k }),
        2 => any::<usize>().prop_map(|k| Op::Lose { k }),
        2 => (0..4usize).prop_map(|n| Op::Receive { n }),
        1 => (0..4usize, any::<bool>()).prop_map(|(n, refused)| Op::Report { n, refused }),
        2 => (0..4usize, any::<bool>()).prop_map(|(n, success)| Op::End { n, success }),
        2 => Just(Op::Connect),
        3 => (0..3usize).prop_map(|back| Op::Push { back }),
        1 => Just(Op::Ping),
        1 => Just(Op::Drop),
        3 => (0..3_000i64).prop_map(|ms| Op::Tick { ms }),
        1 => (0..MAX_TABS).prop_map(|tab| Op::Die { tab }),
        1 => (0..MAX_TABS).prop_map(|tab| Op::Close { tab }),
        2 => (0..MAX_TABS).prop_map(|tab| Op::Open { tab }),
        1 => (0..MAX_TABS, any::<bool>()).prop_map(|(tab, visible)| Op::Show { tab, visible }),
    ]
}

/// Steps around a change of leader: clicks, deliveries in any order,
/// deaths, connections and short clock moves, to race a new leader's
/// grants against the old one's still on their way.
fn handover_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MAX_TABS, 0..1usize, 1..3u32).prop_map(|(tab, kind, count)| Op::Click { tab, kind, count }),
        12 => any::<usize>().prop_map(|k| Op::Deliver { k }),
        2 => (0..MAX_TABS).prop_map(|tab| Op::Die { tab }),
        2 => (0..MAX_TABS).prop_map(|tab| Op::Open { tab }),
        4 => Just(Op::Connect),
        3 => (0..400i64).prop_map(|ms| Op::Tick { ms }),
        1 => (0..4usize).prop_map(|n| Op::Receive { n }),
        1 => Just(Op::Push { back: 0 }),
    ]
}

fn read(text: &str) -> Result<ServerState, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "malformed quota state: not valid JSON".to_owned())?;
    read_state(&J(v)).map_err(|e| e.to_string())
}

/// The server, reduced to what the rules need (as in `core_props.rs`).
struct Server {
    state: ServerState,
    history: Vec<ServerState>,
    next_task: u64,
}

impl Server {
    fn new(limit: u32, units: u64, image_cost: u64) -> Server {
        let mut s = state(1);
        s.pools[0].limit = limit;
        s.pools[0].unit_cost = Units::from_milli(image_cost);
        let mut a = package("a", 0, 0, 2);
        a.total = Units::from_milli(units);
        a.remaining = Units::from_milli(units);
        a.status = PackageStatus::Active;
        s.packages = vec![a];
        Server { history: vec![s.clone()], state: s, next_task: 0 }
    }

    fn publish(&mut self) {
        self.state.revision += 1;
        self.history.push(self.state.clone());
    }

    fn available(&self) -> Units {
        let rem: Units = self.state.packages.iter().map(|p| p.remaining).sum();
        rem.saturating_sub(self.state.running.iter().map(|t| t.reserved_units).sum())
    }

    fn finish(&mut self, t: FinishedTask) {
        self.state.finished.insert(0, t);
        self.state.finished.truncate(10);
    }

    /// Takes a request atomically: runs it if it fits, else refuses it.
    fn receive(&mut self, r: &Sent) {
        let available = self.available();
        let pool = self.state.pools.iter_mut().find(|p| p.kind == r.kind).unwrap();
        let fits = pool.in_use + r.slots <= pool.limit && available >= r.cost;
        let id = format!("t{}", self.next_task);
        self.next_task += 1;
        if fits {
            pool.in_use += r.slots;
            let task = RunningTask {
                id,
                kind: r.kind.clone(),
                slots: r.slots,
                reserved_units: r.cost,
                client_request_id: Some(r.id.clone()),
                started_at_ms: T0,
            };
            self.state.running.push(task);
        } else {
            self.finish(FinishedTask {
                id,
                kind: r.kind.clone(),
                slots: r.slots,
                outcome: Outcome::Refused,
                units_charged: Units::ZERO,
                reason: Some("parallel task over resource pack limit".into()),
                client_request_id: Some(r.id.clone()),
                finished_at_ms: T0,
            });
        }
        self.publish();
    }

    fn end(&mut self, n: usize, success: bool) {
        let done = end_running(&mut self.state, n, success, None);
        self.finish(done);
        self.publish();
    }
}

/// A request that left the browser and that the server has not received.
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    tab: usize,
    kind: String,
    slots: u32,
    cost: Units,
    /// The dashboard gives up on it then: it is lost if not received.
    expires_at: i64,
}

struct Tab {
    q: Quota,
    t: Tabs,
    visible: bool,
    /// The newest revision this tab showed.
    shown: Option<u64>,
}

/// On the faithful channel every message arrives within this many
/// milliseconds, well under a new leader's settle time (250 ms).
const MAX_DELAY: i64 = 100;

struct Envelope {
    to: usize,
    posted_at: i64,
    /// The tab that opened in slot `to` after this was posted must not get it.
    generation: u32,
    /// The message as the channel carries it: a plain object.
    value: Value,
}

struct World {
    lossy: bool,
    tabs: Vec<Option<Tab>>,
    generation: Vec<u32>,
    names: u32,
    /// The slot that holds the leadership lock, and the ones waiting.
    lock: Option<usize>,
    queue: VecDeque<usize>,
    /// Whether the leader's connection is open.
    connected: bool,
    channel: Vec<Envelope>,
    server: Server,
    sent: Vec<Sent>,
    now: i64,
    /// Leaderships taken after the first.
    handovers: u32,
    led: bool,
    clicks: u32,
    timeout: i64,
}

impl World {
    fn new(lossy: bool, tabs: usize, server: Server) -> Result<World, TestCaseError> {
        let mut w = World {
            lossy,
            tabs: (0..MAX_TABS).map(|_| None).collect(),
            generation: vec![0; MAX_TABS],
            names: 0,
            lock: None,
            queue: VecDeque::new(),
            connected: false,
            channel: Vec::new(),
            server,
            sent: Vec::new(),
            now: T0,
            handovers: 0,
            led: false,
            clicks: 0,
            timeout: Config::default().hold_timeout_ms,
        };
        for slot in 0..tabs {
            w.open(slot)?;
        }
        w.take_lock()?;
        w.connect()?;
        w.flush()?;
        Ok(w)
    }

    fn alive(&self) -> impl Iterator<Item = (usize, &Tab)> {
        self.tabs.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }

    fn open(&mut self, slot: usize) -> Result<(), TestCaseError> {
        if self.tabs[slot].is_some() {
            return Ok(());
        }
        self.names += 1;
        self.generation[slot] += 1;
        let mut q = Quota::new(Config { stale_after_ms: 60_000, ..Config::default() });
        let mut t = Tabs::new(format!("tab-{}", self.names), TabConfig::default(), true);
        let out = t.start(&mut q);
        self.tabs[slot] = Some(Tab { q, t, visible: true, shown: None });
        self.queue.push_back(slot);
        self.run(slot, out)
    }

    /// The tab in `slot` is gone: its lock is free, its mail undelivered,
    /// and its requests still on their way aborted (as a closed page's
    /// fetches are).
    fn gone(&mut self, slot: usize) {
        self.tabs[slot] = None;
        self.sent.retain(|s| s.tab != slot);
        self.queue.retain(|s| *s != slot);
        self.channel.retain(|e| e.to != slot);
        if self.lock == Some(slot) {
            self.lock = None;
            self.connected = false;
        }
    }

    /// Hands a free lock to the first tab waiting, as Web Locks does. Taking
    /// it takes a moment: leaders never start in the same millisecond.
    fn take_lock(&mut self) -> Result<(), TestCaseError> {
        while self.lock.is_none() {
            let Some(slot) = self.queue.pop_front() else { return Ok(()) };
            if self.tabs[slot].is_none() {
                continue;
            }
            if self.led {
                self.handovers += 1;
            }
            self.led = true;
            self.advance(1)?;
            let Some(tab) = self.tabs[slot].as_mut() else { continue };
            self.lock = Some(slot);
            self.connected = false;
            let out = tab.t.lead(&mut tab.q, self.now);
            self.run(slot, out)?;
        }
        Ok(())
    }

    fn leader(&mut self) -> Option<(usize, &mut Tab)> {
        let slot = self.lock?;
        self.tabs[slot].as_mut().map(|t| (slot, t))
    }

    fn connect(&mut self) -> Result<(), TestCaseError> {
        let text = serde_json::to_string(&self.server.state).unwrap();
        let now = self.now;
        let Some((slot, l)) = self.leader() else { return Ok(()) };
        let mut out = l.t.server_link(&mut l.q, Link::Live, now);
        out.extend(l.t.server_state(&mut l.q, &text, now, &read));
        self.connected = true;
        self.run(slot, out)
    }

    /// Carries out a tab's commands.
    fn run(&mut self, from: usize, cmds: Vec<TabCmd>) -> Result<(), TestCaseError> {
        for c in cmds {
            match c {
                TabCmd::Post(m) => {
                    let value = serde_json::to_value(&m).unwrap();
                    let back = TabMsg::read(&J(value.clone()));
                    prop_assert_eq!(back.as_ref(), Ok(&m), "the object posted reads back: {}", value);
                    let others: Vec<usize> = self.alive().map(|(i, _)| i).filter(|i| *i != from).collect();
                    for to in others {
                        let generation = self.generation[to];
                        self.channel.push(Envelope { to, posted_at: self.now, generation, value: value.clone() });
                    }
                }
                TabCmd::Send(h) => {
                    let expires_at = h.begun_at + self.timeout;
                    prop_assert!(!self.sent.iter().any(|s| s.id == h.id), "request {} sent twice", h.id);
                    self.sent.push(Sent { id: h.id, tab: from, kind: h.kind, slots: h.slots, cost: h.cost, expires_at });
                    self.check_limit()?;
                }
                TabCmd::Cancel { .. } => {}
                TabCmd::Yield => {
                    prop_assert_eq!(self.lock, Some(from), "only the leader yields");
                    self.lock = None;
                    self.connected = false;
                    self.queue.push_back(from);
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, k: usize, keep: bool) -> Result<(), TestCaseError> {
        if self.channel.is_empty() {
            return Ok(());
        }
        let k = k % self.channel.len();
        let env = if keep {
            let e = &self.channel[k];
            Envelope { to: e.to, posted_at: e.posted_at, generation: e.generation, value: e.value.clone() }
        } else {
            self.channel.remove(k)
        };
        if self.generation[env.to] != env.generation {
            return Ok(());
        }
        let now = self.now;
        let Some(tab) = self.tabs[env.to].as_mut() else { return Ok(()) };
        let out = tab.t.receive(&mut tab.q, &J(env.value), now, &read, &PlainFmt);
        prop_assert_eq!(tab.q.error(), None, "a message between tabs was refused");
        self.run(env.to, out)
    }

    /// Delivers the first message in flight that `pick` picks, if any.
    fn deliver_first(&mut self, pick: impl Fn(&Envelope) -> bool) -> Result<(), TestCaseError> {
        match self.channel.iter().position(pick) {
            Some(k) => self.deliver(k, false),
            None => Ok(()),
        }
    }

    /// Delivers everything in flight, newest first, and what that brings.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        let mut rounds = 0;
        while !self.channel.is_empty() {
            rounds += 1;
            prop_assert!(rounds < 10_000, "the tabs keep talking: a message loop");
            let last = self.channel.len() - 1;
            self.deliver(last, false)?;
            self.take_lock()?;
        }
        Ok(())
    }

    /// Moves the clock. On the faithful channel, what would be later than
    /// `MAX_DELAY` arrives first (newest first: in any order).
    fn advance(&mut self, ms: i64) -> Result<(), TestCaseError> {
        if !self.lossy {
            let mut rounds = 0;
            let due = self.now + ms - MAX_DELAY;
            while let Some(k) = self.channel.iter().rposition(|e| e.posted_at < due) {
                rounds += 1;
                prop_assert!(rounds < 10_000, "the tabs keep talking: a message loop");
                self.deliver(k, false)?;
            }
        }
        self.now += ms;
        let now = self.now;
        let mut outs = Vec::new();
        for (slot, tab) in self.tabs.iter_mut().enumerate() {
            if let Some(tab) = tab {
                outs.push((slot, tab.t.tick(&mut tab.q, now)));
            }
        }
        for (slot, out) in outs {
            self.run(slot, out)?;
        }
        // A request not received by its hold's timeout is lost: the
        // dashboard gave up on it.
        self.sent.retain(|s| s.expires_at > now);
        Ok(())
    }

    /// The gate never opened past the limit: what runs on the server plus
    /// what is on its way fits the limit and the units.
    fn check_limit(&self) -> Result<(), TestCaseError> {
        // With loss, a new leader may not have heard of every hold: the
        // server's own check is the guard there (docs/tabs.md).
        if self.lossy && self.handovers > 0 {
            return Ok(());
        }
        for p in &self.server.state.pools {
            let on_way: u32 = self.sent.iter().filter(|s| s.kind == p.kind).map(|s| s.slots).sum();
            prop_assert!(
                p.in_use + on_way <= p.limit,
                "{} slots: {} running + {} sent > limit {}",
                p.kind,
                p.in_use,
                on_way,
                p.limit
            );
        }
        let costs: Units = self.sent.iter().map(|s| s.cost).sum();
        prop_assert!(costs <= self.server.available(), "units: {} sent > {} available", costs, self.server.available());
        Ok(())
    }

    fn check_tabs(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        let history = &self.server.history;
        for tab in self.tabs.iter_mut().flatten() {
            let holds = tab.q.holds();
            for (i, h) in holds.iter().enumerate() {
                prop_assert!(!holds[..i].iter().any(|x| x.id == h.id), "hold {} counted twice", h.id);
                prop_assert!(now - h.begun_at < self.timeout, "hold {} outlived its timeout", h.id);
                if let Some(s) = tab.q.state() {
                    let running = s.running.iter().filter_map(|t| t.client_request_id.as_deref());
                    let finished = s.finished.iter().filter_map(|t| t.client_request_id.as_deref());
                    prop_assert!(
                        !running.chain(finished).any(|c| c == h.id),
                        "hold {} counted beside the server's task",
                        h.id
                    );
                }
            }
            // R4: never an older state, and only states the server made.
            let rev = tab.q.revision();
            prop_assert!(rev >= tab.shown, "revision went back from {:?} to {:?}", tab.shown, rev);
            tab.shown = rev;
            if let Some(s) = tab.q.state() {
                prop_assert_eq!(s, &history[(s.revision - 1) as usize]);
            }
            // R5: an open gate needs a live link.
            if tab.q.blocked(now).is_none() {
                prop_assert_eq!(tab.q.link(), Link::Live, "gate open without a live link");
            }
            prop_assert_eq!(tab.q.error(), None);
        }
        self.check_limit()
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::Click { tab, kind, count } => {
                self.clicks += 1;
                let id = format!("c{}", self.clicks);
                let Some(t) = self.tabs[tab].as_mut() else { return Ok(()) };
                t.q.set_request(KINDS[kind], count);
                let open = t.q.view(now, &PlainFmt).enabled;
                if let Ok(out) = t.t.submit(&mut t.q, id, now) {
                    prop_assert!(open, "a submit passed a closed gate");
                    self.run(tab, out)?;
                }
            }
            Op::Deliver { k } => self.deliver(k, false)?,
            Op::Repeat { k } => self.deliver(k, true)?,
            Op::Lose { k } => {
                if self.lossy && !self.channel.is_empty() {
                    let k = k % self.channel.len();
                    self.channel.remove(k);
                }
            }
            Op::Receive { n } => {
                if n < self.sent.len() {
                    let r = self.sent.remove(n);
                    self.server.receive(&r);
                    for p in &self.server.state.pools {
                        prop_assert!(p.in_use <= p.limit);
                    }
                }
            }
            Op::Report { n, refused } => {
                if n < self.sent.len() && self.tabs[self.sent[n].tab].is_some() {
                    let r = self.sent.remove(n);
                    let t = self.tabs[r.tab].as_mut().unwrap();
                    let end = if refused { HoldEnd::Refused } else { HoldEnd::Failed };
                    let out = t.t.end_hold(&mut t.q, &r.id, end, None, now);
                    self.run(r.tab, out)?;
                }
            }
            Op::End { n, success } => {
                if n < self.server.state.running.len() {
                    self.server.end(n, success);
                }
            }
            Op::Connect => {
                if !self.connected {
                    self.connect()?;
                }
            }
            Op::Push { back } => {
                if self.connected {
                    let k = self.server.history.len().saturating_sub(1 + back);
                    let text = serde_json::to_string(&self.server.history[k]).unwrap();
                    if let Some((slot, l)) = self.leader() {
                        let out = l.t.server_state(&mut l.q, &text, now, &read);
                        self.run(slot, out)?;
                    }
                }
            }
            Op::Ping => {
                if self.connected {
                    if let Some((slot, l)) = self.leader() {
                        let out = l.t.server_current(&mut l.q, now);
                        self.run(slot, out)?;
                    }
                }
            }
            Op::Drop => {
                if self.connected {
                    self.connected = false;
                    if let Some((slot, l)) = self.leader() {
                        let out = l.t.server_link(&mut l.q, Link::Reconnecting { attempt: 1 }, now);
                        self.run(slot, out)?;
                    }
                }
            }
            Op::Tick { ms } => self.advance(ms)?,
            Op::Die { tab } => {
                if self.tabs[tab].is_some() && self.alive().count() > 1 {
                    self.gone(tab);
                }
            }
            Op::Close { tab } => {
                if self.alive().count() > 1 {
                    if let Some(t) = self.tabs[tab].as_mut() {
                        let out = t.t.leave(&mut t.q);
                        self.run(tab, out)?;
                        self.gone(tab);
                    }
                }
            }
            Op::Open { tab } => self.open(tab)?,
            Op::Show { tab, visible } => {
                if let Some(t) = self.tabs[tab].as_mut() {
                    if t.visible != visible {
                        t.visible = visible;
                        let out = t.t.set_visible(&mut t.q, visible);
                        self.run(tab, out)?;
                    }
                }
            }
        }
        self.take_lock()?;
        self.check_tabs()
    }
}

fn run(lossy: bool, limit: u32, units: u64, image_cost: u64, tabs: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new(lossy, tabs, Server::new(limit, units, image_cost))?;
    w.check_tabs()?;
    for op in ops {
        w.step(op)?;
    }
    finish(w)
}

/// The leader grants followers' asks (`askers` picks which follower asks
/// each time) and dies with some of its grants still on their way to the
/// others (`early` says which messages in flight arrive first); the next
/// tab leads at once, and `ops` go on from there.
fn run_handover(limit: u32, tabs: usize, askers: Vec<usize>, early: Vec<bool>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new(false, tabs, Server::new(limit, 1_000_000, 100))?;
    w.advance(1_000)?;
    let leader = w.lock.expect("a tab leads");
    for a in askers {
        let followers: Vec<usize> = w.alive().map(|(i, _)| i).filter(|i| *i != leader).collect();
        let f = followers[a % followers.len()];
        w.step(Op::Click { tab: f, kind: 0, count: 1 })?;
        w.deliver_first(|e| e.to == leader && e.value["t"] == "ask")?;
        w.deliver_first(|e| e.to == f && e.value["t"] == "grant")?;
    }
    let in_flight = w.channel.len();
    let mut k = 0;
    for arrives in early.into_iter().take(in_flight) {
        if arrives {
            w.deliver(k, false)?;
        } else {
            k += 1;
        }
    }
    w.gone(leader);
    w.take_lock()?;
    w.connect()?;
    w.check_tabs()?;
    for op in ops {
        w.step(op)?;
    }
    finish(w)
}

fn finish(mut w: World) -> Result<(), TestCaseError> {
    // In the end every tab follows the tab that holds the lock, once the
    // channel has delivered what is in flight and the leader spoke ...
    w.flush()?;
    if w.connected {
        let now = w.now;
        if let Some((slot, l)) = w.leader() {
            let out = l.t.server_link(&mut l.q, Link::Live, now);
            w.run(slot, out)?;
        }
    } else {
        w.connect()?;
    }
    w.flush()?;
    let leader = w.lock.and_then(|s| w.tabs[s].as_ref()).map(|t| t.t.id().to_owned());
    prop_assert!(leader.is_some(), "a tab leads");
    for (_, t) in w.alive() {
        prop_assert_eq!(t.t.leader(), leader.as_deref(), "every tab follows the lock's holder");
    }
    // ... and every hold ends: confirmed, ended, or timed out.
    w.advance(w.timeout)?;
    w.flush()?;
    for (_, t) in w.alive() {
        prop_assert!(t.q.holds().is_empty(), "a hold outlived its timeout");
    }
    Ok(())
}


proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases(), ..ProptestConfig::default() })]

    /// A channel that loses nothing but repeats and reorders, and leaders
    /// that die, close and give way: every rule, the limit included.
    #[test]
    fn tabs_keep_the_rules_on_a_faithful_channel(
        limit in 1..5u32,
        units in 0..30_000u64,
        image_cost in prop::sample::select(vec![100u64, 250, 1_000, 2_500]),
        tabs in 2..=MAX_TABS,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        run(false, limit, units, image_cost, tabs, ops)?;
    }

    /// A leader dies while its grants are on their way: the next one must
    /// not grant what they hold.
    #[test]
    fn a_new_leader_never_grants_past_an_old_leaders_grants(
        limit in 1..4u32,
        tabs in 3..=MAX_TABS,
        askers in prop::collection::vec(any::<usize>(), 1..4),
        early in prop::collection::vec(any::<bool>(), 0..12),
        ops in prop::collection::vec(handover_op(), 1..40),
    ) {
        run_handover(limit, tabs, askers, early, ops)?;
    }

    /// A channel that also loses messages: no hold counted twice or past its
    /// expiry, no older state, R5; the limit while one leader lasts.
    #[test]
    fn tabs_keep_the_rules_on_a_lossy_channel(
        limit in 1..5u32,
        units in 0..30_000u64,
        image_cost in prop::sample::select(vec![100u64, 250, 1_000, 2_500]),
        tabs in 2..=MAX_TABS,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        run(true, limit, units, image_cost, tabs, ops)?;
    }
}

// ---- the messages on the channel, fuzzed --------------------------------------

/// The largest integer a message carries (2^53 - 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`): the bound of every count and time.
const EXACT: u64 = (1 << 53) - 1;
const EXACT_MS: i64 = EXACT as i64;

fn text() -> impl Strategy<Value = String> {
    let short = prop::collection::vec(
        prop_oneof![3 => any::<char>(), 1 => Just('%'), 1 => Just(' '), 1 => Just('\n'), 1 => Just('"'), 1 => Just('\\')],
        1..10,
    )
    .prop_map(String::from_iter);
    // Up to the longest text taken (200 bytes).
    prop_oneof![8 => short, 1 => "[a-z]{190,200}"]
}

/// Whole numbers a JSON number carries exactly, the bounds often.
fn whole() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..=EXACT, 1 => Just(EXACT), 1 => Just(0u64), 2 => 0..1_000u64]
}

fn millis() -> impl Strategy<Value = i64> {
    prop_oneof![4 => -EXACT_MS..=EXACT_MS, 1 => Just(EXACT_MS), 1 => Just(-EXACT_MS), 2 => T0 - 1_000..T0 + 1_000]
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        Just(Link::Manual),
        Just(Link::Connecting),
        Just(Link::Live),
        Just(Link::Paused),
        any::<u32>().prop_map(|attempt| Link::Reconnecting { attempt }),
    ]
}

fn stamp() -> impl Strategy<Value = Stamp> {
    (text(), whole(), whole(), millis()).prop_map(|(leader, epoch, seq, at)| Stamp { leader, epoch, seq, at })
}

fn hold() -> impl Strategy<Value = SharedHold> {
    (text(), text(), text(), 1..=u32::MAX, any::<u32>(), 0..=Units::MAX.milli(), millis(), 1..=u32::MAX).prop_map(
        |(id, origin, kind, count, slots, cost, begun_at, len)| {
            let begun_at = begun_at.min(EXACT_MS - i64::from(len));
            SharedHold {
                id,
                origin,
                kind,
                count,
                slots,
                cost: Units::from_milli(cost),
                begun_at,
                expires_at: begun_at + i64::from(len),
            }
        },
    )
}

/// Holds with distinct ids.
fn holds() -> impl Strategy<Value = Vec<SharedHold>> {
    prop::collection::vec(hold(), 0..4).prop_map(|mut hs| {
        for (i, h) in hs.iter_mut().enumerate() {
            h.id.truncate(190);
            h.id.push_str(&i.to_string());
        }
        hs
    })
}

fn state_text() -> impl Strategy<Value = StateText> {
    (whole(), any::<String>()).prop_map(|(revision, text)| StateText { revision, text })
}

fn end() -> impl Strategy<Value = HoldEnd> {
    prop::sample::select(vec![HoldEnd::Confirmed, HoldEnd::Refused, HoldEnd::Failed, HoldEnd::TimedOut])
}

/// Any message. Each kind is boxed: their value trees inline are too big
/// for a test thread's stack in a debug build.
fn message() -> impl Strategy<Value = TabMsg> {
    prop_oneof![
        (text(), any::<bool>(), holds()).prop_map(|(from, visible, holds)| TabMsg::Hello { from, visible, holds }).boxed(),
        (stamp(), link(), holds(), prop::option::of(state_text()))
            .prop_map(|(stamp, link, holds, state)| TabMsg::Snapshot { stamp, link, holds, state }).boxed(),
        (stamp(), state_text()).prop_map(|(stamp, state)| TabMsg::State { stamp, state }).boxed(),
        (stamp(), link()).prop_map(|(stamp, link)| TabMsg::Link { stamp, link }).boxed(),
        (stamp(), whole()).prop_map(|(stamp, revision)| TabMsg::Current { stamp, revision }).boxed(),
        (text(), whole()).prop_map(|(from, epoch)| TabMsg::Bye { from, epoch }).boxed(),
        (text(), text(), text(), any::<u32>(), any::<bool>()).prop_map(|(from, id, kind, count, queue)| TabMsg::Ask { from, id, kind, count, queue }).boxed(),
        (stamp(), hold()).prop_map(|(stamp, hold)| TabMsg::Grant { stamp, hold }).boxed(),
        (stamp(), text(), text(), text()).prop_map(|(stamp, to, id, reason)| TabMsg::Denied { stamp, to, id, reason }).boxed(),
        (text(), end()).prop_map(|(id, end)| TabMsg::Ended { id, end }).boxed(),
    ]
}

/// The reader's keys, to reach deep into it.
const KEYS: [&str; 25] = [
    "t", "from", "visible", "holds", "stamp", "leader", "epoch", "seq", "at", "link", "state", "attempt", "revision", "text",
    "id", "origin", "kind", "count", "slots", "cost", "begun_at", "expires_at", "to", "reason", "end",
];

/// The message types, as `t` names them.
const TYPES: [&str; 10] = ["hello", "snapshot", "state", "link", "current", "bye", "ask", "grant", "denied", "ended"];

/// Words the reader takes somewhere.
const WORDS: [&str; 21] = [
    "hello", "snapshot", "state", "link", "current", "bye", "ask", "grant", "denied", "ended", "manual", "connecting", "live",
    "paused", "reconnecting", "confirmed", "refused", "failed", "timed_out", "", "a",
];

/// Numbers at and around the reader's bounds, and any others.
fn number() -> impl Strategy<Value = Value> {
    let edges = vec![
        EXACT as f64,
        EXACT as f64 + 1.0,
        -(EXACT as f64),
        -(EXACT as f64) - 1.0,
        4_294_967_295.0,
        4_294_967_296.0,
        2.5,
        2.5001,
        0.001,
        0.0005,
        -0.0,
        -1.0,
        0.5,
        1e300,
        f64::MIN_POSITIVE,
        Units::MAX.to_number(),
        Units::MAX.to_number() + 0.001,
    ];
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Not finite: serde_json makes it null.
        any::<f64>().prop_map(Value::from),
        (-3i64..=3).prop_map(Value::from),
        prop::sample::select(edges).prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        2 => prop::sample::select(WORDS.to_vec()).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), 1 => "\\PC{0,6}"]
}

/// Any JSON value, its objects keyed mostly with the reader's keys.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..12).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any object with a type the reader knows.
fn typed_json() -> impl Strategy<Value = Value> {
    (prop::sample::select(TYPES.to_vec()), prop::collection::btree_map(key(), any_json(), 0..12)).prop_map(|(t, m)| {
        let mut o: serde_json::Map<String, Value> = m.into_iter().collect();
        o.insert("t".into(), t.into());
        Value::Object(o)
    })
}

/// One change to a message as written.
#[derive(Clone, Debug)]
enum Edit {
    /// The member or item there goes (the whole message: null).
    Remove,
    /// The value there becomes one of another type.
    Replace(Value),
    /// A number changes (any value, when the message has no number).
    Number(u8),
    /// An object gets a member more, or one of its members another value.
    Member(String, Value),
    /// The message claims another type.
    Retype(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => Just(Edit::Remove),
        2 => prop_oneof![3 => leaf(), 1 => any_json()].prop_map(Edit::Replace),
        3 => (0..12u8).prop_map(Edit::Number),
        1 => (key(), leaf()).prop_map(|(k, x)| Edit::Member(k, x)),
        1 => (0..TYPES.len()).prop_map(Edit::Retype),
    ]
}

/// Where each value of `v` is, as JSON pointers ("" for `v` itself).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// `x`, or when it is of the same type as `was`, a value of another type.
fn other_type(was: &Value, x: Value) -> Value {
    if kind(&x) != kind(was) {
        return x;
    }
    [json!(null), json!(true), json!(0), json!("x"), json!([]), json!({})].into_iter().find(|o| kind(o) != kind(was)).unwrap()
}

/// `v` changed by `how`: a whole number exactly, as serde_json keeps it.
fn changed_number(v: &Value, how: u8) -> Value {
    let n = v.as_f64().unwrap_or(0.0);
    let exact = v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from));
    let int = |i: i128| match (u64::try_from(i), i64::try_from(i)) {
        (Ok(u), _) => Value::from(u),
        (_, Ok(s)) => Value::from(s),
        _ => Value::from(i as f64),
    };
    match (how, exact) {
        (0, Some(i)) => int(i + 1),
        (1, Some(i)) => int(i - 1),
        (2, Some(i)) => int(if i == 0 { -1 } else { -i }),
        (3, Some(i)) => int(i * 1000),
        (0, None) => Value::from(n + 1.0),
        (1, None) => Value::from(n - 1.0),
        (2, None) => Value::from(-n),
        (3, None) => Value::from(n * 1000.0),
        (4, _) => Value::from(n + 0.5),
        (5, _) => Value::from(n / 3.0),
        (6, _) => Value::from(n + 0.0001),
        (7, _) => Value::from(EXACT + 1),
        (8, _) => Value::from(-EXACT_MS - 2),
        (9, _) => Value::from(4_294_967_296u64),
        (10, _) => Value::from(1e300),
        _ => Value::from(0),
    }
}

fn apply(v: &mut Value, at: prop::sample::Index, e: Edit) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let wanted = |x: &Value| match e {
        Edit::Number(_) => x.is_number(),
        Edit::Member(..) => x.is_object(),
        _ => true,
    };
    let some: Vec<String> = all.iter().filter(|p| v.pointer(p).is_some_and(wanted)).cloned().collect();
    let all = if some.is_empty() { all } else { some };
    let p = all[at.index(all.len())].clone();
    match e {
        Edit::Remove => {
            let Some((parent, key)) = p.rsplit_once('/') else {
                *v = Value::Null;
                return;
            };
            let key = key.replace("~1", "/").replace("~0", "~");
            let key = key.as_str();
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(key);
                }
                Some(Value::Array(a)) => {
                    a.remove(key.parse::<usize>().unwrap());
                }
                _ => unreachable!("{p} has a parent"),
            }
        }
        Edit::Replace(x) => {
            let target = v.pointer_mut(&p).unwrap();
            *target = other_type(target, x);
        }
        Edit::Number(how) => {
            let target = v.pointer_mut(&p).unwrap();
            *target = changed_number(target, how);
        }
        Edit::Member(k, x) => {
            if let Some(o) = v.pointer_mut(&p).and_then(Value::as_object_mut) {
                o.insert(k, x);
            }
        }
        Edit::Retype(t) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("t".into(), TYPES[t].into());
            }
        }
    }
}

/// A message as written, with one to three fields removed, replaced by a
/// value of another type or changed as numbers, members added, or its type
/// changed.
fn mutated() -> impl Strategy<Value = Value> {
    (message(), prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..4)).prop_map(|(m, edits)| {
        let mut v = serde_json::to_value(&m).unwrap();
        for (at, e) in edits {
            apply(&mut v, at, e);
        }
        v
    })
}

fn any_input() -> impl Strategy<Value = Value> {
    prop_oneof![2 => any_json().boxed(), 2 => typed_json().boxed(), 5 => mutated().boxed()]
}

/// Whether every value in `written` is in `input` at the same place
/// (numbers as the doubles they are; null as null or nothing): what reads
/// is what was there, nothing made up.
fn found_in(written: &Value, input: Option<&Value>) -> bool {
    match written {
        Value::Object(m) => input.is_some_and(Value::is_object) && m.iter().all(|(k, x)| found_in(x, input.and_then(|i| i.get(k)))),
        Value::Array(a) => input
            .and_then(Value::as_array)
            .is_some_and(|b| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| found_in(x, Some(y)))),
        Value::Null => input.is_none_or(Value::is_null),
        Value::Number(n) => input.and_then(Value::as_f64) == n.as_f64(),
        other => input == Some(other),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases() * 8, ..ProptestConfig::default() })]

    /// Every message reads back as written, as an object and after a trip
    /// through JSON text.
    #[test]
    fn messages_round_trip(m in message()) {
        let v = serde_json::to_value(&m).unwrap();
        prop_assert!(v.is_object());
        prop_assert_eq!(TabMsg::read(&J(v.clone())), Ok(m.clone()), "{}", v);
        let again: Value = serde_json::from_str(&v.to_string()).unwrap();
        prop_assert_eq!(TabMsg::read(&J(again)), Ok(m));
    }

    /// Any JSON value reads without a panic, or is refused with a reason;
    /// what reads is made of what was there and writes back as an object
    /// that reads as the same message.
    #[test]
    fn any_value_reads_or_is_refused(v in any_input()) {
        match TabMsg::read(&J(v.clone())) {
            Ok(m) => {
                let back = serde_json::to_value(&m).unwrap();
                prop_assert!(back.is_object(), "{}", back);
                prop_assert!(found_in(&back, Some(&v)), "{} read as {}", v, back);
                prop_assert_eq!(TabMsg::read(&J(back.clone())), Ok(m), "{} written as {}", v, back);
            }
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                prop_assert!(e.to_string().starts_with("malformed tab message: "));
            }
        }
    }
}
