// The widget's one HTTP request: GET the quota state, conditionally.
// Called from Rust (src/sync.rs); answers through `done` exactly once.
export function fetchState(url, etag, seq, done) {
  const headers = { Accept: "application/json" };
  if (etag) headers["If-None-Match"] = etag;
  const answer = (status, tag, body) => {
    // After destroy() the Rust side is gone; nothing is left to tell.
    try { done(seq, status, tag, body); } catch { /* widget destroyed */ }
  };
  fetch(url, { headers, credentials: "same-origin" }).then(
    (r) => (r.status === 200 ? r.text() : Promise.resolve("")).then(
      (body) => answer(r.status, r.headers.get("etag"), body),
      () => answer(0, null, ""),
    ),
    () => answer(0, null, ""),
  );
}
