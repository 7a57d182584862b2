//! `cargo bench --bench core --profile wasm` (scripts/bench): how long the core's hot paths take, printed.
//! A figure, not a test: nothing here asserts a time.
//!
//! The state is a busy account: 2 pools, 20 packages, 8 running and 20
//! finished tasks. Every push of a state runs `apply_state` (validate,
//! confirm holds, announcements) and every render runs `view`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::*;
use quota_widget::core::parse::read_state;
use quota_widget::core::wire::*;
use quota_widget::core::{Config, Memo, PlainFmt, Quota, Viewer};

fn busy(revision: u64) -> ServerState {
    let mut s = state(revision);
    s.pools[0].limit = 16;
    s.pools[0].in_use = 8;
    s.packages = (0..20).map(|i| package(&format!("p{i}"), 1000, 900, 3 + i)).collect();
    s.running = (0..8).map(|i| running(&format!("r{i}"), "image", 1, 4, Some(&format!("c{i}")))).collect();
    s.finished = (0..20)
        .map(|i| finished(&format!("f{i}"), "image", if i % 3 == 0 { Outcome::Failed } else { Outcome::Succeeded }, if i % 3 == 0 { 0 } else { 4 }, None))
        .collect();
    s
}

fn time(name: &str, n: u32, mut f: impl FnMut(u32)) {
    for i in 0..n / 10 {
        f(i); // warm up
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("{name:<44} {per:>8.2} µs per call  ({n} calls)");
}

fn main() {
    let states: Vec<ServerState> = (1..=2000).map(busy).collect();
    let json = serde_json::to_value(busy(1)).unwrap();
    println!("core hot paths on a busy account (the wasm's size profile, one thread):");

    time("read_state (serde_json source, clones incl.)", 2000, |_| {
        black_box(read_state(&J(json.clone())).unwrap());
    });
    let mut q = Quota::new(Config::default());
    time("apply_state (a newer revision)", 2000, |i| {
        black_box(q.apply_state(states[i as usize].clone(), T0).unwrap());
    });
    time("apply_state (a duplicate revision)", 2000, |_| {
        black_box(q.apply_state(states[1999].clone(), T0).unwrap());
    });
    time("view (the whole view model, built afresh)", 2000, |_| {
        black_box(q.view(T0, &PlainFmt));
    });
    // What the widget does on each update: a long-lived viewer, and a state
    // in which one package's balance moved.
    let mut viewer = Viewer::new(Memo::new(PlainFmt));
    let moved: Vec<ServerState> = (0..2000u64)
        .map(|i| {
            let mut s = busy(3000 + i);
            let p = &mut s.packages[(i % 20) as usize];
            p.remaining = p.remaining.saturating_sub(Units::from_milli(250 * (1 + i % 7)));
            s
        })
        .collect();
    let mut q2 = Quota::new(Config::default());
    time("apply_state + cached view (one balance moved)", 2000, |i| {
        q2.apply_state(moved[i as usize].clone(), T0).unwrap();
        black_box(viewer.view(&q2, T0));
    });
    q.set_request("image", 1);
    time("begin_submit + end_hold (a refused click)", 2000, |i| {
        let id = format!("b{i}");
        q.begin_submit(id.clone(), T0).unwrap();
        q.end_hold(&id, quota_widget::core::HoldEnd::Refused, None, T0);
    });
}
