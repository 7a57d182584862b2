// The demo dashboard: a sign-in step, a "Generate" form, and the quota widget
// beside it, synced with the quota server at /api. It uses the npm package
// exactly as a user's dashboard would: `import ... from "quota-widget"`, in
// which every tab of the browser shares one connection to the server and
// every hold (README, "Several tabs").
//
// Everything here runs under the server's strict CSP (script-src 'self'
// 'wasm-unsafe-eval'; style-src 'self'): no inline script, no inline style,
// and every text is set with textContent, never as markup.
import init, { QuotaWidget } from "quota-widget";
import "quota-widget/quota-widget.css";
import "./app.css";

const API = "/api";

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
const countLabel = $("#count-label");
const promptInput = $("#prompt");
const queueBox = $("#queue");
const statusLine = $("#submit-status");

/** @type {QuotaWidget | null} */
let widget = null;
let wasmReady = null;
let unsubscribe = null;
// The attempt the status line reports: it follows that attempt in the
// widget's list, and gives way to the list once the attempt leaves it.
let reported = null;

const NOUNS = { image: ["image", "images"], video: ["video", "videos"] };
const noun = (kind, count) => (NOUNS[kind] ?? [kind, kind])[count === 1 ? 0 : 1];

function setStatus(text, tone = "info") {
  statusLine.textContent = text;
  statusLine.dataset.tone = tone;
}

/** The request being prepared, as the form shows it. */
function currentRequest() {
  const kind = kindSelect.value;
  if (kind === "video") return { kind, count: 1 };
  const count = Number.parseInt(countSelect.value, 10);
  return { kind, count: Number.isInteger(count) && count >= 1 ? count : 1 };
}

/**
 * The count field follows the kind and the account's limit: images from 1
 * to the image slots the plan has (more could never start at once), a
 * video always one.
 */
function syncCountField(limit = Number(countSelect.dataset.limit) || 4) {
  const kind = kindSelect.value;
  const max = kind === "video" ? 1 : Math.max(1, limit);
  countSelect.dataset.limit = String(limit);
  const chosen = Math.min(Number.parseInt(countSelect.value, 10) || 1, max);
  if (countSelect.options.length !== max) {
    countSelect.replaceChildren(
      ...Array.from({ length: max }, (_, i) => new Option(String(i + 1), String(i + 1))),
    );
  }
  countSelect.value = String(chosen);
  countSelect.disabled = kind === "video";
  countLabel.textContent = `Number of ${noun(kind, 2)}`;
  countHint.textContent =
    kind === "video" ? "A video holds one slot while it runs." : "Each image holds one slot while it runs.";
}

function onRequestChange() {
  syncCountField();
  const { kind, count } = currentRequest();
  widget?.setRequest(kind, count);
}

/**
 * Cancels a queued request (its Cancel button in the widget's list): the
 * server releases its units and its next state drops it from every tab.
 */
async function cancelQueued(taskId) {
  let response;
  try {
    response = await fetch(`${API}/generations/${encodeURIComponent(taskId)}`, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  } catch {
    setStatus("Could not reach the server to cancel. Try again.", "error");
    return;
  }
  if (response.status === 401) {
    showSignIn("Your session has ended. Sign in again.");
  } else if (!response.ok) {
    // It started meanwhile, or was already cancelled: the list shows which.
    const answer = await readJson(response);
    setStatus(`Not cancelled: ${answer?.message ?? `HTTP ${response.status}`}.`, "info");
  } else {
    setStatus("Cancelled. Its units are released; nothing was charged.", "ok");
  }
}

/** Keeps the count's limit and the status line in step with the widget. */
function onWidgetEvent(event) {
  if (event.type === "cancel") {
    cancelQueued(event.taskId);
    return;
  }
  if (event.type !== "change") return;
  const images = event.view.meters.find((m) => m.kind === "image");
  if (images && String(images.limit) !== countSelect.dataset.limit) {
    syncCountField(images.limit);
    onRequestChange();
  }
  if (reported && !showAttempt(event.view)) {
    reported = null;
    setStatus("");
  }
}

/** The status line shows the attempt it reports, in the widget's words. */
function showAttempt(view) {
  const attempt = view.attempts.find((a) => a.key === reported);
  if (attempt) setStatus(attempt.text, attempt.status === "succeeded" || attempt.status === "running" ? "ok" : "info");
  return attempt !== undefined;
}

// The dashboard's own submit handler. The widget's capture listener ran
// first: a blocked submit never gets here. submit() sends the request the
// widget holds and ends the hold from the answer; its outcome says why in
// words, and the attempt list shows it.
async function onSubmit(event) {
  event.preventDefault();
  if (!widget) return;
  let outcome;
  try {
    outcome = await widget.submit(({ requestId, kind, count, queue }) =>
      fetch(`${API}/generations`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ kind, count, client_request_id: requestId, prompt: promptInput.value, queue }),
      }),
    );
  } catch (blocked) {
    // The reason is already shown next to the button.
    return;
  }
  if (outcome.outcome === "signed_out") {
    showSignIn("Your session has ended. Sign in again.");
    return;
  }
  // From here the status line follows this attempt. The widget has already
  // listed it (settled in the same call that ended the hold), so one text
  // describes it from the first frame; the outcome's own words are the
  // fallback for an attempt the list no longer holds.
  reported = outcome.requestId;
  if (!showAttempt(widget.view()) && outcome.outcome !== "accepted") {
    setStatus(`Not started: ${outcome.message}. Nothing was charged.`, "error");
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * Who is signed in: `{ signedIn, account }`. The server answers 200 either
 * way (no error in the console before sign-in); `account` is its
 * non-secret account id, which scopes the tabs that share a connection.
 */
async function session() {
  try {
    const response = await fetch(`${API}/session`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = response.ok ? await response.json() : null;
    return { signedIn: body?.signed_in === true, account: typeof body?.account === "string" ? body.account : undefined };
  } catch {
    return { signedIn: false, account: undefined };
  }
}

async function showDashboard(account) {
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
    // The reason a submit is blocked, next to the button it blocks.
    reason: "#generate-reason",
    endpoint: API,
    // Tabs share a connection only with tabs of the same account.
    account,
    kind,
    count,
    // With every slot busy, Generate queues the request on the server
    // (its units reserved, started the moment a slot frees) instead of
    // refusing it; queued requests are listed with a Cancel button.
    queue: queueBox.checked,
  });
  unsubscribe = widget.subscribe(onWidgetEvent);
}

function showSignIn(message = "") {
  if (widget) {
    unsubscribe?.();
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
      await showDashboard((await session()).account);
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
  reported = null;
  showSignIn();
}

async function start() {
  kindSelect.addEventListener("change", onRequestChange);
  countSelect.addEventListener("change", onRequestChange);
  queueBox.addEventListener("change", () => widget?.setQueue(queueBox.checked));
  form.addEventListener("submit", onSubmit);
  signinForm.addEventListener("submit", onSignIn);
  signOut.addEventListener("click", onSignOut);
  syncCountField();

  // Already signed in? The session cookie is HttpOnly, so ask the server.
  const { signedIn, account } = await session();
  if (signedIn) await showDashboard(account);
  else showSignIn();
}

start();
