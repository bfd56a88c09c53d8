// Pairing with gateway.nodes.pairing.autoApproveLocal = false: the browser
// shows the approve command, the CLI or an admin browser approves (or
// rejects), and the waiting page connects by itself.

import assert from 'node:assert/strict';
import {
  KEYS, NO_AUTO_APPROVE, TIMEOUT, act, appState, assertDeviceAuth, assertErrorScreen, assertLocalStorageClean,
  pairWithCli, storage, text, uiTest, waitFor, waitForPairing, waitScreen,
} from './harness.mjs';

uiTest('pairing: the page shows the pairing code large and the approve command; CLI approval by code connects it without reload', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });
  const { page } = await env.context({ label: 'pairing' });
  let loads = 0;
  page.on('load', () => {
    loads += 1;
  });
  const { requestId, deviceId, code } = await waitForPairing(page, gw);
  await assertErrorScreen(page, 'PAIRING_REQUIRED');
  assert.ok(await page.locator('button#check-now').isVisible(), 'button#check-now');
  // The code is shown large: the biggest text on the card, readable across a room.
  const codeBox = page.locator('#pairing-code');
  assert.ok(await codeBox.isVisible(), '#pairing-code is visible');
  const sizes = await page.evaluate(() => ({
    code: parseFloat(getComputedStyle(document.querySelector('#pairing-code')).fontSize),
    body: parseFloat(getComputedStyle(document.querySelector('#screen-message')).fontSize),
    title: parseFloat(getComputedStyle(document.querySelector('#screen-title')).fontSize),
  }));
  assert.ok(sizes.code >= 28 && sizes.code > sizes.body * 1.8 && sizes.code >= sizes.title, `#pairing-code is not large: ${JSON.stringify(sizes)}`);
  await env.shot(page, 'pairing-required');

  // The code and command name the request the gateway holds for this browser.
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  const pending = list.json.pending.find((p) => p.requestId === requestId);
  assert.ok(pending, `request ${requestId} not pending: ${JSON.stringify(list.json.pending)}`);
  assert.equal(pending.deviceId, deviceId, 'the pending request is this browser');
  assert.equal(pending.pairingCode, code, 'the page shows the request\'s code');
  const table = await gw.cliOk(['devices', 'list']);
  assert.ok(table.stdout.includes(code), `devices list shows the code: ${table.stdout}`);
  let st = await storage(page);
  assert.equal(st.local[KEYS.deviceAuth(gw.wsUrl)], undefined, 'a device token before approval');
  assertLocalStorageClean(st.local, gw, [gw.token]);

  await page.evaluate(() => {
    window.__stillThisDocument = true;
  });
  const loadsBefore = loads;
  // As a person types it off the screen: lower case, no dash.
  const approved = await gw.cliOk(['devices', 'approve', code.replace('-', '').toLowerCase()]);
  assert.ok(approved.stdout.includes(deviceId), approved.stdout);
  await waitScreen(page, 'app', undefined, 30_000);
  assert.equal(await page.evaluate(() => window.__stillThisDocument), true, 'the page reloaded');
  assert.equal(loads, loadsBefore, 'the page reloaded');
  assert.equal(await text(page, '#this-device-id'), deviceId);
  st = await storage(page);
  assert.equal(st.session[KEYS.token(gw.wsUrl)], gw.token);
  assertDeviceAuth(st.local, gw, deviceId, gw.token);
  assertLocalStorageClean(st.local, gw, [gw.token]);
  await env.shot(page, 'after-cli-approval');
});

uiTest('pairing: an admin browser approves and rejects from its Devices page', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });
  const admin = (await env.context({ label: 'admin' })).page;
  const adminId = await pairWithCli(admin, gw);
  await admin.click('a[data-nav="devices"]');
  await admin.waitForURL(gw.url('devices'));
  await admin.locator(`section#paired-devices article.device[data-device-id="${adminId}"] .badge-connected`).waitFor();

  // A second browser asks to pair; the admin's page shows it without reload.
  const guest = (await env.context({ label: 'guest' })).page;
  const g = await waitForPairing(guest, gw);
  const card = admin.locator(`section#pending-requests article.pending[data-request-id="${g.requestId}"]`);
  await card.waitFor({ timeout: 30_000 });
  assert.equal(await card.getAttribute('data-device-id'), g.deviceId);
  // The pending list shows the code the guest's screen shows.
  assert.equal(await card.getAttribute('data-pairing-code'), g.code);
  assert.equal(await card.locator('.pairing-code-inline').innerText(), g.code);
  await env.shot(admin, 'admin-sees-pending');
  await act(admin, card, 'approve', async () => (await card.count()) === 0, 'the approved request to leave the list');
  await waitScreen(guest, 'app', undefined, 30_000);
  assert.equal(await text(guest, '#this-device-id'), g.deviceId);
  await admin.locator(`section#paired-devices article.device[data-device-id="${g.deviceId}"]`).waitFor({ timeout: 30_000 });
  await env.shot(guest, 'guest-approved');
  await env.shot(admin, 'admin-after-approve');

  // A third browser is rejected.
  const intruder = (await env.context({ label: 'intruder' })).page;
  const i = await waitForPairing(intruder, gw);
  const icard = admin.locator(`section#pending-requests article.pending[data-request-id="${i.requestId}"]`);
  await icard.waitFor({ timeout: 30_000 });
  await act(admin, icard, 'reject', async () => (await icard.count()) === 0, 'the rejected request to leave the list');
  await env.shot(admin, 'admin-after-reject');
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  assert.ok(!list.json.pending.some((p) => p.requestId === i.requestId), 'the rejected request is still pending');
  assert.ok(!list.json.paired.some((d) => d.deviceId === i.deviceId), 'the rejected browser is paired');
  assert.ok(list.json.paired.some((d) => d.deviceId === g.deviceId), 'the approved browser is not paired');
  // The rejected browser does not get in; checking again asks anew.
  await intruder.click('button#check-now');
  await waitFor(async () => {
    const st = await appState(intruder);
    if (st.screen === 'app') throw new Error('the rejected browser connected');
    if (st.screen !== 'pairing') return st.screen === 'error' || st.screen === 'login';
    const rid = await text(intruder, '#pairing-request-id');
    return rid !== i.requestId;
  }, 'the rejected browser to show a new request or an error', TIMEOUT);
  assert.notEqual((await appState(intruder)).screen, 'app');
  await env.shot(intruder, 'intruder-after-reject');
});
