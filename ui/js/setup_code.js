// Setup codes (the reference's format): base64url without padding of the
// JSON {url, bootstrapToken, expiresAtMs?}, optionally as oc-pair://<code>.
// The login form uses this to recognise a setup code pasted where the
// gateway token belongs (before anything is sent); the Devices page draws a
// code's QR matrix (rows of '1'/'0' from device.setup.create) as SVG built
// with DOM calls, never from an HTML or SVG string.

const PREFIX = 'oc-pair://';
const MAX_LEN = 4096;

/** The decoded setup code, or null when `text` is not one. */
export function parseSetupCode(text) {
  let code = String(text || '').trim();
  if (code.toLowerCase().startsWith(PREFIX)) code = code.slice(PREFIX.length);
  if (!code || code.length > MAX_LEN || !/^[A-Za-z0-9_-]+$/.test(code)) return null;
  try {
    const b64 = code.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    const ok = payload && typeof payload === 'object'
      && typeof payload.url === 'string' && /^wss?:\/\//.test(payload.url)
      && typeof payload.bootstrapToken === 'string' && payload.bootstrapToken.trim() !== '';
    return ok ? payload : null;
  } catch {
    return null;
  }
}

export const PASTED_AS_TOKEN = 'This is a setup code, not the gateway token: it pairs one device once and is not a login. '
  + 'Redeem it on the device that should be paired (scan its QR code in the OpenClaw app, or run there: clawgate pair --setup-code <code>). '
  + 'To sign in here, paste the gateway token (on the gateway host: clawgate gateway auth-token --show).';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An <svg> of the QR rows (dark modules as rects, a 4-module quiet zone). */
export function qrSvg(rows, label) {
  const n = rows.length;
  const size = n + 8;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('width', String(size * 6));
  svg.setAttribute('height', String(size * 6));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('class', 'qr');
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(SVG_NS, 'rect');
  bg.setAttribute('width', String(size));
  bg.setAttribute('height', String(size));
  bg.setAttribute('fill', '#fff');
  svg.appendChild(bg);
  rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x += 1) {
      if (row[x] !== '1') continue;
      const r = document.createElementNS(SVG_NS, 'rect');
      r.setAttribute('x', String(x + 4));
      r.setAttribute('y', String(y + 4));
      r.setAttribute('width', '1');
      r.setAttribute('height', '1');
      r.setAttribute('fill', '#000');
      svg.appendChild(r);
    }
  });
  return svg;
}
