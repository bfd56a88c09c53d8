// Setup codes in the Control UI: an admin mints one on the Devices page (the
// QR code is drawn, the code holds the URL and a one-time token, never the
// gateway token), revokes it; a setup code pasted into the login form's
// secret field is explained and not sent.

import assert from 'node:assert/strict';
import { connectWithToken, text, uiTest, waitFor, waitScreen } from './harness.mjs';

function decode(code) {
  return JSON.parse(Buffer.from(code, 'base64url').toString('utf8'));
}

uiTest('Devices: an admin creates a setup code with its QR code, then revokes it', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'setup-codes' });
  await connectWithToken(page, gw, 'devices');
  const section = page.locator('section#setup-codes');
  await section.waitFor();
  await page.fill('#setup-scopes', 'operator.read');
  await page.fill('#setup-label', 'ui phone');
  assert.equal(await page.inputValue('#setup-label'), 'ui phone');
  await page.click('button#setup-create');
  const result = section.locator('.setup-result');
  await result.waitFor();
  const rects = await result.locator('svg.qr rect').count();
  assert.ok(rects > 100, `QR drawn with ${rects} rects`);
  const code = await text(page, 'code#setup-code-text');
  const payload = decode(code);
  assert.equal(payload.url, gw.wsUrl.replace(/\/$/, ''));
  assert.equal(payload.bootstrapToken.length, 43);
  assert.ok(!code.includes(gw.token) && !JSON.stringify(payload).includes(gw.token), 'the gateway token is in the code');
  await env.shot(page, 'setup-code-created');

  const setupId = await result.getAttribute('data-setup-id');
  const row = section.locator(`li[data-setup-id="${setupId}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /live/);
  await row.locator('[data-action="revoke-setup"]').click();
  await waitFor(async () => /revoked/.test(await section.locator(`li[data-setup-id="${setupId}"]`).innerText()), 'revoked badge');
  const list = await gw.cliOk(['devices', 'setup-code', 'list'], { json: true });
  assert.equal(list.json.setupCodes[0].state, 'revoked');
  // What was typed is what the code binds (a live refresh did not reset it).
  assert.deepEqual(list.json.setupCodes[0].scopes, ['operator.read']);
  assert.equal(list.json.setupCodes[0].label, 'ui phone');
});

uiTest('Login: a setup code in the secret field is explained, not sent', async (env) => {
  const gw = await env.gateway();
  const made = await gw.cliOk(['devices', 'setup-code', '--role', 'node'], { json: true });
  const code = made.json.setupCode;
  const { page } = await env.context({ label: 'setup-code-login' });
  await page.goto(gw.url());
  await waitScreen(page, 'login');
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws));
  await page.fill('#gateway-secret', code);
  await page.click('button#connect');
  const hint = page.locator('#gateway-secret-hint');
  await hint.waitFor({ state: 'visible' });
  assert.match(await hint.innerText(), /setup code, not the gateway token/);
  assert.match(await hint.innerText(), /clawgate pair --setup-code/);
  await waitScreen(page, 'login');
  assert.equal(sockets.length, 0, 'a socket was opened with the setup code');
  const list = await gw.cliOk(['devices', 'setup-code', 'list'], { json: true });
  assert.equal(list.json.setupCodes[0].state, 'live');
});
