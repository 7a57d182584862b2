#!/usr/bin/env node
// Runs one command in a process group of its own, passes its output
// through, and ends the whole group (the command and everything it started:
// a test runner, its WebDriver server, the browser, Xvfb) when the command
// stops making progress. Nothing outside that group is touched.
//
//   node scripts/tools/watchdog.mjs --start S --each S --progress REGEX -- COMMAND...
//
// --progress: a line matching it is one step of progress (for the browser
//   tests, one test reported: `test name ... ok`).
// --start S: at most S seconds from the start to the first progress line.
//   A run that stalls there exits 75, so that the caller can retry it in a
//   fresh browser (nothing has run yet).
// --each S: at most S seconds between two progress lines, and from the last
//   one to the command's end. A run that stalls there exits 76 and names the
//   last test that finished: it is a failure, never retried.
// Otherwise the command's own exit code. When the command ends, whatever it
// left running in its group is ended too.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

function usage(message) {
  console.error(`watchdog: ${message}\nusage: watchdog.mjs --start S --each S --progress REGEX -- COMMAND...`);
  process.exit(2);
}

const args = process.argv.slice(2);
const sep = args.indexOf("--");
if (sep < 0 || sep === args.length - 1) usage("no command after --");
const opts = {};
for (let i = 0; i < sep; i += 2) {
  const [key, value] = [args[i], args[i + 1]];
  if (!["--start", "--each", "--progress"].includes(key) || value === undefined) usage(`unknown option ${key}`);
  opts[key.slice(2)] = value;
}
const startLimit = Number(opts.start ?? 45) * 1000;
const eachLimit = Number(opts.each ?? 120) * 1000;
if (!(startLimit > 0 && eachLimit > 0)) usage("--start and --each take a number of seconds above 0");
const progress = new RegExp(opts.progress ?? "^test .* \\.\\.\\. ");
const [command, ...commandArgs] = args.slice(sep + 1);

const started = Date.now();
let lastProgress = null;
let lastLine = "";
let steps = 0;
let stalled = null;

// detached: the child leads a new process group, whose id is its pid.
const child = spawn(command, commandArgs, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
const endGroup = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
};

for (const [stream, out] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
  createInterface({ input: stream }).on("line", (line) => {
    out.write(line + "\n");
    if (progress.test(line)) {
      steps += 1;
      lastProgress = Date.now();
      lastLine = line;
    }
  });
}

const timer = setInterval(() => {
  const now = Date.now();
  if (lastProgress === null && now - started > startLimit) {
    stalled = { code: 75, why: `no test reported within ${startLimit / 1000} s of the start` };
  } else if (lastProgress !== null && now - lastProgress > eachLimit) {
    stalled = {
      code: 76,
      why: `no progress for ${eachLimit / 1000} s after ${steps} test(s); the last one reported: ${lastLine.trim()}`,
    };
  } else {
    return;
  }
  clearInterval(timer);
  console.error(`[watchdog] stalled: ${stalled.why}; ending the run's process group ${child.pid}`);
  endGroup("SIGTERM");
  setTimeout(() => endGroup("SIGKILL"), 3000).unref();
}, 250);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    endGroup("SIGTERM");
    process.exit(130);
  });
}

child.on("error", (error) => {
  clearInterval(timer);
  console.error(`[watchdog] could not start ${command}: ${error.message}`);
  process.exit(127);
});

child.on("exit", (code, signal) => {
  clearInterval(timer);
  // What the command left behind in its group (a browser whose driver
  // was killed, say) ends with it.
  endGroup("SIGKILL");
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (stalled) {
    process.exit(stalled.code);
  }
  console.error(`[watchdog] ${command} ended (${signal ?? `exit ${code}`}) after ${seconds} s, ${steps} test(s) reported`);
  process.exit(code ?? 1);
});
