// End-to-end: the example apps of examples/ (React 19 + Vite, Vue 3 + Vite,
// Next.js App Router, a plain page), each built by scripts/examples from the
// packed package as a user installs it, in headless Chromium against the
// reference quota server. For each: the widget goes live, gates Generate
// (blocked with every slot busy, open again when one frees), the console
// stays clean, and leaving the page's route leaves no widget, event stream,
// listener or timer of the widget behind, counted in the page and by the
// server. Next.js also renders the dashboard on the server, read here over
// plain HTTP, and proxies the event stream unbuffered.
//
// Needs: scripts/build-pkg, then scripts/examples (which scripts/test runs
// before this file), the quota-server binary and Chromium.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  apiOk,
  CHROMIUM,
  createAccount,
  freePort,
  launchBrowser,
  newContext,
  ROOT,
  SERVER_BIN,
  sleep,
  startChild,
  submitAndWaitRunning,
  tempDir,
  waitForButton,
  waitForLive,
  waitServerStreams,
} from "./harness.js";

const EXAMPLES = join(ROOT, "examples");
const PKG_DIR = process.env.QW_PKG_DIR ?? join(ROOT, "pkg");
const NEXT_DIR = join(EXAMPLES, "next");

// What each app serves, and the wasm file its build must carry: the one of
// the package just built, or the build is stale (run scripts/examples).
const APPS = {
  react: { dist: join(EXAMPLES, "react/dist"), wasmIn: "assets" },
  "react (development build, StrictMode)": { dist: join(EXAMPLES, "react/dist-dev"), wasmIn: "assets" },
  vue: { dist: join(EXAMPLES, "vue/dist"), wasmIn: "assets" },
  plain: { dist: join(EXAMPLES, "plain/dist"), wasmIn: "quota-widget" },
  next: { dist: join(NEXT_DIR, ".next"), wasmIn: "static/media" },
};

/** Throws, naming the command to run, when a build or a binary is missing or stale. */
function checkBuilds() {
  const problems = [];
  if (!existsSync(SERVER_BIN)) problems.push(`${SERVER_BIN} (cargo build -p quota-server, or set QW_SERVER_BIN)`);
  if (!existsSync(CHROMIUM)) problems.push(`${CHROMIUM} (scripts/setup installs Debian's chromium)`);
  const wasmPath = join(PKG_DIR, "quota_widget_bg.wasm");
  if (!existsSync(wasmPath)) problems.push(`${wasmPath} (scripts/build-pkg)`);
  const wasm = existsSync(wasmPath) ? readFileSync(wasmPath) : null;
  for (const [name, app] of Object.entries(APPS)) {
    const dir = join(app.dist, app.wasmIn);
    const built = existsSync(dir) ? readdirSync(dir).filter((f) => /^quota_widget_bg.*\.wasm$/.test(f)) : [];
    if (built.length !== 1) {
      problems.push(`${name}: no build with the widget's wasm in ${dir} (scripts/examples)`);
    } else if (wasm && !readFileSync(join(dir, built[0])).equals(wasm)) {
      problems.push(`${name}: ${join(dir, built[0])} is not the wasm of ${PKG_DIR}: a stale build (scripts/examples)`);
    }
  }
  if (problems.length) throw new Error(`example apps not ready:\n  ${problems.join("\n  ")}`);
}

/**
 * The reference server with the dev endpoints and no worker, serving
 * `staticDir` when given. (harness.startServer always serves www/dist.)
 */
function startQuotaServer(db, staticDir) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("QW_")));
  const args = ["--addr", "127.0.0.1:0", "--dev", "--no-worker", "--db", db, "--ping-ms", "1000"];
  if (staticDir) args.push("--static", staticDir);
  return startChild("quota-server", SERVER_BIN, args, {
    env,
    ready: (line) => {
      const match = /^quota-server listening on (http:\/\/[^\s:]+:(\d+))\s*$/.exec(line);
      return match && { url: match[1] };
    },
  });
}

/** `next start` of examples/next, its /api proxied to `apiOrigin` (proxy.ts). */
async function startNext(apiOrigin) {
  const port = await freePort();
  const next = await startChild(
    "next start",
    process.execPath,
    [join(NEXT_DIR, "node_modules/next/dist/bin/next"), "start", "--port", String(port), "--hostname", "127.0.0.1"],
    {
      cwd: NEXT_DIR,
      env: { ...process.env, QUOTA_API_ORIGIN: apiOrigin, NEXT_TELEMETRY_DISABLED: "1" },
      ready: (line) => /Ready in/.test(line) && { url: `http://127.0.0.1:${port}` },
    },
  );
  return next;
}

// Counts, from before the page's own scripts run, what the widget leaves
// behind: EventSources not closed; listeners and timers whose stack passes
// through the wasm (every one the widget makes does, through its glue); and,
// for comparing one visit with the next, listeners on window and document
// and intervals of any origin.
function instrument() {
  Error.stackTraceLimit = 60;
  const fromWasm = () => /wasm-function\[/.test(new Error().stack ?? "");
  const listeners = [];
  const timers = new Map();
  const streams = new Set();
  const sameListener = (r, target, type, listener, capture) =>
    r.target === target && r.type === type && r.listener === listener && r.capture === capture;
  const captureOf = (options) => (typeof options === "boolean" ? options : Boolean(options?.capture));
  const drop = (record) => {
    const at = listeners.indexOf(record);
    if (at >= 0) listeners.splice(at, 1);
  };

  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  EventTarget.prototype.addEventListener = function (type, listener, options) {
    const capture = captureOf(options);
    if (listener && !listeners.some((r) => sameListener(r, this, type, listener, capture))) {
      const record = { target: this, type, listener, capture, wasm: fromWasm() };
      listeners.push(record);
      // A `once` listener is gone after it fired; this one fires right after it.
      if (typeof options === "object" && options?.once) add.call(this, type, () => drop(record), { once: true, capture });
      if (typeof options === "object" && options?.signal) options.signal.addEventListener("abort", () => drop(record));
    }
    return add.call(this, type, listener, options);
  };
  EventTarget.prototype.removeEventListener = function (type, listener, options) {
    const capture = captureOf(options);
    const record = listeners.find((r) => sameListener(r, this, type, listener, capture));
    if (record) drop(record);
    return remove.call(this, type, listener, options);
  };

  const { setTimeout: st, clearTimeout: ct, setInterval: si, clearInterval: ci } = window;
  window.setTimeout = function (callback, ms, ...rest) {
    const wasm = fromWasm();
    const id = st.call(
      window,
      typeof callback === "function"
        ? (...args) => {
            timers.delete(id);
            return callback(...args);
          }
        : callback,
      ms,
      ...rest,
    );
    timers.set(id, { kind: "timeout", wasm });
    return id;
  };
  window.clearTimeout = function (id) {
    timers.delete(id);
    return ct.call(window, id);
  };
  window.setInterval = function (...args) {
    const id = si.apply(window, args);
    timers.set(id, { kind: "interval", wasm: fromWasm() });
    return id;
  };
  window.clearInterval = function (id) {
    timers.delete(id);
    return ci.call(window, id);
  };

  window.EventSource = class extends window.EventSource {
    constructor(...args) {
      super(...args);
      streams.add(this);
    }
  };

  const name = (target) =>
    target === window ? "window" : target === document ? "document" : target instanceof EventSource ? "EventSource" : target.constructor.name;
  window.__qwLeaks = () => ({
    widgets: document.querySelectorAll("quota-widget").length,
    openStreams: [...streams].filter((s) => s.readyState !== EventSource.CLOSED).length,
    streamsMade: streams.size,
    wasmListeners: listeners.filter((r) => r.wasm).map((r) => `${name(r.target)} ${r.type}`),
    wasmTimers: [...timers.values()].filter((t) => t.wasm).map((t) => t.kind),
    globalListeners: listeners
      .filter((r) => r.target === window || r.target === document)
      .map((r) => `${name(r.target)} ${r.type}${r.capture ? " (capture)" : ""}`)
      .sort(),
    intervals: [...timers.values()].filter((t) => t.kind === "interval").length,
  });
}

let browser;
let tmp;

before(async () => {
  checkBuilds();
  tmp = tempDir("qw-frameworks-");
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  tmp?.remove();
});

/**
 * One app, as a user goes through it: sign in, the widget live, Generate
 * gated, then away to Usage and back twice; what the page and the server
 * count at each step. `base` is where the page is served.
 */
async function exercise({ label, server, base }) {
  const { token } = await createAccount(server);
  const context = await newContext(browser);
  const consoleErrors = [];
  context.on("page", (page) =>
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(`${message.text()} (${message.location().url})`);
    }),
  );
  await context.addInitScript(instrument);
  const page = await context.newPage();
  const leaks = () => page.evaluate(() => window.__qwLeaks());
  let problems;
  try {
    await page.goto(base + "/");
    await page.locator("#signin #token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await waitForLive(page);

    const assertMounted = async (when) => {
      const seen = await leaks();
      assert.equal(seen.widgets, 1, `${when}: one <quota-widget>`);
      assert.equal(seen.openStreams, 1, `${when}: one open EventSource in the page`);
      assert.ok(seen.wasmTimers.length > 0 && seen.wasmListeners.length > 0, `${when}: the counters see the widget's own timers and listeners`);
      assert.equal(await waitServerStreams(server, token, 1), 1, `${when}: one event stream held by the server`);
      return seen;
    };
    const mounted = await assertMounted("signed in");
    console.log(`${label}: mounted: widget listeners [${mounted.wasmListeners.join(", ")}], timers [${mounted.wasmTimers.join(", ")}]`);

    // The element's events reach the framework's handler (the status line).
    await page.evaluate(() =>
      document.querySelector("quota-widget").dispatchEvent(
        new CustomEvent("quota-announce", { detail: { type: "announce", message: "probe: quota-announce handled" }, bubbles: true }),
      ),
    );
    await page.getByRole("status").filter({ hasText: "probe: quota-announce handled" }).waitFor();

    // Four images fill the four image slots: Generate is blocked...
    for (let i = 1; i <= 4; i += 1) await submitAndWaitRunning(page, server, token, i);
    await waitForButton(page, false);
    const button = page.locator("#generate");
    assert.equal(await button.getAttribute("aria-disabled"), "true");
    assert.match(await page.locator(".qw-reason").textContent(), /^All image slots are busy/);
    // ...a click on it sends nothing...
    await button.click({ force: true });
    await sleep(200);
    const state = await apiOk(server, "GET", "/api/state", { token });
    assert.equal(state.running.length, 4);
    assert.equal(state.finished.length, 0, "no attempt was sent while blocked");
    // ...and a task that ends frees its slot: Generate opens again.
    await apiOk(server, "POST", `/api/dev/tasks/${state.running[0].id}/fail`, { token, body: {} });
    await waitForButton(page, true);
    assert.equal(await button.getAttribute("aria-disabled"), null);

    const visits = [];
    for (let visit = 1; visit <= 2; visit += 1) {
      await page.getByRole("link", { name: "Usage" }).click();
      await page.locator("#usage").waitFor();
      // Waits for the page to settle: the widget's teardown is synchronous,
      // the server notices a closed stream at its next write (a ping a second).
      await page.waitForFunction(() => window.__qwLeaks().widgets === 0, null, { timeout: 5_000 }).catch(() => {});
      const seen = await leaks();
      assert.equal(seen.widgets, 0, `visit ${visit} to Usage: no <quota-widget> left`);
      assert.equal(seen.openStreams, 0, `visit ${visit} to Usage: no open EventSource`);
      assert.deepEqual(seen.wasmListeners, [], `visit ${visit} to Usage: no listener of the widget`);
      assert.deepEqual(seen.wasmTimers, [], `visit ${visit} to Usage: no timer of the widget`);
      assert.equal(await waitServerStreams(server, token, 0), 0, `visit ${visit} to Usage: no stream held by the server`);
      visits.push(seen);
      console.log(`${label}: after leaving (${visit}): ${seen.globalListeners.length} listeners on window and document, ${seen.intervals} intervals`);

      await page.getByRole("link", { name: "Generate" }).click();
      await waitForLive(page);
      await assertMounted(`back on Generate (${visit})`);
    }
    // A second visit leaves nothing more behind than the first did.
    assert.deepEqual(visits[1].globalListeners, visits[0].globalListeners, "listeners on window and document");
    assert.equal(visits[1].intervals, visits[0].intervals, "intervals");
    assert.equal((await leaks()).streamsMade, 3, "one EventSource per visit to Generate");
  } finally {
    problems = [...context.problems];
    await context.close();
  }
  assert.deepEqual(problems, [], "no page errors or CSP violations");
  assert.deepEqual(consoleErrors, [], "no console errors");
}

describe("example apps, built from the packed package", () => {
  // The Vite builds and the plain page are static files: the quota server
  // serves them itself, under its strict CSP. The React development build
  // runs StrictMode's checks, whose effects mount, unmount and mount again:
  // still one widget and one stream.
  for (const name of ["react", "react (development build, StrictMode)", "vue", "plain"]) {
    test(`${name}: live, gated, and nothing left after leaving the route`, { timeout: 60_000 }, async () => {
      const server = await startQuotaServer(join(tmp.dir, `${name.split(" ")[0]}-${Date.now()}.sqlite3`), APPS[name].dist);
      try {
        await exercise({ label: name, server, base: server.url });
      } finally {
        await server.stop();
      }
    });
  }

  describe("next", () => {
    let server;
    let next;

    before(async () => {
      server = await startQuotaServer(join(tmp.dir, "next.sqlite3"));
      next = await startNext(server.url);
    });

    after(async () => {
      await next?.stop();
      await server?.stop();
    });

    test("server rendering: the sign-in form, then the dashboard with <quota-widget>, over plain HTTP", async () => {
      const { token } = await createAccount(server);
      const anonymous = await fetch(next.url + "/", { signal: AbortSignal.timeout(10_000) });
      assert.equal(anonymous.status, 200);
      assert.match(anonymous.headers.get("content-type"), /^text\/html/);
      const signInHtml = await anonymous.text();
      assert.match(signInHtml, /<main id="signin"><h1>Sign in<\/h1>/);
      assert.doesNotMatch(signInHtml, /<quota-widget/);

      // Signed in through the Next server's /api proxy: its cookie renders the dashboard.
      const session = await fetch(next.url + "/api/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }),
        signal: AbortSignal.timeout(5_000),
      });
      assert.equal(session.status, 204);
      const cookie = /^(qw_session=[0-9a-f]+)/.exec(session.headers.get("set-cookie") ?? "")?.[1];
      assert.ok(cookie, `a session cookie through the proxy: ${session.headers.get("set-cookie")}`);
      const page = await fetch(next.url + "/", { headers: { Cookie: cookie }, signal: AbortSignal.timeout(10_000) });
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.match(html, /<main id="dashboard"><form id="generate-form"><h1>Generate<\/h1>/);
      assert.match(html, /<button id="generate" type="submit">Generate<\/button>/);
      assert.match(html, /<quota-widget button="#generate" endpoint="\/api" kind="image" count="1"><\/quota-widget>/);
    });

    test("the event stream passes the proxy unbuffered", async () => {
      const { token } = await createAccount(server);
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 5_000);
      try {
        const response = await fetch(next.url + "/api/events", {
          headers: { Authorization: `Bearer ${token}`, "Accept-Encoding": "gzip, deflate, br" },
          signal: controller.signal,
        });
        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type"), /^text\/event-stream/);
        assert.equal(response.headers.get("content-encoding"), null, "no compression holding the stream back");
        // The first state, sent on connect, arrives while the stream is open.
        const reader = response.body.getReader();
        let text = "";
        while (!/event: state\nid: \d+\ndata: \{/.test(text)) {
          const { value, done } = await reader.read();
          assert.ok(!done, `the stream ended before a state: ${JSON.stringify(text)}`);
          text += new TextDecoder().decode(value);
        }
      } finally {
        clearTimeout(timer);
        controller.abort();
      }
    });

    test("next: live, gated, and nothing left after leaving the route", { timeout: 60_000 }, async () => {
      await exercise({ label: "next", server, base: next.url });
      // Rendering on the server touched no browser global: nothing failed there.
      assert.deepEqual(
        next.log.filter((line) => /error|⨯/i.test(line)),
        [],
        "errors in the output of next start",
      );
    });
  });
});
