// End-to-end: the server's queue through the demo dashboard (www/dist, with
// its "Queue when every slot is busy" box checked), in headless Chromium
// against the reference server (--dev --no-worker). With every image slot
// busy, Generate stays usable and says what will happen; three requests
// queue, every tab of the browser lists them, one is cancelled from another
// tab by keyboard, and a freed slot starts the first in the server's own
// transaction. The remaining units never move for a queued, cancelled or
// failed request. The delay from the server's change to the page is
// printed, never asserted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  apiOk,
  buttonDescription,
  checkPrerequisites,
  createAccount,
  IMAGE_UNIT_COST,
  launchBrowser,
  newContext,
  remainingText,
  signIn,
  sleep,
  startServer,
  submitAndWaitRunning,
  tempDir,
  unitsOf,
  waitForButton,
  waitForLive,
} from "./harness.js";

let server;
let browser;
let tmp;

before(async () => {
  checkPrerequisites();
  tmp = tempDir("qw-queue-");
  server = await startServer({ db: join(tmp.dir, "queue.sqlite3") });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
  tmp?.remove();
});

const state = (token) => apiOk(server, "GET", "/api/state", { token });

/** Polls the server's state until `ok(state)`. */
async function waitState(token, ok, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const s = await state(token);
    if (ok(s)) return s;
    if (Date.now() > deadline) throw new Error(`the server never showed ${what}: ${JSON.stringify(s.queued)}`);
    await sleep(25);
  }
}

/** The queued rows a page lists: their text and their cancel buttons' names. */
function queuedRows(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('.qw-attempt[data-status="queued"]')].map((row) => ({
      text: row.querySelector(".qw-attempt-text")?.textContent ?? "",
      cancel: row.querySelector("button.qw-cancel")?.getAttribute("aria-label") ?? null,
    })),
  );
}

async function waitQueuedRows(page, n) {
  await page.waitForFunction((want) => document.querySelectorAll('.qw-attempt[data-status="queued"]').length === want, n, {
    polling: 50,
  });
  return queuedRows(page);
}

describe("the queue", () => {
  test("busy slots queue, every tab lists the queue, a cancel from another tab and a freed slot start the next, the units stay", async () => {
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    const page = await context.newPage();
    await signIn(page, server, token);
    assert.equal(await page.locator("#queue").isChecked(), false, "the demo refuses, as the service does, until asked to queue");
    await page.locator("#queue").check();
    const remaining = await remainingText(page);

    // Fill the four image slots (one image each).
    for (let i = 1; i <= 4; i += 1) await submitAndWaitRunning(page, server, token, i);
    await page.waitForFunction(() => document.querySelector(".qw-reason")?.textContent.startsWith("Queue"), null, { polling: 50 });

    // Generate stays usable and says what a press does; three presses queue three.
    for (let ahead = 0; ahead < 3; ahead += 1) {
      await waitForButton(page, true);
      await page.waitForFunction(
        (a) => document.querySelector("#generate-reason .qw-reason")?.textContent === `Queue · starts when a slot frees, ${a} ahead`,
        ahead,
        { polling: 50 },
      );
      assert.equal(await buttonDescription(page), `Queue · starts when a slot frees, ${ahead} ahead`, "tied to the button");
      await page.locator("#generate").click();
      await waitState(token, (s) => s.queued.length === ahead + 1, `${ahead + 1} queued`);
    }
    const queued = (await state(token)).queued;
    assert.deepEqual(queued.map((q) => q.place), [1, 2, 3]);
    assert.ok(queued.every((q) => q.reserved_units === IMAGE_UNIT_COST), "each reserves its units");
    let rows = await waitQueuedRows(page, 3);
    assert.deepEqual(
      rows.map((r) => r.text),
      [1, 2, 3].map((p) => `Image ×1 · queued, place ${p} · ${IMAGE_UNIT_COST} units reserved`),
    );
    assert.equal(await remainingText(page), remaining, "queued requests move no remaining unit");
    assert.match(await page.locator(".qw-units-detail").textContent(), /^Running and queued requests hold 28 · /);
    const status = await page.locator("#submit-status").textContent();
    assert.match(status, /queued, place 3/, "the status line follows the attempt");

    // Another tab of the same browser shows the same queue, and cancels the
    // last one from the keyboard.
    const other = await context.newPage();
    await other.goto(server.url + "/");
    await waitForLive(other);
    rows = await waitQueuedRows(other, 3);
    assert.deepEqual(rows.map((r) => r.cancel), [1, 2, 3].map((p) => `Cancel the queued request: Image ×1, place ${p}`));
    const last = other.locator('.qw-attempt[data-status="queued"] button.qw-cancel').last();
    await last.focus();
    await other.keyboard.press("Enter");
    const afterCancel = await waitState(token, (s) => s.queued.length === 2, "the cancel");
    assert.deepEqual(afterCancel.queued.map((q) => q.id), queued.slice(0, 2).map((q) => q.id));
    const cancelled = afterCancel.finished.find((t) => t.id === queued[2].id);
    assert.equal(cancelled?.units_charged, 0, "a cancel charges nothing");
    await waitQueuedRows(page, 2);
    await waitQueuedRows(other, 2);
    assert.equal(await remainingText(page), remaining, "a cancel moves no remaining unit");

    // A slot frees (a running task fails): the first queued request starts
    // in the server's own transaction, and the page shows it running.
    const before = await state(token);
    const freed = before.running[0];
    const first = before.queued[0];
    const shown = page.evaluate(
      (id) =>
        new Promise((resolve) => {
          const check = () => {
            const rows = [...document.querySelectorAll('.qw-attempt[data-status="running"] .qw-attempt-text')];
            if (document.querySelectorAll('.qw-attempt[data-status="queued"]').length === 1 && rows.length === 4) {
              resolve(performance.timeOrigin + performance.now());
            } else {
              requestAnimationFrame(check);
            }
          };
          check();
        }),
      first.id,
    );
    const sent = Date.now();
    await apiOk(server, "POST", `/api/dev/tasks/${freed.id}/fail`, { token, body: { reason: "content moderation" } });
    const answered = Date.now();
    const at = await shown;
    const started = await state(token);
    const task = started.running.find((t) => t.id === first.id);
    assert.ok(task, "the first queued request runs");
    const ended = started.finished.find((t) => t.id === freed.id);
    assert.ok(task.started_at_ms - ended.finished_at_ms <= 100, `started ${task.started_at_ms - ended.finished_at_ms} ms after the slot freed`);
    assert.deepEqual(started.queued.map((q) => [q.id, q.place]), [[queued[1].id, 1]]);
    console.log(
      `# queue: the first queued request started ${task.started_at_ms - ended.finished_at_ms} ms after the slot freed (server clock); ` +
        `the page showed it ${Math.round(at - answered)} ms after the server answered (request sent ${answered - sent} ms before)`,
    );
    assert.equal(await remainingText(page), remaining, "a failure moves no remaining unit");

    // Only a success moves it, by what it cost.
    await apiOk(server, "POST", `/api/dev/tasks/${first.id}/succeed`, { token, body: {} });
    await page.waitForFunction((r) => document.querySelector(".qw-remaining")?.textContent !== r, remaining, { polling: 50 });
    assert.equal(unitsOf(await remainingText(page)), unitsOf(remaining) - IMAGE_UNIT_COST);

    const problems = [...context.problems];
    await context.close();
    assert.deepEqual(problems, [], "no script errors or CSP violations on the page");
  });

  test("with the queue off, busy slots block Generate as before; checked, it queues", async () => {
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    const page = await context.newPage();
    await signIn(page, server, token);
    for (let i = 1; i <= 4; i += 1) await submitAndWaitRunning(page, server, token, i);
    await waitForButton(page, false);
    assert.match(await buttonDescription(page), /^All image slots are busy: 0 of 4 free, this request needs 1\.?$/);
    // On again: usable, and it says so.
    await page.locator("#queue").check();
    await waitForButton(page, true);
    assert.equal(await buttonDescription(page), "Queue · starts when a slot frees, 0 ahead");
    await context.close();
  });
});
