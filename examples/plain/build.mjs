// No bundler: the page, its script and its stylesheet, plus the package's
// files as it ships them, copied into dist/ for any static file server.
// The browser loads them by relative URL, since a bare "quota-widget"
// specifier would need an import map, and an inline import map is an inline
// script that a strict Content-Security-Policy refuses.
import { cpSync, existsSync, rmSync } from "node:fs";

const pkg = "node_modules/quota-widget";
if (!existsSync(`${pkg}/package.json`)) {
  console.error(`build: ${pkg} is missing: npm install quota-widget first`);
  process.exit(1);
}
rmSync("dist", { recursive: true, force: true });
for (const file of ["index.html", "app.js", "app.css"]) cpSync(file, `dist/${file}`);
cpSync(pkg, "dist/quota-widget", { recursive: true });
console.log("build: dist/ ready");
