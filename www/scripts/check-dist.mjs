// Runs after `vite build`: the quota server serves dist/ under
// `script-src 'self' 'wasm-unsafe-eval'; style-src 'self'`, which forbids
// inline scripts, inline styles and style attributes. Fail the build if Vite
// produced any, or if the widget's .wasm did not make it into dist/.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const html = readFileSync(join(dist, "index.html"), "utf8");
const problems = [];

for (const match of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
  const [, attributes, body] = match;
  if (!/\bsrc\s*=/.test(attributes) || body.trim() !== "") problems.push(`inline <script${attributes}>`);
}
if (/<style\b/i.test(html)) problems.push("inline <style> element");
if (/\sstyle\s*=/i.test(html)) problems.push("style= attribute");
if (/\son[a-z]+\s*=/i.test(html)) problems.push("inline event handler attribute (on...=)");

// Every local asset that index.html references must exist.
for (const match of html.matchAll(/\b(?:src|href)="(\/[^"]+)"/g)) {
  if (!existsSync(join(dist, match[1]))) problems.push(`missing ${match[1]}`);
}

const assets = readdirSync(join(dist, "assets"));
const wasm = assets.filter((name) => name.endsWith(".wasm"));
if (wasm.length !== 1) problems.push(`expected one .wasm in dist/assets, found ${wasm.length}`);
const js = assets.filter((name) => name.endsWith(".js"));
if (wasm.length === 1 && !js.some((name) => readFileSync(join(dist, "assets", name), "utf8").includes(wasm[0]))) {
  problems.push(`no script in dist/assets references ${wasm[0]}`);
}

if (problems.length) {
  console.error(`check-dist: dist/index.html breaks the strict CSP or is incomplete:\n  - ${problems.join("\n  - ")}`);
  process.exit(1);
}
console.log(`check-dist: ok (no inline script or style; ${wasm[0]}; ${assets.length} assets)`);
