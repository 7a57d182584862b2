// First render after navigation: module load, wasm compile (for the widget)
// and the first state on screen, timed from the navigation's start.
import { makeState } from "/bench/states.js";

const params = new URLSearchParams(location.search);
const name = params.get("impl");
const account = params.get("account");
const host = document.getElementById(`${name}-host`);
const button = document.getElementById(`${name}-go`);

if (name === "widget") {
  const { default: init, QuotaWidget } = await import("/pkg/index.js");
  await init();
  const w = new QuotaWidget({ host, button, locale: "en-US" });
  w.pushState(makeState(account, 1));
} else {
  const { ReferenceView } = await import("/bench/reference.js");
  new ReferenceView({ host, button, locale: "en-US" }).update(makeState(account, 1));
}
window.firstRenderMs = performance.now();
