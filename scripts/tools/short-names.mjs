// Applies wasm-opt's --minify-imports-and-exports-and-modules mapping to the
// wasm-bindgen glue, so that both sides use the short names.
//
//   node short-names.mjs MAPPING.json GLUE.js WASM [GLUE.d.ts]
//
// wasm-bindgen names every import `__wbg_<name>_<16 hex digits>`, in the
// wasm and again in the glue. Those digits are random to gzip: about 2 kB
// of the gzipped wasm, and more in the glue. wasm-opt shortens the names in
// the wasm and prints the mapping; this rewrites the glue to match, and
// fails when a name of the mapping is not where the glue should use it
// (a new wasm-bindgen that writes its glue differently), rather than ship
// a module whose imports do not link.
import { readFileSync, writeFileSync } from "node:fs";

const [mappingPath, gluePath, wasmPath, typesPath] = process.argv.slice(2);
if (!mappingPath || !gluePath || !wasmPath) {
  console.error("usage: node short-names.mjs MAPPING.json GLUE.js WASM");
  process.exit(2);
}
const mapping = JSON.parse(readFileSync(mappingPath, "utf8"));
let glue = readFileSync(gluePath, "utf8");
const problems = [];
const escape = (s) => s.replace(/[$]/g, "\\$");

// Replaces every match of `pattern` (a RegExp source with one group kept
// as the prefix) and counts them.
function replace(source, replacement, what) {
  let n = 0;
  glue = glue.replace(new RegExp(source, "g"), (_, prefix) => {
    n += 1;
    return prefix + replacement;
  });
  if (n === 0) problems.push(`${what} not found in the glue`);
  return n;
}

// The glue's own module (`./quota_widget_bg.js`) gives most imports. A JS
// function that needs no conversion either way (a number back, objects
// in) the wasm imports straight from its snippet module, whose namespace
// the glue passes as a module of its own: those imports move into the
// glue's module under their short names, as `e: import1.num`.
const counts = new Map();
for (const [m] of mapping.imports) counts.set(m, (counts.get(m) ?? 0) + 1);
const [module] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [];
const OWN = "const import0 = {\n        __proto__: null,";
if (glue.split(OWN).length !== 2) problems.push("the glue's own imports object (import0) is not where it should be");
for (const snippet of counts.keys()) {
  if (snippet === module) continue;
  // wasm-bindgen may name one snippet module more than once (one
  // namespace import per use, `import1`, `import2`): each is the same
  // module, so the first serves every import, and every entry goes.
  const entry = new RegExp(`\\n\\s*${JSON.stringify(snippet).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: (import\\d+),`, "g");
  const found = [...glue.matchAll(entry)];
  if (!found.length) {
    problems.push(`module ${snippet} is not in the glue's imports object`);
    continue;
  }
  glue = glue.replace(entry, "");
  const moved = mapping.imports.filter(([m]) => m === snippet).map(([, from, to]) => `\n        ${to}: ${found[0][1]}.${from},`);
  glue = glue.replace(OWN, OWN + moved.join(""));
}
// The module's new name, read from the minified wasm itself.
const wasmImports = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasmPath)));
const newModules = new Set(wasmImports.map((i) => i.module));
if (newModules.size !== 1) problems.push(`expected the wasm to import from one module, got ${[...newModules].join(", ")}`);
const [newModule] = newModules;
const newNames = new Set(wasmImports.map((i) => i.name));
for (const [, , to] of mapping.imports) {
  if (!newNames.has(to)) problems.push(`the wasm has no import named ${to}`);
}
if (newNames.size !== mapping.imports.length) problems.push(`the wasm has ${newNames.size} imports, the mapping ${mapping.imports.length}`);

for (const [m, from, to] of mapping.imports) {
  if (m !== module) continue;
  // The key of the imports object: `__wbg_new_d266d8be36dacc35: function(`.
  const n = replace(`(^|[\\s{,])${escape(from)}(?=\\s*:)`, to, `import ${from}`);
  if (n > 1) problems.push(`import ${from} is a key ${n} times`);
}
const quoted = JSON.stringify(module);
if (glue.split(quoted).length !== 2) problems.push(`module ${quoted} is not named exactly once in the glue`);
glue = glue.replace(quoted, JSON.stringify(newModule));
for (const [from, to] of mapping.exports) {
  // Exports are read as `wasm.<name>`; one the glue never reads is fine.
  glue = glue.replace(new RegExp(`(\\bwasm\\.)${escape(from)}\\b`, "g"), `$1${to}`);
}
// Anything left of an old name means a use that was not rewritten.
for (const [m, from] of mapping.imports) {
  if (m !== module) continue;
  if (new RegExp(`\\b${escape(from)}\\b`).test(glue)) problems.push(`import ${from} is still used by its old name`);
}
for (const [from] of mapping.exports) {
  if (new RegExp(`\\bwasm\\.${escape(from)}\\b`).test(glue)) problems.push(`export ${from} is still read by its old name`);
}
if (problems.length) {
  console.error(`[short-names] error: the glue does not match the mapping:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
writeFileSync(gluePath, glue);
// The declarations of what init() returns (InitOutput) name the exports too.
if (typesPath) {
  let types = readFileSync(typesPath, "utf8");
  for (const [from, to] of mapping.exports) {
    types = types.replace(new RegExp(`(\\breadonly )${escape(from)}(?=:)`, "g"), `$1${to}`);
  }
  writeFileSync(typesPath, types);
}
console.log(`[short-names] ${mapping.imports.length} imports, ${mapping.exports.length} exports, module "${module}" -> "${newModule}"`);
