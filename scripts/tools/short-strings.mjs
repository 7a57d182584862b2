// Gives the wasm-bindgen glue's string decoding a path for short ASCII
// strings, which is nearly every string the widget hands to the page (a
// text, a class, an attribute's name or value): a loop over the bytes
// instead of TextDecoder.decode, whose call costs about 2.5 times as much
// per short string in Chromium (measured: 170 against 420 ns). Longer
// strings and any with a byte over 127 still go to TextDecoder.
//
//   node short-strings.mjs GLUE.js
//
// Fails, rather than ship the glue unchanged, when the function it
// rewrites is not exactly as wasm-bindgen writes it (a new wasm-bindgen
// that writes its glue differently).
import { readFileSync, writeFileSync } from "node:fs";

const [gluePath] = process.argv.slice(2);
if (!gluePath) {
  console.error("usage: node short-strings.mjs GLUE.js");
  process.exit(2);
}
const FROM = `function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
}`;
const TO = `function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    const bytes = getUint8ArrayMemory0();
    if (len < 64) {
        let s = "";
        for (let i = ptr, end = ptr + len; i < end; i++) {
            const c = bytes[i];
            if (c > 127) return decodeText(bytes.subarray(ptr, end));
            s += String.fromCharCode(c);
        }
        return s;
    }
    return decodeText(bytes.subarray(ptr, ptr + len));
}`;
const glue = readFileSync(gluePath, "utf8");
const n = glue.split(FROM).length - 1;
if (n !== 1) {
  console.error(`[short-strings] error: getStringFromWasm0 is ${n === 0 ? "not" : `${n} times`} in ${gluePath} as wasm-bindgen 0.2.130 writes it`);
  process.exit(1);
}
writeFileSync(gluePath, glue.replace(FROM, TO));
console.log("[short-strings] getStringFromWasm0 decodes short ASCII strings itself");
