// Server states for the benchmark (docs/wire.md), the same for both
// implementations: a small account and a busy one (20 packages, 8 running
// and 20 finished tasks). Each new revision moves a few figures.
const DAY = 86_400_000;
const T0 = Date.now();

/**
 * A state of the given size at `revision`; `step` moves a few figures, so a
 * new revision with the `step` of the one before is a state whose shown
 * figures did not change (a no-op update).
 */
export function makeState(account, revision, step = revision) {
  const busy = account === "busy";
  const npackages = busy ? 20 : 2;
  const nrunning = busy ? 8 : 1;
  const nfinished = busy ? 20 : 3;
  const packages = [];
  for (let i = 0; i < npackages; i++) {
    // One package's balance moves per update; the others stay.
    const spent = i === step % npackages ? step % 50 : 0;
    packages.push({
      id: `p${i}`,
      name: `Package ${i}`,
      total: 1000,
      remaining: 900 - spent,
      effective_at_ms: T0 - DAY,
      expires_at_ms: T0 + (3 + i) * DAY,
      status: "active",
    });
  }
  const running = [];
  for (let i = 0; i < nrunning; i++) {
    running.push({ id: `r${i}`, kind: "image", slots: 1, reserved_units: 4, client_request_id: `c${i}`, started_at_ms: T0 });
  }
  const finished = [];
  for (let i = 0; i < nfinished; i++) {
    const failed = i % 3 === 0;
    finished.push({
      id: `f${i}`,
      kind: "image",
      slots: 1,
      outcome: failed ? "failed" : "succeeded",
      units_charged: failed ? 0 : 4,
      reason: failed ? "content moderation" : null,
      client_request_id: null,
      finished_at_ms: T0 - i * 1000,
    });
  }
  return {
    revision,
    server_time_ms: T0 + step,
    pools: [
      // The image pool's use moves with every other update.
      { kind: "image", limit: 16, in_use: nrunning + (step % 2), unit_cost: 4, slot_rule: "per_item" },
      { kind: "video", limit: 1, in_use: 0, unit_cost: 20, slot_rule: "per_task" },
    ],
    packages,
    running,
    finished,
  };
}

/**
 * States that take both views through the rest of what they show, for the
 * check that they render the same page: a full pool (blocked), low and
 * fractional units, packages scheduled, expired, used up, added, removed and
 * reordered, tasks that end (announcements), refused ones, a reason that
 * needs no slot pool, an older revision, the same revision again, an
 * upstream sync (the estimate and the packages' age), and a state that
 * fails the checks (the error line, last good figures kept).
 */
export function checkStates(account, revision) {
  const out = [];
  let rev = revision;
  const next = (f) => {
    const s = makeState(account, rev, rev);
    f?.(s);
    s.revision = rev++;
    out.push(s);
  };
  next();
  next();
  next((s) => { s.pools[0].in_use = s.pools[0].limit; });
  next((s) => { s.pools[0].in_use = s.pools[0].limit + 3; s.pools[1].in_use = 1; });
  next((s) => { for (const p of s.packages) p.remaining = 3; });
  next((s) => { for (const p of s.packages) p.remaining = 0.25; s.running = []; });
  next((s) => {
    s.packages[0].status = "pending";
    s.packages[0].effective_at_ms = s.server_time_ms + 86_400_000;
    s.packages[1].status = "expired";
    s.packages.push({ ...s.packages[1], id: "used", name: "Used up", remaining: 0, status: "exhausted" });
    s.packages.push({ ...s.packages[1], id: "far", name: "Later", status: "active", expires_at_ms: s.server_time_ms + 40 * 86_400_000 });
  });
  next((s) => { s.packages.reverse(); s.pools.reverse(); });
  next((s) => {
    s.finished.unshift({ id: "new1", kind: "image", slots: 2, outcome: "succeeded", units_charged: 8.5, reason: null, client_request_id: "c0", finished_at_ms: s.server_time_ms });
    s.finished.push({ id: "new2", kind: "video", slots: 1, outcome: "refused", units_charged: 0, reason: null, client_request_id: null, finished_at_ms: s.server_time_ms - 5 });
    s.running = s.running.slice(1);
  });
  next((s) => { s.finished.reverse(); s.packages_synced_at_ms = s.server_time_ms - 90_000; });
  next((s) => { s.pools = s.pools.filter((p) => p.kind !== "image"); s.running = []; s.finished = s.finished.filter((t) => t.kind !== "image"); });
  next((s) => { s.pools[0].unit_cost = 1000; });
  next();
  out.push({ ...out[out.length - 1], revision: rev - 3 }); // older: ignored
  out.push({ ...out[out.length - 2] }); // the same revision again
  next((s) => { s.packages[0].remaining = 5000; }); // remaining over total: refused
  next();
  return out;
}
