// How the Node test suites (tests/pack, tests/e2e) start Debian's Chromium.
// Without the background-networking flags, Chromium keeps trying hosts that
// this project's machines cannot reach.
export const CHROMIUM = process.env.CHROMIUM ?? process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
