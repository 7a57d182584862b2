// A link checker for the project's Markdown: the repository's documents and
// the ones the npm package ships. links.test.js runs it.
//
// For every link of a document (inline, reference, autolink, a bare URL that
// GitHub would link, and href/src in HTML):
//
// - a relative path must name a file or folder of the same "site" (the
//   repository, or the packed package: a path that exists only in the
//   repository is broken on npm), and stay inside it;
// - an `#anchor` (alone, or after a Markdown file) must match a heading of
//   that document by GitHub's slug rules (github-slugger: lower case,
//   punctuation dropped, spaces to hyphens, repeats numbered -1, -2, ...) or
//   an HTML id/name in it;
// - an http(s) URL cannot be fetched here (no network): its form is checked
//   (parses, has a host with a dot, or is a loopback name), and a URL of this
//   repository's files on the main branch
//   (https://github.com/quota-widget/quota-widget/blob/main/PATH) must name
//   a file of the repository, and its anchor a heading there;
// - any other scheme than http, https and mailto is a problem.
//
// Code spans and code blocks are not links, as on GitHub.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import GithubSlugger from "github-slugger";
import MarkdownIt from "markdown-it";

/** The canonical repository. */
export const REPO_URL = "https://github.com/quota-widget/quota-widget";
/** Folders never part of the repository's documents: build output and installs. */
export const SKIPPED_DIRS = new Set(["node_modules", "target", "pkg", ".git"]);

// GitHub links bare URLs that start with a scheme or "www." (not bare
// domains such as quota.example.com), and e-mail addresses.
const markdown = new MarkdownIt({ html: true, linkify: true });
markdown.linkify.set({ fuzzyLink: false, fuzzyIP: false, fuzzyEmail: true });

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * A set of files that links can point into: `files` maps a relative path
 * (posix, no leading "./") to its text, or to null for a file that is not
 * read (not Markdown). Folders exist when a file is under them.
 */
export class Site {
  constructor(name, files) {
    this.name = name;
    this.files = files;
    this.dirs = new Set([""]);
    for (const file of files.keys()) {
      let dir = path.posix.dirname(file);
      while (dir !== "." && !this.dirs.has(dir)) {
        this.dirs.add(dir);
        dir = path.posix.dirname(dir);
      }
    }
    this.parsed = new Map();
  }

  has(p) {
    return this.files.has(p) || this.dirs.has(p);
  }

  isMarkdown(p) {
    return /\.md$/i.test(p) && this.files.has(p);
  }

  /** The Markdown files of the site. */
  markdownFiles() {
    return [...this.files.keys()].filter((p) => /\.md$/i.test(p)).sort();
  }

  /** Links and anchors of one of its Markdown files (parsed once). */
  document(p) {
    if (!this.parsed.has(p)) {
      const text = this.files.get(p);
      if (typeof text !== "string") throw new Error(`${this.name}: ${p} was not read`);
      this.parsed.set(p, parseMarkdown(text));
    }
    return this.parsed.get(p);
  }
}

/** The text of a heading's inline tokens, as GitHub renders it (tags and markup dropped). */
function inlineText(children) {
  let text = "";
  for (const child of children ?? []) {
    if (child.type === "text" || child.type === "code_inline") text += child.content;
    else if (child.type === "softbreak" || child.type === "hardbreak") text += " ";
    else if (child.children) text += inlineText(child.children);
  }
  return text;
}

/** href/src values and id/name anchors of an HTML fragment. */
function htmlLinks(html) {
  const noComments = html.replace(/<!--[^]*?-->/g, "");
  const links = [...noComments.matchAll(/\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi)].map((m) => m[1] ?? m[2]);
  const anchors = [...noComments.matchAll(/<[a-z][^>]*?\b(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi)].map((m) => m[1] ?? m[2]);
  return { links, anchors };
}

/**
 * The links of a Markdown text, each with its 1-based line, and the anchors
 * it defines (GitHub's heading slugs and HTML ids).
 */
export function parseMarkdown(text) {
  const tokens = markdown.parse(text, {});
  const slugger = new GithubSlugger();
  const anchors = new Set();
  const links = [];
  const add = (href, line, kind) => links.push({ href, line, kind });
  // A token without a line of its own (a table cell's text) is on the line
  // of the block token before it.
  let line = 1;
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i];
    if (token.map) line = token.map[0] + 1;
    if (token.type === "heading_open") {
      anchors.add(slugger.slug(inlineText(tokens[i + 1]?.children)));
    } else if (token.type === "html_block") {
      const html = htmlLinks(token.content);
      for (const href of html.links) add(href, line, "html");
      for (const anchor of html.anchors) anchors.add(anchor);
    } else if (token.type === "inline") {
      // The line of each link: the block's first line plus the line breaks before it.
      let at = line;
      for (const child of token.children ?? []) {
        if (child.type === "softbreak" || child.type === "hardbreak") {
          at += 1;
        } else if (child.type === "link_open") {
          add(child.attrGet("href"), at, child.markup === "linkify" ? "bare URL" : child.markup === "autolink" ? "autolink" : "link");
        } else if (child.type === "image") {
          add(child.attrGet("src"), at, "image");
        } else if (child.type === "html_inline") {
          const html = htmlLinks(child.content);
          for (const href of html.links) add(href, at, "html");
          for (const anchor of html.anchors) anchors.add(anchor);
        }
      }
    }
  }
  return { links, anchors };
}

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/**
 * Checks one link of `file` (a path of `site`). Returns a problem in words,
 * or null when the link resolves. `repo` is the repository's site, for URLs
 * of the repository's own files.
 */
export function checkLink(href, file, site, repo) {
  if (href === null || href === undefined || href.trim() === "") return "empty link";
  if (/\s/.test(href)) return "a link has no spaces (write %20)";
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(href)?.[1]?.toLowerCase();
  if (scheme === "http" || scheme === "https") return checkUrl(href, repo);
  if (scheme === "mailto") return /^mailto:[^@\s]+@[^@\s]+\.[^@\s]+$/i.test(href) ? null : "malformed e-mail address";
  if (scheme) return `the scheme ${scheme}: is not allowed in a document (only http, https, mailto)`;
  if (href.startsWith("//")) return "a protocol-relative URL: write https://";

  const hash = href.indexOf("#");
  const rawPath = (hash < 0 ? href : href.slice(0, hash)).replace(/\?.*$/, "");
  const rawAnchor = hash < 0 ? null : href.slice(hash + 1);
  const target = decode(rawPath);
  if (target === null) return "malformed percent-encoding";
  let resolved;
  if (target === "") {
    resolved = file;
  } else {
    const joined = target.startsWith("/") ? target.slice(1) : path.posix.join(path.posix.dirname(file), target);
    resolved = path.posix.normalize(joined).replace(/\/+$/, "");
    if (resolved === "." || resolved === "") resolved = "";
    if (resolved === ".." || resolved.startsWith("../")) return `points outside the ${site.name}`;
    if (!site.has(resolved)) {
      return `${resolved || "."} does not exist in the ${site.name}`;
    }
  }
  return rawAnchor === null ? null : checkAnchor(rawAnchor, resolved, site);
}

function checkAnchor(rawAnchor, target, site) {
  const anchor = decode(rawAnchor);
  if (anchor === null) return "malformed percent-encoding in the anchor";
  if (anchor === "") return "empty anchor";
  // Only a Markdown document's anchors are known here.
  if (!site.isMarkdown(target)) return null;
  const { anchors } = site.document(target);
  if (anchors.has(anchor)) return null;
  return `no heading or id "${anchor}" in ${target}`;
}

/** The form of an http(s) URL; a URL of the repository's files must name one. */
export function checkUrl(href, repo) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return "malformed URL";
  }
  const host = url.hostname;
  if (!host) return "URL without a host";
  if (!LOOPBACK.has(host) && !/^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$/i.test(host)) {
    return `malformed host ${JSON.stringify(host)}`;
  }
  if (url.username || url.password) return "URL with credentials";
  const own = `${REPO_URL.replace(/^https:\/\/github\.com/, "")}/`;
  if (host === "github.com" && url.pathname.startsWith(own) && repo) {
    const [kind, ref, ...rest] = url.pathname.slice(own.length).split("/");
    if ((kind === "blob" || kind === "tree") && ref === "main") {
      const file = decode(rest.join("/"))?.replace(/\/+$/, "") ?? null;
      if (file === null) return "malformed percent-encoding";
      if (!repo.has(file)) return `${file || "."} does not exist in the repository (${kind}/main)`;
      if (url.hash.length > 1) return checkAnchor(url.hash.slice(1), file, repo);
    }
  }
  return null;
}

/** Every problem of the site's Markdown files (or of `files`, a subset). */
export function checkSite(site, { repo = site, files = site.markdownFiles() } = {}) {
  const problems = [];
  let checked = 0;
  for (const file of files) {
    for (const link of site.document(file).links) {
      checked += 1;
      const problem = checkLink(link.href, file, site, repo);
      if (problem) problems.push({ file, line: link.line, href: link.href, kind: link.kind, problem });
    }
  }
  return { problems, checked };
}

/** One line per problem, for a failure message. */
export function describe(siteName, problems) {
  return problems.map((p) => `${siteName}: ${p.file}:${p.line}: ${p.kind} ${JSON.stringify(p.href)}: ${p.problem}`).join("\n");
}

/**
 * The repository as a site: the files git tracks or would track (tracked,
 * and untracked but not ignored), else, without git, a walk that skips
 * SKIPPED_DIRS. Markdown files are read.
 */
export function repositorySite(root) {
  let list;
  try {
    list = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      maxBuffer: 64 * 1024 * 1024,
    })
      .split("\0")
      .filter(Boolean);
  } catch {
    list = walk(root);
  }
  const files = new Map();
  for (const rel of list) {
    if (rel.split("/").some((part) => SKIPPED_DIRS.has(part))) continue;
    const abs = path.join(root, rel);
    // A tracked file deleted in the work tree is gone.
    if (!fs.existsSync(abs)) continue;
    files.set(rel, /\.md$/i.test(rel) ? fs.readFileSync(abs, "utf8") : null);
  }
  return new Site("repository", files);
}

function walk(root, rel = "") {
  const out = [];
  for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    if (SKIPPED_DIRS.has(entry.name)) continue;
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(root, child));
    else out.push(child);
  }
  return out;
}

/**
 * The packed package as a site: the files `npm pack` puts in the tarball
 * (its --dry-run listing, from pkgDir), Markdown files read from pkgDir.
 */
export function packageSite(pkgDir) {
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: pkgDir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const files = new Map();
  for (const { path: rel } of packed.files) {
    files.set(rel, /\.md$/i.test(rel) ? fs.readFileSync(path.join(pkgDir, rel), "utf8") : null);
  }
  return new Site("package", files);
}
