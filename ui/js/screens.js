// The cards shown before the app: connecting, login, pairing and every
// error. Each has h1#screen-title, p#screen-message, one code.next-command
// with a copy button, and details#raw-error (see ui/README.md).

import { parseSetupCode, PASTED_AS_TOKEN } from './setup_code.js';
import { h, commandLine, copyButton } from './dom.js';
import { entry, commandFrom, fill } from './catalogue.js';
import { passkeySupport, describePasskeyError, PasskeyError, TLS_COMMAND } from './passkeys.js';
import { defaultGatewayUrl } from './storage.js';

const TOKEN_CMD = 'clawgate gateway auth-token --show';

export function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Sets main#app's data-screen and data-code and swaps its content. */
export function mount(main, screen, code, ...children) {
  main.dataset.screen = screen;
  main.dataset.code = code || '';
  main.replaceChildren(...children.filter(Boolean));
}

function brand() {
  return h('div', { class: 'brand' },
    h('img', { src: 'favicon.svg', alt: '', width: '24', height: '24' }),
    h('span', null, 'clawgate'));
}

function rawError(raw) {
  const text = raw ? JSON.stringify(raw, null, 2) : 'No error: nothing has been refused yet.';
  return h('details', { id: 'raw-error', class: 'raw-error' },
    h('summary', null, 'Raw error'),
    h('pre', null, text));
}

function footer(ctx, { change = true, note } = {}) {
  const parts = [`Gateway ${hostOf(ctx.url)}`];
  if (note) parts.push(note);
  else if (ctx.secretKind === 'password') parts.push('password entered');
  else if (ctx.hasSecret) parts.push('secret entered');
  else if (ctx.hasDeviceToken) parts.push('saved browser credentials');
  return h('div', { class: 'card-footer' },
    h('span', { class: 'muted' }, parts.join(' · ')),
    change ? h('button', { type: 'button', class: 'link', id: 'change', onclick: ctx.onChange }, 'Change') : null);
}

function card(...children) {
  return h('section', { class: 'card', 'aria-labelledby': 'screen-title' }, brand(), ...children);
}

function nextStep(label, command) {
  return h('div', { class: 'next' },
    h('p', { class: 'next-label' }, label),
    commandLine(command));
}

/**
 * Text for a code: our own where the CLI wording does not fit a browser,
 * the catalogue otherwise.
 */
export function describe(code, ctx, err) {
  const host = hostOf(ctx.url);
  const details = (err && err.error && err.error.details) || {};
  const cat = entry(code);
  const values = { deviceId: ctx.identity.deviceId, requestId: details.requestId };
  const fallbackCommand = (cat && commandFrom(cat.next, values)) || 'clawgate doctor';
  switch (code) {
    case 'AUTH_TOKEN_MISSING':
    case 'AUTH_REQUIRED':
      return {
        screen: 'login',
        title: 'This gateway needs its token',
        message: `The gateway at ${host} is reachable, but it needs its token (or password) before this browser can connect. Paste it into Gateway secret.`,
        label: 'To print the token, run on the gateway host:',
        command: TOKEN_CMD,
        alt: { label: 'No token configured yet? Create one with:', command: 'clawgate doctor --generate-gateway-token' },
      };
    case 'AUTH_TOKEN_MISMATCH':
      return {
        screen: 'login',
        title: 'That token was not accepted',
        message: `${host} rejected the secret you entered. Check that it is this gateway's current token and try again.`,
        label: 'To print the current token, run on the gateway host:',
        command: TOKEN_CMD,
      };
    case 'AUTH_PASSWORD_MISSING':
      return {
        screen: 'login',
        title: 'This gateway needs its password',
        message: `The gateway at ${host} is reachable, but it is protected by a password. Type it into Gateway secret.`,
        label: 'Forgot it? Set a new one on the gateway host (then restart the gateway):',
        command: 'clawgate config set gateway.auth.password <password>',
      };
    case 'AUTH_PASSWORD_MISMATCH':
      return {
        screen: 'login',
        title: 'That password was not accepted',
        message: `${host} rejected the password you entered. Check it and try again; it is not saved anywhere by this page.`,
        label: 'Forgot it? Set a new one on the gateway host (then restart the gateway):',
        command: 'clawgate config set gateway.auth.password <password>',
      };
    case 'AUTH_DEVICE_TOKEN_MISMATCH':
      return {
        screen: 'login',
        title: 'This browser needs to sign in again',
        message: ctx.hasSecret
          ? `${host} rejected the secret you entered, and this browser's saved device token is out of date too, so it was cleared. Paste the gateway's current token.`
          : `${host} no longer accepts this browser's saved device token: it was rotated or revoked from another session. The stale token was cleared; paste the gateway token to get a fresh one.`,
        label: 'To print the token, run on the gateway host:',
        command: TOKEN_CMD,
        alt: { label: 'Or issue this browser a new device token:', command: `clawgate devices rotate --device ${ctx.identity.deviceId} --role operator` },
      };
    case 'AUTH_TOKEN_NOT_CONFIGURED':
    case 'AUTH_PASSWORD_NOT_CONFIGURED':
      return {
        screen: 'error',
        title: cat ? cat.title : 'The gateway has no secret configured',
        message: code === 'AUTH_TOKEN_NOT_CONFIGURED'
          ? `The gateway at ${host} is in token mode but has no token, so nobody can sign in yet.`
          : `The gateway at ${host} is in password mode but has no password, so nobody can sign in yet.`,
        label: 'On the gateway host, run (then restart the gateway):',
        command: code === 'AUTH_TOKEN_NOT_CONFIGURED' ? 'clawgate doctor --generate-gateway-token' : 'clawgate config set gateway.auth.password <password>',
      };
    case 'AUTH_SCOPE_MISMATCH':
      return {
        screen: 'error',
        title: 'This browser needs more access',
        message: `This browser's device token does not cover what it asked for. Request access to open an approval request on ${host}, then approve it on the gateway host.`,
        label: 'After requesting access, review and approve it on the gateway host:',
        command: 'clawgate devices list',
        requestAccess: true,
      };
    case 'AUTH_RATE_LIMITED':
      return {
        screen: 'login',
        title: 'Too many failed attempts',
        message: `After too many wrong secrets, ${host} is refusing sign-ins from this browser for a while. Check the secret below; this page tries again with it when the countdown ends.`,
        label: 'Meanwhile, get the correct token on the gateway host:',
        command: TOKEN_CMD,
        countdown: true,
      };
    case 'CONTROL_UI_ORIGIN_NOT_ALLOWED':
      return {
        screen: 'error',
        title: 'This address is not allowed',
        message: `The gateway refuses connections from pages opened at ${location.origin}. Open the Control UI from the gateway's own address, or allow this one.`,
        label: 'To allow this address, run on the gateway host (then restart the gateway):',
        command: `clawgate config set gateway.controlUi.allowedOrigins '["${location.origin}"]'`,
      };
    case 'DEVICE_AUTH_SIGNATURE_EXPIRED':
      return {
        screen: 'error',
        title: "This computer's clock is off",
        message: `The gateway refused this browser's signed proof because its time is more than two minutes away from the gateway's clock. Fix the clock on this computer or the gateway host, then retry.`,
        label: 'To check the gateway, run on the gateway host:',
        command: 'clawgate gateway probe',
        retry: true,
      };
    case 'DEVICE_AUTH_NONCE_REQUIRED':
    case 'DEVICE_AUTH_NONCE_MISMATCH':
      return {
        screen: 'error',
        title: cat ? cat.title : 'Device proof refused',
        message: 'The gateway did not accept the challenge this browser signed. This is usually a one-off; retry, and reload the page if it happens again.',
        label: 'To check the gateway, run on the gateway host:',
        command: 'clawgate gateway probe',
        retry: true,
        reload: true,
      };
    case 'DEVICE_AUTH_INVALID':
    case 'DEVICE_AUTH_DEVICE_ID_MISMATCH':
    case 'DEVICE_AUTH_SIGNATURE_INVALID':
    case 'DEVICE_AUTH_PUBLIC_KEY_INVALID':
      return {
        screen: 'error',
        title: "This browser's identity was refused",
        message: `The gateway could not verify this browser's key (${cat ? cat.title.toLowerCase() : code}). Create a new identity for this browser; it will then need to be approved again.`,
        label: 'Afterwards, review the devices on the gateway host:',
        command: 'clawgate devices list',
        resetIdentity: true,
      };
    case 'CONTROL_UI_DEVICE_IDENTITY_REQUIRED':
    case 'DEVICE_IDENTITY_REQUIRED':
      return {
        screen: 'error',
        title: 'This browser could not prove its identity',
        message: 'The gateway needs a signed browser identity, and this page could not present one. Open the Control UI over HTTPS or from the gateway host.',
        label: 'To print the local address of the Control UI, run on the gateway host:',
        command: 'clawgate dashboard --no-open',
      };
    case 'PROTOCOL_MISMATCH':
    case 'CLIENT_VERSION_MISMATCH':
    case 'CONTROL_UI_BUILD_MISMATCH':
      return {
        screen: 'error',
        title: 'This page is out of date',
        message: `The gateway at ${host} speaks a different protocol version than this page. Reload to get the gateway's current Control UI.`,
        label: 'To see the gateway version, run on the gateway host:',
        command: 'clawgate gateway probe',
        reload: true,
      };
    case 'DEVICE_REMOVED':
      return {
        screen: 'error',
        title: 'This browser was removed',
        message: `Someone removed this browser from ${host}'s paired devices, so it was disconnected and its device token deleted. Connect again to ask for a new approval.`,
        label: 'To see the paired devices, run on the gateway host:',
        command: 'clawgate devices list',
        pairAgain: true,
      };
    case 'GATEWAY_UNREACHABLE':
      return {
        screen: 'error',
        title: "Can't reach the gateway",
        message: `Nothing answered at ${ctx.url}. Check that the gateway is running and that this address is right; this page keeps trying.`,
        label: 'To start the gateway, run on the gateway host:',
        command: 'clawgate gateway run',
        unreachable: true,
      };
    default:
      return {
        screen: 'error',
        title: cat ? cat.title : 'The gateway refused the connection',
        message: cat ? cat.meaning : ((err && err.message) || 'The gateway refused the connection.'),
        label: 'Next step, on the gateway host:',
        command: cat ? fill(fallbackCommand, values) : 'clawgate doctor',
        retry: true,
      };
  }
}

/** The login form: #gateway-url, #gateway-secret, #secret-toggle, #connect. */
function loginForm(ctx, lockedReason) {
  const url = h('input', {
    id: 'gateway-url', name: 'gateway-url', type: 'text', inputmode: 'url', autocomplete: 'off',
    spellcheck: 'false', autocapitalize: 'off', value: ctx.url, required: true, 'aria-describedby': 'gateway-url-hint',
  });
  const secret = h('input', {
    id: 'gateway-secret', name: 'gateway-secret', type: 'password', autocomplete: 'off', spellcheck: 'false',
    autocapitalize: 'off', placeholder: 'Paste the token or type the password',
  });
  secret.value = ctx.typedSecret || '';
  const toggle = h('button', { type: 'button', id: 'secret-toggle', class: 'secret-toggle', 'aria-pressed': 'false', 'aria-controls': 'gateway-secret', 'aria-label': 'Show secret' }, 'Show');
  toggle.addEventListener('click', () => {
    const show = secret.type === 'password';
    secret.type = show ? 'text' : 'password';
    toggle.textContent = show ? 'Hide' : 'Show';
    toggle.setAttribute('aria-pressed', String(show));
    toggle.setAttribute('aria-label', show ? 'Hide secret' : 'Show secret');
    secret.focus();
  });
  const urlError = h('p', { id: 'gateway-url-hint', class: 'hint' }, 'Where the gateway listens, e.g. ws://127.0.0.1:18789');
  const submit = h('button', { type: 'submit', id: 'connect', class: 'primary', disabled: !!lockedReason, title: lockedReason }, 'Connect');
  const form = h('form', { class: 'login', novalidate: true },
    h('label', { for: 'gateway-url' }, 'Gateway URL'), url, urlError,
    h('label', { for: 'gateway-secret' }, 'Gateway secret'),
    h('div', { class: 'secret-field' }, secret, toggle),
    submit);
  const secretHint = h('p', { id: 'gateway-secret-hint', class: 'hint', role: 'alert', hidden: true });
  form.insertBefore(secretHint, submit);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (parseSetupCode(secret.value)) {
      // A setup code is a one-time pairing credential for another device,
      // not this gateway's token: explain instead of sending it.
      secretHint.textContent = PASTED_AS_TOKEN;
      secretHint.hidden = false;
      secretHint.classList.add('invalid');
      secret.setAttribute('aria-invalid', 'true');
      secret.focus();
      return;
    }
    secretHint.hidden = true;
    secret.removeAttribute('aria-invalid');
    const ok = ctx.onConnect(url.value, secret.value);
    if (ok === false) {
      urlError.textContent = 'Enter a ws:// or wss:// address, e.g. ws://127.0.0.1:18789';
      urlError.classList.add('invalid');
      url.setAttribute('aria-invalid', 'true');
      url.focus();
    }
  });
  secret.addEventListener('input', () => { ctx.typedSecret = secret.value; });
  return form;
}

/**
 * "Sign in with a passkey" under the login form (docs/passkeys.md):
 * `button#passkey-signin` and `p#passkey-status`, or, where passkeys cannot
 * work, `p#passkey-unavailable[data-reason]` saying why (with
 * `a#passkey-localhost-link` on a loopback IP address).
 */
function passkeyBlock(ctx) {
  const area = h('div', { id: 'passkey-area', class: 'passkey-area' },
    h('p', { class: 'divider', 'aria-hidden': 'true' }, h('span', null, 'or')));
  const support = ctx.url === defaultGatewayUrl()
    ? passkeySupport()
    : { ok: false, reason: 'other-gateway' };
  if (!support.ok) {
    const p = h('p', { id: 'passkey-unavailable', class: 'hint passkey-unavailable', dataset: { reason: support.reason } });
    const children = [];
    if (support.reason === 'ip') {
      children.push(`Passkeys are not available at ${location.host}: browsers refuse IP addresses for passkeys. `,
        h('a', { id: 'passkey-localhost-link', href: support.localhostUrl }, 'Open this page on localhost'),
        ' to sign in with a passkey.');
    } else if (support.reason === 'ip-remote') {
      children.push(`Passkeys are not available at ${location.host}: browsers refuse IP addresses for passkeys. Open the Control UI by the gateway's host name over HTTPS to use one.`);
    } else if (support.reason === 'insecure') {
      children.push('Passkeys need HTTPS, and this page was opened over plain http. To enable TLS, run on the gateway host (then restart the gateway):');
    } else if (support.reason === 'other-gateway') {
      children.push(`Passkeys sign in only to the gateway that serves this page (${location.host}).`);
    } else {
      children.push('This browser has no passkey support. Use a current browser to sign in with a passkey, or enter the gateway token above.');
    }
    p.append(...children.map((c) => (typeof c === 'string' ? document.createTextNode(c) : c)));
    area.append(p);
    if (support.reason === 'insecure') area.append(commandLine(TLS_COMMAND, { class: 'passkey-command', id: 'passkey-tls-command' }));
    return area;
  }
  const status = h('p', { id: 'passkey-status', class: 'status-line passkey-status', role: 'status', hidden: true });
  const next = h('div', { id: 'passkey-next', class: 'next alt', hidden: true });
  const button = h('button', { type: 'button', id: 'passkey-signin', class: 'secondary passkey-signin' }, 'Sign in with a passkey');
  button.addEventListener('click', async () => {
    button.disabled = true;
    next.hidden = true;
    next.replaceChildren();
    status.hidden = false;
    status.dataset.state = 'working';
    status.classList.remove('invalid');
    status.setAttribute('role', 'status');
    status.textContent = 'Starting…';
    try {
      await ctx.onPasskeySignIn((step) => { status.textContent = step; });
      status.textContent = 'Signed in with your passkey. Connecting…';
      status.dataset.state = 'done';
    } catch (e) {
      const err = e instanceof PasskeyError ? e : new PasskeyError({ cause: e });
      const d = describePasskeyError(err);
      status.textContent = d.text;
      status.dataset.state = d.cancelled ? 'cancelled' : 'refused';
      status.dataset.code = err.code;
      if (err.reason) status.dataset.reason = err.reason;
      if (!d.cancelled) {
        status.classList.add('invalid');
        status.setAttribute('role', 'alert');
      }
      if (d.next) {
        next.append(h('p', { class: 'next-label' }, d.next));
        if (d.command) next.append(commandLine(d.command, { class: 'passkey-command' }));
        next.hidden = false;
      }
      button.disabled = false;
    }
  });
  area.append(button, status, next);
  return area;
}

function actionButton(id, label, onclick, primary) {
  return h('button', { type: 'button', id, class: primary ? 'primary' : 'secondary', onclick }, label);
}

/** Login, error, rate-limit and unreachable cards. */
export function authScreen(main, ctx, code, err, extra = {}) {
  const d = describe(code, ctx, err);
  const screen = extra.forceLogin ? 'login' : d.screen;
  const title = extra.title || d.title;
  const message = extra.message || d.message;
  const children = [
    h('h1', { id: 'screen-title', tabindex: '-1' }, title),
    h('p', { id: 'screen-message' }, message),
  ];
  const actions = [];
  if (d.countdown) {
    children.push(h('p', { class: 'status-line', role: 'timer' },
      'Trying again in ', h('strong', { id: 'countdown' }, String(extra.seconds ?? 0)), ' s'));
  }
  if (d.unreachable) {
    children.push(h('p', { class: 'status-line' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      'Next attempt in ', h('strong', { id: 'next-retry' }, String(extra.seconds ?? 0)), ' s'));
    actions.push(actionButton('retry', 'Retry now', ctx.onRetry, true));
  }
  if (d.requestAccess) actions.push(actionButton('request-access', 'Request access', ctx.onRequestAccess, true));
  if (d.pairAgain) actions.push(actionButton('pair-again', 'Connect again', ctx.onRetry, true));
  if (d.resetIdentity) actions.push(actionButton('reset-identity', 'Create a new identity', ctx.onResetIdentity, true));
  if (d.reload) actions.push(actionButton('reload', 'Reload page', () => location.reload(), !d.retry));
  if (d.retry && !d.unreachable) actions.push(actionButton('retry', 'Retry', ctx.onRetry, false));
  if (screen === 'login') {
    children.push(loginForm(ctx, d.countdown ? 'Wait for the countdown: the gateway refuses sign-ins until then.' : null));
    children.push(passkeyBlock(ctx));
  }
  if (actions.length) children.push(h('div', { class: 'actions' }, actions));
  children.push(nextStep(d.label, d.command));
  if (d.alt) {
    const altCode = h('code', { class: 'alt-command' }, d.alt.command);
    children.push(h('div', { class: 'next alt' }, h('p', { class: 'next-label' }, d.alt.label),
      h('div', { class: 'command' }, h('span', { class: 'prompt', 'aria-hidden': 'true' }, '$'), altCode, copyButton(altCode, 'Copy command'))));
  }
  children.push(h('div', { class: 'card-bottom' }, rawError(err ? err.raw() : null)));
  if (screen !== 'login') children.push(footer(ctx));
  mount(main, screen, code, card(...children));
  return d;
}

/** The plain login form, no error (first visit after Change/Disconnect). */
export function loginScreen(main, ctx, message) {
  const children = [
    h('h1', { id: 'screen-title', tabindex: '-1' }, 'Connect to a gateway'),
    h('p', { id: 'screen-message' }, message || 'Enter the gateway address and its token or password.'),
    loginForm(ctx),
    passkeyBlock(ctx),
    nextStep('To print the token, run on the gateway host:', TOKEN_CMD),
    h('div', { class: 'card-bottom' }, rawError(null)),
  ];
  mount(main, 'login', '', card(...children));
}

export function connectingScreen(main, ctx, text) {
  const children = [
    h('h1', { id: 'screen-title', tabindex: '-1' }, `Connecting to ${hostOf(ctx.url)}…`),
    h('p', { id: 'screen-message' }, text || 'Signing in with this browser\'s key.'),
    h('div', { class: 'connecting', 'aria-hidden': 'true' }, h('span', { class: 'spinner large' })),
    footer(ctx),
  ];
  mount(main, 'connecting', '', card(...children));
}

const PAIRING_TITLES = {
  'not-paired': 'Approve this browser',
  'scope-upgrade': 'Approve more access for this browser',
  'role-upgrade': 'Approve this browser again',
  'metadata-upgrade': 'Approve this browser again',
};

/** Pairing: approve command, this device id, what it asks for, Check now. */
export function pairingScreen(main, ctx, err, state) {
  const details = (err.error && err.error.details) || {};
  const requestId = details.requestId || '';
  const reason = details.reason || 'not-paired';
  const host = hostOf(ctx.url);
  const message = {
    'not-paired': `This browser passed the gateway's sign-in at ${host}, but the gateway has not seen it before. A one-time approval on the gateway host finishes pairing.`,
    'scope-upgrade': `This browser is already paired with ${host}, but it asked for more access than was approved. Approve the upgrade on the gateway host.`,
    'role-upgrade': `This browser's access to ${host} was revoked, so it needs to be approved again.`,
    'metadata-upgrade': `This browser's details changed since ${host} approved it, so it needs to be approved again.`,
  }[reason] || `The gateway at ${host} is waiting for someone to approve this browser.`;
  // clawgate's short pairing code (RFC 8628 style): what the operator types.
  const pairingCode = details.pairingCode || '';
  const target = pairingCode || requestId;
  const approve = h('code', { id: 'approve-command', class: 'next-command' }, target ? `clawgate devices approve ${target}` : 'clawgate devices list');
  const codeBox = pairingCode
    ? h('div', { class: 'pairing-code-box' },
      h('p', { class: 'next-label', id: 'pairing-code-label' }, 'Pairing code'),
      h('p', { id: 'pairing-code', class: 'pairing-code', 'aria-labelledby': 'pairing-code-label' }, pairingCode),
      h('p', { class: 'muted' }, 'The gateway\'s Devices page and clawgate devices list show the same code.'))
    : null;
  const deviceId = h('code', { id: 'pairing-device-id', class: 'wrap' }, ctx.identity.deviceId);
  const scopes = details.requestedScopes || [];
  const approved = details.approvedScopes;
  const asks = h('dl', { class: 'facts' },
    h('dt', null, 'This browser'), h('dd', null, h('div', { class: 'id-line' }, deviceId, copyButton(deviceId, 'Copy device id'))),
    h('dt', null, 'Asks for'), h('dd', null,
      `role ${details.requestedRole || 'operator'}`,
      h('ul', { class: 'chips' }, scopes.map((s) => h('li', { class: 'chip' }, s)))),
    approved && approved.length ? [h('dt', null, 'Approved now'), h('dd', null, h('ul', { class: 'chips' }, approved.map((s) => h('li', { class: 'chip muted' }, s))))] : null,
    requestId ? [h('dt', null, 'Request'), h('dd', null, h('code', { class: 'wrap', id: 'pairing-request-id' }, requestId))] : null);
  const status = h('p', { class: 'status-line', id: 'pairing-status', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    state.checking ? 'Checking…' : 'Waiting for approval… this page connects on its own once the request is approved.');
  const children = [
    h('div', { class: 'shield', 'aria-hidden': 'true' }),
    h('h1', { id: 'screen-title', tabindex: '-1' }, PAIRING_TITLES[reason] || 'Approve this browser'),
    h('p', { id: 'screen-message' }, message),
    codeBox,
    h('div', { class: 'next' },
      h('p', { class: 'next-label' }, 'Run on the gateway host'),
      h('div', { class: 'command' }, h('span', { class: 'prompt', 'aria-hidden': 'true' }, '$'), approve, copyButton(approve, 'Copy command'))),
    state.superseded ? h('p', { class: 'notice' }, 'The earlier request was rejected or expired, so a new one was opened. Use the new command above.') : null,
    asks,
    status,
    h('div', { class: 'actions' }, actionButton('check-now', 'Check now', ctx.onCheckNow, false)),
    h('div', { class: 'card-bottom' }, rawError(err.raw())),
    footer(ctx),
  ];
  mount(main, 'pairing', 'PAIRING_REQUIRED', card(...children));
}
