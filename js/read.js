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

// A state's text cut around the values of its members `a` and `b` (those
// that change with every state: its revision and time), compared with the
// last state's cut `last`. When the pieces around the two values equal
// `last`'s, the two texts say the same but for those two members (each cut
// is right after the first `"a":` or `"b":` of its text, so equal pieces
// leave nothing else to differ), and the answer is those two values,
// `{ [a]: number, [b]: number }`: a state that repeats the last one is
// taken from them, without JSON.parse or reading the rest again (what the
// server sends when nothing shown changed). Otherwise the answer is the
// pieces, as `last` for the next state (slices of `t`, not copies), or
// undefined when either value is not a plain number. A state whose figures
// moved differs in its longest piece, where the comparison stops at the
// first difference.
export function cut(t, a, b, last) {
  if (typeof t !== "string") return undefined;
  const ra = member(t, a);
  const rb = member(t, b);
  if (!ra || !rb) return undefined;
  const [x, y] = ra[0] < rb[0] ? [ra, rb] : [rb, ra];
  const key = [t.slice(0, x[0]), t.slice(x[1], y[0]), t.slice(y[1])];
  // Equal pieces and a member named twice (JSON.parse takes the last,
  // this the first) would be the one way to mislead: looked for only here,
  // when the pieces are equal, as both texts then name it as often.
  if (last && key[2] === last[2] && key[0] === last[0] && key[1] === last[1] && once(t, a, ra) && once(t, b, rb)) {
    return { [a]: ra[2], [b]: rb[2] };
  }
  return key;
}

const once = (t, k, r) => t.indexOf(`"${k}":`, r[0]) < 0;

const NUMBER = /\s*-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

// Where the value of the first member `"k":` of `t` starts and ends, and
// the value, if it is a number.
function member(t, k) {
  const name = `"${k}":`;
  const at = t.indexOf(name);
  if (at < 0) return null;
  const start = at + name.length;
  NUMBER.lastIndex = start;
  const m = NUMBER.exec(t);
  return m ? [start, NUMBER.lastIndex, Number(m[0])] : null;
}
