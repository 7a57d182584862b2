// End-to-end: the widget's light and dark schemes in the demo dashboard.
// Contrast is computed from what Chromium renders (getComputedStyle colours,
// the effective background found by walking the ancestors and blending
// alpha and opacity), never taken from the stylesheet's comments. Each state
// is checked in four ways of choosing a scheme (prefers-color-scheme light
// and dark, and data-theme forcing the other one) and in two colourings:
// the demo's (which sets --qw-accent and --qw-bg) and the widget's own
// defaults. The run writes docs/theme-light.png and docs/theme-dark.png.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ROOT,
  apiOk,
  checkPrerequisites,
  createAccount,
  launchBrowser,
  newContext,
  signIn,
  startServer,
  submitAndWaitRunning,
  tempDir,
  waitForButton,
} from "./harness.js";

const TEXT_AA = 4.5;
const LARGE_TEXT_AA = 3;
const NON_TEXT = 3;
const DOCS = join(ROOT, "docs");
const STYLESHEET = readFileSync(join(ROOT, "js/quota-widget.css"), "utf8");
const THEMING_DOC = join(DOCS, "theming.md");

/** The public custom properties the stylesheet reads: every var(--qw-...). */
const PUBLIC_PROPERTIES = [...new Set([...STYLESHEET.matchAll(/var\((--qw-[a-z0-9-]+)/g)].map((m) => m[1]))];

const SCHEMES = [
  { name: "light", dark: false, media: "light", theme: null },
  { name: "dark", dark: true, media: "dark", theme: null },
  { name: "dark by data-theme on a light system", dark: true, media: "light", theme: "dark" },
  { name: "light by data-theme on a dark system", dark: false, media: "dark", theme: "light" },
];
const VARIANTS = ["demo", "widget defaults"];

// ---------------------------------------------------------------- colour math

const channel = (c) => {
  const s = c / 255;
  return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
};
/** WCAG 2 relative luminance of an opaque [r, g, b]. */
const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
/** WCAG 2 contrast ratio of two opaque colours. */
function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
/** CIE76 colour difference, in CIELAB (D65): about 2 is just noticeable, 20+ reads as another colour. */
function deltaE(a, b) {
  const lab = (rgb) => {
    const [r, g, bl] = rgb.map(channel);
    const xyz = [
      (0.4124 * r + 0.3576 * g + 0.1805 * bl) / 0.95047,
      0.2126 * r + 0.7152 * g + 0.0722 * bl,
      (0.0193 * r + 0.1192 * g + 0.9505 * bl) / 1.08883,
    ].map((t) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 * t + 16) / 116));
    return [116 * xyz[1] - 16, 500 * (xyz[0] - xyz[1]), 200 * (xyz[1] - xyz[2])];
  };
  const [p, q] = [lab(a), lab(b)];
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}
const hex = (rgb) => `#${rgb.map((c) => Math.round(c).toString(16).padStart(2, "0")).join("")}`;
const fixed = (x) => x.toFixed(2);

// ------------------------------------------------------------ in-page probe

/**
 * Runs in the page. Returns the rendered (opaque, composited) colours of
 * every visible text under `scope`, of the meters and of the status borders
 * under `.qw`, and of the focus ring of the focused element. Colours are
 * composited over the canvas through every ancestor's background and
 * opacity, so a dimmed or translucent layer counts as it is drawn.
 */
function probe({ scope }) {
  const parse = (text) => {
    const m = /^rgba?\(([\d.]+)[, ]+([\d.]+)[, ]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\)$/.exec(text.trim());
    if (!m) throw new Error(`unexpected computed colour ${JSON.stringify(text)}`);
    let a = m[4] === undefined ? 1 : Number.parseFloat(m[4]);
    if (m[4]?.endsWith("%")) a /= 100;
    return [Number(m[1]), Number(m[2]), Number(m[3]), a];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const mix = (from, to, t) => [0, 1, 2].map((i) => from[i] * (1 - t) + to[i] * t).concat(1);
  const canvasColour = (() => {
    const probeEl = document.createElement("div");
    probeEl.style.backgroundColor = "Canvas";
    document.documentElement.append(probeEl);
    const c = parse(getComputedStyle(probeEl).backgroundColor);
    probeEl.remove();
    return c;
  })();
  const nameOf = (el) => {
    const cls = el.className && typeof el.className === "string" ? `.${el.className.trim().split(/\s+/).join(".")}` : "";
    const id = el.id ? `#${el.id}` : "";
    return `${el.localName}${id}${cls}`;
  };
  const chainOf = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    return chain;
  };
  /**
   * The colour `leaf` (a parsed colour, possibly translucent) as drawn on
   * the last element of `chain`: every element's background (unless
   * `skipLast`) and opacity from the root down, over the canvas.
   */
  const render = (chain, leaf, skipLast = false) => {
    const walk = (i, backdrop) => {
      if (i === chain.length) return over(leaf, backdrop);
      const style = getComputedStyle(chain[i]);
      if (style.backgroundImage !== "none") {
        throw new Error(`cannot measure over the background image of ${nameOf(chain[i])}`);
      }
      const own = skipLast && i === chain.length - 1 ? [0, 0, 0, 0] : parse(style.backgroundColor);
      const inner = walk(i + 1, over(own, backdrop));
      return mix(backdrop, inner, Number.parseFloat(style.opacity));
    };
    return walk(0, canvasColour).slice(0, 3);
  };
  const transparent = [0, 0, 0, 0];
  const backgroundOf = (el) => render(chainOf(el), transparent);
  const visible = (el) => {
    if (!el.checkVisibility({ visibilityProperty: true })) return false;
    const rect = el.getBoundingClientRect();
    return rect.width > 1 && rect.height > 1; // the 1 px screen-reader-only text is not drawn
  };
  const isLarge = (style) => {
    const size = Number.parseFloat(style.fontSize);
    return size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  };
  const snippet = (text) => text.replace(/\s+/g, " ").trim().slice(0, 60);

  const root = document.querySelector(scope);
  if (!root) throw new Error(`no ${scope} on the page`);
  // The widget's parts: .qw, and its blocking reason wherever the host put it.
  const widget = document.querySelector(".qw");
  const outsideReasons = [...document.querySelectorAll(".qw-reason")].filter((r) => !widget.contains(r));
  const partsOf = (top) => [top, ...top.querySelectorAll("*")];
  const texts = [];
  const addText = (el, style, text, what) => {
    if (!text) return;
    const chain = chainOf(el);
    texts.push({
      what: `${nameOf(el)}${what} "${snippet(text)}"`,
      fg: render(chain, parse(style.color)),
      bg: render(chain, transparent),
      large: isLarge(style),
    });
  };
  const scoped = scope === ".qw" ? [root, ...outsideReasons].flatMap(partsOf) : partsOf(root);
  for (const el of scoped) {
    if (["script", "style", "option", "template"].includes(el.localName) || !visible(el)) continue;
    const style = getComputedStyle(el);
    const own = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.data).join("");
    if (el.localName === "select") addText(el, style, el.selectedOptions[0]?.textContent ?? "", "");
    else if (el.localName === "input" && el.type !== "hidden") addText(el, style, el.value, "");
    else addText(el, style, own.trim(), "");
    for (const pseudo of ["::before", "::after"]) {
      const ps = getComputedStyle(el, pseudo);
      const content = ps.content;
      if (content && content !== "none" && content !== "normal" && content !== '""') addText(el, ps, content.replace(/^"|"$/g, ""), pseudo);
    }
  }

  const meters = [...document.querySelectorAll(".qw-meter")].filter(visible).map((row) => {
    const bar = row.querySelector(".qw-meter-bar");
    const fill = row.querySelector(".qw-meter-fill");
    const barStyle = getComputedStyle(bar);
    const outside = backgroundOf(bar.parentElement);
    const bordered = ["Top", "Right", "Bottom", "Left"].every(
      (side) => Number.parseFloat(barStyle[`border${side}Width`]) >= 1 && barStyle[`border${side}Style`] !== "none",
    );
    // The track's edge: its border when it has one all round, else its own fill.
    const edge = bordered ? render(chainOf(bar), parse(barStyle.borderTopColor)) : backgroundOf(bar);
    return {
      what: `${row.querySelector(".qw-meter-label")?.textContent} (${row.className})`,
      full: row.classList.contains("qw-full"),
      outside,
      edge,
      track: backgroundOf(bar),
      fill: backgroundOf(fill),
    };
  });

  // Status marks: left borders of 2 px or more (attempt status, expiring
  // package, blocked reason, error), against what is around them.
  const marks = [widget, ...outsideReasons].flatMap(partsOf).filter(visible).flatMap((el) => {
    const style = getComputedStyle(el);
    const colour = parse(style.borderLeftColor);
    if (Number.parseFloat(style.borderLeftWidth) < 2 || style.borderLeftStyle === "none" || colour[3] === 0) return [];
    return [{
      what: `${nameOf(el)} "${snippet(el.textContent)}"`,
      style: style.borderLeftStyle,
      mark: render(chainOf(el), colour),
      outside: backgroundOf(el.parentElement),
      text: render(chainOf(el), parse(style.color)),
    }];
  });

  const focused = document.activeElement;
  let focus = null;
  if (focused && focused !== document.body) {
    const style = getComputedStyle(focused);
    focus = {
      what: nameOf(focused),
      focusVisible: focused.matches(":focus-visible"),
      outlineStyle: style.outlineStyle,
      outlineWidth: Number.parseFloat(style.outlineWidth),
      ring: style.outlineStyle === "none" ? null : render(chainOf(focused), parse(style.outlineColor), true),
      outside: backgroundOf(focused.parentElement),
    };
  }

  return { widgetBackground: backgroundOf(widget), texts, meters, marks, focus };
}

// ------------------------------------------------------------------ helpers

let server;
let browser;
let tmp;
const figures = []; // [state, scheme, variant, lowest text ratio, where, lowest meter ratio]

before(async () => {
  checkPrerequisites();
  tmp = tempDir("qw-e2e-theme-");
  browser = await launchBrowser();
});

after(async () => {
  if (figures.length) {
    console.log("lowest contrast measured (text | non-text):");
    for (const f of figures) console.log(`  ${f.join(" | ")}`);
  }
  await browser?.close().catch(() => {});
  await server?.stop();
  tmp?.remove();
});

/** Chooses a scheme the way a user (media) or a host (data-theme on <html>) does; "widget defaults" also unsets the demo's --qw-* values on the widget's host element. */
async function applyScheme(page, scheme, variant = "demo") {
  await page.emulateMedia({ colorScheme: scheme.media });
  await page.evaluate(
    ({ theme, defaults, properties }) => {
      const html = document.documentElement;
      if (theme) html.dataset.theme = theme;
      else delete html.dataset.theme;
      const host = document.querySelector("#quota-widget");
      for (const p of properties) {
        if (defaults) host.style.setProperty(p, "initial");
        else host.style.removeProperty(p);
      }
    },
    { theme: scheme.theme, defaults: variant !== "demo", properties: PUBLIC_PROPERTIES },
  );
  // Let any transition end before colours are read.
  await page.evaluate(() => Promise.all(document.getAnimations().map((a) => a.finished.catch(() => {}))));
}

/**
 * Checks the page in one state, in every scheme and both colourings: text
 * AA, the meters' track and fill at 3:1, status marks at 3:1. Collects every
 * failure before asserting, so that one run lists them all.
 */
async function checkContrast(page, state) {
  const failures = [];
  for (const variant of VARIANTS) {
    for (const scheme of SCHEMES) {
      await applyScheme(page, scheme, variant);
      const m = await page.evaluate(probe, { scope: variant === "demo" ? "body" : ".qw" });
      const where = `${state}, ${scheme.name}, ${variant}`;

      // The scheme really applied: a dark widget is dark, a light one light.
      const lum = luminance(m.widgetBackground);
      if (scheme.dark ? lum > 0.05 : lum < 0.7) {
        failures.push(`${where}: widget background ${hex(m.widgetBackground)} is not ${scheme.dark ? "dark" : "light"}`);
      }
      assert.ok(m.texts.length >= 5, `${where}: found only ${m.texts.length} texts`);

      let lowest = { ratio: Infinity };
      for (const t of m.texts) {
        const ratio = contrast(t.fg, t.bg);
        const need = t.large ? LARGE_TEXT_AA : TEXT_AA;
        if (ratio < need) failures.push(`${where}: ${t.what} ${hex(t.fg)} on ${hex(t.bg)} is ${fixed(ratio)}:1, needs ${need}:1`);
        if (ratio < lowest.ratio) lowest = { ratio, what: t.what };
      }

      let lowestNonText = Infinity;
      assert.ok(m.meters.length >= 1, `${where}: no meter on the page`);
      for (const meter of m.meters) {
        const edge = contrast(meter.edge, meter.outside);
        const fill = contrast(meter.fill, meter.track);
        lowestNonText = Math.min(lowestNonText, edge, fill);
        if (edge < NON_TEXT) failures.push(`${where}: meter ${meter.what}: track edge ${hex(meter.edge)} on ${hex(meter.outside)} is ${fixed(edge)}:1`);
        if (fill < NON_TEXT) failures.push(`${where}: meter ${meter.what}: fill ${hex(meter.fill)} on track ${hex(meter.track)} is ${fixed(fill)}:1`);
      }
      for (const mark of m.marks) {
        const ratio = contrast(mark.mark, mark.outside);
        lowestNonText = Math.min(lowestNonText, ratio);
        if (ratio < NON_TEXT) failures.push(`${where}: mark of ${mark.what} ${hex(mark.mark)} on ${hex(mark.outside)} is ${fixed(ratio)}:1`);
      }
      figures.push([state, scheme.name, variant, fixed(lowest.ratio), lowest.what, fixed(lowestNonText)]);
    }
  }
  await applyScheme(page, SCHEMES[0]);
  assert.deepEqual(failures, [], `contrast failures in state "${state}":\n  ${failures.join("\n  ")}`);
}

/** The widget's colours that tell states apart, in the current scheme. */
async function meaningColours(page) {
  const m = await page.evaluate(probe, { scope: ".qw" });
  const markOf = (pattern) => m.marks.find((x) => pattern.test(x.what));
  return {
    busy: m.meters.find((x) => x.full)?.fill,
    accent: m.meters.find((x) => !x.full)?.fill,
    expiring: markOf(/qw-expiring/)?.mark,
    blocked: markOf(/qw-reason/)?.mark,
    failed: markOf(/failed, not charged/)?.mark,
    failedMark: markOf(/failed, not charged/),
  };
}

async function stopServer(srv) {
  if (srv) await srv.stop("SIGKILL");
}

async function screenshotDocs(page, name) {
  mkdirSync(DOCS, { recursive: true });
  await page.mouse.move(1, 1);
  await page.evaluate(() => Promise.all(document.getAnimations().map((a) => a.finished.catch(() => {}))));
  await page.screenshot({ path: join(DOCS, name), fullPage: true });
}

async function runningTasks(token) {
  return (await apiOk(server, "GET", "/api/state", { token })).running;
}

// -------------------------------------------------------------------- tests

describe("quota-widget themes: light and dark", () => {
  test("every public --qw-* property is documented with its defaults", () => {
    assert.ok(PUBLIC_PROPERTIES.length >= 8, `found ${PUBLIC_PROPERTIES.join(", ")}`);
    const doc = readFileSync(THEMING_DOC, "utf8");
    for (const property of PUBLIC_PROPERTIES) {
      const row = doc.split("\n").find((line) => line.startsWith(`| \`${property}\``));
      assert.ok(row, `docs/theming.md has a table row for ${property}`);
      // The defaults as the stylesheet writes them: a light and a dark one
      // through the scheme switches, or one for both.
      const declaration = new RegExp(`var\\(${property},\\s*([^;]+)\\);`).exec(STYLESHEET);
      assert.ok(declaration, `the stylesheet declares the default of ${property}`);
      const pair = /var\(--_qw-dark,\s*([^)]+)\)\s*var\(--_qw-light,\s*([^)]+)\)/.exec(declaration[1]);
      const defaults = pair ? [pair[1], pair[2]] : [declaration[1]];
      for (const value of defaults) {
        assert.ok(row.includes(`\`${value.trim()}\``), `docs/theming.md gives ${property} its default ${value} (row: ${row})`);
      }
    }
  });

  test("busy, failed, pending, expiring, reconnecting: AA in both schemes, distinct meanings, screenshots", { timeout: 180_000 }, async () => {
    server = await startServer({ db: join(tmp.dir, "theme.sqlite3") });
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    const page = await context.newPage();
    await signIn(page, server, token);
    await page.locator("#prompt").evaluate((e) => e.blur());

    // Idle: the demo account has an expiring package and a pending one.
    await checkContrast(page, "idle");
    for (const variant of VARIANTS) {
      for (const scheme of SCHEMES) {
        await applyScheme(page, scheme, variant);
        const pending = await page.evaluate(() => {
          // By its status attribute where the widget writes one, else by its words.
          const row = [...document.querySelectorAll(".qw-package")].find(
            (r) => r.dataset.status === "pending" || r.querySelector(".qw-package-status")?.textContent.includes("starts"),
          );
          return row && [row, ...row.querySelectorAll("*")].map((e) => getComputedStyle(e).textDecorationLine);
        });
        assert.ok(pending, "the pending package is listed");
        assert.ok(
          pending.every((line) => !line.includes("line-through")),
          `${scheme.name}, ${variant}: a pending package reads as scheduled, not struck through (${pending})`,
        );
      }
    }
    await applyScheme(page, SCHEMES[0]);

    // Busy: every image slot held.
    for (let i = 1; i <= 4; i += 1) await submitAndWaitRunning(page, server, token, i);
    await page.waitForFunction(() => document.querySelector(".qw-meter.qw-full .qw-meter-text")?.textContent === "4 of 4 in use");
    await waitForButton(page, false);
    await checkContrast(page, "busy");

    // Failed attempt: one task fails (3 of 4 in use, "failed, not charged").
    const [first] = await runningTasks(token);
    await apiOk(server, "POST", `/api/dev/tasks/${first.id}/fail`, { token, body: { reason: "content moderation" } });
    await page.waitForFunction(() =>
      [...document.querySelectorAll(".qw-attempt")].some((e) => e.textContent.includes("failed, not charged")),
    );
    await checkContrast(page, "failed attempt");

    // Busy again, with the failed attempt in the list: the screenshots' state.
    await submitAndWaitRunning(page, server, token, 4);
    await page.waitForFunction(() => document.querySelector(".qw-meter.qw-full"));
    await waitForButton(page, false);
    await checkContrast(page, "busy with a failed attempt");

    // Busy, expiring and blocked each have their own colour, in every
    // scheme and colouring, and differ from the meter's ordinary fill; a
    // failed attempt uses none of the alarm colours and a plain border.
    for (const variant of VARIANTS) {
      for (const scheme of SCHEMES) {
        await applyScheme(page, scheme, variant);
        const c = await meaningColours(page);
        const where = `${scheme.name}, ${variant}`;
        for (const key of ["busy", "accent", "expiring", "blocked", "failed"]) assert.ok(c[key], `${where}: found the ${key} colour`);
        const pairs = [["busy", "expiring"], ["busy", "blocked"], ["expiring", "blocked"], ["busy", "accent"], ["failed", "blocked"], ["failed", "busy"], ["failed", "expiring"]];
        for (const [a, b] of pairs) {
          const d = deltaE(c[a], c[b]);
          assert.ok(d >= 20, `${where}: ${a} ${hex(c[a])} and ${b} ${hex(c[b])} must read as different colours (ΔE ${d.toFixed(1)})`);
        }
        assert.equal(c.failedMark.style, "solid", `${where}: a failed attempt's border is plain, not ${c.failedMark.style}`);
        const failedText = deltaE(c.failedMark.text, c.blocked);
        assert.ok(failedText >= 20, `${where}: a failed attempt's text is not in the alarm colour (ΔE ${failedText.toFixed(1)})`);
      }
    }

    await applyScheme(page, SCHEMES[0]);
    await screenshotDocs(page, "theme-light.png");
    await applyScheme(page, SCHEMES[1]);
    await screenshotDocs(page, "theme-dark.png");
    await applyScheme(page, SCHEMES[0]);

    // Link down: the server dies; the last figures stay, greyed, and keep
    // their contrast.
    await stopServer(server);
    server = null;
    await page.waitForFunction(() => (document.querySelector(".qw-freshness")?.textContent ?? "").startsWith("Reconnecting"));
    await page.waitForFunction(() => document.querySelector(".qw.qw-stale"));
    await checkContrast(page, "reconnecting");

    await context.close();
  });

  test("low units, blocked by units, an expired package, an error: AA in both schemes", { timeout: 120_000 }, async () => {
    const own = tempDir("qw-e2e-theme-low-");
    const srv = await startServer({ db: join(own.dir, "low.sqlite3") });
    const context = await newContext(browser);
    try {
      const day = 86_400_000;
      const { token } = await createAccount(srv, {
        packages: [
          { name: "Trial", total: 10, effective_in_ms: -60_000, expires_in_ms: 20 * day },
          { name: "Last year", total: 100, effective_in_ms: -400 * day, expires_in_ms: -30 * day },
        ],
      });
      const page = await context.newPage();
      await signIn(page, srv, token);
      await page.locator("#prompt").evaluate((e) => e.blur());
      await page.waitForFunction(() => document.querySelector(".qw.qw-low"));
      await page.locator("#count").selectOption("3");
      await page.waitForFunction(() => document.querySelector(".qw-reason")?.textContent.startsWith("Not enough units"));
      await checkContrast(page, "low units, blocked by units");

      // A dashboard may put the reason next to its button, outside the
      // widget: it keeps its look and its contrast there.
      const look = () => page.evaluate(() => {
        const s = getComputedStyle(document.querySelector(".qw-reason"));
        return [s.borderLeftColor, s.borderLeftWidth, s.color, s.fontWeight];
      });
      const inside = await look();
      await page.evaluate(() => document.querySelector("#generate").after(document.querySelector(".qw-reason")));
      assert.deepEqual(await look(), inside, "the reason looks the same next to the button");
      await checkContrast(page, "blocked by units, the reason next to the button");

      await apiOk(srv, "POST", "/api/dev/raw-event", { token, body: '{"revision": "oops"' });
      await page.locator(".qw-error").waitFor({ state: "visible" });
      await checkContrast(page, "error shown");
    } finally {
      await context.close();
      await srv.stop();
      own.remove();
    }
  });

  test("the nearest data-theme or class wins, and a host's --qw-* value wins over both schemes", { timeout: 60_000 }, async () => {
    const own = tempDir("qw-e2e-theme-switch-");
    const srv = await startServer({ db: join(own.dir, "switch.sqlite3") });
    const context = await newContext(browser);
    try {
      const { token } = await createAccount(srv);
      const page = await context.newPage();
      await signIn(page, srv, token);
      const colours = () =>
        page.evaluate(() => {
          const pick = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
          return [
            pick(".qw", "backgroundColor"),
            pick(".qw", "color"),
            pick(".qw-freshness", "color"),
            pick(".qw-meter-fill", "backgroundColor"),
            pick(".qw-meter-bar", "backgroundColor"),
            pick(".qw-package.qw-expiring .qw-package-status", "color"),
          ];
        });
      /** Sets the scheme inputs from scratch: media, data-theme and classes per element. */
      const set = async (media, marks) => {
        await page.emulateMedia({ colorScheme: media });
        await page.evaluate(({ marks, properties }) => {
          for (const el of [document.documentElement, document.body, document.querySelector("#quota-widget")]) {
            delete el.dataset.theme;
            el.classList.remove("qw-light", "qw-dark");
          }
          const host = document.querySelector("#quota-widget");
          // The widget's own defaults: the demo's --qw-* values unset.
          for (const p of properties) host.style.setProperty(p, "initial");
          for (const [sel, how] of marks) {
            const el = document.querySelector(sel);
            if (how.startsWith("qw-")) el.classList.add(how);
            else el.dataset.theme = how;
          }
        }, { marks, properties: PUBLIC_PROPERTIES });
      };

      await set("light", []);
      const light = await colours();
      await set("dark", []);
      const dark = await colours();
      for (let i = 0; i < light.length; i += 1) assert.notEqual(light[i], dark[i], `colour ${i} differs between the schemes`);

      const cases = [
        ["dark", [["#quota-widget", "light"]], light, "data-theme=light on the host element, dark system"],
        ["dark", [["body", "light"]], light, "data-theme=light on body, dark system"],
        ["dark", [["html", "light"]], light, "data-theme=light on html, dark system"],
        ["light", [["html", "dark"]], dark, "data-theme=dark on html, light system"],
        ["light", [["html", "dark"], ["#quota-widget", "light"]], light, "html dark, the host element light: the nearest wins"],
        ["dark", [["html", "light"], ["body", "dark"]], dark, "html light, body dark: the nearest wins"],
        ["light", [["body", "qw-dark"]], dark, "class qw-dark on body"],
        ["dark", [["#quota-widget", "qw-light"]], light, "class qw-light on the host element"],
      ];
      for (const [media, marks, want, what] of cases) {
        await set(media, marks);
        assert.deepEqual(await colours(), want, what);
      }

      // A host's value wins in both schemes, set on the host element or on :root.
      for (const media of ["light", "dark"]) {
        await set(media, []);
        const got = await page.evaluate(() => {
          const host = document.querySelector("#quota-widget");
          host.style.setProperty("--qw-fg", "rgb(1, 2, 3)");
          document.documentElement.style.setProperty("--qw-busy", "rgb(4, 5, 6)");
          host.style.removeProperty("--qw-busy");
          const el = document.querySelector(".qw");
          const probeEl = document.createElement("span");
          el.append(probeEl);
          probeEl.classList.add("qw-meter", "qw-full");
          const fill = document.createElement("span");
          fill.className = "qw-meter-fill";
          probeEl.append(fill);
          const result = [getComputedStyle(el).color, getComputedStyle(fill).backgroundColor];
          probeEl.remove();
          host.style.removeProperty("--qw-fg");
          document.documentElement.style.removeProperty("--qw-busy");
          return result;
        });
        assert.deepEqual(got, ["rgb(1, 2, 3)", "rgb(4, 5, 6)"], `${media}: the host's --qw-fg and --qw-busy win`);
      }

      // The demo's own picker sets data-theme on <html> for page and widget.
      await set("light", []);
      await page.evaluate(() => document.querySelector("#quota-widget").removeAttribute("style"));
      await page.locator("#theme").selectOption("dark");
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
      const pageBg = await page.evaluate(() => getComputedStyle(document.body.parentElement).backgroundColor);
      const widgetBg = await page.evaluate(() => getComputedStyle(document.querySelector(".qw")).backgroundColor);
      for (const bg of [pageBg, widgetBg]) {
        const rgb = bg.match(/\d+/g).slice(0, 3).map(Number);
        assert.ok(luminance(rgb) < 0.05, `the picker's dark theme darkens the page and the widget (${bg})`);
      }
      await context.close();
    } finally {
      await context.close().catch(() => {});
      await srv.stop();
      own.remove();
    }
  });

  test("keyboard focus is visible at 3:1, and reduced motion stops every transition", { timeout: 60_000 }, async () => {
    const own = tempDir("qw-e2e-theme-focus-");
    const srv = await startServer({ db: join(own.dir, "focus.sqlite3") });
    const context = await newContext(browser);
    try {
      const { token } = await createAccount(srv);
      const page = await context.newPage();
      await signIn(page, srv, token);
      await waitForButton(page, true);
      const failures = [];
      for (const variant of VARIANTS) {
        for (const scheme of SCHEMES) {
          await applyScheme(page, scheme, variant);
          // Tab from the prompt to Generate, then on into the widget, where
          // a host made the headline focusable (the widget has no control of
          // its own; its stylesheet draws the ring for any that a host adds).
          await page.evaluate(() => document.querySelector(".qw-remaining").setAttribute("tabindex", "0"));
          await page.locator("#prompt").focus();
          for (const target of ["#generate", ".qw-remaining"]) {
            await page.keyboard.press("Tab");
            const m = await page.evaluate(probe, { scope: ".qw" });
            const where = `${scheme.name}, ${variant}, ${target}`;
            const f = m.focus;
            assert.ok(f, `${where}: something has focus`);
            assert.equal(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), target), true, `${where}: Tab reached ${target} (focus on ${f.what})`);
            if (!f.focusVisible || f.outlineStyle === "none" || f.outlineWidth < 2) {
              failures.push(`${where}: no visible focus ring (${f.outlineStyle} ${f.outlineWidth}px)`);
              continue;
            }
            const ratio = contrast(f.ring, f.outside);
            figures.push(["focus ring", scheme.name, variant, fixed(ratio), target, ""]);
            if (ratio < NON_TEXT) failures.push(`${where}: ring ${hex(f.ring)} on ${hex(f.outside)} is ${fixed(ratio)}:1`);
          }
          await page.evaluate(() => document.querySelector(".qw-remaining").removeAttribute("tabindex"));
        }
      }
      assert.deepEqual(failures, [], failures.join("\n"));

      // Reduced motion: no element of the widget, nor a ::before or
      // ::after of one, keeps a transition or an animation that lasts.
      const moving = () =>
        page.evaluate(() => {
          const seconds = (list) => Math.max(...list.split(",").map((t) => Number.parseFloat(t) * (t.trim().endsWith("ms") ? 0.001 : 1)));
          const found = [];
          for (const el of [document.querySelector(".qw"), ...document.querySelectorAll(".qw *")]) {
            for (const pseudo of [null, "::before", "::after"]) {
              const s = getComputedStyle(el, pseudo);
              const transition = s.transitionProperty !== "none" ? seconds(s.transitionDuration) + Math.max(0, seconds(s.transitionDelay)) : 0;
              const animation = s.animationName !== "none" ? seconds(s.animationDuration) : 0;
              if (transition > 0 || animation > 0) found.push(`${el.className}${pseudo ?? ""}: transition ${transition}s, animation ${animation}s`);
            }
          }
          return found;
        });
      await page.emulateMedia({ reducedMotion: "no-preference" });
      const normal = await moving();
      // The check can see motion: the meter's fill moves when motion is welcome.
      assert.ok(normal.some((s) => s.startsWith("qw-meter-fill")), `the meter's fill has a transition normally (${normal})`);
      await page.emulateMedia({ reducedMotion: "reduce" });
      assert.deepEqual(await moving(), [], "nothing in the widget moves under prefers-reduced-motion: reduce");
    } finally {
      await context.close();
      await srv.stop();
      own.remove();
    }
  });
});
