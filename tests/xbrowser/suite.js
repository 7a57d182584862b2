// The cross-engine checks, run once per engine by firefox.test.js and
// webkit.test.js: the demo dashboard (www/dist, which uses the package's tabs
// build) and <quota-widget> (pkg/) against the reference quota server, each
// test on a fresh account, asserting what a user sees.
//
// Why classic WebDriver and selenium-webdriver: Playwright's own Firefox and
// WebKit builds cannot be installed on these machines, and playwright-core
// cannot drive Debian's Firefox ESR through a whole session; geckodriver and
// WebKitGTK's WebKitWebDriver both speak classic WebDriver. selenium-webdriver
// is the Selenium project's own client of it: a small dependency tree
// (4 packages: ws, jszip, tmp, @bazel/runfiles), no test runner of its own, so
// the suite stays on node --test like tests/e2e, and it connects to a driver
// that the suite starts itself (no driver download). WebdriverIO would bring
// its own runner and a few hundred packages, and its BiDi-first sessions
// need a BiDi driver, which WebKitGTK does not have. It is pinned to 4.46.0,
// the newest release that runs on Node 20.
//
// What classic WebDriver lacks, the front (front.js) stands in for: a script
// that runs before the page's own (pages/watch.js: errors, rejections,
// console.error and CSP violations, reported at once) and a request held on
// its way to the server.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { By } from "selenium-webdriver";
import { Select } from "selenium-webdriver/lib/select.js";
import {
  ROOT,
  SERVER_BIN,
  STATIC_DIR,
  apiOk,
  createAccount,
  freePort,
  serverStreams,
  sleep,
  startServer,
  tempDir,
  unitsOf,
  waitServerStreams,
} from "../e2e/harness.js";
import { ENGINES, selectedEngines } from "./engines.js";
import { startFront } from "./front.js";

const PKG = join(ROOT, "pkg");
const IMAGE_UNIT_COST = 4; // the dev account's image pool (docs/api.md)
const SLOTS_BUSY = /^All image slots are busy: 0 of 4 free, this request needs 1\.?$/;
// How long a list may take to be drawn once its items are in the page.
const DRAWN_WITHIN_MS = 2_000;

// ------------------------------------------------------------ page helpers

/** Runs `fn` in the page with `args`, returning its (awaited) value. */
function run(driver, fn, ...args) {
  return driver.executeScript(`return (${fn}).apply(null, arguments);`, ...args);
}

/** Polls `fn` in the page until it returns something truthy; returns that. */
async function waitFor(driver, what, fn, arg, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await run(driver, fn, arg);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms: ${what}`);
    await sleep(25);
  }
}

/** Polls `fn` in the test until it returns something truthy. */
async function waitHere(what, fn, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms: ${what}`);
    await sleep(50);
  }
}

const text = (driver, selector) => run(driver, (s) => document.querySelector(s)?.textContent ?? null, selector);

/** Until the widget shows live figures and its units. */
function waitLive(driver, timeout = 15_000) {
  return waitFor(
    driver,
    "the widget live, with its units",
    () => {
      const freshness = document.querySelector(".qw-freshness")?.textContent ?? "";
      const remaining = document.querySelector(".qw-remaining")?.textContent ?? "";
      return (freshness.startsWith("Live") || freshness.startsWith("实时")) && /\d/.test(remaining);
    },
    null,
    timeout,
  );
}

/** Until Generate is open (true) or blocked (false); blocked, it is aria-disabled, not disabled. */
function waitButton(driver, open, timeout = 10_000, selector = "#generate") {
  return waitFor(
    driver,
    `${selector} ${open ? "open" : "blocked"}`,
    ([sel, want]) => {
      const button = document.querySelector(sel);
      return button && (button.getAttribute("aria-disabled") === "true") === !want;
    },
    [selector, open],
    timeout,
  );
}

/** The text of what the button's aria-describedby names. */
function description(driver, selector = "#generate") {
  return run(
    driver,
    (sel) => {
      const ids = (document.querySelector(sel)?.getAttribute("aria-describedby") ?? "").split(/\s+/).filter(Boolean);
      return ids.map((id) => document.getElementById(id)?.textContent ?? "").join(" ").trim();
    },
    selector,
  );
}

/** The meter row's figures of the first kind ("2 of 4 in use"). */
const meterText = (driver) => text(driver, ".qw-meter-text");

/** Until the meter shows `want`. */
const waitMeter = (driver, want, timeout = 10_000) =>
  waitFor(driver, `the meter showing "${want}"`, (w) => document.querySelector(".qw-meter-text")?.textContent === w, want, timeout);

/**
 * Whether each element matching `selector` is drawn: WebDriver's own
 * displayedness, and a box with height in the page's layout. (WebKit's
 * driver calls an element of height 0 displayed, and cannot give its rect.)
 */
async function drawn(driver, selector) {
  const boxes = await run(
    driver,
    (sel) => [...document.querySelectorAll(sel)].map((e) => Math.round(e.getBoundingClientRect().height * 10) / 10),
    selector,
  );
  const elements = await driver.findElements(By.css(selector));
  const result = [];
  for (const [i, element] of elements.entries()) result.push({ displayed: await element.isDisplayed(), height: boxes[i] ?? null });
  return result;
}

/** Until every element matching `selector` (at least `count`) is drawn; fails with what it saw. */
async function waitDrawn(driver, selector, count, timeout = DRAWN_WITHIN_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen = await drawn(driver, selector);
    if (seen.length >= count && seen.every((s) => s.displayed && s.height > 0)) return seen;
    if (Date.now() > deadline) assert.fail(`${selector}: ${count} drawn within ${timeout} ms, saw ${JSON.stringify(seen)}`);
    await sleep(50);
  }
}

/**
 * Installs, in the page, a sampler of the remaining-units text on every
 * animation frame and every DOM change of the widget; `stop()` returns the
 * distinct values in order and the number of frames sampled.
 */
function startSampler(driver) {
  return run(driver, () => {
    const seen = [];
    let last;
    let frames = 0;
    const sample = () => {
      const element = document.querySelector(".qw-remaining");
      const value = element ? element.textContent : "(absent)";
      if (value !== last) {
        seen.push(value);
        last = value;
      }
    };
    const observer = new MutationObserver(sample);
    observer.observe(document.querySelector(".qw"), { subtree: true, childList: true, characterData: true, attributes: true });
    let running = true;
    const frame = () => {
      frames += 1;
      sample();
      if (running) requestAnimationFrame(frame);
    };
    sample();
    requestAnimationFrame(frame);
    window.__xbSampler = {
      stop() {
        running = false;
        sample();
        observer.disconnect();
        return { seen, frames };
      },
    };
  });
}
const stopSampler = (driver) => run(driver, () => window.__xbSampler.stop());

// ------------------------------------------------------------ server helpers

const stateOf = (server, token) => apiOk(server, "GET", "/api/state", { token });
const remainingOnServer = (state) => state.packages.filter((p) => p.status === "active").reduce((sum, p) => sum + p.remaining, 0);

/** Until the server shows `n` running tasks. */
const waitRunning = (server, token, n) =>
  waitHere(`the server showing ${n} running task(s)`, async () => {
    const state = await stateOf(server, token);
    return state.running.length >= n ? state : null;
  });

/** Takes `n` image slots from the test, not the page (1 image each). */
async function takeSlots(server, token, n) {
  for (let i = 0; i < n; i += 1) {
    await apiOk(server, "POST", "/api/generations", { token, body: { kind: "image", count: 1, client_request_id: `busy-${i}-${Date.now()}` } }, [201]);
  }
}

// ------------------------------------------------------------ colours

const channel = (c) => {
  const s = c / 255;
  return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
};
const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
const contrast = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const rgb = (css) => {
  const m = /rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/.exec(css);
  if (!m) throw new Error(`unexpected colour ${css}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
};

/** The widget's background and the colours of its texts, as the engine computes them. */
function widgetColours(driver) {
  return run(driver, () => {
    const style = (sel, prop) => {
      const element = document.querySelector(sel);
      return element ? getComputedStyle(element)[prop] : null;
    };
    const texts = {};
    for (const sel of [".qw-remaining", ".qw-meter-text", ".qw-meter-label", ".qw-freshness", ".qw-cost", ".qw-heading", ".qw-package-name", ".qw-package-status"]) {
      texts[sel] = style(sel, "color");
    }
    return { background: style(".qw", "backgroundColor"), texts, scheme: document.documentElement.dataset.theme ?? null, dark: matchMedia("(prefers-color-scheme: dark)").matches };
  });
}

/** Asserts a dark (or light) widget whose every text keeps 4.5:1 (WCAG AA) on its background. */
function assertScheme(colours, dark, where) {
  const bg = rgb(colours.background);
  if (dark) assert.ok(luminance(bg) < 0.05, `${where}: the widget is dark (background ${colours.background})`);
  else assert.ok(luminance(bg) > 0.8, `${where}: the widget is light (background ${colours.background})`);
  for (const [sel, colour] of Object.entries(colours.texts)) {
    assert.ok(colour, `${where}: ${sel} is on the page`);
    const ratio = contrast(rgb(colour), bg);
    assert.ok(ratio >= 4.5, `${where}: ${sel} ${colour} on ${colours.background} is ${ratio.toFixed(2)}:1`);
  }
}

// ------------------------------------------------------------ the suite

/** What the suite needs and does not find, for `engine`. */
function prerequisitesMissing(engine) {
  const missing = [];
  if (!existsSync(SERVER_BIN)) missing.push(`${SERVER_BIN} (cargo build -p quota-server; QW_SERVER_BIN names another)`);
  if (!existsSync(join(STATIC_DIR, "index.html"))) missing.push(`${STATIC_DIR}/index.html (scripts/build-pkg, then npm ci && npm run build in www/)`);
  if (!existsSync(join(PKG, "index.js"))) missing.push(`${PKG}/index.js (scripts/build-pkg)`);
  missing.push(...engine.locate().missing);
  return missing;
}

/** Defines the suite for one engine ("firefox" or "webkit"). */
export function defineSuite(name) {
  const selected = selectedEngines();
  const engine = ENGINES[name];
  const skip = selected.includes(name) ? false : `not in QW_ENGINES=${process.env.QW_ENGINES}`;
  if (!skip) {
    // Missing pieces fail the run: an engine is left out only by QW_ENGINES.
    const missing = prerequisitesMissing(engine);
    if (missing.length) {
      test(`${engine.label}: prerequisites`, () => {
        assert.fail(`${engine.label} cannot run; missing:\n  ${missing.join("\n  ")}\n(QW_ENGINES names the engines to run)`);
      });
      return;
    }
  }

  describe(`${engine.label}: the dashboard and <quota-widget> over WebDriver`, { skip }, () => {
    let tmp;
    let server;
    let front;
    let browser; // { driver, proc }
    let driver;
    let home; // the first window's handle
    let problemsFrom = 0;

    before(async () => {
      tmp = tempDir("qw-xbrowser-");
      server = await startServer({ db: join(tmp.dir, `${name}.sqlite3`) });
      front = await startFront(server, { pkgDir: PKG });
      const t0 = Date.now();
      browser = await engine.start({ port: await freePort(), locale: "en-US" });
      driver = browser.driver;
      await driver.manage().setTimeouts({ script: 10_000, pageLoad: 20_000 });
      await driver.manage().window().setRect({ width: 1180, height: 900 });
      home = await driver.getWindowHandle();
      const caps = await driver.getCapabilities();
      console.log(`# ${engine.label}: ${caps.getBrowserName()} ${caps.getBrowserVersion()}, session up in ${Date.now() - t0} ms`);
    });

    after(async () => {
      await browser?.driver.quit().catch(() => {});
      await browser?.proc.stop();
      await front?.close();
      await server?.stop();
      tmp?.remove();
    });

    afterEach(async () => {
      if (!driver) return;
      // Only the first window stays, on an empty page.
      for (const handle of await driver.getAllWindowHandles()) {
        if (handle === home) continue;
        await driver.switchTo().window(handle);
        await driver.close();
      }
      await driver.switchTo().window(home);
    });

    /** Problems reported by the pages since the test began, and those still in open windows. */
    async function problems() {
      const found = new Map(front.problems.slice(problemsFrom).map((p) => [p.id, p]));
      const current = await driver.getWindowHandle();
      for (const handle of await driver.getAllWindowHandles()) {
        await driver.switchTo().window(handle);
        for (const p of (await run(driver, () => window.__xbProblems ?? [])) ?? []) found.set(p.id, p);
      }
      await driver.switchTo().window(current);
      return [...found.values()].map((p) => `${p.kind}: ${p.message} (${p.page})`);
    }

    /** A test that ends by checking that no page logged an error. */
    function check(title, fn, timeout = 60_000) {
      test(title, { timeout }, async () => {
        problemsFrom = front.problems.length;
        await fn();
        assert.deepEqual(await problems(), [], "no page error, unhandled rejection, console.error or CSP violation");
      });
    }

    /** A fresh account, signed in through the dashboard's form in the first window. */
    async function signIn() {
      const { token } = await createAccount(server);
      await driver.get(`${front.url}/__xb/blank.html`);
      // Nothing kept from the last test: no session, the system's theme.
      await driver.manage().deleteAllCookies();
      await run(driver, () => localStorage.clear());
      await driver.get(`${front.url}/`);
      await waitFor(driver, "the sign-in form", () => {
        const form = document.querySelector("#signin");
        return form && !form.hidden && form.getBoundingClientRect().height > 0;
      });
      const input = await driver.findElement(By.css("#token"));
      await input.clear();
      await input.sendKeys(token);
      await driver.findElement(By.css("#signin-submit")).click();
      await waitLive(driver);
      return token;
    }

    check("the console watch hears a page: an error thrown in it reaches the test", async () => {
      // The other tests' "no console error" rests on this.
      await driver.get(`${front.url}/__xb/probe.html`);
      const heard = await waitHere("the probe's three reports", async () => {
        const all = await problems();
        return all.filter((p) => p.includes("xbrowser probe")).length >= 3 ? all : null;
      }, 5_000);
      assert.ok(heard.some((p) => p.startsWith("page error: ") && p.includes("xbrowser probe")), heard.join("\n"));
      assert.ok(heard.some((p) => p.startsWith("console.error: xbrowser probe via console.error")), heard.join("\n"));
      assert.ok(heard.some((p) => p.startsWith("unhandled rejection: ") && p.includes("xbrowser probe rejected")), heard.join("\n"));
      // Heard: not a problem of the suite's pages.
      await driver.get(`${front.url}/__xb/blank.html`);
      problemsFrom = front.problems.length;
    });

    check("signed in: live figures, the Packages list drawn, Recent attempts hidden while empty and drawn once it has one", async () => {
      const token = await signIn();
      assert.equal(await text(driver, ".qw-remaining"), "2,200 units remaining");
      assert.equal(await meterText(driver), "0 of 4 in use");
      assert.equal(await text(driver, ".qw-cost"), "This request: 4 units · 4 per image · 2,196 left after");

      // The lists get their items after the widget first drew them empty.
      const rows = await waitDrawn(driver, ".qw-package", 3);
      assert.equal(rows.length, 3, "three packages");
      const [box] = await waitDrawn(driver, ".qw-packages-box", 1);
      assert.ok(box.height >= rows.reduce((sum, r) => sum + r.height, 0), `the Packages box holds its rows (${box.height} px)`);
      assert.equal(await driver.findElement(By.css(".qw-packages-box .qw-heading")).getText(), "PACKAGES");
      assert.match(await driver.findElement(By.css(".qw-package")).getText(), /Starter pack/);

      // No attempt yet: no heading over an empty list.
      assert.deepEqual(await drawn(driver, ".qw-attempts-box"), [{ displayed: false, height: 0 }], "Recent attempts hidden while empty");

      await driver.findElement(By.css("#generate")).click();
      await waitRunning(server, token, 1);
      await waitFor(driver, "the attempt in the list", () => document.querySelector(".qw-attempt[data-status=running]"));
      await waitDrawn(driver, ".qw-attempts-box", 1);
      const [attempt] = await waitDrawn(driver, ".qw-attempt", 1);
      assert.ok(attempt.height > 0);
      assert.match(await driver.findElement(By.css(".qw-attempt")).getText(), /^Image ×1 · running, 4 units reserved/);
    });

    check("every image slot busy: Generate is aria-disabled, stays focusable, and the reason it is described by says why", async () => {
      const token = await signIn();
      await takeSlots(server, token, 4);
      await waitMeter(driver, "4 of 4 in use");
      await waitButton(driver, false);

      const button = await driver.findElement(By.css("#generate"));
      assert.equal(await button.getAttribute("aria-disabled"), "true");
      assert.equal(await button.isEnabled(), true, "not natively disabled: it stays in the tab order");
      assert.equal(await run(driver, () => {
        const b = document.querySelector("#generate");
        b.focus();
        return document.activeElement === b;
      }), true, "it takes focus");
      assert.match(await description(driver), SLOTS_BUSY);
      // Shown next to the button, as a user reads it.
      const reason = await driver.findElement(By.css("#generate-reason .qw-reason"));
      assert.equal(await reason.isDisplayed(), true);
      assert.match(await reason.getText(), SLOTS_BUSY);

      // A click on the blocked button sends nothing.
      await button.click();
      await sleep(300);
      const state = await stateOf(server, token);
      assert.equal(state.running.length, 4);
      assert.equal(state.finished.length, 0, "no attempt reached the server");
      assert.equal(await run(driver, () => document.querySelectorAll(".qw-attempt:not([data-status=running])").length), 0, "and no other attempt is listed");
    });

    check("a task fails: the remaining units text never moves, sampled every frame", async () => {
      const token = await signIn();
      const before = await text(driver, ".qw-remaining");
      const ledgerBefore = remainingOnServer(await stateOf(server, token));
      await startSampler(driver);

      await driver.findElement(By.css("#generate")).click();
      const { running } = await waitRunning(server, token, 1);
      await waitFor(driver, "the running attempt", () => document.querySelector(".qw-attempt[data-status=running]"));
      await apiOk(server, "POST", `/api/dev/tasks/${running[0].id}/fail`, { token, body: { reason: "content moderation" } });
      await waitFor(driver, "the failed attempt", () => document.querySelector(".qw-attempt")?.textContent.includes("failed, not charged"));
      // And in the second after it (later states, the server's pings).
      await sleep(1_000);
      const { seen, frames } = await stopSampler(driver);

      console.log(`# ${engine.label}: remaining units sampled over ${frames} frames, from before the click to 1 s after the failure`);
      assert.ok(frames >= 20, `the sampler ran on every frame (${frames} frames)`);
      assert.deepEqual(seen, [before], `only "${before}" was ever shown (saw ${JSON.stringify(seen)})`);
      assert.equal(
        (await driver.findElement(By.css(".qw-attempt")).getText()).replace(/ · [^·]+$/, ""),
        "Image ×1 · failed, not charged: content moderation",
      );
      const state = await stateOf(server, token);
      assert.equal(state.finished[0].units_charged, 0);
      assert.equal(remainingOnServer(state), ledgerBefore, "the server charged nothing");
    });

    check("a task succeeds: charged exactly once, by its cost, and the server's ledger agrees", async () => {
      const token = await signIn();
      const count = 3;
      const cost = IMAGE_UNIT_COST * count;
      await new Select(await driver.findElement(By.css("#count"))).selectByVisibleText(String(count));
      await waitFor(driver, "the cost of 3 images", (c) => document.querySelector(".qw-cost")?.textContent.startsWith(`This request: ${c} units`), cost);
      const beforeText = await text(driver, ".qw-remaining");
      const before = unitsOf(beforeText);
      const ledgerBefore = remainingOnServer(await stateOf(server, token));
      await startSampler(driver);

      await driver.findElement(By.css("#generate")).click();
      const { running } = await waitRunning(server, token, 1);
      assert.equal(running[0].reserved_units, cost);
      await waitFor(driver, "the running attempt", () => document.querySelector(".qw-attempt[data-status=running]"));
      assert.equal(await text(driver, ".qw-remaining"), beforeText, "running, its units are reserved, not deducted");
      await apiOk(server, "POST", `/api/dev/tasks/${running[0].id}/succeed`, { token, body: {} });
      await waitFor(driver, "the succeeded attempt", () => document.querySelector(".qw-attempt")?.getAttribute("data-status") === "succeeded");
      // Later states (the server's pings) change nothing more.
      await sleep(1_500);
      const { seen } = await stopSampler(driver);

      const values = seen.map(unitsOf);
      assert.deepEqual(values, [before, before - cost], `the units dropped once, by ${cost} (saw ${JSON.stringify(seen)})`);
      assert.match(await driver.findElement(By.css(".qw-attempt")).getText(), new RegExp(`^Image ×3 · done, ${cost} units charged`));
      const state = await stateOf(server, token);
      assert.equal(ledgerBefore - remainingOnServer(state), cost, "the server deducted the cost once");
      assert.equal(state.running.length, 0);
      assert.deepEqual(state.finished.map((t) => [t.outcome, t.units_charged]), [["succeeded", cost]]);
      assert.equal(unitsOf(await text(driver, ".qw-remaining")), remainingOnServer(state), "the page shows the server's figure");
    });

    check("two windows of one browser: one event stream, and a hold in one closes the button in the other", async () => {
      const token = await signIn();
      const a = home;
      await driver.switchTo().newWindow("window");
      const b = await driver.getWindowHandle();
      await driver.get(`${front.url}/`);
      await waitLive(driver); // the session cookie is shared: no sign-in step
      assert.equal(await driver.findElement(By.css("#signin")).isDisplayed(), false);
      assert.equal(await waitServerStreams(server, token, 1), 1, "the server holds one event stream for the browser");

      await takeSlots(server, token, 3);
      for (const handle of [a, b]) {
        await driver.switchTo().window(handle);
        await waitMeter(driver, "3 of 4 in use");
        await waitButton(driver, true);
      }
      // Window A's request is slow to reach the server.
      const release = front.holdGenerations();
      try {
        await driver.switchTo().window(a);
        await driver.findElement(By.css("#generate")).click();
        await driver.switchTo().window(b);
        const t0 = Date.now();
        await waitButton(driver, false, 3_000);
        console.log(`# ${engine.label}: a click in window A closed window B's button in ${Date.now() - t0} ms (as seen over WebDriver)`);
        assert.match(await description(driver), /^All image slots are busy/);
        assert.equal((await stateOf(server, token)).running.length, 3, "before the server has seen window A's request");
      } finally {
        release();
      }
      await waitRunning(server, token, 4);
      await driver.switchTo().window(a);
      await waitFor(driver, "window A's attempt running", () => document.querySelector(".qw-attempt[data-status=running]"));
      await driver.switchTo().window(b);
      await waitMeter(driver, "4 of 4 in use");
      assert.equal(await serverStreams(server, token), 1, "still one stream");
    });

    check("<quota-widget>: live from the server, gating a button that appears after it", async () => {
      const { token } = await createAccount(server);
      await driver.get(`${front.url}/__xb/element.html?token=${encodeURIComponent(token)}`);
      await waitFor(driver, "quota-ready", () => window.quotaReady === true);
      await waitLive(driver);
      assert.equal(await text(driver, ".qw-remaining"), "2,200 units remaining");
      await waitDrawn(driver, "quota-widget .qw-package", 3);
      // No button yet: the developer is told, not the page.
      const events = await run(driver, () => window.quotaEvents);
      assert.ok(events.some((m) => /no element matches button="#generate" yet/.test(m)), JSON.stringify(events));
      assert.doesNotMatch(await driver.findElement(By.css("quota-widget")).getText(), /no element matches|button=/);

      // The form renders later.
      await run(driver, () => {
        const form = document.createElement("form");
        form.id = "f";
        form.innerHTML = '<button id="generate" type="submit">Generate</button>';
        document.querySelector("#main").append(form);
      });
      await waitButton(driver, true);
      await takeSlots(server, token, 4);
      await waitButton(driver, false);
      assert.match(await description(driver), SLOTS_BUSY);
      const loaded = await run(driver, () => performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname));
      assert.ok(loaded.some((p) => p.endsWith(".wasm")), `the package's wasm was loaded (${loaded.join(", ")})`);
      assert.ok(!loaded.some((p) => p.includes("/locales/")), `an English page loads no other language (${loaded.join(", ")})`);
    });

    check('<quota-widget> on a page with lang="zh-CN": the Chinese table', async () => {
      const { token } = await createAccount(server);
      await driver.get(`${front.url}/__xb/element.html?lang=zh-CN&token=${encodeURIComponent(token)}`);
      await waitFor(driver, "quota-ready", () => window.quotaReady === true);
      await waitLive(driver);
      assert.equal(await text(driver, ".qw-remaining"), "剩余 2,200 点");
      assert.match(await text(driver, ".qw-freshness"), /^实时 · 更新于 /);
      assert.equal(await run(driver, () => document.querySelector("section.qw").getAttribute("aria-label")), "生成额度");
      await waitDrawn(driver, ".qw-package", 3);
      assert.equal(await driver.findElement(By.css(".qw-packages-box .qw-heading")).getText(), "资源包");
      await run(driver, () => {
        const form = document.createElement("form");
        form.innerHTML = '<button id="generate" type="submit">生成</button>';
        document.querySelector("#main").append(form);
      });
      await takeSlots(server, token, 4);
      await waitMeter(driver, "4 个中已用 4 个");
      await waitButton(driver, false);
      assert.equal(await description(driver), "图片并发已全部占用：4 个中空闲 0 个，此请求需要 1 个。");
      const loaded = await run(driver, () => performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname));
      assert.ok(loaded.some((p) => p.includes("/locales/zh-CN")), `the Chinese table was loaded (${loaded.join(", ")})`);
    });

    check("the dark scheme: the page's own (the demo's picker) and the system's (prefers-color-scheme), each readable", async () => {
      await signIn();
      const light = await widgetColours(driver);
      assert.equal(light.dark, false, "this browser runs with a light system scheme");
      assertScheme(light, false, "system light");

      await new Select(await driver.findElement(By.css("#theme"))).selectByVisibleText("Dark");
      await waitFor(driver, "data-theme=dark", () => document.documentElement.dataset.theme === "dark");
      assertScheme(await widgetColours(driver), true, "the picker's Dark on a light system");
      await new Select(await driver.findElement(By.css("#theme"))).selectByVisibleText("System");

      // A second browser of this engine whose system scheme is dark.
      const dark = await engine.start({ port: await freePort(), locale: "en-US", dark: true });
      try {
        const d = dark.driver;
        const { token } = await createAccount(server);
        await d.get(`${front.url}/`);
        await waitFor(d, "the sign-in form", () => document.querySelector("#signin")?.hidden === false);
        const input = await d.findElement(By.css("#token"));
        await input.clear();
        await input.sendKeys(token);
        await d.findElement(By.css("#signin-submit")).click();
        await waitLive(d);
        const system = await widgetColours(d);
        assert.equal(system.dark, true, "prefers-color-scheme: dark in the dark browser");
        assertScheme(system, true, "system dark");
        await new Select(await d.findElement(By.css("#theme"))).selectByVisibleText("Light");
        await waitFor(d, "data-theme=light", () => document.documentElement.dataset.theme === "light");
        assertScheme(await widgetColours(d), false, "the picker's Light on a dark system");
        const darkProblems = (await run(d, () => window.__xbProblems ?? [])).map((p) => `${p.kind}: ${p.message}`);
        assert.deepEqual(darkProblems, [], "no console error in the dark browser");
      } finally {
        await dark.driver.quit().catch(() => {});
        await dark.proc.stop();
      }
    });
  });
}
