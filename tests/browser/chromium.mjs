// Debian's chromium as the browser tests launch it (never Playwright's own download).
// Without the background-networking flags chromium keeps trying hosts this
// machine cannot reach.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
];
