// The README's usage code, run as written. extract.mjs takes every ```html,
// ```js and ```ts block of the README's "Using the package" section and of
// the package's README (js/README.md) into small apps; each app is then
//
// - type-checked by tsc --strict (checkJs, target ES2022 with its default
//   lib, skipLibCheck false) against the packed package, with module
//   resolution "bundler" and "nodenext";
// - built with Vite, default configuration, as a user of a bundler would;
// - run in headless Chromium against the reference quota server (its demo
//   account, token "demo"), through a small server that serves the build
//   under the server's Content-Security-Policy and forwards /api to it.
//
// In Chromium each app must sign in, go live, gate Generate, and send on a
// submit exactly the request the widget held (the request id the gate
// wrote, its kind and count: the server's running task must carry them), be
// blocked while the slots are busy, open again when the task ends, and keep
// the console clean.
//
// Needs: scripts/build-pkg (pkg/), the quota-server binary (QW_SERVER_BIN,
// else target/release), Chromium, and what tests/e2e/harness.js needs to
// start the server: tests/e2e's npm packages and www/dist (scripts/test
// runs this after the end-to-end step, which has both).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build } from "vite";
import { CHROMIUM, CHROMIUM_ARGS } from "../chromium.mjs";
import { SERVER_BIN, STATIC_DIR, api, apiOk, buttonDescription, meterText, sleep, startServer, unitsOf } from "../e2e/harness.js";
import { ROOT, SOURCES, appsOf, mapDiagnostics, writeApps } from "./extract.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TSC = path.join(HERE, "node_modules", "typescript", "bin", "tsc");
const PKG_DIR = process.env.QW_PKG_DIR ?? path.join(ROOT, "pkg");
const TOKEN = "demo"; // the reference server's demo account (--seed-demo), as the README signs in
// The reference server's policy (docs/api.md), on the pages served here too.
const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
};
const WAIT_MS = 15_000;
const PROMPT = "a lighthouse at dusk";

let tmp;
let apps;
let origins;
let browser;

before(async () => {
  const missing = [];
  if (!fs.existsSync(path.join(PKG_DIR, "package.json"))) missing.push(`${PKG_DIR}/package.json (scripts/build-pkg)`);
  if (!fs.existsSync(SERVER_BIN)) missing.push(`${SERVER_BIN} (cargo build -p quota-server, and QW_SERVER_BIN for a debug build)`);
  if (!fs.existsSync(STATIC_DIR)) missing.push(`${STATIC_DIR}, which tests/e2e/harness.js serves (npm ci && npm run build in www/)`);
  if (!fs.existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (scripts/setup installs it)`);
  if (missing.length) throw new Error(`README test prerequisites missing:\n  ${missing.join("\n  ")}`);

  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "qw-readme-")));
  ({ apps, origins } = writeApps(tmp));
  // The package as a user installs it: its npm pack tarball (it has no dependencies).
  const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: PKG_DIR, encoding: "utf8" }));
  fs.writeFileSync(path.join(tmp, "package.json"), JSON.stringify({ name: "readme-apps", private: true, type: "module" }));
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", path.join(tmp, packed[0].filename)], {
    cwd: tmp,
    stdio: ["ignore", "pipe", "pipe"],
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (tmp && !process.env.QW_README_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  else if (tmp) console.log(`kept ${tmp}`);
});

test("the usage sections have code to run", () => {
  for (const source of SOURCES) {
    const found = apps.filter((app) => app.source === source.file);
    assert.ok(found.length > 0, `no html/js/ts blocks found in ${source.file}`);
    for (const app of found) assert.ok(app.files.some((f) => f.lang !== "html"), `${source.file} "${app.heading}" has no script`);
  }
});

test("the extraction refuses a block it could not run", () => {
  const section = (body) => `# x\n\n## Usage\n\n### A\n\n${body}\n## Other\n\n\`\`\`js\nnot usage code\n\`\`\`\n`;
  const page = '```html\n<!-- index.html -->\n<script type="module" src="/main.js"></script>\n```\n';
  const script = "```js\n// main.js\nconsole.log(1);\n```\n";
  const extract = (markdown) => appsOf({ file: "X.md", section: "Usage" }, markdown);
  assert.deepEqual(extract(section(page + script)).map((app) => app.files.map((f) => `${f.name}:${f.line}`)), [["index.html:8", "main.js:12"]]);
  assert.throws(() => extract(section(page + "```js\nconsole.log(1);\n```\n")), /X\.md:12: a ```js block must start with its file name/);
  assert.throws(() => extract(section(script)), /has no ```html page/);
  assert.throws(() => extract(section(page.replace("/main.js", "/app.js") + script)), /loads app\.js, which no block/);
  assert.throws(() => extract(section('```html\n<!-- index.html -->\n<p></p>\n```\n' + script)), /main\.js is loaded by no page/);
  assert.throws(() => extract(section(page + script + script)), /main\.js appears twice/);
  assert.throws(() => extract("# x\n"), /no section "## Usage"/);
  // A block marked not-run (another tool's configuration) is no part of an app.
  const config = "```ts not-run\n// vite.config.ts\nexport default {};\n```\n";
  assert.deepEqual(extract(section(page + script + config)).map((app) => app.files.map((f) => f.name)), [["index.html", "main.js"]]);
  assert.throws(() => extract(section(page + script + config.replace(" not-run", ""))), /vite\.config\.ts is loaded by no page/);
});

// tsc --strict with the default lib of the ES2022 target (no "lib": the
// DOM is in it) and skipLibCheck false: the package's declarations are
// checked as well as the README's code.
for (const resolution of ["bundler", "nodenext"]) {
  test(`tsc --strict accepts every block (moduleResolution ${resolution})`, () => {
    const config = `tsconfig.${resolution}.json`;
    fs.writeFileSync(
      path.join(tmp, config),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: resolution === "bundler" ? "ESNext" : "NodeNext",
          moduleResolution: resolution,
          strict: true,
          allowJs: true,
          checkJs: true,
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        include: ["apps/*/*.js", "apps/*/*.ts"],
      }),
    );
    const tsc = spawnSync(process.execPath, [TSC, "-p", config, "--pretty", "false"], { cwd: tmp, encoding: "utf8" });
    assert.equal(tsc.status, 0, `tsc reported errors:\n${mapDiagnostics(tsc.stdout + tsc.stderr, origins)}`);
  });
}

// The package's README documents what the package has, and only what it ships.
describe("js/README.md, the package's README", () => {
  const readme = () => fs.readFileSync(path.join(ROOT, "js/README.md"), "utf8");
  const shipped = (file) => fs.readFileSync(path.join(PKG_DIR, file), "utf8");

  test("is the README in the package", () => {
    assert.equal(shipped("README.md"), readme(), "pkg/README.md is not js/README.md: scripts/build-pkg copies it");
  });

  test("its tables list every option, attribute, event and custom property, each option with its default", () => {
    const text = readme();
    const options = table(text, "option");
    assert.deepEqual(options.map((r) => r[0]).sort(), fields(shipped("quota_widget.d.ts"), "WidgetOptions").sort(), "options table vs WidgetOptions");
    for (const row of options) assert.ok(row[2], `option ${row[0]} has no default`);
    const attributes = table(text, "attribute");
    assert.deepEqual(attributes.map((r) => r[0]).sort(), fields(shipped("attributes.d.ts"), "QuotaWidgetAttributes").sort(), "attributes table vs QuotaWidgetAttributes");
    for (const row of attributes) assert.ok(row[1], `attribute ${row[0]} has no default`);
    const events = fields(shipped("element.d.ts"), "QuotaWidgetElementEventMap");
    assert.deepEqual(table(text, "event").map((r) => r[0]).sort(), events.sort(), "events table vs QuotaWidgetElementEventMap");
    const css = (source) => [...new Set(source.match(/--qw-[a-z0-9-]+/g))].sort();
    assert.deepEqual(table(text, "property").map((r) => r[0]).sort(), css(shipped("quota-widget.css")), "custom properties vs quota-widget.css");
    assert.deepEqual(css(text), css(shipped("quota-widget.css")), "a custom property the stylesheet does not have");
  });

  test("names no repository script and links only to its own headings", () => {
    const text = readme();
    assert.doesNotMatch(text, /(^|[\s`(])(\.\/)?scripts\//m, "a repository script");
    const files = new Set(JSON.parse(shipped("package.json")).files);
    const anchors = new Set(
      [...text.matchAll(/^#{1,6}\s+(.*)$/gm)].map(([, h]) => h.toLowerCase().replace(/[^a-z0-9 -]/g, "").replace(/ /g, "-")),
    );
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (target.startsWith("#")) assert.ok(anchors.has(target.slice(1)), `a link to #${target.slice(1)}, which is no heading`);
      else if (!/^https:\/\//.test(target)) assert.ok(files.has(target.replace(/^\.\//, "")), `a link to ${target}, which the package does not ship`);
    }
  });
});

/** The rows of the Markdown table whose first header cell is `first`: cells, backticks and quotes removed. */
function table(markdown, first) {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => new RegExp(`^\\|\\s*${first}\\s*\\|`).test(line));
  assert.ok(start >= 0, `no table with a "${first}" column`);
  const rows = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(line.split("|").slice(1, -1).map((cell) => cell.trim().replace(/^`(.*)`$/, "$1")));
  }
  return rows;
}

/** The member names of an interface in a declaration file, quotes removed. */
function fields(declarations, name) {
  const start = declarations.search(new RegExp(`interface ${name}\\b[^{]*\\{`));
  assert.ok(start >= 0, `no interface ${name}`);
  const head = declarations.slice(start, declarations.indexOf("{", start));
  const body = declarations.slice(declarations.indexOf("{", start) + 1, declarations.indexOf("\n}", start));
  const own = [...body.matchAll(/^ {2,4}(?:readonly )?"?([\w-]+)"?\??:/gm)].map((m) => m[1]);
  // And the fields of the interfaces it extends that the same file declares
  // (WidgetOptions extends the core's QuotaOptions; the DOM's own, such as
  // HTMLElementEventMap, are not the package's).
  const bases = head.match(/\bextends\s+([\w\s,]+)/)?.[1].split(",").map((b) => b.trim()).filter(Boolean) ?? [];
  const declared = bases.filter((base) => new RegExp(`interface ${base}\\b`).test(declarations));
  return [...own, ...declared.flatMap((base) => fields(declarations, base))];
}

describe("each example runs in Chromium against the reference server", () => {
  // Filled in by before(): node --test collects the tests first.
  for (const source of SOURCES) {
    test(`${source.file}: every example`, { timeout: 180_000 }, async (t) => {
      const mine = apps.filter((app) => app.source === source.file);
      for (const app of mine) {
        await t.test(`"${app.heading}" (${app.files.map((f) => `${f.name} at line ${f.line}`).join(", ")})`, { timeout: 60_000 }, () => runApp(app));
      }
    });
  }
});

/** Builds the app with Vite, serves it with /api forwarded, and drives it as a user would. */
async function runApp(app) {
  const dist = path.join(app.dir, "dist");
  await build({ root: app.dir, configFile: false, logLevel: "warn", build: { outDir: dist, emptyOutDir: true } });

  const db = path.join(tmp, `${app.id}.sqlite3`);
  const server = await startServer({ db, args: ["--dev", "--no-worker", "--seed-demo"] });
  const site = await serveApp(dist, server);
  const context = await browser.newContext({ locale: "en-US", timezoneId: "UTC" });
  context.setDefaultTimeout(WAIT_MS);
  const problems = watch(context);
  try {
    const page = await context.newPage();
    await page.goto(site.url + "/");
    await drive(page, server, site);
  } catch (error) {
    if (problems.length) error.message += `\nIn the page:\n  ${problems.join("\n  ")}`;
    throw error;
  } finally {
    await context.close().catch(() => {});
    await site.close();
    await server.stop();
  }
  assert.deepEqual(problems, [], "console errors or warnings, page errors or CSP violations");
}

async function drive(page, server, site) {
  const state0 = await apiOk(server, "GET", "/api/state", { token: TOKEN });
  const pool = state0.pools.find((p) => p.kind === "image");
  const remaining = state0.packages.filter((p) => p.status === "active").reduce((sum, p) => sum + p.remaining, 0);

  // Live: figures from the server, over the session the page made.
  await until(page, "the widget live", () =>
    (document.querySelector(".qw-freshness")?.textContent ?? "").startsWith("Live") &&
    /\d/.test(document.querySelector(".qw-remaining")?.textContent ?? ""),
  );
  assert.equal(unitsOf(await page.locator(".qw-remaining").textContent()), remaining);
  const signIn = site.log.filter((r) => r.path === "/api/session" && r.method === "POST");
  assert.equal(signIn.length, 1, "the page signed in once");
  assert.ok(signIn[0].status >= 200 && signIn[0].status < 300, `sign-in answered ${signIn[0].status}`);
  assert.deepEqual(
    site.log.filter((r) => r.status === 401).map((r) => `${r.method} ${r.path}`),
    [],
    "no API request before the sign-in",
  );
  await waitForGate(page, true);

  // The request being prepared: a count chosen in the form (when it has
  // one), else the element's; the cost preview must follow it.
  const count = await page.evaluate(() => {
    const select = document.querySelector('select[name="count"]');
    if (select instanceof HTMLSelectElement && select.options.length > 1) {
      select.value = select.options[select.options.length - 2].value;
      select.dispatchEvent(new Event("change", { bubbles: true }));
      return Number(select.value);
    }
    return Number(document.querySelector("quota-widget")?.getAttribute("count") ?? 1);
  });
  assert.ok(count >= 1 && count <= pool.limit, `a count of ${count} for a limit of ${pool.limit}`);
  const cost = count * pool.unit_cost;
  await until(page, `the cost of ${count} (${cost} units) in the preview: the request follows the form`, (units) =>
    (document.querySelector(".qw-cost")?.textContent ?? "").includes(`${units} units`), cost);

  // The gate writes the id of the hold it takes into a field named
  // client_request_id (requestIdField): the test adds one to see it.
  await page.evaluate(() => {
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "client_request_id";
    document.querySelector("#generate")?.closest("form")?.append(field);
  });
  const prompt = page.locator('input[name="prompt"]');
  if (await prompt.count()) await prompt.fill(PROMPT);
  await page.locator("#generate").click();

  const running = await waitForServer(server, (s) => s.running.length > 0, "a running task");
  const held = await page.locator('input[name="client_request_id"]').inputValue();
  assert.ok(held, "the widget took a hold for the submit");
  assert.equal(running.running.length, 1, "one task for one click");
  const [task] = running.running;
  assert.deepEqual(
    { client_request_id: task.client_request_id, kind: task.kind, slots: task.slots, reserved_units: task.reserved_units },
    { client_request_id: held, kind: "image", slots: pool.slot_rule === "per_item" ? count : 1, reserved_units: cost },
    "the server's task is the request the widget held",
  );
  const posts = site.log.filter((r) => r.path === "/api/generations");
  assert.equal(posts.length, 1, "one POST /api/generations");
  assert.deepEqual(JSON.parse(posts[0].body), {
    kind: "image",
    count,
    client_request_id: held,
    ...((await prompt.count()) ? { prompt: PROMPT } : {}),
  });
  assert.equal(posts[0].status, 201);
  await until(page, "the outcome in the page's <output>", () => (document.querySelector("output")?.textContent ?? "") !== "");
  const shown = await page.locator("output").textContent();
  assert.doesNotMatch(shown ?? "", /not started|fail|refused|error/i, "the page shows that the request started");

  // Its slots taken, the request no longer fits: blocked, with the reason.
  await waitForGate(page, false);
  const reason = await buttonDescription(page);
  assert.match(reason, /slots are busy/, "the button names the reason");
  // aria-disabled: Playwright would wait for it to be enabled; a user can click it.
  await page.locator("#generate").click({ force: true });
  await sleep(500);
  assert.equal(site.log.filter((r) => r.path === "/api/generations").length, 1, "a blocked click sends nothing");

  // The task fails: nothing is charged and Generate opens again.
  await apiOk(server, "POST", `/api/dev/tasks/${task.id}/fail`, { token: TOKEN });
  await waitForGate(page, true);
  assert.equal(await meterText(page, "image"), `0 of ${pool.limit} in use`);
  assert.equal(unitsOf(await page.locator(".qw-remaining").textContent()), remaining, "a failure charges nothing");
  const session = await api(server, "GET", "/api/state", { token: TOKEN });
  assert.equal(session.json.running.length, 0);
}

/** Waits until Generate is open (true) or blocked (false), as aria-disabled says. */
async function waitForGate(page, open) {
  await until(page, open ? "Generate open" : "Generate blocked", (want) => {
    const button = document.querySelector("#generate");
    return button && (button.getAttribute("aria-disabled") === "true") === !want;
  }, open);
}

/** page.waitForFunction, failing with what was awaited. */
async function until(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { polling: "raf" });
  } catch (error) {
    throw new Error(`the page never showed ${what} (${error.message.split("\n")[0]})`);
  }
}

async function waitForServer(server, predicate, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const state = await apiOk(server, "GET", "/api/state", { token: TOKEN });
    if (predicate(state)) return state;
    if (Date.now() > deadline) throw new Error(`the server never showed ${what}`);
    await sleep(25);
  }
}

/** Records console errors and warnings, page errors and CSP violations. */
function watch(context) {
  const problems = [];
  context.on("page", (page) => {
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") problems.push(`console ${message.type()}: ${message.text()}`);
    });
  });
  return problems;
}

/**
 * Serves `dist` under the reference server's CSP, and forwards /api to
 * `server` (streams included), logging each API request with its status
 * and, for a POST, its body.
 */
async function serveApp(dist, server) {
  const upstream = new URL(server.url);
  const log = [];
  const site = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname.startsWith("/api/")) {
      const chunks = [];
      req.on("data", (chunk) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const entry = { method: req.method, path: url.pathname, body: body.toString("utf8"), status: null };
        log.push(entry);
        const forward = http.request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
          (answer) => {
            entry.status = answer.statusCode;
            res.writeHead(answer.statusCode, answer.headers);
            answer.pipe(res);
          },
        );
        forward.on("error", () => res.destroy());
        res.on("close", () => forward.destroy());
        forward.end(body);
      });
      return;
    }
    const rel = url.pathname === "/" ? "/index.html" : decodeURIComponent(url.pathname);
    const file = path.join(dist, path.normalize(rel));
    const headers = { "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store" };
    if (rel === "/favicon.ico") {
      res.writeHead(204, headers).end();
      return;
    }
    if (!file.startsWith(dist + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": MIME[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${site.address().port}`,
    log,
    close: () =>
      new Promise((resolve) => {
        site.closeAllConnections();
        site.close(resolve);
      }),
  };
}
