// Loaded first in every page the suite opens (the front adds it to <head>):
// what a console would show as an error, reported to the front at once, so
// that a report outlives its window. Classic WebDriver has no log API in
// WebKit, and none that runs before the page in either engine.
(() => {
  const page = `${location.pathname}#${Math.random().toString(36).slice(2, 8)}`;
  let n = 0;
  const text = (value) => {
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    try {
      return typeof value === "string" ? value : JSON.stringify(value);
    } catch {
      return String(value);
    }
  };
  const report = (kind, message) => {
    n += 1;
    const entry = { id: `${page}-${n}`, kind, message: String(message).slice(0, 1000), page: location.pathname + location.search };
    (window.__xbProblems ||= []).push(entry);
    try {
      navigator.sendBeacon("/__xb/report", JSON.stringify(entry));
    } catch {
      // The entry stays in window.__xbProblems for the test to read.
    }
  };
  window.addEventListener(
    "error",
    (event) => {
      const target = event.target;
      // A script, stylesheet or image that failed to load (capture phase).
      if (target && target !== window && target.localName) report("load error", `${target.localName} ${target.src || target.href || ""}`);
      else report("page error", `${event.message} (${event.filename}:${event.lineno})`);
    },
    true,
  );
  window.addEventListener("unhandledrejection", (event) => report("unhandled rejection", text(event.reason)));
  document.addEventListener("securitypolicyviolation", (event) =>
    report("CSP violation", `${event.violatedDirective} ${event.blockedURI}`),
  );
  const error = console.error;
  console.error = function (...args) {
    report("console.error", args.map(text).join(" "));
    return error.apply(this, args);
  };
})();
