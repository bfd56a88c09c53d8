// Audit: audit.list with filters (action, device id, time range) and
// "Load more" through the cursor.

import { h, replace, shortId, formatTime } from '../dom.js';
import { METHOD_SCOPES } from '../protocol.js';

const AUDIT = METHOD_SCOPES['audit.list'];

const ACTIONS = [
  'pairing.requested', 'pairing.approved', 'pairing.silent_approved', 'pairing.rejected', 'pairing.superseded',
  'pairing.updated', 'pairing.code_unknown', 'pairing.code_limited',
  'device.renamed', 'device.removed', 'token.rotated', 'token.revoked',
  'auth.failure', 'auth.lockout', 'auth.secret_changed', 'auth.attack_started', 'auth.attack_ended',
  'setup_code.created', 'setup_code.redeemed', 'setup_code.rejected', 'setup_code.revoked',
  'passkey.registered', 'passkey.removed', 'passkey.signin', 'passkey.refused',
  'upstream.admin_call',
];
const PAGE = 50;

function toMs(value) {
  if (!value) return undefined;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

function summary(details) {
  if (!details || typeof details !== 'object') return '';
  return Object.entries(details)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`)
    .join(' · ');
}

function actorText(actor) {
  if (!actor || typeof actor !== 'object') return '—';
  const parts = [];
  if (actor.deviceId) parts.push(`device ${shortId(actor.deviceId)}`);
  if (actor.clientId) parts.push(actor.clientId);
  if (actor.ip) parts.push(actor.ip);
  if (!parts.length && actor.kind) parts.push(actor.kind);
  return parts.join(' · ') || '—';
}

export function mount(el, app) {
  let cursor = null;
  let query = {};
  let busy = false;
  const action = h('input', { id: 'audit-action', type: 'text', list: 'audit-actions', placeholder: 'any action', autocomplete: 'off', spellcheck: 'false' });
  const device = h('input', { id: 'audit-device', type: 'text', placeholder: 'any device id', autocomplete: 'off', spellcheck: 'false' });
  const since = h('input', { id: 'audit-since', type: 'datetime-local' });
  const until = h('input', { id: 'audit-until', type: 'datetime-local' });
  const apply = h('button', { type: 'submit', id: 'audit-apply', class: 'primary' }, 'Apply');
  const reset = h('button', { type: 'button', id: 'audit-reset', class: 'secondary' }, 'Clear');
  const tbody = h('tbody');
  const more = h('button', { type: 'button', id: 'audit-more', class: 'secondary', hidden: true }, 'Load more');
  const info = h('p', { class: 'muted', id: 'audit-info', role: 'status' });
  const deny = app.can(AUDIT) ? null : `Needs ${AUDIT}: the audit log is admin-only.`;

  const form = h('form', { class: 'filters', 'aria-label': 'Audit filters', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'audit-action' }, 'Action'), action,
      h('datalist', { id: 'audit-actions' }, ACTIONS.map((a) => h('option', { value: a })))),
    h('div', { class: 'field' }, h('label', { for: 'audit-device' }, 'Device id'), device),
    h('div', { class: 'field' }, h('label', { for: 'audit-since' }, 'From'), since),
    h('div', { class: 'field' }, h('label', { for: 'audit-until' }, 'Until'), until),
    h('div', { class: 'field buttons' }, apply, reset));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); search(); });
  reset.addEventListener('click', () => {
    action.value = device.value = since.value = until.value = '';
    search();
  });
  more.addEventListener('click', () => load(false));
  if (deny) for (const c of [action, device, since, until, apply, reset]) { c.disabled = true; c.title = deny; }

  replace(el,
    h('h1', { class: 'page-title' }, 'Audit'),
    h('p', { class: 'page-lead muted' }, 'Everything that changed who may connect: pairing decisions, token rotations and revocations, removals and failed sign-ins.'),
    deny ? h('p', { class: 'scope-reason' }, deny) : null,
    form,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'table', id: 'audit-table' },
        h('caption', { class: 'visually-hidden' }, 'Audit log entries'),
        h('thead', null, h('tr', null, ['#', 'Time', 'Action', 'Device', 'Actor', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
    info, more);

  function row(e) {
    const deviceCell = e.deviceId
      ? h('button', { type: 'button', class: 'link mono', title: `Show only ${e.deviceId}`, onclick: () => { device.value = e.deviceId; search(); } }, shortId(e.deviceId))
      : '—';
    return h('tr', { dataset: { seq: String(e.seq) } },
      h('td', { class: 'mono' }, String(e.seq)),
      h('td', { class: 'nowrap' }, formatTime(e.ts)),
      h('td', null, h('span', { class: `action action-${String(e.action).split('.')[0]}` }, e.action)),
      h('td', null, deviceCell),
      h('td', null, actorText(e.actor)),
      h('td', { class: 'details-cell' }, summary(e.details)));
  }

  async function load(fresh) {
    if (busy || deny) return;
    busy = true;
    more.disabled = true;
    info.textContent = 'Loading…';
    try {
      const params = { ...query, limit: PAGE };
      if (!fresh && cursor !== null) params.cursor = cursor;
      const res = await app.client.request('audit.list', params);
      const entries = res.entries || [];
      if (fresh) replace(tbody);
      for (const e of entries) tbody.appendChild(row(e));
      cursor = res.nextCursor ?? null;
      more.hidden = cursor === null;
      const n = tbody.children.length;
      info.textContent = n ? `${n} entr${n === 1 ? 'y' : 'ies'}${cursor === null ? '' : ' so far'}.` : 'No entries match these filters.';
    } catch (e) {
      info.textContent = `Could not load the audit log: ${e.message}`;
    } finally {
      busy = false;
      more.disabled = false;
    }
  }

  function search() {
    query = {};
    if (action.value.trim()) query.action = action.value.trim();
    if (device.value.trim()) query.deviceId = device.value.trim();
    const s = toMs(since.value);
    const u = toMs(until.value);
    if (s !== undefined) query.sinceMs = s;
    if (u !== undefined) query.untilMs = u;
    cursor = null;
    load(true);
  }

  if (deny) info.textContent = deny;
  else search();

  return {
    refresh() { if (!deny) search(); },
    destroy() {},
  };
}
