// Browser storage (see ui/README.md "Storage"). Every access is guarded:
// storage can be disabled or full, and the UI must still work for the tab.

const TOKEN_PREFIX = 'clawgate.token.v1:';
const DEVICE_PREFIX = 'clawgate.device.auth.v1:';
const URL_KEY = 'clawgate.gatewayUrl.v1';
const SIGNED_OUT_PREFIX = 'clawgate.signedOut.v1:';
export const JS_IDENTITY_KEY = 'clawgate.device.identity.v1';

function get(store, key) {
  try {
    return store.getItem(key);
  } catch {
    return null;
  }
}

function set(store, key, value) {
  try {
    store.setItem(key, value);
    return true;
  } catch {
    return false;
  }
}

function remove(store, key) {
  try {
    store.removeItem(key);
  } catch {
    // nothing to do
  }
}

const session = () => window.sessionStorage;
const local = () => window.localStorage;

/**
 * The normalised gateway URL: `ws(s)://host[:port][/path]`, no trailing
 * slash, query or fragment. http(s) is accepted and mapped to ws(s).
 * Returns null when the text is not such a URL.
 */
export function normalizeGatewayUrl(raw) {
  const text = String(raw || '').trim();
  if (!text) return null;
  let url;
  try {
    url = new URL(text.includes('://') ? text : `ws://${text}`);
  } catch {
    return null;
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[url.protocol];
  if (!scheme || !url.host || url.username || url.password) return null;
  const path = url.pathname.replace(/\/+$/, '');
  return `${scheme}//${url.host}${path}`;
}

/** The gateway URL for this page: its own origin with ws(s). */
export function defaultGatewayUrl() {
  return normalizeGatewayUrl(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`);
}

// Shared token: sessionStorage only, and only for token-mode gateways.
export const loadSessionToken = (url) => get(session(), TOKEN_PREFIX + url) || null;
export const saveSessionToken = (url, token) => set(session(), TOKEN_PREFIX + url, token);
export const clearSessionToken = (url) => remove(session(), TOKEN_PREFIX + url);

// The gateway URL chosen in this tab (when it is not the page's own).
export const loadTabGatewayUrl = () => get(session(), URL_KEY);
export function saveTabGatewayUrl(url) {
  if (url === defaultGatewayUrl()) remove(session(), URL_KEY);
  else set(session(), URL_KEY, url);
}

// "Disconnect" in this tab: do not reconnect on reload until Connect.
export const isSignedOut = (url) => get(session(), SIGNED_OUT_PREFIX + url) === '1';
export function setSignedOut(url, value) {
  if (value) set(session(), SIGNED_OUT_PREFIX + url, '1');
  else remove(session(), SIGNED_OUT_PREFIX + url);
}

function readDeviceAuth(url) {
  const raw = get(local(), DEVICE_PREFIX + url);
  if (!raw) return null;
  try {
    const v = JSON.parse(raw);
    if (v && v.version === 1 && typeof v.deviceId === 'string' && v.tokens && typeof v.tokens === 'object') return v;
  } catch {
    // unreadable: treated as absent
  }
  return null;
}

/** The cached device token for (gateway, this device, role), or null. */
export function loadDeviceToken(url, deviceId, role) {
  const v = readDeviceAuth(url);
  if (!v || v.deviceId !== deviceId) return null;
  const entry = v.tokens[role];
  if (!entry || typeof entry.token !== 'string' || !entry.token) return null;
  return { token: entry.token, role, scopes: Array.isArray(entry.scopes) ? entry.scopes : [], updatedAtMs: entry.updatedAtMs };
}

/**
 * Saves a device token. `expected` is the token read before the attempt
 * (null if none): when the cache holds something else now, another tab
 * wrote a newer token and it is kept (compare-and-swap).
 */
export function storeDeviceToken(url, deviceId, role, token, scopes, expected) {
  let v = readDeviceAuth(url);
  if (!v || v.deviceId !== deviceId) v = { version: 1, deviceId, tokens: {} };
  const current = v.tokens[role] ? v.tokens[role].token : null;
  if (current && current !== expected && current !== token) return false;
  v.tokens[role] = { token, role, scopes: [...scopes], updatedAtMs: Date.now() };
  return set(local(), DEVICE_PREFIX + url, JSON.stringify(v));
}

/** Drops a device token, only if the cache still holds the one that was sent. */
export function removeDeviceToken(url, deviceId, role, sent) {
  const v = readDeviceAuth(url);
  if (!v || v.deviceId !== deviceId || !v.tokens[role]) return;
  if (sent && v.tokens[role].token !== sent) return;
  delete v.tokens[role];
  if (Object.keys(v.tokens).length === 0) remove(local(), DEVICE_PREFIX + url);
  else set(local(), DEVICE_PREFIX + url, JSON.stringify(v));
}

export const loadJsIdentity = () => get(local(), JS_IDENTITY_KEY);
export const saveJsIdentity = (value) => set(local(), JS_IDENTITY_KEY, value);
