// Extracts the usage code of the README (its section "## Using the package")
// and of the package's own README (js/README.md, every block) into small
// apps: each heading's ```html, ```js and ```ts blocks are one app, each block
// one file, named by its first line (`<!-- index.html -->`, `// main.js`).
// A block whose info string says `not-run` (```ts not-run) is left out: the
// configuration of another tool (a bundler's dev-server proxy), which is no
// part of a page.
//
//   node extract.mjs OUT_DIR    writes the apps into OUT_DIR/apps/ and lists them
//
// readme.test.js type-checks the apps with tsc --strict, builds each with
// Vite and runs it in Chromium against the reference quota server.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");

/**
 * Where usage code is: the file, and which of its sections (a level-2
 * heading's text; null: the whole file).
 */
export const SOURCES = [
  { file: "README.md", section: "Using the package" },
  { file: "js/README.md", section: null },
];

const LANGS = { js: "js", javascript: "js", mjs: "js", ts: "ts", typescript: "ts", html: "html" };
const NAME = {
  js: /^\/\/\s*([\w.-]+\.(?:js|mjs))\b/,
  ts: /^\/\/\s*([\w.-]+\.ts)\b/,
  html: /^<!--\s*([\w.-]+\.html)\b/,
};

/** An error that names the place in the Markdown file. */
function fail(file, line, message) {
  throw new Error(`${file}:${line}: ${message}`);
}

/**
 * The code blocks of one Markdown text: language, file name, code (without
 * the fence), the line of its first code line, and the headings above it.
 */
export function codeBlocks(markdown, file) {
  const lines = markdown.split("\n");
  const blocks = [];
  const headings = [];
  let fence = null;
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    if (fence) {
      if (line.trimEnd() === fence.marker) {
        blocks.push({ ...fence.block, code: lines.slice(fence.start, i).join("\n") + "\n" });
        fence = null;
      }
      continue;
    }
    const open = /^(```+|~~~+)\s*([\w-]*)(.*)$/.exec(line);
    if (open) {
      fence = {
        marker: open[1],
        start: i + 1,
        block: { file, lang: open[2].toLowerCase(), info: open[3].trim(), line: i + 2, headings: headings.map((h) => ({ ...h })) },
      };
      continue;
    }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const level = heading[1].length;
      while (headings.length && headings[headings.length - 1].level >= level) headings.pop();
      headings.push({ level, text: heading[2] });
    }
  }
  if (fence) fail(file, fence.block.line - 1, "a code fence is never closed");
  return blocks;
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

/**
 * The apps of one source: its js/ts/html blocks, in its section, grouped by
 * the nearest heading. Throws when a block has no file name, a name repeats
 * in an app, an app has no page, or a script is not loaded by its page.
 */
export function appsOf({ file, section }, markdown = fs.readFileSync(path.join(ROOT, file), "utf8")) {
  if (section !== null && !markdown.split("\n").some((line) => line.trimEnd() === `## ${section}`)) {
    throw new Error(`${file}: no section "## ${section}"`);
  }
  const sectionOf = (block) => block.headings.find((h) => h.level === 2)?.text;
  const inSection = codeBlocks(markdown, file).filter((b) => section === null || sectionOf(b) === section);
  const apps = new Map();
  for (const block of inSection) {
    const lang = LANGS[block.lang];
    if (!lang || block.info.split(/\s+/).includes("not-run")) continue;
    const first = block.code.split("\n")[0];
    const match = NAME[lang].exec(first.trim());
    if (!match) {
      fail(file, block.line, `a \`\`\`${block.lang} block must start with its file name (${lang === "html" ? "<!-- index.html -->" : `// main.${lang}`}), found ${JSON.stringify(first)}`);
    }
    const heading = block.headings[block.headings.length - 1]?.text ?? file;
    const key = block.headings.map((h) => h.text).join(" / ");
    if (!apps.has(key)) {
      apps.set(key, { source: file, heading, id: `${slug(file)}-${apps.size + 1}-${slug(heading)}`, files: [] });
    }
    const app = apps.get(key);
    const name = match[1];
    if (app.files.some((f) => f.name === name)) fail(file, block.line, `${name} appears twice under "${heading}"`);
    app.files.push({ name, lang, code: block.code, line: block.line });
  }
  for (const app of apps.values()) checkApp(app);
  return [...apps.values()];
}

/** Every script is loaded by the page or imported by another script, and everything loaded exists. */
function checkApp(app) {
  const pages = app.files.filter((f) => f.lang === "html");
  const scripts = app.files.filter((f) => f.lang !== "html");
  const where = (f) => `${app.source}:${f.line}`;
  if (pages.length === 0) {
    throw new Error(`${where(app.files[0])}: the code under "${app.heading}" has no \`\`\`html page to run it in`);
  }
  const loaded = new Set();
  for (const page of pages) {
    for (const [, src] of page.code.matchAll(/<script\b[^>]*\bsrc="\/?(?:\.\/)?([^"]+)"/g)) {
      if (!scripts.some((s) => s.name === src)) throw new Error(`${where(page)}: ${page.name} loads ${src}, which no block under "${app.heading}" defines`);
      loaded.add(src);
    }
  }
  for (const script of scripts) {
    for (const [, spec] of script.code.matchAll(/\bfrom\s+"\.\/([^"]+)"|\bimport\s*\(?\s*"\.\/([^"]+)"/g)) {
      loaded.add(spec);
    }
  }
  for (const script of scripts) {
    if (!loaded.has(script.name)) throw new Error(`${where(script)}: ${script.name} is loaded by no page or script under "${app.heading}"`);
  }
}

/** A fragment becomes the body of a minimal document; a full document stays as it is. */
export function pageHtml(app, code) {
  if (/^\s*(<!--[^]*?-->\s*)?<!doctype/i.test(code)) return code;
  return `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${app.heading}</title>\n</head>\n<body>\n${code}</body>\n</html>\n`;
}

/**
 * Writes every app into `dir/apps/<id>/` and returns the apps, each with
 * its folder, plus `origin(relativePath)`: the Markdown file and line of a
 * written file's first line.
 */
export function writeApps(dir, sources = SOURCES) {
  const apps = sources.flatMap((source) => appsOf(source));
  const origins = new Map();
  for (const app of apps) {
    app.dir = path.join(dir, "apps", app.id);
    fs.mkdirSync(app.dir, { recursive: true });
    for (const f of app.files) {
      const rel = path.posix.join("apps", app.id, f.name);
      fs.writeFileSync(path.join(dir, rel), f.lang === "html" ? pageHtml(app, f.code) : f.code);
      // A wrapped page has 6 lines before the block; scripts are written as they are.
      origins.set(rel, { file: app.source, line: f.line, offset: f.lang === "html" && !/<!doctype/i.test(f.code) ? 6 : 0 });
    }
  }
  return { apps, origins };
}

/** Rewrites tsc's `apps/x/main.js(12,5): error ...` lines to name the Markdown line. */
export function mapDiagnostics(output, origins) {
  return output.replace(/^(apps\/[^(\s]+)\((\d+),(\d+)\)/gm, (all, rel, line, column) => {
    const origin = origins.get(rel);
    if (!origin) return all;
    return `${origin.file}:${origin.line + Number(line) - 1 - origin.offset}:${column} (${rel})`;
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node extract.mjs OUT_DIR");
    process.exit(2);
  }
  const { apps } = writeApps(path.resolve(out));
  for (const app of apps) {
    console.log(`${app.dir}: ${app.source} "${app.heading}": ${app.files.map((f) => `${f.name} (line ${f.line})`).join(", ")}`);
  }
}
