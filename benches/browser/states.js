// Server states for the benchmark (docs/wire.md), the same for both
// implementations: a small account and a busy one (20 packages, 8 running
// and 20 finished tasks). Each new revision moves a few figures.
const DAY = 86_400_000;
const T0 = Date.now();

/** A state of the given size at `revision`; `step` moves a few figures. */
export function makeState(account, revision) {
  const busy = account === "busy";
  const step = revision;
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
