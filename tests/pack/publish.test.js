// The package is ready to publish: the `npm pack` tarball of pkg/ has its
// licences, changelog and repository links, a semver version that is the
// crate's, and three tools find nothing wrong with it:
//
// - `npm publish --dry-run` (the tarball, with a throwaway user config: no
//   login, no token, nothing published); any warning or error but the
//   notice that a real publish needs a login fails the test;
// - publint, every message down to suggestions;
// - @arethetypeswrong/cli (attw) with the esm-only profile (the package is
//   ES modules only, so CommonJS resolutions are not judged), over every
//   entry of package.json's `exports` that resolves to JavaScript or types;
//   the entries that are assets (the stylesheet, the .wasm) have no types
//   to check and are left out, as read from `exports`, not listed here.
//
// Each tool is also run on a broken sample package, which it must fault.
// Offline but for the npm registry (npm publish --dry-run asks it whether
// the version exists). Needs pkg/ (scripts/build-pkg).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { publint } from "publint";
import { formatMessage } from "publint/utils";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const PKG_DIR = path.join(ROOT, "pkg");
const ATTW = path.join(HERE, "node_modules", "@arethetypeswrong", "cli", "dist", "index.js");
const REPO_URL = "https://github.com/quota-widget/quota-widget";
// semver.org's own expression for a valid version.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

let tmp;
let tarball;
let unpacked;
let pkg;

/** Packs `dir` into `dest`; returns the tarball's path. */
function pack(dir, dest) {
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dest], {
      cwd: dir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  return path.join(dest, packed.filename);
}

before(() => {
  assert.ok(fs.existsSync(path.join(PKG_DIR, "package.json")), "pkg/ is built (scripts/build-pkg)");
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "qw-publish-")));
  tarball = pack(PKG_DIR, tmp);
  unpacked = path.join(tmp, "unpacked");
  fs.mkdirSync(unpacked);
  execFileSync("tar", ["-xzf", tarball, "-C", unpacked]);
  pkg = JSON.parse(fs.readFileSync(path.join(unpacked, "package", "package.json"), "utf8"));
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** `npm publish TARBALL --dry-run` as nobody: its exit status, output, and every warning or error it printed. */
function publishDryRun(file) {
  const userconfig = path.join(tmp, "throwaway-npmrc");
  fs.writeFileSync(userconfig, "");
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_config_/i.test(key)));
  const run = spawnSync("npm", ["publish", file, "--dry-run", "--userconfig", userconfig, "--loglevel", "warn"], {
    cwd: tmp,
    env,
    encoding: "utf8",
    timeout: 120_000,
  });
  const output = `${run.stdout}\n${run.stderr}`;
  // The one notice a dry run always prints without a login: a real publish would need one.
  const loginNotice = /^npm warn publish This command requires you to be logged in to .* \(dry-run\)$/;
  const problems = output
    .split("\n")
    .filter((line) => /^npm (warn|error|ERR!)/i.test(line) && !loginNotice.test(line));
  return { status: run.status, output, problems };
}

/** publint's messages (suggestions too) on a tarball, in words. */
async function publintMessages(file) {
  const bytes = fs.readFileSync(file);
  const { messages, pkg: manifest } = await publint({
    pack: { tarball: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) },
    level: "suggestion",
    strict: true,
  });
  return messages.map((m) => `${m.type}: ${formatMessage(m, manifest)}`);
}

/** Every path a value of `exports` can resolve to. */
function targets(value) {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(targets);
  if (value && typeof value === "object") return Object.values(value).flatMap(targets);
  return [];
}

/** The `exports` entries that resolve to JavaScript, declarations or JSON, and those that are assets. */
function entries(manifest) {
  const code = [];
  const assets = [];
  for (const [key, value] of Object.entries(manifest.exports ?? {})) {
    const isCode = targets(value).some((t) => /\.(?:[cm]?js|d\.[cm]?ts|json)$/.test(t));
    (isCode ? code : assets).push(key);
  }
  return { code, assets };
}

/** attw on a tarball with the esm-only profile: its exit status, the entries it checked, and its problems. */
function attw(file, exclude) {
  const args = [ATTW, file, "--profile", "esm-only", "--format", "json", "--no-color"];
  if (exclude.length) args.push("--exclude-entrypoints", ...exclude);
  const run = spawnSync(process.execPath, args, { cwd: tmp, encoding: "utf8", timeout: 120_000 });
  let analysis = {};
  try {
    ({ analysis } = JSON.parse(run.stdout));
  } catch {
    assert.fail(`attw printed no JSON (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
  }
  // The esm-only profile does not judge CommonJS resolutions (node10, node16 from CJS).
  const ignored = new Set(["node10", "node16-cjs"]);
  const problems = (analysis.problems ?? []).filter((p) => !ignored.has(p.resolutionKind));
  return { status: run.status, checked: Object.keys(analysis.entrypoints ?? {}), problems, stderr: run.stderr };
}

test("the tarball has the licences, the changelog, the README and the repository links", () => {
  const files = (f) => fs.readFileSync(path.join(unpacked, "package", f), "utf8");
  assert.equal(pkg.license, "MIT OR Apache-2.0");
  for (const [shipped, source] of [
    ["LICENSE-MIT", "LICENSE-MIT"],
    ["LICENSE-APACHE", "LICENSE-APACHE"],
    ["CHANGELOG.md", "CHANGELOG.md"],
    ["README.md", "js/README.md"],
  ]) {
    assert.ok(fs.existsSync(path.join(unpacked, "package", shipped)), `the tarball has ${shipped}`);
    assert.equal(files(shipped), fs.readFileSync(path.join(ROOT, source), "utf8"), `${shipped} is ${source} as it is`);
  }
  assert.match(files("LICENSE-MIT"), /^MIT License\n\nCopyright \(c\) the quota-widget authors\n/);
  assert.match(files("LICENSE-APACHE"), /Apache License\s+Version 2\.0, January 2004/);
  assert.match(files("LICENSE-APACHE"), /Copyright the quota-widget authors/);
  assert.deepEqual(pkg.repository, { type: "git", url: `git+${REPO_URL}.git` });
  assert.equal(pkg.homepage, `${REPO_URL}#readme`);
  assert.deepEqual(pkg.bugs, { url: `${REPO_URL}/issues` });
});

test("the version is semver, the crate's, and the changelog has it below Unreleased", () => {
  assert.match(pkg.version, SEMVER, `${pkg.version} is a semantic version`);
  const cargo = fs.readFileSync(path.join(ROOT, "Cargo.toml"), "utf8");
  const section = /^\[package\]\n([^]*?)(?=^\[|(?![^]))/m.exec(cargo)?.[1] ?? "";
  assert.equal(pkg.version, /^version = "([^"]+)"/m.exec(section)?.[1], "the package's version is Cargo.toml's [package] version");
  const changelog = fs.readFileSync(path.join(ROOT, "CHANGELOG.md"), "utf8");
  const versions = [...changelog.matchAll(/^## \[?([^\]\s]+)\]?/gm)].map((m) => m[1]);
  assert.equal(versions[0], "Unreleased", "the changelog's first section is Unreleased");
  assert.ok(versions.includes(pkg.version), `the changelog has a section for ${pkg.version}: ${versions.join(", ")}`);
  for (const v of versions.slice(1)) assert.match(v, SEMVER, `changelog section ${v} is a semantic version`);
});

test("npm publish --dry-run: no warning, no error, no login needed", () => {
  const run = publishDryRun(tarball);
  assert.equal(run.status, 0, run.output);
  assert.deepEqual(run.problems, [], run.output);
  assert.match(run.output, new RegExp(`\\+ ${pkg.name}@${pkg.version.replace(/\./g, "\\.")}`), run.output);
  assert.match(run.output, /\(dry-run\)/);
});

test("publint: no error, warning or suggestion", async () => {
  assert.deepEqual(await publintMessages(tarball), []);
});

test("arethetypeswrong (esm-only profile): every code entry of exports resolves with the right types", () => {
  const { code, assets } = entries(pkg);
  assert.ok(code.includes("."), `the main entry is among ${code.join(", ")}`);
  const run = attw(tarball, assets);
  assert.deepEqual(run.problems, [], JSON.stringify(run.problems, null, 2));
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual([...run.checked].sort(), [...code].sort(), "attw checked every code entry");
  console.log(`# attw checked ${run.checked.join(", ")}; assets left out: ${assets.join(", ") || "none"}`);
});

test("the three tools fault a broken sample package", async () => {
  // ESM code with CommonJS declarations (attw: FalseCJS), a bin that is not
  // in the tarball (npm warns, publint errs).
  const dir = path.join(tmp, "broken");
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify({
      name: "quota-widget",
      version: "0.0.1",
      type: "module",
      license: "MIT",
      bin: "./missing.js",
      exports: { ".": { types: "./index.d.cts", default: "./index.js" }, "./style.css": "./style.css" },
      files: ["index.js", "index.d.cts", "style.css"],
    }),
  );
  fs.writeFileSync(path.join(dir, "index.js"), "export const x = 1;\n");
  fs.writeFileSync(path.join(dir, "index.d.cts"), "export declare const x: number;\n");
  fs.writeFileSync(path.join(dir, "style.css"), "p { color: red; }\n");
  const broken = pack(dir, path.join(tmp));

  const published = publishDryRun(broken);
  assert.ok(published.problems.some((line) => /missing\.js/.test(line)), published.output);

  const messages = await publintMessages(broken);
  assert.ok(messages.some((m) => /missing\.js/.test(m)), messages.join("\n"));

  const sample = entries({ exports: { ".": { types: "./index.d.cts", default: "./index.js" }, "./style.css": "./style.css" } });
  assert.deepEqual(sample, { code: ["."], assets: ["./style.css"] });
  const run = attw(broken, sample.assets);
  assert.notEqual(run.status, 0);
  assert.ok(run.problems.some((p) => p.kind === "FalseCJS"), JSON.stringify(run.problems));
});
