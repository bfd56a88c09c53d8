// This browser's device identity: an Ed25519 key pair.
//
// Preferred: WebCrypto Ed25519 with a non-extractable private key kept in
// IndexedDB (db `clawgate`, store `identity`, key `device`). Where that is
// not available (no secure context, so no crypto.subtle, or an older
// browser) the vendored @noble/ed25519 is used and the 32-byte seed is kept
// in localStorage under `clawgate.device.identity.v1`.

import { loadJsIdentity, saveJsIdentity } from './storage.js';

const DB = 'clawgate';
const STORE = 'identity';
const KEY = 'device';

export function b64url(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromB64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const subtle = () => (globalThis.crypto && globalThis.crypto.subtle) || null;

let nobleHashes = null;
async function hashes() {
  if (!nobleHashes) nobleHashes = await import('../vendor/noble-hashes/sha2.js');
  return nobleHashes;
}

/** Hex SHA-256 of the raw public key: the device id. */
async function deviceIdOf(rawPublicKey) {
  const s = subtle();
  if (s) {
    try {
      return hex(new Uint8Array(await s.digest('SHA-256', rawPublicKey)));
    } catch {
      // fall back to the JS hash
    }
  }
  const { sha256 } = await hashes();
  return hex(sha256(rawPublicKey));
}

function openDb() {
  return new Promise((resolve, reject) => {
    if (!globalThis.indexedDB) return reject(new Error('IndexedDB unavailable'));
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error || new Error('IndexedDB open failed'));
    req.onblocked = () => reject(new Error('IndexedDB blocked'));
  });
}

function idb(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error || new Error('IndexedDB request failed'));
    tx.onabort = () => reject(tx.error || new Error('IndexedDB aborted'));
  });
}

function webCryptoIdentity(record) {
  const s = subtle();
  return {
    kind: 'webcrypto',
    deviceId: record.deviceId,
    publicKey: record.publicKey,
    createdAtMs: record.createdAtMs,
    async sign(text) {
      const sig = await s.sign({ name: 'Ed25519' }, record.privateKey, new TextEncoder().encode(text));
      return b64url(new Uint8Array(sig));
    },
  };
}

async function loadWebCrypto() {
  const s = subtle();
  if (!s || !globalThis.isSecureContext) return null;
  let db;
  try {
    db = await openDb();
  } catch {
    return null; // without persistence a WebCrypto key would change on every load
  }
  try {
    const existing = await idb(db, 'readonly', (st) => st.get(KEY));
    if (existing && existing.privateKey && existing.deviceId && existing.publicKey) {
      return webCryptoIdentity(existing);
    }
    const pair = await s.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    const raw = new Uint8Array(await s.exportKey('raw', pair.publicKey));
    // Some engines create the key but cannot sign with it: check once.
    const probe = new TextEncoder().encode('clawgate identity check');
    const sig = await s.sign({ name: 'Ed25519' }, pair.privateKey, probe);
    if (!(await s.verify({ name: 'Ed25519' }, pair.publicKey, sig, probe))) return null;
    const record = {
      deviceId: await deviceIdOf(raw),
      publicKey: b64url(raw),
      privateKey: pair.privateKey,
      createdAtMs: Date.now(),
    };
    await idb(db, 'readwrite', (st) => st.put(record, KEY));
    return webCryptoIdentity(record);
  } catch {
    return null;
  } finally {
    db.close();
  }
}

async function loadJs() {
  const ed = await import('../vendor/noble-ed25519/index.js');
  const { sha512 } = await hashes();
  // Synchronous SHA-512 so noble never needs crypto.subtle.
  ed.etc.sha512Sync = (...parts) => sha512(ed.etc.concatBytes(...parts));
  let record = null;
  try {
    const raw = loadJsIdentity();
    const v = raw ? JSON.parse(raw) : null;
    if (v && v.version === 1 && v.privateKey && v.publicKey && v.deviceId) record = v;
  } catch {
    record = null;
  }
  let seed;
  if (record) {
    seed = fromB64url(record.privateKey);
    // A record whose key does not match its id is rebuilt.
    const pub = ed.getPublicKey(seed);
    if (b64url(pub) !== record.publicKey || (await deviceIdOf(pub)) !== record.deviceId) record = null;
  }
  if (!record) {
    seed = ed.utils.randomPrivateKey();
    const pub = ed.getPublicKey(seed);
    record = { version: 1, deviceId: await deviceIdOf(pub), publicKey: b64url(pub), privateKey: b64url(seed), createdAtMs: Date.now() };
    saveJsIdentity(JSON.stringify(record));
  }
  return {
    kind: 'js',
    deviceId: record.deviceId,
    publicKey: record.publicKey,
    createdAtMs: record.createdAtMs,
    async sign(text) {
      return b64url(ed.sign(new TextEncoder().encode(text), seed));
    },
  };
}

/**
 * Loads (or creates) the identity. A JS identity already stored on this
 * origin is kept even if WebCrypto Ed25519 became available later, so an
 * approved browser does not silently turn into a new device.
 */
export async function loadIdentity() {
  let identity = null;
  if (!loadJsIdentity()) identity = await loadWebCrypto();
  if (!identity) identity = await loadJs();
  document.documentElement.dataset.identity = identity.kind;
  return identity;
}
