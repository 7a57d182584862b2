// The benchmark's page side: makes server states, drives the widget and the
// plain-JavaScript reference with them, and answers the Node driver's calls
// (window.bench.*). Nothing here asserts: it measures, and reports what each
// implementation shows (bench.mjs compares them).
import init, { QuotaWidget } from "/pkg/index.js";
import { ReferenceView } from "/bench/reference.js";
import { checkStates, makeState } from "/bench/states.js";

let wasm;
const impls = {};
// Every implementation gets the same states, one after another: its own
// count of revisions, from the same start at each setup.
let revision = 1;
const revisions = {};
// The step of the last state made for each: a no-op update repeats it.
const lastStep = {};
// Another revision of the reference, measured beside this one when the
// driver serves one (QW_BENCH_BASELINE): the same interface, objects only.
let Baseline = null;

function mount(name) {
  const host = document.getElementById(`${name}-host`);
  const button = document.getElementById(`${name}-go`);
  host.textContent = "";
  if (name === "widget") {
    const w = new QuotaWidget({ host, button, locale: "en-US", kind: "image", count: 1 });
    return { push: (s) => w.pushState(s), destroy: () => { w.destroy(); w.free(); } };
  }
  if (name === "baseline") {
    const r = new Baseline({ host, button, locale: "en-US", kind: "image", count: 1 });
    return { push: (s) => r.update(typeof s === "string" ? JSON.parse(s) : s), destroy: () => r.destroy() };
  }
  const r = new ReferenceView({ host, button, locale: "en-US", kind: "image", count: 1 });
  return { push: (s) => r.update(s), destroy: () => r.destroy() };
}

/** A node as text: tag, attributes (ids made positional), then children. */
function describe(node, ids) {
  if (node.nodeType === Node.TEXT_NODE) return node.data === "" ? "" : JSON.stringify(node.data);
  if (node.nodeType !== Node.ELEMENT_NODE) return "";
  const attrs = [...node.attributes]
    .map((a) => {
      let v = a.value;
      if (a.name === "id" || a.name === "aria-labelledby" || a.name === "aria-describedby") {
        v = v.split(" ").map((id) => (id.endsWith("-go") ? "button" : id && (ids.get(id) ?? ids.set(id, `#${ids.size}`).get(id)))).join(" ");
      }
      if (a.name === "class") v = v.split(/\s+/).filter(Boolean).sort().join(" ");
      return `${a.name}=${JSON.stringify(v)}`;
    })
    .sort();
  const kids = [...node.childNodes].map((c) => describe(c, ids)).filter(Boolean);
  return `<${node.localName}${attrs.length ? " " + attrs.join(" ") : ""}>${kids.join("")}</${node.localName}>`;
}

window.bench = {
  names: ["widget", "reference"],
  async load(withBaseline) {
    wasm = await init();
    if (withBaseline) {
      Baseline = (await import("/bench/baseline.js")).ReferenceView;
      this.names.push("baseline");
    }
  },
  /** (Re)mounts every implementation and gives them the same first state. */
  setup(account) {
    for (const name of this.names) {
      impls[name]?.destroy();
      impls[name] = mount(name);
    }
    const first = makeState(account, revision);
    for (const name of this.names) {
      impls[name].push(first);
      revisions[name] = revision + 1;
      lastStep[name] = revision;
    }
    revision += 1_000_000;
  },
  /**
   * Makes `n` new states (newer revisions; with `noop`, the figures of the
   * last one, else a few figures moved) and pushes them to `name`. States
   * are made before the clock starts. Returns the milliseconds of the whole
   * batch and of each update (performance.now() is precise to 5 µs in this
   * cross-origin isolated page).
   */
  batch(name, account, format, n, noop = false) {
    const states = [];
    for (let i = 0; i < n; i++) {
      const rev = revisions[name]++;
      if (!noop) lastStep[name] = rev;
      const s = makeState(account, rev, lastStep[name]);
      states.push(format === "json" ? JSON.stringify(s) : s);
    }
    const impl = impls[name];
    const each = new Float64Array(n);
    const t0 = performance.now();
    let t = t0;
    for (let i = 0; i < n; i++) {
      impl.push(states[i]);
      const t1 = performance.now();
      each[i] = t1 - t;
      t = t1;
    }
    return { total: t - t0, each: [...each] };
  },
  /**
   * The check that both render the same page: pushes the same states (see
   * states.js) to the widget and the reference, and after each returns
   * what each shows, as text (bench.mjs compares). A state either refuses
   * is expected to throw in both.
   */
  check(account, format) {
    this.setup(account);
    const steps = [];
    const list = checkStates(account, revision);
    revision += list.length + 1;
    const seen = () => Object.fromEntries(["widget", "reference"].map((n) => [n, this.shown(n)]));
    steps.push({ state: "first", ...seen() });
    for (const s of list) {
      const input = format === "json" ? JSON.stringify(s) : s;
      const threw = {};
      for (const name of ["widget", "reference"]) {
        try {
          impls[name].push(input);
        } catch {
          threw[name] = true;
        }
      }
      steps.push({ state: s.revision, threw, ...seen() });
    }
    return steps;
  },
  /** What `name` shows: its host and its button, every node, attribute and text. */
  shown(name) {
    const ids = new Map();
    const host = document.getElementById(`${name}-host`);
    const button = document.getElementById(`${name}-go`);
    return [...host.childNodes].map((c) => describe(c, ids)).join("") + describe(button, ids);
  },
  /** The visible text of `name`'s host, as a reader sees it (innerText: rendered text only). */
  text(name) {
    return document.getElementById(`${name}-host`).innerText;
  },
  isolated() {
    return crossOriginIsolated;
  },
  wasmBytes() {
    // The wasm's exports have short names (scripts/build-pkg): find its memory by type.
    const memory = Object.values(wasm).find((v) => v instanceof WebAssembly.Memory);
    return memory.buffer.byteLength;
  },
  nodes() {
    return document.getElementsByTagName("*").length;
  },
  /** `n` create, first state, destroy cycles of `name`. */
  cycles(name, account, n) {
    impls[name]?.destroy();
    impls[name] = null;
    for (let i = 0; i < n; i++) {
      const impl = mount(name);
      impl.push(makeState(account, revision++));
      impl.destroy();
    }
  },
};
