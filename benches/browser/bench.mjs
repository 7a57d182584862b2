// `scripts/bench`: the widget against a plain-JavaScript reference view of
// the same information (reference.js), in one headless Chromium run,
// interleaved batch by batch. Prints figures; asserts nothing about speed.
//
//   node benches/browser/bench.mjs [--quick]
//   node benches/browser/bench.mjs --profile   # where an update's time goes
//
// Measures, for a small and a busy account (states.js):
// - time per update, states pushed as objects and as JSON text, in batches
//   of 100 (performance.now() is coarse), median and p90 over the batches;
// - first render after navigation (module load, wasm compile, first state);
// - memory (JS heap after a forced GC, wasm memory, DOM nodes) after 100,000
//   updates and after 1,000 create/destroy cycles.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../../tests/chromium.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
const QUICK = process.argv.includes("--quick");
// --profile or --profile=small: profile the busy (default) or small account.
const PROFILE = process.argv.find((a) => a.startsWith("--profile"));
const PROFILED = PROFILE?.split("=")[1] ?? "busy";
// The package to measure; --profile swaps in the wasm from before wasm-opt,
// which keeps its function names (scripts/build-pkg leaves it there).
// QW_BENCH_PKG=DIR measures another build of the package (to compare two
// revisions with the same reference and the same run).
const PKG = resolve(process.env.QW_BENCH_PKG ?? join(ROOT, "pkg"));
const NAMED_WASM = join(ROOT, "target/pkg-named/quota_widget_bg.wasm");
const BATCH = 100;
const BATCHES = QUICK ? 10 : 40;
const LONG_UPDATES = QUICK ? 10_000 : 100_000;
const CYCLES = QUICK ? 100 : 1_000;
const FIRST_RUNS = QUICK ? 3 : 9;

const TYPES = { ".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".wasm": "application/wasm" };
const PAGE = (script) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="stylesheet" href="/pkg/quota-widget.css"></head><body>
<form><button id="widget-go">Generate</button></form><div id="widget-host"></div>
<form><button id="reference-go">Generate</button></form><div id="reference-host"></div>
<script type="module" src="${script}"></script></body></html>`;

function serve() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    let body;
    let path = url.pathname;
    try {
      if (path === "/bench.html") body = PAGE("/bench/page.js");
      else if (path === "/first.html") body = PAGE("/bench/first.js");
      else if (PROFILE && path === "/pkg/quota_widget_bg.wasm") body = await readFile(NAMED_WASM);
      // The tabs build (pkg/tabs) uses the stylesheet of the package's root.
      else if (path === "/pkg/quota-widget.css" && !existsSync(join(PKG, "quota-widget.css"))) body = await readFile(join(PKG, "../quota-widget.css"));
      else if (path.startsWith("/pkg/")) body = await readFile(safe(PKG, path.slice(5)));
      else if (path.startsWith("/bench/")) body = await readFile(safe(HERE, path.slice(7)));
      else if (path === "/favicon.ico") body = "";
      else throw new Error("not found");
    } catch {
      res.writeHead(404).end();
      return;
    }
    const type = path.endsWith(".html") ? "text/html" : TYPES[extname(path)] ?? "application/octet-stream";
    res.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" }).end(body);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

function safe(base, rel) {
  const full = normalize(join(base, rel));
  if (!full.startsWith(base)) throw new Error("outside");
  return full;
}

const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const us = (ms) => `${(ms * 1000).toFixed(1)} µs`;
const kb = (b) => `${(b / 1024).toFixed(0)} kB`;

async function heap(page, cdp) {
  await cdp.send("HeapProfiler.collectGarbage");
  const { usedSize } = await cdp.send("Runtime.getHeapUsage");
  const wasm = await page.evaluate(() => window.bench.wasmBytes());
  const nodes = await page.evaluate(() => window.bench.nodes());
  return { js: usedSize, wasm, nodes };
}

/**
 * Where an update's time goes (busy account, states as objects): crossings
 * between wasm and JavaScript per update, counted with V8's precise
 * coverage, and the functions with the most self time in a CPU profile.
 */
async function profile(page) {
  const cdp = await page.context().newCDPSession(page);
  await page.evaluate((a) => window.bench.setup(a), PROFILED);
  await page.evaluate((a) => window.bench.batch("widget", a, "object", 500), PROFILED);
  const N = 2000;
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.startPreciseCoverage", { callCount: true, detailed: false });
  await cdp.send("Profiler.takePreciseCoverage");
  await page.evaluate(([a, n]) => window.bench.batch("widget", a, "object", n), [PROFILED, N]);
  const { result } = await cdp.send("Profiler.takePreciseCoverage");
  await cdp.send("Profiler.stopPreciseCoverage");
  const calls = [];
  for (const script of result) {
    if (!script.url.includes("/pkg/quota_widget.js")) continue;
    for (const fn of script.functions) {
      const count = fn.ranges[0].count;
      if (count > 0 && fn.functionName) calls.push([fn.functionName, count / N]);
    }
  }
  calls.sort((a, b) => b[1] - a[1]);
  const total = calls.reduce((sum, [, c]) => sum + c, 0);
  console.log(`calls into the generated JS glue per update (${PROFILED}, object): ${total.toFixed(0)} in all`);
  for (const [name, c] of calls.slice(0, 15)) console.log(`  ${c.toFixed(1).padStart(7)}  ${name}`);

  await cdp.send("Profiler.setSamplingInterval", { interval: 50 });
  await cdp.send("Profiler.start");
  await page.evaluate(([a, n]) => window.bench.batch("widget", a, "object", n), [PROFILED, 5 * N]);
  const { profile: prof } = await cdp.send("Profiler.stop");
  const self = new Map();
  const dt = new Map(prof.nodes.map((n) => [n.id, 0]));
  prof.samples.forEach((id, i) => dt.set(id, dt.get(id) + (prof.timeDeltas[i] ?? 0)));
  let all = 0;
  for (const node of prof.nodes) {
    const name = node.callFrame.functionName || `(${node.callFrame.url.split("/").pop() || "program"})`;
    const t = dt.get(node.id);
    all += t;
    self.set(name, (self.get(name) ?? 0) + t);
  }
  console.log(`self time, ${PROFILED} account, states as objects:`);
  for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${((100 * t) / all).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
  }
}

async function main() {
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const version = browser.version();
  const results = [];
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(`${base}/bench.html`);
    await page.waitForFunction(() => window.bench);
    await page.evaluate(() => window.bench.load());
    if (PROFILE) {
      await profile(page);
      return;
    }

    // Time per update, interleaved: widget batch, reference batch, ...
    for (const account of ["small", "busy"]) {
      for (const format of ["object", "json"]) {
        await page.evaluate((a) => window.bench.setup(a), account);
        const times = { widget: [], reference: [] };
        for (let i = 0; i < BATCHES + 3; i++) {
          for (const name of i % 2 ? ["reference", "widget"] : ["widget", "reference"]) {
            const ms = await page.evaluate(([n, a, f, k]) => window.bench.batch(n, a, f, k), [name, account, format, BATCH]);
            if (i >= 3) times[name].push(ms / BATCH); // the first batches warm up
          }
          // Let the page render between batches, outside the timed region.
          await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
        }
        const [w, r] = await page.evaluate(() => [window.bench.texts("widget"), window.bench.texts("reference")]);
        const same = JSON.stringify(w) === JSON.stringify(r);
        results.push({ account, format, widget: times.widget, reference: times.reference, same, w, r });
      }
    }

    // Memory: long run, then create/destroy cycles.
    const cdp = await context.newCDPSession(page);
    const memory = {};
    for (const name of ["widget", "reference"]) {
      await page.evaluate(() => window.bench.setup("busy"));
      const before = await heap(page, cdp);
      for (let done = 0; done < LONG_UPDATES; done += 1000) {
        await page.evaluate(([n]) => window.bench.batch(n, "busy", "object", 1000), [name]);
      }
      const afterUpdates = await heap(page, cdp);
      await page.evaluate(([n, k]) => window.bench.cycles(n, "busy", k), [name, CYCLES]);
      const afterCycles = await heap(page, cdp);
      memory[name] = { before, afterUpdates, afterCycles };
    }
    await context.close();

    // First render after navigation, each in a fresh context (cold cache).
    const first = { widget: {}, reference: {} };
    for (const account of ["small", "busy"]) {
      for (let i = 0; i < FIRST_RUNS; i++) {
        for (const name of i % 2 ? ["reference", "widget"] : ["widget", "reference"]) {
          const ctx = await browser.newContext();
          const p = await ctx.newPage();
          await p.goto(`${base}/first.html?impl=${name}&account=${account}`);
          const ms = await p.waitForFunction(() => window.firstRenderMs).then((h) => h.jsonValue());
          (first[name][account] ??= []).push(ms);
          await ctx.close();
        }
      }
    }

    if (errors.length) console.log(`page errors: ${errors.join("; ")}`);
    report(version, results, memory, first);
  } finally {
    await browser.close();
    server.close();
  }
}

function report(version, results, memory, first) {
  console.log(`quota-widget browser benchmark: Chromium ${version}, ${QUICK ? "quick" : "full"} run, package ${PKG}`);
  console.log(`time per update (batches of ${BATCH}, ${BATCHES} batches each, interleaved):`);
  console.log("  account  state   widget median (p90)      reference median (p90)   widget/reference  same text");
  for (const r of results) {
    const ratio = median(r.widget) / median(r.reference);
    console.log(
      `  ${r.account.padEnd(7)}  ${r.format.padEnd(6)}  ${`${us(median(r.widget))} (${us(quantile(r.widget, 0.9))})`.padEnd(23)}  ` +
        `${`${us(median(r.reference))} (${us(quantile(r.reference, 0.9))})`.padEnd(23)}  ${ratio.toFixed(2).padStart(16)}  ${r.same ? "yes" : "NO"}`,
    );
    if (!r.same) console.log(`    widget: ${JSON.stringify(r.w)}\n    reference: ${JSON.stringify(r.r)}`);
  }
  console.log("first render after navigation (module load, wasm compile, first state), median:");
  for (const account of ["small", "busy"]) {
    console.log(`  ${account.padEnd(7)}  widget ${median(first.widget[account]).toFixed(1)} ms   reference ${median(first.reference[account]).toFixed(1)} ms`);
  }
  console.log(`memory (JS heap after GC / wasm memory / DOM nodes), busy account:`);
  for (const [name, m] of Object.entries(memory)) {
    const f = (x) => `${kb(x.js)} / ${kb(x.wasm)} / ${x.nodes}`;
    console.log(`  ${name.padEnd(9)}  start ${f(m.before)}   after ${LONG_UPDATES} updates ${f(m.afterUpdates)}   after ${CYCLES} create/destroy ${f(m.afterCycles)}`);
  }
}

await main();
