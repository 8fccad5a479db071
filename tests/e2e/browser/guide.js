// The Synology guide walked by a person in a real browser (Debian's Chromium, driven by playwright-core).
//
// Usage: node guide.js '<json>' with
//   {chromium, domain, port, spki, idp, bob, alice, out, prefix, result}
//   domain  the guide's domain (int.nas.example): https://*.domain (port 443) is mapped to 127.0.0.1:port
//   spki    base64 SHA-256 of the wildcard certificate's public key: Chromium trusts exactly that certificate
//           (no blanket "ignore certificate errors", so HSTS and the padlock behave as with a trusted CA)
//   idp     the IdP's origin (http://127.0.0.1:PORT)
//   out     directory for screenshots, named PREFIX-<what>.png (and PREFIX-<what>-card.png: postern's card only)
//   result  file to write the walk to: {steps: [{name, url, status, title, text, hsts, protocol, cookies,
//           screenshot}], error?} (cookies: name, domain and flags only, never values)
// The script only walks and records what a person sees at each step; tests/e2e/test_guide_browser.py judges it.
// A step that cannot be taken (a link or form missing) ends the walk with `error` naming the step.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const site = (sub) => `https://${sub}.${args.domain}`;
const httpbin = site('httpbin');
const idpHost = new URL(args.idp).host;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-chromium-'));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: args.chromium || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 760, height: 520 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Every *.int.nas.example on port 443 goes to the loopback port under test; nothing else leaves the machine.
    `--host-resolver-rules=MAP *.${args.domain}:443 127.0.0.1:${args.port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${args.spki}`,
  ],
});
const result = { steps: [] };
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20_000);

// The final (non-redirect) response of each main-frame navigation: its status and headers are what the page shows.
let last = { status: null, headers: {} };
page.on('response', (r) => {
  if (r.frame() === page.mainFrame() && r.request().isNavigationRequest() && !(r.status() >= 300 && r.status() < 400)) {
    last = { status: r.status(), headers: r.headers() };
  }
});

async function observe(name, shot) {
  await page.waitForLoadState('load');
  const o = {
    name,
    url: page.url(),
    status: last.status,
    title: await page.title(),
    text: (await page.locator('body').innerText()).slice(0, 3000),
    hsts: last.headers['strict-transport-security'] || null,
    protocol: await page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol || null),
    cookies: (await context.cookies()).map(({ name, domain, secure, httpOnly, sameSite }) => (
      { name, domain, secure, httpOnly, sameSite })),
  };
  if (shot) {
    o.screenshot = path.join(args.out, `${args.prefix}-${shot}.png`);
    await page.screenshot({ path: o.screenshot });
    // postern's own pages: also the card alone, small enough for the docs.
    const card = page.locator('body > main');
    if (await card.count()) await card.screenshot({ path: o.screenshot.replace(/\.png$/, '-card.png') });
  }
  result.steps.push(o);
}

const on = (origin) => (u) => u.origin === origin;
const atIdpLogin = (u) => u.host === idpHost && u.pathname.startsWith('/interaction/');

async function logIn(email) {
  await page.locator('input[name="login"]').fill(email);
  await page.locator('input[name="password"]').fill('any password works');
  await Promise.all([page.waitForURL(on(httpbin)), page.locator('button[type="submit"]').first().click()]);
}

async function click(text, where) {
  await Promise.all([page.waitForURL(where), page.getByRole('link', { name: text }).first().click()]);
}

// postern's sign-out is a button (a POST form, so no other site can sign you out with a link).
async function press(text, where) {
  await Promise.all([page.waitForURL(where), page.getByRole('button', { name: text }).first().click()]);
}

const walk = [
  // 1. The guide's first step: open the app; postern sends you to the IdP, which shows its login form.
  ['open', async () => { await page.goto(`${httpbin}/`); await page.waitForURL(atIdpLogin); }],
  // 2. Another account than the allowed one: postern's 403 page names it.
  ['bob', () => logIn(args.bob), '403'],
  // 3. The 403 page's sign-out button lets you switch: signed out, "sign in again", and the IdP asks who you are.
  ['switch', async () => { await press(/sign out/i, on(site('auth'))); await click(/sign in again/i, atIdpLogin); }],
  // 4. The allowed user lands on httpbin's own page.
  ['alice', () => logIn(args.alice), 'httpbin'],
  ['headers', () => page.goto(`${httpbin}/headers?show_env=1`)],
  // 5. postern's user page on the app's host.
  ['user', () => page.goto(`${httpbin}/.pomerium/`), 'user-page'],
  // 6. Sign out from the user page: postern's "signed out" page on the authenticate host.
  ['sign_out', () => press(/sign out/i, on(site('auth'))), 'signed-out'],
  // 7. The next visit goes to the IdP again (no silent sign-in).
  ['revisit', async () => { await page.goto(`${httpbin}/`); await page.waitForURL(atIdpLogin); }],
  // 8. Saying no at the IdP (its Cancel link): postern's sign-in-failed page on the authenticate host.
  ['cancel', () => click(/cancel/i, on(site('auth'))), 'login-failed'],
  // 9. A forged IdP callback (state not made by postern for this browser).
  ['tampered', () => page.goto(`${site('auth')}/oauth2/callback?code=forged&state=forged`)],
  // 10. A host postern does not know.
  ['unknown', () => page.goto(`${site('unknown')}/`), '404'],
];

try {
  for (const [name, act, shot] of walk) {
    try {
      await act();
    } catch (e) {
      result.error = `step ${name}: ${String(e && e.message || e).split('\n')[0]} (at ${page.url()})`;
      await observe(`${name} (failed)`, `${name}-failed`).catch(() => {});
      break;
    }
    await observe(name, shot);
  }
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  fs.writeFileSync(args.result, JSON.stringify(result, null, 1));
}
