// What the gateway sends with the UI (CSP and friends), what the page does
// with it (no violations, nothing outside the origin, no inline code), the
// JS Ed25519 fallback identity, and a non-default base path.

import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import {
  KEYS, NO_WEBCRYPTO_ED25519, assertDeviceAuth, assertLocalStorageClean, assertUiHeaders, connectWithToken,
  deviceIdOf, idbIdentity, storage, text, uiTest, waitScreen,
} from './harness.mjs';

uiTest('HTTP: CSP and security headers on every UI response, revalidation, 404s', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'headers' });
  await connectWithToken(page, gw);
  // Every asset the page loaded, fetched again from Node: same headers.
  const assets = [...new Set(env.responses.filter((r) => r.url.startsWith(gw.origin)).map((r) => r.url))];
  assert.ok(assets.some((u) => u.endsWith('.js')), `no script loaded: ${assets.join(', ')}`);
  assert.ok(assets.some((u) => u.endsWith('.css')), `no stylesheet loaded: ${assets.join(', ')}`);
  for (const url of [...assets, gw.url('devices'), gw.url('audit')]) {
    const res = await fetch(url);
    assert.equal(res.status, 200, `GET ${url}`);
    const headers = Object.fromEntries(res.headers);
    assertUiHeaders(headers, url);
    assert.equal(headers['cache-control'], 'no-cache', `Cache-Control of ${url}`);
    const etag = headers.etag;
    assert.ok(etag, `no ETag on ${url}`);
    await res.arrayBuffer();
    const again = await fetch(url, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, `If-None-Match on ${url}`);
    await again.arrayBuffer();
  }
  const index = await (await fetch(gw.url())).text();
  assert.ok(!index.includes('__CLAWGATE_'), 'index.html template placeholders left unfilled');
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(index), 'inline <script> in index.html');
  assert.ok(!/<style[\s>]/i.test(index), '<style> in index.html');
  assert.ok(!/\sstyle="/i.test(index), 'style="" attribute in index.html');
  for (const [path, status] of [['nope.js', 404], ['js/nope.js', 404], ['../Cargo.toml', 404], ['README.md', 404], ['tests/harness.mjs', 404]]) {
    const res = await fetch(gw.url(path));
    assert.equal(res.status, status, `GET ${path}`);
    await res.arrayBuffer();
  }
  const post = await fetch(gw.url(), { method: 'POST', body: 'x' });
  assert.equal(post.status, 405, 'POST to the UI');
  await post.arrayBuffer();
});

uiTest('CSP: no violation on any page or dialog; no inline code; nothing outside the origin', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'csp' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  for (const to of ['devices', 'audit', 'overview']) {
    await page.click(`a[data-nav="${to}"]`);
    await page.waitForURL(gw.url(to === 'overview' ? '' : to));
    await waitScreen(page, 'app');
    if (to === 'devices') {
      const card = page.locator(`section#paired-devices article.device[data-device-id="${id}"]`);
      await card.locator('[data-action="rename"]').click();
      await page.locator('dialog#rename[open]').waitFor();
      await page.keyboard.press('Escape');
      await card.locator('[data-action="revoke"]').click();
      await page.locator('dialog#confirm[open]').waitFor();
      await env.shot(page, 'confirm-dialog');
      await page.click('button#confirm-cancel');
      await page.locator('dialog#confirm[open]').waitFor({ state: 'detached' });
    }
    const inline = await page.evaluate(() => ({
      styleTags: document.querySelectorAll('style').length,
      inlineScripts: [...document.scripts].filter((s) => !s.src).length,
      foreignScripts: [...document.scripts].filter((s) => s.src && new URL(s.src).origin !== location.origin).map((s) => s.src),
    }));
    assert.deepEqual(inline, { styleTags: 0, inlineScripts: 0, foreignScripts: [] }, `inline code on ${to}`);
  }
  // Trusted Types are enforced: an HTML sink throws in the page.
  const blocked = await page.evaluate(() => {
    try {
      document.createElement('div').innerHTML = '<b>x</b>';
      return false;
    } catch (e) {
      return e instanceof TypeError;
    }
  });
  assert.equal(blocked, true, 'innerHTML assignment not blocked by Trusted Types');
  // That probe reported one violation; it is ours, not the UI's.
  env.csp = env.csp.filter((v) => !(v.directive === 'require-trusted-types-for' && v.sample?.includes('<b>x</b>')));
  env.allowConsoleError(/This document requires 'TrustedHTML' assignment/);
  // The checks after every test assert the rest: requests only to the
  // gateway origin, no CSP violation, no console error.
  assert.ok(env.requests.some((r) => r.type === 'websocket' && r.url.startsWith(gw.wsUrl)), 'no WebSocket to the gateway');
});

uiTest('JS Ed25519 fallback: identity in localStorage, still connects', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'js-identity', initScripts: [NO_WEBCRYPTO_ED25519] });
  await connectWithToken(page, gw);
  await page.waitForSelector('html[data-identity="js"]', { state: 'attached' });
  const id = await text(page, '#this-device-id');
  const st = await storage(page);
  const raw = st.local[KEYS.identity];
  assert.ok(raw, `no ${KEYS.identity} in localStorage`);
  const ident = JSON.parse(raw);
  assert.equal(ident.version, 1);
  assert.equal(ident.deviceId, id, 'the stored identity is this device');
  assert.equal(deviceIdOf(ident.publicKey), ident.deviceId, 'deviceId = sha256(publicKey)');
  assert.equal(typeof ident.createdAtMs, 'number');
  const seed = Buffer.from(ident.privateKey, 'base64url');
  assert.equal(seed.length, 32, 'the private key is a 32-byte seed');
  // The seed really is the public key's: derive it with Node's Ed25519.
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const pub = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }))
    .export({ format: 'der', type: 'spki' })
    .subarray(-32);
  assert.equal(pub.toString('base64url'), ident.publicKey, 'seed and public key do not match');
  assert.equal(await idbIdentity(page), null, 'an IndexedDB identity although WebCrypto Ed25519 failed');
  assertDeviceAuth(st.local, gw, id, gw.token);
  assertLocalStorageClean(st.local, gw, [gw.token]);
  await env.shot(page, 'js-identity-connected');

  await page.reload();
  await waitScreen(page, 'app');
  assert.equal(await text(page, '#this-device-id'), id, 'the JS identity survives a reload');
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  assert.ok(list.json.paired.some((d) => d.deviceId === id && d.publicKey === ident.publicKey), 'gateway has this key');
});

uiTest('base path /console/: the UI lives under it and connects', async (env) => {
  const gw = await env.gateway({ config: { gateway: { controlUi: { basePath: '/console/' } } } });
  const { page } = await env.context({ label: 'base-path' });
  await connectWithToken(page, gw);
  assert.equal(page.url(), gw.url());
  for (const [nav, path] of [['devices', 'devices'], ['audit', 'audit'], ['overview', '']]) {
    const href = await page.getAttribute(`a[data-nav="${nav}"]`, 'href');
    assert.equal(new URL(href, page.url()).href, gw.url(path), `a[data-nav=${nav}] href`);
  }
  await page.click('a[data-nav="devices"]');
  await page.waitForURL(gw.url('devices'));
  await page.locator('section#paired-devices').waitFor();
  const outside = env.requests.filter((r) => r.type !== 'websocket' && !r.url.startsWith(gw.url()));
  assert.deepEqual(outside, [], 'requests outside the base path');
  const root = await fetch(`${gw.origin}/devices`);
  assert.equal(root.status, 404, 'a UI route outside the base path');
  await root.arrayBuffer();
  await env.shot(page, 'base-path-devices');
});
