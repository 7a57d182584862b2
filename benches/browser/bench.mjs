// `scripts/bench`: the widget against a plain-JavaScript reference view of
// the same information (reference.js), in one headless Chromium run,
// interleaved batch by batch. Prints figures; asserts nothing about speed,
// but fails (exit code 1) when the two views do not render the same page.
//
//   node benches/browser/bench.mjs [--quick]
//   node benches/browser/bench.mjs --check   # only the same-page check
//   node benches/browser/bench.mjs --profile[=busy|small][:reference][:noop][:json]
//                                       # where an update's time goes
//   QW_BENCH_BASELINE=old-reference.js node benches/browser/bench.mjs
//                                       # another revision of the reference beside this one
//
// Measures, for a small and a busy account (states.js):
// - that the widget and the reference render the same page (every node,
//   attribute and text, ids aside) after each of a series of states that
//   takes them through every part of the view, as objects and as JSON text;
// - time per update, states pushed as objects and as JSON text, in batches
//   of 50, interleaved: updates that move a few figures, and no-op updates
//   (a new revision whose shown figures did not change); median and p95 of
//   the batches' mean, and p95 of single updates;
// - first render after navigation (module load, wasm compile, first state),
//   the state as an object and as JSON text;
// - memory (JS heap after a forced GC, wasm memory, DOM nodes) after 100,000
//   updates and after 1,000 create/destroy cycles.
//
// The page is cross-origin isolated (COOP/COEP), which makes
// performance.now() precise to 5 µs instead of 100 µs.
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
// --check: only the check that both render the same page.
const CHECK_ONLY = process.argv.includes("--check");
// --profile, --profile=small, --profile=busy:reference: the account (busy by
// default) and the implementation (the widget by default) to profile.
const PROFILE = process.argv.find((a) => a.startsWith("--profile"));
// A third part, :noop, profiles no-op updates; a fourth, :json, states as
// JSON text (objects by default).
const [PROFILED = "busy", PROFILED_IMPL = "widget", PROFILED_UPDATE, PROFILED_FORMAT = "object"] = (PROFILE?.split("=")[1] ?? "")
  .split(":")
  .map((x) => x || undefined);
const PROFILED_NOOP = PROFILED_UPDATE === "noop";
// The package to measure; --profile swaps in the wasm from before wasm-opt,
// which keeps its function names (scripts/build-pkg leaves it there).
// QW_BENCH_PKG=DIR measures another build of the package (to compare two
// revisions with the same reference and the same run).
const PKG = resolve(process.env.QW_BENCH_PKG ?? join(ROOT, "pkg"));
// QW_BENCH_NAMED_WASM=FILE: another named wasm; empty: profile the package's own.
const NAMED_WASM = process.env.QW_BENCH_NAMED_WASM === "" ? null : resolve(process.env.QW_BENCH_NAMED_WASM ?? join(ROOT, "target/pkg-named/quota_widget_bg.wasm"));
const BASELINE = process.env.QW_BENCH_BASELINE ? resolve(process.env.QW_BENCH_BASELINE) : null;
const BATCH = 50;
const BATCHES = QUICK ? 20 : 60;
const WARMUP = 4;
const LONG_UPDATES = QUICK ? 10_000 : 100_000;
const CYCLES = QUICK ? 100 : 1_000;
const FIRST_RUNS = QUICK ? 5 : 11;

const TYPES = { ".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".wasm": "application/wasm" };
const PAGE = (script) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="stylesheet" href="/pkg/quota-widget.css"></head><body>
<form><button id="widget-go">Generate</button></form><div id="widget-host"></div>
<form><button id="reference-go">Generate</button></form><div id="reference-host"></div>
<form><button id="baseline-go">Generate</button></form><div id="baseline-host"></div>
<script type="module" src="${script}"></script></body></html>`;

/**
 * The named wasm for --profile, if it fits the package's glue: the same
 * imports, by module and name (scripts/build-pkg may shorten the names of
 * the package's wasm after keeping the named one; then the package's own
 * wasm is profiled, with wasm-function[N] for names).
 */
async function namedWasm() {
  if (!PROFILE || PROFILED_IMPL !== "widget" || !NAMED_WASM || !existsSync(NAMED_WASM)) return null;
  const named = await readFile(NAMED_WASM);
  const imports = async (bytes) => JSON.stringify(WebAssembly.Module.imports(await WebAssembly.compile(bytes)).map((i) => [i.module, i.name]));
  if ((await imports(named)) === (await imports(await readFile(join(PKG, "quota_widget_bg.wasm"))))) return named;
  console.log(`note: ${NAMED_WASM} does not fit the package's glue (other import names): profiling the package's own wasm`);
  return null;
}
const NAMED = await namedWasm();

function serve() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    let body;
    let path = url.pathname;
    try {
      if (path === "/bench.html") body = PAGE("/bench/page.js");
      else if (path === "/first.html") body = PAGE("/bench/first.js");
      else if (NAMED && path === "/pkg/quota_widget_bg.wasm") body = NAMED;
      else if (path.startsWith("/pkg/")) body = await readFile(safe(PKG, path.slice(5)));
      else if (path === "/bench/baseline.js" && BASELINE) body = await readFile(BASELINE);
      else if (path.startsWith("/bench/")) body = await readFile(safe(HERE, path.slice(7)));
      else if (path === "/favicon.ico") body = "";
      else throw new Error("not found");
    } catch {
      res.writeHead(404).end();
      return;
    }
    const type = path.endsWith(".html") ? "text/html" : TYPES[extname(path)] ?? "application/octet-stream";
    // Cross-origin isolated: performance.now() to 5 µs.
    res.writeHead(200, {
      "Content-Type": type,
      "Cache-Control": "no-store",
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
    }).end(body);
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
 * Where an update's time goes (an account, states as objects or JSON text, the widget
 * or the reference): for the widget, the crossings between wasm and
 * JavaScript per update, counted with V8's precise coverage; for both, the
 * functions with the most self time in a CPU profile.
 */
async function profile(page) {
  const cdp = await page.context().newCDPSession(page);
  const impl = PROFILED_IMPL;
  await page.evaluate((a) => window.bench.setup(a), PROFILED);
  await page.evaluate(([n, a, f]) => window.bench.batch(n, a, f, 500), [impl, PROFILED, PROFILED_FORMAT]);
  const N = 2000;
  await cdp.send("Profiler.enable");
  if (impl === "widget") {
    await cdp.send("Profiler.startPreciseCoverage", { callCount: true, detailed: false });
    await cdp.send("Profiler.takePreciseCoverage");
    await page.evaluate(([n, a, k, o, f]) => window.bench.batch(n, a, f, k, o), [impl, PROFILED, N, PROFILED_NOOP, PROFILED_FORMAT]);
    const { result } = await cdp.send("Profiler.takePreciseCoverage");
    await cdp.send("Profiler.stopPreciseCoverage");
    const calls = [];
    for (const script of result) {
      if (!/\/pkg\/(quota_widget|index)\.js$/.test(script.url)) continue;
      for (const fn of script.functions) {
        const count = fn.ranges[0].count;
        if (count > 0 && fn.functionName) calls.push([fn.functionName, count / N]);
      }
    }
    calls.sort((a, b) => b[1] - a[1]);
    const total = calls.reduce((sum, [, c]) => sum + c, 0);
    console.log(`calls into the generated JS glue per update (${PROFILED}, ${PROFILED_FORMAT}${PROFILED_NOOP ? ", no-op" : ""}): ${total.toFixed(0)} in all`);
    for (const [name, c] of calls.slice(0, 15)) console.log(`  ${c.toFixed(1).padStart(7)}  ${name}`);
  }

  await cdp.send("Profiler.setSamplingInterval", { interval: 50 });
  await cdp.send("Profiler.start");
  const { total } = await page.evaluate(([n, a, k, o, f]) => window.bench.batch(n, a, f, k, o), [impl, PROFILED, 5 * N, PROFILED_NOOP, PROFILED_FORMAT]);
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
  console.log(`self time, ${impl}, ${PROFILED} account, states as ${PROFILED_FORMAT === "json" ? "JSON text" : "objects"}${PROFILED_NOOP ? ", no-op updates" : ""} (${us(total / (5 * N))} per update while profiled):`);
  for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${((100 * t) / all).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
  }
  // Total time: a function's own and its callees', each sample counted once
  // per function however deep it recurses.
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nameOf = (n) => n.callFrame.functionName || `(${n.callFrame.url.split("/").pop() || "program"})`;
  const inclusive = new Map();
  for (const node of prof.nodes) {
    const t = dt.get(node.id);
    if (!t) continue;
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const name = nameOf(byId.get(id));
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + t);
    }
  }
  console.log(`total time (own and callees'), same profile:`);
  for (const [name, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`  ${((100 * t) / all).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
  }
}

/** The first step at which the widget and the reference show different pages, if any. */
function firstDifference(steps) {
  for (const s of steps) {
    const threw = !!s.threw?.widget !== !!s.threw?.reference;
    if (s.widget !== s.reference || threw) return s;
  }
  return null;
}

function diffAt(a, b) {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `…${a.slice(Math.max(0, i - 120), i + 200)}\n    reference: …${b.slice(Math.max(0, i - 120), i + 200)}`;
}

async function main() {
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const version = browser.version();
  const results = [];
  const checks = [];
  let failed = false;
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(`${base}/bench.html`);
    await page.waitForFunction(() => window.bench);
    await page.evaluate((b) => window.bench.load(b), !!BASELINE);
    const names = await page.evaluate(() => window.bench.names);
    if (!(await page.evaluate(() => window.bench.isolated()))) console.log("warning: the page is not cross-origin isolated: performance.now() is coarse");
    if (PROFILE) {
      await profile(page);
      return;
    }

    // The same page from both, state after state, before anything is timed.
    for (const account of ["small", "busy"]) {
      for (const format of ["object", "json"]) {
        const steps = await page.evaluate(([a, f]) => window.bench.check(a, f), [account, format]);
        const bad = firstDifference(steps);
        checks.push({ account, format, steps: steps.length, bad });
        if (bad) failed = true;
      }
    }

    if (CHECK_ONLY) {
      report(version, names, checks, [], null, null);
      if (failed) fail();
      return;
    }

    // Time per update, interleaved: each implementation's batch in turn,
    // the order rotated from one round to the next.
    for (const account of ["small", "busy"]) {
      for (const format of ["object", "json"]) {
        for (const noop of [false, true]) {
          await page.evaluate((a) => window.bench.setup(a), account);
          const times = Object.fromEntries(names.map((n) => [n, { batches: [], each: [] }]));
          for (let i = 0; i < BATCHES + WARMUP; i++) {
            const order = names.map((_, j) => names[(i + j) % names.length]);
            for (const name of order) {
              const r = await page.evaluate(([n, a, f, k, o]) => window.bench.batch(n, a, f, k, o), [name, account, format, BATCH, noop]);
              if (i >= WARMUP) {
                times[name].batches.push(r.total / BATCH);
                times[name].each.push(...r.each);
              }
            }
            // Let the page render between batches, outside the timed region.
            await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
          }
          const shown = await page.evaluate(() => [window.bench.shown("widget"), window.bench.shown("reference")]);
          const same = shown[0] === shown[1];
          if (!same) failed = true;
          results.push({ account, format, noop, times, same, shown });
        }
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
    const first = Object.fromEntries(names.map((n) => [n, {}]));
    for (const account of ["small", "busy"]) {
      for (const format of ["object", "json"]) {
        for (let i = 0; i < FIRST_RUNS; i++) {
          const order = names.map((_, j) => names[(i + j) % names.length]);
          for (const name of order) {
            const ctx = await browser.newContext();
            const p = await ctx.newPage();
            await p.goto(`${base}/first.html?impl=${name}&account=${account}&format=${format}`);
            const ms = await p.waitForFunction(() => window.firstRenderMs).then((h) => h.jsonValue());
            (first[name][`${account} ${format}`] ??= []).push(ms);
            await ctx.close();
          }
        }
      }
    }

    if (errors.length) console.log(`page errors: ${errors.join("; ")}`);
    report(version, names, checks, results, memory, first);
  } finally {
    await browser.close();
    server.close();
  }
  if (failed) fail();
}

function fail() {
  console.log("FAILED: the widget and the reference do not render the same page (see above)");
  process.exitCode = 1;
}

function report(version, names, checks, results, memory, first) {
  console.log(`quota-widget browser benchmark: Chromium ${version}, ${QUICK ? "quick" : "full"} run, package ${PKG}${BASELINE ? `, baseline reference ${BASELINE}` : ""}`);
  console.log("same page (every node, attribute and text) from the widget and the reference, state after state:");
  for (const c of checks) {
    console.log(`  ${c.account.padEnd(6)} ${c.format.padEnd(6)} ${c.steps} states: ${c.bad ? "DIFFERENT" : "same"}`);
    if (c.bad) console.log(`    at state ${c.bad.state} (threw: ${JSON.stringify(c.bad.threw ?? {})})\n    widget:    ${diffAt(c.bad.widget, c.bad.reference)}`);
  }
  if (!memory) return;
  console.log(`time per update (batches of ${BATCH}, ${BATCHES} per implementation, interleaved): median and p95 of the batches' mean, [p95 of single updates]`);
  const cell = (t) => `${us(median(t.batches))} (${us(quantile(t.batches, 0.95))}) [${us(quantile(t.each, 0.95))}]`.padEnd(36);
  console.log(`  account  state   update  ${names.map((n) => n.padEnd(36)).join("")}widget/reference  same page`);
  for (const r of results) {
    const ratio = median(r.times.widget.batches) / median(r.times.reference.batches);
    console.log(
      `  ${r.account.padEnd(7)}  ${r.format.padEnd(6)}  ${(r.noop ? "no-op" : "moves").padEnd(6)}  ${names.map((n) => cell(r.times[n])).join("")}${ratio.toFixed(2).padStart(16)}  ${r.same ? "yes" : "NO"}`,
    );
    if (!r.same) console.log(`    widget:    ${diffAt(r.shown[0], r.shown[1])}`);
  }
  console.log(`first render after navigation (module load, wasm compile, first state), median (p95) of ${FIRST_RUNS}:`);
  for (const key of Object.keys(first.widget)) {
    const cells = names.map((n) => `${n} ${median(first[n][key]).toFixed(1)} ms (${quantile(first[n][key], 0.95).toFixed(1)})`);
    const ratio = median(first.widget[key]) / median(first.reference[key]);
    console.log(`  ${key.padEnd(13)}  ${cells.join("   ")}   widget/reference ${ratio.toFixed(2)}`);
  }
  console.log(`memory (JS heap after GC / wasm memory / DOM nodes), busy account:`);
  for (const [name, m] of Object.entries(memory)) {
    const f = (x) => `${kb(x.js)} / ${kb(x.wasm)} / ${x.nodes}`;
    console.log(`  ${name.padEnd(9)}  start ${f(m.before)}   after ${LONG_UPDATES} updates ${f(m.afterUpdates)}   after ${CYCLES} create/destroy ${f(m.afterCycles)}`);
  }
}

await main();
