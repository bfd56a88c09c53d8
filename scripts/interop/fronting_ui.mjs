// The upstream's own Control UI, used through clawgate in headless Chromium.
//
// clawgate in fronting mode serves the OpenClaw gateway's Control UI at `/`
// and relays its WebSocket to the upstream. This drives that UI the way a
// person would and checks that the session is authenticated by clawgate
// and relayed, and that the browser never talks to the upstream itself:
//
//   1. `/` with no credentials: the UI's login gate ("Gateway secret")
//      appears and names clawgate's WebSocket URL; clawgate's token is typed
//      into it and Connect clicked.
//   2. The page's WebSocket gets a `hello-ok` that is the upstream's
//      (server.version 2026.9.6, OpenClaw's method list, hundreds of
//      methods), the login gate goes away, and the UI's own RPCs (e.g.
//      sessions.list, agents.list) are answered ok: true through the relay.
//   3. /settings/connection, opened as a new document (the UI reconnects
//      with what it stored for this tab), says "Connected to <clawgate>".
//   4. In a fresh browser context, the documented `#token=` handoff
//      (docs/web/urls.md) connects as well, and the UI strips the fragment.
//   5. `/clawgate/` is clawgate's own Control UI (ui/index.html).
//   6. Over everything the pages did: no HTTP request and no WebSocket went
//      to the upstream's or the forwarder's port, and no URL carried the
//      token (in its query or anywhere else).
//
// Prints one JSON line with the findings; exits 0 when every assertion held,
// 1 with a message (and screenshots in --artifacts) otherwise, 2 on bad
// usage or a missing browser. Bounded: the whole run stops at --timeout-ms.
//
// usage: node fronting_ui.mjs --url http://127.0.0.1:PORT --token TOKEN
//          --upstream-port PORT [--forwarder-port PORT] --artifacts DIR
//          [--timeout-ms 55000]
// Environment: CLAWGATE_CHROMIUM (default /usr/bin/chromium). playwright-core
// comes from ui/tests/node_modules (scripts/ui-test.sh installs both).

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const UPSTREAM_VERSION = '2026.9.6';
const STEP_MS = 15_000;

function usage(msg) {
  console.error(`fronting_ui: ${msg}`);
  console.error(
    'usage: node fronting_ui.mjs --url http://127.0.0.1:PORT --token TOKEN --upstream-port PORT ' +
      '[--forwarder-port PORT] --artifacts DIR [--timeout-ms MS]',
  );
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      'upstream-port': { type: 'string' },
      'forwarder-port': { type: 'string' },
      artifacts: { type: 'string' },
      'timeout-ms': { type: 'string', default: '55000' },
    },
  }).values;
} catch (e) {
  usage(e.message);
}
for (const k of ['url', 'token', 'upstream-port', 'artifacts']) if (!opts[k]) usage(`--${k} is required`);

const BASE = new URL(opts.url);
const ORIGIN = BASE.origin; // http://127.0.0.1:PORT
const HOST = BASE.host; // 127.0.0.1:PORT
const WS_URL = `${BASE.protocol === 'https:' ? 'wss' : 'ws'}://${HOST}`;
const TOKEN = opts.token;
const FORBIDDEN_PORTS = [opts['upstream-port'], opts['forwarder-port']].filter(Boolean).map(String);
const ARTIFACTS = resolve(opts.artifacts);
mkdirSync(ARTIFACTS, { recursive: true });

// ------------------------------------------------------------ the browser

const CHROMIUM = process.env.CLAWGATE_CHROMIUM || '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  console.error(
    `fronting_ui: no Chromium at ${CHROMIUM}. Install Debian's (apt-get install chromium; ` +
      'scripts/ui-test.sh does) or set CLAWGATE_CHROMIUM.',
  );
  process.exit(2);
}
let chromium;
try {
  const require = createRequire(join(REPO, 'ui', 'tests', 'package.json'));
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(
    `fronting_ui: playwright-core is not installed in ui/tests/node_modules (${e.code || e.message}). ` +
      'Run scripts/ui-test.sh once, or: (cd ui/tests && npm ci)',
  );
  process.exit(2);
}

// ------------------------------------------------------------ what happened

/** Every HTTP request any page or worker made: { url, type, ctx }. */
const requests = [];
/** Every WebSocket any page opened: { url, ctx }. */
const sockets = [];
/** Responses >= 400, by path: { path: { status, count } }. */
const httpErrors = {};
const consoleErrors = [];
const pageErrors = [];
/** Received frames that name the upstream's address: { method, excerpt }. */
const framesNamingUpstream = [];
/** Per-context protocol state. */
const sessions = new Map();
const pages = [];
let browser = null;

const redact = (s) => String(s).split(TOKEN).join('<token>');

function session(name) {
  if (!sessions.has(name)) {
    sessions.set(name, { hellos: [], refused: [], sentMethods: new Map(), okMethods: new Set(), waiters: [] });
  }
  return sessions.get(name);
}

function notify(s) {
  for (const w of [...s.waiters]) {
    if (w.pred()) {
      s.waiters.splice(s.waiters.indexOf(w), 1);
      w.resolve();
    }
  }
}

/** Resolves when `pred()` holds for context `name`, rejects after `ms`. */
function until(name, pred, ms, what) {
  const s = session(name);
  if (pred()) return Promise.resolve();
  return new Promise((resolvePromise, reject) => {
    const w = { pred, resolve: () => (clearTimeout(timer), resolvePromise()) };
    const timer = setTimeout(() => {
      s.waiters.splice(s.waiters.indexOf(w), 1);
      reject(new Error(`${what}: not within ${ms / 1000} s`));
    }, ms);
    s.waiters.push(w);
  });
}

function namesUpstream(text) {
  return FORBIDDEN_PORTS.some((p) => new RegExp(`(127\\.0\\.0\\.1|localhost|\\[::1\\]):${p}(?!\\d)`).test(text));
}

function watchPage(page, ctxName) {
  pages.push({ page, ctxName });
  const s = session(ctxName);
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(redact(m.text()).slice(0, 300));
  });
  page.on('pageerror', (e) => pageErrors.push(redact(e.message).slice(0, 300)));
  page.on('websocket', (ws) => {
    sockets.push({ url: ws.url(), ctx: ctxName });
    ws.on('framesent', (f) => {
      try {
        const m = JSON.parse(String(f.payload));
        if (m.type === 'req') s.sentMethods.set(m.id, m.method);
      } catch {
        // not JSON
      }
    });
    ws.on('framereceived', (f) => {
      const text = String(f.payload);
      let m;
      try {
        m = JSON.parse(text);
      } catch {
        return;
      }
      if (m.type !== 'res') return;
      const method = s.sentMethods.get(m.id);
      if (namesUpstream(text)) framesNamingUpstream.push({ method, excerpt: redact(text).slice(0, 240) });
      if (m.payload?.type === 'hello-ok' && m.ok) s.hellos.push(m.payload);
      else if (method === 'connect' && !m.ok) s.refused.push(m.error);
      else if (m.ok && method) s.okMethods.add(method);
      notify(s);
    });
  });
}

async function newContext(name) {
  const ctx = await browser.newContext();
  ctx.on('request', (r) => requests.push({ url: r.url(), type: r.resourceType(), ctx: name }));
  ctx.on('response', (r) => {
    if (r.status() >= 400) {
      const path = new URL(r.url()).pathname;
      const e = (httpErrors[path] ||= { status: r.status(), count: 0 });
      e.count += 1;
    }
  });
  ctx.on('page', (p) => watchPage(p, name));
  return ctx;
}

// ------------------------------------------------------------ the run

const findings = { ok: false, url: ORIGIN };
let step = 'launch';

let failing = false;
async function fail(message) {
  if (failing) return new Promise(() => {}); // the first failure reports and exits
  failing = true;
  findings.ok = false;
  findings.step = step;
  findings.error = redact(message);
  for (const [i, { page, ctxName }] of pages.entries()) {
    const file = join(ARTIFACTS, `fronting-ui-${i}-${ctxName}.png`);
    try {
      await page.screenshot({ path: file, timeout: 3000 });
      (findings.screenshots ||= []).push(file);
    } catch {
      // page gone
    }
  }
  try {
    writeFileSync(
      join(ARTIFACTS, 'fronting-ui-requests.txt'),
      redact([...requests.map((r) => `${r.ctx} ${r.type} ${r.url}`), ...sockets.map((w) => `${w.ctx} websocket ${w.url}`)].join('\n')),
    );
  } catch {
    // best effort
  }
  summarize();
  console.log(JSON.stringify(findings));
  console.error(`fronting_ui: FAILED at ${step}: ${redact(message)}`);
  await browser?.close().catch(() => {});
  process.exit(1);
}

function summarize() {
  findings.httpRequests = requests.length;
  findings.websockets = sockets.map((w) => `${w.ctx} ${w.url}`);
  findings.httpErrors = httpErrors;
  findings.consoleErrors = consoleErrors.length;
  findings.pageErrors = pageErrors.slice(0, 5);
  findings.framesNamingUpstream = framesNamingUpstream.slice(0, 5);
}

function check(cond, why) {
  if (!cond) throw new Error(why);
}

const watchdog = setTimeout(() => {
  fail(`the whole run took more than ${Number(opts['timeout-ms']) / 1000} s`);
}, Number(opts['timeout-ms']));

function checkHello(h, where) {
  check(h.server?.version === UPSTREAM_VERSION, `${where}: hello-ok server.version is ${h.server?.version}, not ${UPSTREAM_VERSION}`);
  const methods = h.features?.methods || [];
  check(methods.length > 400, `${where}: hello-ok lists ${methods.length} methods, not OpenClaw's hundreds`);
  check(methods.includes('sessions.list') && methods.includes('agents.list'), `${where}: hello-ok lacks sessions.list / agents.list`);
  check(!namesUpstream(JSON.stringify(h)), `${where}: hello-ok names the upstream's address`);
}

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run'],
  });

  // 1. The login gate, and clawgate's token typed into it.
  step = 'login gate';
  const ctx = await newContext('prompt');
  const page = await ctx.newPage();
  const s = session('prompt');
  await page.goto(`${ORIGIN}/`, { timeout: STEP_MS });
  const secret = page.locator('#login-gate-credential');
  await secret.waitFor({ timeout: STEP_MS });
  const gateUrl = await page.locator('#login-gate-url').inputValue();
  findings.loginGateUrl = gateUrl;
  check(gateUrl.replace(/\/$/, '') === WS_URL, `the login gate targets ${gateUrl}, not clawgate's ${WS_URL}`);
  check(s.refused.length > 0, 'the UI showed its login gate without a refused connect');
  findings.refusedWithoutToken = s.refused[0]?.details?.code || s.refused[0]?.code;
  await secret.fill(TOKEN);
  await page.locator('button.login-gate__connect').click();

  // 2. The relayed hello-ok, the gate gone, the UI's own RPCs answered.
  step = 'relayed hello-ok';
  const refusedBefore = s.refused.length;
  await until('prompt', () => s.hellos.length > 0 || s.refused.length > refusedBefore, STEP_MS, 'hello-ok after Connect');
  if (!s.hellos.length) {
    const r = s.refused[s.refused.length - 1];
    throw new Error(`the connect after Connect was refused: ${r?.details?.code || r?.code} ${r?.message}`);
  }
  checkHello(s.hellos[0], 'login gate');
  findings.serverVersion = s.hellos[0].server.version;
  findings.methods = s.hellos[0].features.methods.length;
  findings.auth = { role: s.hellos[0].auth?.role, scopes: s.hellos[0].auth?.scopes };
  await page.locator('.login-gate').waitFor({ state: 'detached', timeout: STEP_MS });
  step = 'relayed RPCs';
  const WANTED = ['sessions.list', 'agents.list', 'config.get', 'status', 'health'];
  await until('prompt', () => WANTED.some((m) => s.okMethods.has(m)), STEP_MS, `an ok answer to one of ${WANTED.join(', ')}`);
  findings.relayedOk = WANTED.filter((m) => s.okMethods.has(m));
  check(!page.url().includes(TOKEN), 'the page URL holds the token');

  // 3. A new document: the UI reconnects with what it keeps for this tab.
  step = 'connection page';
  const hellosBefore = s.hellos.length;
  await page.goto(`${ORIGIN}/settings/connection`, { timeout: STEP_MS });
  await until('prompt', () => s.hellos.length > hellosBefore, STEP_MS, 'hello-ok after reopening the UI');
  checkHello(s.hellos[s.hellos.length - 1], 'reopened UI');
  const connected = page.getByText(`Connected to ${HOST}`, { exact: false }).first();
  await connected.waitFor({ timeout: STEP_MS });
  findings.domConnected = (await connected.innerText()).trim();
  check(await page.locator('.login-gate').count() === 0, 'the login gate is shown on the connection page');

  // 4. The `#token=` handoff in a fresh context (no stored credentials).
  step = '#token= handoff';
  const ctx2 = await newContext('fragment');
  const page2 = await ctx2.newPage();
  const s2 = session('fragment');
  await page2.goto(`${ORIGIN}/#token=${encodeURIComponent(TOKEN)}`, { timeout: STEP_MS });
  await until('fragment', () => s2.hellos.length > 0, STEP_MS, 'hello-ok with #token=');
  checkHello(s2.hellos[0], '#token=');
  await page2.waitForURL((u) => !u.href.includes(TOKEN), { timeout: 5_000 }).catch(() => {});
  check(!page2.url().includes(TOKEN), `the UI kept the token in its address: ${redact(page2.url())}`);
  findings.fragmentHandoff = 'hello-ok';

  // 5. clawgate's own Control UI at /clawgate/.
  step = '/clawgate/';
  const page3 = await ctx.newPage();
  const resp = await page3.goto(`${ORIGIN}/clawgate/`, { timeout: STEP_MS });
  check(resp && resp.status() === 200, `/clawgate/ answered ${resp && resp.status()}`);
  const title = await page3.title();
  check(title === 'clawgate', `/clawgate/ has the title ${JSON.stringify(title)}, not "clawgate"`);
  const brand = (await page3.locator('.brand span').first().innerText({ timeout: 5_000 })).trim();
  check(brand === 'clawgate', `/clawgate/ brand is ${JSON.stringify(brand)}`);
  check((await page3.locator('html[data-openclaw-control-ui-build-id]').count()) === 0, "/clawgate/ is OpenClaw's document");
  findings.clawgateUi = title;

  // 6. Over everything: the upstream never contacted, no token in a URL.
  step = 'requests';
  await page.waitForTimeout(500);
  const all = [...requests.map((r) => r.url), ...sockets.map((w) => w.url)];
  const toUpstream = all.filter((u) => {
    try {
      const p = new URL(u).port;
      return FORBIDDEN_PORTS.includes(p);
    } catch {
      return false;
    }
  });
  check(toUpstream.length === 0, `requests to the upstream's address: ${toUpstream.slice(0, 5).join(', ')}`);
  const withToken = all.filter((u) => {
    try {
      const x = new URL(u);
      return (x.pathname + x.search).includes(TOKEN) || decodeURIComponent(x.search).includes(TOKEN);
    } catch {
      return u.includes(TOKEN);
    }
  });
  check(withToken.length === 0, `${withToken.length} request URLs carry the token, e.g. ${redact(withToken[0])}`);
  const tokenQuery = all.filter((u) => /[?&](token|auth|password)=/i.test(u.split('#')[0]));
  check(tokenQuery.length === 0, `credential-looking query parameters: ${redact(tokenQuery.slice(0, 3).join(', '))}`);
  const offOrigin = all.filter((u) => {
    if (/^(data|blob|about|chrome-extension):/.test(u)) return false;
    try {
      return new URL(u).host !== HOST;
    } catch {
      return true;
    }
  });
  findings.offOrigin = offOrigin.slice(0, 10);
  check(sockets.every((w) => new URL(w.url).host === HOST), 'a WebSocket went somewhere other than clawgate');
  // No relayed frame may name the upstream's address (clawgate rewrites
  // capability URLs, e.g. in plugin.surface.refresh answers, to its own).
  check(
    framesNamingUpstream.length === 0,
    `${framesNamingUpstream.length} relayed frames name the upstream's address (first: ${framesNamingUpstream[0]?.method})`,
  );

  findings.ok = true;
  step = 'done';
  summarize();
  clearTimeout(watchdog);
  console.log(JSON.stringify(findings));
  await browser.close();
  process.exit(0);
} catch (e) {
  clearTimeout(watchdog);
  await fail(e.message || String(e));
}
