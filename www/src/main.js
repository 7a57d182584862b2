// The demo dashboard: a sign-in step, a "Generate" form, and the quota widget
// beside it, synced with the quota server at /api. It uses the npm package
// exactly as a user's dashboard would: `import ... from "quota-widget"`.
//
// Everything here runs under the server's strict CSP (script-src 'self'
// 'wasm-unsafe-eval'; style-src 'self'): no inline script, no inline style,
// and every text is set with textContent, never as markup.
import init, { QuotaWidget } from "quota-widget";
import "quota-widget/quota-widget.css";
import "./app.css";

const API = "/api";
const MAX_IMAGES = 8;

const $ = (selector) => {
  const element = document.querySelector(selector);
  if (!element) throw new Error(`demo: ${selector} is missing from index.html`);
  return element;
};

const boot = $("#boot");
const signin = $("#signin");
const signinForm = $("#signin-form");
const signinSubmit = $("#signin-submit");
const signinError = $("#signin-error");
const tokenInput = $("#token");
const signOut = $("#sign-out");
const dashboard = $("#dashboard");
const form = $("#generate-form");
const kindSelect = $("#kind");
const countSelect = $("#count");
const countHint = $("#count-hint");
const promptInput = $("#prompt");
const statusLine = $("#submit-status");

/** @type {QuotaWidget | null} */
let widget = null;
let wasmReady = null;

const KIND_LABELS = { image: "image", video: "video" };

function setStatus(text, tone = "info") {
  statusLine.textContent = text;
  statusLine.dataset.tone = tone;
}

/** The request being prepared, as the form shows it. */
function currentRequest() {
  const kind = kindSelect.value;
  if (kind === "video") return { kind, count: 1 };
  const count = Number.parseInt(countSelect.value, 10);
  return { kind, count: Number.isInteger(count) && count >= 1 && count <= MAX_IMAGES ? count : 1 };
}

function describe({ kind, count }) {
  const noun = KIND_LABELS[kind] ?? kind;
  return kind === "video" ? "1 video" : `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** Video takes one item: the count is fixed at 1 and disabled. */
function syncCountField() {
  const isVideo = kindSelect.value === "video";
  if (isVideo) countSelect.value = "1";
  countSelect.disabled = isVideo;
  countHint.textContent = isVideo
    ? "A video holds one slot while it runs."
    : "Each image holds one slot while it runs.";
}

function onRequestChange() {
  syncCountField();
  if (widget) {
    const { kind, count } = currentRequest();
    widget.setRequest(kind, count);
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// The dashboard's own submit handler. The widget's capture-phase listener has
// already run: if submit was blocked, this never runs; if it was open, the
// widget took a hold and wrote its client request id into the hidden field.
async function onSubmit(event) {
  event.preventDefault();
  if (!widget) return;
  const requestId = form.elements.namedItem("client_request_id").value || widget.lastRequestId;
  if (!requestId) {
    setStatus("Could not start: no request id from the quota widget.", "error");
    return;
  }
  const request = currentRequest();
  const body = {
    kind: request.kind,
    count: request.count,
    client_request_id: requestId,
    prompt: promptInput.value,
  };
  setStatus(`Sending ${describe(request)}…`);

  let response;
  try {
    response = await fetch(`${API}/generations`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    const reason = "network error";
    widget?.submitFailed(requestId, reason);
    setStatus(`Not sent (${reason}). Nothing was charged.`, "error");
    return;
  }

  const answer = await readJson(response);
  const message = answer && typeof answer.message === "string" ? answer.message : `HTTP ${response.status}`;
  if (response.status === 201 || response.status === 200) {
    // The server's state, pushed over the event stream, confirms the hold.
    const task = answer && answer.task_id ? ` as ${answer.task_id}` : "";
    setStatus(`Started ${describe(request)}${task}.`, "ok");
  } else if (response.status === 429 || response.status === 402 || response.status === 400) {
    widget?.submitRefused(requestId, message);
    setStatus(`Refused: ${message}. Nothing was charged.`, "error");
  } else if (response.status === 401) {
    widget?.submitFailed(requestId, "signed out");
    setStatus("Your session has ended. Sign in again.", "error");
    showSignIn();
  } else {
    widget?.submitFailed(requestId, message);
    setStatus(`Failed: ${message}. Nothing was charged.`, "error");
  }
}

async function showDashboard() {
  boot.hidden = true;
  signin.hidden = true;
  dashboard.hidden = false;
  signOut.hidden = false;
  if (widget) return;
  try {
    wasmReady ??= init();
    await wasmReady;
  } catch (error) {
    wasmReady = null;
    setStatus(`The quota widget could not load: ${error.message ?? error}`, "error");
    return;
  }
  syncCountField();
  const { kind, count } = currentRequest();
  widget = new QuotaWidget({
    host: "#quota-widget",
    button: "#generate",
    form: "#generate-form",
    endpoint: API,
    kind,
    count,
  });
}

function showSignIn(message = "") {
  if (widget) {
    // destroy() removes the widget's listeners, timers and DOM; free()
    // releases its memory in the wasm module.
    widget.destroy();
    widget.free();
    widget = null;
  }
  boot.hidden = true;
  dashboard.hidden = true;
  signOut.hidden = true;
  signin.hidden = false;
  signinError.textContent = message;
  tokenInput.setAttribute("aria-invalid", message ? "true" : "false");
  tokenInput.focus();
}

async function onSignIn(event) {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) {
    showSignIn("Enter a token.");
    return;
  }
  signinSubmit.disabled = true;
  signinError.textContent = "";
  try {
    const response = await fetch(`${API}/session`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    if (response.status === 204 || response.ok) {
      tokenInput.setAttribute("aria-invalid", "false");
      await showDashboard();
      $("#generate-title").focus();
    } else if (response.status === 401) {
      showSignIn("Unknown token. Check it and try again.");
    } else {
      const answer = await readJson(response);
      showSignIn(answer?.message ? `Could not sign in: ${answer.message}.` : `Could not sign in (HTTP ${response.status}).`);
    }
  } catch {
    showSignIn("Could not reach the server. Try again.");
  } finally {
    signinSubmit.disabled = false;
  }
}

async function onSignOut() {
  try {
    await fetch(`${API}/session`, { method: "DELETE", credentials: "same-origin" });
  } catch {
    // Signed out locally anyway.
  }
  setStatus("");
  showSignIn();
}

async function start() {
  kindSelect.addEventListener("change", onRequestChange);
  countSelect.addEventListener("change", onRequestChange);
  form.addEventListener("submit", onSubmit);
  signinForm.addEventListener("submit", onSignIn);
  signOut.addEventListener("click", onSignOut);
  syncCountField();

  // Already signed in (the session cookie is HttpOnly, so ask the server).
  let signedIn = false;
  try {
    const response = await fetch(`${API}/state`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    signedIn = response.status === 200;
  } catch {
    signedIn = false;
  }
  if (signedIn) await showDashboard();
  else showSignIn();
}

start();
