// Two questions the core's state reader asks of the browser's parsed JSON
// most often (src/api.rs, `Source for JsValue`), each answered in one call
// across the wasm boundary: a member as a number (NaN when it is not one:
// a plain f64 crosses without the return slot in wasm memory that an
// optional number takes, and no JSON number is NaN), and a member as a
// string (undefined when it is not one). A throwing getter of an object
// the page pushed reads as absent.
export function num(o, k) {
  try {
    const x = o[k];
    return typeof x === "number" ? x : NaN;
  } catch {
    return NaN;
  }
}

export function str(o, k) {
  try {
    const x = o[k];
    return typeof x === "string" ? x : undefined;
  } catch {
    return undefined;
  }
}

// Whether the parsed JSON values `a` and `b` (two states the browser parsed
// from text) are equal but for their members `skip1` and `skip2` (those
// that change with every state): a state that repeats the last one is then
// not read again field by field.
export function same(a, b, skip1, skip2) {
  return eq(a, b, skip1, skip2);
}

function eq(a, b, skip1, skip2) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  // Object.keys, not for-in: for-in measured faster in node but a third
  // slower in the browser benchmark's pages (a busy account's repeated state
  // 67 against 50 µs an update).
  const keys = Object.keys(b);
  if (keys.length !== Object.keys(a).length) return false;
  for (const k of keys) {
    if (k === skip1 || k === skip2) continue;
    if (!Object.hasOwn(a, k) || !eq(a[k], b[k])) return false;
  }
  return true;
}
