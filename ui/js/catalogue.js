// The gateway's error catalogue (<base>catalogue.json): titles, one-line
// meanings and next steps for codes the UI has no text of its own for.

let entries = new Map();
let loading = null;

export function loadCatalogue() {
  if (!loading) {
    loading = fetch('catalogue.json', { credentials: 'same-origin', cache: 'no-cache' })
      .then((r) => (r.ok ? r.json() : []))
      .then((list) => {
        if (Array.isArray(list)) entries = new Map(list.filter((e) => e && e.code).map((e) => [e.code, e]));
      })
      .catch(() => {});
  }
  return loading;
}

export function entry(code) {
  return entries.get(code) || null;
}

/**
 * The first `clawgate ...` command in a catalogue `next` sentence, with
 * <requestId>, <deviceId> and <scope> filled in when known.
 */
export function commandFrom(next, values = {}) {
  if (!next) return null;
  const m = /clawgate [^;]*?(?=(?:[;,.]?\s+(?:then|or|and|so|to|retry)\b)|;|\.\s|\.$|$)/.exec(next);
  if (!m) return null;
  return fill(m[0].replace(/[.,]$/, ''), values);
}

export function fill(text, values) {
  return text.replace(/<(requestId|deviceId|scope)>/g, (all, key) => values[key] || all);
}
