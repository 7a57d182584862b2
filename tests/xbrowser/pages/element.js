// The page of <quota-widget> (tests/e2e/element.test.js has the same one, fed
// by pushState): here the element talks to the server through the front, so
// it signs in first with the token in the page's query.
import { defineQuotaWidget } from "/__xb/pkg/index.js";

window.quotaEvents = [];
document.addEventListener("quota-error", (event) => window.quotaEvents.push(event.detail.message));
document.addEventListener("quota-ready", () => {
  window.quotaReady = true;
});
const token = new URLSearchParams(location.search).get("token") ?? "";
const session = await fetch("/api/session", {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ token }),
});
if (!session.ok) throw new Error(`Sign-in failed: HTTP ${session.status}`);
defineQuotaWidget();
