// End-to-end: the demo dashboard (www/dist, built from the npm package) in
// headless Chromium against the reference quota server (--dev --no-worker),
// under the server's strict CSP. Each test uses a fresh account and asserts
// what a user sees. Timings are printed, never asserted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  api,
  apiOk,
  buttonDescription,
  checkPrerequisites,
  createAccount,
  IMAGE_UNIT_COST,
  launchBrowser,
  meterText,
  newContext,
  remainingText,
  screenshot,
  shownRevision,
  signIn,
  sleep,
  startServer,
  submitAndWaitRunning,
  tempDir,
  unitsOf,
  waitForButton,
  waitForLive,
} from "./harness.js";

const SLOTS_BUSY = /^All image slots are busy: 0 of 4 free, this request needs 1\.?$/;
const RECONNECT_REASON = "Connection lost. Reconnecting to the quota server.";

let server;
let browser;
let tmp;

before(async () => {
  checkPrerequisites();
  tmp = tempDir();
  server = await startServer({ db: join(tmp.dir, "suite.sqlite3") });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
  tmp?.remove();
});

/** A fresh account, a context (cookie jar) and a signed-in page. */
async function freshDashboard(overrides) {
  const account = await createAccount(server, overrides);
  const context = await newContext(browser);
  const page = await context.newPage();
  await signIn(page, server, account.token);
  return { ...account, context, page };
}

async function closeClean(context) {
  const problems = [...context.problems];
  await context.close();
  assert.deepEqual(problems, [], "no script errors or CSP violations on the page");
}

/** Fills `n` image slots by clicking Generate n times (1 image each). */
async function fillSlots(page, token, n, srv = server) {
  let state;
  for (let i = 1; i <= n; i += 1) state = await submitAndWaitRunning(page, srv, token, i);
  // The server's state has reached the page too.
  await page.waitForFunction((want) => {
    const text = [...document.querySelectorAll(".qw-meter-text")].map((e) => e.textContent).join("|");
    return text.includes(want);
  }, `${n} of 4 in use`);
  return state;
}

/** The client request id that the widget wrote into the form on the last submit. */
async function lastRequestId(page) {
  return page.locator('#generate-form input[name="client_request_id"]').inputValue();
}

/** The running task that the page's last submit started. */
async function taskOfLastSubmit(page, token, srv = server) {
  const id = await lastRequestId(page);
  assert.ok(id, "the widget wrote a client request id into the form");
  const state = await apiOk(srv, "GET", "/api/state", { token });
  const task = state.running.find((t) => t.client_request_id === id);
  assert.ok(task, `a running task carries the client request id ${id}`);
  return task;
}

/** Starts an in-page wait that resolves (with the page's wall clock) when the button is enabled. */
function whenButtonEnabled(page, timeout = 10_000) {
  return page
    .waitForFunction(
      () => {
        const button = document.querySelector("#generate");
        return button && button.getAttribute("aria-disabled") !== "true" ? performance.timeOrigin + performance.now() : false;
      },
      null,
      { polling: "raf", timeout },
    )
    .then((handle) => handle.jsonValue());
}

const nowMs = () => performance.timeOrigin + performance.now();

describe("quota-widget demo dashboard", () => {
  test("sign-in, then the dashboard with live figures (idle)", { timeout: 30_000 }, async () => {
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
    await page.goto(server.url + "/");
    await page.locator("#signin").waitFor({ state: "visible" });
    assert.deepEqual(consoleErrors, [], "no console error before sign-in (no 401 on the way in)");

    // A wrong token is refused with a message; the dashboard stays hidden.
    await page.locator("#token").fill("no-such-account");
    await page.getByRole("button", { name: "Sign in" }).click();
    await assert.doesNotReject(
      page.getByRole("alert").filter({ hasText: "Unknown token" }).waitFor({ state: "visible" }),
    );
    assert.equal(await page.locator("#dashboard").isVisible(), false);

    await page.locator("#token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await waitForLive(page);

    assert.equal(await remainingText(page), "2,200 units remaining");
    assert.equal(await meterText(page, "image"), "0 of 4 in use");
    const meter = page.locator(".qw-meter [role=meter]").first();
    assert.equal(await meter.getAttribute("aria-valuemax"), "4");
    assert.equal(await meter.getAttribute("aria-valuenow"), "0");
    assert.equal(await page.locator(".qw-cost").textContent(), "This request: 4 units · 4 per image · 2,196 left after");
    assert.equal(await page.locator(".qw-package").count(), 3);
    assert.equal(await page.locator("#generate").isEnabled(), true);
    assert.equal(await page.locator(".qw-error").isVisible(), false);

    // The count offers what the plan can run at once; its label follows the kind.
    assert.deepEqual(await page.locator("#count option").allTextContents(), ["1", "2", "3", "4"]);
    assert.equal(await page.locator("#count-label").textContent(), "Number of images");
    // Choosing 3 images updates the cost preview; video fixes the count at 1.
    await page.locator("#count").selectOption("3");
    await page.waitForFunction(() => document.querySelector(".qw-cost")?.textContent.startsWith("This request: 12 units"));
    await page.locator("#kind").selectOption("video");
    assert.equal(await page.locator("#count-label").textContent(), "Number of videos");
    assert.equal(await page.locator("#count").isDisabled(), true);
    assert.equal(await page.locator("#count").inputValue(), "1");
    await page.waitForFunction(() => document.querySelector(".qw-cost")?.textContent.startsWith("This request: 20 units"));
    await page.locator("#kind").selectOption("image");
    await page.waitForFunction(() => document.querySelector(".qw-cost")?.textContent.startsWith("This request: 4 units"));

    // A reload skips the sign-in step: /api/state already answers 200.
    await page.reload();
    await waitForLive(page);
    assert.equal(await page.locator("#signin").isVisible(), false);
    await page.locator("#prompt").focus();
    await page.locator("#prompt").evaluate((e) => e.blur());
    await screenshot(page, "dashboard-idle");
    await closeClean(context);
  });

  test("all image slots filled: the button is disabled and says why", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    await fillSlots(page, token, 4);
    await waitForButton(page, false);

    const button = page.locator("#generate");
    assert.equal(await button.evaluate((b) => b.disabled), false, "blocked, it stays in the tab order (no native disabled)");
    assert.equal(await button.getAttribute("aria-disabled"), "true");
    assert.match(await buttonDescription(page), SLOTS_BUSY);
    // The reason sits next to the button it blocks, not in the quota card.
    assert.match(await page.locator("#generate-reason .qw-reason").textContent(), SLOTS_BUSY);
    assert.equal(await page.locator("#quota-widget .qw-reason").count(), 0);
    // Blocked, the button stays reachable with Tab, its reason read with it.
    await page.locator("#prompt").focus();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "generate");
    assert.equal(await page.locator(".qw-meter [role=meter]").first().getAttribute("aria-valuenow"), "4");
    assert.equal(await page.locator(".qw-attempt[data-status=running]").count(), 4);
    // Holds never deduct: 4 images reserve 16 units, the remaining stays.
    assert.equal(await remainingText(page), "2,200 units remaining");
    assert.match(await page.locator(".qw-units-detail").textContent(), /Running tasks hold 16 · 2,184 can be spent now/);

    // A click on the disabled button sends nothing.
    await button.click({ force: true });
    await sleep(200);
    const state = await apiOk(server, "GET", "/api/state", { token });
    assert.equal(state.running.length, 4);
    assert.equal(state.finished.length, 0, "no refused attempt was sent");

    await screenshot(page, "busy");
    await closeClean(context);
  });

  test("a task ends: the freed slot enables the button again", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    await fillSlots(page, token, 4);
    await waitForButton(page, false);

    for (const outcome of ["fail", "succeed"]) {
      if (outcome === "succeed") {
        // Take the freed slot again, so that all 4 are busy once more.
        await submitAndWaitRunning(page, server, token, 4);
        await page.waitForFunction(() => document.querySelector(".qw-meter-text")?.textContent === "4 of 4 in use");
        await waitForButton(page, false);
      }
      const task = await taskOfLastSubmit(page, token);
      const enabled = whenButtonEnabled(page);
      const t0 = nowMs();
      await apiOk(server, "POST", `/api/dev/tasks/${task.id}/${outcome}`, { token, body: {} });
      const t1 = await enabled;
      console.log(`slot freed (dev ${outcome}) -> button enabled: ${Math.round(t1 - t0)} ms`);
      assert.equal(await page.locator("#generate").getAttribute("aria-disabled"), null);
      assert.equal(await meterText(page, "image"), "3 of 4 in use");
    }
    await closeClean(context);
  });

  test("a task fails: the remaining units never move, not for one frame", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    const before = await remainingText(page);

    // Record every distinct value of .qw-remaining, on every DOM mutation and
    // every animation frame, from before the click until the end.
    await page.evaluate(() => {
      const seen = [];
      let last;
      const sample = () => {
        const element = document.querySelector(".qw-remaining");
        const value = element ? element.textContent : "(absent)";
        if (value !== last) {
          seen.push(value);
          last = value;
        }
      };
      const observer = new MutationObserver(sample);
      observer.observe(document.querySelector("#quota-widget"), {
        subtree: true,
        childList: true,
        characterData: true,
        attributes: true,
      });
      let running = true;
      const frame = () => {
        sample();
        if (running) requestAnimationFrame(frame);
      };
      sample();
      requestAnimationFrame(frame);
      window.__remainingSampler = {
        stop() {
          running = false;
          sample();
          observer.disconnect();
          return seen;
        },
      };
    });

    await submitAndWaitRunning(page, server, token, 1);
    const task = await taskOfLastSubmit(page, token);
    await page.waitForFunction(() => document.querySelector(".qw-attempt[data-status=running]"));
    await apiOk(server, "POST", `/api/dev/tasks/${task.id}/fail`, { token, body: { reason: "content moderation" } });
    await page.waitForFunction(
      () => [...document.querySelectorAll(".qw-attempt")].some((e) => e.textContent.includes("failed, not charged")),
      null,
      { polling: "raf" },
    );
    const seen = await page.evaluate(() => window.__remainingSampler.stop());

    assert.deepEqual(seen, [before], `.qw-remaining showed only "${before}" (saw ${JSON.stringify(seen)})`);
    assert.equal(
      (await page.locator(".qw-attempt").first().textContent()).replace(/ · [^·]+$/, ""),
      "Image ×1 · failed, not charged: content moderation",
      "the attempt, calm, with its time after the last ·",
    );
    assert.equal(await page.locator(".qw-attempt").first().getAttribute("data-status"), "failed");
    const state = await apiOk(server, "GET", "/api/state", { token });
    assert.equal(state.finished[0].units_charged, 0);
    await page.locator("#prompt").evaluate((e) => e.blur());
    await screenshot(page, "failed-not-charged");
    await closeClean(context);
  });

  test("a task succeeds: the units drop by exactly its cost", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    const count = 3;
    const cost = IMAGE_UNIT_COST * count;
    await page.locator("#count").selectOption(String(count));
    await page.waitForFunction((c) => document.querySelector(".qw-cost")?.textContent.startsWith(`This request: ${c} units`), cost);
    const before = unitsOf(await remainingText(page));

    await submitAndWaitRunning(page, server, token, 1);
    const task = await taskOfLastSubmit(page, token);
    assert.equal(task.reserved_units, cost);
    // While it runs, the units are reserved, not deducted.
    await page.waitForFunction(() => document.querySelector(".qw-attempt[data-status=running]"));
    assert.equal(unitsOf(await remainingText(page)), before);

    await apiOk(server, "POST", `/api/dev/tasks/${task.id}/succeed`, { token, body: {} });
    await page.waitForFunction(
      () => document.querySelector(".qw-attempt")?.getAttribute("data-status") === "succeeded",
      null,
      { polling: "raf" },
    );
    const afterUnits = unitsOf(await remainingText(page));
    assert.equal(before - afterUnits, cost, `units went from ${before} to ${afterUnits}, cost ${cost}`);
    assert.equal(await meterText(page, "image"), "0 of 4 in use");
    await closeClean(context);
  });

  test("two tabs of one browser stay in step", { timeout: 30_000 }, async () => {
    const { token, context, page: tabA } = await freshDashboard();
    const tabB = await context.newPage();
    await tabB.goto(server.url + "/");
    await waitForLive(tabB); // the session cookie is shared: no sign-in step
    assert.equal(await tabB.locator("#signin").isVisible(), false);
    await tabA.bringToFront();

    // Tabs share holds: tab B counts tab A's hold at once
    // ("2 being submitted", tests/e2e/tabs.test.js), then the server's task.
    const seenInB = tabB.waitForFunction(
      () => {
        const meter = document.querySelector(".qw-meter-text")?.textContent;
        const detail = document.querySelector(".qw-units-detail")?.textContent ?? "";
        return meter === "2 of 4 in use" && detail.includes("Running tasks hold 8")
          ? performance.timeOrigin + performance.now()
          : false;
      },
      null,
      { polling: 20, timeout: 5_000 },
    );
    await tabA.locator("#count").selectOption("2");
    await waitForButton(tabA, true);
    const t0 = nowMs();
    await tabA.locator("#generate").click();
    const t1 = await (await seenInB).jsonValue();
    console.log(`submit in tab A -> tab B shows it: ${Math.round(t1 - t0)} ms`);

    assert.equal(await meterText(tabB, "image"), "2 of 4 in use");
    assert.equal(await remainingText(tabB), await remainingText(tabA));

    // And the end of the task reaches tab B too.
    const task = await taskOfLastSubmit(tabA, token);
    await apiOk(server, "POST", `/api/dev/tasks/${task.id}/fail`, { token, body: { reason: "content moderation" } });
    await tabB.waitForFunction(
      () => document.querySelector(".qw-attempt")?.textContent.includes("failed, not charged"),
      null,
      { timeout: 5_000 },
    );
    assert.equal(await meterText(tabB, "image"), "0 of 4 in use");
    await closeClean(context);
  });

  test("20 parallel submits against a limit of 4: exactly 4 accepted", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    const result = await page.evaluate(async () => {
      // The widget's meter, sampled on every frame and mutation while it runs.
      let maxMeter = 0;
      const meter = document.querySelector(".qw-meter [role=meter]");
      const sampleMeter = () => {
        maxMeter = Math.max(maxMeter, Number(meter.getAttribute("aria-valuenow")));
      };
      const observer = new MutationObserver(sampleMeter);
      observer.observe(meter, { attributes: true });

      let done = false;
      let maxInUse = 0;
      let maxRunning = 0;
      let polls = 0;
      const poll = async () => {
        const response = await fetch("/api/state", { cache: "no-store" });
        const state = await response.json();
        const image = state.pools.find((p) => p.kind === "image");
        maxInUse = Math.max(maxInUse, image.in_use);
        maxRunning = Math.max(maxRunning, state.running.length);
        polls += 1;
      };
      const poller = (async () => {
        while (!done) await poll();
      })();

      const submits = Array.from({ length: 20 }, (_, i) =>
        fetch("/api/generations", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            kind: "image",
            count: 1,
            client_request_id: `burst-${i}-${Math.random().toString(36).slice(2)}`,
            prompt: "a burst",
          }),
        }).then(async (response) => ({ status: response.status, body: await response.json() })),
      );
      const answers = await Promise.all(submits);
      done = true;
      await poller;
      await poll();
      // Give the pushed state a moment to land, then sample once more.
      await new Promise((r) => setTimeout(r, 300));
      sampleMeter();
      observer.disconnect();
      return { answers, maxInUse, maxRunning, polls, maxMeter };
    });

    const accepted = result.answers.filter((a) => a.status === 201);
    const refused = result.answers.filter((a) => a.status === 429);
    console.log(
      `20 parallel submits: ${accepted.length} accepted, ${refused.length} refused; ` +
        `${result.polls} state polls meanwhile, max in_use ${result.maxInUse}, max running ${result.maxRunning}`,
    );
    assert.equal(accepted.length, 4, JSON.stringify(result.answers.map((a) => a.status)));
    assert.equal(refused.length, 16);
    for (const answer of refused) assert.equal(answer.body.code, 1303);
    assert.ok(result.maxInUse <= 4, `server reported in_use ${result.maxInUse}`);
    assert.ok(result.maxRunning <= 4, `server reported ${result.maxRunning} running tasks`);
    assert.ok(result.maxMeter <= 4, `the widget's meter reached ${result.maxMeter}`);

    const state = await apiOk(server, "GET", "/api/state", { token });
    assert.equal(state.running.length, 4);
    assert.equal(state.pools.find((p) => p.kind === "image").in_use, 4);
    await page.waitForFunction(() => document.querySelector(".qw-meter-text")?.textContent === "4 of 4 in use");
    await waitForButton(page, false);
    assert.match(await buttonDescription(page), SLOTS_BUSY);
    await closeClean(context);
  });

  test("a malformed state is reported and the last good figures stay", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    const goodRemaining = await remainingText(page);
    const goodRevision = await shownRevision(page);
    assert.ok(goodRevision !== null, "the freshness line shows a revision");
    const alert = page.locator(".qw-error[role=alert]");
    assert.equal(await alert.isVisible(), false);

    // 1. Not JSON at all.
    const raw1 = await apiOk(server, "POST", "/api/dev/raw-event", { token, body: '{"revision": "oops"' });
    assert.ok(raw1.receivers >= 1, "the page's event stream received the raw event");
    await alert.waitFor({ state: "visible", timeout: 5_000 });
    const message1 = await alert.textContent();
    console.log(`bad JSON -> alert: ${message1}`);
    assert.match(message1, /^Could not use the latest quota update: .+Showing the last good figures\.$/);
    assert.equal(await remainingText(page), goodRemaining);
    assert.equal(await shownRevision(page), goodRevision);

    // 2. Valid JSON that breaks the contract: a package with more remaining
    //    than its total, under a higher revision.
    const state = await apiOk(server, "GET", "/api/state", { token });
    const bad = structuredClone(state);
    bad.revision = state.revision + 50;
    bad.packages[0].remaining = bad.packages[0].total + 1;
    await apiOk(server, "POST", "/api/dev/raw-event", { token, body: JSON.stringify(bad) });
    await page.waitForFunction(
      (previous) => (document.querySelector(".qw-error")?.textContent ?? previous) !== previous,
      message1,
      { timeout: 5_000 },
    );
    const message2 = await alert.textContent();
    console.log(`contract-breaking state -> alert: ${message2}`);
    // The message names the broken rule (remaining above total).
    assert.match(message2, /^Could not use the latest quota update: .+Showing the last good figures\.$/);
    assert.match(message2, /201 units remaining of a total of 200/);
    assert.equal(await alert.isVisible(), true);
    assert.equal(await remainingText(page), goodRemaining);
    assert.equal(await shownRevision(page), goodRevision);
    assert.equal(await page.locator(".qw-package").first().locator(".qw-package-units").textContent(), "200 of 200 units");

    // 3. The next good state (a lower revision than the bad one, which must
    //    not have counted) is shown, and the alert goes away.
    const grant = await apiOk(server, "POST", "/api/dev/packages", {
      token,
      // Effective a minute ago: no package boundary for the server's clock to pass later.
      body: { name: "Top-up", total: 100, effective_in_ms: -60_000, expires_in_ms: 30 * 86_400_000 },
    });
    await page.waitForFunction(() => document.querySelector(".qw-remaining")?.textContent === "2,300 units remaining");
    assert.equal(await shownRevision(page), grant.revision);
    await alert.waitFor({ state: "hidden", timeout: 5_000 });
    await closeClean(context);
  });

  test("without the event stream, the widget polls and stays in step", { timeout: 60_000 }, async () => {
    // A proxy that drops server-sent events: the browser never gets the
    // stream. After three streams that deliver nothing, the widget polls
    // /api/state with If-None-Match instead.
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    let streams = 0;
    let polls = 0;
    await context.route("**/api/events", (route) => {
      streams += 1;
      return route.abort();
    });
    await context.route("**/api/state", (route) => {
      polls += 1;
      return route.continue();
    });
    const page = await context.newPage();
    await page.goto(server.url + "/");
    await page.locator("#token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    const t0 = Date.now();
    await waitForLive(page, 30_000);
    console.log(`stream refused ${streams} times -> polling, live after ${Date.now() - t0} ms`);
    assert.ok(streams >= 3, `the stream was tried (${streams} times) before polling`);
    const streamsAtFallback = streams;
    const before = unitsOf(await remainingText(page));
    await apiOk(server, "POST", "/api/dev/packages", {
      token,
      body: { name: "Top-up", total: 100, effective_in_ms: -60_000, expires_in_ms: 30 * 86_400_000 },
    });
    const t1 = Date.now();
    await page.waitForFunction(
      (want) => /([\d,]+)\s+units?/.exec(document.querySelector(".qw-remaining")?.textContent ?? "")?.[1] === want,
      (before + 100).toLocaleString("en-US"),
      { timeout: 15_000 },
    );
    console.log(`change on the server -> shown by polling: ${Date.now() - t1} ms`);
    assert.match(await page.locator(".qw-freshness").textContent(), /^Live/);
    assert.equal(await page.locator("#generate").isEnabled(), true, "polling keeps the gate open");
    assert.equal(streams, streamsAtFallback, "no more stream attempts once polling");
    assert.ok(polls >= 2, `the state was polled (${polls} requests)`);
    await closeClean(context);
  });

  test("over the server's cap of event streams per account, a tab polls instead", { timeout: 60_000 }, async () => {
    // One stream per account on this server: the second tab's stream is
    // refused (429, code 1302); after three refusals it polls /api/state.
    const own = tempDir();
    const srv = await startServer({
      db: join(own.dir, "cap.sqlite3"),
      args: ["--dev", "--no-worker", "--max-streams-per-account", "1"],
    });
    const contexts = [];
    try {
      const { token } = await createAccount(srv);
      const pages = [];
      for (let i = 0; i < 2; i += 1) {
        const context = await newContext(browser);
        contexts.push(context);
        const page = await context.newPage();
        const refusals = [];
        page.on("response", (r) => {
          if (r.url().endsWith("/api/events") && r.status() === 429) refusals.push(r.status());
        });
        await signIn(page, srv, token).catch(async () => waitForLive(page, 30_000));
        pages.push({ page, refusals });
      }
      const [first, second] = pages;
      await waitForLive(second.page, 30_000);
      console.log(`second tab: ${second.refusals.length} streams refused, then polling`);
      assert.equal(first.refusals.length, 0, "the first tab streams");
      assert.ok(second.refusals.length >= 3, `the second tab's streams were refused (${second.refusals.length})`);
      // Both stay in step: a submit in the polling tab reaches the streaming one.
      await submitAndWaitRunning(second.page, srv, token, 1);
      await first.page.waitForFunction(() =>
        [...document.querySelectorAll(".qw-meter-text")].some((e) => e.textContent.includes("1 of 4 in use")),
      );
      await second.page.waitForFunction(() =>
        [...document.querySelectorAll(".qw-meter-text")].some((e) => e.textContent.includes("1 of 4 in use")),
      );
      for (const context of contexts.splice(0)) {
        const problems = context.problems.filter((p) => !/429|Too Many Requests/.test(p));
        await context.close();
        assert.deepEqual(problems, [], "no script errors or CSP violations");
      }
    } finally {
      for (const context of contexts) await context.close().catch(() => {});
      await srv.stop();
      own.remove();
    }
  });

  test("the server restarts: reconnecting, blocked, then resynced", { timeout: 60_000 }, async () => {
    // A server of its own, with a database file that outlives the process.
    const own = tempDir("qw-e2e-restart-");
    const db = join(own.dir, "restart.sqlite3");
    let srv = await startServer({ db });
    const context = await newContext(browser);
    try {
      const { token } = await createAccount(srv);
      const page = await context.newPage();
      await signIn(page, srv, token);
      await submitAndWaitRunning(page, srv, token, 1);
      await page.waitForFunction(() => document.querySelector(".qw-meter-text")?.textContent === "1 of 4 in use");
      await waitForButton(page, true);
      const revisionBefore = await shownRevision(page);
      const remainingBefore = await remainingText(page);

      // Crash it: SIGKILL, so no stream is ended politely.
      const reconnecting = page.waitForFunction(
        () =>
          (document.querySelector(".qw-freshness")?.textContent ?? "").includes("Reconnecting")
            ? performance.timeOrigin + performance.now()
            : false,
        null,
        { polling: "raf", timeout: 10_000 },
      );
      const tKill = nowMs();
      await srv.stop("SIGKILL");
      const tShown = await (await reconnecting).jsonValue();
      console.log(`server killed -> "Reconnecting" shown: ${Math.round(tShown - tKill)} ms`);

      await waitForButton(page, false, 5_000);
      const button = page.locator("#generate");
      assert.equal(await button.getAttribute("aria-disabled"), "true");
      assert.equal(await buttonDescription(page), RECONNECT_REASON);
      assert.match(await page.locator(".qw-freshness").textContent(), /^Reconnecting… · last updated/);
      // The last known figures stay on screen meanwhile.
      assert.equal(await remainingText(page), remainingBefore);
      await screenshot(page, "reconnecting");

      // Down for a moment, then back on the same port with the same file.
      await sleep(1_000);
      const tRestart = nowMs();
      srv = await startServer({ db, addr: srv.addr });
      const live = page.waitForFunction(
        () => {
          const freshness = document.querySelector(".qw-freshness")?.textContent ?? "";
          const button = document.querySelector("#generate");
          return freshness.startsWith("Live") && button.getAttribute("aria-disabled") !== "true" ? performance.timeOrigin + performance.now() : false;
        },
        null,
        { polling: "raf", timeout: 30_000 },
      );
      const tLive = await (await live).jsonValue();
      console.log(`server restarted -> live again, button enabled: ${Math.round(tLive - tRestart)} ms`);

      assert.equal(await meterText(page, "image"), "1 of 4 in use");
      assert.equal(await remainingText(page), remainingBefore);
      assert.equal(await shownRevision(page), revisionBefore, "the store kept its revision across the restart");
      assert.equal(await page.locator(".qw-error").isVisible(), false);
      assert.equal(await buttonDescription(page), "");

      // And it is really live: a change on the new process reaches the page.
      const task = await taskOfLastSubmit(page, token, srv);
      await apiOk(srv, "POST", `/api/dev/tasks/${task.id}/succeed`, { token, body: {} });
      await page.waitForFunction(() => document.querySelector(".qw-remaining")?.textContent === "2,196 units remaining");
      await closeClean(context);
    } finally {
      await context.close().catch(() => {});
      await srv.stop();
      own.remove();
    }
  });
  test("submit() ends a hold from a proxy's 502 at once, with the true reason", { timeout: 30_000 }, async () => {
    const { token, context, page } = await freshDashboard();
    // A proxy in front of the server answers with an HTML page.
    await page.route("**/api/generations", (route) =>
      route.fulfill({ status: 502, contentType: "text/html", body: "<html><body>Bad Gateway</body></html>" }),
    );
    const t0 = Date.now();
    await page.locator("#generate").click();
    await page.waitForFunction(() => document.querySelector(".qw-attempt")?.getAttribute("data-status") === "failed");
    const took = Date.now() - t0;
    assert.ok(took < 5_000, `ended in ${took} ms, not after the 20 s hold timeout`);
    assert.match(await page.locator(".qw-attempt").first().textContent(), /^Image ×1 · failed, not charged: server error \(HTTP 502\) · /);
    // The status line follows that attempt from the first frame, in the same words.
    assert.equal(await page.locator("#submit-status").textContent(), await page.locator(".qw-attempt").first().textContent());
    await waitForButton(page, true);
    const state = await apiOk(server, "GET", "/api/state", { token });
    assert.equal(state.running.length, 0, "nothing started");
    await screenshot(page, "failed-proxy");
    await closeClean(context);
  });

  test("submit() honours Retry-After: blocked with the reason, then open again", { timeout: 30_000 }, async () => {
    const { context, page } = await freshDashboard();
    await page.route("**/api/generations", (route) =>
      route.fulfill({
        status: 429,
        headers: { "Retry-After": "2", "Content-Type": "application/json" },
        body: JSON.stringify({ code: 1303, message: "parallel task over resource pack limit" }),
      }),
    );
    await page.locator("#generate").click();
    await page.waitForFunction(() => document.querySelector("#generate-reason .qw-reason")?.textContent.startsWith("Try again in"));
    assert.match(await page.locator("#generate-reason .qw-reason").textContent(), /^Try again in [12] s: all image slots are busy\.$/);
    assert.equal(await page.locator("#generate").getAttribute("aria-disabled"), "true");
    // Words for people, not the server's raw message.
    assert.doesNotMatch(await page.locator("#submit-status").textContent(), /parallel task over resource pack limit/);
    await waitForButton(page, true, 5_000);
    await closeClean(context);
  });

  test("the layout survives 380 px and 200% text: the quota card never covers the form", { timeout: 30_000 }, async () => {
    const { context, page } = await freshDashboard();
    const overlaps = () =>
      page.evaluate(() => {
        const a = document.querySelector(".generate").getBoundingClientRect();
        const b = document.querySelector(".quota").getBoundingClientRect();
        const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
        return { apart, overflow: document.documentElement.scrollWidth - window.innerWidth };
      });
    await page.setViewportSize({ width: 380, height: 800 });
    let seen = await overlaps();
    assert.ok(seen.apart, "at 380 px the cards do not overlap");
    assert.ok(seen.overflow <= 0, `at 380 px nothing scrolls sideways (${seen.overflow} px)`);
    await screenshot(page, "narrow");
    await page.setViewportSize({ width: 1180, height: 720 });
    // 200% text, as a reader's browser setting makes it (through CSSOM: the
    // page's CSP refuses inline style tags).
    await page.evaluate(() => document.documentElement.style.setProperty("font-size", "200%"));
    seen = await overlaps();
    assert.ok(seen.apart, "at 200% text the cards do not overlap");
    assert.ok(seen.overflow <= 0, `at 200% text nothing scrolls sideways (${seen.overflow} px)`);
    await screenshot(page, "text-200");
    await closeClean(context);
  });
});
