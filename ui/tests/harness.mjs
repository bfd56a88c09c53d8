// Test harness for the Control UI browser tests: real `clawgate` gateways,
// the real CLI, and Debian's Chromium driven by playwright-core.
//
// Every test goes through `uiTest(name, fn)`: it gets an `Env` that starts
// gateways and browser contexts, records every request the pages make, the
// console errors, page errors and CSP violations, and after the test body
// asserts that nothing left the gateway origin and nothing was reported.
// Processes are ended in a `finally`, and once more when the file's process
// exits, so a failing test leaves nothing running.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..');
export const ARTIFACTS = join(HERE, 'artifacts');
export const BIN = process.env.CLAWGATE_BIN
  ? resolve(REPO, process.env.CLAWGATE_BIN)
  : join(REPO, 'target', 'debug', 'clawgate');
export const CHROMIUM = process.env.CLAWGATE_CHROMIUM || '/usr/bin/chromium';

/** Generous: the machine has 2 shared cores and debug builds. */
export const TIMEOUT = 20_000;

/** The storage keys of ui/README.md. */
export const KEYS = {
  token: (wsUrl) => `clawgate.token.v1:${wsUrl}`,
  deviceAuth: (wsUrl) => `clawgate.device.auth.v1:${wsUrl}`,
  identity: 'clawgate.device.identity.v1',
};

/** The CSP of ui/README.md, directive by directive. */
export const CSP_DIRECTIVES = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
];

mkdirSync(ARTIFACTS, { recursive: true });

// ---------------------------------------------------------------- processes

/** Every child process this file started and has not seen exit. */
const live = new Set();
/** Every temp dir this file made and has not removed. */
const tempDirs = new Set();

function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

function removeDir(d) {
  try {
    rmSync(d, { recursive: true, force: true });
  } catch {
    // best effort
  }
  tempDirs.delete(d);
}

function cleanEnv(extra = {}) {
  const env = { ...process.env, NO_COLOR: '1' };
  for (const k of Object.keys(env)) {
    if (k.startsWith('CLAWGATE_') || k.startsWith('OPENCLAW_')) delete env[k];
  }
  return { ...env, ...extra };
}

function killAllSync() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}
process.on('exit', () => {
  killAllSync();
  for (const d of [...tempDirs]) removeDir(d);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAllSync();
    process.exit(130);
  });
}

export function randomSecret(prefix = 'ui-test') {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

function deepMerge(a, b) {
  if (b === undefined) return a;
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = deepMerge(a[k], v);
    return out;
  }
  return b;
}

/**
 * A running `clawgate gateway run --port 0` with its own state dir.
 *
 * `auth`: 'token' (default, a random token), 'password' (a random password)
 * or 'none'. `config` is merged into the generated clawgate.json, e.g.
 * {gateway: {nodes: {pairing: {autoApproveLocal: false}}}}.
 */
export class Gateway {
  constructor({ auth = 'token', config = {}, name = 'gw' } = {}) {
    this.name = name;
    this.stateDir = tempDir('clawgate-ui-gw-');
    this.cliDir = tempDir('clawgate-ui-cli-');
    this.authMode = auth;
    this.token = auth === 'token' ? randomSecret('tok') : undefined;
    this.password = auth === 'password' ? randomSecret('pw') : undefined;
    const authCfg = { mode: auth };
    if (this.token) authCfg.token = this.token;
    if (this.password) authCfg.password = this.password;
    this.config = deepMerge({ gateway: { auth: authCfg } }, config);
    this.configPath = join(this.stateDir, 'clawgate.json');
    writeFileSync(this.configPath, JSON.stringify(this.config, null, 2));
    this.port = 0;
    this.extraOrigins = [];
    this.log = '';
    this.child = null;
  }

  /** gateway.tls.enabled in its config: https:// and wss://. */
  get tls() {
    return this.config.gateway?.tls?.enabled === true;
  }

  get origin() {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** The normalised WebSocket URL, the storage keys' suffix. */
  get wsUrl() {
    return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}`;
  }

  /** The same gateway by name (`localhost`): WebAuthn refuses IP-address hosts. */
  get localhostOrigin() {
    return `${this.tls ? 'https' : 'http'}://localhost:${this.port}`;
  }

  /** The WebSocket URL a page opened on `localhostOrigin` uses (its storage keys' suffix). */
  get localhostWsUrl() {
    return `${this.tls ? 'wss' : 'ws'}://localhost:${this.port}`;
  }

  /** The page URL for `path` under the base path, on `localhost`. */
  localhostUrl(path = '') {
    return this.url(path).replace(this.origin, this.localhostOrigin);
  }

  get basePath() {
    return this.config.gateway?.controlUi?.basePath ?? '/';
  }

  /** The page URL for `path` under the base path. */
  url(path = '') {
    let base = this.basePath;
    if (!base.startsWith('/')) base = `/${base}`;
    if (!base.endsWith('/')) base = `${base}/`;
    return `${this.origin}${base}${path}`;
  }

  /** Starts the gateway (on `port`, or a free one the first time). */
  async start(port = this.port) {
    const args = ['--state-dir', this.stateDir, 'gateway', 'run', '--port', String(port)];
    const child = spawn(BIN, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    this.child = child;
    this.exited = new Promise((res) => {
      child.on('exit', (code, signal) => {
        live.delete(child);
        res({ code, signal });
      });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      this.log += d;
    });
    child.stdout.setEncoding('utf8');
    const found = await new Promise((res, rej) => {
      let buf = '';
      const timer = setTimeout(() => rej(new Error(`gateway did not start within 30 s:\n${buf}\n${this.log}`)), 30_000);
      const onData = (d) => {
        buf += d;
        this.log += d;
        const m = buf.match(/listening on wss?:\/\/127\.0\.0\.1:(\d+)/);
        // With TLS the pins are printed before the dashboard line.
        if (m && (!this.tls || /^Dashboard/m.test(buf))) {
          this.certPin = buf.match(/\(SHA-256 ([0-9A-F:]+)\)/)?.[1];
          this.spkiPin = buf.match(/TLS public key pin: (\S+)/)?.[1];
          clearTimeout(timer);
          res(Number(m[1]));
        }
      };
      child.stdout.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        rej(new Error(`gateway exited (${code}) before listening:\n${buf}\n${this.log}`));
      });
    });
    this.port = found;
    // The CLI finds the local gateway from the config: write the port there
    // (as crates/cli/tests do). The running gateway does not reread it.
    this.config = deepMerge(this.config, { gateway: { port: found } });
    writeFileSync(this.configPath, JSON.stringify(this.config, null, 2));
    return this;
  }

  /** SIGTERM, then SIGKILL after 10 s. */
  async stop() {
    const child = this.child;
    if (!child || !live.has(child)) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * Runs the real CLI. `local: true` (default) is the operator on the
   * gateway host: the gateway's own state dir and config (device-less, the
   * config's secret). `local: false` is a remote CLI with a state dir of its
   * own and --url/--token (or --password): it has a device identity of its
   * own, so it needs pairing when autoApproveLocal is off.
   */
  async cli(args, { local = true, json = false } = {}) {
    let full;
    if (local) {
      full = ['--state-dir', this.stateDir, ...args];
    } else {
      full = ['--state-dir', this.cliDir, ...args, '--url', this.wsUrl];
      if (this.token) full.push('--token', this.token);
      if (this.password) full.push('--password', this.password);
    }
    if (json) full.push('--json');
    const r = await new Promise((res) => {
      execFile(BIN, full, { env: cleanEnv(), timeout: 30_000 }, (err, stdout, stderr) => {
        res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
    r.args = full;
    if (json) {
      try {
        r.json = JSON.parse(r.stdout);
      } catch {
        r.json = undefined;
      }
    }
    return r;
  }

  /** `cli` that must exit 0. */
  async cliOk(args, opts) {
    const r = await this.cli(args, opts);
    assert.equal(r.code, 0, `clawgate ${r.args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  cleanup() {
    removeDir(this.stateDir);
    removeDir(this.cliDir);
  }
}

// ------------------------------------------------------------------ browser

let browserPromise = null;
/** Extra Chromium flags (see `addBrowserArgs`). */
const extraBrowserArgs = [];

/**
 * Adds Chromium command-line flags (e.g. a certificate pin to trust); only
 * before the file's browser is launched, i.e. before the first context.
 */
export function addBrowserArgs(...args) {
  if (browserPromise) throw new Error('addBrowserArgs after the browser was launched');
  extraBrowserArgs.push(...args);
}

export function browser() {
  if (!browserPromise) {
    browserPromise = chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: [
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-gpu',
        '--disable-component-update',
        '--no-first-run',
        ...extraBrowserArgs,
      ],
    });
  }
  return browserPromise;
}

after(async () => {
  if (browserPromise) {
    const b = await browserPromise.catch(() => null);
    browserPromise = null;
    await b?.close().catch(() => {});
  }
  killAllSync();
});

/** Reports CSP violations (Trusted Types included) to the test. */
const CSP_INIT = `(() => {
  document.addEventListener('securitypolicyviolation', (e) => {
    try {
      window.__clawgateCsp && window.__clawgateCsp({
        directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile,
        line: e.lineNumber, sample: e.sample,
      });
    } catch (_) {}
  });
})();`;

/** Makes WebCrypto Ed25519 unavailable, as on a plain-HTTP LAN origin. */
export const NO_WEBCRYPTO_ED25519 = `(() => {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) return;
  const isEd = (alg) => {
    const name = typeof alg === 'string' ? alg : alg && alg.name;
    return typeof name === 'string' && name.toLowerCase() === 'ed25519';
  };
  const refuse = () => Promise.reject(new DOMException('Ed25519 is not supported', 'NotSupportedError'));
  for (const [method, algIndex] of [['generateKey', 0], ['importKey', 2], ['sign', 0], ['verify', 0]]) {
    const orig = subtle[method].bind(subtle);
    subtle[method] = function (...args) {
      if (isEd(args[algIndex])) return refuse();
      return orig(...args);
    };
  }
})();`;

function slug(s) {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 80);
}

/** Everything one test starts, and what its pages did. */
export class Env {
  constructor(name) {
    this.name = name;
    this.slug = slug(name);
    this.gateways = [];
    this.contexts = [];
    this.pages = [];
    this.requests = []; // {url, method, type, page}
    this.responses = []; // {url, status, headers}
    this.consoleErrors = []; // {text, url, page}
    this.pageErrors = [];
    this.csp = [];
    this.sockets = []; // {url, page, closed}: every WebSocket a page opened
    this.allowedConsole = [];
    this.shots = 0;
  }

  /** Console errors matching `re` are expected in this test. */
  allowConsoleError(re) {
    this.allowedConsole.push(re);
  }

  async gateway(opts = {}) {
    const gw = new Gateway({ ...opts, name: `${this.slug}-gw${this.gateways.length}` });
    this.gateways.push(gw);
    await gw.start();
    return gw;
  }

  /**
   * A fresh browser context (its own storage, so its own device identity)
   * and one page in it. `label` names it in failures and screenshots.
   */
  async context({ label = `ctx${this.contexts.length}`, viewport = { width: 1280, height: 800 }, colorScheme, initScripts = [] } = {}) {
    const b = await browser();
    const context = await b.newContext({ viewport, colorScheme, serviceWorkers: 'block' });
    context.setDefaultTimeout(TIMEOUT);
    context.__label = label;
    this.contexts.push(context);
    await context.exposeFunction('__clawgateCsp', (v) => {
      this.csp.push({ ...v, page: label });
    });
    await context.addInitScript(CSP_INIT);
    for (const s of initScripts) await context.addInitScript(s);
    context.on('request', (req) => {
      this.requests.push({ url: req.url(), method: req.method(), type: req.resourceType(), page: label });
    });
    context.on('response', (res) => {
      this.responses.push({ url: res.url(), status: res.status(), headers: res.headers(), page: label });
    });
    context.on('page', (page) => this.watchPage(page, label));
    const page = await context.newPage();
    return { context, page };
  }

  watchPage(page, label) {
    if (this.pages.includes(page)) return;
    this.pages.push(page);
    page.__label = label;
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        this.consoleErrors.push({ text: msg.text(), url: msg.location()?.url, page: label });
      }
    });
    page.on('pageerror', (err) => this.pageErrors.push({ text: String(err?.stack || err), page: label }));
    page.on('websocket', (ws) => {
      this.requests.push({ url: ws.url(), method: 'GET', type: 'websocket', page: label });
      const entry = { url: ws.url(), page: label, closed: false };
      this.sockets.push(entry);
      ws.on('close', () => {
        entry.closed = true;
      });
    });
  }

  /** Saves a PNG of `page` as artifacts/<test>-<state>.png. */
  async shot(page, state, { fullPage = true } = {}) {
    this.shots += 1;
    const file = join(ARTIFACTS, `${this.slug}-${String(this.shots).padStart(2, '0')}-${slug(state)}.png`);
    await page.screenshot({ path: file, fullPage, animations: 'disabled' });
    return file;
  }

  /** The post-test checks: origin, console, page errors, CSP. */
  verify() {
    const origins = new Set();
    for (const gw of this.gateways) {
      if (gw.port) {
        origins.add(gw.origin);
        origins.add(gw.wsUrl);
        // The same gateway by its loopback name (passkey tests use it).
        origins.add(gw.localhostOrigin);
        origins.add(gw.localhostWsUrl);
        // Names a test mapped to this gateway (--host-resolver-rules).
        for (const o of gw.extraOrigins) origins.add(o);
      }
    }
    const outside = this.requests.filter((r) => {
      if (r.url.startsWith('data:')) return false;
      let origin;
      try {
        origin = new URL(r.url).origin;
      } catch {
        return true;
      }
      return !origins.has(origin);
    });
    assert.deepEqual(outside, [], `requests outside the gateway origin (${[...origins].join(', ')})`);
    assert.ok(this.requests.length > 0, 'the pages made no request at all');
    assert.deepEqual(this.csp, [], 'CSP violations reported');
    assert.deepEqual(this.pageErrors, [], 'uncaught page errors');
    const errors = this.consoleErrors.filter((e) => !this.allowedConsole.some((re) => re.test(e.text)));
    assert.deepEqual(errors, [], 'console errors');
    // Every response from a gateway carries the contract's headers.
    for (const r of this.responses) {
      if (!r.url.startsWith('http')) continue;
      if (!origins.has(new URL(r.url).origin)) continue;
      if (/\/api\/passkeys\/[a-z]+$/.test(new URL(r.url).pathname)) assertApiHeaders(r.headers, r.url);
      else assertUiHeaders(r.headers, r.url);
    }
  }

  async close() {
    for (const c of this.contexts) await c.close().catch(() => {});
    for (const gw of this.gateways) {
      await gw.stop().catch(() => {});
      writeFileSync(join(ARTIFACTS, `${gw.name}.log`), gw.log);
      gw.cleanup();
    }
  }

  /** Screenshots of every open page, for a failed test. */
  async failureShots() {
    for (const page of this.pages) {
      if (page.isClosed()) continue;
      await this.shot(page, `FAILED-${page.__label}`).catch(() => {});
    }
  }
}

/**
 * The headers every Control UI response must have (ui/README.md): the CSP
 * with every directive of the contract and nothing looser. `connect-src` may
 * name the page's own ws:// and wss:// origin besides 'self' (CSP's 'self'
 * does not cover WebSocket schemes in every browser), nothing else.
 */
export function assertUiHeaders(headers, url) {
  const csp = headers['content-security-policy'];
  assert.ok(csp, `no Content-Security-Policy on ${url}`);
  const got = new Map();
  for (const d of csp.split(';').map((x) => x.trim()).filter(Boolean)) {
    const [name, ...sources] = d.split(/\s+/);
    assert.ok(!got.has(name), `CSP of ${url} repeats ${name}: ${csp}`);
    got.set(name, sources);
  }
  const host = new URL(url).host;
  for (const d of CSP_DIRECTIVES) {
    const [name, ...want] = d.split(' ');
    const have = got.get(name);
    assert.ok(have, `CSP of ${url} lacks ${name}: ${csp}`);
    let extra = have.filter((s) => !want.includes(s));
    if (name === 'connect-src') extra = extra.filter((s) => s !== `ws://${host}` && s !== `wss://${host}`);
    assert.deepEqual(extra, [], `CSP ${name} of ${url} allows more than "${d}": ${csp}`);
    for (const w of want) assert.ok(have.includes(w), `CSP ${name} of ${url} lacks ${w}: ${csp}`);
  }
  assert.equal(headers['x-content-type-options'], 'nosniff', `X-Content-Type-Options of ${url}`);
  assert.equal(headers['referrer-policy'], 'no-referrer', `Referrer-Policy of ${url}`);
}

/**
 * The headers of a JSON answer of the pre-auth API (`<base>api/passkeys/*`):
 * never rendered as a document, so no CSP is required (one is welcome), but
 * JSON, `nosniff`, `no-referrer` and never cached.
 */
export function assertApiHeaders(headers, url) {
  assert.match(headers['content-type'] || '', /^application\/json\b/, `Content-Type of ${url}`);
  assert.equal(headers['x-content-type-options'], 'nosniff', `X-Content-Type-Options of ${url}`);
  assert.equal(headers['referrer-policy'], 'no-referrer', `Referrer-Policy of ${url}`);
  assert.match(headers['cache-control'] || '', /no-store/, `Cache-Control of ${url}`);
}

/**
 * A browser test: a fresh Env, the body, the post-test checks, screenshots
 * of every page when it fails, and every process ended in any case.
 */
export function uiTest(name, fn, opts = {}) {
  test(name, { timeout: 240_000, ...opts }, async () => {
    const env = new Env(name);
    try {
      await fn(env);
      env.verify();
    } catch (e) {
      await env.failureShots();
      throw e;
    } finally {
      await env.close();
    }
  });
}

// ------------------------------------------------------------- page helpers

/** The `#app` state: {screen, code, title, message}. */
export async function appState(page) {
  return page.evaluate(() => {
    const app = document.getElementById('app');
    const text = (id) => document.getElementById(id)?.textContent?.trim() ?? null;
    return {
      screen: app?.getAttribute('data-screen') ?? null,
      code: app?.getAttribute('data-code') ?? null,
      title: text('screen-title'),
      message: text('screen-message'),
      url: location.href,
    };
  });
}

/**
 * Waits until `#app` shows `screen` (and `code`, when given). On timeout the
 * error names the state the page is in.
 */
export async function waitScreen(page, screen, code, timeout = TIMEOUT) {
  const sel = code === undefined
    ? `#app[data-screen="${screen}"]`
    : `#app[data-screen="${screen}"][data-code="${code}"]`;
  try {
    await page.waitForSelector(sel, { state: 'attached', timeout });
  } catch (e) {
    const st = await appState(page).catch(() => ({}));
    throw new Error(`expected ${sel} within ${timeout} ms; the page shows ${JSON.stringify(st)}`, { cause: e });
  }
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor(fn, what, timeout = TIMEOUT, interval = 200) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export async function storage(page) {
  return page.evaluate(() => {
    const dump = (s) => {
      const o = {};
      for (let i = 0; i < s.length; i++) {
        const k = s.key(i);
        o[k] = s.getItem(k);
      }
      return o;
    };
    return { local: dump(localStorage), session: dump(sessionStorage) };
  });
}

/** The IndexedDB identity record (clawgate / identity / device), or null. */
export async function idbIdentity(page) {
  return page.evaluate(
    () =>
      new Promise(async (res) => {
        // Opening a database that does not exist would create it (empty, at
        // version 1) and break the UI's own upgrade: look first.
        const dbs = await indexedDB.databases();
        if (!dbs.some((d) => d.name === 'clawgate')) return res(null);
        const req = indexedDB.open('clawgate');
        req.onerror = () => res(null);
        req.onsuccess = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('identity')) {
            db.close();
            res(null);
            return;
          }
          const get = db.transaction('identity', 'readonly').objectStore('identity').get('device');
          get.onsuccess = () => {
            const v = get.result;
            db.close();
            if (!v) return res(null);
            res({
              deviceId: v.deviceId,
              publicKey: v.publicKey,
              createdAtMs: v.createdAtMs,
              privateKeyType: Object.prototype.toString.call(v.privateKey),
              privateKeyExtractable: v.privateKey && typeof v.privateKey === 'object' ? v.privateKey.extractable : undefined,
              privateKeyAlgorithm: v.privateKey?.algorithm?.name,
            });
          };
          get.onerror = () => {
            db.close();
            res(null);
          };
        };
      }),
  );
}

/** hex SHA-256 of a base64url raw public key: the device id. */
export function deviceIdOf(publicKeyB64u) {
  return createHash('sha256').update(Buffer.from(publicKeyB64u, 'base64url')).digest('hex');
}

/** Connects `page` through a `#token=` link and waits for the app. */
export async function connectWithToken(page, gw, path = '') {
  await page.goto(`${gw.url(path)}#token=${encodeURIComponent(gw.token)}`);
  await waitScreen(page, 'app');
}

/** Types the gateway's secret into the login form and waits for the app. */
export async function connectFromForm(page, gw) {
  await page.fill('#gateway-secret', gw.token ?? gw.password);
  await page.click('button#connect');
  await waitScreen(page, 'app');
}

/** The text of `sel`, trimmed. */
export async function text(page, sel) {
  return (await page.locator(sel).first().textContent({ timeout: TIMEOUT }))?.trim();
}

/** The numbers in the text of `sel` as an integer (e.g. "3" or "3 clients"). */
export async function intOf(page, sel) {
  const t = await text(page, sel);
  const m = t?.match(/-?\d+/);
  assert.ok(m, `${sel} holds no number: ${JSON.stringify(t)}`);
  return Number(m[0]);
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

// ------------------------------------------------------ shared assertions

/** localStorage holds nothing but the identity and the device tokens. */
export function assertLocalStorageClean(local, gw, secrets = []) {
  const allowed = [KEYS.identity, KEYS.deviceAuth(gw.wsUrl)];
  const extra = Object.keys(local).filter((k) => !allowed.includes(k));
  assert.deepEqual(extra, [], 'localStorage keys besides the identity and device tokens');
  for (const [k, v] of Object.entries(local)) {
    for (const s of secrets) assert.ok(!v.includes(s), `localStorage ${k} holds the shared secret`);
  }
}

/** The device-token entry of ui/README.md, for `deviceId`. */
export function assertDeviceAuth(local, gw, deviceId, secret) {
  const raw = local[KEYS.deviceAuth(gw.wsUrl)];
  assert.ok(raw, `no ${KEYS.deviceAuth(gw.wsUrl)} in localStorage: ${JSON.stringify(Object.keys(local))}`);
  const v = JSON.parse(raw);
  assert.equal(v.version, 1);
  assert.equal(v.deviceId, deviceId);
  const op = v.tokens?.operator;
  assert.ok(op, `no operator token: ${raw.replace(/"token":"[^"]*"/g, '"token":"…"')}`);
  assert.equal(typeof op.token, 'string');
  assert.ok(op.token.length >= 16, 'device token too short');
  assert.notEqual(op.token, secret, 'the shared secret stored as the device token');
  assert.equal(op.role, 'operator');
  assert.ok(Array.isArray(op.scopes) && op.scopes.length > 0, 'device token scopes');
  assert.equal(typeof op.updatedAtMs, 'number');
  return v;
}

/** The error-screen furniture every auth/error screen has. */
export async function assertErrorScreen(page, code) {
  const title = await text(page, 'h1#screen-title');
  const message = await text(page, 'p#screen-message');
  assert.ok(title, 'empty #screen-title');
  assert.ok(message, 'empty #screen-message');
  const cmd = page.locator('code.next-command').first();
  await cmd.waitFor({ state: 'attached' });
  assert.ok((await cmd.textContent()).trim(), 'empty code.next-command');
  assert.ok(await page.locator('button.copy').count() > 0, 'no button.copy beside the command');
  const raw = page.locator('details#raw-error pre');
  await raw.waitFor({ state: 'attached' });
  const rawText = (await raw.textContent()).trim();
  assert.doesNotThrow(() => JSON.parse(rawText), `raw error is not JSON: ${rawText}`);
  if (code) assert.ok(rawText.includes(code), `raw error does not name ${code}: ${rawText}`);
  return { title, message, rawText };
}

export const NO_AUTO_APPROVE = { gateway: { nodes: { pairing: { autoApproveLocal: false } } } };
export const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** A pairing code as clawgate shows it: RFC 8628's alphabet, XXXX-XXXX. */
export const PAIRING_CODE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;

/** Opens the #token= link and waits for the pairing screen: {requestId, deviceId, code}. */
export async function waitForPairing(page, gw) {
  await page.goto(`${gw.url()}#token=${encodeURIComponent(gw.token)}`);
  await waitScreen(page, 'pairing', 'PAIRING_REQUIRED');
  const code = await text(page, '#pairing-code');
  assert.match(code, PAIRING_CODE, '#pairing-code');
  const cmd = await text(page, 'code#approve-command');
  assert.equal(cmd, `clawgate devices approve ${code}`, 'code#approve-command names the pairing code');
  const requestId = await text(page, '#pairing-request-id');
  assert.match(requestId, REQUEST_ID);
  const deviceId = await text(page, '#pairing-device-id');
  assert.match(deviceId, /^[0-9a-f]{64}$/, '#pairing-device-id');
  return { requestId, deviceId, code };
}

/** Pairs `page` through the CLI on the gateway host; returns its device id. */
export async function pairWithCli(page, gw) {
  const { requestId, deviceId } = await waitForPairing(page, gw);
  await gw.cliOk(['devices', 'approve', requestId]);
  await waitScreen(page, 'app', undefined, 30_000);
  return deviceId;
}

/**
 * Clicks `[data-action=action]` in `scope`, confirms in dialog#confirm if it
 * opens, and waits until `done()` holds.
 */
export async function act(page, scope, action, done, what) {
  const button = scope.locator(`[data-action="${action}"]`);
  assert.equal(await button.isDisabled(), false, `${action} is disabled: ${await button.getAttribute('title')}`);
  await button.click();
  await waitFor(async () => {
    const dialog = page.locator('dialog#confirm[open]');
    if (await dialog.count()) {
      assert.ok((await text(page, '#confirm-message')).length > 0, 'empty #confirm-message');
      await page.click('button#confirm-ok');
    }
    return done();
  }, what, 30_000, 250);
}

