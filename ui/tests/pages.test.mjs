// The connected pages: Overview numbers, Devices (this browser connected,
// rename), Audit entries and filters, and a read-only session's disabled
// actions.

import assert from 'node:assert/strict';
import {
  BIN, KEYS, NO_AUTO_APPROVE, connectWithToken, intOf, pairWithCli, storage, text, uiTest, waitFor,
  waitForPairing, waitScreen,
} from './harness.mjs';
import { execFileSync } from 'node:child_process';

// `clawgate 0.1.0 (commit date)`: the version is the second word.
const VERSION = execFileSync(BIN, ['--version'], { encoding: 'utf8' }).trim().split(/\s+/)[1];

async function nav(page, gw, to) {
  await page.click(`a[data-nav="${to}"]`);
  await page.waitForURL(gw.url(to === 'overview' ? '' : to));
  await waitScreen(page, 'app');
}

async function overview(page) {
  await page.locator('#ov-pending').waitFor();
  return {
    version: await text(page, '#ov-version'),
    uptime: await text(page, '#ov-uptime'),
    auth: await text(page, '#ov-auth-mode'),
    clients: await intOf(page, '#ov-clients'),
    pending: await intOf(page, '#ov-pending'),
  };
}

/** Waits until the overview numbers are `want` (reloading, as the page may not be live). */
async function overviewIs(page, want) {
  let last;
  await waitFor(async () => {
    last = await overview(page);
    if (last.clients === want.clients && last.pending === want.pending) return true;
    await page.reload();
    await waitScreen(page, 'app');
    return false;
  }, `overview ${JSON.stringify(want)}`, 30_000, 500).catch((e) => {
    throw new Error(`${e.message}; last overview ${JSON.stringify(last)}`);
  });
  return last;
}

uiTest('Overview: version, uptime, auth mode, clients and pending numbers', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });
  const { page } = await env.context({ label: 'overview' });
  await pairWithCli(page, gw);
  await page.goto(gw.url());
  await waitScreen(page, 'app');
  let ov = await overviewIs(page, { clients: 1, pending: 0 });
  assert.ok(ov.version.includes(VERSION), `#ov-version "${ov.version}" lacks ${VERSION}`);
  assert.ok(ov.uptime.length > 0, '#ov-uptime empty');
  assert.match(ov.auth, /token/i, '#ov-auth-mode');
  await env.shot(page, 'overview-one-client');

  // Another browser waiting for approval: one pending request.
  const guest = (await env.context({ label: 'guest' })).page;
  const g = await waitForPairing(guest, gw);
  ov = await overviewIs(page, { clients: 1, pending: 1 });
  await env.shot(page, 'overview-one-pending');

  await gw.cliOk(['devices', 'approve', g.requestId]);
  await waitScreen(guest, 'app', undefined, 30_000);
  ov = await overviewIs(page, { clients: 2, pending: 0 });
  await env.shot(page, 'overview-two-clients');

  // The numbers agree with the CLI's view.
  const status = await gw.cliOk(['status'], { json: true });
  assert.ok(status.json, `status --json: ${status.stdout}`);
});

uiTest('Devices: this browser is listed as connected; rename shows everywhere', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'devices' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  await nav(page, gw, 'devices');
  const card = page.locator(`section#paired-devices article.device[data-device-id="${id}"]`);
  await card.locator('.badge-connected').waitFor();
  for (const action of ['rename', 'rotate', 'revoke', 'remove']) {
    const b = card.locator(`[data-action="${action}"]`);
    assert.equal(await b.count(), 1, `no ${action} button on this device`);
    assert.equal(await b.isDisabled(), false, `${action} disabled for an admin session`);
  }
  assert.ok((await card.innerText()).includes(id.slice(0, 8)), 'the card does not show the device id');
  await env.shot(page, 'devices-this-browser');

  await card.locator('[data-action="rename"]').click();
  await page.locator('dialog#rename[open]').waitFor();
  await page.fill('#rename-input', 'UI test browser');
  await page.click('button#rename-ok');
  await waitFor(async () => (await card.innerText()).includes('UI test browser'), 'the new name on the card');
  const list = await gw.cliOk(['devices', 'list'], { json: true });
  const dev = list.json.paired.find((d) => d.deviceId === id);
  assert.ok(JSON.stringify(dev).includes('UI test browser'), `the gateway did not keep the name: ${JSON.stringify(dev)}`);
  await env.shot(page, 'devices-renamed');
});

uiTest('Audit: lists entries, filters by action and device', async (env) => {
  const gw = await env.gateway();
  // A refused browser first, so there is more than one kind of entry.
  const stranger = (await env.context({ label: 'stranger' })).page;
  await stranger.goto(`${gw.url()}#token=wrong-token-for-audit`);
  await waitScreen(stranger, 'login', 'AUTH_TOKEN_MISMATCH');

  const { page } = await env.context({ label: 'audit' });
  await connectWithToken(page, gw);
  const id = await text(page, '#this-device-id');
  await nav(page, gw, 'audit');
  const rows = page.locator('table#audit-table tbody tr[data-seq]');
  await rows.first().waitFor();
  const all = await rows.evaluateAll((trs) => trs.map((tr) => ({ seq: tr.getAttribute('data-seq'), text: tr.innerText })));
  assert.ok(all.length >= 2, `expected at least 2 audit rows, got ${all.length}`);
  for (const r of all) assert.match(r.seq, /^\d+$/, 'data-seq is a number');
  assert.equal(new Set(all.map((r) => r.seq)).size, all.length, 'data-seq values repeat');
  const joined = all.map((r) => r.text).join('\n');
  assert.ok(joined.includes('pairing.silent_approved'), `no pairing.silent_approved row:\n${joined}`);
  assert.ok(joined.includes('auth.failure'), `no auth.failure row:\n${joined}`);
  await env.shot(page, 'audit-all');

  const setField = async (sel, value) => {
    const tag = await page.locator(sel).evaluate((el) => el.tagName);
    if (tag === 'SELECT') await page.selectOption(sel, value);
    else await page.fill(sel, value);
  };
  await setField('#audit-action', 'pairing.silent_approved');
  await page.click('button#audit-apply');
  await waitFor(async () => {
    const texts = await rows.allInnerTexts();
    return texts.length > 0 && texts.every((t) => t.includes('pairing.silent_approved'));
  }, 'only pairing.silent_approved rows');
  await env.shot(page, 'audit-filtered-action');

  await setField('#audit-action', '');
  await setField('#audit-device', id);
  await page.click('button#audit-apply');
  await waitFor(async () => {
    const texts = await rows.allInnerTexts();
    return texts.length > 0 && texts.length < all.length && !texts.some((t) => t.includes('auth.failure'));
  }, 'only this device\'s rows');
  await env.shot(page, 'audit-filtered-device');
});

/**
 * A tab of a device paired through the CLI whose cached device token says
 * `scopes`: without the shared token it connects with that token and asks
 * for those scopes only, so the session holds just them.
 */
async function limitedTab(env, gw, scopes, label) {
  const { context, page: first } = await env.context({ label });
  const id = await pairWithCli(first, gw);
  const st = await storage(first);
  const entry = JSON.parse(st.local[KEYS.deviceAuth(gw.wsUrl)]);
  entry.tokens.operator.scopes = scopes;
  await first.evaluate(([k, v]) => localStorage.setItem(k, v), [KEYS.deviceAuth(gw.wsUrl), JSON.stringify(entry)]);
  await first.close();
  const page = await context.newPage();
  await page.goto(gw.url('devices'));
  await waitScreen(page, 'app');
  assert.equal((await storage(page)).session[KEYS.token(gw.wsUrl)], undefined);
  assert.equal(await text(page, '#this-device-id'), id);
  return { page, id };
}

uiTest('limited sessions: actions the scopes do not allow are disabled with the reason', async (env) => {
  const gw = await env.gateway({ config: NO_AUTO_APPROVE });

  // operator.read only: the gateway lists no devices to such a session, so
  // there is nothing to press, and the page says which scope is missing.
  const reader = await limitedTab(env, gw, ['operator.read'], 'reader');
  await reader.page.locator('section#pending-requests').waitFor();
  await waitFor(async () => (await reader.page.locator('#app').innerText()).includes('operator.pairing'),
    'the read-only page to name the missing operator.pairing');
  const enabled = await reader.page.locator('#app [data-action]:not([disabled])').count();
  assert.equal(enabled, 0, 'enabled device actions in an operator.read session');
  await env.shot(reader.page, 'read-only-devices');
  // Audit needs operator.admin: the filters are disabled and the page says why.
  await nav(reader.page, gw, 'audit');
  await reader.page.locator('button#audit-apply').waitFor();
  await waitFor(async () => reader.page.locator('button#audit-apply').isDisabled(), '#audit-apply disabled without operator.admin');
  assert.ok((await reader.page.locator('#app').innerText()).includes('operator.admin'), 'the audit page does not say operator.admin is missing');
  await env.shot(reader.page, 'read-only-audit');
  // The overview offers to ask for more access.
  await nav(reader.page, gw, 'overview');
  await reader.page.locator('button#request-more-access').waitFor({ state: 'visible' });
  await env.shot(reader.page, 'read-only-overview');

  // operator.read + operator.pairing: this device's card. Its operator token
  // holds operator.admin, which this session does not: the gateway refuses
  // to rotate it ("caller-missing-scope"), so Rotate must be disabled, with
  // the reason.
  const pairer = await limitedTab(env, gw, ['operator.read', 'operator.pairing'], 'pairer');
  const mine = pairer.page.locator(`section#paired-devices article.device[data-device-id="${pairer.id}"]`);
  await mine.waitFor();
  assert.equal(await mine.locator('[data-action="rename"]').isDisabled(), false, 'rename disabled with operator.pairing');
  await env.shot(pairer.page, 'pairing-only-devices');
  const rotate = mine.locator('[data-action="rotate"]');
  if (!(await rotate.isDisabled())) {
    // Show what pressing it does, for the failure message.
    await rotate.click();
    let outcome = 'nothing visible';
    await waitFor(async () => {
      if (await pairer.page.locator('dialog#confirm[open]').count()) await pairer.page.click('button#confirm-ok');
      const err = pairer.page.locator('#app [role="alert"]:visible, #notice:visible');
      if (await err.count()) {
        outcome = (await err.allInnerTexts()).join(' | ').trim();
        return outcome.length > 0;
      }
      return false;
    }, 'an outcome of the rotate click', 10_000).catch(() => {});
    await env.shot(pairer.page, 'pairing-only-rotate-pressed');
    assert.fail(`Rotate is enabled in an operator.read+operator.pairing session although the token holds operator.admin; pressing it: ${outcome}`);
  }
  const title = (await rotate.getAttribute('title'))?.trim();
  assert.ok(title, 'disabled rotate has no reason in title');
  assert.match(title, /operator\.admin/, 'the reason names the missing scope');
  assert.ok((await mine.innerText()).includes(title) || (await pairer.page.locator('#app').innerText()).includes(title),
    `the reason "${title}" is not in the visible text`);
});
