// Layout: 375 px (a phone) without horizontal scrolling, 1440 px, and the
// dark theme. Screenshots of each page.

import assert from 'node:assert/strict';
import { connectFromForm, text, uiTest, waitScreen } from './harness.mjs';

async function noHorizontalScroll(page, width, where) {
  const m = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    body: document.body.scrollWidth,
    wide: [...document.querySelectorAll('#app *')]
      .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.split(' ').join('.')}` : ''}`),
  }));
  assert.ok(m.scroll <= width, `${where}: scrollWidth ${m.scroll} > ${width} (too wide: ${m.wide.join(', ')})`);
}

async function pages(env, page, gw, width, tag) {
  for (const to of ['overview', 'devices', 'audit']) {
    await page.click(`a[data-nav="${to}"]`);
    await page.waitForURL(gw.url(to === 'overview' ? '' : to));
    await waitScreen(page, 'app');
    await page.locator(to === 'overview' ? '#ov-pending' : to === 'devices' ? 'section#paired-devices article.device' : 'table#audit-table tbody tr[data-seq]').first().waitFor();
    if (width) await noHorizontalScroll(page, width, `${to} at ${width} px`);
    await env.shot(page, `${tag}-${to}`);
  }
}

uiTest('375 px wide: login, pairing-free connect and every page without horizontal scroll', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'phone', viewport: { width: 375, height: 812 } });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  await noHorizontalScroll(page, 375, 'login at 375 px');
  await env.shot(page, '375-login');
  await connectFromForm(page, gw);
  await pages(env, page, gw, 375, '375');
});

uiTest('1440 px wide: every page', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'desktop', viewport: { width: 1440, height: 900 } });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  await env.shot(page, '1440-login');
  await connectFromForm(page, gw);
  await pages(env, page, gw, 1440, '1440');
});

function luminance(rgb) {
  const m = rgb.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)/);
  assert.ok(m, `not an rgb colour: ${rgb}`);
  const [r, g, b] = m.slice(1, 4).map((x) => Number(x) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

uiTest('dark theme: prefers-color-scheme dark gives a dark page', async (env) => {
  const gw = await env.gateway();
  const { page } = await env.context({ label: 'dark', colorScheme: 'dark', viewport: { width: 1280, height: 800 } });
  await page.goto(gw.url());
  await waitScreen(page, 'login', 'AUTH_TOKEN_MISSING');
  await env.shot(page, 'dark-login');
  await connectFromForm(page, gw);
  assert.ok((await text(page, '#this-device-id')).length === 64);
  const colours = async () => page.evaluate(() => {
    const bg = (e) => {
      for (let el = e; el; el = el.parentElement) {
        const c = getComputedStyle(el).backgroundColor;
        if (c && c !== 'transparent' && !/rgba\(.*,\s*0\)$/.test(c)) return c;
      }
      return getComputedStyle(document.documentElement).backgroundColor;
    };
    return { bg: bg(document.getElementById('app')), fg: getComputedStyle(document.getElementById('app')).color };
  });
  const dark = await colours();
  assert.ok(luminance(dark.bg) < 0.3, `background ${dark.bg} is not dark`);
  assert.ok(luminance(dark.fg) > 0.6, `text ${dark.fg} is not light`);
  await pages(env, page, gw, 0, 'dark');
  // And the light theme really is different.
  await page.emulateMedia({ colorScheme: 'light' });
  const light = await colours();
  assert.ok(luminance(light.bg) > 0.7, `light background ${light.bg} is not light`);
});
