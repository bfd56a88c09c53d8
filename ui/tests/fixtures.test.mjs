// The Devices, Audit and Overview pages rendered from JSON written by the
// protocol crate's wire types (fixtures/wire.json, kept in sync by
// crates/protocol/tests/ui_fixtures.rs). The pages are mounted with a stub
// app whose requests answer from the fixture, so a field renamed in
// clawgate_protocol::wire (and so in the fixture) fails here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { uiTest, waitScreen } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const WIRE = JSON.parse(readFileSync(join(HERE, 'fixtures', 'wire.json'), 'utf8'));

/**
 * Mounts `page` (devices | audit | overview) into a fresh element of a page
 * served by the gateway, with a stub app: admin scopes, requests answered
 * from the fixture.
 */
async function mountFixture(page, which) {
  await page.evaluate(async ({ which, wire }) => {
    const mod = await import(`/js/pages/${which}.js`);
    document.getElementById('fixture-root')?.remove();
    const root = document.createElement('main');
    root.id = 'fixture-root';
    root.dataset.page = which;
    document.body.replaceChildren(root);
    const scopes = ['operator.admin', 'operator.read', 'operator.pairing'];
    const answers = {
      'device.pair.list': wire.pairList,
      'audit.list': wire.auditList,
      'system-presence': wire.presence,
      // The Devices page's Passkeys section (a fixture written before the
      // server had passkeys has none).
      'passkey.list': wire.passkeyList ?? { passkeys: [] },
      status: { runtimeVersion: '2026.9.6', gateway: { version: '0.1.0', implementation: 'clawgate' } },
    };
    const app = {
      scopes,
      can: (s) => scopes.includes(s),
      hello: { auth: { method: 'token', role: 'operator', scopes }, snapshot: { presence: wire.presence } },
      presence: { list: wire.presence },
      identity: { deviceId: 'not-in-the-fixture' },
      client: {
        request: async (method) => {
          if (!(method in answers)) throw new Error(`fixture has no ${method}`);
          return structuredClone(answers[method]);
        },
      },
      notify() {},
      confirm: async () => false,
      rename: async () => null,
      navigate() {},
      requestAccess() {},
      onEvent() {},
    };
    mod.mount(root, app);
  }, { which, wire: WIRE });
}

const shortId = (id) => `${id.slice(0, 8)}…${id.slice(-6)}`;

// The fields ui/js/pages/{devices,audit,overview}.js read. Each must occur
// in the fixture: a field renamed in the protocol crate fails here by name.
const UI_READS = {
  'pairList.pending[]': ['requestId', 'deviceId', 'displayName', 'clientId', 'clientMode', 'platform', 'remoteIp', 'browserOrigin', 'role', 'roles', 'scopes', 'isRepair', 'ts', 'pairingCode'],
  'pairList.paired[]': ['deviceId', 'operatorLabel', 'displayName', 'clientId', 'clientMode', 'platform', 'approvedVia', 'lastSeenAtMs', 'lastSeenReason', 'connected', 'roles', 'scopes', 'tokens', 'remoteIp', 'browserOrigin', 'approvedAtMs', 'createdAtMs'],
  'pairList.paired[].tokens[]': ['role', 'scopes', 'createdAtMs', 'rotatedAtMs', 'revokedAtMs', 'lastUsedAtMs'],
  'auditList.entries[]': ['seq', 'ts', 'action', 'actor', 'deviceId', 'details'],
  'presence[]': ['host', 'clientId', 'mode', 'platform', 'version', 'onlineSince', 'ts', 'deviceId'],
};
const RECORDS = {
  'pairList.pending[]': WIRE.pairList.pending,
  'pairList.paired[]': WIRE.pairList.paired,
  'pairList.paired[].tokens[]': WIRE.pairList.paired.flatMap((d) => d.tokens),
  'auditList.entries[]': WIRE.auditList.entries,
  'presence[]': WIRE.presence,
};

// No browser: a plain test (uiTest's checks expect pages that made requests).
test('the wire fixture has every field the pages read', () => {
  for (const [kind, fields] of Object.entries(UI_READS)) {
    for (const f of fields) {
      assert.ok(RECORDS[kind].some((r) => f in r), `the UI reads ${kind}.${f}, but the protocol's JSON (fixtures/wire.json) has no such field`);
    }
  }
  assert.ok('nextCursor' in WIRE.auditList, 'the UI reads auditList.nextCursor');
  // ui/js/pages/passkey_panel.js, once the fixture carries a passkey.list
  // answer (crates/protocol/tests/ui_fixtures.rs).
  const passkeys = WIRE.passkeyList?.passkeys ?? [];
  for (const f of ['id', 'label', 'scopes', 'rpId', 'createdAtMs', 'createdBy', 'lastUsedAtMs', 'flaggedAtMs', 'flaggedReason']) {
    if (passkeys.length) assert.ok(passkeys.some((r) => f in r), `the UI reads passkeyList.passkeys[].${f}, but fixtures/wire.json has no such field`);
  }
});

uiTest('devices, audit and overview render the protocol wire fixture', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'fixture' });
  await page.goto(gw.url());
  await waitScreen(page, 'login');

  // Devices: every pending request and paired device, by its fields.
  await mountFixture(page, 'devices');
  const { pending, paired } = WIRE.pairList;
  assert.ok(pending.length >= 2 && paired.length >= 2, 'the fixture has full and bare entries');
  await page.locator('article.pending').nth(pending.length - 1).waitFor();
  assert.equal(await page.locator('article.pending').count(), pending.length);
  assert.equal(await page.locator('article.device').count(), paired.length);

  const full = pending.find((p) => p.displayName && p.remoteIp && p.browserOrigin);
  assert.ok(full, 'a pending request with its optional fields');
  const card = page.locator(`article.pending[data-request-id="${full.requestId}"]`);
  assert.equal(await card.getAttribute('data-device-id'), full.deviceId);
  const cardText = await card.innerText();
  for (const want of [full.pairingCode, full.displayName, full.platform, full.remoteIp, full.browserOrigin, full.requestId, ...full.scopes]) {
    assert.ok(cardText.includes(want), `pending card shows ${want}: ${cardText}`);
  }
  assert.ok(cardText.includes(`role ${full.roles.join(', ')}`), cardText);
  assert.equal(await card.locator('.badge-pending').innerText(), 'new pairing');

  const upgrade = pending.find((p) => paired.some((d) => d.deviceId === p.deviceId));
  assert.ok(upgrade, 'a pending upgrade of a paired device');
  const upCard = page.locator(`article.pending[data-request-id="${upgrade.requestId}"]`);
  assert.equal(await upCard.locator('.badge-pending').innerText(), 'scope upgrade');
  assert.ok((await upCard.innerText()).includes('Approved now'));
  assert.ok(!('remoteIp' in upgrade), 'a loopback address is not shown');

  const rich = paired.find((d) => d.connected && d.operatorLabel);
  assert.ok(rich, 'a connected paired device with a label');
  const dev = page.locator(`article.device[data-device-id="${rich.deviceId}"]`);
  assert.equal(await dev.locator('h3').evaluate((e) => e.firstChild.textContent), rich.operatorLabel);
  assert.equal(await dev.locator('.badge-connected').count(), 1);
  const devText = await dev.innerText();
  for (const want of [rich.deviceId, rich.platform, rich.remoteIp, rich.browserOrigin, `approved by ${rich.approvedVia}`, `(${rich.lastSeenReason})`, rich.roles.join(', ')]) {
    assert.ok(devText.includes(want), `device card shows ${want}: ${devText}`);
  }
  assert.equal(await dev.locator('li.token').count(), rich.tokens.length);
  const revoked = rich.tokens.filter((t) => t.revokedAtMs);
  assert.ok(revoked.length, 'a revoked token');
  assert.equal(await dev.locator('li.token .badge-revoked').count(), revoked.length);
  for (const t of revoked) {
    assert.equal(await dev.locator(`li.token button[data-action="revoke"][data-role="${t.role}"]`).getAttribute('title'), 'Already revoked.');
  }
  const used = rich.tokens.find((t) => t.lastUsedAtMs);
  assert.ok(used && (await dev.locator('li.token').first().innerText()).includes('last used'), 'lastUsedAtMs is shown');

  const bare = paired.find((d) => !d.operatorLabel && !d.displayName && !d.clientId);
  assert.ok(bare, 'a paired device with only the required fields');
  const bareCard = page.locator(`article.device[data-device-id="${bare.deviceId}"]`);
  assert.equal(await bareCard.locator('h3').evaluate((e) => e.firstChild.textContent), shortId(bare.deviceId));
  assert.equal(await bareCard.locator('.badge-offline').count(), 1);
  const bareText = await bareCard.innerText();
  assert.ok(bareText.includes('auto-paired'), bareText);
  assert.ok(bareText.includes('never used'), bareText);
  assert.ok(!bareText.includes('IP'), 'no IP row without remoteIp');
  const connected = paired.filter((d) => d.connected).length;
  assert.ok((await page.locator('#paired-devices').innerText()).includes(`${connected} of ${paired.length} connected`));
  await env.shot(page, 'devices-fixture');

  // Audit: one row per entry, by seq, action, device and actor.
  await mountFixture(page, 'audit');
  const { entries } = WIRE.auditList;
  await page.locator('#audit-table tbody tr').nth(entries.length - 1).waitFor();
  assert.equal(await page.locator('#audit-table tbody tr').count(), entries.length);
  for (const e of entries) {
    const row = page.locator(`#audit-table tbody tr[data-seq="${e.seq}"]`);
    const rowText = await row.innerText();
    assert.ok(rowText.includes(e.action), `${e.action} in ${rowText}`);
    if (e.deviceId) assert.ok(rowText.includes(shortId(e.deviceId)), rowText);
    if (e.actor.deviceId) assert.ok(rowText.includes(`device ${shortId(e.actor.deviceId)}`), rowText);
    if (e.actor.ip) assert.ok(rowText.includes(e.actor.ip), rowText);
  }
  assert.ok((await text(page, '#audit-info')).startsWith(`${entries.length} entries`));
  // The action filter offers exactly the actions the protocol defines.
  const offered = await page.locator('#audit-actions option').evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual([...offered].sort(), [...WIRE.auditActions].sort());
  await env.shot(page, 'audit-fixture');

  // Overview: the connected clients, not the gateway's own entry.
  await mountFixture(page, 'overview');
  const clients = WIRE.presence.filter((p) => p.mode !== 'gateway');
  await page.locator('#presence-table tbody tr').nth(clients.length - 1).waitFor();
  assert.equal(await page.locator('#presence-table tbody tr').count(), clients.length);
  const rows = await page.locator('#presence-table tbody tr').evaluateAll((rs) => rs.map((r) => r.innerText));
  for (const [i, p] of clients.entries()) {
    for (const want of [p.host, p.mode, p.platform, p.version]) {
      assert.ok(rows[i].includes(want), `presence row shows ${want}: ${rows[i]}`);
    }
  }
  assert.equal(await text(page, '#ov-clients'), String(clients.length));
  await env.shot(page, 'overview-fixture');
});

async function text(page, sel) {
  return (await page.locator(sel).innerText()).trim();
}
