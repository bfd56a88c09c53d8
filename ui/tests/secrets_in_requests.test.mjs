// Secrets in what the Control UI sends (issue 8, item 5): every HTTP
// request, every WebSocket upgrade and every WebSocket frame the pages send
// across one session is recorded through the Chrome DevTools Protocol
// (what actually goes on the wire, headers the browser adds included), and
// checked against every secret the session used: the shared token (before
// and after it changed on the gateway) and every device token the gateway
// handed out.
//
// The session: a `#token=` link on a gateway that does not auto-approve
// (pairing, approved with the CLI), reload, the Devices and Audit pages, a
// second tab that only has the device token, then the gateway's token
// changes and a reload goes through the one bounded retry.
//
// "A request it does not need to", precisely:
//  1. HTTP requests (the document, scripts, styles, images, catalogue.json)
//     never need a secret: none in the URL (path or query), in any request
//     header (Authorization, Cookie, Referer, custom ones) or in a body.
//  2. The WebSocket upgrade never needs one (credentials travel in the
//     connect frame): none in its URL or handshake headers.
//  3. Only the `connect` request needs one, and only inside `params.auth`:
//     `auth.token` is the shared token the tab was given (never a device
//     token in that slot); `auth.deviceToken` is sent only when the tab has
//     no shared token, or in the one bounded retry that directly follows an
//     AUTH_TOKEN_MISMATCH for the same shared token (clients.md 1.3). No
//     other frame (RPCs) carries a secret, and nothing outside
//     `params.auth` in a connect does.
//  4. What the page leaves behind: the address bar once the page has booted,
//     every entry of the tab's history and `document.referrer` hold none.
//     (The `#token=` fragment of the link itself is the one place the token
//     is expected; a fragment is never sent to a server.)

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import {
  KEYS, NO_AUTO_APPROVE, connectWithToken, pairWithCli, storage, text, uiTest, waitFor, waitScreen,
} from './harness.mjs';

/** Records what `page` sends (and the tokens it is given) over CDP. */
async function record(context, page, label, log) {
  const cdp = await context.newCDPSession(page);
  const sockets = new Map(); // requestId -> url
  cdp.on('Network.requestWillBeSent', (e) => {
    log.http.push({
      page: label,
      url: e.request.url,
      fragment: e.request.urlFragment || '',
      headers: e.request.headers,
      body: e.request.postData || '',
      type: e.type,
    });
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    log.http.push({ page: label, url: '(extra info)', fragment: '', headers: e.headers, body: '', type: 'extra' });
  });
  cdp.on('Network.webSocketCreated', (e) => sockets.set(e.requestId, e.url));
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    log.upgrades.push({ page: label, url: sockets.get(e.requestId) || '?', headers: e.request.headers });
  });
  cdp.on('Network.webSocketFrameSent', (e) => {
    log.sent.push({ page: label, socket: e.requestId, at: log.seq++, data: e.response.payloadData });
  });
  cdp.on('Network.webSocketFrameReceived', (e) => {
    let v;
    try {
      v = JSON.parse(e.response.payloadData);
    } catch {
      return;
    }
    const token = v?.payload?.auth?.deviceToken || (v?.payload?.tokenDelivery === 'in-band' && v.payload.token);
    if (token) log.deviceTokens.add(token);
    if (v?.type === 'res' && v.ok === false) {
      log.errors.push({ page: label, socket: e.requestId, at: log.seq++, code: v.error?.details?.code || v.error?.code });
    }
  });
  await cdp.send('Network.enable');
  return cdp;
}

/** Where (if anywhere) one of `secrets` occurs in `s`. */
function leak(s, secrets) {
  const hay = typeof s === 'string' ? s : JSON.stringify(s);
  for (const [name, secret] of secrets) {
    if (!secret) continue;
    for (const form of [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]) {
      if (hay.includes(form)) return name;
    }
  }
  return null;
}

uiTest('no secret in any URL, header, upgrade or frame the Control UI does not need it in', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });
  const firstToken = gw.token;
  const log = { http: [], upgrades: [], sent: [], errors: [], deviceTokens: new Set(), seq: 0 };
  const { context, page } = await env.context({ label: 'tab1' });
  const cdp = await record(context, page, 'tab1', log);

  // #token= link -> pairing -> CLI approval -> connected.
  const deviceId = await pairWithCli(page, gw);
  assert.ok(!page.url().includes('#'), `fragment left in the address bar: ${page.url()}`);
  // Reload (the shared token from sessionStorage), client routes.
  await page.reload();
  await waitScreen(page, 'app');
  for (const to of ['devices', 'audit', 'overview']) {
    await page.click(`a[data-nav="${to}"]`);
    await waitScreen(page, 'app');
  }
  // What the tab leaves behind.
  const history = await cdp.send('Page.getNavigationHistory');
  const left = {
    address: page.url(),
    history: history.entries.map((e) => e.url),
    referrer: await page.evaluate(() => document.referrer),
    historyLength: await page.evaluate(() => history.length),
  };

  // A second tab: no sessionStorage, so the device token alone.
  const tab2 = await context.newPage();
  await record(context, tab2, 'tab2', log);
  await tab2.goto(gw.url());
  await waitScreen(tab2, 'app');
  assert.equal(await text(tab2, '#this-device-id'), deviceId);
  assert.equal((await storage(tab2)).session[KEYS.token(gw.wsUrl)], undefined, 'tab2 has the shared token');
  await tab2.close();

  // The gateway's token changes; tab1 still holds the old one: a reload
  // fails with AUTH_TOKEN_MISMATCH and the bounded retry adds the device
  // token, once.
  const newToken = `${firstToken}-rotated`;
  gw.config.gateway.auth.token = newToken;
  writeFileSync(gw.configPath, JSON.stringify(gw.config, null, 2));
  gw.token = newToken;
  await waitFor(async () => (await gw.cli(['gateway', 'probe'])).code === 0, 'the gateway to take the new token', 20_000, 300);
  await page.reload();
  await waitScreen(page, 'app', undefined, 30_000);
  await env.shot(page, 'recovered-after-token-change');

  const secrets = [
    ['the shared token', firstToken],
    ['the new shared token', newToken],
    ...[...log.deviceTokens].map((t, i) => [`device token ${i}`, t]),
  ];
  assert.ok(log.deviceTokens.size >= 1, 'no device token was ever handed out');

  // 1. HTTP.
  const docs = log.http.filter((r) => r.type === 'Document');
  assert.ok(docs.length >= 3, `too few document loads recorded: ${docs.length}`);
  assert.ok(log.http.some((r) => r.url.endsWith('/catalogue.json')), 'catalogue.json not recorded');
  for (const r of log.http) {
    assert.equal(leak(r.url, secrets), null, `${r.page}: a secret in the URL ${r.url}`);
    assert.equal(leak(r.headers, secrets), null, `${r.page}: a secret in the headers of ${r.url}`);
    assert.equal(leak(r.body, secrets), null, `${r.page}: a secret in the body of ${r.url}`);
    const headers = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v]));
    for (const h of ['authorization', 'cookie', 'x-clawgate-token', 'x-openclaw-token']) {
      assert.ok(!(h in headers), `${r.page}: ${h} header on ${r.url}`);
    }
    // Chrome lists an empty provisional Referer; no-referrer keeps it empty.
    assert.ok(!headers.referer, `${r.page}: Referer ${headers.referer} on ${r.url}`);
  }
  // The link's fragment is the one expected place, and only on the first load.
  const withFragment = log.http.filter((r) => r.fragment && leak(r.fragment, secrets));
  assert.ok(withFragment.length <= 1, `the token fragment on ${withFragment.length} requests`);

  // 2. Upgrades.
  assert.ok(log.upgrades.length >= 4, `too few upgrades recorded: ${log.upgrades.length}`);
  for (const u of log.upgrades) {
    assert.equal(leak(u.url, secrets), null, `${u.page}: a secret in the WebSocket URL ${u.url}`);
    assert.equal(leak(u.headers, secrets), null, `${u.page}: a secret in the upgrade headers`);
    const names = Object.keys(u.headers).map((k) => k.toLowerCase());
    for (const h of ['authorization', 'cookie', 'sec-websocket-protocol']) {
      assert.ok(!names.includes(h), `${u.page}: ${h} on the upgrade`);
    }
  }

  // 3. Frames.
  const connects = [];
  for (const f of log.sent) {
    const v = JSON.parse(f.data);
    if (v.method !== 'connect') {
      assert.equal(leak(f.data, secrets), null, `${f.page}: a secret in a ${v.method} frame`);
      continue;
    }
    const { auth = {}, ...rest } = v.params;
    assert.equal(leak(rest, secrets), null, `${f.page}: a secret outside params.auth of a connect`);
    assert.deepEqual(Object.keys(auth).filter((k) => !['token', 'password', 'deviceToken'].includes(k)), [],
      `${f.page}: unexpected auth fields`);
    assert.ok(auth.password === undefined, `${f.page}: a password sent to a token gateway`);
    if (auth.token !== undefined) {
      assert.ok([firstToken, newToken].includes(auth.token), `${f.page}: auth.token is not the shared token`);
    }
    connects.push({ ...f, auth });
  }
  assert.ok(connects.length >= 5, `too few connects: ${connects.length}`);
  const errorOf = (c) => log.errors.find((e) => e.socket === c.socket)?.code;
  const byPage = (p) => connects.filter((c) => c.page === p).sort((a, b) => a.at - b.at);
  let retries = 0;
  for (const p of ['tab1', 'tab2']) {
    const list = byPage(p);
    list.forEach((c, i) => {
      if (c.auth.deviceToken === undefined) return;
      assert.ok(log.deviceTokens.has(c.auth.deviceToken), `${p}: an unknown device token sent`);
      if (c.auth.token === undefined) return; // no shared token in this tab: needed
      // Both: only as the bounded retry right after a mismatch of that token.
      const prev = list[i - 1];
      assert.ok(prev && prev.auth.deviceToken === undefined && prev.auth.token === c.auth.token
        && errorOf(prev) === 'AUTH_TOKEN_MISMATCH',
      `${p}: the device token sent next to the shared token without a preceding AUTH_TOKEN_MISMATCH`);
      retries += 1;
    });
  }
  // (The token change also closes tab1's live session, 4001 "gateway auth
  // changed"; its reconnect and the reload each get their one retry.)
  assert.ok(retries >= 1, 'the bounded retry never happened');
  // Tab2 connected with the device token alone; tab1 always had the shared token.
  assert.ok(byPage('tab2').every((c) => c.auth.token === undefined && c.auth.deviceToken), 'tab2 sent the shared token');
  assert.ok(byPage('tab1').every((c) => c.auth.token !== undefined), 'tab1 connected without its shared token');
  const sharedOnly = byPage('tab1').filter((c) => c.auth.deviceToken === undefined);
  assert.ok(sharedOnly.length >= 3, 'tab1 sent the device token on ordinary connects');

  // 4. What the page leaves behind.
  assert.equal(leak(left.address, secrets), null, `the address bar: ${left.address}`);
  assert.deepEqual(left.history.filter((u) => leak(u, secrets)), [], 'a history entry holds a secret');
  assert.equal(left.referrer, '', 'document.referrer');
  assert.ok(left.historyLength >= 1);
  assert.equal(leak(page.url(), secrets), null, `the address bar at the end: ${page.url()}`);
});
