// Every link of every document resolves (links.mjs says how each kind is
// checked): the repository's Markdown files (outside node_modules, target
// and pkg), the Markdown files that the packed package ships (its README,
// CHANGELOG.md, messages.md), whose relative links must exist inside the
// package, and the repository URLs of the crates' and the package's
// metadata. First, the checker itself against samples with broken links.
//
// Needs pkg/ (scripts/build-pkg) for the package's documents.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_URL, Site, checkSite, checkUrl, describe, packageSite, parseMarkdown, repositorySite } from "./links.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const PKG_DIR = path.join(ROOT, "pkg");

test("the checker finds every kind of broken link in a sample, and nothing else", () => {
  const a = [
    "# Sample",
    "",
    "## Same",
    "",
    "## Same",
    "",
    "## A `code` *heading*: with, punctuation!",
    "",
    '<a id="custom"></a>',
    "",
    "Good: [file](b.md), [folder](sub/), [anchor](b.md#part-two), [repeat](#same-1),",
    "[punctuation](#a-code-heading-with-punctuation), [html id](#custom), [root](/sub/c.md),",
    "[url](https://example.com/x?y=1#z), [loopback](http://127.0.0.1:8787/api), <https://example.org>,",
    "https://www.example.net/bare, [repo file](https://github.com/quota-widget/quota-widget/blob/main/b.md#part-two),",
    "[repo home](https://github.com/quota-widget/quota-widget#readme), [mail](mailto:someone@example.com),",
    "![image](sub/pic.png), [ref][r], `[in a code span](missing-span.md)`.",
    "",
    "```md",
    "[in a code block](missing-block.md)",
    "```",
    "",
    "Broken: [missing file](missing.md), [missing anchor](b.md#nope), [missing own anchor](#nope),",
    "[outside](../up.md), [no dot](https://example/x), [bad host](http://bad_host.com/),",
    "[other scheme](ftp://example.com/f), [repo missing](https://github.com/quota-widget/quota-widget/blob/main/nope.md),",
    "[repo anchor](https://github.com/quota-widget/quota-widget/blob/main/b.md#nope), ![missing image](sub/nope.png),",
    "[broken ref][bad], [empty anchor](b.md#), [case](#Same).",
    '<img src="gone.png">',
    "",
    "[r]: b.md#part-two",
    "[bad]: missing-ref.md",
    "",
  ].join("\n");
  const site = new Site(
    "repository",
    new Map([
      ["a.md", a],
      ["b.md", "# B\n\n## Part *two*\n"],
      ["sub/c.md", "# C\n"],
      ["sub/pic.png", null],
    ]),
  );
  const { problems, checked } = checkSite(site);
  const found = problems.map((p) => `${p.href} -> ${p.problem}`);
  assert.deepEqual(found, [
    "missing.md -> missing.md does not exist in the repository",
    'b.md#nope -> no heading or id "nope" in b.md',
    '#nope -> no heading or id "nope" in a.md',
    "../up.md -> points outside the repository",
    'https://example/x -> malformed host "example"',
    'http://bad_host.com/ -> malformed host "bad_host.com"',
    "ftp://example.com/f -> the scheme ftp: is not allowed in a document (only http, https, mailto)",
    "https://github.com/quota-widget/quota-widget/blob/main/nope.md -> nope.md does not exist in the repository (blob/main)",
    'https://github.com/quota-widget/quota-widget/blob/main/b.md#nope -> no heading or id "nope" in b.md',
    "sub/nope.png -> sub/nope.png does not exist in the repository",
    "missing-ref.md -> missing-ref.md does not exist in the repository",
    "b.md# -> empty anchor",
    '#Same -> no heading or id "Same" in a.md',
    "gone.png -> gone.png does not exist in the repository",
  ]);
  // Every good link above was checked too (and passed).
  assert.equal(checked, found.length + 16);
  assert.match(describe("repository", problems), /^repository: a\.md:22: link "missing\.md": missing\.md does not exist/);
});

test("the checker takes GitHub's heading slugs", () => {
  const { anchors } = parseMarkdown(
    ["# The `element`", "## Options", "## Options", "### Sign in first: `POST /api/session`", "Setext", "======", "## Größe & Ü"].join("\n"),
  );
  assert.deepEqual([...anchors], ["the-element", "options", "options-1", "sign-in-first-post-apisession", "setext", "größe--ü"]);
});

test("in the package, a relative link to a file only the repository has is broken", () => {
  const repo = new Site("repository", new Map([["docs/api.md", "# API\n"], ["js/README.md", ""]]));
  const pkg = new Site(
    "package",
    new Map([
      ["README.md", "[api](../docs/api.md) [same](docs/api.md) [messages](messages.md) [ok](" + REPO_URL + "/blob/main/docs/api.md#api)\n"],
      ["messages.md", "# Messages\n"],
    ]),
  );
  const { problems } = checkSite(pkg, { repo });
  assert.deepEqual(
    problems.map((p) => `${p.href} -> ${p.problem}`),
    ["../docs/api.md -> points outside the package", "docs/api.md -> docs/api.md does not exist in the package"],
  );
});

test("every link of the repository's Markdown files resolves", () => {
  const repo = repositorySite(ROOT);
  const files = repo.markdownFiles();
  // Not vacuous: the documents that must be there are.
  for (const must of ["README.md", "CHANGELOG.md", "js/README.md", "docs/api.md", "kling-sim/README.md"]) {
    assert.ok(files.includes(must), `${must} is among the checked files: ${files.join(", ")}`);
  }
  assert.ok(!files.some((f) => /(^|\/)(node_modules|target|pkg)\//.test(f)), "no build output or install is checked");
  const { problems, checked } = checkSite(repo);
  console.log(`# ${checked} links in ${files.length} Markdown files of the repository`);
  assert.equal(problems.length, 0, `broken links:\n${describe("repository", problems)}`);
  assert.ok(checked > 10, `only ${checked} links found`);
});

test("every link of the package's shipped Markdown resolves inside the package", () => {
  assert.ok(fs.existsSync(path.join(PKG_DIR, "package.json")), "pkg/ is built (scripts/build-pkg)");
  const repo = repositorySite(ROOT);
  const pkg = packageSite(PKG_DIR);
  const files = pkg.markdownFiles();
  for (const must of ["README.md", "CHANGELOG.md"]) {
    assert.ok(files.includes(must), `the package ships ${must}: ${files.join(", ")}`);
  }
  const { problems, checked } = checkSite(pkg, { repo });
  console.log(`# ${checked} links in ${files.length} Markdown files of the package (${files.join(", ")})`);
  assert.equal(problems.length, 0, `broken links:\n${describe("package", problems)}`);
});

test("the repository and home page URLs of the crates and the package are well formed and name files that exist", () => {
  const repo = repositorySite(ROOT);
  const urls = [];
  for (const manifest of ["Cargo.toml", "server/Cargo.toml", "kling-sim/Cargo.toml", "conformance/Cargo.toml"]) {
    const text = fs.readFileSync(path.join(ROOT, manifest), "utf8");
    const pkgSection = /^\[package\]\n([^]*?)(?=^\[|(?![^]))/m.exec(text)?.[1] ?? "";
    for (const key of ["repository", "homepage"]) {
      const value = new RegExp(`^${key} = "([^"]*)"`, "m").exec(pkgSection)?.[1];
      assert.ok(value, `${manifest} has a ${key}`);
      urls.push([`${manifest} ${key}`, value]);
    }
    assert.equal(/^repository = "([^"]*)"/m.exec(pkgSection)?.[1], REPO_URL, `${manifest}: repository`);
  }
  const pkgJson = JSON.parse(fs.readFileSync(path.join(ROOT, "js/package.json"), "utf8"));
  assert.equal(pkgJson.repository?.url, `git+${REPO_URL}.git`, "package.json repository");
  urls.push(["package.json homepage", pkgJson.homepage], ["package.json bugs", pkgJson.bugs?.url]);
  const problems = urls.map(([where, url]) => [where, url, checkUrl(url ?? "", repo)]).filter(([, , problem]) => problem);
  assert.deepEqual(problems, []);
  // The check can fail: a file of the repository that is not there.
  assert.match(checkUrl(`${REPO_URL}/blob/main/kling-sim/NOPE.md`, repo), /does not exist/);
});
