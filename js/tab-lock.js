// The leadership lock of the tabs that share one connection (src/tabs.rs).
// Web Locks pass the lock on by themselves when its holder closes, crashes
// or is discarded; the lock is held while the promise given back to
// `locks.request` is pending.
//
// Queues for lock `name` and calls `granted()` once this tab holds it.
// Returns a function that releases the lock, or leaves the queue. Returns
// undefined when the browser lacks Web Locks or BroadcastChannel: the
// widget then keeps a connection of its own, as without tabs.
export function tabLock(name, granted) {
  const locks = globalThis.navigator?.locks;
  if (!locks || typeof BroadcastChannel != "function") return undefined;
  const stop = new AbortController();
  let release;
  locks
    .request(name, { signal: stop.signal }, () =>
      stop.signal.aborted
        ? undefined
        : new Promise((resolve) => {
            release = resolve;
            // After destroy() the Rust side is gone: nothing is left to tell.
            try { granted(); } catch { resolve(); }
          }),
    )
    .catch(() => { /* left the queue */ });
  return () => {
    stop.abort();
    release?.();
  };
}
