// End-to-end: the dashboard behind the proxies that users put in front of
// the quota server, in Chromium, several tabs of one browser sharing one
// event stream.
//
// - Vite's dev-server proxy, exactly as examples/react/vite.config.ts
//   configures it (`npm run dev`), serving the React example. That proxy
//   passes a response's headers on only with its first body byte, so a
//   stream that writes nothing when it opens looks unopened in the browser.
//   The server pings every 5 s, its default: closing the leading tab must
//   leave every other tab live again within 1 s.
// - nginx with the configuration of docs/deploy.md, extracted from the
//   document and run with only its addresses, port and certificate
//   replaced (HTTPS, as written): live updates, a submit and a tab handover
//   through it, over HTTP/2 and over HTTP/1.1. Then that configuration made
//   to buffer the stream: a change must be seen held back, the proof that
//   the checks before would catch a buffering configuration.
//
// Needs: scripts/build-pkg, scripts/examples (the React example's
// node_modules), www/dist, the quota-server binary, Chromium, nginx and
// openssl (a throwaway certificate).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CHROMIUM,
  ROOT,
  instrumentStreams,
  watchLiveAgain,
  SERVER_BIN,
  STATIC_DIR,
  apiOk,
  changeLimit,
  createAccount,
  freePort,
  launchBrowser,
  newContext,
  signIn,
  sleep,
  startChild,
  startServer,
  submitAndWaitRunning,
  tempDir,
  waitForLive,
} from "./harness.js";

const REACT = join(ROOT, "examples/react");
const DEPLOY_MD = join(ROOT, "docs/deploy.md");
const NGINX = process.env.QW_NGINX ?? "/usr/sbin/nginx";
/** The quota server's own default (`--ping-ms`): a proxy that waits for a ping waits this long. */
const SERVER_DEFAULT_PING_MS = 5_000;
/** How soon every remaining tab must be live again after the leading tab closed, and a change shown. */
const WITHIN_MS = 1_000;


function checkPrerequisites({ nginx }) {
  const missing = [];
  if (!existsSync(SERVER_BIN)) missing.push(`${SERVER_BIN} (cargo build -p quota-server, or QW_SERVER_BIN)`);
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (scripts/setup installs Debian's chromium)`);
  if (!existsSync(join(REACT, "node_modules/vite")) || !existsSync(join(REACT, "node_modules/quota-widget/package.json"))) {
    missing.push(`${REACT}/node_modules with vite and quota-widget (scripts/build-pkg, then scripts/examples)`);
  }
  if (nginx) {
    if (!existsSync(join(STATIC_DIR, "index.html"))) missing.push(`${STATIC_DIR}/index.html (npm ci && npm run build in www/)`);
    if (!existsSync(NGINX)) missing.push(`${NGINX} (apt-get install nginx; scripts/setup does it), or QW_NGINX`);
  }
  if (missing.length) throw new Error(`prerequisites missing:\n  ${missing.join("\n  ")}`);
}


const openStreams = (page) => page.evaluate(() => window.__qwOpenStreams());

/** The one tab that holds an event stream; throws unless exactly one does, with one stream. */
async function leaderOf(pages) {
  const counts = await Promise.all(pages.map(openStreams));
  const leaders = pages.filter((_, i) => counts[i] > 0);
  assert.equal(leaders.length, 1, `exactly one tab holds a stream, as the package does (per tab: ${counts.join(", ")})`);
  assert.equal(counts.reduce((a, b) => a + b, 0), 1, "and only one stream");
  return leaders[0];
}

const bump = changeLimit;

/**
 * Makes a change on the server and returns, per tab, how many milliseconds
 * after the change was made the tab showed it (null: not within `timeout`).
 */
async function changeShown(server, token, pages, timeout) {
  const t0 = Date.now();
  const revision = await bump(server, token);
  return Promise.all(
    pages.map(async (p) => {
      const shown = await p
        .waitForFunction((r) => window.__qwShown.find((s) => s.revision >= r)?.at ?? false, revision, { timeout, polling: 50 })
        .then((handle) => handle.jsonValue())
        .catch(() => null);
      return shown === null ? null : Math.round(shown - t0);
    }),
  );
}

/**
 * Closes the tab that leads and returns, per remaining tab, how many
 * milliseconds after it closed the tab showed "Live" again (measured in the
 * page: a background page's animation frames, which Playwright's polling
 * would use, come about once a second).
 */
async function handover(pages) {
  const leader = await leaderOf(pages);
  const rest = pages.filter((p) => p !== leader);
  for (const p of rest) {
    await p.evaluate(watchLiveAgain);
  }
  const t0 = await leader.evaluate(() => performance.timeOrigin + performance.now());
  await leader.close();
  const relive = await Promise.all(
    rest.map(async (p) => {
      await p.waitForFunction(() => window.__qwLiveAgain !== null, null, { timeout: 3 * SERVER_DEFAULT_PING_MS, polling: 50 });
      return Math.round((await p.evaluate(() => window.__qwLiveAgain)) - t0);
    }),
  );
  return { rest, relive };
}

async function closeClean(context) {
  const problems = [...context.problems];
  await context.close();
  assert.deepEqual(problems, [], "no script errors or CSP violations on the page");
}

describe("behind Vite's dev-server proxy (examples/react, npm run dev)", () => {
  let server;
  let vite;
  let browser;
  let tmp;

  before(async () => {
    checkPrerequisites({ nginx: false });
    tmp = tempDir("qw-vite-");
    server = await startServer({ db: join(tmp.dir, "vite.sqlite3"), pingMs: SERVER_DEFAULT_PING_MS });
    const port = await freePort();
    // Vite's own API, so that the example's vite.config.ts is loaded as
    // `npm run dev` loads it: its proxy block, untouched, is the one under
    // test (its target from QW_API_TARGET), and the example's own entry
    // (`quota-widget/define`) carries tabs sharing one stream.
    const script = `
      import { createServer } from "vite";
      const server = await createServer({
        configFile: "vite.config.ts",
        clearScreen: false,
        logLevel: "warn",
        server: { host: "127.0.0.1", port: ${port}, strictPort: true },
      });
      await server.listen();
      console.log("vite listening on " + server.resolvedUrls.local[0]);
    `;
    vite = await startChild("vite", process.execPath, ["--input-type=module", "-e", script], {
      cwd: REACT,
      env: { ...process.env, QW_API_TARGET: server.url },
      ready: (line) => {
        const match = /^vite listening on (http:\S+?)\/?$/.exec(line);
        return match && { url: match[1] };
      },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await vite?.stop();
    await server?.stop();
    tmp?.remove();
  });

  test("closing the leading tab: every other tab is live again within 1 s, and follows the new leader's stream", { timeout: 120_000 }, async () => {
    const { token } = await createAccount(server);
    const context = await newContext(browser);
    await context.addInitScript(instrumentStreams);
    // The React example keeps "signed in" in its state: each tab signs in
    // through its form, as a user of it would.
    const tabs = [];
    for (let i = 0; i < 4; i += 1) {
      const page = await context.newPage();
      // The first load also waits for Vite to bundle the dependencies.
      await signIn(page, vite, token);
      tabs.push(page);
    }
    await Promise.all(tabs.map((p) => waitForLive(p)));
    await leaderOf(tabs);

    const { rest, relive } = await handover(tabs);
    console.log(
      `# handover through Vite's dev-server proxy: every remaining tab live again ${Math.max(...relive)} ms after ` +
        `the leading tab closed (per tab: ${relive.join(", ")} ms; the server pings every ${SERVER_DEFAULT_PING_MS} ms)`,
    );
    assert.ok(Math.max(...relive) < WITHIN_MS, `live again within ${WITHIN_MS} ms (took ${Math.max(...relive)} ms)`);
    await leaderOf(rest);
    // The new leader's stream carries changes through the proxy.
    const shown = await changeShown(server, token, rest, 5_000);
    assert.ok(shown.every((ms) => ms !== null), `every tab showed a change made after the handover (per tab: ${shown.join(", ")} ms)`);
    await closeClean(context);
  });
});

/**
 * The nginx block of docs/deploy.md, with its upstream servers, its listen
 * address and its certificate replaced; throws if the document's block has
 * changed so that one of them is not found.
 */
function deployConfig({ upstream, port, cert, key }) {
  const blocks = [...readFileSync(DEPLOY_MD, "utf8").matchAll(/^```nginx\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1, "docs/deploy.md has one nginx block");
  let conf = blocks[0];
  const replace = (pattern, by, what) => {
    assert.match(conf, pattern, `docs/deploy.md's nginx block has ${what}`);
    conf = conf.replace(pattern, by);
  };
  // Every upstream server becomes the one under test.
  replace(/^(\s*)server\s+[^\s;{}]+:\d+;(\n\s*server\s+[^\s;{}]+:\d+;)*/m, `$1server ${upstream};`, "upstream server lines");
  replace(/^(\s*)listen\s+443\b/m, `$1listen 127.0.0.1:${port}`, "listen 443");
  replace(/^(\s*)ssl_certificate\s+\S+;/m, `$1ssl_certificate ${cert};`, "ssl_certificate");
  replace(/^(\s*)ssl_certificate_key\s+\S+;/m, `$1ssl_certificate_key ${key};`, "ssl_certificate_key");
  return conf;
}

/** The negative control: the document's configuration made to buffer the event stream. */
function buffering(conf) {
  assert.match(conf, /proxy_buffering off;/, "the event stream's location turns buffering off");
  return conf.replace(/proxy_buffering off;/, "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;");
}

/**
 * Runs nginx in the foreground on `conf` (a server block for the http
 * context), as an unprivileged-path process: its own prefix, logs and
 * temporary directories under `dir`. Resolves once it accepts connections
 * on `port`.
 */
async function startNginx(dir, conf, port) {
  mkdirSync(join(dir, "logs"), { recursive: true });
  // Workers run as nobody when nginx starts as root: they need to reach
  // their temporary directories.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, "quota.conf"), conf);
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
error_log ${join(dir, "logs/error.log")} warn;
events { worker_connections 256; }
http {
  access_log ${join(dir, "logs/access.log")};
  client_body_temp_path ${join(dir, "tmp/body")};
  proxy_temp_path ${join(dir, "tmp/proxy")};
  fastcgi_temp_path ${join(dir, "tmp/fastcgi")};
  uwsgi_temp_path ${join(dir, "tmp/uwsgi")};
  scgi_temp_path ${join(dir, "tmp/scgi")};
  include ${join(dir, "quota.conf")};
}
`,
  );
  mkdirSync(join(dir, "tmp"), { recursive: true, mode: 0o755 });
  const args = ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "logs/error.log"), "-g", `daemon off; pid ${join(dir, "nginx.pid")};`];
  // Fails with nginx's own message on a configuration it refuses.
  execFileSync(NGINX, ["-t", "-q", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const child = spawn(NGINX, args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on("line", (line) => log.push(line));
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit(signal ?? code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  // nginx says nothing when ready: it is once it accepts a connection.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`nginx exited:\n${log.join("\n")}\n${readFileSync(join(dir, "logs/error.log"), "utf8")}`);
    }
    if (await accepts(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx not listening on ${port} after 10 s:\n${log.join("\n")}`);
    }
    await sleep(50);
  }
  return { url: `https://127.0.0.1:${port}`, stop, errors: () => readFileSync(join(dir, "logs/error.log"), "utf8") };
}

function accepts(port) {
  return new Promise((resolveAccepts) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolveAccepts(true);
    });
    socket.once("error", () => resolveAccepts(false));
  });
}

/** A throwaway self-signed certificate for 127.0.0.1. */
function certificate(dir) {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore" });
  return { cert, key };
}

describe("behind nginx, configured as docs/deploy.md says", () => {
  let server;
  let tmp;
  let tls;
  // Chromium takes HTTP/2 from nginx when it can; some clients only speak
  // HTTP/1.1 (and nginx buffers those differently), so both are run.
  const browsers = {};

  before(async () => {
    checkPrerequisites({ nginx: true });
    tmp = tempDir("qw-nginx-");
    tls = certificate(tmp.dir);
    // As the document starts the instances: --trust-proxy (Secure cookies over HTTPS).
    server = await startServer({
      db: join(tmp.dir, "nginx.sqlite3"),
      args: ["--dev", "--no-worker", "--trust-proxy"],
      pingMs: SERVER_DEFAULT_PING_MS,
    });
    browsers.h2 = await launchBrowser();
    browsers["http/1.1"] = await launchBrowser({ args: ["--disable-http2"] });
  });

  after(async () => {
    for (const b of Object.values(browsers)) await b.close().catch(() => {});
    await server?.stop();
    tmp?.remove();
  });

  /** nginx on the document's configuration (changed by `transform`), in a directory of its own. */
  async function nginxWith(name, transform = (c) => c) {
    const port = await freePort();
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    return startNginx(dir, transform(deployConfig({ upstream: server.addr, port, ...tls })), port);
  }

  /** A browser context speaking `protocol` to nginx (the certificate is the test's own). */
  async function contextFor(protocol) {
    const context = await newContext(browsers[protocol], { ignoreHTTPSErrors: true });
    await context.addInitScript(instrumentStreams);
    return context;
  }

  const protocolOf = (page) => page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);

  for (const protocol of ["h2", "http/1.1"]) {
    test(`over ${protocol}: live updates, a submit and a tab handover work through it`, { timeout: 120_000 }, async () => {
      const nginx = await nginxWith(`deploy-${protocol.replace("/", "")}`);
      try {
        const { token } = await createAccount(server);
        const context = await contextFor(protocol);
        const tabs = [await context.newPage()];
        await signIn(tabs[0], nginx, token);
        assert.equal(await protocolOf(tabs[0]), protocol, `the dashboard came over ${protocol}`);
        for (let i = 1; i < 3; i += 1) {
          const page = await context.newPage();
          await page.goto(nginx.url + "/");
          await waitForLive(page);
          tabs.push(page);
        }
        await leaderOf(tabs);

        const delays = [];
        for (let i = 0; i < 5; i += 1) {
          const shown = await changeShown(server, token, tabs, 5_000);
          assert.ok(shown.every((ms) => ms !== null), `every tab showed the change (per tab: ${shown.join(", ")} ms)`);
          delays.push(...shown);
        }
        console.log(`# nginx (docs/deploy.md), ${protocol}: a change on the server shown in every tab after ${Math.min(...delays)}-${Math.max(...delays)} ms (3 tabs, 5 changes)`);
        assert.ok(Math.max(...delays) < WITHIN_MS, `changes shown within ${WITHIN_MS} ms (slowest ${Math.max(...delays)} ms)`);

        // A submit from a tab that follows, through nginx, shown in every tab.
        const leader = await leaderOf(tabs);
        const state = await submitAndWaitRunning(tabs.find((p) => p !== leader), server, token, 1);
        const image = state.pools.find((pool) => pool.kind === "image");
        const meter = `${image.in_use} of ${image.limit} in use`;
        await Promise.all(
          tabs.map((p) => p.waitForFunction((want) => document.querySelector(".qw-meter-text")?.textContent === want, meter, { polling: 50 })),
        );

        const { rest, relive } = await handover(tabs);
        console.log(`# nginx (docs/deploy.md), ${protocol}: every remaining tab live again ${Math.max(...relive)} ms after the leading tab closed (per tab: ${relive.join(", ")} ms)`);
        assert.ok(Math.max(...relive) < WITHIN_MS, `live again within ${WITHIN_MS} ms (took ${Math.max(...relive)} ms)`);
        await leaderOf(rest);
        const after = await changeShown(server, token, rest, 5_000);
        assert.ok(after.every((ms) => ms !== null && ms < WITHIN_MS), `the new leader's stream brings changes (per tab: ${after.join(", ")} ms)`);
        await closeClean(context);
        assert.doesNotMatch(nginx.errors(), /\[(error|crit|alert|emerg)\]/, "nginx logged no error");
      } finally {
        await nginx.stop();
      }
    });
  }

  // nginx 1.22 was seen passing events on at once to HTTP/2 clients even
  // with buffering on; an HTTP/1.1 client gets nothing until the buffer
  // fills. So the control speaks HTTP/1.1.
  test("the checks above catch a configuration that buffers the stream (proxy_buffering on, X-Accel-Buffering ignored)", { timeout: 60_000 }, async () => {
    const nginx = await nginxWith("buffering", buffering);
    try {
      const { token } = await createAccount(server);
      const context = await contextFor("http/1.1");
      const page = await context.newPage();
      // Signed in through the form, as in the checks above, without waiting for "Live".
      await page.goto(nginx.url + "/");
      await page.locator("#token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      // The figures read at sign-in are on screen...
      await page.waitForFunction(() => /\d/.test(document.querySelector(".qw-remaining")?.textContent ?? ""), null, { polling: 50 });
      const held = 3 * WITHIN_MS;
      // ...but a change made afterwards never arrives.
      const [shown] = await changeShown(server, token, [page], held);
      const freshness = await page.locator(".qw-freshness").textContent();
      console.log(`# nginx buffering the stream, http/1.1: a change on the server ${shown === null ? `not shown after ${held} ms` : `shown after ${shown} ms`}; the tab says "${freshness}"`);
      assert.equal(shown, null, `the change is held back for ${held} ms, so the checks above would fail (shown after ${shown} ms)`);
      assert.doesNotMatch(freshness, /^Live/, "nor does the tab call itself live");
      await closeClean(context);
    } finally {
      await nginx.stop();
    }
  });
});
