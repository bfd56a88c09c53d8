// The Passkeys section of the Devices page (docs/passkeys.md): the passkeys
// registered on this gateway, a form that registers a new one in this
// browser, and Remove per passkey. Shown only to sessions holding
// operator.pairing (what all four passkey.* methods need).

import { h, replace, formatAge, formatTime, shortId, announce } from '../dom.js';
import { RequestError } from '../gateway.js';
import { METHOD_SCOPES } from '../protocol.js';
import { passkeySupport, registerPasskey, PasskeyError, describePasskeyError, TLS_COMMAND } from '../passkeys.js';

export const PASSKEY_SCOPE = METHOD_SCOPES['passkey.list'] || 'operator.pairing';

function chips(list) {
  if (!list || !list.length) return h('span', { class: 'muted' }, 'none');
  return h('ul', { class: 'chips' }, list.map((s) => h('li', { class: 'chip' }, s)));
}

/** Why this page cannot register a passkey, or null. */
function unavailableReason() {
  const s = passkeySupport();
  if (s.ok) return null;
  if (s.reason === 'ip') return `Browsers refuse IP addresses for passkeys: open this page on localhost (${s.localhostUrl}) to register one.`;
  if (s.reason === 'ip-remote') return 'Browsers refuse IP addresses for passkeys: open the Control UI by the gateway\'s host name over HTTPS to register one.';
  if (s.reason === 'insecure') return `Passkeys need HTTPS; this page was opened over plain http. Enable TLS on the gateway host: ${TLS_COMMAND}`;
  return 'This browser has no passkey support.';
}

/** Builds the section; returns {el, load, render}. `app` is the shell's page API. */
export function passkeyPanel(app) {
  const section = h('section', { id: 'passkeys', class: 'panel', 'aria-labelledby': 'passkeys-title', hidden: true });
  const errorLine = h('p', { id: 'passkey-error', class: 'error-line', role: 'alert', hidden: true });
  const status = h('p', { id: 'passkey-register-status', class: 'status-line', role: 'status', hidden: true });
  const list = h('div', { id: 'passkey-list', class: 'passkey-list' });
  let passkeys = [];
  let loading = false;
  let busy = false;

  // The form is built once, so a refresh never wipes what is typed.
  const label = h('input', { id: 'passkey-label', name: 'passkey-label', type: 'text', maxlength: '64', placeholder: 'e.g. laptop', autocomplete: 'off', spellcheck: 'false' });
  const scopes = h('input', { id: 'passkey-scopes', name: 'passkey-scopes', type: 'text', spellcheck: 'false', value: app.scopes.join(', '), 'aria-describedby': 'passkey-scopes-hint' });
  const reason = unavailableReason();
  const submit = h('button', { type: 'submit', id: 'passkey-register', class: 'primary', disabled: !!reason, title: reason }, 'Register a passkey');
  const form = h('form', { class: 'setup-form passkey-form', novalidate: true },
    h('label', { for: 'passkey-label' }, 'Label'), label,
    h('label', { for: 'passkey-scopes' }, 'Scopes'), scopes,
    h('p', { id: 'passkey-scopes-hint', class: 'muted hint' }, 'What a browser that signs in with this passkey may do: at most this session\'s own scopes.'),
    submit);
  const unavailable = reason ? h('p', { id: 'passkey-register-unavailable', class: 'reason' }, reason) : null;

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = false;
  }

  function errorText(e) {
    if (e instanceof RequestError) return `${e.message} (${e.code})`;
    if (e instanceof PasskeyError) return describePasskeyError(e).text;
    return String((e && e.message) || e);
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy || reason) return;
    errorLine.hidden = true;
    const name = label.value.trim();
    if (!name || name.length > 64) {
      showError('Give the passkey a label of 1 to 64 characters.');
      label.setAttribute('aria-invalid', 'true');
      label.focus();
      return;
    }
    label.removeAttribute('aria-invalid');
    const wanted = scopes.value.split(',').map((x) => x.trim()).filter(Boolean);
    busy = true;
    submit.disabled = true;
    status.hidden = false;
    status.textContent = 'Follow your browser\'s prompt to create the passkey…';
    try {
      const pk = await registerPasskey(app.client, { label: name, scopes: wanted.length ? wanted : undefined });
      status.textContent = `Passkey "${(pk && pk.label) || name}" registered.`;
      announce(status.textContent);
      app.notify(status.textContent);
      label.value = '';
    } catch (e) {
      status.hidden = true;
      if (e instanceof PasskeyError && e.cancelled) {
        status.hidden = false;
        // Browsers also say NotAllowedError when the authenticator cannot
        // meet what the gateway asks for (a resident key with user verification).
        status.textContent = 'Registration cancelled: the prompt was closed, or this authenticator cannot create the passkey the gateway asks for (a discoverable credential with user verification).';
      } else if (e instanceof PasskeyError && e.cause && e.cause.name === 'InvalidStateError') {
        showError('This authenticator already holds a passkey for this gateway.');
      } else {
        showError(errorText(e));
      }
    } finally {
      busy = false;
      submit.disabled = false;
    }
    load();
  });

  function row(pk) {
    const flagged = !!pk.flaggedAtMs;
    const item = h('article', { class: ['item', 'passkey', flagged && 'flagged'], dataset: { passkeyId: pk.id }, 'aria-label': `Passkey ${pk.label}` },
      h('div', { class: 'item-head' },
        h('div', null,
          h('h3', { class: 'passkey-name' }, pk.label || shortId(pk.id), ' ',
            flagged ? h('span', { class: 'badge badge-revoked' }, 'flagged') : null),
          h('p', { class: 'muted meta' }, [
            `RP ${pk.rpId}`,
            `created ${formatAge(Date.now() - pk.createdAtMs)}`,
            pk.lastUsedAtMs ? `last used ${formatAge(Date.now() - pk.lastUsedAtMs)}` : 'never used',
          ].join(' · '))),
        h('div', { class: 'item-actions' },
          h('button', { type: 'button', class: 'danger-outline', dataset: { action: 'remove-passkey' }, onclick: () => remove(pk) }, 'Remove'))),
      flagged ? h('p', { class: 'reason passkey-flag', role: 'note' },
        `Flagged ${formatTime(pk.flaggedAtMs)}: ${pk.flaggedReason || 'the gateway saw something wrong with this passkey'}.`
        + (/sign.?count/i.test(pk.flaggedReason || '') ? ' Its counter went backwards, so the authenticator may have been cloned: remove this passkey.' : '')) : null,
      h('dl', { class: 'facts' },
        h('dt', null, 'Scopes'), h('dd', { class: 'passkey-scopes' }, chips(pk.scopes)),
        h('dt', null, 'RP id'), h('dd', { class: 'passkey-rp' }, pk.rpId || '—'),
        h('dt', null, 'Created'), h('dd', null, `${formatTime(pk.createdAtMs)}${pk.createdBy ? ` by ${pk.createdBy === 'shared-secret' ? 'the shared token' : shortId(pk.createdBy)}` : ''}`),
        h('dt', null, 'Last used'), h('dd', { class: 'passkey-last-used' }, pk.lastUsedAtMs ? formatTime(pk.lastUsedAtMs) : 'never'),
        h('dt', null, 'Id'), h('dd', null, h('code', { class: 'wrap' }, pk.id))));
    return item;
  }

  async function remove(pk) {
    const ok = await app.confirm({
      title: `Remove passkey ${pk.label}`,
      message: `Remove the passkey "${pk.label}"? It can no longer sign in to this gateway. Browsers that already signed in with it keep their device tokens; revoke or remove those devices separately.`,
      ok: 'Remove passkey',
    });
    if (!ok) return;
    errorLine.hidden = true;
    status.hidden = true;
    try {
      await app.client.request('passkey.remove', { id: pk.id });
      app.notify(`Removed the passkey "${pk.label}".`);
    } catch (e) {
      showError(errorText(e));
    }
    load();
  }

  function render() {
    const visible = app.can(PASSKEY_SCOPE);
    section.hidden = !visible;
    if (!visible) return;
    replace(list,
      passkeys.length
        ? passkeys.map(row)
        : h('p', { class: 'muted empty' }, 'No passkeys yet. Register one to sign in from a browser without the gateway token.'));
  }

  replace(section,
    h('h2', { id: 'passkeys-title' }, 'Passkeys'),
    h('p', { class: 'muted' }, 'A browser without the gateway token can sign in with a passkey: it is approved for the operator role with exactly the passkey\'s scopes, and never sees the token.'),
    unavailable, form, status, errorLine, list);

  async function load() {
    render();
    if (!app.can(PASSKEY_SCOPE)) return;
    if (loading) return;
    loading = true;
    try {
      const res = await app.client.request('passkey.list', {});
      passkeys = (res && res.passkeys) || [];
      render();
    } catch (e) {
      showError(errorText(e));
    } finally {
      loading = false;
    }
  }

  return { el: section, load, render };
}
