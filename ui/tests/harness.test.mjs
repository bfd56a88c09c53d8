// The harness's own checks catch what they are meant to catch, so a green
// run means something: a request to another origin, a console error, a CSP
// (Trusted Types) violation, a missing CSP header.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Env, assertUiHeaders, connectWithToken } from './harness.mjs';

async function withEnv(name, fn) {
  const env = new Env(name);
  try {
    await fn(env);
  } finally {
    await env.close();
  }
}

test('harness: a clean session passes the post-test checks', { timeout: 120_000 }, async () => {
  await withEnv('harness clean', async (env) => {
    const gw = await env.gateway();
    const { page } = await env.context();
    await connectWithToken(page, gw);
    env.verify();
  });
});

test('harness: a request outside the gateway origin fails the checks', { timeout: 120_000 }, async () => {
  const server = createServer((_, res) => res.end('elsewhere'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    await withEnv('harness outside', async (env) => {
      const gw = await env.gateway();
      const { page } = await env.context();
      await connectWithToken(page, gw);
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      assert.throws(() => env.verify(), /requests outside the gateway origin/);
    });
  } finally {
    server.close();
  }
});

test('harness: Trusted Types violations and console errors fail the checks', { timeout: 120_000 }, async () => {
  await withEnv('harness csp', async (env) => {
    const gw = await env.gateway();
    const { page } = await env.context();
    await connectWithToken(page, gw);
    await page.evaluate(() => {
      try {
        document.body.insertAdjacentHTML('beforeend', '<i>x</i>');
      } catch {
        // refused, as it should be
      }
    });
    // The violation event is reported asynchronously.
    const deadline = Date.now() + 10_000;
    while (env.csp.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(env.csp.length > 0, 'the violation was not recorded');
    assert.throws(() => env.verify(), /CSP violations reported/);
    env.csp = [];
    await page.evaluate(() => console.error('boom from the test'));
    while (env.consoleErrors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.throws(() => env.verify(), /console errors/);
  });
});

test('harness: the header check refuses a missing or loose CSP', () => {
  const ok = {
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://h:1 wss://h:1; manifest-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  assertUiHeaders(ok, 'http://h:1/');
  assert.throws(() => assertUiHeaders({ ...ok, 'content-security-policy': undefined }, 'http://h:1/'), /no Content-Security-Policy/);
  const loose = ok['content-security-policy'].replace("script-src 'self'", "script-src 'self' 'unsafe-inline'");
  assert.throws(() => assertUiHeaders({ ...ok, 'content-security-policy': loose }, 'http://h:1/'), /allows more/);
  const foreign = ok['content-security-policy'].replace('wss://h:1', 'wss://evil:1');
  assert.throws(() => assertUiHeaders({ ...ok, 'content-security-policy': foreign }, 'http://h:1/'), /allows more/);
});
