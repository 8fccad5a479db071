// A real browser (Debian's Chromium, driven by playwright-core) signs in through postern and the IdP's form.
//
// Usage: node signin.js '<json>' with {url, email, domain, port, out, chromium?}
//   url     the page to open on a route host (e.g. https://httpbin.postern.test:PORT/headers)
//   email   the account to type into the IdP's login form (any password)
//   domain  names under it are mapped to 127.0.0.1 (the URL, Host and SNI keep the name)
//   out     path prefix for the screenshot (OUT.png)
// Prints one JSON line: {status, url, title, text, cookies:[{name, domain, secure, httpOnly, sameSite}], steps}
// Exits 0 when the walk ended on `url` (whatever its status), 1 otherwise.

import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const deadline = 30_000;

const browser = await chromium.launch({
  executablePath: args.chromium || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    `--host-resolver-rules=MAP *.${args.domain} 127.0.0.1`,
  ],
});
const result = { steps: [] };
let ok = false;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(deadline);
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) result.steps.push(f.url()); });

  let response = await page.goto(args.url);
  // The IdP's login form (oidc-provider's dev interaction): login + password, then consent if it asks.
  for (let i = 0; i < 3 && !page.url().startsWith(args.url); i += 1) {
    const login = page.locator('input[name="login"]');
    if (await login.count()) {
      await login.fill(args.email);
      await page.locator('input[name="password"]').fill('any password');
    }
    const submit = page.locator('button[type="submit"]').first();
    if (!(await submit.count())) break;
    [response] = await Promise.all([
      page.waitForNavigation({ url: (u) => u.href.startsWith(args.url) || u.href.includes('/interaction/') }),
      submit.click(),
    ]);
    await page.waitForLoadState('load');
  }
  result.status = response ? response.status() : null;
  result.url = page.url();
  result.title = await page.title();
  result.text = (await page.locator('body').innerText()).slice(0, 4000);
  result.cookies = (await context.cookies()).map(({ name, domain, secure, httpOnly, sameSite }) => (
    { name, domain, secure, httpOnly, sameSite }));
  if (args.out) await page.screenshot({ path: `${args.out}.png`, fullPage: true });
  ok = result.url.startsWith(args.url);
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(ok ? 0 : 1);
