// Auth and connection states: password mode, rate limited with a countdown,
// gateway unreachable with retry.

import assert from 'node:assert/strict';
import {
  KEYS, appState, assertErrorScreen, assertLocalStorageClean, connectWithToken, intOf, storage, text, uiTest,
  waitFor, waitScreen,
} from './harness.mjs';

uiTest('password mode: wrong password refused, right one connects, never stored', async (env) => {
  const gw = await env.gateway({ auth: 'password' });
  const { page } = await env.context({ label: 'password' });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_PASSWORD_MISSING');
  await assertErrorScreen(page, 'AUTH_PASSWORD_MISSING');
  await env.shot(page, 'password-login');

  await page.fill('#gateway-secret', 'not-the-password');
  await page.click('button#connect');
  await waitScreen(page, 'login', 'AUTH_PASSWORD_MISMATCH');
  await env.shot(page, 'password-wrong');

  await page.fill('#gateway-secret', gw.password);
  await page.click('button#connect');
  await waitScreen(page, 'app');
  await env.shot(page, 'password-connected');
  const id = await text(page, '#this-device-id');
  const check = async () => {
    const st = await storage(page);
    for (const [k, v] of [...Object.entries(st.session), ...Object.entries(st.local)]) {
      assert.ok(!v.includes(gw.password), `storage ${k} holds the password`);
      assert.ok(!k.includes(gw.password), `storage key ${k} holds the password`);
    }
    assert.equal(st.session[KEYS.token(gw.wsUrl)], undefined, 'a password-mode connect stored a "token"');
    assertLocalStorageClean(st.local, gw, [gw.password]);
    return st;
  };
  const st = await check();
  // The device token is what lets this browser back in without the password.
  assert.ok(st.local[KEYS.deviceAuth(gw.wsUrl)], 'no device token after a password connect');
  assert.ok(!page.url().includes(gw.password));

  await page.reload();
  await waitScreen(page, 'app');
  assert.equal(await text(page, '#this-device-id'), id);
  await check();
  assert.match(await text(page, '#ov-auth-mode'), /password/i);
});

uiTest('rate limited: countdown, then the client reconnects by itself', async (env) => {
  const gw = await env.gateway({
    config: {
      gateway: {
        auth: { rateLimit: { maxAttempts: 3, windowMs: 60_000, lockoutMs: 8_000, exemptLoopback: false } },
      },
    },
  });
  const { page } = await env.context({ label: 'ratelimit' });
  await page.goto(`${gw.url()}#token=wrong-1`);
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISMATCH');
  // Wrong secrets until the limiter trips (the 3rd failure locks the peer).
  let state = await appState(page);
  for (let i = 2; i <= 3; i += 1) {
    await page.fill('#gateway-secret', `wrong-${i}`);
    await page.click('button#connect');
    await waitFor(async () => {
      const s = await appState(page);
      return s.screen !== 'connecting' && (s.code === 'AUTH_RATE_LIMITED' || s.code === 'AUTH_TOKEN_MISMATCH') && s;
    }, `the answer to attempt ${i}`);
    state = await appState(page);
  }
  // Locked now: even the right token is refused, with the time to wait.
  if (state.code !== 'AUTH_RATE_LIMITED') {
    await page.fill('#gateway-secret', gw.token);
    await page.click('button#connect');
  }
  await waitFor(async () => (await appState(page)).code === 'AUTH_RATE_LIMITED', 'AUTH_RATE_LIMITED');
  await assertErrorScreen(page, 'AUTH_RATE_LIMITED');
  const first = await intOf(page, '#countdown');
  assert.ok(first >= 1 && first <= 8, `#countdown starts at ${first}, lockout is 8 s`);
  await env.shot(page, 'rate-limited');
  await waitFor(async () => (await intOf(page, '#countdown')) < first, '#countdown to count down', 5_000, 100);
  await env.shot(page, 'rate-limited-counting');

  if (state.code === 'AUTH_RATE_LIMITED') {
    // Locked by a wrong secret: put the right one in for the automatic retry.
    await page.fill('#gateway-secret', gw.token).catch(() => {});
  }
  await waitScreen(page, 'app', undefined, 30_000);
  assert.equal((await storage(page)).session[KEYS.token(gw.wsUrl)], gw.token);
  await env.shot(page, 'rate-limit-over');
});

uiTest('gateway unreachable: GATEWAY_UNREACHABLE with retry, back when it returns', async (env) => {
  env.allowConsoleError(/WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/?' failed/);
  env.allowConsoleError(/ERR_CONNECTION_REFUSED/);
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'unreachable' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  const port = gw.port;
  await gw.stop();
  await waitScreen(page, 'error', 'GATEWAY_UNREACHABLE', 30_000);
  const st = await appState(page);
  assert.ok(st.title && st.message, 'unreachable screen has a title and message');
  assert.ok(await page.locator('button#retry').isVisible(), 'button#retry');
  const next = await intOf(page, '#next-retry');
  assert.ok(next >= 0 && next <= 120, `#next-retry ${next}`);
  await env.shot(page, 'unreachable');

  await gw.start(port);
  assert.equal(gw.port, port);
  await page.click('button#retry');
  await waitScreen(page, 'app', undefined, 30_000);
  assert.equal(await text(page, '#this-device-id'), id);
  await env.shot(page, 'reconnected');
});
