// Devices: pending pairing requests and paired devices, refreshed live on
// device.pair.* events. Actions the session's scopes do not allow are
// disabled with the reason in `title` and in visible text.

import { h, replace, copyButton, formatAge, formatTime, shortId, announce } from '../dom.js';
import { RequestError, hasScope } from '../gateway.js';
import { METHOD_SCOPES } from '../protocol.js';
import { qrSvg } from '../setup_code.js';
import { passkeyPanel } from './passkey_panel.js';

const PAIRING = METHOD_SCOPES['device.pair.list'];
const ADMIN = 'operator.admin';

function nameOf(d) {
  return d.operatorLabel || d.displayName || d.clientId || shortId(d.deviceId);
}

function chips(list, cls = 'chip') {
  if (!list || !list.length) return h('span', { class: 'muted' }, 'none');
  return h('ul', { class: 'chips' }, list.map((s) => h('li', { class: cls }, s)));
}

function idLine(id) {
  const code = h('code', { class: 'wrap' }, id);
  return h('div', { class: 'id-line' }, code, copyButton(code, 'Copy device id'));
}

/** A button, disabled with its reason when `reason` is set. */
function action(name, label, reason, onclick, cls = 'secondary', extra = {}) {
  return h('button', {
    type: 'button',
    class: cls,
    dataset: { action: name, ...extra },
    disabled: !!reason,
    title: reason || null,
    'aria-describedby': reason ? 'devices-scope-reason' : null,
    onclick: reason ? null : onclick,
  }, label);
}

function covers(held, requested) {
  return (requested || []).every((s) => hasScope(held, s));
}

function requestKind(p, paired) {
  if (!paired) return p.isRepair ? 'new pairing · repair' : 'new pairing';
  const rolesNew = (p.roles || [p.role]).some((r) => !(paired.roles || []).includes(r));
  if (rolesNew) return 'role upgrade';
  if (!covers(paired.scopes || [], p.scopes || [])) return 'scope upgrade';
  return 're-approval';
}

export function mount(el, app) {
  let data = { pending: [], paired: [] };
  let refreshTimer = null;
  let ageTimer = null;
  let loading = false;
  const pendingSection = h('section', { id: 'pending-requests', class: 'panel', 'aria-labelledby': 'pending-title' });
  const pairedSection = h('section', { id: 'paired-devices', class: 'panel', 'aria-labelledby': 'paired-title' });
  const scopeNote = h('p', { id: 'devices-scope-reason', class: 'scope-reason', hidden: true });
  const errorLine = h('p', { class: 'error-line', role: 'alert', hidden: true });

  const setupSection = h('section', { id: 'setup-codes', class: 'panel', 'aria-labelledby': 'setup-title', hidden: true });
  let created = null;
  const passkeys = passkeyPanel(app);

  replace(el,
    h('h1', { class: 'page-title' }, 'Devices'),
    h('p', { class: 'page-lead muted' }, 'Pairing requests waiting for approval, and every device paired with this gateway.'),
    scopeNote, errorLine, pendingSection, pairedSection, passkeys.el, setupSection);

  function denyReason() {
    return app.can(PAIRING) ? null : `Needs ${PAIRING}: this session can only view devices.`;
  }

  // The gateway's own rules (crates/gateway device_methods.rs): a session
  // that signed in with its device token and lacks operator.admin manages
  // only its own device, and only operator roles; a caller never mints or
  // grants scopes it does not hold.
  const isAdmin = () => app.can(ADMIN);
  const deviceSession = () => !!(app.hello && app.hello.auth && app.hello.auth.method === 'device-token');
  function crossReason(deviceId) {
    return !isAdmin() && deviceSession() && deviceId !== app.identity.deviceId
      ? 'Needs operator.admin: a session signed in with its device token manages only its own device.'
      : null;
  }
  function roleReason(roles) {
    return !isAdmin() && (roles || []).some((r) => r !== 'operator')
      ? 'Needs operator.admin to manage non-operator roles.'
      : null;
  }
  function missingScopes(wanted) {
    return (wanted || []).filter((sc) => !covers(app.scopes, [sc]));
  }

  function showError(e) {
    errorLine.textContent = e instanceof RequestError ? `${e.message} (${e.code})` : String(e.message || e);
    errorLine.hidden = false;
  }

  async function run(label, fn) {
    errorLine.hidden = true;
    try {
      await fn();
      announce(label);
      app.notify(label);
    } catch (e) {
      showError(e);
      app.notify(`That did not work: ${errorLine.textContent}`, 'error');
    }
    scheduleRefresh(0);
  }

  function pendingCard(p) {
    const paired = data.paired.find((d) => d.deviceId === p.deviceId);
    const kind = requestKind(p, paired);
    const deny = denyReason();
    const missing = missingScopes(p.scopes);
    const approveReason = deny || crossReason(p.deviceId) || roleReason(p.roles || [p.role])
      || (missing.length ? `Needs operator.admin: the request asks for ${missing.join(', ')}, which this session does not hold.` : null);
    const rejectReason = deny || crossReason(p.deviceId);
    const isMe = p.deviceId === app.identity.deviceId;
    return h('article', { class: 'item pending', dataset: { requestId: p.requestId, deviceId: p.deviceId, pairingCode: p.pairingCode || '' }, 'aria-label': `Pairing request from ${nameOf(p)}` },
      h('div', { class: 'item-head' },
        h('div', null,
          h('h3', null, nameOf(p), ' ', h('span', { class: 'badge badge-pending' }, kind), isMe ? h('span', { class: 'badge' }, 'this browser') : null),
          h('p', { class: 'muted meta' }, [p.platform, p.clientMode && `${p.clientId || ''} (${p.clientMode})`, p.remoteIp, `requested ${formatAge(Date.now() - p.ts)}`].filter(Boolean).join(' · '))),
        h('div', { class: 'item-actions' },
          action('approve', 'Approve', approveReason, () => run(`Approved ${nameOf(p)}.`, () => app.client.request('device.pair.approve', { requestId: p.requestId })), 'primary'),
          action('reject', 'Reject', rejectReason, () => run(`Rejected the request from ${nameOf(p)}.`, () => app.client.request('device.pair.reject', { requestId: p.requestId }))))),
      approveReason && !deny ? h('p', { class: 'reason' }, approveReason) : null,
      rejectReason && !deny && rejectReason !== approveReason ? h('p', { class: 'reason' }, rejectReason) : null,
      h('dl', { class: 'facts' },
        p.pairingCode ? [h('dt', null, 'Code'), h('dd', null, h('code', { class: 'pairing-code-inline' }, p.pairingCode))] : null,
        h('dt', null, 'Requests'), h('dd', null, `role ${(p.roles && p.roles.join(', ')) || p.role}`, chips(p.scopes)),
        paired ? [h('dt', null, 'Approved now'), h('dd', null, `role ${(paired.roles || []).join(', ') || '—'}`, chips(paired.scopes, 'chip muted'))] : null,
        h('dt', null, 'Device id'), h('dd', null, idLine(p.deviceId)),
        h('dt', null, 'Request'), h('dd', null, h('code', { class: 'wrap' }, p.requestId)),
        p.browserOrigin ? [h('dt', null, 'Origin'), h('dd', null, p.browserOrigin)] : null));
  }

  function tokenRow(d, t, isMe) {
    const deny = denyReason() || crossReason(d.deviceId) || roleReason([t.role]);
    const missing = t.role === 'operator' ? missingScopes(t.scopes) : [];
    const rotateReason = deny || (missing.length
      ? `Needs ${missing.join(', ')}: this token holds scopes this session does not, so the gateway refuses to rotate it.`
      : null);
    const name = nameOf(d);
    const revoked = !!t.revokedAtMs;
    const rotateMsg = isMe
      ? `Rotate this browser's ${t.role} token? Its current token stops working and this page reconnects; with the gateway token in this tab it gets a new one at once, otherwise you will be asked for the token.`
      : `Rotate the ${t.role} token of ${name}? Its current token stops working and its open sessions are disconnected; it gets a new token the next time it connects with the gateway token.`;
    const revokeMsg = isMe
      ? `Revoke this browser's ${t.role} token? This page is disconnected and this browser has to be approved again before it can reconnect.`
      : `Revoke the ${t.role} token of ${name}? It is disconnected and has to be approved again (clawgate devices approve) before it can reconnect as ${t.role}.`;
    return h('li', { class: 'token' },
      h('div', null,
        h('strong', null, t.role), revoked ? h('span', { class: 'badge badge-revoked' }, 'revoked') : null, ' ',
        chips(t.scopes),
        h('p', { class: 'muted meta' }, [
          `issued ${formatAge(Date.now() - (t.rotatedAtMs || t.createdAtMs))}`,
          t.lastUsedAtMs ? `last used ${formatAge(Date.now() - t.lastUsedAtMs)}` : 'never used',
          revoked ? `revoked ${formatAge(Date.now() - t.revokedAtMs)}` : null,
        ].filter(Boolean).join(' · '))),
      rotateReason && !denyReason() ? h('p', { class: 'reason' }, rotateReason) : null,
      h('div', { class: 'item-actions' },
        action('rotate', 'Rotate', rotateReason, async () => {
          if (await app.confirm({ title: `Rotate ${t.role} token`, message: rotateMsg, ok: 'Rotate token' })) {
            run(`Rotated the ${t.role} token of ${name}.`, () => app.client.request('device.token.rotate', { deviceId: d.deviceId, role: t.role }));
          }
        }, 'secondary', { role: t.role }),
        action('revoke', 'Revoke', deny || (revoked ? 'Already revoked.' : null), async () => {
          if (await app.confirm({ title: `Revoke ${t.role} token`, message: revokeMsg, ok: 'Revoke token' })) {
            run(`Revoked the ${t.role} token of ${name}.`, () => app.client.request('device.token.revoke', { deviceId: d.deviceId, role: t.role }));
          }
        }, 'secondary', { role: t.role })));
  }

  function pairedCard(d) {
    const deny = denyReason() || crossReason(d.deviceId) || (deviceSession() ? roleReason(d.roles) : null);
    const isMe = d.deviceId === app.identity.deviceId;
    const name = nameOf(d);
    const removeMsg = isMe
      ? `Remove this browser (${name})? Removing this browser disconnects it and deletes its device token; it has to be paired again to come back.`
      : `Remove ${name}? It is disconnected, its tokens are deleted, and it has to be paired again before it can reconnect.`;
    return h('article', { class: 'item device', dataset: { deviceId: d.deviceId }, 'aria-label': `Device ${name}` },
      h('div', { class: 'item-head' },
        h('div', null,
          h('h3', null, name, ' ',
            d.connected ? h('span', { class: 'badge badge-connected' }, 'connected') : h('span', { class: 'badge badge-offline' }, 'offline'),
            isMe ? h('span', { class: 'badge' }, 'this browser') : null),
          h('p', { class: 'muted meta' }, [
            d.platform, d.clientId && `${d.clientId}${d.clientMode ? ` (${d.clientMode})` : ''}`,
            d.approvedVia === 'silent' ? 'auto-paired' : d.approvedVia && `approved by ${d.approvedVia}`,
            d.lastSeenAtMs ? `seen ${formatAge(Date.now() - d.lastSeenAtMs)}` : null,
          ].filter(Boolean).join(' · '))),
        h('div', { class: 'item-actions' },
          action('rename', 'Rename', deny, async () => {
            const label = await app.rename(d.operatorLabel || d.displayName || '');
            if (label) run(`Renamed to ${label}.`, () => app.client.request('device.pair.rename', { deviceId: d.deviceId, label }));
          }),
          action('remove', 'Remove', deny, async () => {
            if (await app.confirm({ title: isMe ? 'Remove this browser' : `Remove ${name}`, message: removeMsg, ok: 'Remove device' })) {
              run(`Removed ${name}.`, () => app.client.request('device.pair.remove', { deviceId: d.deviceId }));
            }
          }, 'danger-outline'))),
      h('dl', { class: 'facts' },
        h('dt', null, 'Device id'), h('dd', null, idLine(d.deviceId)),
        h('dt', null, 'Roles'), h('dd', null, (d.roles || []).join(', ') || '—'),
        h('dt', null, 'Scopes'), h('dd', null, chips(d.scopes)),
        h('dt', null, 'Tokens'), h('dd', null, (d.tokens || []).length
          ? h('ul', { class: 'tokens' }, d.tokens.map((t) => tokenRow(d, t, isMe)))
          : h('span', { class: 'muted' }, 'none')),
        d.remoteIp ? [h('dt', null, 'IP'), h('dd', null, d.remoteIp)] : null,
        d.browserOrigin ? [h('dt', null, 'Origin'), h('dd', null, d.browserOrigin)] : null,
        h('dt', null, 'Paired'), h('dd', null, formatTime(d.approvedAtMs || d.createdAtMs)),
        h('dt', null, 'Last seen'), h('dd', null, d.lastSeenAtMs ? `${formatTime(d.lastSeenAtMs)}${d.lastSeenReason ? ` (${d.lastSeenReason})` : ''}` : '—')));
  }

  /** Where keyboard focus is, so a live refresh can put it back. */
  function focusKey() {
    const a = document.activeElement;
    if (!a || !el.contains(a) || !a.dataset || !a.dataset.action) return null;
    const item = a.closest('article');
    return item ? { action: a.dataset.action, role: a.dataset.role, device: item.dataset.deviceId, request: item.dataset.requestId } : null;
  }

  function restoreFocus(key) {
    if (!key) return;
    const item = key.request
      ? el.querySelector(`article.pending[data-request-id="${CSS.escape(key.request)}"]`)
      : el.querySelector(`article.device[data-device-id="${CSS.escape(key.device)}"]`);
    const sel = `[data-action="${key.action}"]${key.role ? `[data-role="${CSS.escape(key.role)}"]` : ''}`;
    const target = item && item.querySelector(sel);
    if (target && !target.disabled) target.focus({ preventScroll: true });
  }

  function render() {
    const focused = focusKey();
    const deny = denyReason();
    scopeNote.hidden = !deny;
    scopeNote.textContent = deny ? 'Read-only: this session lacks operator.pairing, so approve, reject, rename, rotate, revoke and remove are disabled.' : '';
    const pending = [...data.pending].sort((a, b) => (b.ts || 0) - (a.ts || 0));
    replace(pendingSection,
      h('h2', { id: 'pending-title' }, 'Pending approval ', h('span', { class: 'count' }, String(pending.length))),
      pending.length ? pending.map(pendingCard) : h('p', { class: 'muted empty' }, 'No pairing requests are waiting.'));
    const paired = [...data.paired].sort((a, b) => Number(b.connected) - Number(a.connected) || (b.lastSeenAtMs || 0) - (a.lastSeenAtMs || 0));
    const connected = paired.filter((d) => d.connected).length;
    replace(pairedSection,
      h('h2', { id: 'paired-title' }, 'Paired devices ', h('span', { class: 'count' }, String(paired.length))),
      h('p', { class: 'muted' }, `${connected} of ${paired.length} connected`),
      paired.length ? paired.map(pairedCard) : h('p', { class: 'muted empty' }, 'No devices are paired yet.'));
    restoreFocus(focused);
  }

  // Setup codes (admins): mint one for a phone or another device, show its
  // QR code once, list and revoke. The gateway builds the QR matrix; it is
  // drawn here with DOM calls (no markup strings under Trusted Types).
  // The form is built once, so a live refresh never wipes what is typed.
  const setupRole = h('select', { id: 'setup-role', name: 'setup-role' },
    h('option', { value: 'operator' }, 'operator'), h('option', { value: 'node' }, 'node'));
  const setupScopes = h('input', { id: 'setup-scopes', name: 'setup-scopes', type: 'text', value: 'operator.read, operator.write', spellcheck: 'false' });
  const setupLabel = h('input', { id: 'setup-label', name: 'setup-label', type: 'text', maxlength: '64', placeholder: 'e.g. phone' });
  setupRole.addEventListener('change', () => { setupScopes.disabled = setupRole.value === 'node'; });
  const setupForm = h('form', { class: 'setup-form', novalidate: true },
    h('label', { for: 'setup-role' }, 'Role'), setupRole,
    h('label', { for: 'setup-scopes' }, 'Scopes'), setupScopes,
    h('label', { for: 'setup-label' }, 'Label'), setupLabel,
    h('button', { type: 'submit', id: 'setup-create', class: 'primary' }, 'Create setup code'));
  setupForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const params = { role: setupRole.value, gatewayUrl: app.url };
    if (setupRole.value === 'operator') params.scopes = setupScopes.value.split(',').map((x) => x.trim()).filter(Boolean);
    if (setupLabel.value.trim()) params.label = setupLabel.value.trim();
    run('Setup code created.', async () => { created = await app.client.request('device.setup.create', params); });
  });

  // The heading, intro and form are built once and never re-attached: a
  // live refresh replaces only what follows them, so typing in the form
  // (focus, caret, half-typed text) survives it.
  const setupDynamic = h('div', { class: 'setup-dynamic' });
  replace(setupSection,
    h('h2', { id: 'setup-title' }, 'Setup codes'),
    h('p', { class: 'muted' }, 'A setup code pairs one phone or other device once, with exactly the role and scopes chosen here.'),
    setupForm, setupDynamic);

  function renderSetup(codes) {
    setupSection.hidden = !isAdmin();
    if (!isAdmin()) return;
    const shown = created ? (() => {
      const code = h('code', { id: 'setup-code-text', class: 'wrap' }, created.setupCode);
      return h('div', { class: 'setup-result', dataset: { setupId: created.setupId } },
        created.qr ? qrSvg(created.qr, 'Setup code QR') : null,
        h('div', { class: 'id-line' }, code, copyButton(code, 'Copy setup code')),
        h('p', { class: 'muted' }, `Single use, role ${created.role}${created.scopes.length ? ` (${created.scopes.join(', ')})` : ''}, valid until ${formatTime(created.expiresAtMs)}. `
          + 'Scan it in the OpenClaw app or run on the device: clawgate pair --setup-code <code>. It holds the gateway URL and a one-time token, never the gateway token.'));
    })() : null;
    const rows = (codes || []).map((c) => h('li', { class: 'token', dataset: { setupId: c.setupId } },
      h('div', null, h('strong', null, c.label || c.role), ' ', h('span', { class: 'badge' }, c.state), ' ', chips(c.scopes),
        h('p', { class: 'muted meta' }, [`role ${c.role}`, `expires ${formatTime(c.expiresAtMs)}`, c.usedByDeviceId ? `used by ${shortId(c.usedByDeviceId)}` : null].filter(Boolean).join(' · '))),
      h('div', { class: 'item-actions' },
        action('revoke-setup', 'Revoke', c.state === 'live' ? null : `Already ${c.state}.`,
          () => run('Setup code revoked.', () => app.client.request('device.setup.revoke', { setupId: c.setupId }))))));
    replace(setupDynamic, shown,
      rows.length ? h('ul', { class: 'tokens' }, rows) : h('p', { class: 'muted empty' }, 'No setup codes.'));
  }

  async function loadSetup() {
    if (!isAdmin()) {
      renderSetup([]);
      return;
    }
    try {
      const res = await app.client.request('device.setup.list', {});
      renderSetup(res.setupCodes || []);
    } catch (e) {
      showError(e);
    }
  }

  async function load() {
    if (loading) {
      scheduleRefresh(200);
      return;
    }
    if (!app.can(PAIRING)) {
      data = { pending: [], paired: [] };
      render();
      passkeys.render();
      replace(pendingSection, h('h2', { id: 'pending-title' }, 'Pending approval'), h('p', { class: 'muted' }, `Needs ${PAIRING} to list devices.`));
      replace(pairedSection, h('h2', { id: 'paired-title' }, 'Paired devices'), h('p', { class: 'muted' }, `Needs ${PAIRING} to list devices.`));
      return;
    }
    loading = true;
    try {
      const res = await app.client.request('device.pair.list', {});
      data = { pending: res.pending || [], paired: res.paired || [] };
      render();
      await Promise.all([loadSetup(), passkeys.load()]);
    } catch (e) {
      showError(e);
    } finally {
      loading = false;
    }
  }

  function scheduleRefresh(ms = 150) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, ms);
  }

  app.onEvent((ev) => {
    if (ev.event.startsWith('device.pair.') || ev.event.startsWith('passkey.') || ev.event === 'presence') scheduleRefresh();
  });
  ageTimer = setInterval(() => {
    if (!document.querySelector('dialog[open]')) {
      render();
      passkeys.render();
    }
  }, 30000);
  render();
  load();

  return {
    refresh: load,
    destroy() {
      clearTimeout(refreshTimer);
      clearInterval(ageTimer);
    },
  };
}
