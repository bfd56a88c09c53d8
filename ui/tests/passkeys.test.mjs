// Passkeys in the Control UI (issue 20 part 2, docs/passkeys.md), in real
// Chromium with CDP virtual authenticators against a real gateway:
//
//  (a) an operator connected with the shared token on http://localhost
//      registers a passkey with a label and fewer scopes and sees it listed;
//  (b) a fresh browser profile (own storage, so own device identity, no
//      token) holding a copy of that credential signs in with it: it never
//      holds or sends the shared token, is connected, and `clawgate devices
//      list` shows its device paired with exactly the passkey's scopes;
//  (c) the operator removes the passkey; a third fresh profile's sign-in is
//      refused with the PASSKEY_REFUSED message; a closed browser prompt
//      says "Sign-in cancelled";
//  (d) where passkeys cannot work the button is replaced by why: a loopback
//      IP address (with a link to the same page on localhost), plain http
//      on a host name (enable TLS), a browser without WebAuthn.
//
// WebAuthn refuses IP-address hosts, so (a)-(c) open the gateway as
// http://localhost:<port>/ (the gateway binds 127.0.0.1; its Host guard
// answers loopback names).

import assert from 'node:assert/strict';
import {
  KEYS, act, addBrowserArgs, idbIdentity, storage, text, uiTest, waitFor, waitScreen,
} from './harness.mjs';

// (d): a plain-http host name for the gateway (not a secure context).
const LAN_NAME = 'gateway.lan.test';
addBrowserArgs(`--host-resolver-rules=MAP ${LAN_NAME} 127.0.0.1`);

// Chromium's default virtual device (CTAP 2.0, no credProtect, like older
// security keys): the gateway asks for credProtect without enforcing it.
const AUTHENTICATOR = {
  protocol: 'ctap2',
  transport: 'internal',
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
};

/** A virtual authenticator in `page`'s browser context, optionally holding `credential`. */
async function authenticator(context, page, credential) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });
  if (credential) await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
  return { cdp, authenticatorId };
}

/** Records every HTTP request, WebSocket upgrade and frame `page` sends (as secrets_in_requests does). */
async function record(cdp, label, log) {
  const sockets = new Map();
  cdp.on('Network.requestWillBeSent', (e) => {
    log.http.push({ page: label, url: e.request.url, headers: e.request.headers, body: e.request.postData || '' });
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    log.http.push({ page: label, url: '(extra info)', headers: e.headers, body: '' });
  });
  cdp.on('Network.webSocketCreated', (e) => sockets.set(e.requestId, e.url));
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    log.upgrades.push({ page: label, url: sockets.get(e.requestId) || '?', headers: e.request.headers });
  });
  cdp.on('Network.webSocketFrameSent', (e) => log.sent.push({ page: label, data: e.response.payloadData }));
  await cdp.send('Network.enable');
}

function connectFrames(log, label) {
  return log.sent
    .filter((f) => f.page === label)
    .map((f) => { try { return JSON.parse(f.data); } catch { return null; } })
    .filter((f) => f && f.type === 'req' && f.method === 'connect');
}

/** A fresh profile on the localhost login screen, with `credential` in its authenticator. */
async function freshProfile(env, gw, label, credential, log) {
  const { context, page } = await env.context({ label });
  const { cdp } = await authenticator(context, page, credential);
  if (log) await record(cdp, label, log);
  await page.goto(gw.localhostUrl());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  const button = page.locator('button#passkey-signin');
  await button.waitFor({ state: 'visible' });
  assert.equal(await page.locator('#passkey-unavailable').count(), 0, 'passkeys said unavailable on localhost');
  return { context, page, cdp };
}

uiTest('passkeys: register with fewer scopes, sign in from a fresh profile without the token, remove, refused', async (env) => {
  // Refused sign-ins answer 401, which Chromium logs as a console error.
  env.allowConsoleError(/status of 401/);
  const gw = await env.gateway();

  // (a) The operator, with the shared token, on localhost.
  const { context: opCtx, page: op } = await env.context({ label: 'operator' });
  const opAuth = await authenticator(opCtx, op);
  await op.goto(`${gw.localhostUrl('devices')}#token=${encodeURIComponent(gw.token)}`);
  await waitScreen(op, 'app');
  const section = op.locator('section#passkeys');
  await section.waitFor({ state: 'visible' });
  // The scopes default to this session's own.
  const defaults = (await op.inputValue('#passkey-scopes')).split(',').map((s) => s.trim());
  for (const s of ['operator.admin', 'operator.pairing', 'operator.read']) assert.ok(defaults.includes(s), `#passkey-scopes default lacks ${s}: ${defaults}`);
  assert.equal(await op.locator('button#passkey-register').isDisabled(), false, 'register disabled on localhost');
  await op.fill('#passkey-label', 'ui laptop');
  await op.fill('#passkey-scopes', 'operator.read');
  await op.click('button#passkey-register');
  const row = section.locator('article.passkey[data-passkey-id]');
  const regError = op.locator('#passkey-error');
  await waitFor(async () => (await row.count()) === 1 || (await regError.isVisible()), 'the registered passkey listed', 30_000);
  assert.equal(await regError.isVisible(), false, `registration failed: ${await regError.textContent()}`);
  assert.equal(await row.count(), 1);
  const passkeyId = await row.getAttribute('data-passkey-id');
  assert.match(await row.locator('.passkey-name').innerText(), /ui laptop/);
  assert.equal((await row.locator('.passkey-scopes').innerText()).trim(), 'operator.read');
  assert.equal((await row.locator('.passkey-rp').innerText()).trim(), 'localhost');
  assert.match(await row.locator('.passkey-last-used').innerText(), /never/);
  assert.equal(await op.inputValue('#passkey-label'), '', 'the label field was not cleared');
  await env.shot(op, 'operator-registered-passkey');

  // The credential lives in the operator's authenticator: copy it, as a
  // synced passkey would arrive in another browser profile.
  const { credentials } = await opAuth.cdp.send('WebAuthn.getCredentials', { authenticatorId: opAuth.authenticatorId });
  assert.equal(credentials.length, 1, 'one credential in the operator\'s authenticator');
  const credential = credentials[0];
  assert.equal(credential.isResidentCredential, true);
  assert.equal(credential.rpId, 'localhost');

  // (b) A fresh profile signs in with the passkey.
  const log = { http: [], upgrades: [], sent: [] };
  const { page: fresh } = await freshProfile(env, gw, 'passkey-browser', credential, log);
  await env.shot(fresh, 'fresh-profile-login-with-passkey-button');
  const signin = fresh.waitForResponse((r) => r.url().endsWith('/api/passkeys/signin'));
  await fresh.click('button#passkey-signin');
  const signinRes = await signin;
  assert.equal(signinRes.status(), 200, `signin answered ${signinRes.status()}: ${await signinRes.text()}`);
  await waitScreen(fresh, 'app', undefined, 30_000);
  await env.shot(fresh, 'fresh-profile-signed-in');
  const freshId = await text(fresh, '#this-device-id');
  assert.match(freshId, /^[0-9a-f]{64}$/);
  const signed = await signinRes.json();
  assert.equal(signed.ok, true);
  assert.equal(signed.deviceId, freshId);
  assert.equal(signed.role, 'operator');
  assert.deepEqual(signed.scopes, ['operator.read']);
  assert.equal(signed.passkey.id, passkeyId);

  // Its storage: the device token with the passkey's scopes, never the token.
  const st = await storage(fresh);
  for (const [k, v] of [...Object.entries(st.local), ...Object.entries(st.session)]) {
    assert.ok(!k.includes(gw.token) && !v.includes(gw.token), `storage ${k} holds the shared token`);
  }
  assert.equal(st.session[KEYS.token(gw.localhostWsUrl)], undefined, 'a shared token in sessionStorage');
  const auth = JSON.parse(st.local[KEYS.deviceAuth(gw.localhostWsUrl)]);
  assert.equal(auth.deviceId, freshId);
  assert.equal(auth.tokens.operator.token, signed.deviceToken);
  assert.deepEqual(auth.tokens.operator.scopes, ['operator.read']);

  // Nothing it sent holds the shared token; it connected with its device
  // token only.
  assert.ok(log.http.length > 0 && log.sent.length > 0, 'nothing recorded');
  for (const r of log.http) {
    const hay = `${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
    assert.ok(!hay.includes(gw.token) && !hay.includes(encodeURIComponent(gw.token)), `the shared token in ${r.url}`);
  }
  for (const u of log.upgrades) assert.ok(!JSON.stringify(u).includes(gw.token), `the shared token in the upgrade to ${u.url}`);
  for (const f of log.sent) assert.ok(!f.data.includes(gw.token), 'the shared token in a WebSocket frame');
  const connects = connectFrames(log, 'passkey-browser');
  assert.ok(connects.length > 0, 'no connect frame');
  // The first one (page load, nothing to send) has empty auth; every one
  // after the sign-in carries the passkey's device token and nothing else.
  assert.deepEqual(connects[0].params.auth, {}, 'the first connect sent credentials');
  const after = connects.slice(1);
  assert.ok(after.length > 0, 'no connect after the sign-in');
  for (const c of connects) {
    assert.equal(c.params.auth.token, undefined, 'auth.token sent');
    assert.equal(c.params.auth.password, undefined, 'auth.password sent');
    assert.equal(c.params.device.id, freshId);
  }
  for (const c of after) {
    assert.deepEqual(Object.keys(c.params.auth), ['deviceToken']);
    assert.equal(c.params.auth.deviceToken, signed.deviceToken, 'connect without the passkey\'s device token');
    assert.deepEqual(c.params.scopes, ['operator.read']);
  }
  const optionsReq = log.http.find((r) => r.url.endsWith('/api/passkeys/options'));
  assert.ok(optionsReq, 'no options request');
  assert.deepEqual(JSON.parse(optionsReq.body).device.id, freshId);

  // The gateway paired exactly this browser, with exactly the passkey's scopes.
  const devices = await gw.cliOk(['devices', 'list'], { json: true });
  const dev = devices.json.paired.find((d) => d.deviceId === freshId);
  assert.ok(dev, `the passkey browser is not paired: ${JSON.stringify(devices.json.paired.map((d) => d.deviceId))}`);
  assert.deepEqual(dev.roles, ['operator']);
  assert.deepEqual([...dev.scopes].sort(), ['operator.read']);
  // Without operator.pairing the Passkeys section is not shown.
  await fresh.click('a[data-nav="devices"]');
  await fresh.locator('#devices-scope-reason').waitFor({ state: 'visible' });
  assert.equal(await fresh.locator('section#passkeys').isVisible(), false, 'Passkeys shown to an operator.read session');
  // A reload keeps it signed in (the stored device token at boot).
  await fresh.reload();
  await waitScreen(fresh, 'app');
  // The operator sees the passkey used.
  await op.reload();
  await waitScreen(op, 'app');
  await waitFor(async () => !/never/.test(await section.locator(`article.passkey[data-passkey-id="${passkeyId}"] .passkey-last-used`).innerText()), 'last used set', 20_000);

  // (c) The operator removes the passkey (confirm dialog).
  await act(op, section.locator(`article.passkey[data-passkey-id="${passkeyId}"]`), 'remove-passkey',
    async () => (await section.locator('article.passkey').count()) === 0, 'the passkey gone from the list');
  await env.shot(op, 'operator-removed-passkey');

  const { page: third } = await freshProfile(env, gw, 'refused-browser', credential);
  const refusedRes = third.waitForResponse((r) => r.url().endsWith('/api/passkeys/signin'));
  await third.click('button#passkey-signin');
  const refused = await refusedRes;
  assert.equal(refused.status(), 401);
  const body = await refused.json();
  assert.equal(body.ok, false);
  assert.equal(body.error.details.code, 'PASSKEY_REFUSED');
  const status = third.locator('#passkey-status[data-state="refused"]');
  await status.waitFor();
  assert.equal(await status.getAttribute('data-code'), 'PASSKEY_REFUSED');
  assert.equal(await status.getAttribute('data-reason'), body.error.details.reason);
  assert.ok((await status.innerText()).includes(body.error.message), `#passkey-status does not show "${body.error.message}"`);
  await waitScreen(third, 'login', 'AUTH_TOKEN_MISSING');
  await env.shot(third, 'passkey-refused');
  const thirdStore = await storage(third);
  assert.equal(thirdStore.local[KEYS.deviceAuth(gw.localhostWsUrl)], undefined, 'a device token stored after a refusal');
  const thirdIdentity = await idbIdentity(third);
  assert.ok(thirdIdentity && thirdIdentity.deviceId, 'the refused browser has no identity');
  const afterList = await gw.cliOk(['devices', 'list'], { json: true });
  assert.ok(!afterList.json.paired.some((d) => d.deviceId === thirdIdentity.deviceId), 'the refused browser was paired');
  assert.ok(!(afterList.json.pending || []).some((p) => p.deviceId === thirdIdentity.deviceId), 'the refused browser has a pairing request');

  // A closed browser prompt: a calm line, the button back.
  const { context: cancelCtx, page: cancel } = await env.context({
    label: 'cancelled-browser',
    initScripts: [`(() => {
      const get = () => Promise.reject(new DOMException('The operation either timed out or was not allowed.', 'NotAllowedError'));
      // (Not on the initial about:blank, which is no secure context.)
      if (window.CredentialsContainer) Object.defineProperty(CredentialsContainer.prototype, 'get', { value: get });
    })();`],
  });
  await authenticator(cancelCtx, cancel);
  await cancel.goto(gw.localhostUrl());
  await waitScreen(cancel, 'login', 'AUTH_TOKEN_MISSING');
  await cancel.click('button#passkey-signin');
  const calm = cancel.locator('#passkey-status[data-state="cancelled"]');
  await calm.waitFor();
  assert.match(await calm.innerText(), /^Sign-in cancelled/);
  assert.equal(await cancel.locator('button#passkey-signin').isDisabled(), false);
  await env.shot(cancel, 'passkey-cancelled');
});

uiTest('passkeys: `clawgate passkeys list|remove` see and remove a passkey registered in the UI', async (env) => {
  const gw = await env.gateway();
  const { context, page } = await env.context({ label: 'operator' });
  await authenticator(context, page);
  await page.goto(`${gw.localhostUrl('devices')}#token=${encodeURIComponent(gw.token)}`);
  await waitScreen(page, 'app');
  const section = page.locator('section#passkeys');
  await section.waitFor({ state: 'visible' });
  await page.fill('#passkey-label', 'cli-check');
  await page.fill('#passkey-scopes', 'operator.read, operator.pairing');
  await page.click('button#passkey-register');
  const row = section.locator('article.passkey[data-passkey-id]');
  await waitFor(async () => (await row.count()) === 1 || (await page.locator('#passkey-error').isVisible()), 'the registered passkey listed', 30_000);
  assert.equal(await row.count(), 1, `registration failed: ${await page.locator('#passkey-error').textContent()}`);
  const passkeyId = await row.getAttribute('data-passkey-id');
  const listed = (await gw.cliOk(['passkeys', 'list'], { json: true })).json.passkeys;
  assert.equal(listed.length, 1);
  assert.equal(listed[0].id, passkeyId);
  assert.equal(listed[0].label, 'cli-check');
  assert.deepEqual([...listed[0].scopes].sort(), ['operator.pairing', 'operator.read']);
  assert.equal(listed[0].rpId, 'localhost');
  await gw.cliOk(['passkeys', 'remove', passkeyId]);
  assert.deepEqual((await gw.cliOk(['passkeys', 'list'], { json: true })).json.passkeys, []);
  // The page shows it gone after a refresh.
  await page.reload();
  await waitScreen(page, 'app');
  await section.waitFor({ state: 'visible' });
  await waitFor(async () => (await section.locator('article.passkey').count()) === 0 && (await section.locator('.empty').count()) === 1, 'the passkey gone from the page');
});

uiTest('passkeys: where they cannot work, the login screen says why instead of the button', async (env) => {
  const gw = await env.gateway({ config: { gateway: { allowedHosts: [LAN_NAME] } } });

  // A loopback IP address: browsers refuse IP addresses as RP ids.
  const { page } = await env.context({ label: 'ip' });
  await page.goto(gw.url('audit'));
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  const why = page.locator('#passkey-unavailable');
  await why.waitFor({ state: 'visible' });
  assert.equal(await why.getAttribute('data-reason'), 'ip');
  assert.match(await why.innerText(), /browsers refuse IP addresses for passkeys/);
  assert.equal(await page.locator('button#passkey-signin').count(), 0, 'the passkey button on an IP address');
  const link = page.locator('a#passkey-localhost-link');
  assert.equal(await link.getAttribute('href'), gw.localhostUrl('audit'));
  await env.shot(page, 'passkeys-on-an-ip-address');
  // A #token= link is taken out of the address before the link is built.
  await page.goto(`${gw.url('devices')}#token=not-the-token`);
  await waitScreen(page, 'login');
  assert.equal(await page.locator('a#passkey-localhost-link').getAttribute('href'), gw.localhostUrl('devices'));
  // The link leads to a page where the button is.
  await page.locator('a#passkey-localhost-link').click();
  await waitScreen(page, 'login');
  await page.locator('button#passkey-signin').waitFor({ state: 'visible' });
  assert.ok(page.url().startsWith(gw.localhostOrigin), page.url());

  // Plain http on a host name: not a secure context (Chromium says so about
  // the gateway's COOP header on the console; expected here).
  env.allowConsoleError(/Cross-Origin-Opener-Policy header has been ignored/);
  gw.extraOrigins.push(`http://${LAN_NAME}:${gw.port}`, `ws://${LAN_NAME}:${gw.port}`);
  const { page: lan } = await env.context({ label: 'plain-http' });
  await lan.goto(`http://${LAN_NAME}:${gw.port}/`);
  await waitScreen(lan, 'login', 'AUTH_TOKEN_MISSING');
  const lanWhy = lan.locator('#passkey-unavailable');
  await lanWhy.waitFor({ state: 'visible' });
  assert.equal(await lanWhy.getAttribute('data-reason'), 'insecure');
  assert.match(await lanWhy.innerText(), /HTTPS/);
  assert.equal(await text(lan, 'code#passkey-tls-command'), 'clawgate config set gateway.tls.enabled true');
  assert.equal(await lan.locator('button#passkey-signin').count(), 0);
  await env.shot(lan, 'passkeys-on-plain-http');

  // A browser without WebAuthn.
  const { page: old } = await env.context({
    label: 'no-webauthn',
    initScripts: ['delete window.PublicKeyCredential;'],
  });
  await old.goto(gw.localhostUrl());
  await waitScreen(old, 'login', 'AUTH_TOKEN_MISSING');
  const oldWhy = old.locator('#passkey-unavailable');
  await oldWhy.waitFor({ state: 'visible' });
  assert.equal(await oldWhy.getAttribute('data-reason'), 'unsupported');
  assert.match(await oldWhy.innerText(), /no passkey support/);
  await env.shot(old, 'passkeys-unsupported');
});
