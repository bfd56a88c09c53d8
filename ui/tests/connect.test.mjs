// Getting in: the login screen, the #token= link, a wrong token, reload.

import assert from 'node:assert/strict';
import {
  KEYS, TIMEOUT, appState, assertDeviceAuth, assertErrorScreen, assertLocalStorageClean, connectWithToken,
  deviceIdOf, idbIdentity, storage, text, uiTest, waitScreen,
} from './harness.mjs';

uiTest('login screen when no token (AUTH_TOKEN_MISSING), then connect from the form', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'login' });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  await assertErrorScreen(page, 'AUTH_TOKEN_MISSING');
  const url = await page.inputValue('#gateway-url');
  assert.equal(url.replace(/\/$/, ''), gw.wsUrl, '#gateway-url prefilled with this gateway');
  assert.equal(await page.getAttribute('#gateway-secret', 'type'), 'password', 'the secret is masked');
  await page.fill('#gateway-secret', 'abc');
  await page.click('#secret-toggle');
  assert.equal(await page.getAttribute('#gateway-secret', 'type'), 'text', '#secret-toggle shows the secret');
  await page.click('#secret-toggle');
  assert.equal(await page.getAttribute('#gateway-secret', 'type'), 'password', '#secret-toggle hides it again');
  let st = await storage(page);
  assert.equal(st.session[KEYS.token(gw.wsUrl)], undefined, 'no token stored before a successful connect');
  assertLocalStorageClean(st.local, gw);
  await env.shot(page, 'login');

  await page.fill('#gateway-secret', gw.token);
  await page.click('button#connect');
  await waitScreen(page, 'app');
  assert.equal((await appState(page)).code, '', 'data-code empty when connected');
  st = await storage(page);
  assert.equal(st.session[KEYS.token(gw.wsUrl)], gw.token, 'token in sessionStorage after the form connect');
  assertLocalStorageClean(st.local, gw, [gw.token]);
  await env.shot(page, 'connected-from-form');
});

uiTest('#token= link: connects, fragment gone, token only in sessionStorage', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'fragment' });
  await connectWithToken(page, gw);
  await page.locator('#conn-status[data-state="connected"]').waitFor({ state: 'visible' });
  await page.locator('button#disconnect').waitFor({ state: 'visible' });
  await env.shot(page, 'connected');

  const url = page.url();
  assert.ok(!url.includes('#'), `fragment still in the URL: ${url}`);
  assert.ok(!url.includes(gw.token), 'token in the URL');
  assert.equal(await page.evaluate(() => location.hash), '');

  const st = await storage(page);
  assert.equal(st.session[KEYS.token(gw.wsUrl)], gw.token, `sessionStorage ${KEYS.token(gw.wsUrl)}`);
  assertLocalStorageClean(st.local, gw, [gw.token]);

  // The identity: WebCrypto Ed25519 in IndexedDB, non-extractable.
  await page.waitForSelector('html[data-identity="webcrypto"]', { state: 'attached' });
  const thisId = await text(page, '#this-device-id');
  assert.match(thisId, /^[0-9a-f]{64}$/, '#this-device-id is a hex device id');
  const idb = await idbIdentity(page);
  assert.ok(idb, 'no identity in IndexedDB clawgate/identity/device');
  assert.equal(idb.deviceId, thisId, 'IndexedDB identity is this device');
  assert.equal(deviceIdOf(idb.publicKey), idb.deviceId, 'deviceId = sha256(publicKey)');
  assert.equal(idb.privateKeyType, '[object CryptoKey]', 'private key is a CryptoKey');
  assert.equal(idb.privateKeyExtractable, false, 'private key is not extractable');
  assert.equal(st.local[KEYS.identity], undefined, 'no JS identity in localStorage when WebCrypto works');
  assertDeviceAuth(st.local, gw, thisId, gw.token);

  // The token never went over HTTP.
  const leaked = env.requests.filter((r) => r.url.includes(gw.token));
  assert.deepEqual(leaked, [], 'a request carried the token in its URL');

  // The gateway knows this browser as a paired, connected device.
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  assert.ok(list.json.paired.some((d) => d.deviceId === thisId), 'the browser is not paired');
});

uiTest('#token= link opened in a tab already showing the login screen', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'same-tab' });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  // The same page with a fragment: the browser does not reload the document.
  await page.goto(`${gw.url()}#token=${encodeURIComponent(gw.token)}`);
  await waitScreen(page, 'app');
  assert.ok(!page.url().includes('#'), `fragment still in the URL: ${page.url()}`);
  assert.equal((await storage(page)).session[KEYS.token(gw.wsUrl)], gw.token);
  await env.shot(page, 'connected-from-same-tab-link');
});

uiTest('wrong token: AUTH_TOKEN_MISMATCH screen, nothing stored, then the right one', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'wrong' });
  await page.goto(`${gw.url()}#token=not-the-token-123`);
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISMATCH');
  const { rawText } = await assertErrorScreen(page, 'AUTH_TOKEN_MISMATCH');
  assert.ok(!rawText.includes(gw.token), 'the raw error shows the real token');
  assert.ok(!page.url().includes('not-the-token-123'), 'wrong token left in the URL');
  const st = await storage(page);
  assert.equal(st.session[KEYS.token(gw.wsUrl)], undefined, 'a refused token was stored');
  assertLocalStorageClean(st.local, gw, ['not-the-token-123']);
  assert.equal(st.local[KEYS.deviceAuth(gw.wsUrl)], undefined, 'a device token without a connect');
  await page.locator('details#raw-error').evaluate((d) => {
    d.open = true;
  });
  await env.shot(page, 'wrong-token');

  await page.fill('#gateway-secret', gw.token);
  await page.click('button#connect');
  await waitScreen(page, 'app');
  assert.equal((await storage(page)).session[KEYS.token(gw.wsUrl)], gw.token);
});

uiTest('reload keeps the session; client routes load directly', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'reload' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  const before = await storage(page);

  await page.reload();
  await waitScreen(page, 'app');
  await env.shot(page, 'after-reload');
  assert.equal(await text(page, '#this-device-id'), id, 'same device after reload');
  const after = await storage(page);
  assert.equal(after.session[KEYS.token(gw.wsUrl)], gw.token, 'token still in sessionStorage');
  assert.equal(
    JSON.parse(after.local[KEYS.deviceAuth(gw.wsUrl)]).deviceId,
    JSON.parse(before.local[KEYS.deviceAuth(gw.wsUrl)]).deviceId,
  );
  assertLocalStorageClean(after.local, gw, [gw.token]);

  // A client route loaded directly (index.html for any path without an extension).
  for (const route of ['devices', 'audit']) {
    const res = await page.goto(gw.url(route));
    assert.equal(res.status(), 200, `GET ${route}`);
    await waitScreen(page, 'app');
    await page.waitForSelector(route === 'devices' ? 'section#paired-devices' : 'table#audit-table', { state: 'visible', timeout: TIMEOUT });
  }
  await env.shot(page, 'audit-route-after-reload');
});
