// Passkeys (WebAuthn), the browser half of docs/passkeys.md: where they can
// work, the sign-in ceremony over the pre-auth HTTP endpoints, and the
// registration ceremony over an operator session's RPC.

import { b64url, fromB64url } from './identity.js';
import { entry, commandFrom } from './catalogue.js';

export const SIGNIN_VERSION = 'clawgate-passkey-signin|v1';
export const TLS_COMMAND = 'clawgate config set gateway.tls.enabled true';

function isIpHost(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '');
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':');
}

function isLoopbackIp(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** This page's URL on `localhost` (same port and path, no `#token=`). */
export function localhostUrl(loc = location) {
  const u = new URL(loc.href);
  u.hostname = 'localhost';
  const params = new URLSearchParams(u.hash.replace(/^#/, ''));
  params.delete('token');
  const rest = params.toString();
  u.hash = rest ? `#${rest}` : '';
  return u.href;
}

/**
 * Whether passkeys can work on this page: `{ok: true}` or `{ok: false,
 * reason, ...}` with reason `ip` (a loopback IP address: `localhostUrl`
 * links to the same page on localhost), `ip-remote` (another IP address),
 * `insecure` (plain http, not a secure context) or `unsupported` (no
 * WebAuthn in this browser).
 */
export function passkeySupport(win = window) {
  const { hostname } = win.location;
  if (isIpHost(hostname)) {
    return isLoopbackIp(hostname)
      ? { ok: false, reason: 'ip', localhostUrl: localhostUrl(win.location) }
      : { ok: false, reason: 'ip-remote' };
  }
  if (!win.isSecureContext) return { ok: false, reason: 'insecure' };
  if (!win.PublicKeyCredential || !win.navigator.credentials || typeof win.navigator.credentials.get !== 'function') {
    return { ok: false, reason: 'unsupported' };
  }
  return { ok: true };
}

/** A refused ceremony: the gateway's error shape, or the browser's DOMException. */
export class PasskeyError extends Error {
  constructor({ error = null, status = 0, cause = null, message = '' } = {}) {
    super(message || (error && error.message) || (cause && cause.message) || 'passkey sign-in failed');
    this.error = error;
    this.status = status;
    this.cause = cause;
  }

  /** details.code, else error.code, else the DOMException's name. */
  get code() {
    if (this.error) return (this.error.details && this.error.details.code) || this.error.code || 'UNKNOWN';
    return (this.cause && this.cause.name) || 'UNKNOWN';
  }

  get reason() {
    return (this.error && this.error.details && this.error.details.reason) || null;
  }

  /** The user closed or refused the browser's prompt (or it timed out). */
  get cancelled() {
    return !this.error && !!this.cause && this.cause.name === 'NotAllowedError';
  }
}

/** What to show for a failed ceremony: {text, next, command, cancelled}. */
export function describePasskeyError(err) {
  if (err.cancelled) return { cancelled: true, text: 'Sign-in cancelled. Nothing was sent; try again when you are ready.' };
  if (!err.error) {
    const name = err.cause && err.cause.name;
    if (name === 'SecurityError') {
      return { text: `This browser refused to use passkeys on ${location.host} (${err.message}).` };
    }
    return { text: `The passkey prompt failed: ${err.message}` };
  }
  const cat = entry(err.code);
  const next = cat && cat.next ? cat.next : null;
  let text = err.error.message || (cat && cat.meaning) || 'The gateway refused the passkey.';
  const after = err.error.retryAfterMs;
  if (err.code === 'AUTH_RATE_LIMITED' && after) text += ` Try again in ${Math.ceil(after / 1000)} s.`;
  return { text, next, command: next ? commandFrom(next) : null };
}

// -------------------------------------------- JSON <-> WebAuthn structures
// Current browsers have PublicKeyCredential.parse*OptionsFromJSON and
// credential.toJSON(); the fallbacks cover the ones that do not yet.

const bytes = (text) => fromB64url(String(text));
const b64 = (buf) => b64url(ArrayBuffer.isView(buf) ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : new Uint8Array(buf));

function descriptors(list) {
  return Array.isArray(list) ? list.map((d) => ({ ...d, id: bytes(d.id) })) : list;
}

export function parseRequestOptions(json) {
  const PKC = window.PublicKeyCredential;
  if (PKC && typeof PKC.parseRequestOptionsFromJSON === 'function') return PKC.parseRequestOptionsFromJSON(json);
  return { ...json, challenge: bytes(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
}

export function parseCreationOptions(json) {
  const PKC = window.PublicKeyCredential;
  if (PKC && typeof PKC.parseCreationOptionsFromJSON === 'function') return PKC.parseCreationOptionsFromJSON(json);
  return {
    ...json,
    challenge: bytes(json.challenge),
    user: { ...json.user, id: bytes(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

/** credential.toJSON(), or the same shape built by hand. */
export function credentialJson(cred) {
  if (typeof cred.toJSON === 'function') return cred.toJSON();
  const r = cred.response;
  const response = { clientDataJSON: b64(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = b64(r.attestationObject);
    if (typeof r.getTransports === 'function') response.transports = r.getTransports();
  } else {
    response.authenticatorData = b64(r.authenticatorData);
    response.signature = b64(r.signature);
    if (r.userHandle) response.userHandle = b64(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: b64(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: typeof cred.getClientExtensionResults === 'function' ? cred.getClientExtensionResults() : {},
  };
}

// ------------------------------------------------------------- sign-in

/** The endpoint under the Control UI's base path. */
function endpoint(name) {
  return new URL(`api/passkeys/${name}`, document.baseURI).href;
}

async function post(name, body) {
  let res;
  try {
    res = await fetch(endpoint(name), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (e) {
    throw new PasskeyError({ error: { code: 'UNAVAILABLE', message: `Could not reach the gateway (${e.message || e}).`, details: { code: 'GATEWAY_UNREACHABLE' } } });
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (!res.ok || !json || json.ok !== true) {
    const error = (json && json.error) || {
      code: 'UNAVAILABLE',
      message: res.status === 404 || res.status === 405
        ? 'This gateway does not offer passkey sign-in (it may be an older version).'
        : `The gateway answered HTTP ${res.status}.`,
      details: { code: res.status === 404 || res.status === 405 ? 'PASSKEY_UNSUPPORTED' : 'UNAVAILABLE' },
    };
    if (!error.retryAfterMs) {
      const after = Number(res.headers.get('Retry-After'));
      if (after > 0) error.retryAfterMs = after * 1000;
    }
    throw new PasskeyError({ error, status: res.status });
  }
  return json;
}

/** The text the device key signs (docs/passkeys.md). */
export function signinPayload(deviceId, challenge, signedAt) {
  return `${SIGNIN_VERSION}|${deviceId}|${challenge}|${signedAt}`;
}

/**
 * The sign-in ceremony. Resolves with the gateway's answer
 * `{deviceId, role, scopes, deviceToken, passkey}`; rejects with a
 * PasskeyError. `onStep(text)` reports progress.
 */
export async function signInWithPasskey(identity, onStep = () => {}) {
  const device = { id: identity.deviceId, publicKey: identity.publicKey };
  onStep('Asking the gateway for a challenge…');
  const options = await post('options', { device });
  const challenge = options.publicKey && options.publicKey.challenge;
  if (typeof challenge !== 'string' || !challenge) {
    throw new PasskeyError({ error: { code: 'INVALID_REQUEST', message: 'The gateway sent no challenge.', details: { code: 'PASSKEY_REFUSED', reason: 'passkey_malformed' } } });
  }
  onStep('Waiting for your passkey…');
  let cred;
  try {
    cred = await navigator.credentials.get({ publicKey: parseRequestOptions(options.publicKey) });
  } catch (e) {
    throw new PasskeyError({ cause: e });
  }
  if (!cred) throw new PasskeyError({ cause: new DOMException('No passkey was chosen.', 'NotAllowedError') });
  onStep('Checking the passkey…');
  const signedAt = Date.now();
  const signature = await identity.sign(signinPayload(identity.deviceId, challenge, signedAt));
  return post('signin', { credential: credentialJson(cred), device: { ...device, signature, signedAt } });
}

// -------------------------------------------------------- registration

/**
 * The registration ceremony over `client` (a connected GatewayClient).
 * Resolves with the new `Passkey`; rejects with a RequestError (the
 * gateway) or a PasskeyError (the browser).
 */
export async function registerPasskey(client, { label, scopes }) {
  const params = { label };
  if (scopes) params.scopes = scopes;
  const begun = await client.request('passkey.register.begin', params);
  let cred;
  try {
    cred = await navigator.credentials.create({ publicKey: parseCreationOptions(begun.publicKey) });
  } catch (e) {
    throw new PasskeyError({ cause: e });
  }
  if (!cred) throw new PasskeyError({ cause: new DOMException('No passkey was created.', 'NotAllowedError') });
  const done = await client.request('passkey.register.finish', { credential: credentialJson(cred) });
  return done.passkey;
}
