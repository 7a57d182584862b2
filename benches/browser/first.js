// First render after navigation: module load, wasm compile (for the widget)
// and the first state on screen, timed from the navigation's start. The
// state is given as an object or as JSON text (`format`).
import { makeState } from "/bench/states.js";

const params = new URLSearchParams(location.search);
const name = params.get("impl");
const account = params.get("account");
const state = params.get("format") === "json" ? JSON.stringify(makeState(account, 1)) : makeState(account, 1);
const host = document.getElementById(`${name}-host`);
const button = document.getElementById(`${name}-go`);

if (name === "widget") {
  const { default: init, QuotaWidget } = await import("/pkg/index.js");
  await init();
  const w = new QuotaWidget({ host, button, locale: "en-US" });
  w.pushState(state);
} else if (name === "baseline") {
  const { ReferenceView } = await import("/bench/baseline.js");
  new ReferenceView({ host, button, locale: "en-US" }).update(typeof state === "string" ? JSON.parse(state) : state);
} else {
  const { ReferenceView } = await import("/bench/reference.js");
  new ReferenceView({ host, button, locale: "en-US" }).update(state);
}
window.firstRenderMs = performance.now();
