// Boot and the screen controller: which card or page main#app shows for
// each state of the gateway client.

import { announce } from './dom.js';
import { loadIdentity } from './identity.js';
import { loadCatalogue } from './catalogue.js';
import { GatewayClient, UI_SCOPES } from './gateway.js';
import {
  normalizeGatewayUrl, defaultGatewayUrl, loadSessionToken, clearSessionToken, loadTabGatewayUrl,
  saveTabGatewayUrl, isSignedOut, setSignedOut, loadDeviceToken, storeDeviceToken, JS_IDENTITY_KEY,
} from './storage.js';
import { signInWithPasskey, PasskeyError } from './passkeys.js';
import { authScreen, loginScreen, connectingScreen, pairingScreen, hostOf } from './screens.js';
import { createApp } from './app.js';

// 1. A `#token=` fragment is taken once and removed from the address bar
//    before anything else runs (it never reaches the server or history).
function takeFragmentToken() {
  const hash = location.hash.replace(/^#/, '');
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (token === null) return null;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  return token.trim() || null;
}
const fragmentToken = takeFragmentToken();

const PAIRING_POLL_MS = 3000;
const PAIRING_POLL_HIDDEN_MS = 15000;
const main = document.getElementById('app');
const rawVersion = document.documentElement.dataset.version || '';
const VERSION = rawVersion && !rawVersion.startsWith('__') ? rawVersion : 'dev';

const state = {
  url: null,
  identity: null,
  client: null,
  typedSecret: '',
  view: 'connecting',
  app: null,
  timers: { countdown: null, poll: null },
  pairing: { requestId: null, superseded: false },
  lastError: null,
};

function clearTimers() {
  clearInterval(state.timers.countdown);
  clearTimeout(state.timers.poll);
  state.timers.countdown = null;
  state.timers.poll = null;
}

/** The context the cards use (callbacks and what they show). */
function ctx() {
  const client = state.client;
  return {
    url: state.url,
    identity: state.identity,
    hasSecret: !!(client && client.secret),
    secretKind: client && client.secret ? client.kind : null,
    hasDeviceToken: !!loadDeviceToken(state.url, state.identity.deviceId, 'operator'),
    get typedSecret() { return state.typedSecret; },
    set typedSecret(v) { state.typedSecret = v; },
    onConnect: connectFromForm,
    onChange: showLoginForm,
    onRetry: () => { clearTimers(); state.client.start(); },
    onCheckNow: checkPairingNow,
    onRequestAccess: requestAccess,
    onResetIdentity: resetIdentity,
    onPasskeySignIn: passkeySignIn,
  };
}

function setView(view) {
  const changed = state.view !== view;
  state.view = view;
  if (view !== 'app' && state.app) {
    state.app.destroy();
    state.app = null;
  }
  return changed;
}

function focusTitle() {
  const title = document.getElementById('screen-title');
  const active = document.activeElement;
  // Do not steal focus from a field the user is typing in.
  if (title && (!active || active === document.body || !main.contains(active))) title.focus({ preventScroll: true });
}

function newClient(url) {
  if (state.client) state.client.stop();
  state.url = url;
  const client = new GatewayClient({ url, identity: state.identity, version: VERSION });
  client.on('status', onStatus);
  client.on('notice', onNotice);
  client.on('event', (ev) => { if (state.app) state.app.onEvent(ev); });
  state.client = client;
  return client;
}

function connectFromForm(urlText, secret) {
  const url = normalizeGatewayUrl(urlText);
  if (!url) return false;
  clearTimers();
  if (url !== state.url || !state.client) newClient(url);
  saveTabGatewayUrl(url);
  setSignedOut(url, false);
  state.typedSecret = secret;
  // A gateway already known to want a password gets it in auth.password.
  state.client.setSecret(secret, state.client.kind === 'password' ? 'password' : 'auto');
  state.client.requestScopes(null);
  state.pairing = { requestId: null, superseded: false };
  state.client.start();
  return true;
}

/**
 * Sign in with a passkey (docs/passkeys.md): the ceremony gives this
 * browser's own device a device token, saved like any other, and the
 * client connects with the device identity and that token only. No shared
 * secret is involved (the tab's typed or saved one is dropped).
 */
async function passkeySignIn(onStep) {
  const url = state.url;
  const deviceId = state.identity.deviceId;
  const res = await signInWithPasskey(state.identity, onStep);
  if (res.deviceId && res.deviceId !== deviceId) {
    throw new PasskeyError({ message: 'The gateway approved a different device than this browser.' });
  }
  if (typeof res.deviceToken !== 'string' || !res.deviceToken) {
    throw new PasskeyError({ message: 'The gateway sent no device token.' });
  }
  const role = res.role || 'operator';
  const current = loadDeviceToken(url, deviceId, role);
  storeDeviceToken(url, deviceId, role, res.deviceToken, res.scopes || [], current ? current.token : null);
  clearTimers();
  if (url !== state.url || !state.client) newClient(url);
  saveTabGatewayUrl(url);
  setSignedOut(url, false);
  clearSessionToken(url);
  state.typedSecret = '';
  state.client.setSecret(null);
  state.client.requestScopes(null);
  state.pairing = { requestId: null, superseded: false };
  const name = res.passkey && res.passkey.label ? ` "${res.passkey.label}"` : '';
  announce(`Signed in with the passkey${name}. Connecting…`);
  state.client.start();
}

function showLoginForm(message) {
  clearTimers();
  if (state.client) state.client.stop();
  setView('login');
  loginScreen(main, ctx(), typeof message === 'string' ? message : undefined);
  const secret = document.getElementById('gateway-secret');
  if (secret) secret.focus();
}

function checkPairingNow() {
  clearTimeout(state.timers.poll);
  const status = document.getElementById('pairing-status');
  if (status) status.lastChild.textContent = 'Checking…';
  state.client.connectNow();
}

function requestAccess() {
  clearTimers();
  const client = state.client;
  if (!client.secret) {
    showLoginForm('Enter the gateway token to ask for more access; the gateway then opens an approval request for this browser.');
    return;
  }
  client.requestScopes(UI_SCOPES);
  client.start();
}

async function resetIdentity() {
  try {
    localStorage.removeItem(JS_IDENTITY_KEY);
    localStorage.removeItem(`clawgate.device.auth.v1:${state.url}`);
    await new Promise((resolve) => {
      const req = indexedDB.deleteDatabase('clawgate');
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    });
  } catch {
    // best effort
  }
  location.reload();
}

function startCountdown(id, untilMs, onZero) {
  clearInterval(state.timers.countdown);
  const update = () => {
    const left = Math.max(0, Math.ceil((untilMs - Date.now()) / 1000));
    const el = document.getElementById(id);
    if (el) el.textContent = String(left);
    if (left <= 0) {
      clearInterval(state.timers.countdown);
      state.timers.countdown = null;
      if (onZero) onZero();
    }
  };
  update();
  state.timers.countdown = setInterval(update, 1000);
}

function schedulePairingPoll() {
  clearTimeout(state.timers.poll);
  const delay = document.hidden ? PAIRING_POLL_HIDDEN_MS : PAIRING_POLL_MS;
  state.timers.poll = setTimeout(() => {
    if (state.view === 'pairing') checkPairingNow();
  }, delay);
}

function onStatus(s) {
  switch (s.phase) {
    case 'connecting':
      if (state.view === 'app') state.app.setConnection('connecting');
      else if (state.view === 'pairing') {
        const status = document.getElementById('pairing-status');
        if (status) status.lastChild.textContent = 'Checking…';
      } else if (state.view === 'error' && main.dataset.code === 'GATEWAY_UNREACHABLE') {
        const el = document.getElementById('next-retry');
        if (el) el.textContent = '0';
      } else if (state.view !== 'connecting') {
        setView('connecting');
        connectingScreen(main, ctx(), s.plan && s.plan.secret ? 'Checking the secret and signing in with this browser\'s key.' : undefined);
      }
      break;
    case 'open':
      onOpen(s.hello);
      break;
    case 'paused':
      onPaused(s.error);
      break;
    case 'retrying':
      onRetrying(s);
      break;
    case 'lost':
      if (state.app) state.app.setConnection('lost', s.reason);
      break;
    default:
      break;
  }
}

function onOpen(hello) {
  clearTimers();
  const wasPairing = state.view === 'pairing';
  state.pairing = { requestId: null, superseded: false };
  state.client.requestScopes(null);
  if (state.view !== 'app') {
    setView('app');
    state.app = createApp(main, {
      client: state.client,
      identity: state.identity,
      url: state.url,
      onDisconnect: disconnect,
      onRequestAccess: requestAccess,
    });
    announce(wasPairing ? 'Approved. Connected to the gateway.' : `Connected to ${hostOf(state.url)}.`);
  }
  state.app.setHello(hello);
}

function onPaused(err) {
  clearTimers();
  state.lastError = err;
  const code = err.code;
  if (code === 'PAIRING_REQUIRED') {
    const requestId = err.error && err.error.details && err.error.details.requestId;
    if (state.pairing.requestId && requestId && requestId !== state.pairing.requestId) state.pairing.superseded = true;
    const first = setView('pairing');
    state.pairing.requestId = requestId || state.pairing.requestId;
    pairingScreen(main, ctx(), err, { superseded: state.pairing.superseded });
    if (first) {
      focusTitle();
      announce('Waiting for approval on the gateway host.');
    }
    schedulePairingPoll();
    return;
  }
  if (code === 'AUTH_RATE_LIMITED') {
    setView('error');
    const ms = (err.error && err.error.retryAfterMs) || 60000;
    authScreen(main, ctx(), code, err, { seconds: Math.ceil(ms / 1000) });
    state.view = 'login';
    focusTitle();
    announce(`Too many failed attempts. Trying again in ${Math.ceil(ms / 1000)} seconds.`);
    startCountdown('countdown', Date.now() + ms, () => {
      // Whatever is in the secret field now is what the next attempt uses.
      const typed = state.typedSecret;
      if (typed && typed !== state.client.secret) state.client.setSecret(typed, 'auto');
      state.client.start();
    });
    return;
  }
  setView('error');
  const d = authScreen(main, ctx(), code, err, {});
  state.view = d.screen;
  focusTitle();
  announce(`${document.getElementById('screen-title').textContent}. ${document.getElementById('screen-message').textContent}`);
}

function onRetrying(s) {
  const err = s.error;
  if (state.view === 'app' && (s.failures <= 1 || s.afterLost)) {
    state.app.setConnection('retrying', null, s.at);
    return;
  }
  clearTimers();
  const code = err.kind === 'gateway' ? err.code : 'GATEWAY_UNREACHABLE';
  const first = setView('error') || main.dataset.code !== code;
  authScreen(main, ctx(), code, err, { seconds: Math.ceil(s.delayMs / 1000) });
  if (code !== 'GATEWAY_UNREACHABLE') {
    // A transient gateway error: show when the next attempt happens.
    const line = document.createElement('p');
    line.className = 'status-line';
    line.append('Next attempt in ');
    const strong = document.createElement('strong');
    strong.id = 'next-retry';
    line.append(strong, ' s');
    document.getElementById('screen-message').after(line);
  }
  if (first) {
    focusTitle();
    announce(`${document.getElementById('screen-title').textContent}. Retrying automatically.`);
  }
  startCountdown('next-retry', s.at, null);
}

function onNotice(n) {
  if (!state.app) return;
  if (n.kind === 'recovered') {
    state.app.notify('The secret you entered was not accepted; connected with this browser\'s saved device token instead.');
  } else if (n.kind === 'reissued') {
    const what = /revoked/i.test(n.reason) ? 'revoked' : /rotated/i.test(n.reason) ? 'rotated' : 'reset';
    state.app.notify(what === 'reset'
      ? 'The gateway ended this session; reconnected.'
      : `This browser's device token was ${what} by another session; reconnected with a fresh one.`);
  }
}

function disconnect() {
  clearSessionToken(state.url);
  setSignedOut(state.url, true);
  state.client.setSecret(null);
  state.typedSecret = '';
  showLoginForm('Disconnected. Enter the token to connect again; this tab will not reconnect on its own.');
}

// A #token= link opened in a tab that already shows the UI is a same-page
// navigation: take the token the same way and connect with it.
window.addEventListener('hashchange', () => {
  const token = takeFragmentToken();
  if (!token || !state.client) return;
  clearTimers();
  setSignedOut(state.url, false);
  state.typedSecret = token;
  state.client.setSecret(token, 'token');
  state.client.requestScopes(null);
  state.client.start();
});

document.addEventListener('visibilitychange', () => {
  if (state.view === 'pairing' && !document.hidden) schedulePairingPoll();
});

async function boot() {
  const url = normalizeGatewayUrl(loadTabGatewayUrl()) || defaultGatewayUrl();
  state.url = url;
  loadCatalogue();
  try {
    state.identity = await loadIdentity();
  } catch (e) {
    main.dataset.screen = 'error';
    main.dataset.code = 'DEVICE_IDENTITY_UNAVAILABLE';
    const title = document.getElementById('screen-title');
    const message = document.getElementById('screen-message');
    if (title) title.textContent = 'This browser cannot create a device key';
    if (message) message.textContent = `The Control UI needs an Ed25519 key and could not make one (${e && e.message ? e.message : e}). Try a current browser.`;
    return;
  }
  newClient(url);
  if (fragmentToken) {
    setSignedOut(url, false);
    state.typedSecret = fragmentToken;
    state.client.setSecret(fragmentToken, 'token');
  } else {
    const saved = loadSessionToken(url);
    if (saved) state.client.setSecret(saved, 'token');
  }
  if (!fragmentToken && isSignedOut(url)) {
    showLoginForm('This tab was disconnected. Enter the token to connect again.');
    return;
  }
  connectingScreen(main, ctx());
  state.client.start();
}

boot();
