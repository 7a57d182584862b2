// A plain-JavaScript implementation of the widget's view, written the way a
// careful developer would write it by hand, and made as fast as we could
// (profiled in headless Chromium like the widget): the same DOM as the
// widget (structure, classes, texts, attributes, roles; `bench.mjs` checks
// it node for node), the same rules for the gate, the same checks of a
// state before it is believed, keyed rows, each text and attribute written
// only when its own value moved, numbers, dates and times formatted with
// `Intl` once per value, and no layout read. It is the yardstick of
// `scripts/bench`, not part of the package.
//
// It reads a server state object (docs/wire.md) and renders into `host` with
// the package's class names, so the same stylesheet applies to both. What it
// leaves out, because the benchmark never uses it: submits and their holds,
// live connections, and message tables other than English.

const DAY_MS = 86_400_000;
const EXPIRING_SOON_MS = 7 * DAY_MS;
const LOW_MILLI = 20_000; // 20 units, in thousandths
const STALE_AFTER_MS = 30_000;
const MAX_ATTEMPTS = 8;
const MAX_TEXT = 200; // UTF-8 bytes
const MAX_ITEMS = 500;
const CACHE = 512; // formatted values kept per formatter

let nextUid = 0;

// "image" -> "Image", ASCII only, as the widget does.
function title(kind) {
  const c = kind.charCodeAt(0);
  return c >= 97 && c <= 122 ? String.fromCharCode(c - 32) + kind.slice(1) : kind;
}

// Units are carried in thousandths (the wire's precision), as integers, so
// sums are exact.
function milli(x) {
  const m = Math.round(x * 1000);
  return m / 1000 === x && m >= 0 ? m : -1;
}

function el(tag, className) {
  const e = document.createElement(tag);
  e.className = className;
  return e;
}

/** An `Intl` formatter whose answers are kept per value. */
function cached(format) {
  const seen = new Map();
  return (x) => {
    let s = seen.get(x);
    if (s === undefined) {
      if (seen.size >= CACHE) seen.clear();
      s = format(x);
      seen.set(x, s);
    }
    return s;
  };
}

function utf8Over(s, max) {
  if (s.length * 3 <= max) return false;
  if (s.length > max) return true;
  return new TextEncoder().encode(s).length > max;
}

class Invalid extends Error {}
const fail = (message) => {
  throw new Invalid(message);
};
const text = (what, s) => {
  if (typeof s !== "string") fail(`malformed quota state: ${what} must be a string`);
  if (utf8Over(s, MAX_TEXT)) fail(`quota state has a ${what} over ${MAX_TEXT} bytes`);
};
const whole = (what, x) => {
  if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) fail(`malformed quota state: ${what} must be a whole number of 0 or more`);
};
const time = (what, x) => {
  if (typeof x !== "number" || !Number.isSafeInteger(x)) fail(`malformed quota state: ${what} must be a whole number`);
};
const units = (what, x) => {
  if (typeof x !== "number" || milli(x) < 0) fail(`malformed quota state: ${what} must be an amount of units`);
};
const list = (what, x) => {
  if (!Array.isArray(x)) fail(`malformed quota state: ${what} must be a list`);
  if (x.length > MAX_ITEMS) fail(`quota state has over ${MAX_ITEMS} ${what}`);
};
const OUTCOMES = ["succeeded", "failed", "refused"];
const STATUSES = ["pending", "active", "expired", "exhausted"];

/** The checks the widget makes before it believes a state (src/core/parse.rs, validate.rs). */
function check(s) {
  if (s === null || typeof s !== "object") fail("malformed quota state: the state must be an object");
  whole("revision", s.revision);
  time("server_time_ms", s.server_time_ms);
  if (s.packages_synced_at_ms != null) time("packages_synced_at_ms", s.packages_synced_at_ms);
  const { pools, packages, running, finished } = s;
  list("pools", pools);
  list("packages", packages);
  list("running tasks", running);
  list("finished tasks", finished);
  for (let i = 0; i < pools.length; i++) {
    const p = pools[i];
    text("kind", p.kind);
    whole("limit", p.limit);
    whole("in_use", p.in_use);
    units("unit_cost", p.unit_cost);
    if (p.slot_rule !== "per_item" && p.slot_rule !== "per_task") fail("malformed quota state: slot_rule must be per_item or per_task");
    for (let j = 0; j < i; j++) if (pools[j].kind === p.kind) fail(`quota state lists the slot pool "${p.kind}" twice`);
  }
  for (let i = 0; i < packages.length; i++) {
    const p = packages[i];
    text("package id", p.id);
    text("package name", p.name);
    units("total", p.total);
    units("remaining", p.remaining);
    time("effective_at_ms", p.effective_at_ms);
    time("expires_at_ms", p.expires_at_ms);
    if (!STATUSES.includes(p.status)) fail("malformed quota state: status must be a package status");
    if (p.remaining > p.total) fail(`package "${p.id}" has ${p.remaining} units remaining of a total of ${p.total}`);
  }
  // Duplicate ids: a quadratic scan while the list is short, as the widget does.
  if (packages.length <= 32) {
    for (let i = 1; i < packages.length; i++) {
      const id = packages[i].id;
      for (let j = 0; j < i; j++) if (packages[j].id === id) fail(`quota state lists the package "${id}" twice`);
    }
  } else {
    const ids = new Set();
    for (const p of packages) {
      if (ids.has(p.id)) fail(`quota state lists the package "${p.id}" twice`);
      ids.add(p.id);
    }
  }
  for (const t of running) {
    text("task id", t.id);
    if (t.client_request_id != null) text("client request id", t.client_request_id);
    whole("slots", t.slots);
    units("reserved_units", t.reserved_units);
    time("started_at_ms", t.started_at_ms);
    let known = false;
    for (let j = 0; j < pools.length && !known; j++) known = pools[j].kind === t.kind;
    if (!known) fail(`task "${t.id}" is of kind "${t.kind}", which has no slot pool`);
  }
  for (const t of finished) {
    text("task id", t.id);
    text("kind", t.kind);
    if (t.client_request_id != null) text("client request id", t.client_request_id);
    if (t.reason != null) text("reason", t.reason);
    whole("slots", t.slots);
    units("units_charged", t.units_charged);
    time("finished_at_ms", t.finished_at_ms);
    if (!OUTCOMES.includes(t.outcome)) fail("malformed quota state: outcome must be succeeded, failed or refused");
    if (t.outcome !== "succeeded" && t.units_charged !== 0) fail(`task "${t.id}" did not succeed but is reported as charged ${t.units_charged} units`);
  }
}

export class ReferenceView {
  constructor({ host, button, locale, kind = "image", count = 1 }) {
    this.kind = kind;
    this.count = count;
    const nf = new Intl.NumberFormat(locale);
    const df = new Intl.DateTimeFormat(locale, { dateStyle: "medium" });
    const tf = new Intl.DateTimeFormat(locale, { timeStyle: "short" });
    const plurals = new Intl.PluralRules(locale);
    this.n = cached((x) => nf.format(x));
    this.u = cached((m) => nf.format(m / 1000)); // units, from thousandths
    this.date = cached((ms) => df.format(ms));
    this.time = cached((ms) => tf.format(ms));
    this.one = cached((x) => plurals.select(x) === "one");

    this.state = null;
    this.confirmedAt = 0;
    this.error = "";
    const uid = `ref${++nextUid}`;
    this.uid = uid;
    this.meterIds = 0;

    const root = (this.root = el("section", "qw"));
    root.setAttribute("aria-label", "Generation quota");
    const unitsBox = el("div", "qw-units");
    this.remaining = unitsBox.appendChild(el("p", "qw-remaining"));
    this.detail = unitsBox.appendChild(el("p", "qw-units-detail"));
    this.meters = el("div", "qw-meters");
    this.cost = el("p", "qw-cost");
    this.reason = el("p", "qw-reason");
    this.reason.id = `${uid}-reason`;
    this.errorEl = el("p", "qw-error");
    this.errorEl.setAttribute("role", "alert");
    this.errorEl.setAttribute("hidden", "");
    const packagesBox = el("div", "qw-packages-box");
    packagesBox.appendChild(el("h3", "qw-heading")).textContent = "Packages";
    this.packages = packagesBox.appendChild(el("ul", "qw-packages"));
    this.packages.setAttribute("aria-label", "Packages");
    const attemptsBox = el("div", "qw-attempts-box");
    attemptsBox.appendChild(el("h3", "qw-heading")).textContent = "Recent attempts";
    this.attempts = attemptsBox.appendChild(el("ul", "qw-attempts"));
    this.attempts.setAttribute("aria-label", "Recent attempts");
    this.freshness = el("p", "qw-freshness");
    this.live = el("div", "qw-sr-only qw-live");
    this.live.setAttribute("aria-live", "polite");
    this.live.setAttribute("role", "status");
    root.append(unitsBox, this.meters, this.cost, this.reason, this.errorEl, packagesBox, attemptsBox, this.freshness, this.live);
    host.appendChild(root);

    // What is on the page, field by field; `undefined` until first written.
    this.shown = {};
    this.meterRows = [];
    this.packageRows = [];
    this.attemptRows = [];
    // Finished task ids of the state shown, for the announcements.
    this.finishedIds = [];
    this.reasonKey = undefined;

    this.button = button;
    this.saved = button && { disabled: button.getAttribute("aria-disabled"), describedBy: button.getAttribute("aria-describedby") };
    this.paint();
    this.ticker = setInterval(() => this.paint(), 1000);
  }

  destroy() {
    clearInterval(this.ticker);
    this.root.remove();
    this.reason.remove();
    if (this.button) {
      restore(this.button, "aria-disabled", this.saved.disabled);
      restore(this.button, "aria-describedby", this.saved.describedBy);
    }
  }

  /**
   * Takes a state (an object, or JSON text); an older revision than the one
   * shown is ignored. A state that fails the checks throws, and the last
   * good one stays, with the error shown.
   */
  update(input) {
    let s;
    try {
      s = typeof input === "string" ? JSON.parse(input) : input;
      check(s);
    } catch (e) {
      this.error = e instanceof Invalid ? e.message : `malformed quota state: ${e.message}`;
      this.paint();
      throw new Error(this.error);
    }
    this.error = "";
    const cur = this.state;
    const now = Date.now();
    if (cur === null || s.revision > cur.revision) {
      if (cur !== null) this.announce(cur, s);
      this.state = s;
      this.confirmedAt = now;
    } else if (s.revision === cur.revision) {
      this.confirmedAt = now;
    }
    this.paint(now);
  }

  /** What changed that a screen reader should hear (the widget's announcements). */
  announce(before, next) {
    let said = null;
    const t0 = before.server_time_ms;
    for (const p of next.pools) {
      let was;
      for (const q of before.pools) if (q.kind === p.kind) was = Math.max(0, q.limit - q.in_use);
      const free = Math.max(0, p.limit - p.in_use);
      if (was === 0 && free > 0) said = `${title(p.kind)} slot free: ${this.n(free)} of ${this.n(p.limit)} available.`;
    }
    const wasAvailable = available(before, t0);
    const nowAvailable = available(next, next.server_time_ms);
    if (wasAvailable >= LOW_MILLI && nowAvailable < LOW_MILLI) said = `Units are low: ${this.u(nowAvailable)} can be spent.`;
    const ids = this.finishedIds;
    const fin = next.finished;
    const nextIds = ids.length === fin.length ? ids : new Array(fin.length);
    let all = null;
    for (let i = 0; i < fin.length; i++) {
      const t = fin[i];
      // Lists mostly keep their order: the same place first.
      if (ids[i] !== t.id) {
        all ??= new Set(before.finished.map((b) => b.id));
        if (!all.has(t.id)) {
          said = t.outcome === "succeeded" ? `Generation done: ${this.u(milli(t.units_charged))} units charged.`
            : t.outcome === "failed" ? "Generation failed. No units were charged." : "Request refused. No units were charged.";
        }
      }
      nextIds[i] = t.id;
    }
    this.finishedIds = nextIds;
    if (said !== null) this.live.textContent = said;
  }

  /** Writes what moved since the last paint. */
  paint(now = Date.now()) {
    const s = this.state;
    const shown = this.shown;
    const root = this.root;

    // Units.
    let remaining = -1;
    let reserved = 0;
    if (s !== null) {
      const t = s.server_time_ms;
      remaining = 0;
      for (const p of s.packages) if (p.status === "active" && p.effective_at_ms <= t && t < p.expires_at_ms) remaining += milli(p.remaining);
      for (const r of s.running) reserved += milli(r.reserved_units);
    }
    const avail = Math.max(0, remaining - reserved);
    if (shown.remaining !== remaining) {
      shown.remaining = remaining;
      this.remaining.textContent =
        remaining < 0 ? "—" : `${this.u(remaining)} ${this.one(remaining / 1000) ? "unit" : "units"} remaining`;
    }
    const held = remaining < 0 ? 0 : reserved;
    if (shown.held !== held || (held > 0 && shown.avail !== avail)) {
      const detail = held > 0 ? `Running tasks hold ${this.u(held)} · ${this.u(avail)} can be spent now` : "";
      if (shown.detail !== detail) {
        this.detail.textContent = detail;
        if (shown.detail === undefined || (shown.detail === "") !== (detail === "")) this.detail.toggleAttribute("hidden", detail === "");
        shown.detail = detail;
      }
      shown.held = held;
    }
    shown.avail = avail;
    const low = remaining >= 0 && avail < LOW_MILLI;
    if (shown.low !== low) root.classList.toggle("qw-low", (shown.low = low));

    // The gate (R1, R2, R5) and the cost preview.
    const age = s === null ? 0 : Math.max(0, now - this.confirmedAt);
    let pool = null;
    if (s !== null) for (const p of s.pools) if (p.kind === this.kind) pool = p;
    let blocked; // a key for the reason: its kind and figures
    let slots = 0;
    let cost = 0;
    if (pool !== null) {
      slots = pool.slot_rule === "per_item" ? this.count : this.count > 0 ? 1 : 0;
      cost = milli(pool.unit_cost) * this.count;
    }
    if (s === null) blocked = "none";
    else if (age > STALE_AFTER_MS) blocked = `stale ${Math.floor(age / 1000)}`;
    else if (this.count === 0) blocked = "empty";
    else if (pool === null) blocked = "kind";
    else if (pool.limit - pool.in_use < slots) blocked = `slots ${Math.max(0, pool.limit - pool.in_use)} ${slots} ${pool.limit}`;
    else if (avail < cost) blocked = `units ${avail} ${cost}`;
    else blocked = "";
    if (this.reasonKey !== blocked) {
      this.reasonKey = blocked;
      this.reason.textContent = this.reasonText(blocked, pool, slots, cost, avail, age);
    }
    const enabled = blocked === "";
    if (shown.enabled !== enabled) {
      root.classList.toggle("qw-blocked", !enabled);
      this.gate(enabled);
      shown.enabled = enabled;
    }
    const estimate = s !== null && s.packages_synced_at_ms != null;
    if (pool === null) {
      if (shown.cost !== "") this.cost.textContent = shown.cost = "";
      shown.costKey = undefined;
    } else if (shown.costKey !== cost || shown.costAvail !== avail || shown.costEach !== pool.unit_cost || shown.costEstimate !== estimate) {
      shown.costKey = cost;
      shown.costAvail = avail;
      shown.costEach = pool.unit_cost;
      shown.costEstimate = estimate;
      const head = `This request: ${this.u(cost)} ${this.one(cost / 1000) ? "unit" : "units"} · ${this.u(milli(pool.unit_cost))} per ${this.kind}`;
      let text = avail >= cost ? `${head} · ${this.u(avail - cost)} left after` : `${head} · more than the ${this.u(avail)} that can be spent`;
      if (estimate) text = `${text} · an estimate: the final charge can differ`;
      if (shown.cost !== text) this.cost.textContent = shown.cost = text;
    }

    if (shown.error !== this.error) {
      const e = this.error;
      this.errorEl.textContent = e === "" ? "" : s !== null
        ? `Could not use the latest quota update: ${e}. Showing the last good figures.`
        : `Could not use the quota update from the server: ${e}.`;
      if (shown.error === undefined || (shown.error === "") !== (e === "")) this.errorEl.toggleAttribute("hidden", e === "");
      shown.error = e;
    }

    // Freshness: "Updated 3 s ago", whole seconds.
    const ageS = s === null ? -1 : Math.floor(age / 1000);
    const synced = s !== null && s.packages_synced_at_ms != null;
    if (shown.ageS !== ageS || synced || shown.synced) {
      shown.ageS = ageS;
      let line = s === null ? "Waiting for the first figures…" : `Updated ${this.ago(ageS)}`;
      if (s !== null && s.packages_synced_at_ms != null) {
        const packagesAge = Math.max(0, s.server_time_ms - s.packages_synced_at_ms) + age;
        line = `${line} · package figures from the service, ${this.ago(Math.floor(packagesAge / 1000))}`;
      }
      shown.synced = synced;
      if (shown.fresh !== line) this.freshness.textContent = shown.fresh = line;
    }
    const revision = s === null ? "" : String(s.revision);
    if (shown.revision !== revision) this.freshness.setAttribute("data-revision", (shown.revision = revision));
    const stale = s === null || age > STALE_AFTER_MS;
    if (shown.stale !== stale) root.classList.toggle("qw-stale", (shown.stale = stale));

    if (s === null) return;
    this.paintMeters(s.pools);
    this.paintPackages(s.packages, s.server_time_ms);
    this.paintAttempts(s.running, s.finished);
  }

  ago(seconds) {
    if (seconds < 60) return `${this.n(seconds)} s ago`;
    if (seconds < 3600) return `${this.n(Math.floor(seconds / 60))} min ago`;
    return `${this.n(Math.floor(seconds / 3600))} h ago`;
  }

  reasonText(blocked, pool, slots, cost, avail, age) {
    if (blocked === "") return "";
    if (blocked === "none") return "Waiting for the quota figures from the server.";
    if (blocked === "empty") return "Choose how many items to generate.";
    if (blocked === "kind") return `This account has no "${this.kind}" generation slots.`;
    const kind = this.kind;
    switch (blocked.slice(0, 5)) {
      case "stale": return `Quota figures are out of date (updated ${this.ago(Math.floor(age / 1000))}).`;
      case "slots":
        return slots > pool.limit
          ? `This request needs ${this.n(slots)} ${kind} slots; the limit is ${this.n(pool.limit)}.`
          : `All ${kind} slots are busy: ${this.n(Math.max(0, pool.limit - pool.in_use))} of ${this.n(pool.limit)} free, this request needs ${this.n(slots)}.`;
      default: return `Not enough units: this request uses ${this.u(cost)}, ${this.u(avail)} can be spent.`;
    }
  }

  /** The button: `aria-disabled` and the reason tied to it while blocked, its own attributes back when not. */
  gate(enabled) {
    const b = this.button;
    if (!b) return;
    const id = this.reason.id;
    if (enabled) restore(b, "aria-disabled", this.saved.disabled);
    else b.setAttribute("aria-disabled", "true");
    const own = (this.saved.describedBy ?? "").split(/\s+/).filter((t) => t && t !== id);
    if (!enabled) own.push(id);
    if (own.length) b.setAttribute("aria-describedby", own.join(" "));
    else b.removeAttribute("aria-describedby");
  }

  paintMeters(pools) {
    const rows = reconcile(this.meterRows, this.meters, pools, (p) => p.kind, () => this.meterRow());
    for (let i = 0; i < pools.length; i++) {
      const p = pools[i];
      const row = rows[i];
      if (row.inUse === p.in_use && row.limit === p.limit && row.kind === p.kind) continue;
      if (row.kind !== p.kind) {
        row.kind = p.kind;
        row.label.textContent = `${title(p.kind)} generation slots`;
      }
      const value = Math.min(p.in_use, p.limit);
      if (row.limit !== p.limit) row.bar.setAttribute("aria-valuemax", String(p.limit));
      if (row.value !== value) row.bar.setAttribute("aria-valuenow", String(value));
      const text = `${this.n(p.in_use)} of ${this.n(p.limit)} in use`;
      if (row.text !== text) {
        row.bar.setAttribute("aria-valuetext", text);
        row.textEl.textContent = row.text = text;
      }
      const pct = p.limit ? Math.floor((value * 100) / p.limit) : 100;
      if (row.pct !== pct) row.fill.style.setProperty("width", `${(row.pct = pct)}%`);
      const full = value >= p.limit;
      if (row.full !== full) row.el.classList.toggle("qw-full", (row.full = full));
      row.inUse = p.in_use;
      row.limit = p.limit;
      row.value = value;
    }
  }

  meterRow() {
    const e = el("div", "qw-meter");
    const label = e.appendChild(el("span", "qw-meter-label"));
    label.id = `${this.uid}-meter-${++this.meterIds}`;
    const bar = e.appendChild(el("div", "qw-meter-bar"));
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-labelledby", label.id);
    const fill = bar.appendChild(el("div", "qw-meter-fill"));
    const textEl = e.appendChild(el("span", "qw-meter-text"));
    return { el: e, label, bar, fill, textEl, kind: undefined, inUse: -1, limit: -1, value: -1, text: undefined, pct: -1, full: undefined };
  }

  paintPackages(packages, now) {
    const rows = reconcile(this.packageRows, this.packages, packages, (p) => p.id, () => {
      const e = el("li", "qw-package");
      const name = e.appendChild(el("span", "qw-package-name"));
      const unitsEl = e.appendChild(el("span", "qw-package-units"));
      const status = e.appendChild(el("span", "qw-package-status"));
      return { el: e, name, unitsEl, status, nameText: undefined, remaining: -1, total: -1, st: undefined, at: -1, soon: undefined, active: undefined };
    });
    for (let i = 0; i < packages.length; i++) {
      const p = packages[i];
      const row = rows[i];
      if (row.nameText !== p.name) row.name.textContent = row.nameText = p.name;
      if (row.remaining !== p.remaining || row.total !== p.total) {
        row.remaining = p.remaining;
        row.total = p.total;
        row.unitsEl.textContent = `${this.u(milli(p.remaining))} of ${this.u(milli(p.total))} units`;
      }
      const st = p.status;
      const active = st === "active" && p.effective_at_ms <= now && now < p.expires_at_ms;
      const soon = active && p.expires_at_ms - now <= EXPIRING_SOON_MS;
      const at = st === "pending" ? p.effective_at_ms : st === "exhausted" ? 0 : p.expires_at_ms;
      if (row.st !== st || row.at !== at || row.soon !== soon) {
        let text;
        if (st === "pending") text = `scheduled · starts ${this.date(at)}`;
        else if (st === "active") text = soon ? `expires soon, ${this.date(at)}` : `active · expires ${this.date(at)}`;
        else if (st === "expired") text = `expired ${this.date(at)}`;
        else text = "used up";
        row.status.textContent = text;
        if (row.st !== st) row.el.setAttribute("data-status", st);
        row.st = st;
        row.at = at;
      }
      if (row.soon !== soon) row.el.classList.toggle("qw-expiring", (row.soon = soon));
      if (row.active !== active) row.el.classList.toggle("qw-inactive", !(row.active = active));
    }
  }

  paintAttempts(running, finished) {
    // Running first, then ended ones, newest first (a stable sort, skipped
    // when the server sends them in that order), at most MAX_ATTEMPTS keys.
    let ended = finished;
    for (let i = 1; i < finished.length; i++) {
      if (finished[i - 1].finished_at_ms < finished[i].finished_at_ms) {
        ended = finished.slice().sort((a, b) => b.finished_at_ms - a.finished_at_ms);
        break;
      }
    }
    const shown = this.shownTasks ??= [];
    shown.length = 0;
    const add = (t) => {
      const key = t.client_request_id ?? t.id;
      for (let j = 0; j < shown.length; j++) if ((shown[j].client_request_id ?? shown[j].id) === key) return;
      shown.push(t);
    };
    for (let i = 0; i < running.length && shown.length < MAX_ATTEMPTS; i++) add(running[i]);
    for (let i = 0; i < ended.length && shown.length < MAX_ATTEMPTS; i++) add(ended[i]);
    const rows = reconcile(this.attemptRows, this.attempts, shown, (t) => t.client_request_id ?? t.id, () => {
      // The text in a span of its own: a queued request's row has a cancel
      // button beside it (the benchmark's states queue nothing).
      const li = el("li", "qw-attempt");
      const text = li.appendChild(el("span", "qw-attempt-text"));
      return { el: li, text, status: undefined, kind: undefined, slots: -1, amount: -1, reason: undefined, at: undefined };
    });
    for (let i = 0; i < shown.length; i++) {
      const t = shown[i];
      const row = rows[i];
      const status = t.outcome ?? "running";
      const amount = status === "running" ? t.reserved_units : t.units_charged;
      const at = status === "running" ? undefined : t.finished_at_ms;
      const reason = t.reason ?? null;
      if (row.status === status && row.kind === t.kind && row.slots === t.slots && row.amount === amount && row.reason === reason && row.at === at) continue;
      let how;
      if (status === "running") how = `running, ${this.u(milli(amount))} units reserved`;
      else if (status === "succeeded") how = `done, ${this.u(milli(amount))} units charged`;
      else {
        how = status === "refused" ? "refused, not charged" : "failed, not charged";
        if (reason !== null) how = `${how}: ${reason}`;
      }
      const head = `${title(t.kind)} ×${this.n(t.slots)} · ${how}`;
      row.text.textContent = at === undefined ? head : `${head} · ${this.time(at)}`;
      if (row.status !== status) row.el.setAttribute("data-status", status);
      row.status = status;
      row.kind = t.kind;
      row.slots = t.slots;
      row.amount = amount;
      row.reason = reason;
      row.at = at;
    }
  }
}

function available(s, t) {
  let remaining = 0;
  for (const p of s.packages) if (p.status === "active" && p.effective_at_ms <= t && t < p.expires_at_ms) remaining += milli(p.remaining);
  let reserved = 0;
  for (const r of s.running) reserved += milli(r.reserved_units);
  return Math.max(0, remaining - reserved);
}

function restore(e, name, value) {
  if (value === null) e.removeAttribute(name);
  else e.setAttribute(name, value);
}

/**
 * Keyed rows: `rows` (each with its `key` and `el`) made to follow `items`,
 * in order. When the keys are those of the last update, in the same order
 * (the common case), nothing is allocated or moved; otherwise rows are
 * created for new keys, removed for gone ones, and put in order.
 */
function reconcile(rows, parent, items, keyOf, create) {
  let same = rows.length === items.length;
  for (let i = 0; same && i < items.length; i++) same = rows[i].key === keyOf(items[i]);
  if (same) return rows;
  const old = new Map();
  for (const r of rows) old.set(r.key, r);
  const next = [];
  for (const item of items) {
    const key = keyOf(item);
    let row = old.get(key);
    if (row !== undefined) old.delete(key);
    else {
      row = create();
      row.key = key;
    }
    next.push(row);
  }
  for (const r of old.values()) r.el.remove();
  let inOrder = parent.children.length === next.length;
  for (let i = 0; inOrder && i < next.length; i++) inOrder = parent.children[i] === next[i].el;
  // appendChild moves a node that is already there: every row in order.
  if (!inOrder) for (const r of next) parent.appendChild(r.el);
  rows.length = 0;
  for (const r of next) rows.push(r);
  return rows;
}
