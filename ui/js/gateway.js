// The WebSocket client: challenge, signed connect, requests with ids and
// timeouts, events, and the reconnect rules of our Rust client
// (crates/client): one bounded device-token retry, the pause list, backoff
// 1 s..30 s with jitter and never sooner than retryAfterMs, and dropping a
// cached device token the gateway refused.

import {
  loadDeviceToken, storeDeviceToken, removeDeviceToken, saveSessionToken, clearSessionToken,
} from './storage.js';
import { PAUSE_RECONNECT as PAUSE_LIST, SCOPE_GRANTS } from './protocol.js';

export const CLIENT_ID = 'openclaw-control-ui';
export const CLIENT_MODE = 'webchat';
export const ROLE = 'operator';
export const PROTOCOL = 4;
/** What the Control UI asks for when it connects with the shared secret. */
export const UI_SCOPES = ['operator.admin', 'operator.read', 'operator.write', 'operator.approvals', 'operator.pairing'];

/** Errors that stop automatic reconnecting (catalogue PAUSE_RECONNECT). */
const PAUSE_RECONNECT = new Set(PAUSE_LIST);

const INITIAL_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30000;
const FAST_RETRY_MS = 250;
const CHALLENGE_TIMEOUT_MS = 10000;
const HANDSHAKE_TIMEOUT_MS = 15000;
const REQUEST_TIMEOUT_MS = 30000;

/** Whether `scopes` (held) grant `required` (the gateway's scopes::scope_grants). */
export function hasScope(scopes, required) {
  return (scopes || []).some((held) => held === required || (SCOPE_GRANTS[held] || []).includes(required));
}

export function pausesReconnect(error) {
  const details = (error && error.details) || {};
  const code = details.code;
  if (!code) return false;
  if (code === 'PAIRING_REQUIRED') {
    return !(details.pauseReconnect === false || details.recommendedNextStep === 'wait_then_retry');
  }
  return PAUSE_RECONNECT.has(code);
}

function uuid() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const LOOPBACK = (host) => {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
};

/**
 * The bounded retry sends the cached device token next to a refused shared
 * token; only over wss, or when both this page and the gateway are on
 * loopback.
 */
export function isTrustedRetryEndpoint(url) {
  try {
    const u = new URL(url);
    if (u.protocol === 'wss:') return true;
    return u.protocol === 'ws:' && LOOPBACK(u.hostname) && LOOPBACK(location.hostname);
  } catch {
    return false;
  }
}

/** A failed connect: the gateway's error shape, or why the socket failed. */
export class ConnectError extends Error {
  constructor(kind, { error = null, closeCode = null, closeReason = '', message = '' } = {}) {
    super(message || (error && error.message) || closeReason || kind);
    this.kind = kind; // 'gateway' | 'unreachable' | 'closed' | 'timeout' | 'local'
    this.error = error;
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }

  /** details.code, else error.code, else GATEWAY_UNREACHABLE. */
  get code() {
    if (this.error) return (this.error.details && this.error.details.code) || this.error.code || 'UNKNOWN';
    if (this.kind === 'local') return 'DEVICE_REMOVED';
    return 'GATEWAY_UNREACHABLE';
  }

  /** What the raw-error view shows (never a secret: errors carry none). */
  raw() {
    const out = {};
    if (this.error) out.error = this.error;
    else out.error = { message: this.message };
    if (this.closeCode !== null) out.close = { code: this.closeCode, reason: this.closeReason };
    return out;
  }
}

export class RequestError extends Error {
  constructor(error) {
    super((error && error.message) || 'request failed');
    this.error = error;
    this.code = (error && error.details && error.details.code) || (error && error.code) || 'UNKNOWN';
  }
}

function clientPlatform() {
  const p = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || 'web';
  return String(p).trim() || 'web';
}

function browserName() {
  const ua = navigator.userAgent || '';
  const name = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox'
    : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS'
    : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  return os ? `${name} on ${os}` : name;
}

/**
 * Which credentials one attempt sends (clients.md 1.2, crates/client
 * auth.rs): the shared secret; the cached device token when there is no
 * secret, or next to the secret for the one bounded retry.
 */
export function selectAuth({ secret, kind, stored, retryWithStored, scopes }) {
  const plan = { auth: {}, signatureToken: '', scopes: scopes || UI_SCOPES, usedStored: false };
  const hasSecret = typeof secret === 'string' && secret.trim() !== '';
  if (hasSecret && kind === 'password') plan.auth.password = secret;
  else if (hasSecret) plan.auth.token = secret;
  if (stored && stored.token) {
    const retry = retryWithStored && plan.auth.token !== undefined;
    if (retry || !hasSecret) {
      plan.auth.deviceToken = stored.token;
      plan.usedStored = true;
      if (!scopes && stored.scopes.length) plan.scopes = stored.scopes;
    }
  }
  plan.signatureToken = plan.auth.token ?? plan.auth.deviceToken ?? '';
  return plan;
}

export function v3Payload({ deviceId, clientId, clientMode, role, scopes, signedAt, token, nonce, platform, deviceFamily }) {
  const norm = (v) => String(v || '').trim().replace(/[A-Z]/g, (c) => c.toLowerCase());
  return ['v3', deviceId, clientId, clientMode, role, scopes.join(','), String(signedAt), token, nonce, norm(platform), norm(deviceFamily)].join('|');
}

export class GatewayClient {
  constructor({ url, identity, version }) {
    this.url = url;
    this.identity = identity;
    this.version = version;
    this.secret = null;
    this.kind = 'auto'; // 'auto' | 'token' | 'password'
    this.scopesOverride = null;
    this.trusted = isTrustedRetryEndpoint(url);
    this.listeners = { status: [], event: [], notice: [] };
    this.ws = null;
    this.hello = null;
    this.gen = 0;
    this.timer = null;
    this.failures = 0;
    this.retryUsed = false;
    this.retryPending = false;
    this.retriedAfter = null;
    this.passwordFallbackUsed = false;
    this.afterInvalidation = null;
    this.pending = new Map();
    this.nextId = 1;
    this.stopped = true;
    this.lastStatus = null;
  }

  on(kind, fn) {
    this.listeners[kind].push(fn);
    return () => { this.listeners[kind] = this.listeners[kind].filter((f) => f !== fn); };
  }

  emit(kind, value) {
    if (kind === 'status') this.lastStatus = value;
    for (const fn of [...this.listeners[kind]]) {
      try {
        fn(value);
      } catch (e) {
        console.error('listener failed', e);
      }
    }
  }

  setSecret(secret, kind = 'auto') {
    this.secret = secret && secret.trim() ? secret : null;
    this.kind = this.secret ? kind : 'auto';
    this.passwordFallbackUsed = false;
  }

  /** Scopes for the next connects (null: the UI's full set). */
  requestScopes(scopes) {
    this.scopesOverride = scopes;
  }

  get connected() {
    return !!(this.ws && this.hello && this.ws.readyState === WebSocket.OPEN);
  }

  get scopes() {
    return (this.hello && this.hello.auth && this.hello.auth.scopes) || [];
  }

  /** Starts (or restarts) connecting now, with a fresh retry budget. */
  start() {
    this.stopped = false;
    this.failures = 0;
    this.retryUsed = false;
    this.retryPending = false;
    this.retriedAfter = null;
    this.connectNow();
  }

  /** Connects now, cancelling any scheduled attempt (keeps the budget). */
  connectNow() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.timer = null;
    this.closeSocket(1000, 'reconnecting');
    this.cycle();
  }

  stop() {
    this.stopped = true;
    this.gen += 1;
    clearTimeout(this.timer);
    this.timer = null;
    this.closeSocket(1000, 'client closed');
    this.emit('status', { phase: 'stopped' });
  }

  closeSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.hello = null;
    clearInterval(this.tickTimer);
    this.failPending(new RequestError({ code: 'UNAVAILABLE', message: 'connection closed' }));
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  failPending(err) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this.pending.clear();
  }

  schedule(delayMs, status) {
    clearTimeout(this.timer);
    this.emit('status', { ...status, delayMs, at: Date.now() + delayMs });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.cycle();
    }, delayMs);
  }

  backoff(minMs = 0) {
    const cap = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** Math.min(this.failures, 16));
    // Jitter in [cap/2, cap]: clients restarted together spread out, and
    // the countdown the user sees is never shorter than half the cap.
    const jittered = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.failures += 1;
    return Math.max(minMs, jittered, INITIAL_BACKOFF_MS);
  }

  async cycle() {
    const gen = ++this.gen;
    const stored = loadDeviceToken(this.url, this.identity.deviceId, ROLE);
    const plan = selectAuth({
      secret: this.secret,
      kind: this.kind,
      stored,
      retryWithStored: this.retryPending && this.trusted,
      scopes: this.scopesOverride,
    });
    this.retryPending = false;
    this.emit('status', { phase: 'connecting', plan: { secret: !!this.secret, deviceToken: plan.usedStored } });
    let result;
    try {
      result = await this.attempt(plan, gen);
    } catch (err) {
      if (gen !== this.gen || this.stopped) return;
      this.onConnectFailure(err instanceof ConnectError ? err : new ConnectError('unreachable', { message: String(err && err.message || err) }), plan, stored);
      return;
    }
    if (gen !== this.gen || this.stopped) {
      try { result.ws.close(1000, 'superseded'); } catch { /* ignore */ }
      return;
    }
    this.onHello(result.ws, result.hello, plan, stored, gen);
  }

  onConnectFailure(err, plan, stored) {
    const code = err.code;
    if (code === 'AUTH_DEVICE_TOKEN_MISMATCH' && plan.usedStored) {
      removeDeviceToken(this.url, this.identity.deviceId, ROLE, plan.auth.deviceToken);
    }
    // The one bounded retry (clients.md 1.3): a refused shared token, a
    // cached device token, a trusted endpoint, once per cycle.
    if (code === 'AUTH_TOKEN_MISMATCH' && !this.retryUsed && !plan.auth.deviceToken
        && plan.auth.token !== undefined && stored && this.trusted) {
      this.retryUsed = true;
      this.retryPending = true;
      this.retriedAfter = err;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => { this.timer = null; if (!this.stopped) this.cycle(); }, FAST_RETRY_MS);
      return;
    }
    // A secret typed without saying which kind: a gateway that wants a
    // password in the password field gets it there, once.
    if (code === 'AUTH_PASSWORD_MISSING' && plan.auth.token !== undefined && this.kind === 'auto' && !this.passwordFallbackUsed) {
      this.passwordFallbackUsed = true;
      this.kind = 'password';
      clearTimeout(this.timer);
      this.timer = setTimeout(() => { this.timer = null; if (!this.stopped) this.cycle(); }, 0);
      return;
    }
    if (code === 'AUTH_PASSWORD_MISMATCH' && this.kind === 'auto') this.kind = 'password';
    const firstError = this.retriedAfter;
    this.retriedAfter = null;
    if (err.kind === 'gateway' && pausesReconnect(err.error)) {
      this.emit('status', { phase: 'paused', error: err, firstError, usedStored: plan.usedStored });
      return;
    }
    const retryAfter = (err.error && err.error.retryAfterMs) || 0;
    this.schedule(this.backoff(retryAfter), { phase: 'retrying', error: err, failures: this.failures + 1 });
  }

  onHello(ws, hello, plan, stored, gen) {
    this.ws = ws;
    this.hello = hello;
    this.failures = 0;
    this.retryUsed = false;
    const auth = hello.auth || {};
    const snapshot = hello.snapshot || {};
    // Save the device token (compare-and-swap against what was read).
    if (auth.deviceToken) {
      const role = auth.role || ROLE;
      const scopes = stored && stored.token === auth.deviceToken ? stored.scopes : (auth.scopes || []);
      if (!(stored && stored.token === auth.deviceToken && role === ROLE)) {
        storeDeviceToken(this.url, this.identity.deviceId, role, auth.deviceToken, scopes, stored ? stored.token : null);
      }
    }
    // The shared secret: kept for the tab only in token mode, and only if
    // the gateway accepted it (not when the device token carried the day).
    // snapshot.authMode is only sent to admin sessions; auth.method names
    // the mode whenever the shared secret was what got the socket in.
    const mode = snapshot.authMode || (['token', 'password', 'none'].includes(auth.method) ? auth.method : undefined);
    if (mode === 'password') {
      this.kind = 'password';
      clearSessionToken(this.url);
    } else if (mode === 'token' && plan.auth.token && auth.method === 'token') {
      this.kind = 'token';
      saveSessionToken(this.url, plan.auth.token);
    }
    const recovered = this.retriedAfter;
    this.retriedAfter = null;
    const invalidation = this.afterInvalidation;
    this.afterInvalidation = null;

    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => this.onLiveClose(ws, ev, gen);
    ws.onerror = () => {};
    this.lastFrameAt = Date.now();
    const tick = Math.max(1000, (hello.policy && hello.policy.tickIntervalMs) || 30000);
    clearInterval(this.tickTimer);
    this.tickTimer = setInterval(() => {
      if (this.ws !== ws) return;
      if (Date.now() - this.lastFrameAt > 2 * tick && this.pending.size === 0) {
        try { ws.close(4000, 'tick timeout'); } catch { /* ignore */ }
        this.onLiveClose(ws, { code: 4000, reason: 'tick timeout' }, gen);
      }
    }, 1000);
    this.emit('status', { phase: 'open', hello });
    if (recovered) this.emit('notice', { kind: 'recovered', error: recovered, method: auth.method });
    if (invalidation) this.emit('notice', { kind: 'reissued', reason: invalidation, method: auth.method });
  }

  onLiveClose(ws, ev, gen) {
    if (this.ws !== ws || gen !== this.gen) return;
    this.ws = null;
    this.hello = null;
    clearInterval(this.tickTimer);
    this.failPending(new RequestError({ code: 'UNAVAILABLE', message: `connection closed (${ev.code})` }));
    if (this.stopped) return;
    const reason = ev.reason || '';
    if (ev.code === 4001 && /device removed/i.test(reason)) {
      // This browser was removed: its token is gone; reconnecting would ask
      // for pairing again (or silently re-pair on loopback). Wait for the user.
      removeDeviceToken(this.url, this.identity.deviceId, ROLE, null);
      this.emit('status', {
        phase: 'paused',
        error: new ConnectError('local', { closeCode: ev.code, closeReason: reason, message: reason }),
      });
      return;
    }
    this.emit('status', { phase: 'lost', code: ev.code, reason });
    if (ev.code === 4001) {
      // Token rotated or revoked, or the shared secret changed: reconnect
      // at once; with the shared token a fresh device token comes back.
      this.afterInvalidation = reason || 'session invalidated';
      this.retryUsed = false;
      this.schedule(FAST_RETRY_MS, { phase: 'retrying', error: new ConnectError('closed', { closeCode: ev.code, closeReason: reason }), failures: 0 });
      return;
    }
    this.schedule(this.backoff(), { phase: 'retrying', error: new ConnectError('closed', { closeCode: ev.code, closeReason: reason }), failures: this.failures, afterLost: true });
  }

  onFrame(data) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === 'res') {
      const p = this.pending.get(frame.id);
      if (!p) return;
      this.pending.delete(frame.id);
      clearTimeout(p.timer);
      if (frame.ok) p.resolve(frame.payload);
      else p.reject(new RequestError(frame.error || { code: 'UNKNOWN', message: 'request failed' }));
    } else if (frame.type === 'event' && frame.event !== 'tick') {
      this.emit('event', { event: frame.event, payload: frame.payload, seq: frame.seq });
    }
  }

  /** Sends a request; resolves with its payload or rejects with RequestError. */
  request(method, params = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.connected) return Promise.reject(new RequestError({ code: 'UNAVAILABLE', message: 'not connected' }));
    this.nextId += 1;
    const id = `${this.nextId}:${uuid()}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError({ code: 'TIMEOUT', message: `${method} timed out after ${Math.round(timeoutMs / 1000)} s` }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new RequestError({ code: 'UNAVAILABLE', message: String(e && e.message || e) }));
      }
    });
  }

  /** One connect attempt: open, challenge, signed connect, hello-ok. */
  attempt(plan, gen) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        reject(new ConnectError('unreachable', { message: `cannot open ${this.url}: ${e.message || e}` }));
        return;
      }
      this.ws = ws;
      this.nextId = 1;
      let opened = false;
      let connectId = null;
      let refused = null;
      let done = false;
      const finish = (fn, value) => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        clearTimeout(challengeTimer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        fn(value);
      };
      const fail = (err) => {
        if (this.ws === ws) this.ws = null;
        try { ws.close(1000, ''); } catch { /* ignore */ }
        finish(reject, err);
      };
      const deadline = setTimeout(() => fail(new ConnectError('timeout', { message: `no hello from the gateway within ${HANDSHAKE_TIMEOUT_MS / 1000} s` })), HANDSHAKE_TIMEOUT_MS);
      let challengeTimer = null;
      ws.onopen = () => {
        opened = true;
        challengeTimer = setTimeout(() => fail(new ConnectError('timeout', { message: 'the gateway sent no connect challenge' })), CHALLENGE_TIMEOUT_MS);
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        if (this.ws === ws) this.ws = null;
        if (refused) finish(reject, new ConnectError('gateway', { error: refused, closeCode: ev.code, closeReason: ev.reason }));
        else if (!opened) finish(reject, new ConnectError('unreachable', { closeCode: ev.code, closeReason: ev.reason, message: `could not reach ${this.url}` }));
        else finish(reject, new ConnectError('closed', { closeCode: ev.code, closeReason: ev.reason, message: ev.reason || `the gateway closed the connection (${ev.code})` }));
      };
      ws.onmessage = async (ev) => {
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (frame.type === 'event' && frame.event === 'connect.challenge' && !connectId) {
          clearTimeout(challengeTimer);
          const nonce = frame.payload && typeof frame.payload.nonce === 'string' ? frame.payload.nonce : '';
          if (!nonce) {
            fail(new ConnectError('closed', { message: 'connect challenge missing nonce' }));
            return;
          }
          const ts = frame.payload.ts;
          const signedAt = Number.isInteger(ts) && ts > 0 ? ts : Date.now();
          connectId = `1:${uuid()}`;
          let params;
          try {
            params = await this.connectParams(plan, nonce, signedAt);
          } catch (e) {
            fail(new ConnectError('closed', { message: `could not sign the connect request: ${e.message || e}` }));
            return;
          }
          if (done || gen !== this.gen) return;
          ws.send(JSON.stringify({ type: 'req', id: connectId, method: 'connect', params }));
        } else if (frame.type === 'res' && connectId && frame.id === connectId) {
          if (frame.ok && frame.payload) finish(resolve, { ws, hello: frame.payload });
          else {
            refused = frame.error || { code: 'UNKNOWN', message: 'connect refused' };
            // The close follows; if it does not come soon, stop waiting.
            setTimeout(() => fail(new ConnectError('gateway', { error: refused })), 1500);
          }
        }
      };
    });
  }

  async connectParams(plan, nonce, signedAt) {
    const platform = clientPlatform();
    const client = {
      id: CLIENT_ID,
      displayName: browserName(),
      version: this.version,
      platform,
      mode: CLIENT_MODE,
    };
    const payload = v3Payload({
      deviceId: this.identity.deviceId,
      clientId: CLIENT_ID,
      clientMode: CLIENT_MODE,
      role: ROLE,
      scopes: plan.scopes,
      signedAt,
      token: plan.signatureToken,
      nonce,
      platform,
      deviceFamily: '',
    });
    return {
      minProtocol: PROTOCOL,
      maxProtocol: PROTOCOL,
      client,
      caps: [],
      role: ROLE,
      scopes: plan.scopes,
      auth: plan.auth,
      device: {
        id: this.identity.deviceId,
        publicKey: this.identity.publicKey,
        signature: await this.identity.sign(payload),
        signedAt,
        nonce,
      },
    };
  }
}
