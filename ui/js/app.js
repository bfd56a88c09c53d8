// The connected shell: header (gateway host, connection state, this
// device, disconnect), navigation, notices, and the current page.

import { h, replace, copyButton, announce } from './dom.js';
import { hasScope } from './gateway.js';
import { hostOf } from './screens.js';
import * as overview from './pages/overview.js';
import * as devices from './pages/devices.js';
import * as audit from './pages/audit.js';

const PAGES = { overview, devices, audit };
const ROUTES = { overview: '', devices: 'devices', audit: 'audit' };

function basePath() {
  return new URL(document.baseURI).pathname;
}

export function currentRoute() {
  const base = basePath();
  let path = location.pathname;
  if (path.startsWith(base)) path = path.slice(base.length);
  else if (`${path}/` === base) path = '';
  path = path.replace(/\/+$/, '');
  return Object.keys(ROUTES).find((k) => ROUTES[k] === path) || 'overview';
}

/** Opens dialog#confirm; resolves true when confirmed. */
export function confirmDialog({ title, message, ok = 'Confirm', danger = true }) {
  const dialog = document.getElementById('confirm');
  const okBtn = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-message').textContent = message;
  okBtn.textContent = ok;
  okBtn.className = danger ? 'danger' : 'primary';
  return new Promise((resolve) => {
    const done = (value) => {
      okBtn.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onOk = () => done(true);
    const onCancel = (ev) => { if (ev) ev.preventDefault(); done(false); };
    okBtn.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    cancel.focus();
  });
}

/** Opens dialog#rename; resolves with the new name or null. */
export function renameDialog(current) {
  const dialog = document.getElementById('rename');
  // The field exists only while the dialog is open.
  const input = h('input', { id: 'rename-input', type: 'text', maxlength: '64', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'rename-error' });
  document.getElementById('rename-field').replaceChildren(input);
  const okBtn = document.getElementById('rename-ok');
  const cancel = document.getElementById('rename-cancel');
  const error = document.getElementById('rename-error');
  input.value = current || '';
  error.textContent = '';
  return new Promise((resolve) => {
    const done = (value) => {
      okBtn.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      input.removeEventListener('keydown', onKey);
      if (dialog.open) dialog.close();
      input.remove();
      resolve(value);
    };
    const onOk = () => {
      const name = input.value.trim();
      if (!name || name.length > 64) {
        error.textContent = 'Use 1 to 64 characters.';
        input.focus();
        return;
      }
      done(name);
    };
    const onCancel = (ev) => { if (ev) ev.preventDefault(); done(null); };
    const onKey = (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); onOk(); } };
    okBtn.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    input.addEventListener('keydown', onKey);
    dialog.showModal();
    input.select();
  });
}

export function createApp(main, { client, identity, url, onDisconnect, onRequestAccess }) {
  let hello = null;
  let page = null;
  let route = currentRoute();
  let noticeTimer = null;
  let countdown = null;
  const presence = { list: [] };
  const eventListeners = new Set();

  const status = h('span', { id: 'conn-status', class: 'pill', 'data-state': 'connected', role: 'status' }, 'Connected');
  const deviceId = h('code', { id: 'this-device-id', class: 'ellipsis', title: identity.deviceId }, identity.deviceId);
  const navLinks = Object.keys(ROUTES).map((name) => h('a', {
    href: new URL(ROUTES[name] || './', document.baseURI).pathname,
    dataset: { nav: name },
    onclick: (ev) => {
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      navigate(name, true);
    },
  }, { overview: 'Overview', devices: 'Devices', audit: 'Audit' }[name]));
  const banner = h('div', { class: 'banner', id: 'conn-banner', hidden: true, role: 'status' });
  const notice = h('div', { class: 'notice-bar', id: 'notice', hidden: true, role: 'status' });
  const pageEl = h('div', { class: 'page', id: 'page', tabindex: '-1' });

  const shell = h('div', { class: 'shell' },
    h('header', { class: 'topbar' },
      h('div', { class: 'brand' }, h('img', { src: 'favicon.svg', alt: '', width: '22', height: '22' }), h('span', null, 'clawgate')),
      h('div', { class: 'gateway-host' }, h('span', { class: 'muted' }, 'Gateway '), h('strong', null, hostOf(url))),
      status,
      h('div', { class: 'this-device' }, h('span', { class: 'muted' }, 'This browser '), deviceId, copyButton(deviceId, 'Copy this device id')),
      h('button', { type: 'button', id: 'disconnect', class: 'secondary', onclick: () => onDisconnect() }, 'Disconnect')),
    h('nav', { class: 'sidebar', 'aria-label': 'Sections' }, h('ul', null, navLinks.map((a) => h('li', null, a)))),
    h('div', { class: 'content' }, banner, notice, pageEl));

  main.dataset.screen = 'app';
  main.dataset.code = '';
  main.replaceChildren(shell);

  const api = {
    client,
    identity,
    url,
    presence,
    get hello() { return hello; },
    get scopes() { return (hello && hello.auth && hello.auth.scopes) || []; },
    can: (scope) => hasScope((hello && hello.auth && hello.auth.scopes) || [], scope),
    onEvent(fn) { eventListeners.add(fn); return () => eventListeners.delete(fn); },
    notify,
    confirm: confirmDialog,
    rename: renameDialog,
    requestAccess: onRequestAccess,
    navigate,
  };

  function mountPage() {
    if (page && page.destroy) page.destroy();
    eventListeners.clear();
    for (const a of navLinks) {
      if (a.dataset.nav === route) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    replace(pageEl);
    page = PAGES[route].mount(pageEl, api);
    document.title = `${{ overview: 'Overview', devices: 'Devices', audit: 'Audit' }[route]} · clawgate`;
  }

  function navigate(name, push) {
    route = name;
    if (push) history.pushState(null, '', new URL(ROUTES[name] || './', document.baseURI).pathname);
    mountPage();
    pageEl.focus({ preventScroll: true });
  }

  const onPop = () => {
    const next = currentRoute();
    if (next !== route) {
      route = next;
      mountPage();
    }
  };
  window.addEventListener('popstate', onPop);

  function notify(text, kind = 'info') {
    notice.dataset.kind = kind;
    notice.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    notice.textContent = text;
    notice.hidden = false;
    announce(text);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
  }

  return {
    setHello(next) {
      const first = !hello;
      hello = next;
      presence.list = (next.snapshot && next.snapshot.presence) || [];
      this.setConnection('connected');
      if (first) mountPage();
      else if (page && page.refresh) page.refresh();
    },
    setConnection(state, reason, at) {
      clearInterval(countdown);
      status.dataset.state = state;
      if (state === 'connected') {
        status.textContent = 'Connected';
        banner.hidden = true;
        return;
      }
      status.textContent = state === 'connecting' ? 'Reconnecting…' : 'Disconnected';
      banner.hidden = false;
      if (state === 'retrying' && at) {
        const update = () => {
          const left = Math.max(0, Math.ceil((at - Date.now()) / 1000));
          banner.textContent = `Connection lost. Reconnecting in ${left} s…`;
        };
        update();
        countdown = setInterval(update, 1000);
      } else {
        banner.textContent = reason ? `Connection lost (${reason}). Reconnecting…` : 'Connection lost. Reconnecting…';
      }
    },
    onEvent(ev) {
      if (ev.event === 'presence' && ev.payload && Array.isArray(ev.payload.presence)) presence.list = ev.payload.presence;
      for (const fn of [...eventListeners]) fn(ev);
    },
    notify,
    destroy() {
      clearInterval(countdown);
      clearTimeout(noticeTimer);
      window.removeEventListener('popstate', onPop);
      if (page && page.destroy) page.destroy();
      page = null;
      eventListeners.clear();
    },
  };
}
