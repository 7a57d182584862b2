// The npm package as a user gets it: `npm pack` of pkg/, installed into a
// fresh folder, then (a) imported by node with no DOM (server-side rendering)
// and (b) used in Chromium under a strict Content-Security-Policy.
//
// Needs pkg/ (scripts/build-pkg) and Debian's chromium (scripts/setup).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../chromium.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TSC = path.join(HERE, "node_modules", "typescript", "bin", "tsc");
const PKG_DIR = path.resolve(HERE, "../../pkg");
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'";
const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
};
const WAIT_MS = 15_000;

/** A server state in the wire format; `imagesInUse` of the 4 image slots busy. */
function serverState(revision, imagesInUse) {
  return {
    revision,
    server_time_ms: 1795000000000,
    pools: [
      { kind: "image", limit: 4, in_use: imagesInUse, unit_cost: 2, slot_rule: "per_item" },
      { kind: "video", limit: 1, in_use: 0, unit_cost: 10, slot_rule: "per_task" },
    ],
    packages: [
      {
        id: "p1",
        name: "Starter",
        total: 100,
        remaining: 100,
        effective_at_ms: 1794900000000,
        expires_at_ms: 1797000000000,
        status: "active",
      },
    ],
    running: [],
    finished: [],
  };
}

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>quota-widget pack test</title>
<link rel="stylesheet" href="node_modules/quota-widget/quota-widget.css">
<script type="module" src="main.js"></script>
</head>
<body>
<form id="generate" action="/generate" method="post">
  <label>Prompt <input name="prompt" value="a lighthouse at dusk"></label>
  <button id="go" type="submit">Generate</button>
</form>
<quota-widget button="#go" form="#generate" count="2"></quota-widget>
</body>
</html>
`;

// Waits for the widget the way a page would, then pushes the first state.
const MAIN_JS = `import { defineQuotaWidget } from "./node_modules/quota-widget/index.js";

const el = document.querySelector("quota-widget");
const ready = new Promise((resolve, reject) => {
  el.addEventListener("quota-ready", (event) => resolve(event.detail.widget), { once: true });
  el.addEventListener("quota-error", (event) => reject(new Error(event.detail.message)), { once: true });
});
defineQuotaWidget();
try {
  const widget = await ready;
  if (widget !== el.widget) throw new Error("quota-ready detail is not el.widget");
  el.widget.pushState(${JSON.stringify(serverState(1, 0))});
  document.documentElement.dataset.pushed = "1";
} catch (error) {
  document.documentElement.dataset.error = String(error && error.message);
  console.error(error);
}
`;

// A negative control: proves that the CSP checks below can fail.
const CONTROL_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>control</title></head>
<body><p style="color: red">an inline style, which the CSP refuses</p></body></html>
`;

// The custom element's lifecycle: errors, attributes, disconnect, reconnect.
const LIFECYCLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>quota-widget element lifecycle</title>
<link rel="stylesheet" href="node_modules/quota-widget/quota-widget.css">
<script type="module" src="lifecycle.js"></script>
</head>
<body>
<form id="f"><button id="go" type="submit" aria-describedby="hint">Generate</button><span id="hint">Uses your quota</span></form>
<quota-widget id="good" button="#go" count="1"></quota-widget>
<quota-widget id="bad" button="#no-such-button"></quota-widget>
</body>
</html>
`;

const LIFECYCLE_JS = `import { defineQuotaWidget } from "./node_modules/quota-widget/index.js";

window.events = [];
for (const type of ["quota-ready", "quota-change", "quota-error", "quota-hold", "quota-announce"]) {
  document.addEventListener(type, (event) => window.events.push({ type, id: event.target.id, detail: event.detail && event.detail.message }));
}
window.Element1 = defineQuotaWidget();
window.Element2 = defineQuotaWidget();
document.documentElement.dataset.defined = "1";
`;

let tmp;
let appDir;
let server;
let origin;
let browser;

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function serve(root) {
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    let rel = decodeURIComponent(url.pathname);
    if (rel.endsWith("/")) rel += "index.html";
    const file = path.join(root, path.normalize(rel));
    const headers = { "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store" };
    if (rel === "/favicon.ico") {
      res.writeHead(204, headers).end();
      return;
    }
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" }).end("not found");
      return;
    }
    const type = MIME[path.extname(file)] || "application/octet-stream";
    res.writeHead(200, { ...headers, "Content-Type": type });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

before(async () => {
  assert.ok(
    fs.existsSync(path.join(PKG_DIR, "package.json")),
    `${PKG_DIR}/package.json is missing: run scripts/build-pkg first`,
  );
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "qw-pack-")));

  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", tmp], PKG_DIR));
  const tarball = path.join(tmp, packed[0].filename);

  appDir = path.join(tmp, "app");
  fs.mkdirSync(appDir);
  fs.writeFileSync(
    path.join(appDir, "package.json"),
    JSON.stringify({ name: "pack-consumer", version: "1.0.0", private: true, type: "module" }, null, 2),
  );
  // The package has no dependencies, so this needs no registry.
  run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", tarball], appDir);
  fs.writeFileSync(path.join(appDir, "index.html"), INDEX_HTML);
  fs.writeFileSync(path.join(appDir, "main.js"), MAIN_JS);
  fs.writeFileSync(path.join(appDir, "control.html"), CONTROL_HTML);
  fs.writeFileSync(path.join(appDir, "lifecycle.html"), LIFECYCLE_HTML);
  fs.writeFileSync(path.join(appDir, "lifecycle.js"), LIFECYCLE_JS);

  server = await serve(appDir);
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test("the tarball ships the files that package.json lists, and no others", () => {
  const installed = path.join(appDir, "node_modules", "quota-widget");
  const pkg = JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8"));
  for (const file of pkg.files) {
    if (file === "README.md" || file.endsWith("/")) continue;
    assert.ok(fs.existsSync(path.join(installed, file)), `${file} is listed in files but not in the tarball`);
  }
  const shipped = fs.readdirSync(installed).sort();
  const allowed = new Set([...pkg.files.map((f) => f.replace(/\/$/, "")), "package.json", "README.md"]);
  assert.deepEqual(
    shipped.filter((f) => !allowed.has(f)),
    [],
    "files in the tarball that package.json does not list",
  );
  assert.ok(!shipped.includes(".gitignore"));
});

test("SSR: importing the package in node touches no browser global", () => {
  const script = `
    for (const name of ["window", "document", "HTMLElement", "customElements"]) {
      if (typeof globalThis[name] !== "undefined") throw new Error(name + " exists in this node");
    }
    const mod = await import("quota-widget");
    const element = await import("quota-widget/element");
    // The former tabs entries: aliases of the main ones for this release.
    const tabs = await import("quota-widget/tabs");
    const tabsElement = await import("quota-widget/tabs/element");
    const files = {};
    for (const spec of ["quota-widget/quota-widget.css", "quota-widget/quota_widget_bg.wasm", "quota-widget/define",
      "quota-widget/tabs/define"]) {
      files[spec] = import.meta.resolve(spec);
    }
    const names = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]));
    console.log(JSON.stringify({
      exports: names(mod),
      tabsExports: names(tabs),
      sameDefine: mod.defineQuotaWidget === element.defineQuotaWidget && tabs.defineQuotaWidget === tabsElement.defineQuotaWidget,
      sameInit: mod.default === mod.init && tabs.default === tabs.init,
      sameClass: tabs.QuotaWidget === mod.QuotaWidget && tabsElement.QuotaWidget === element.QuotaWidget,
      sameDefineFile: import.meta.resolve("quota-widget/tabs/define") === import.meta.resolve("quota-widget/define"),
      files,
    }));
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: appDir, encoding: "utf8" });
  assert.equal(child.status, 0, `node failed:\n${child.stderr}`);
  const out = JSON.parse(child.stdout.trim().split("\n").pop());
  assert.equal(out.exports.default, "function");
  assert.equal(out.exports.init, "function");
  assert.equal(out.exports.initSync, "function");
  assert.equal(out.exports.QuotaWidget, "function");
  assert.equal(out.exports.defineQuotaWidget, "function");
  assert.ok(out.sameDefine && out.sameInit);
  assert.deepEqual(out.tabsExports, out.exports, "quota-widget/tabs has the main entry's API");
  assert.ok(out.sameClass && out.sameDefineFile, "quota-widget/tabs is the main entry under another name (one build, one wasm)");
  for (const [spec, url] of Object.entries(out.files)) {
    assert.ok(fs.existsSync(fileURLToPath(url)), `${spec} resolves to ${url}, which does not exist`);
  }
});

// A TypeScript user's code, type-checked against the package's .d.ts files.
const CONSUMER_TS = `import init, { QuotaWidget, defineQuotaWidget, type ViewModel, type WidgetEvent } from "quota-widget";
import initTabs, { QuotaWidget as TabsWidget } from "quota-widget/tabs";
import "quota-widget/tabs/define";
import { defineQuotaWidget as define2, type QuotaWidgetElement } from "quota-widget/element";
import "quota-widget/define";

export async function start(button: HTMLButtonElement): Promise<number> {
  await init();
  const widget = new QuotaWidget({ host: "#quota", button, kind: "image", count: 2, staleAfterMs: 30000 });
  widget.pushState({ revision: 1, server_time_ms: 0, pools: [], packages: [], running: [], finished: [] });
  widget.pushState("{}");
  widget.setRequest("video", 1);
  const stop: () => void = widget.subscribe((event: WidgetEvent) => {
    if (event.type === "hold") console.log(event.requestId.toUpperCase(), event.slots + event.cost);
    if (event.type === "change") console.log(event.view.enabled, event.view.reason);
  });
  const id: number = widget.subscribeId((event: WidgetEvent) => console.log(event.type));
  const view: ViewModel = widget.view();
  const remaining: number | undefined = view.units?.remaining;
  const requestId: string = widget.beginSubmit();
  widget.submitFailed(requestId, "network");
  widget.submitRefused(requestId);
  const last: string | undefined = widget.lastRequestId;
  widget.unsubscribe(id);
  stop();
  widget.destroy();
  widget.free();
  return (remaining ?? 0) + (last?.length ?? 0);
}

const Element = defineQuotaWidget("my-quota");
const same: typeof Element = define2();
const el: QuotaWidgetElement = document.createElement("quota-widget");
el.addEventListener("quota-hold", (event) => console.log(event.detail.requestId));
el.addEventListener("quota-change", (event) => console.log(event.detail.view.freshness));
el.addEventListener("quota-error", (event) => console.log(event.detail.message));
el.addEventListener("quota-ready", (event) => event.detail.widget.view());
console.log(same, el.widget?.view().enabled);

export async function startTabs(): Promise<void> {
  await initTabs();
  const widget = new TabsWidget({ host: "#quota", endpoint: "/api", account: "42", tabs: true });
  const outcome = await widget.submit(({ requestId }) => fetch("/api/generations", { method: "POST", body: requestId }));
  console.log(outcome.outcome, outcome.message);
}
`;

test("types: a TypeScript user's code type-checks against the package", () => {
  fs.writeFileSync(path.join(appDir, "consumer.ts"), CONSUMER_TS);
  fs.writeFileSync(
    path.join(appDir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2022", "DOM", "DOM.Iterable", "ESNext.Disposable"],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: [],
      },
      files: ["consumer.ts"],
    }),
  );
  const tsc = spawnSync(process.execPath, [TSC, "-p", "tsconfig.json"], { cwd: appDir, encoding: "utf8" });
  assert.equal(tsc.status, 0, `tsc reported errors:\n${tsc.stdout}${tsc.stderr}`);
});

/** Opens a page and records CSP violations, console errors and page errors. */
async function openPage(url) {
  const page = await browser.newPage();
  // Also exercises the stylesheet's reduced-motion rule: no meter transition.
  await page.emulateMedia({ reducedMotion: "reduce" });
  const problems = { violations: [], consoleErrors: [], pageErrors: [] };
  // Init scripts run before the page's own, and CDP is not bound by its CSP.
  await page.exposeBinding("__qwViolation", (_source, text) => problems.violations.push(text));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      globalThis.__qwViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
    });
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.consoleErrors.push(msg.text());
  });
  page.on("pageerror", (error) => problems.pageErrors.push(String(error)));
  await page.goto(url);
  return { page, problems };
}

/** Waits until `predicate` holds in the page; on timeout the caller's asserts tell what differs. */
async function settle(page, predicate, arg) {
  await page.waitForFunction(predicate, arg, { timeout: WAIT_MS }).catch(() => {});
}

test("control: the CSP checks catch an inline style", async () => {
  const { page, problems } = await openPage(`${origin}/control.html`);
  await settle(page, () => true);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await page.close();
  assert.ok(problems.violations.length > 0, "no securitypolicyviolation for an inline style: the detector is broken");
  assert.ok(problems.consoleErrors.some((text) => /Content Security Policy/i.test(text)));
});

test("browser: the packed widget works under a strict CSP", async () => {
  const { page, problems } = await openPage(`${origin}/index.html`);
  try {
    await settle(page, () => document.documentElement.dataset.pushed || document.documentElement.dataset.error);
    assert.equal(await page.evaluate(() => document.documentElement.dataset.error), undefined, "main.js failed");

    await settle(page, () => document.querySelector(".qw-remaining")?.textContent === "100 units remaining");
    assert.equal((await page.textContent("quota-widget .qw-remaining"))?.trim(), "100 units remaining");

    const meter = await page.evaluate(() =>
      [...document.querySelectorAll('quota-widget [role="meter"]')].map((m) => ({
        now: m.getAttribute("aria-valuenow"),
        max: m.getAttribute("aria-valuemax"),
        label: m.getAttribute("aria-label") || m.getAttribute("aria-labelledby"),
      })),
    );
    const imageMeter = meter.find((m) => m.max === "4");
    assert.ok(imageMeter, `no meter with aria-valuemax 4: ${JSON.stringify(meter)}`);
    assert.equal(imageMeter.now, "0");
    assert.ok(imageMeter.label, "the meter has no accessible name");

    const button = () =>
      page.evaluate(() => {
        const b = document.querySelector("#go");
        const describedBy = b.getAttribute("aria-describedby");
        const reasons = (describedBy || "")
          .split(/\s+/)
          .filter(Boolean)
          .map((id) => document.getElementById(id)?.textContent?.trim() ?? `(no element #${id})`);
        return { disabled: b.disabled, ariaDisabled: b.getAttribute("aria-disabled"), describedBy, reasons };
      });
    const enabled = await button();
    assert.equal(enabled.disabled, false, JSON.stringify(enabled));
    assert.notEqual(enabled.ariaDisabled, "true");

    // The stylesheet came through the package's path and applies.
    const srOnly = await page.evaluate(() => {
      const live = document.querySelector('quota-widget .qw-sr-only.qw-live[aria-live="polite"]');
      return live && getComputedStyle(live).position;
    });
    assert.equal(srOnly, "absolute", "the live region is missing or the stylesheet did not apply");

    // All 4 image slots busy; pushed as a JSON string this time.
    await page.evaluate((state) => document.querySelector("quota-widget").widget.pushState(state), JSON.stringify(serverState(2, 4)));
    await settle(page, () => document.querySelector("#go").getAttribute("aria-disabled") === "true");
    const blocked = await button();
    assert.equal(blocked.disabled, false, `blocked, it stays focusable: ${JSON.stringify(blocked)}`);
    assert.equal(blocked.ariaDisabled, "true");
    assert.ok(blocked.describedBy, "the blocked button has no aria-describedby");
    assert.ok(
      blocked.reasons.some((text) => text.startsWith("All image slots are busy")),
      `aria-describedby does not point to the reason: ${JSON.stringify(blocked.reasons)}`,
    );
    assert.ok(await page.evaluate(() => document.querySelector("quota-widget .qw").classList.contains("qw-blocked")));
    // The full meter's fill spans its bar (width set through CSSOM, allowed by the CSP).
    const fill = await page.evaluate(() => {
      const bar = document.querySelector('quota-widget [role="meter"][aria-valuemax="4"]');
      const inner = bar.querySelector(".qw-meter-fill");
      // The fill spans the bar's inside (clientWidth): the track has an edge.
      return { bar: bar.clientWidth, fill: inner.getBoundingClientRect().width, now: bar.getAttribute("aria-valuenow") };
    });
    assert.equal(fill.now, "4");
    assert.ok(fill.bar > 0 && Math.abs(fill.fill - fill.bar) < 1, `full meter fill ${fill.fill}px of ${fill.bar}px`);
    // For a person to look at: QW_PACK_SCREENSHOT=/tmp/qw.png node --test
    if (process.env.QW_PACK_SCREENSHOT) await page.screenshot({ path: process.env.QW_PACK_SCREENSHOT, fullPage: true });
  } finally {
    await page.close();
  }
  assert.deepEqual(problems.violations, [], "CSP violations");
  assert.deepEqual(problems.consoleErrors, [], "console errors");
  assert.deepEqual(problems.pageErrors, [], "page errors");
});

test("element: errors, attributes, disconnect and reconnect", async () => {
  const { page, problems } = await openPage(`${origin}/lifecycle.html`);
  const state = (revision, imagesInUse) => JSON.stringify(serverState(revision, imagesInUse));
  try {
    await settle(page, () => document.querySelector("#good").widget && window.events.some((e) => e.type === "quota-error" && e.id === "bad"));
    assert.equal(await page.evaluate(() => window.Element1 === window.Element2), true, "defining twice returns the same class");

    // A selector that matches nothing (yet): told to the developer with a
    // quota-error, never as text on the page; the widget displays meanwhile.
    const bad = await page.evaluate(() => ({
      text: document.querySelector("#bad").textContent,
      widget: document.querySelector("#bad").widget !== null,
      errors: window.events.filter((e) => e.type === "quota-error" && e.id === "bad"),
    }));
    assert.doesNotMatch(bad.text, /no-such-button/, "a developer's mistake is not page text");
    assert.equal(bad.widget, true, "it displays while it waits for its button");
    assert.equal(bad.errors.length, 1);
    assert.match(JSON.stringify(bad.errors[0].detail), /no element matches button=\\"#no-such-button\\" yet/);

    // Widget events become bubbling DOM events.
    await page.evaluate((s) => document.querySelector("#good").widget.pushState(s), state(1, 0));
    const changes = await page.evaluate(() => window.events.filter((e) => e.type === "quota-change" && e.id === "good").length);
    assert.ok(changes >= 1, "no quota-change event after pushState");

    // kind and count attributes go to setRequest: 3 images at 2 units each.
    assert.equal(await page.evaluate(() => document.querySelector("#good").widget.view().cost.cost), 2);
    await page.evaluate(() => document.querySelector("#good").setAttribute("count", "3"));
    assert.equal(await page.evaluate(() => document.querySelector("#good").widget.view().cost.cost), 6);
    await page.evaluate(() => {
      document.querySelector("#good").setAttribute("count", "1");
      document.querySelector("#good").setAttribute("kind", "video");
    });
    assert.equal(await page.evaluate(() => document.querySelector("#good").widget.view().cost.cost), 10);
    await page.evaluate(() => {
      document.querySelector("#good").setAttribute("kind", "image");
      document.querySelector("#good").setAttribute("count", "3");
    });

    // Blocked, then removed: the button gets its own attributes back.
    await page.evaluate((s) => document.querySelector("#good").widget.pushState(s), state(2, 4));
    assert.equal(await page.evaluate(() => document.querySelector("#go").getAttribute("aria-disabled")), "true");
    const removed = await page.evaluate(() => {
      const el = document.querySelector("#good");
      el.remove();
      const b = document.querySelector("#go");
      window.detached = el;
      return {
        widget: el.widget,
        sections: el.querySelectorAll(".qw").length,
        disabled: b.disabled,
        ariaDisabled: b.getAttribute("aria-disabled"),
        describedBy: b.getAttribute("aria-describedby"),
      };
    });
    assert.deepEqual(removed, { widget: null, sections: 0, disabled: false, ariaDisabled: null, describedBy: "hint" });

    // Back on the page: a new widget, one section, gating again once it has a state.
    await page.evaluate(() => document.body.append(window.detached));
    await settle(page, () => document.querySelector("#good").widget);
    await page.evaluate((s) => document.querySelector("#good").widget.pushState(s), state(3, 4));
    const again = await page.evaluate(() => ({
      sections: document.querySelectorAll("#good .qw").length,
      ariaDisabled: document.querySelector("#go").getAttribute("aria-disabled"),
      count: document.querySelector("#good").widget.view().cost.slots,
    }));
    assert.deepEqual(again, { sections: 1, ariaDisabled: "true", count: 3 });

    // Connected and removed again before the widget was made: nothing is left.
    const raced = await page.evaluate(async () => {
      const el = document.createElement("quota-widget");
      el.setAttribute("button", "#go");
      document.body.append(el);
      el.remove();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { widget: el.widget, sections: el.querySelectorAll(".qw").length };
    });
    assert.deepEqual(raced, { widget: null, sections: 0 });
  } finally {
    await page.close();
  }
  assert.deepEqual(problems.violations, [], "CSP violations");
  assert.deepEqual(problems.pageErrors, [], "page errors");
});
