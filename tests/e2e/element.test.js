// <quota-widget> in real page order, in headless Chromium: a button that
// appears after the element (a sidebar rendered before its form), a button
// that a re-render replaces, and a button given as an element. The page and
// the built package (pkg/) are served from disk on a made-up origin; the
// widget is fed states with pushState, so no server is needed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize } from "node:path";

import { ROOT, launchBrowser, newContext } from "./harness.js";

const ORIGIN = "http://widget.test";
const PKG = join(ROOT, "pkg");
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".html": "text/html" };

const pageHtml = (lang) => `<!doctype html><html lang="${lang}"><head><meta charset="utf-8">
<link rel="stylesheet" href="/pkg/quota-widget.css"></head><body>
<aside><quota-widget button="#generate" kind="image" count="1"></quota-widget></aside>
<main id="main"></main>
<script type="module">
  import { defineQuotaWidget } from "/pkg/index.js";
  window.events = [];
  window.warnings = [];
  const warn = console.warn.bind(console);
  console.warn = (...args) => { window.warnings.push(args.join(" ")); warn(...args); };
  document.addEventListener("quota-error", (e) => window.events.push(e.detail.message));
  document.addEventListener("quota-ready", () => { window.ready = true; });
  defineQuotaWidget();
</script></body></html>`;

/** A state with `inUse` of 4 image slots taken. */
function state(revision, inUse) {
  const now = Date.now();
  return JSON.stringify({
    revision,
    server_time_ms: now,
    pools: [{ kind: "image", limit: 4, in_use: inUse, unit_cost: 2, slot_rule: "per_item" }],
    packages: [
      { id: "p1", name: "Starter", total: 100, remaining: 100, effective_at_ms: now - 1e6, expires_at_ms: now + 9e8, status: "active" },
    ],
    running: Array.from({ length: inUse }, (_, i) => ({
      id: `t${i}`, kind: "image", slots: 1, reserved_units: 2, started_at_ms: now,
    })),
    finished: [],
  });
}

let browser;
before(async () => {
  if (!existsSync(join(PKG, "quota_widget_bg.wasm"))) throw new Error("pkg/ is not built: run ./scripts/build-pkg first");
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close().catch(() => {});
});

async function openPage(lang = "en") {
  const context = await newContext(browser);
  const page = await context.newPage();
  const requested = [];
  await page.route(`${ORIGIN}/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    requested.push(path);
    if (path === "/") return route.fulfill({ contentType: "text/html", body: pageHtml(lang) });
    const file = normalize(join(ROOT, path));
    if (!file.startsWith(PKG) || !existsSync(file)) return route.fulfill({ status: 404, body: "" });
    return route.fulfill({ contentType: TYPES[extname(file)] ?? "application/octet-stream", body: readFileSync(file) });
  });
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction(() => window.ready === true);
  return { context, page, requested };
}

const ariaDisabled = (page, selector) => page.locator(selector).getAttribute("aria-disabled");
const push = (page, json) => page.evaluate((s) => document.querySelector("quota-widget").widget.pushState(s), json);

describe("<quota-widget> in real page order", () => {
  test("a button added after the element is gated when it appears; until then the developer is told, not the page", async () => {
    const { context, page } = await openPage();
    // No button yet: a warning for the developer and an error event.
    await page.waitForFunction(() => window.events.length > 0);
    const events = await page.evaluate(() => window.events);
    assert.match(events[0], /no element matches button="#generate" yet/);
    assert.match((await page.evaluate(() => window.warnings)).join("\n"), /no element matches button="#generate" yet/);
    const shown = await page.locator("quota-widget").textContent();
    assert.doesNotMatch(shown, /no element matches|button=/, "nothing of it on the page");

    // The form renders later.
    await page.evaluate(() => {
      document.querySelector("#main").innerHTML =
        '<form id="f"><button id="generate" type="submit">Generate</button></form>';
    });
    await page.waitForFunction(() => document.querySelector("#generate").getAttribute("aria-disabled") === "true");
    await push(page, state(1, 0));
    assert.equal(await ariaDisabled(page, "#generate"), null, "open once a state allows it");
    await push(page, state(2, 4));
    assert.equal(await ariaDisabled(page, "#generate"), "true", "gated by the figures");
    assert.deepEqual(context.problems, []);
    await context.close();
  });

  test("a button replaced by a re-render is gated again, and the old one handed back", async () => {
    const { context, page } = await openPage();
    await page.evaluate(() => {
      document.querySelector("#main").innerHTML =
        '<form id="f"><button id="generate" type="submit">Generate</button></form>';
    });
    await page.waitForFunction(() => document.querySelector("#generate").getAttribute("aria-disabled") === "true");
    await push(page, state(1, 4));
    const old = await page.evaluateHandle(() => document.querySelector("#generate"));
    // A framework re-renders the form: a new button with the same id.
    await page.evaluate(() => {
      const form = document.querySelector("#f");
      form.replaceChildren(Object.assign(document.createElement("button"), { id: "generate", type: "submit", textContent: "Generate" }));
    });
    await page.waitForFunction(() => document.querySelector("#generate").getAttribute("aria-disabled") === "true");
    assert.equal(await old.evaluate((b) => b.getAttribute("aria-disabled")), null, "the replaced button has its own attributes back");
    // Its clicks are stopped while blocked: no submit reaches the page.
    const submitted = await page.evaluate(() => {
      let n = 0;
      document.querySelector("#f").addEventListener("submit", (e) => { e.preventDefault(); n++; });
      document.querySelector("#generate").click();
      return n;
    });
    assert.equal(submitted, 0);
    await push(page, state(2, 0));
    assert.equal(await ariaDisabled(page, "#generate"), null);
    assert.deepEqual(context.problems, []);
    await context.close();
  });

  test("a page in Chinese gets the Chinese texts, numbers and plurals; an English page never loads them", async () => {
    const { context, page: zh } = await openPage("zh-CN");
    await zh.evaluate(() => {
      document.querySelector("#main").innerHTML = '<form id="f"><button id="generate" type="submit">生成</button></form>';
    });
    await zh.waitForFunction(() => document.querySelector(".qw-reason")?.textContent);
    assert.equal(await zh.locator(".qw-reason").textContent(), "正在等待服务器的额度数据。");
    await push(zh, state(1, 4));
    assert.equal(await zh.locator(".qw-remaining").textContent(), "剩余 100 点");
    assert.equal(await zh.locator(".qw-reason").textContent(), "图片并发已全部占用：4 个中空闲 0 个，此请求需要 1 个。");
    assert.equal(await zh.locator(".qw-meter-text").textContent(), "4 个中已用 4 个");
    assert.match(await zh.locator(".qw-freshness").textContent(), /^更新于 \d+ 秒前$/);
    assert.equal(await zh.locator("section.qw").getAttribute("aria-label"), "生成额度");
    // A state that cannot be used: said in Chinese, with the detail that
    // English shows too.
    const thrown = await zh.evaluate(() => {
      try {
        document.querySelector("quota-widget").widget.pushState("{not json");
        return null;
      } catch (error) {
        return error.message;
      }
    });
    assert.match(thrown, /not valid JSON/);
    assert.equal(await zh.locator(".qw-error").textContent(), `无法使用最新的额度更新：${thrown}。显示上次的有效数据。`);
    assert.deepEqual(context.problems, []);
    await context.close();

    const { context: enContext, page: en, requested } = await openPage("en");
    await push(en, state(1, 0));
    assert.equal(await en.locator(".qw-remaining").textContent(), "100 units remaining");
    assert.ok(requested.some((p) => p.endsWith("/quota_widget_bg.wasm")), "the route sees the package's requests");
    assert.ok(!requested.some((p) => p.includes("/locales/")), `an English page loaded ${requested.join(", ")}`);
    await enContext.close();
  });

  test("button and form may be elements, set as properties", async () => {
    const { context, page } = await openPage();
    await page.evaluate(() => {
      document.querySelector("#main").innerHTML =
        '<form id="other"><button id="b2" type="submit">Go</button></form>';
      const el = document.querySelector("quota-widget");
      el.button = document.querySelector("#b2");
    });
    await page.waitForFunction(() => document.querySelector("#b2").getAttribute("aria-disabled") === "true");
    await push(page, state(1, 0));
    assert.equal(await ariaDisabled(page, "#b2"), null);
    assert.deepEqual(context.problems, []);
    await context.close();
  });
});
