//! Property tests of the queue's rules (R8): random sequences of submits
//! (sent with `queue` or not), tasks that end in success or failure (their
//! slots free), cancels of waiting requests, changes of a pool's limit, and
//! upstream's 1303 (a running task put back, its kind held, then released),
//! on one account held by the core's [`Book`], against a small model
//! written apart from it. After every step: the same answers as the model,
//! never more running than the limit, first in first out per kind,
//! reservations equal to what runs and waits, nothing charged for a cancel,
//! a failure or a refusal, units never below what is reserved, the queue
//! never longer than its bound, and nothing left waiting that could start.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::VecDeque;

use common::*;
use proptest::prelude::*;
use quota_widget::core::queue::*;
use quota_widget::core::wire::*;

const KINDS: [&str; 2] = ["image", "video"];

#[derive(Clone, Debug)]
enum Op {
    /// A request for `count` items of `kind`, sent with `queue` or not.
    Submit { kind: usize, count: u32, queue: bool },
    /// The n-th running task ends (modulo how many run).
    End { n: usize, success: bool },
    /// The n-th waiting request is cancelled (modulo how many wait); a
    /// running one (`running`) cannot be.
    Cancel { n: usize, running: bool },
    /// The plan sets a pool's limit.
    Limit { kind: usize, limit: u32 },
    /// Upstream's 1303 for the n-th running task: put back, its kind held.
    PutBack { n: usize },
    /// A kind's hold ends.
    Release { kind: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 1..7u32, prop::bool::weighted(0.8)).prop_map(|(kind, count, queue)| Op::Submit { kind, count, queue }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(n, success)| Op::End { n, success }),
        2 => (any::<usize>(), prop::bool::weighted(0.1)).prop_map(|(n, running)| Op::Cancel { n, running }),
        1 => (0..2usize, 0..7u32).prop_map(|(kind, limit)| Op::Limit { kind, limit }),
        1 => any::<usize>().prop_map(|n| Op::PutBack { n }),
        1 => (0..2usize).prop_map(|kind| Op::Release { kind }),
    ]
}

/// What the model says of a submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Said {
    Start,
    Queue { ahead: u32 },
    Refuse,
}

/// The account, written plainly: a queue per kind, thousandths as u64,
/// arithmetic that panics rather than saturates.
struct Model {
    limit: [u32; 2],
    unit_cost: [u64; 2],
    per_item: [bool; 2],
    packages: Vec<u64>,
    /// (id, kind, slots, cost)
    running: Vec<(u64, usize, u32, u64)>,
    /// Per kind: (id, slots, cost), in arrival order (ids grow with it).
    queues: [VecDeque<(u64, u32, u64)>; 2],
    max_waiting: usize,
    held: [bool; 2],
}

impl Model {
    fn used(&self, kind: usize) -> u32 {
        self.running.iter().filter(|t| t.1 == kind).map(|t| t.2).sum()
    }

    fn reserved(&self) -> u64 {
        self.running.iter().map(|t| t.3).sum::<u64>() + self.queues.iter().flatten().map(|w| w.2).sum::<u64>()
    }

    fn available(&self) -> u64 {
        self.packages
            .iter()
            .sum::<u64>()
            .checked_sub(self.reserved())
            .expect("the model never reserves more than it has")
    }

    fn waiting(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    fn submit(&mut self, id: u64, kind: usize, count: u32, queue: bool) -> Said {
        let slots = if self.per_item[kind] { count } else { 1 };
        let cost = self.unit_cost[kind] * u64::from(count);
        let waits = self.queues[kind].len();
        let free = if waits > 0 || self.held[kind] { 0 } else { self.limit[kind].saturating_sub(self.used(kind)) };
        let units = cost <= self.available();
        if slots <= free {
            if units {
                self.running.push((id, kind, slots, cost));
                return Said::Start;
            }
            return Said::Refuse;
        }
        if queue && slots <= self.limit[kind] && units && self.waiting() < self.max_waiting {
            self.queues[kind].push_back((id, slots, cost));
            return Said::Queue { ahead: waits as u32 };
        }
        Said::Refuse
    }

    /// Drops waiting requests that can never fit, then starts heads while
    /// they fit. Gives (started, dropped) per kind.
    fn drain(&mut self) -> [(Vec<u64>, Vec<u64>); 2] {
        let mut out: [(Vec<u64>, Vec<u64>); 2] = Default::default();
        for (k, (started, dropped)) in out.iter_mut().enumerate() {
            let limit = self.limit[k];
            let (keep, drop): (VecDeque<_>, VecDeque<_>) = self.queues[k].drain(..).partition(|w| w.1 <= limit);
            self.queues[k] = keep;
            *dropped = drop.iter().map(|w| w.0).collect();
            if self.held[k] {
                continue;
            }
            while let Some(&(id, slots, cost)) = self.queues[k].front() {
                if self.used(k) + slots > limit {
                    break;
                }
                self.queues[k].pop_front();
                self.running.push((id, k, slots, cost));
                started.push(id);
            }
        }
        out
    }

    /// Upstream's 1303: running task `id` goes back to its kind's queue by
    /// arrival, and the kind is held.
    fn put_back(&mut self, id: u64) {
        let i = self.running.iter().position(|t| t.0 == id).unwrap();
        let (_, kind, slots, cost) = self.running.remove(i);
        let q = &mut self.queues[kind];
        let at = q.iter().position(|w| w.0 > id).unwrap_or(q.len());
        q.insert(at, (id, slots, cost));
        self.held[kind] = true;
    }

    /// Ends running task `id`; gives what it charged.
    fn end(&mut self, id: u64, success: bool) -> u64 {
        let i = self.running.iter().position(|t| t.0 == id).unwrap();
        let (_, _, _, cost) = self.running.remove(i);
        if !success {
            return 0;
        }
        let mut due = cost;
        for p in &mut self.packages {
            let take = due.min(*p);
            *p -= take;
            due -= take;
        }
        assert_eq!(due, 0, "a reservation the packages cannot pay");
        cost
    }
}

fn kind_of(k: &str) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap()
}

/// `starts` split by kind, for comparing with the model (which does not
/// interleave kinds).
fn by_kind(kinds: &[usize], s: &Starts<u64>) -> [(Vec<u64>, Vec<u64>); 2] {
    let mut out: [(Vec<u64>, Vec<u64>); 2] = Default::default();
    for id in &s.start {
        out[kinds[*id as usize]].0.push(*id);
    }
    for id in &s.refuse {
        out[kinds[*id as usize]].1.push(*id);
    }
    out
}

fn run(
    limits: [u32; 2],
    image_cost: u64,
    packages: Vec<u64>,
    max_waiting: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut pools = state(1).pools;
    pools[0].limit = limits[0];
    pools[1].limit = limits[1];
    pools[0].unit_cost = Units::from_milli(image_cost);
    let mut book: Book<u64> =
        Book::new(pools.clone(), packages.iter().map(|&m| Units::from_milli(m)).collect(), max_waiting);
    let mut model = Model {
        limit: limits,
        unit_cost: [image_cost, pools[1].unit_cost.milli()],
        per_item: [true, false],
        packages: packages.clone(),
        running: vec![],
        queues: Default::default(),
        max_waiting: max_waiting as usize,
        held: [false; 2],
    };
    // Every request's kind (ids are given in arrival order).
    let mut kinds: Vec<usize> = Vec::new();
    let mut ever_started: std::collections::HashSet<u64> = Default::default();
    let mut sent_with_queue: std::collections::HashSet<u64> = Default::default();
    // Requests put back at some point: they may wait past the bound.
    let mut put_back: std::collections::HashSet<u64> = Default::default();
    let mut charged_total = 0u64;

    for op in ops {
        let packages_before = book.packages().to_vec();
        let running_before = book.running().to_vec();
        let waiting_before = book.waiting().to_vec();
        let mut started_now: Vec<u64> = Vec::new();
        match op {
            Op::Submit { kind, count, queue } => {
                let id = kinds.len() as u64;
                kinds.push(kind);
                let got = book.submit(id, KINDS[kind], count, queue);
                if queue {
                    sent_with_queue.insert(id);
                }
                let said = model.submit(id, kind, count, queue);
                let got_said = match got {
                    Admission::Start { .. } => Said::Start,
                    Admission::Queue { ahead, .. } => Said::Queue { ahead },
                    Admission::Refuse(_) => Said::Refuse,
                };
                prop_assert_eq!(got_said, said, "submit {:?}: the book said {:?}", op, got);
                match got {
                    Admission::Start { slots, cost } | Admission::Queue { slots, cost, .. } => {
                        let rule = pools[kind].slot_rule;
                        prop_assert_eq!(slots, rule.slots_for(count));
                        prop_assert_eq!(cost, pools[kind].unit_cost.times(count));
                        if matches!(got, Admission::Start { .. }) {
                            started_now.push(id);
                        }
                    }
                    Admission::Refuse(r) => {
                        // A refusal changes nothing and charges nothing.
                        prop_assert_eq!(book.running(), &running_before[..]);
                        prop_assert_eq!(book.waiting(), &waiting_before[..]);
                        if let Refusal::QueueFull { max } = r {
                            prop_assert_eq!(max, max_waiting);
                            prop_assert!(book.waiting().len() >= max_waiting as usize);
                        }
                    }
                }
            }
            Op::End { n, success } => {
                if book.running().is_empty() {
                    continue;
                }
                let id = book.running()[n % book.running().len()].id;
                let cost = book.running()[n % book.running().len()].cost;
                let ended = book.finish(&id, success).unwrap();
                let charged = model.end(id, success);
                prop_assert_eq!(ended.charged.milli(), charged);
                prop_assert_eq!(ended.released, cost);
                if success {
                    prop_assert_eq!(ended.charged, cost, "a success pays its reservation");
                } else {
                    prop_assert_eq!(ended.charged, Units::ZERO, "a failure is charged");
                    prop_assert_eq!(book.packages(), &packages_before[..], "a failure moved the packages");
                }
                charged_total += charged;
                let expected = model.drain();
                prop_assert_eq!(by_kind(&kinds, &ended.starts), expected);
                prop_assert!(ended.starts.refuse.is_empty(), "slots freed, yet a request became unfit");
                started_now.extend(&ended.starts.start);
            }
            Op::Cancel { n, running } => {
                if running {
                    if let Some(t) = book.running().get(n % book.running().len().max(1)) {
                        let id = t.id;
                        prop_assert_eq!(book.cancel(&id), None, "a running task was cancelled");
                    }
                    continue;
                }
                if book.waiting().is_empty() {
                    continue;
                }
                let w = book.waiting()[n % book.waiting().len()].clone();
                let ended = book.cancel(&w.id).unwrap();
                prop_assert_eq!(ended.charged, Units::ZERO, "a cancel is charged");
                prop_assert_eq!(ended.released, w.cost);
                prop_assert_eq!(book.packages(), &packages_before[..], "a cancel moved the packages");
                let q = &mut model.queues[kind_of(&w.kind)];
                let i = q.iter().position(|x| x.0 == w.id).unwrap();
                q.remove(i);
                let expected = model.drain();
                prop_assert_eq!(by_kind(&kinds, &ended.starts), expected);
                started_now.extend(&ended.starts.start);
            }
            Op::Limit { kind, limit } => {
                let s = book.set_limit(KINDS[kind], limit);
                model.limit[kind] = limit;
                let expected = model.drain();
                prop_assert_eq!(by_kind(&kinds, &s), expected);
                prop_assert_eq!(book.packages(), &packages_before[..], "a refused waiting request moved the packages");
                started_now.extend(&s.start);
            }
            Op::PutBack { n } => {
                if book.running().is_empty() {
                    continue;
                }
                let t = book.running()[n % book.running().len()].clone();
                let Some(s) = book.put_back(&t.id) else {
                    // Sent without queue: the service's refusal is its answer.
                    prop_assert!(!sent_with_queue.contains(&t.id), "{} was sent with queue and not put back", t.id);
                    continue;
                };
                prop_assert!(sent_with_queue.contains(&t.id), "{} was sent without queue, yet put back", t.id);
                model.put_back(t.id);
                put_back.insert(t.id);
                let expected = model.drain();
                prop_assert_eq!(by_kind(&kinds, &s), expected);
                prop_assert!(!s.start.contains(&t.id), "a request put back started again at once");
                prop_assert_eq!(book.packages(), &packages_before[..], "a request put back moved the packages");
                let back = Waiting { id: t.id, kind: t.kind.clone(), slots: t.slots, cost: t.cost };
                // Waiting again, unless the limit fell below what it asks
                // (then refused at once, charged nothing).
                prop_assert!(book.waiting().contains(&back) || s.refuse.contains(&t.id), "{} is not waiting again", t.id);
                // It may start again later: once more, and only once.
                ever_started.remove(&t.id);
                started_now.extend(&s.start);
            }
            Op::Release { kind } => {
                let s = book.release(KINDS[kind]);
                model.held[kind] = false;
                let expected = model.drain();
                prop_assert_eq!(by_kind(&kinds, &s), expected);
                started_now.extend(&s.start);
            }
        }
        prop_assert_eq!(
            book.held().iter().map(|k| kind_of(k)).collect::<std::collections::BTreeSet<_>>(),
            (0..2).filter(|k| model.held[*k]).collect::<std::collections::BTreeSet<_>>()
        );

        // The same account as the model's.
        let mut running: Vec<u64> = book.running().iter().map(|t| t.id).collect();
        let mut model_running: Vec<u64> = model.running.iter().map(|t| t.0).collect();
        running.sort_unstable();
        model_running.sort_unstable();
        prop_assert_eq!(running, model_running);
        for (k, name) in KINDS.iter().enumerate() {
            let waiting: Vec<u64> = book.waiting().iter().filter(|w| kind_of(&w.kind) == k).map(|w| w.id).collect();
            let model_waiting: Vec<u64> = model.queues[k].iter().map(|w| w.0).collect();
            prop_assert_eq!(waiting, model_waiting, "the queue of {}", name);
        }
        let pkgs: Vec<u64> = book.packages().iter().map(|u| u.milli()).collect();
        prop_assert_eq!(&pkgs, &model.packages);

        let f = book.figures();
        for (k, pool) in book.pools().iter().enumerate() {
            let slots: u32 = book.running().iter().filter(|t| t.kind == pool.kind).map(|t| t.slots).sum();
            prop_assert_eq!(pool.in_use, slots, "slots in use are the running tasks' slots");
            // Never more running than the limit: whatever started in this
            // step fits (a lowered limit may leave older tasks above it).
            if started_now.iter().any(|id| kinds[*id as usize] == k) {
                prop_assert!(
                    pool.in_use <= pool.limit,
                    "{}: {} running > limit {}",
                    pool.kind,
                    pool.in_use,
                    pool.limit
                );
            }
        }
        // First in first out per kind: a request starts only when every
        // one of its kind that arrived before it (ids grow with arrival),
        // put back or queued, has left the queue.
        for id in &started_now {
            let k = kinds[*id as usize];
            if let Some(earlier) = book.waiting().iter().find(|w| kind_of(&w.kind) == k && w.id < *id) {
                prop_assert!(false, "{} started before {} of its kind, which arrived earlier", id, earlier.id);
            }
            prop_assert!(ever_started.insert(*id), "{} started twice", id);
        }
        // Reservations are what runs plus what waits, and the packages
        // always cover them: available units never go below zero.
        let reserved: Units = book.running().iter().map(|t| t.cost).chain(book.waiting().iter().map(|w| w.cost)).sum();
        prop_assert_eq!(f.reserved(), reserved);
        prop_assert_eq!(reserved.milli(), model.reserved());
        prop_assert!(
            f.spendable.checked_sub(f.reserved()).is_some(),
            "reserved {} > spendable {}",
            f.reserved(),
            f.spendable
        );
        prop_assert_eq!(f.spendable.milli(), model.packages.iter().sum::<u64>());
        prop_assert_eq!(model.available() + model.reserved(), model.packages.iter().sum::<u64>());
        // The queue's bound.
        // (A request put back was admitted already: the bound stops newcomers.)
        prop_assert!(book.waiting().iter().filter(|w| !put_back.contains(&w.id)).count() <= max_waiting as usize);
        // Nothing waits that could start now: the queue moved as soon as
        // slots freed.
        prop_assert!(f.starts().is_empty(), "left waiting though it could start: {:?}", f.starts());
        // Places agree with the order.
        for k in 0..2 {
            for (i, (id, _, _)) in model.queues[k].iter().enumerate() {
                prop_assert_eq!(f.ahead(id), Some(i as u32));
            }
        }
    }

    // Every hold ends and every running task ends; the queue drains to
    // nothing (every waiting request fits its pool), and what was charged
    // is exactly what left the packages.
    for (k, kind) in KINDS.iter().enumerate() {
        book.release(kind);
        model.held[k] = false;
        model.drain();
    }
    let mut guard = 0;
    while let Some(t) = book.running().first().cloned() {
        let ended = book.finish(&t.id, true).unwrap();
        charged_total += model.end(t.id, true);
        model.drain();
        prop_assert_eq!(ended.charged, t.cost);
        guard += 1;
        prop_assert!(guard < 10_000);
    }
    prop_assert!(book.waiting().is_empty(), "left waiting with every slot free: {:?}", book.waiting());
    let start: u64 = packages.iter().sum();
    let now: u64 = book.packages().iter().map(|u| u.milli()).sum();
    prop_assert_eq!(start - now, charged_total);
    Ok(())
}


proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases(), ..ProptestConfig::default() })]

    #[test]
    fn queue_rules_hold_at_every_step(
        limits in (1..6u32, 1..3u32).prop_map(|(a, b)| [a, b]),
        image_cost in prop::sample::select(vec![100u64, 200, 300, 250, 1_000, 2_000, 2_500]),
        packages in prop::collection::vec(0..40_000u64, 1..3),
        max_waiting in 0..6u32,
        ops in prop::collection::vec(op(), 1..100),
    ) {
        run(limits, image_cost, packages, max_waiting, ops)?;
    }
}
