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

// Whether the state text `t` repeats the last one, but for the values of
// members `a` and `b` (those that change with every state: its revision
// and time). Each text is cut right after its first `"a":` and `"b":`
// around the two values, and the pieces around them are compared as
// strings; equal pieces leave nothing else to differ. Then the answer is
// the two values, `{ [a]: number, [b]: number }`: a state that repeats the
// last one is taken from them, without JSON.parse or reading the rest
// again (what the server sends when nothing shown changed). Otherwise it
// is what to keep as `last` for the next state, `[t, pieces]` (so that each
// text is cut once), or undefined when `t` cannot be told that way (either
// value is not a plain number). `last` is what a call with the same `a`
// and `b` returned to keep. A state whose figures moved differs in its
// longest piece, where the comparison stops at the first difference.
export function cut(t, a, b, last) {
  if (typeof t !== "string") return undefined;
  const p = pieces(t, a, b);
  if (!p) return undefined;
  const q = Array.isArray(last) && last[1];
  if (q && p[4] === q[4] && p[2] === q[2] && p[3] === q[3] && namedOnce(last, a, b)) {
    return { [a]: p[0][2], [b]: p[1][2] };
  }
  return [t, p];
}

// Whether the kept text names `a` and `b` once each: a member named twice
// (JSON.parse takes the last, the cut the first) is the one way to
// mislead. Asked only when the pieces are equal, of the kept text (both
// name them as often), which the next repeats ask again: the answer is
// kept with it.
function namedOnce(last, a, b) {
  if (last[2] === undefined) {
    const [t, p] = last;
    last[2] = once(t, a, p[0]) && once(t, b, p[1]);
  }
  return last[2];
}

// The two members' values in `t`, and the three pieces around them
// (slices, not copies).
function pieces(t, a, b) {
  const ra = member(t, a);
  const rb = member(t, b);
  if (!ra || !rb) return null;
  const [x, y] = ra[0] < rb[0] ? [ra, rb] : [rb, ra];
  return [ra, rb, t.slice(0, x[0]), t.slice(x[1], y[0]), t.slice(y[1])];
}

const once = (t, k, r) => t.indexOf(needle(k), r[0]) < 0;

// A JSON number, after JSON's own whitespace only (a text with other
// spaces there is not JSON, and must reach JSON.parse to be refused).
const NUMBER = /[ \t\n\r]*-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

// Where the value of the first member `"k":` of `t` starts and ends, and
// the value, if it is a number.
function member(t, k) {
  const name = needle(k);
  const at = t.indexOf(name);
  if (at < 0) return null;
  const start = at + name.length;
  NUMBER.lastIndex = start;
  const m = NUMBER.exec(t);
  return m ? [start, NUMBER.lastIndex, Number(m[0])] : null;
}

// `"k":`, made once per member name rather than on every call.
const needles = new Map();
function needle(k) {
  let n = needles.get(k);
  if (n === undefined) needles.set(k, (n = `"${k}":`));
  return n;
}
