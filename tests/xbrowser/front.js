// The front: a small HTTP server on 127.0.0.1 in front of quota-server, so
// that the suite can do over classic WebDriver what Playwright does with
// init scripts and routes:
// - it adds <script src="/__xb/watch.js"> at the top of every HTML page it
//   passes on, so that the page's error and console hooks run before the app
//   (classic WebDriver has no way to run a script before a page's own);
// - the hooks report to /__xb/report, so that nothing is lost when a window
//   closes or navigates;
// - it can hold POST /api/generations until the test lets it go (a slow
//   request, to see a hold before the server confirms it);
// - it serves the <quota-widget> page (pages/element.html) and the built
//   package (pkg/) on the server's origin, under the server's CSP.
// Everything else, the event stream included, streams through unchanged.
import { createServer, request as httpRequest, Agent } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const PAGES = join(HERE, "pages");
const TYPES = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".html": "text/html; charset=utf-8",
};
// The reference server's policy (server/src/http.rs), for the pages served here.
const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const WATCH_TAG = '<script src="/__xb/watch.js"></script>';

/**
 * Starts the front for `server` ({ port }) with the package directory
 * `pkgDir`. Returns { url, problems, holdGenerations(), close() }.
 */
export async function startFront(server, { pkgDir }) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const problems = [];
  let held = null; // a promise that POST /api/generations waits on, or null

  /** A file of pages/ or pkg/; a page gets the watch script, and `edit` if given. */
  const serveFile = (res, file, edit = (html) => html) => {
    if (!file || !existsSync(file)) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, {
      "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
      "Content-Security-Policy": CSP,
      "Cache-Control": "no-store",
    });
    if (extname(file) === ".html") res.end(edit(readFileSync(file, "utf8")).replace("<head>", `<head>${WATCH_TAG}`));
    else res.end(readFileSync(file));
  };

  const own = (req, res, url) => {
    if (url.pathname === "/__xb/report" && req.method === "POST") {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        try {
          problems.push(JSON.parse(body));
        } catch {
          problems.push({ id: `unreadable-${problems.length}`, kind: "report", message: body.slice(0, 500) });
        }
        res.writeHead(204).end();
      });
      return;
    }
    if (url.pathname.startsWith("/__xb/pkg/")) {
      const file = normalize(join(pkgDir, url.pathname.slice("/__xb/pkg/".length)));
      return serveFile(res, file.startsWith(pkgDir + sep) ? file : null);
    }
    const file = normalize(join(PAGES, url.pathname.slice("/__xb/".length)));
    // A page's language may come from the query: <html lang="...">.
    const lang = url.searchParams.get("lang");
    const setLang = (html) => (lang && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(lang) ? html.replace('lang="en"', `lang="${lang}"`) : html);
    return serveFile(res, file.startsWith(PAGES + sep) ? file : null, setLang);
  };

  const pass = async (req, res, url) => {
    if (held && req.method === "POST" && url.pathname === "/api/generations") await held;
    const upstream = httpRequest(
      { host: "127.0.0.1", port: server.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        const type = answer.headers["content-type"] ?? "";
        if (req.method === "GET" && type.startsWith("text/html")) {
          // A page: buffered, the watch script added first in <head>.
          const chunks = [];
          answer.on("data", (c) => chunks.push(c));
          answer.on("end", () => {
            const html = Buffer.concat(chunks).toString("utf8").replace(/<head([^>]*)>/i, (m) => m + WATCH_TAG);
            const headers = { ...answer.headers };
            delete headers["content-length"];
            delete headers["transfer-encoding"];
            headers["content-length"] = Buffer.byteLength(html);
            res.writeHead(answer.statusCode, headers).end(html);
          });
          return;
        }
        res.writeHead(answer.statusCode, answer.headers);
        // Server-sent events go out as they come.
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    upstream.on("error", (error) => {
      if (!res.headersSent) res.writeHead(502, { "Content-Type": "text/plain" });
      res.end(`front: ${error.message}`);
    });
    // A closed tab ends its event stream at the server too.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  const http = createServer((req, res) => {
    const url = new URL(req.url, "http://front.invalid");
    if (url.pathname.startsWith("/__xb/")) own(req, res, url);
    else pass(req, res, url);
  });
  await new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", resolve);
  });
  const { port } = http.address();

  return {
    url: `http://127.0.0.1:${port}`,
    problems,
    /** Holds every POST /api/generations until the returned function is called. */
    holdGenerations() {
      let release;
      held = new Promise((resolve) => (release = resolve));
      return () => {
        held = null;
        release();
      };
    },
    async close() {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
      agent.destroy();
    },
  };
}
