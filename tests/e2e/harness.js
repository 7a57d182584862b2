// Shared pieces of the end-to-end suite: the reference quota server as a
// child process, Debian's Chromium through playwright-core, a fresh account
// per test, and small helpers that read what the user sees.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../chromium.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, "../..");
export const SERVER_BIN = process.env.QW_SERVER_BIN ?? join(ROOT, "target/release/quota-server");
export const STATIC_DIR = join(ROOT, "www/dist");
// Committed: the README and the docs show them, and every run redraws them.
export const SCREENSHOTS = join(ROOT, "docs/screenshots");
export { CHROMIUM };

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const HTTP_TIMEOUT_MS = 5_000;

/** Fails early, with the command to run, when a build product is missing. */
export function checkPrerequisites() {
  const missing = [];
  if (!existsSync(SERVER_BIN)) missing.push(`${SERVER_BIN} (cargo build --release -p quota-server, or QW_SERVER_BIN)`);
  if (!existsSync(join(STATIC_DIR, "index.html"))) {
    missing.push(`${STATIC_DIR}/index.html (scripts/build-pkg, then npm ci && npm run build in www/)`);
  }
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (apt-get install chromium; scripts/setup does it)`);
  if (missing.length) throw new Error(`e2e prerequisites missing:\n  ${missing.join("\n  ")}`);
}

/** A fresh temporary directory, removed by the returned function. */
export function tempDir(prefix = "qw-e2e-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts target/release/quota-server with the dev endpoints and no worker.
 * `addr` defaults to a free port; pass the previous server's to restart on
 * the same port. Pings every `pingMs` (1 s unless told: the server's
 * default is 5 s). Resolves once it has printed its listening line.
 */
export async function startServer({ db, addr = "127.0.0.1:0", retries = 20, args, env = {}, pingMs = 1000 } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await spawnServer({ db, addr, args, env, pingMs });
    } catch (error) {
      // Restarting on the same port can race the old socket's release.
      if (attempt >= retries || !/in use|AddrInUse/i.test(error.message)) throw error;
      await sleep(250);
    }
  }
}

/**
 * Starts quota-server in upstream mode (docs/kling.md) in front of the
 * simulator `sim`, with its keys in the environment, quick syncs and polls,
 * and the dashboard. The account's token is "demo".
 */
export async function startUpstreamServer({ sim, db, addr, extra = [] }) {
  // The callback URL names this server's port, so the port is picked first.
  const at = addr ?? `127.0.0.1:${await freePort()}`;
  return startServer({
    db,
    addr: at,
    env: { QW_KLING_ACCESS_KEY: SIM_ACCESS_KEY, QW_KLING_SECRET_KEY: SIM_SECRET_KEY },
    args: ["--upstream", "kling", "--upstream-url", sim.url, "--sync-ms", "1000", "--poll-ms", "500",
      "--public-url", `http://${at}`, ...extra],
  });
}

function spawnServer({ db, addr, args = ["--dev", "--no-worker"], env: extraEnv, pingMs }) {
  // QW_* variables would override nothing given on the command line, but
  // could add flags (QW_SEED_DEMO, QW_TASK_MS...): start from a clean slate.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("QW_")));
  Object.assign(env, extraEnv);
  const all = ["--addr", addr, ...args, "--static", STATIC_DIR, "--db", db, "--ping-ms", String(pingMs)];
  return spawnChild(SERVER_BIN, all, env, /^quota-server listening on (http:\/\/[^\s:]+:(\d+))\s*$/, "quota-server", db);
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

export const SIM_BIN = process.env.QW_SIM_BIN ?? join(ROOT, "target/release/kling-sim");
export const SIM_ACCESS_KEY = "e2e-access-key";
export const SIM_SECRET_KEY = "e2e-secret-key";

/**
 * Starts target/release/kling-sim, the simulator of the upstream service,
 * on a free port with the test keys and `args` (for example `--lag-ms`).
 * `sim.control(path, body)` drives its `/sim/*` paths.
 */
export async function startSim(args = []) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KSIM_")));
  Object.assign(env, { KSIM_ACCESS_KEY: SIM_ACCESS_KEY, KSIM_SECRET_KEY: SIM_SECRET_KEY });
  const all = ["--addr", "127.0.0.1:0", "--seed", "1", ...args];
  const sim = await spawnChild(SIM_BIN, all, env, /^kling-sim listening on (http:\/\/[^\s:]+:(\d+))\s*$/, "kling-sim");
  sim.control = async (path, body) => {
    const response = await fetch(sim.url + path, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
    return json.data;
  };
  return sim;
}

function spawnChild(bin, args, env, listeningLine, name, db) {
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  const remember = (line) => {
    log.push(line);
    if (log.length > 200) log.shift();
  };
  createInterface({ input: child.stderr }).on("line", remember);
  const lines = createInterface({ input: child.stdout });

  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
  const listening = new Promise((resolveUrl, reject) => {
    let first = true;
    lines.on("line", (line) => {
      remember(line);
      if (!first) return;
      first = false;
      const match = listeningLine.exec(line);
      if (match) resolveUrl({ url: match[1], port: Number(match[2]) });
      else reject(new Error(`unexpected first line from ${name}: ${JSON.stringify(line)}`));
    });
    child.once("error", reject);
    exited.then(({ code, signal }) =>
      reject(new Error(`${name} exited (${signal ?? code}) before listening:\n${log.join("\n")}`)),
    );
  });

  const stop = async (signal = "SIGTERM") => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    try {
      await withTimeout(exited, STOP_TIMEOUT_MS, `${name} to exit on ${signal}`);
    } catch {
      child.kill("SIGKILL");
      await withTimeout(exited, STOP_TIMEOUT_MS, `${name} to exit on SIGKILL`);
    }
  };

  return withTimeout(listening, START_TIMEOUT_MS, `${name} to print its listening line`)
    .then(({ url, port }) => ({ url, port, addr: `127.0.0.1:${port}`, db, log, stop, process: child }))
    .catch(async (error) => {
      await stop("SIGKILL");
      throw error;
    });
}

/**
 * Starts a child (a dev server, a proxy) and resolves once `ready(line)`
 * holds for a line of its stdout, within `timeoutMs`; keeps its output for
 * the failure messages and for checks. `stop()` ends it.
 */
export function startChild(name, command, args, { cwd, env, ready, timeoutMs = 20_000 }) {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  createInterface({ input: child.stderr }).on("line", (line) => log.push(line));
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit(signal ?? code)));
  const started = new Promise((resolveStart, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      log.push(line);
      const value = ready(line);
      if (value) resolveStart(value);
    });
    child.once("error", reject);
    exited.then((how) => reject(new Error(`${name} exited (${how}) before it was ready:\n${log.join("\n")}`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} not ready after ${timeoutMs} ms:\n${log.join("\n")}`)), timeoutMs);
  });
  return Promise.race([started, timeout])
    .finally(() => clearTimeout(timer))
    .then((value) => ({ ...value, log, stop }))
    .catch(async (error) => {
      await stop();
      throw error;
    });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A JSON call to the server from the test (not the page), bounded in time. */
export async function api(server, method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(server.url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, json, text };
}

/** Throws unless the call answered one of the expected statuses. */
/**
 * A change on the server that every tab of the account must show: its video
 * limit, set to another value than it has (setting the value it already has
 * changes nothing, and the server keeps the revision). Returns the new
 * revision.
 */
export async function changeLimit(server, token) {
  const state = await apiOk(server, "GET", "/api/state", { token });
  const video = state.pools.find((p) => p.kind === "video");
  const { revision } = await apiOk(server, "PUT", "/api/dev/limits/video", { token, body: { limit: video.limit === 1 ? 2 : 1 } });
  if (!(revision > state.revision)) throw new Error(`the limit's change left the revision at ${revision} (was ${state.revision})`);
  return revision;
}

export async function apiOk(server, method, path, options = {}, expected = [200, 201, 204]) {
  const result = await api(server, method, path, options);
  if (!expected.includes(result.status)) {
    throw new Error(`${method} ${path}: HTTP ${result.status} ${result.text}`);
  }
  return result.json;
}

const DAY_MS = 86_400_000;

/** Units an image costs on a dev account (its image pool: docs/api.md). */
export const IMAGE_UNIT_COST = 4;

/**
 * The demo account's packages (docs/api.md), except that the active ones
 * became effective a minute ago rather than "now": the server's boundary
 * clock bumps the revision of any account with a package boundary in the
 * last second, so a package effective at creation time would bring a second
 * revision up to a second later, racing the tests that compare revisions.
 */
export const DEMO_PACKAGES = [
  { name: "Starter pack", total: 200, effective_in_ms: -60_000, expires_in_ms: 3 * DAY_MS },
  { name: "Pro pack", total: 2000, effective_in_ms: -60_000, expires_in_ms: 60 * DAY_MS },
  { name: "Next month", total: 500, effective_in_ms: 10 * DAY_MS, expires_in_ms: 40 * DAY_MS },
];

let accountCounter = 0;
/** A fresh account (demo figures unless overridden) with a unique token. */
export async function createAccount(server, overrides = {}) {
  accountCounter += 1;
  const token = `e2e-${process.pid}-${Date.now().toString(36)}-${accountCounter}`;
  const body = { token, image_limit: 4, video_limit: 1, packages: DEMO_PACKAGES, ...overrides };
  const state = await apiOk(server, "POST", "/api/dev/accounts", { body }, [201]);
  return { token, state };
}

/** Debian's Chromium, headless; `args` are flags added to the suite's own. */
export async function launchBrowser({ backForwardCache = false, args = [] } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...args],
    // Playwright turns the back/forward cache off unless told otherwise.
    ...(backForwardCache ? { ignoreDefaultArgs: ["--disable-back-forward-cache"] } : {}),
    timeout: 20_000,
  });
}

/**
 * A browser context (its own cookie jar) whose pages record script errors
 * and CSP violations, to be checked with `assertCleanConsole`. `options`
 * are Playwright's context options, added to the suite's own.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({
    locale: "en-US",
    timezoneId: "UTC",
    viewport: { width: 1180, height: 720 },
    deviceScaleFactor: 1,
    ...options,
  });
  context.setDefaultTimeout(10_000);
  context.problems = [];
  context.on("page", (page) => watchPage(context, page));
  return context;
}

function watchPage(context, page) {
  page.on("pageerror", (error) => context.problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    if (/Content Security Policy|Refused to (execute|apply|load|compile)/i.test(text)) {
      context.problems.push(`CSP violation: ${text}`);
    }
  });
}

/** Opens the dashboard and signs in through the sign-in form, as a user does. */
export async function signIn(page, server, token) {
  await page.goto(server.url + "/");
  await page.locator("#signin").waitFor({ state: "visible" });
  await page.locator("#token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitForLive(page);
}

/** Waits until the widget shows live figures and has rendered its units. */
export async function waitForLive(page, timeout = 10_000) {
  await page.locator("#dashboard").waitFor({ state: "visible", timeout });
  await page.waitForFunction(
    () => {
      const freshness = document.querySelector(".qw-freshness")?.textContent ?? "";
      const remaining = document.querySelector(".qw-remaining")?.textContent ?? "";
      return freshness.startsWith("Live") && /\d/.test(remaining);
    },
    null,
    { timeout, polling: "raf" },
  );
}

/** The number in a text like "2,200 units remaining". */
export function unitsOf(text) {
  const match = /([\d,]+)\s+units?/.exec(text ?? "");
  if (!match) throw new Error(`no units figure in ${JSON.stringify(text)}`);
  return Number(match[1].replaceAll(",", ""));
}

export async function remainingText(page) {
  return (await page.locator(".qw-remaining").textContent()) ?? "";
}

/** The revision the widget shows (its freshness line's data-revision, for developers). */
export async function shownRevision(page) {
  const value = await page.locator(".qw-freshness").getAttribute("data-revision");
  return value ? Number(value) : null;
}

/** What the button's aria-describedby points at, as text. */
export async function buttonDescription(page, selector = "#generate") {
  return page.evaluate((sel) => {
    const button = document.querySelector(sel);
    const ids = (button?.getAttribute("aria-describedby") ?? "").split(/\s+/).filter(Boolean);
    return ids.map((id) => document.getElementById(id)?.textContent ?? "").join(" ").trim();
  }, selector);
}

/** The text of the meter row of a kind ("2 of 4 in use"); its label starts with the kind. */
export async function meterText(page, kind = "image") {
  return page.evaluate((k) => {
    for (const row of document.querySelectorAll(".qw-meter")) {
      const label = row.querySelector(".qw-meter-label")?.textContent ?? "";
      if (label.trim().toLowerCase().startsWith(k)) return row.querySelector(".qw-meter-text")?.textContent ?? "";
    }
    return null;
  }, kind);
}

/** Waits until the button is enabled (true) or disabled (false). */
export async function waitForButton(page, enabled, timeout = 10_000) {
  await page.waitForFunction(
    (want) => {
      const button = document.querySelector("#generate");
      // Blocked, the button stays focusable: aria-disabled, not disabled.
      return button && (button.getAttribute("aria-disabled") === "true") === !want;
    },
    enabled,
    { timeout, polling: "raf" },
  );
}

/** Clicks Generate and waits until the server shows `running` tasks. */
export async function submitAndWaitRunning(page, server, token, running) {
  await waitForButton(page, true);
  await page.locator("#generate").click();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const state = await apiOk(server, "GET", "/api/state", { token });
    if (state.running.length >= running) return state;
    if (Date.now() > deadline) throw new Error(`server never showed ${running} running task(s)`);
    await sleep(25);
  }
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  // No hover look on whatever was clicked last; let the meter's width
  // transition (200 ms) settle.
  await page.mouse.move(1, 1);
  await page.waitForTimeout(300);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** How many of the account's event streams the server holds (a no-op state sent to each, which the widget takes as a duplicate). */
export async function serverStreams(server, token) {
  const state = await apiOk(server, "GET", "/api/state", { token });
  const { receivers } = await apiOk(server, "POST", "/api/dev/raw-event", { token, body: JSON.stringify(state) });
  return receivers;
}

/** Waits until the server counts `want` streams for the account (a closed one is noticed on its next write); returns the last count. */
export async function waitServerStreams(server, token, want, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const n = await serverStreams(server, token);
    if (n === want || Date.now() > deadline) return n;
    await sleep(200);
  }
}

/**
 * A page script (for `context.addInitScript`), run in every page before its
 * own scripts: counts the page's open event streams
 * (`window.__qwOpenStreams()`) and records when each revision is first shown
 * (the footer's data-revision) in `window.__qwShown`, on the clock that every
 * tab and the test share (epoch milliseconds).
 */
export function instrumentStreams() {
  const Native = window.EventSource;
  const streams = new Set();
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      streams.add(this);
    }
  };
  window.__qwOpenStreams = () => [...streams].filter((s) => s.readyState !== Native.CLOSED).length;
  window.__qwShown = [];
  const seen = new Set();
  new MutationObserver(() => {
    const r = document.querySelector("[data-revision]")?.getAttribute("data-revision");
    if (r && !seen.has(r)) {
      seen.add(r);
      window.__qwShown.push({ revision: Number(r), at: performance.timeOrigin + performance.now() });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-revision"], childList: true });
}

/**
 * A page function (for `page.evaluate`): from now on, records in
 * `window.__qwLiveAgain` when the widget shows "Live" again after it
 * stopped showing it (a tab losing its leader and following the next). In
 * the page: a background page's animation frames, which Playwright's polling
 * would use, run only about once a second.
 */
export function watchLiveAgain() {
  window.__qwLiveAgain = null;
  let lost = false;
  const freshness = document.querySelector(".qw-freshness");
  new MutationObserver(() => {
    const live = freshness.textContent.startsWith("Live");
    if (!live) lost = true;
    else if (lost && window.__qwLiveAgain === null) window.__qwLiveAgain = performance.timeOrigin + performance.now();
  }).observe(freshness, { childList: true, characterData: true, subtree: true });
}
