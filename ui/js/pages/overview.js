// Overview: gateway version, uptime, auth mode, connected clients, pending
// approvals, and what this session may do.

import { h, replace, formatDuration, formatAge } from '../dom.js';
import { METHOD_SCOPES } from '../protocol.js';

// The scopes the page's requests need.
const READ = METHOD_SCOPES.status;
const PAIRING = METHOD_SCOPES['device.pair.list'];
const WANTED = [READ, PAIRING, 'operator.admin'];

function stat(id, label) {
  const value = h('dd', { id, class: 'stat-value' }, '—');
  const note = h('p', { class: 'stat-note muted' });
  return { el: h('div', { class: 'stat' }, h('dt', null, label), value, note), value, note };
}

export function mount(el, app) {
  let uptimeBase = null; // [uptimeMs, at Date.now()]
  let refreshTimer = null;
  const version = stat('ov-version', 'Gateway version');
  const uptime = stat('ov-uptime', 'Uptime');
  const authMode = stat('ov-auth-mode', 'Auth mode');
  const clients = stat('ov-clients', 'Connected clients');
  const pending = stat('ov-pending', 'Pending approvals');
  const session = h('div', { class: 'panel', 'aria-labelledby': 'session-title' });
  const presenceBody = h('tbody');
  const presenceTable = h('table', { class: 'table', id: 'presence-table' },
    h('caption', { class: 'visually-hidden' }, 'Connected clients'),
    h('thead', null, h('tr', null, ['Client', 'Mode', 'Platform', 'Version', 'Connected'].map((t) => h('th', { scope: 'col' }, t)))),
    presenceBody);

  replace(el,
    h('h1', { class: 'page-title' }, 'Overview'),
    h('dl', { class: 'stats' }, version.el, uptime.el, authMode.el, clients.el, pending.el),
    session,
    h('section', { class: 'panel', 'aria-labelledby': 'presence-title' },
      h('h2', { id: 'presence-title' }, 'Connected clients'),
      h('div', { class: 'table-wrap' }, presenceTable)));

  const tick = setInterval(() => {
    if (uptimeBase) uptime.value.textContent = formatDuration(uptimeBase[0] + (Date.now() - uptimeBase[1]));
  }, 1000);

  function renderSession() {
    const hello = app.hello || {};
    const auth = hello.auth || {};
    const scopes = auth.scopes || [];
    const missing = WANTED.filter((s) => !app.can(s));
    const method = { token: 'gateway token', password: 'gateway password', 'device-token': "this browser's device token", none: 'no authentication' }[auth.method] || auth.method || '—';
    replace(session,
      h('h2', { id: 'session-title' }, 'This session'),
      h('dl', { class: 'facts' },
        h('dt', null, 'Signed in with'), h('dd', null, method),
        h('dt', null, 'Role'), h('dd', null, auth.role || 'operator'),
        h('dt', null, 'Scopes'), h('dd', null, scopes.length
          ? h('ul', { class: 'chips' }, scopes.map((s) => h('li', { class: 'chip' }, s)))
          : h('span', { class: 'muted' }, 'none'))),
      missing.length && !app.can('operator.admin')
        ? h('div', { class: 'limited' },
          h('p', null, `Limited access: this session lacks ${missing.filter((s) => s !== 'operator.admin').join(', ') || 'operator.admin'}, so some actions are disabled.`),
          h('button', { type: 'button', id: 'request-more-access', class: 'secondary', onclick: () => app.requestAccess() }, 'Request access'))
        : null);
  }

  function renderPresence() {
    const list = app.presence.list.filter((p) => p && p.mode !== 'gateway');
    clients.value.textContent = app.can(READ) ? String(list.length) : '—';
    clients.note.textContent = app.can(READ) ? '' : `Needs ${READ}`;
    if (!list.length) {
      replace(presenceBody, h('tr', null, h('td', { colspan: '5', class: 'muted' }, app.can(READ) ? 'No other clients are connected.' : `Needs ${READ} to list clients.`)));
      return;
    }
    replace(presenceBody, list.map((p) => h('tr', null,
      h('td', null, p.host || p.clientId || '—', p.deviceId === app.identity.deviceId ? h('span', { class: 'badge' }, 'this browser') : null),
      h('td', null, p.mode || '—'),
      h('td', null, p.platform || '—'),
      h('td', null, p.version || '—'),
      h('td', null, formatAge(Date.now() - (p.onlineSince || p.ts))))));
  }

  async function loadStatus() {
    const snapshot = (app.hello && app.hello.snapshot) || {};
    authMode.value.textContent = snapshot.authMode || '—';
    if (snapshot.uptimeMs !== undefined) uptimeBase = [snapshot.uptimeMs, Date.now()];
    if (!app.can(READ)) {
      version.value.textContent = '—';
      version.note.textContent = `Needs ${READ}`;
    } else {
      try {
        const status = await app.client.request('status', {});
        const gw = (status && status.gateway) || {};
        version.value.textContent = gw.version || status.runtimeVersion || '—';
        version.note.textContent = gw.implementation ? `${gw.implementation}` : '';
        if (gw.authMode) authMode.value.textContent = gw.authMode;
        if (gw.uptimeMs !== undefined) uptimeBase = [gw.uptimeMs, Date.now()];
      } catch (e) {
        version.note.textContent = e.message;
      }
    }
    if (uptimeBase) uptime.value.textContent = formatDuration(uptimeBase[0] + (Date.now() - uptimeBase[1]));
  }

  async function loadPending() {
    if (!app.can(PAIRING)) {
      pending.value.textContent = '—';
      pending.note.textContent = `Needs ${PAIRING}`;
      return;
    }
    try {
      const list = await app.client.request('device.pair.list', {});
      const n = (list.pending || []).length;
      pending.value.textContent = String(n);
      replace(pending.note, n ? h('a', { href: 'devices', onclick: (ev) => { ev.preventDefault(); app.navigate('devices', true); } }, 'Review on Devices') : '');
    } catch (e) {
      pending.note.textContent = e.message;
    }
  }

  function refresh() {
    renderSession();
    renderPresence();
    loadStatus();
    loadPending();
  }

  app.onEvent((ev) => {
    if (ev.event === 'presence') renderPresence();
    if (ev.event.startsWith('device.pair.')) {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(loadPending, 150);
    }
  });
  refresh();

  return {
    refresh,
    destroy() {
      clearInterval(tick);
      clearTimeout(refreshTimer);
    },
  };
}
