// The benchmark's page side: makes server states, drives the widget and the
// plain-JavaScript reference with them, and answers the Node driver's calls
// (window.bench.*). Nothing here asserts: it measures.
import init, { QuotaWidget } from "/pkg/index.js";
import { ReferenceView } from "/bench/reference.js";
import { makeState } from "/bench/states.js";

let wasm;
const impls = {};
let revision = 1;

function mount(name, account) {
  const host = document.getElementById(`${name}-host`);
  const button = document.getElementById(`${name}-go`);
  host.textContent = "";
  if (name === "widget") {
    const w = new QuotaWidget({ host, button, locale: "en-US", kind: "image", count: 1 });
    return { push: (s) => w.pushState(s), destroy: () => { w.destroy(); w.free(); } };
  }
  const r = new ReferenceView({ host, button, locale: "en-US", kind: "image", count: 1 });
  return { push: (s) => r.update(typeof s === "string" ? JSON.parse(s) : s), destroy: () => r.destroy() };
}

window.bench = {
  async load() {
    wasm = await init();
  },
  /** (Re)mounts both implementations and gives them the same first state. */
  setup(account) {
    for (const name of ["widget", "reference"]) {
      impls[name]?.destroy();
      impls[name] = mount(name, account);
    }
    const first = makeState(account, revision++);
    impls.widget.push(first);
    impls.reference.push(first);
  },
  /**
   * Makes `n` new states (newer revisions, a few figures moved) and pushes
   * them to `name`; returns the milliseconds the pushes took. States are made
   * before the clock starts.
   */
  batch(name, account, format, n) {
    const states = [];
    for (let i = 0; i < n; i++) {
      const s = makeState(account, revision++);
      states.push(format === "json" ? JSON.stringify(s) : s);
    }
    const impl = impls[name];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) impl.push(states[i]);
    return performance.now() - t0;
  },
  /** What both show, to check they show the same figures. */
  texts(name) {
    const host = document.getElementById(`${name}-host`);
    const q = (sel) => [...host.querySelectorAll(sel)].map((e) => e.textContent);
    return {
      remaining: q(".qw-remaining"),
      detail: q(".qw-units-detail"),
      meters: q(".qw-meter-text"),
      cost: q(".qw-cost"),
      packages: q(".qw-package").length,
      packageUnits: q(".qw-package-units"),
      attempts: q(".qw-attempt"),
    };
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
      const impl = mount(name, account);
      impl.push(makeState(account, revision++));
      impl.destroy();
    }
  },
};
