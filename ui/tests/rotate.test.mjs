// Rotating this browser's device token from another session: the gateway
// closes the browser's session; with the shared token in the tab it recovers
// (a new device token), with only the old device token it explains.

import assert from 'node:assert/strict';
import {
  KEYS, NO_AUTO_APPROVE, act, appState, assertErrorScreen, assertLocalStorageClean, connectWithToken, pairWithCli,
  storage, text, uiTest, waitScreen,
} from './harness.mjs';

const deviceToken = async (page, gw) => {
  const raw = (await storage(page)).local[KEYS.deviceAuth(gw.wsUrl)];
  return raw ? JSON.parse(raw).tokens?.operator?.token : undefined;
};

uiTest('rotate from an admin browser\'s Devices page: this browser recovers with a new device token', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'target' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  const oldToken = await deviceToken(page, gw);
  assert.ok(oldToken, 'no device token before the rotation');

  const admin = (await env.context({ label: 'admin' })).page;
  await connectWithToken(admin, gw, 'devices');
  const adminId = await text(admin, '#this-device-id');
  assert.notEqual(adminId, id, 'two contexts share a device identity');
  const card = admin.locator(`section#paired-devices article.device[data-device-id="${id}"]`);
  await card.locator('.badge-connected').waitFor();
  await env.shot(admin, 'admin-devices-before-rotate');

  await act(admin, card, 'rotate', async () => {
    const t = await deviceToken(page, gw);
    return t && t !== oldToken;
  }, 'the browser to store a new device token');
  await waitScreen(page, 'app');
  assert.equal(await text(page, '#this-device-id'), id);
  assertLocalStorageClean((await storage(page)).local, gw, [gw.token]);
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  const dev = list.json.paired.find((d) => d.deviceId === id);
  assert.ok(dev, 'the rotated browser is no longer paired');
  await env.shot(page, 'recovered-after-rotate');
  await env.shot(admin, 'admin-after-rotate');
});

uiTest('rotate from the CLI while the tab has only its device token: the page explains', async (env) => {
  const gw = await env.gateway();
  const { context, page: first } = await env.context({ label: 'first-tab' });
  await connectWithToken(first, gw);
  const id = await text(first, '#this-device-id');
  await first.close();

  // A new tab has no sessionStorage: it connects with the device token alone.
  const page = await context.newPage();
  await page.goto(gw.url());
  await waitScreen(page, 'app');
  assert.equal(await text(page, '#this-device-id'), id);
  assert.equal((await storage(page)).session[KEYS.token(gw.wsUrl)], undefined, 'the new tab has the shared token');
  const oldToken = await deviceToken(page, gw);

  const r = await gw.cliOk(['devices', 'rotate', '--device', id, '--role', 'operator'], { json: true });
  assert.ok(r.json, `rotate --json printed no JSON: ${r.stdout}`);
  await waitScreen(page, 'login', 'AUTH_DEVICE_TOKEN_MISMATCH', 30_000).catch(async (e) => {
    // An error screen with the same code explains it too.
    const st = await appState(page);
    if (!(st.screen === 'error' && st.code === 'AUTH_DEVICE_TOKEN_MISMATCH')) throw e;
  });
  await assertErrorScreen(page, 'AUTH_DEVICE_TOKEN_MISMATCH');
  await env.shot(page, 'explains-rotated-token');
  // The stale token is not kept to be sent again.
  const t = await deviceToken(page, gw);
  assert.notEqual(t, oldToken, 'the refused device token is still cached');

  // Pasting the shared token recovers.
  await page.fill('#gateway-secret', gw.token);
  await page.click('button#connect');
  await waitScreen(page, 'app');
  assert.equal(await text(page, '#this-device-id'), id);
  const fresh = await deviceToken(page, gw);
  assert.ok(fresh && fresh !== oldToken, 'no new device token after reconnecting');
  await env.shot(page, 'recovered-with-shared-token');
});

uiTest('remove this browser from the CLI: DEVICE_REMOVED, device token dropped, connect again', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });
  const { page } = await env.context({ label: 'removed' });
  const id = await pairWithCli(page, gw);
  await gw.cliOk(['devices', 'remove', id]);
  await waitScreen(page, 'error', 'DEVICE_REMOVED', 30_000);
  await assertErrorScreen(page);
  assert.equal(await deviceToken(page, gw), undefined, 'the removed device\'s token is still cached');
  assertLocalStorageClean((await storage(page)).local, gw, [gw.token]);
  await env.shot(page, 'device-removed');
  // Connecting again asks for a new approval (same identity), which the CLI gives.
  await page.click('button#pair-again');
  await waitScreen(page, 'pairing', 'PAIRING_REQUIRED');
  assert.equal(await text(page, '#pairing-device-id'), id, 'a new identity after removal');
  const cmd = await text(page, 'code#approve-command');
  await gw.cliOk(['devices', 'approve', cmd.split(' ').pop()]);
  await waitScreen(page, 'app', undefined, 30_000);
  assert.equal(await text(page, '#this-device-id'), id);
  await env.shot(page, 'paired-again');
});
