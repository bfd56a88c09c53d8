// Browser attacks in a real browser (issue 8, item 5; the wire-level cases
// are in crates/gateway/tests/browser_attacks.rs). Chromium resolves the
// attacker's names to 127.0.0.1 (--host-resolver-rules), which is what a
// DNS-rebinding attacker achieves with a short-TTL record:
//
// - cross-site WebSocket hijacking: a page on http://evil.example opens a
//   socket to the gateway and sends a connect, even with the right token;
//   the browser attaches the page's Origin, which the page cannot forge, and
//   the gateway answers CONTROL_UI_ORIGIN_NOT_ALLOWED and closes 1008; the
//   page cannot read the gateway's HTTP endpoints either (no CORS grant);
// - DNS rebinding: the same name on the gateway's port makes the page
//   same-origin with the gateway; the gateway refuses the Host name (403)
//   for the page, its fetches and its WebSocket upgrade.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { CHROMIUM, Gateway, TIMEOUT } from './harness.mjs';

/** A page that attacks `target` and reports what it saw in window.__result. */
function attackPage(target, token) {
  return `<!doctype html><meta charset="utf-8"><title>evil</title><script>
  (async () => {
    const out = {};
    out.socket = await new Promise((resolve) => {
      let ws;
      try { ws = new WebSocket(${JSON.stringify(target.ws)}); } catch (e) { resolve({ thrown: String(e) }); return; }
      const seen = { frames: [] };
      ws.onmessage = (m) => {
        const v = JSON.parse(m.data);
        seen.frames.push(v);
        if (v.event === 'connect.challenge') {
          ws.send(JSON.stringify({ type: 'req', id: 'c1', method: 'connect', params: {
            minProtocol: 4, maxProtocol: 4,
            client: { id: 'cli', version: '1', platform: 'web', mode: 'cli' },
            scopes: ['operator.admin'], auth: { token: ${JSON.stringify(token)} } } }));
        }
      };
      ws.onclose = (e) => resolve({ ...seen, closeCode: e.code, closeReason: e.reason });
      setTimeout(() => resolve({ ...seen, timeout: true }), 10000);
    });
    for (const path of ['/healthz', '/metrics', '/']) {
      try {
        const r = await fetch(${JSON.stringify(target.http)} + path);
        out[path] = { status: r.status, body: (await r.text()).slice(0, 200) };
      } catch (e) {
        out[path] = { blocked: String(e) };
      }
    }
    window.__result = out;
  })();
  </script>`;
}

test('a page on another origin cannot drive the gateway; a rebinding name is refused', { timeout: 180_000 }, async () => {
  const gw = new Gateway({ name: 'browser-attacks' });
  let server;
  let browser;
  try {
    await gw.start();
    const gwPort = gw.port;
    // The attacker's site, on another port of the same machine.
    let page = '';
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const evilPort = server.address().port;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: [
        '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.evil.example 127.0.0.1',
      ],
    });
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    const tab = await context.newPage();

    // 1. Cross-site WebSocket hijacking, with the real token even.
    page = attackPage({ ws: `ws://127.0.0.1:${gwPort}/`, http: `http://127.0.0.1:${gwPort}` }, gw.token);
    await tab.goto(`http://evil.example:${evilPort}/`);
    const cswsh = await tab.waitForFunction(() => window.__result, null, { timeout: 30_000 }).then((h) => h.jsonValue());
    const res = cswsh.socket.frames.find((f) => f.type === 'res');
    assert.ok(res, `no connect response: ${JSON.stringify(cswsh.socket)}`);
    assert.equal(res.ok, false, JSON.stringify(res));
    assert.equal(res.error.details.code, 'CONTROL_UI_ORIGIN_NOT_ALLOWED', JSON.stringify(res));
    assert.equal(cswsh.socket.closeCode, 1008);
    assert.ok(!cswsh.socket.frames.some((f) => f.payload?.type === 'hello-ok'), 'the attacker got a session');
    for (const path of ['/healthz', '/metrics', '/']) {
      assert.ok(cswsh[path].blocked, `${path} was readable cross-origin: ${JSON.stringify(cswsh[path])}`);
    }

    // 2. DNS rebinding: the attacker's name on the gateway's port.
    const rebind = `http://rebind.evil.example:${gwPort}`;
    const nav = await tab.goto(`${rebind}/`);
    assert.equal(nav.status(), 403, 'the Control UI was served under the attacker name');
    assert.ok((await nav.text()).includes('gateway.allowedHosts'));
    // A page the attacker serves under that name (before the rebind: from
    // its own server on another port) that then talks to the rebound name.
    page = attackPage({ ws: `ws://rebind.evil.example:${gwPort}/`, http: rebind }, gw.token);
    await tab.goto(`http://rebind.evil.example:${evilPort}/`);
    const rebound = await tab.waitForFunction(() => window.__result, null, { timeout: 30_000 }).then((h) => h.jsonValue());
    assert.equal(rebound.socket.frames.length, 0, `the upgrade was accepted: ${JSON.stringify(rebound.socket)}`);
    assert.equal(rebound.socket.closeCode, 1006, JSON.stringify(rebound.socket));

    // The gateway's own page on its own origin is unaffected.
    const own = await tab.goto(`${gw.url()}#token=${encodeURIComponent(gw.token)}`);
    assert.equal(own.status(), 200);
    await tab.waitForSelector('#app[data-screen="app"]', { state: 'attached', timeout: 30_000 });
    // The log says why.
    assert.ok(/origin not allowed|CONTROL_UI_ORIGIN_NOT_ALLOWED/.test(gw.log), 'no origin refusal logged');
    assert.ok(!gw.log.includes(gw.token), 'the gateway logged the token');
  } finally {
    await browser?.close().catch(() => {});
    server?.close();
    await gw.stop().catch(() => {});
    gw.cleanup();
  }
});
