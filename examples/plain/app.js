// Registers <quota-widget>; the element loads its wasm when first connected.
import "./quota-widget/define.js";

const $ = (selector) => document.querySelector(selector);

// The quota API authenticates the widget's event stream with a session
// cookie: POST the account's token to /api/session once (docs/api.md).
$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("#token").value }),
  }).catch(() => null);
  if (!response?.ok) {
    $("#signin-error").textContent = response ? "Unknown token." : "The server cannot be reached.";
    return;
  }
  $("#signin").hidden = true;
  $("nav").hidden = false;
  window.addEventListener("hashchange", route);
  route();
});

// Two routes in the URL's hash: "#/" (Generate, with the widget) and
// "#/usage". Removing the dashboard from the page disconnects the element,
// which frees its widget: event stream, timers and listeners.
function route() {
  const usage = location.hash === "#/usage";
  $("#usage").hidden = !usage;
  if (usage) $("#dashboard")?.remove();
  else if (!$("#dashboard")) showDashboard();
}

function showDashboard() {
  $("nav").after($("#dashboard-template").content.cloneNode(true));
  const quota = $("quota-widget");
  $("#count").addEventListener("change", (event) => quota.setAttribute("count", event.target.value));
  quota.addEventListener("quota-announce", (event) => ($("#status").textContent = event.detail.message));

  // The widget's capture listener has run first: when submit is blocked this
  // never runs. submit() sends the request the widget holds and ends the
  // hold from the answer (refusals, 401, 5xx, network, timeout, Retry-After).
  $("#generate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const widget = quota.widget;
    if (!widget) return;
    const outcome = await widget
      .submit(({ requestId, kind, count }) =>
        fetch("/api/generations", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ kind, count, client_request_id: requestId, prompt: $("#prompt").value }),
        }),
      )
      .catch(() => null); // blocked: the widget says why
    if (outcome) $("#status").textContent = outcome.outcome === "accepted" ? "Started." : `Not started: ${outcome.message}. Nothing was charged.`;
  });
}
