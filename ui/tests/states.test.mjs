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
  // One attempt from the form: a new WebSocket, then an answer on screen.
  const attempt = async (secret) => {
    const before = env.sockets.length;
    await page.fill('#gateway-secret', secret);
    await page.click('button#connect');
    await waitFor(() => env.sockets.length > before, 'the attempt\'s WebSocket', 10_000, 50);
    // Refused: the gateway closes the socket after its answer.
    await waitFor(() => env.sockets.slice(before).every((w) => w.closed), 'the refused socket to close', 10_000, 50);
    await waitFor(async () => {
      const s = await appState(page);
      return ['login', 'error', 'app'].includes(s.screen) && s;
    }, 'the answer to the attempt');
    return appState(page);
  };
  // The 2nd and 3rd wrong secrets: the 3rd failure locks this browser.
  let state;
  for (const secret of ['wrong-2', 'wrong-3']) {
    state = await attempt(secret);
    assert.equal(state.code, 'AUTH_TOKEN_MISMATCH', `answer to ${secret}`);
  }
  // Locked now: even the right token is refused, with the time to wait.
  await attempt(gw.token);
  await waitFor(async () => (await appState(page)).code === 'AUTH_RATE_LIMITED', 'AUTH_RATE_LIMITED');
  await assertErrorScreen(page, 'AUTH_RATE_LIMITED');
  const first = await intOf(page, '#countdown');
  assert.ok(first >= 1 && first <= 8, `#countdown starts at ${first}, lockout is 8 s`);
  assert.equal(await page.isDisabled('button#connect'), true, '#connect enabled during the lockout');
  await env.shot(page, 'rate-limited');
  await waitFor(async () => (await intOf(page, '#countdown')) < first, '#countdown to count down', 5_000, 100);
  await env.shot(page, 'rate-limited-counting');

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

  // Retry makes a new attempt at once (one more WebSocket), still refused.
  const sockets = () => env.requests.filter((r) => r.type === 'websocket').length;
  const before = sockets();
  // With the automatic attempt 2 s or more away, the new socket is Retry's.
  const soon = (await intOf(page, '#next-retry')) >= 2 ? 1_500 : 10_000;
  await page.click('button#retry');
  await waitFor(() => sockets() > before, `Retry to open a new WebSocket within ${soon} ms`, soon, 50);
  await waitScreen(page, 'error', 'GATEWAY_UNREACHABLE');

  await gw.start(port);
  assert.equal(gw.port, port);
  // Back: Retry (or the automatic attempt, whichever comes first) connects.
  await page.click('button#retry', { timeout: 2_000 }).catch(() => {});
  await waitScreen(page, 'app', undefined, 30_000);
  assert.equal(await text(page, '#this-device-id'), id);
  await env.shot(page, 'reconnected');
});
