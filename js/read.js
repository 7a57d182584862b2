// Two questions the core's state reader asks of the browser's parsed JSON
// most often (src/api.rs, `Source for JsValue`), each answered in one call
// across the wasm boundary: a member as a number, and a member as a string
// (undefined when it is not one). A throwing getter of an object the page
// pushed reads as absent.
export function num(o, k) {
  try {
    const x = o[k];
    return typeof x === "number" ? x : undefined;
  } catch {
    return undefined;
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
