// A plain-JavaScript implementation of the widget's view, written the way a
// careful developer would write it by hand: the same information, the same
// rules for the gate, keyed rows, and only the text that changed written to
// the page. It is the yardstick of `scripts/bench`, not part of the package.
//
// It reads a server state object (docs/wire.md) and renders into `host` with
// the package's class names, so the same stylesheet applies to both.

const DAY_MS = 86_400_000;
const EXPIRING_SOON_MS = 7 * DAY_MS;
const LOW_UNITS = 20;
const STALE_AFTER_MS = 30_000;
const MAX_ATTEMPTS = 8;

const title = (kind) => (kind ? kind[0].toUpperCase() + kind.slice(1) : kind);

function el(tag, className) {
  const e = document.createElement(tag);
  e.className = className;
  return e;
}

// Writes text only when it differs from what the node already shows.
function setText(node, last, key, text) {
  if (last[key] !== text) {
    last[key] = text;
    node.textContent = text;
  }
}

/** Keyed rows: created for new keys, updated in place, reordered only when the order changed. */
class Keyed {
  constructor(parent, create) {
    this.parent = parent;
    this.create = create;
    this.rows = new Map();
    this.order = [];
  }

  update(items, keyOf, patch) {
    const keys = items.map(keyOf);
    const next = new Map();
    for (let i = 0; i < items.length; i++) {
      const key = keys[i];
      let row = this.rows.get(key);
      if (row) this.rows.delete(key);
      else row = this.create();
      patch(row, items[i]);
      next.set(key, row);
    }
    for (const row of this.rows.values()) row.el.remove();
    this.rows = next;
    let same = keys.length === this.order.length;
    for (let i = 0; same && i < keys.length; i++) same = keys[i] === this.order[i];
    if (!same) {
      for (const row of next.values()) this.parent.appendChild(row.el);
      this.order = keys;
    }
  }
}

export class ReferenceView {
  constructor({ host, button, locale, kind = "image", count = 1 }) {
    this.button = button;
    this.kind = kind;
    this.count = count;
    this.number = new Intl.NumberFormat(locale);
    this.date = new Intl.DateTimeFormat(locale, { dateStyle: "medium" });
    this.time = new Intl.DateTimeFormat(locale, { timeStyle: "short" });
    this.state = null;
    this.receivedAt = 0;
    this.last = {};

    const root = (this.root = el("section", "qw"));
    root.setAttribute("aria-label", "Generation quota");
    const units = el("div", "qw-units");
    this.remaining = units.appendChild(el("p", "qw-remaining"));
    this.detail = units.appendChild(el("p", "qw-units-detail"));
    this.meters = el("div", "qw-meters");
    this.cost = el("p", "qw-cost");
    this.reason = el("p", "qw-reason");
    this.reason.id = "ref-reason";
    const packagesBox = el("div", "qw-packages-box");
    packagesBox.appendChild(el("h3", "qw-heading")).textContent = "Packages";
    this.packages = packagesBox.appendChild(el("ul", "qw-packages"));
    const attemptsBox = el("div", "qw-attempts-box");
    attemptsBox.appendChild(el("h3", "qw-heading")).textContent = "Recent attempts";
    this.attempts = attemptsBox.appendChild(el("ul", "qw-attempts"));
    this.freshness = el("p", "qw-freshness");
    root.append(units, this.meters, this.cost, this.reason, packagesBox, attemptsBox, this.freshness);
    host.appendChild(root);

    let meterId = 0;
    this.meterRows = new Keyed(this.meters, () => {
      const e = el("div", "qw-meter");
      const label = e.appendChild(el("span", "qw-meter-label"));
      label.id = `ref-meter-${++meterId}`;
      const bar = e.appendChild(el("div", "qw-meter-bar"));
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-labelledby", label.id);
      const fill = bar.appendChild(el("div", "qw-meter-fill"));
      const text = e.appendChild(el("span", "qw-meter-text"));
      return { el: e, label, bar, fill, text, last: {} };
    });
    this.packageRows = new Keyed(this.packages, () => {
      const e = el("li", "qw-package");
      const name = e.appendChild(el("span", "qw-package-name"));
      const units = e.appendChild(el("span", "qw-package-units"));
      const status = e.appendChild(el("span", "qw-package-status"));
      return { el: e, name, units, status, last: {} };
    });
    this.attemptRows = new Keyed(this.attempts, () => ({ el: el("li", "qw-attempt"), last: {} }));
    this.setEnabled(false);
  }

  destroy() {
    this.root.remove();
    this.button.removeAttribute("aria-disabled");
  }

  /** Takes a state; an older revision than the one shown is ignored. */
  update(state) {
    if (this.state && state.revision < this.state.revision) return;
    this.receivedAt = Date.now();
    if (this.state && state.revision === this.state.revision) return;
    this.state = state;
    this.render();
  }

  setEnabled(enabled) {
    if (this.enabled === enabled) return;
    this.enabled = enabled;
    if (enabled) this.button.removeAttribute("aria-disabled");
    else this.button.setAttribute("aria-disabled", "true");
  }

  render() {
    const s = this.state;
    const n = (v) => this.number.format(v);
    const now = s.server_time_ms;
    const counts = (p) => p.status === "active" && p.effective_at_ms <= now && now < p.expires_at_ms;

    let remaining = 0;
    for (const p of s.packages) if (counts(p)) remaining += p.remaining;
    let reserved = 0;
    for (const t of s.running) reserved += t.reserved_units;
    const available = Math.max(0, remaining - reserved);
    const last = this.last;

    setText(this.remaining, last, "remaining", `${n(remaining)} ${remaining === 1 ? "unit" : "units"} remaining`);
    const detail = reserved > 0 ? `Running tasks hold ${n(reserved)} · ${n(available)} can be spent now` : "";
    setText(this.detail, last, "detail", detail);
    if (last.detailHidden !== !detail) this.detail.hidden = last.detailHidden = !detail;
    const low = available < LOW_UNITS;
    if (last.low !== low) this.root.classList.toggle("qw-low", (last.low = low));

    this.meterRows.update(s.pools, (p) => p.kind, (row, p) => {
      setText(row.label, row.last, "label", `${title(p.kind)} generation slots`);
      const value = Math.min(p.in_use, p.limit);
      if (row.last.value !== value || row.last.limit !== p.limit) {
        row.last.value = value;
        row.last.limit = p.limit;
        const text = `${n(p.in_use)} of ${n(p.limit)} in use`;
        row.bar.setAttribute("aria-valuemax", String(p.limit));
        row.bar.setAttribute("aria-valuenow", String(value));
        row.bar.setAttribute("aria-valuetext", text);
        row.fill.style.setProperty("width", `${p.limit ? Math.floor((value * 100) / p.limit) : 100}%`);
        row.el.classList.toggle("qw-full", value >= p.limit);
        setText(row.text, row.last, "text", text);
      }
    });

    this.packageRows.update(s.packages, (p) => p.id, (row, p) => {
      setText(row.name, row.last, "name", p.name);
      setText(row.units, row.last, "units", `${n(p.remaining)} of ${n(p.total)} units`);
      const active = counts(p);
      const soon = active && p.expires_at_ms - now <= EXPIRING_SOON_MS;
      let status;
      switch (p.status) {
        case "pending": status = `starts ${this.date.format(p.effective_at_ms)}`; break;
        case "active": status = soon ? `expires soon, ${this.date.format(p.expires_at_ms)}` : `active · expires ${this.date.format(p.expires_at_ms)}`; break;
        case "expired": status = `expired ${this.date.format(p.expires_at_ms)}`; break;
        default: status = "used up";
      }
      setText(row.status, row.last, "status", status);
      if (row.last.soon !== soon || row.last.active !== active) {
        row.last.soon = soon;
        row.last.active = active;
        row.el.classList.toggle("qw-expiring", soon);
        row.el.classList.toggle("qw-inactive", !active);
      }
    });

    // Cost preview and the gate (R1, R2).
    const pool = s.pools.find((p) => p.kind === this.kind);
    let reason = "";
    let cost = "";
    if (pool) {
      const slots = pool.slot_rule === "per_item" ? this.count : this.count > 0 ? 1 : 0;
      const units = pool.unit_cost * this.count;
      const unitsWord = units === 1 ? "unit" : "units";
      const head = `This request: ${n(units)} ${unitsWord} · ${n(pool.unit_cost)} per ${pool.kind}`;
      cost = available >= units ? `${head} · ${n(available - units)} left after` : `${head} · more than the ${n(available)} that can be spent`;
      const free = Math.max(0, pool.limit - pool.in_use);
      if (this.count === 0) reason = "Choose how many items to generate.";
      else if (slots > pool.limit) reason = `This request needs ${n(slots)} ${pool.kind} slots; the limit is ${n(pool.limit)}.`;
      else if (free < slots) reason = `All ${pool.kind} slots are busy: ${n(free)} of ${n(pool.limit)} free, this request needs ${n(slots)}.`;
      else if (available < units) reason = `Not enough units: this request uses ${n(units)}, ${n(available)} can be spent.`;
    } else {
      reason = `This account has no "${this.kind}" generation slots.`;
    }
    setText(this.cost, last, "cost", cost);
    setText(this.reason, last, "reason", reason);
    this.setEnabled(reason === "");

    // Attempts: running first, then ended ones, newest first.
    const attempts = [];
    for (const t of s.running) {
      attempts.push({ key: t.client_request_id ?? t.id, status: "running", text: `${title(t.kind)} ×${n(t.slots)} · running, ${n(t.reserved_units)} units reserved` });
    }
    const ended = s.finished.slice().sort((a, b) => b.finished_at_ms - a.finished_at_ms);
    for (const t of ended) {
      let how;
      if (t.outcome === "succeeded") how = `done, ${n(t.units_charged)} units charged`;
      else how = (t.outcome === "refused" ? "refused, not charged" : "failed, not charged") + (t.reason ? `: ${t.reason}` : "");
      const at = this.time.format(new Date(t.finished_at_ms));
      attempts.push({ key: t.client_request_id ?? t.id, status: t.outcome, text: `${title(t.kind)} ×${n(t.slots)} · ${how} · ${at}` });
    }
    const seen = new Set();
    const shown = [];
    for (const a of attempts) {
      if (shown.length >= MAX_ATTEMPTS) break;
      if (!seen.has(a.key)) {
        seen.add(a.key);
        shown.push(a);
      }
    }
    this.attemptRows.update(shown, (a) => a.key, (row, a) => {
      setText(row.el, row.last, "text", a.text);
      if (row.last.status !== a.status) row.el.dataset.status = row.last.status = a.status;
    });

    const age = Math.floor(Math.max(0, Date.now() - this.receivedAt) / 1000);
    const stale = age > STALE_AFTER_MS / 1000;
    setText(this.freshness, last, "freshness", `Updated ${age} s ago`);
    if (last.revision !== s.revision) this.freshness.dataset.revision = last.revision = s.revision;
    if (last.stale !== stale) this.root.classList.toggle("qw-stale", (last.stale = stale));
  }
}
