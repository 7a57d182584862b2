import { useRef, useState, type FormEvent } from "react";
import type { QuotaWidgetElement } from "quota-widget/element";
// Types <quota-widget> in JSX: its attributes and its events.
import type {} from "quota-widget/react";

export function Dashboard() {
  const quota = useRef<QuotaWidgetElement>(null);
  const [count, setCount] = useState(1);
  const [status, setStatus] = useState("");

  // The widget's capture listener has run first: when submit is blocked this
  // never runs. submit() sends the request the widget holds and ends the
  // hold from the answer (refusals, 401, 5xx, network, timeout, Retry-After).
  async function generate(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const widget = quota.current?.widget;
    if (!widget) return;
    const prompt = String(new FormData(event.currentTarget).get("prompt") ?? "");
    const outcome = await widget
      .submit(({ requestId, kind, count }) =>
        fetch("/api/generations", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ kind, count, client_request_id: requestId, prompt }),
        }),
      )
      .catch(() => null); // blocked: the widget says why
    if (outcome) setStatus(outcome.outcome === "accepted" ? "Started." : `Not started: ${outcome.message}. Nothing was charged.`);
  }

  return (
    <main id="dashboard">
      <form id="generate-form" onSubmit={generate}>
        <h1>Generate</h1>
        <label htmlFor="prompt">Prompt</label>
        <textarea id="prompt" name="prompt" defaultValue="A lighthouse at dusk, oil on canvas" />
        <label htmlFor="count">Images</label>
        <select id="count" value={count} onChange={(e) => setCount(Number(e.target.value))}>
          {[1, 2, 3, 4].map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
        {/* No disabled={...} here: the widget owns the button's gating (aria-disabled). */}
        <button id="generate" type="submit">Generate</button>
        <p role="status">{status}</p>
      </form>
      <quota-widget
        ref={quota}
        button="#generate"
        endpoint="/api"
        kind="image"
        count={count}
        onquota-announce={(event) => setStatus(event.detail.message)}
      />
    </main>
  );
}
