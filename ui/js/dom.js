// Tiny DOM helpers. Everything is built with createElement and textContent:
// the page runs under Trusted Types, so no HTML strings ever.

/**
 * h('button', {class: 'x', id: 'y', onclick: fn, disabled: true}, 'text', child)
 * Attributes: `class`, `text`, `on<event>` (listeners), `dataset` (object),
 * booleans (set when true, omitted when false/null), anything else as an
 * attribute string.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
      else if (key === 'text') el.textContent = String(value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Copies text; falls back to selecting it so the user can press Ctrl+C. */
export async function copyText(text, selectEl) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection fallback
  }
  if (selectEl) {
    const range = document.createRange();
    range.selectNodeContents(selectEl);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  return false;
}

/** A copy button for the text of `target` (an element). */
export function copyButton(target, label = 'Copy') {
  const btn = h('button', { type: 'button', class: 'copy', 'aria-label': `${label}: ${target.textContent}` }, 'Copy');
  btn.addEventListener('click', async () => {
    const ok = await copyText(target.textContent, target);
    btn.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    announce(ok ? 'Copied to the clipboard.' : 'Selected. Press Ctrl+C (Cmd+C) to copy.');
    setTimeout(() => { btn.textContent = 'Copy'; }, 1800);
  });
  return btn;
}

/** A command line: `code.next-command` (or a given class/id) plus its copy button. */
export function commandLine(command, opts = {}) {
  const code = h('code', { class: opts.class || 'next-command', id: opts.id }, command);
  return h('div', { class: 'command' }, h('span', { class: 'prompt', 'aria-hidden': 'true' }, '$'), code, copyButton(code, 'Copy command'));
}

/** Says something to screen readers through the polite live region. */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick so repeated messages are read again.
  setTimeout(() => { region.textContent = message; }, 30);
}

export function shortId(id) {
  return id && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id || '';
}

export function formatAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.round(m / 60);
  if (hr < 48) return `${hr} h ago`;
  return `${Math.round(hr / 24)} days ago`;
}

export function formatTime(ms) {
  if (!ms) return '—';
  try {
    return new Date(ms).toLocaleString();
  } catch {
    return String(ms);
  }
}

export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(total / 86400);
  const hr = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return d > 0 ? `${d}d ${pad(hr)}:${pad(m)}:${pad(s)}` : `${pad(hr)}:${pad(m)}:${pad(s)}`;
}
