// The Control UI over https:// from a gateway with TLS on (gateway.tls,
// self-signed certificate generated into its state dir): Chromium trusts
// exactly that certificate's public key (--ignore-certificate-errors-spki-list
// takes the same SHA-256 of the SubjectPublicKeyInfo as `--tls-fingerprint
// sha256/...`), loads the page, connects over wss:// with the token and
// reaches the connected state.

import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { addBrowserArgs, appState, connectWithToken, uiTest } from './harness.mjs';

/** The SPKI pin of the certificate a TLS server presents, computed by Node. */
function presentedSpkiPin(port) {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      const spki = new X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' });
      resolve(`sha256/${createHash('sha256').update(spki).digest('base64')}`);
    });
    socket.on('error', reject);
  });
}

uiTest('Control UI over https: the pinned certificate, wss:// with the token, connected', async (env) => {
  const gw = await env.gateway({ config: { gateway: { tls: { enabled: true } } } });
  assert.ok(gw.spkiPin?.startsWith('sha256/'), `the gateway printed its public key pin:\n${gw.log}`);
  // The pin it printed is the one it serves, and the one of its file.
  assert.equal(await presentedSpkiPin(gw.port), gw.spkiPin);
  const pem = readFileSync(join(gw.stateDir, 'tls', 'gateway-cert.pem'), 'utf8');
  const fileSpki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  assert.equal(`sha256/${createHash('sha256').update(fileSpki).digest('base64')}`, gw.spkiPin);

  addBrowserArgs(`--ignore-certificate-errors-spki-list=${gw.spkiPin.slice('sha256/'.length)}`);
  const { page } = await env.context({ label: 'https' });
  await connectWithToken(page, gw);
  await page.locator('#conn-status[data-state="connected"]').waitFor({ state: 'visible' });
  assert.equal((await appState(page)).code, '', 'connected, no error code');
  assert.ok(page.url().startsWith(`https://127.0.0.1:${gw.port}/`), page.url());
  assert.equal(await page.evaluate(() => window.isSecureContext), true, 'an https page is a secure context');
  const sockets = env.sockets.map((s) => s.url);
  assert.ok(
    sockets.some((u) => u.startsWith(`wss://127.0.0.1:${gw.port}`)),
    `the page connected over wss: ${sockets.join(', ')}`,
  );
  assert.ok(!sockets.some((u) => u.startsWith('ws://')), `no plain ws: ${sockets.join(', ')}`);
  await env.shot(page, 'connected-over-https');

  // The operator on the gateway host reaches it too (wss, pinned to its file).
  const r = await gw.cliOk(['gateway', 'status']);
  assert.ok(r.stdout.includes(gw.spkiPin), r.stdout);
});
