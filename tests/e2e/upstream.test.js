// End-to-end through the whole chain in upstream mode (docs/kling.md): the
// demo dashboard in headless Chromium → quota-server --upstream kling →
// kling-sim, the simulator of the generation service, each a real process
// on its own port, talking HTTP both ways (creates, queries and package
// syncs one way, callbacks the other). The simulator's /sim/* paths script
// task fates and another client's use of the account. Timings are never
// asserted; the sampled frames are printed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  SIM_ACCESS_KEY,
  SIM_BIN,
  SIM_SECRET_KEY,
  apiOk,
  buttonDescription,
  checkPrerequisites,
  launchBrowser,
  newContext,
  remainingText,
  signIn,
  sleep,
  startSim,
  startUpstreamServer,
  tempDir,
  waitForButton,
  waitForLive,
} from "./harness.js";

const TOKEN = "demo";
// The simulator's sample account: 66.5 and 300 units in its online packs.
const START = "366.5 units remaining";

let browser;
let tmp;
let chains = 0;

before(async () => {
  checkPrerequisites();
  if (!existsSync(SIM_BIN)) throw new Error(`${SIM_BIN} missing (cargo build --release -p kling-sim, or QW_SIM_BIN)`);
  tmp = tempDir("qw-e2e-upstream-");
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  tmp?.remove();
});

/** A simulator, a quota-server in front of it, and a signed-in dashboard. */
async function chain(simArgs = []) {
  chains += 1;
  const db = join(tmp.dir, `chain-${chains}.sqlite3`);
  const sim = await startSim(["--task-ms", "300..600", "--fail-rate", "0", ...simArgs]);
  const server = await startUpstreamServer({ sim, db });
  const context = await newContext(browser);
  const page = await context.newPage();
  await signIn(page, server, TOKEN);
  const c = { sim, server, context, page, db };
  // c.server may be replaced by a restarted process.
  c.stop = async () => {
    const problems = [...context.problems];
    await context.close();
    await c.server.stop();
    await sim.stop();
    assert.deepEqual(problems, [], "no script errors or CSP violations on the page");
    for (const line of c.server.log) {
      assert.ok(!line.includes(SIM_SECRET_KEY) && !line.includes(SIM_ACCESS_KEY), `a key in the log: ${line}`);
    }
  };
  return c;
}

/** Records the units text at every animation frame until `stopSampling`. */
async function startSampling(page) {
  await page.evaluate(() => {
    window.__qwSamples = [];
    window.__qwSampling = true;
    const tick = () => {
      window.__qwSamples.push(document.querySelector(".qw-remaining")?.textContent ?? null);
      if (window.__qwSampling) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

async function stopSampling(page) {
  return page.evaluate(() => {
    window.__qwSampling = false;
    return window.__qwSamples;
  });
}

/** The sampled texts with repeats collapsed: the sequence a person saw. */
function seen(samples) {
  return samples.filter((text, i) => i === 0 || text !== samples[i - 1]);
}

async function attemptText(page, status) {
  const row = page.locator(`.qw-attempt[data-status=${status}]`).first();
  await row.waitFor({ state: "visible", timeout: 15_000 });
  return row.textContent();
}

/** Waits until the server has read the service's packages again (a newer sync time). */
async function nextSync(server) {
  const first = (await apiOk(server, "GET", "/api/state", { token: TOKEN })).packages_synced_at_ms;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const state = await apiOk(server, "GET", "/api/state", { token: TOKEN });
    if (state.packages_synced_at_ms > first) return state;
    if (Date.now() > deadline) throw new Error("no package sync within 10 s");
    await sleep(100);
  }
}

describe("upstream mode: dashboard → quota-server → the service's simulator", () => {
  test("the packages come from the service, with fractions and the age of their figures", { timeout: 60_000 }, async () => {
    const c = await chain();
    try {
      assert.equal(await remainingText(c.page), START);
      const names = await c.page.locator(".qw-package-name").allTextContents();
      assert.deepEqual(names.slice().sort(), ["Next month", "Old pack", "Video pack", "Trial pack"].sort());
      const trial = c.page.locator(".qw-package").filter({ hasText: "Trial pack" });
      assert.match(await trial.locator(".qw-package-units").textContent(), /^66\.5 of \d[\d,.]* units$/);
      const freshness = await c.page.locator(".qw-freshness").textContent();
      assert.match(freshness, /^Live · updated \d+ s ago · package figures from the service, \d+ s ago$/);
    } finally {
      await c.stop();
    }
  });

  test("a failed task leaves the units text unchanged at every frame, while the balance lags", { timeout: 60_000 }, async () => {
    // The service's figures lag an hour behind its deductions.
    const c = await chain(["--lag-ms", "3600000"]);
    try {
      await c.sim.control("/sim/script", {
        outcomes: [{ outcome: "failed", reason: "content moderation: the prompt was blocked", ms: 1500 }],
      });
      assert.equal(await remainingText(c.page), START);
      await startSampling(c.page);
      await waitForButton(c.page, true);
      await c.page.locator("#generate").click();
      await c.page.locator(".qw-attempt[data-status=running]").first().waitFor({ timeout: 10_000 });
      const ended = await attemptText(c.page, "failed");
      assert.match(ended, /failed, not charged: content moderation: the prompt was blocked/);
      // Two more package syncs after the failure change nothing either.
      await nextSync(c.server);
      await nextSync(c.server);
      await sleep(300);
      const samples = await stopSampling(c.page);
      console.log(`# failed task: ${samples.length} frames sampled, texts seen: ${JSON.stringify(seen(samples))}`);
      assert.ok(samples.length >= 60, `enough frames sampled (${samples.length})`);
      assert.deepEqual(seen(samples), [START]);
      const ledger = await c.sim.control("/sim/ledger");
      assert.equal(ledger.creates, 1);
      assert.equal(ledger.tasks[0].deducted, "0");
    } finally {
      await c.stop();
    }
  });

  test("a success lowers the units by the reported fraction exactly once, also after the lag catches up", { timeout: 60_000 }, async () => {
    const c = await chain(["--lag-ms", "3600000"]);
    try {
      await c.sim.control("/sim/script", { outcomes: [{ outcome: "succeed", ms: 800 }] });
      await c.page.locator("#count").selectOption("3");
      await startSampling(c.page);
      await waitForButton(c.page, true);
      await c.page.locator("#generate").click();
      const done = await attemptText(c.page, "succeeded");
      assert.match(done, /^Image ×3 · done, 0\.75 units charged · \d{1,2}:\d\d/);
      // The service still reports the old balance: a sync keeps the charge once.
      await nextSync(c.server);
      // The service catches up: its figure now includes the deduction.
      await c.sim.control("/sim/settings", { lag_ms: 0 });
      await nextSync(c.server);
      await nextSync(c.server);
      await sleep(300);
      const samples = await stopSampling(c.page);
      console.log(`# success: ${samples.length} frames sampled, texts seen: ${JSON.stringify(seen(samples))}`);
      assert.deepEqual(seen(samples), [START, "365.75 units remaining"]);
      const ledger = await c.sim.control("/sim/ledger");
      assert.equal(ledger.tasks[0].deducted, "0.75");
    } finally {
      await c.stop();
    }
  });

  test("the service's 1303 (slots taken by another client) shows its reason and charges nothing", { timeout: 60_000 }, async () => {
    const c = await chain();
    try {
      // Another client of the same account holds every image slot upstream.
      await c.sim.control("/sim/occupy", { kind: "image", slots: 4, ms: 20_000 });
      await waitForButton(c.page, true);
      await c.page.locator("#generate").click();
      const refused = await attemptText(c.page, "refused");
      assert.match(refused, /refused, not charged: .*parallel task limit/);
      assert.equal(await remainingText(c.page), START);
      // The demo's status line follows that attempt: refused, not charged, why.
      const status = await c.page.locator("#submit-status").textContent();
      assert.match(status, /not charged.*(parallel task limit|slots are busy)/);
      // Within the backoff the next click is refused by quota-server, not sent upstream.
      await waitForButton(c.page, true);
      await c.page.locator("#generate").click();
      await c.page.waitForFunction(() => document.querySelectorAll(".qw-attempt[data-status=refused]").length >= 2);
      const ledger = await c.sim.control("/sim/ledger");
      assert.equal(ledger.creates, 0, "the service created no task");
    } finally {
      await c.stop();
    }
  });

  test("with the queue, the service's 1303s are waited through: the requests start when its slots free, none shown as refused", { timeout: 90_000 }, async () => {
    const c = await chain();
    try {
      // Another client of the same account holds every image slot upstream
      // for 3 s; quota-server's own count sees them all free.
      await c.sim.control("/sim/occupy", { kind: "image", slots: 4, ms: 3_000 });
      await c.page.locator("#queue").check();
      await c.page.evaluate(() => {
        window.__qwRefusedSeen = 0;
        window.__qwQueuedSeen = 0;
        const tick = () => {
          window.__qwRefusedSeen = Math.max(window.__qwRefusedSeen, document.querySelectorAll(".qw-attempt[data-status=refused]").length);
          window.__qwQueuedSeen = Math.max(window.__qwQueuedSeen, document.querySelectorAll(".qw-attempt[data-status=queued]").length);
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      });
      for (let i = 0; i < 2; i += 1) {
        await waitForButton(c.page, true);
        await c.page.locator("#generate").click();
        await c.page.waitForFunction((n) => document.querySelectorAll(".qw-attempt").length >= n, i + 1);
      }
      // Put back in the queue by the service's 1303, then started once its
      // slots free, and settled.
      await c.page.waitForFunction(() => document.querySelectorAll(".qw-attempt[data-status=succeeded]").length === 2, null, {
        timeout: 60_000,
        polling: 100,
      });
      const seenStatuses = await c.page.evaluate(() => ({ refused: window.__qwRefusedSeen, queued: window.__qwQueuedSeen }));
      console.log(`# upstream queue: at most ${seenStatuses.queued} listed as queued, ${seenStatuses.refused} as refused`);
      const ledger = await c.sim.control("/sim/ledger");
      console.log(`# upstream queue: ${ledger.over_concurrency} creates answered 1303 before the slots freed`);
      assert.equal(seenStatuses.refused, 0, "no request was ever shown refused");
      assert.ok(seenStatuses.queued >= 1, "they waited, listed as queued");
      assert.ok(ledger.over_concurrency >= 1, `the service answered 1303 (${ledger.over_concurrency} times)`);
      assert.equal(ledger.creates, 2, "each created upstream once");
      assert.deepEqual(ledger.tasks.map((t) => t.deducted), ["0.25", "0.25"]);
      await nextSync(c.server);
      assert.equal(await remainingText(c.page), "366 units remaining");
    } finally {
      await c.stop();
    }
  });

  test("quota-server killed during a task: a new process resumes it and settles it once", { timeout: 90_000 }, async () => {
    const c = await chain();
    let server = c.server;
    try {
      await c.sim.control("/sim/script", { outcomes: [{ outcome: "succeed", ms: 600_000 }] });
      await waitForButton(c.page, true);
      await c.page.locator("#generate").click();
      await c.page.locator(".qw-attempt[data-status=running]").first().waitFor({ timeout: 10_000 });
      await server.stop("SIGKILL");
      // The page sees the link drop and blocks submit with the reason.
      await waitForButton(c.page, false);
      assert.match(await buttonDescription(c.page), /Reconnecting|out of date|Connection lost/);
      // The task ends upstream while no quota-server runs.
      const ledger = await c.sim.control("/sim/ledger");
      await c.sim.control(`/sim/end/${ledger.tasks[0].task_id}`, { outcome: "succeed" });
      server = await startUpstreamServer({ sim: c.sim, db: c.db, addr: server.addr });
      c.server = server;
      await waitForLive(c.page, 20_000);
      const done = await attemptText(c.page, "succeeded");
      assert.match(done, /^Image ×1 · done, 0\.25 units charged · \d{1,2}:\d\d/);
      await nextSync(server);
      assert.equal(await remainingText(c.page), "366.25 units remaining");
      const after = await c.sim.control("/sim/ledger");
      assert.equal(after.creates, 1, "no second task upstream");
    } finally {
      await c.stop();
    }
  });
});
