// The browser engines of the suite and how each is started: Debian's
// Firefox ESR through geckodriver, and WebKitGTK (the engine of Safari)
// through WebKitWebDriver, whose default browser is WebKitGTK's MiniBrowser,
// in a virtual X display of its own (xvfb-run). Each driver is a child
// process in its own process group, started on a free port of 127.0.0.1
// and stopped with everything it started.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Builder, Capabilities } from "selenium-webdriver";
import firefox from "selenium-webdriver/firefox.js";

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

/**
 * The first of `candidates` that exists (a path, or a name found on PATH),
 * or null. A path given in the environment variable `envName` is the only
 * candidate when set.
 */
function findExecutable(envName, candidates) {
  const list = process.env[envName] ? [process.env[envName]] : candidates;
  for (const candidate of list) {
    if (candidate.includes("/")) {
      if (existsSync(candidate)) return candidate;
    } else {
      const found = spawnSync("sh", ["-c", `command -v "${candidate}"`], { encoding: "utf8" }).stdout.trim();
      if (found) return found;
    }
  }
  return null;
}

const ALL = ["firefox", "webkit"];
/** WebKitWebDriver's default browser (named only to pass it arguments): /usr/lib/<triplet>/webkit2gtk-4.1/MiniBrowser. */
function miniBrowser() {
  if (process.env.WEBKIT_MINIBROWSER) return process.env.WEBKIT_MINIBROWSER;
  for (const dir of readdirSync("/usr/lib")) {
    const candidate = join("/usr/lib", dir, "webkit2gtk-4.1/MiniBrowser");
    if (existsSync(candidate)) return candidate;
  }
  throw new Error("MiniBrowser not found under /usr/lib/*/webkit2gtk-4.1 (WEBKIT_MINIBROWSER names it)");
}

/**
 * The engines this run must cover: QW_ENGINES (comma-separated) when set,
 * else every engine. An engine left out is skipped with its reason; an
 * unknown name fails the run.
 */
export function selectedEngines() {
  const raw = process.env.QW_ENGINES;
  if (raw === undefined || raw.trim() === "") return ALL;
  const names = raw.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  const unknown = names.filter((n) => !ALL.includes(n));
  if (unknown.length) throw new Error(`QW_ENGINES names unknown engines: ${unknown.join(", ")} (known: ${ALL.join(", ")})`);
  return names;
}

/** Starts a WebDriver server; resolves once its /status says ready. */
async function startDriver(label, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const log = [];
  const keep = (chunk) => {
    log.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  let gone = false;
  exited.then(() => (gone = true));

  const group = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  const stop = async () => {
    if (!gone) {
      // The driver first: xvfb-run then stops its X server and cleans up.
      group("SIGTERM");
      const timer = new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS, "timeout"));
      if ((await Promise.race([exited, timer])) === "timeout") group("SIGKILL");
    }
    // Whatever of the group outlived its leader (a browser, an X server).
    group("SIGKILL");
  };
  return { child, log, stop, exited, isGone: () => gone, group };
}

async function waitReady(driver, url, label) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (driver.isGone()) throw new Error(`${label} exited before it was ready:\n${driver.log.join("\n")}`);
    try {
      const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
      const body = await response.json();
      if (body?.value?.ready) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await driver.stop();
      throw new Error(`${label} not ready within ${START_TIMEOUT_MS} ms:\n${driver.log.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Preferences that keep Firefox off the network (geckodriver's recommended
// preferences already turn off updates, telemetry and most background
// traffic) and quiet.
const FIREFOX_PREFS = {
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "network.dns.disablePrefetch": true,
  "network.prefetch-next": false,
  "browser.region.network.url": "",
  "browser.region.update.enabled": false,
  "browser.newtabpage.enabled": false,
  "browser.startup.page": 0,
  "dom.push.connection.enabled": false,
  "extensions.update.enabled": false,
  "toolkit.telemetry.enabled": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "app.normandy.enabled": false,
  "browser.safebrowsing.malware.enabled": false,
  "browser.safebrowsing.phishing.enabled": false,
};

export const ENGINES = {
  firefox: {
    label: "Firefox ESR",
    /** What this engine needs on the machine, or the reason it cannot run. */
    locate() {
      const driver = findExecutable("GECKODRIVER", [join(homedir(), ".cargo/bin/geckodriver"), "geckodriver"]);
      const browser = findExecutable("FIREFOX", ["/usr/bin/firefox-esr", "firefox-esr", "firefox"]);
      const missing = [];
      if (!driver) missing.push("geckodriver (cargo install geckodriver; or GECKODRIVER=/path)");
      if (!browser) missing.push("firefox-esr (apt-get install firefox-esr; or FIREFOX=/path)");
      return { driver, browser, missing };
    },
    /** `dark`: the system's scheme is dark (prefers-color-scheme: dark). */
    async start({ port, locale = "en-US", dark = false }) {
      const { driver: bin, browser, missing } = this.locate();
      if (missing.length) throw new Error(`Firefox ESR cannot run, missing: ${missing.join("; ")}`);
      const url = `http://127.0.0.1:${port}`;
      const proc = await startDriver("geckodriver", bin, ["--host", "127.0.0.1", "--port", String(port), "--log", "error"], { TZ: "UTC", MOZ_HEADLESS: "1" });
      await waitReady(proc, url, "geckodriver");
      const options = new firefox.Options().setBinary(browser).addArguments("-headless");
      const prefs = { ...FIREFOX_PREFS, "intl.accept_languages": locale };
      if (dark) Object.assign(prefs, { "ui.systemUsesDarkTheme": 1, "layout.css.prefers-color-scheme.content-override": 0 });
      for (const [name, value] of Object.entries(prefs)) options.setPreference(name, value);
      let driver;
      try {
        driver = await new Builder().usingServer(url).forBrowser("firefox").setFirefoxOptions(options).build();
      } catch (error) {
        await proc.stop();
        throw error;
      }
      return { driver, proc };
    },
  },
  webkit: {
    label: "WebKitGTK",
    locate() {
      const driver = findExecutable("WEBKIT_WEBDRIVER", ["/usr/bin/WebKitWebDriver", "WebKitWebDriver"]);
      const xvfb = findExecutable("XVFB_RUN", ["xvfb-run"]);
      const missing = [];
      if (!driver) missing.push("WebKitWebDriver (apt-get install webkit2gtk-driver; or WEBKIT_WEBDRIVER=/path)");
      if (!xvfb) missing.push("xvfb-run (apt-get install xvfb xauth)");
      return { driver, xvfb, missing };
    },
    /** `dark`: the system's scheme is dark (MiniBrowser --dark-mode). */
    async start({ port, dark = false }) {
      const { driver: bin, xvfb, missing } = this.locate();
      if (missing.length) throw new Error(`WebKitGTK cannot run, missing: ${missing.join("; ")}`);
      const url = `http://127.0.0.1:${port}`;
      // MiniBrowser needs a display: a virtual one of its own, gone with the driver.
      const proc = await startDriver("WebKitWebDriver", xvfb, ["-a", "-s", "-screen 0 1280x1024x24", bin, `--port=${port}`], {
        TZ: "UTC",
        NO_AT_BRIDGE: "1",
      });
      await waitReady(proc, url, "WebKitWebDriver");
      let driver;
      try {
        const caps = { browserName: "MiniBrowser" };
        // Arguments given replace the default ones, --automation included.
        if (dark) caps["webkitgtk:browserOptions"] = { binary: miniBrowser(), args: ["--automation", "--dark-mode"] };
        driver = await new Builder().usingServer(url).withCapabilities(new Capabilities(caps)).build();
      } catch (error) {
        await proc.stop();
        throw error;
      }
      return { driver, proc };
    },
  },
};
