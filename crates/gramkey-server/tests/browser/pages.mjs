// gramkey's pages in headless Chromium: run by harness.rs (the_pages_work_in_a_real_browser)
// against a server it started. Every context has JavaScript off: the pages must work without it.
//
// Env: GRAMKEY_URL (the server), RECEIVER_URL (the app's callback endpoints and redirect
// landing), CHROMIUM (the browser), SCREENSHOTS (where to save a PNG of each page).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

// axe-core, evaluated into each page by the test (the pages themselves have no script), checks
// WCAG 2.1 A and AA: labels, names, contrast, landmarks, lists, tables.
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const BASE = process.env.GRAMKEY_URL;
const RX = process.env.RECEIVER_URL;
const SHOTS = process.env.SCREENSHOTS;
// The app's name is an XSS probe: it must show as text on every page and never run.
const XSS = '<script>alert("xss")</script> Demo';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

const step = (what) => console.log(`- ${what}`);

async function open(options = {}) {
  const context = await browser.newContext({
    javaScriptEnabled: false,
    viewport: { width: options.width ?? 1280, height: 900 },
    storageState: options.storageState,
  });
  return { context, page: await context.newPage() };
}

// axe needs timers, which a page without JavaScript does not run: the page's HTML is served
// again, at a same-origin URL (so the stylesheet loads), to a context with JavaScript on.
let auditor;
async function accessibility(page) {
  auditor ??= await (await browser.newContext()).newPage();
  await auditor.setViewportSize(page.viewportSize());
  const html = await page.content();
  const url = `${BASE}/__accessibility_check`;
  await auditor.route(url, (route) => route.fulfill({ contentType: 'text/html', body: html }));
  await auditor.goto(url);
  await auditor.unroute(url);
  await auditor.evaluate(AXE);
  return auditor.evaluate(async () => {
    const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
    return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
}

// Checks every page must pass, then a screenshot.
async function check(page, name) {
  assert.equal(await page.locator('script').count(), 0, `${name}: a <script> element is on the page`);
  const fit = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  assert.ok(fit, `${name}: the page is wider than the window`);
  const unlabeled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label'))
      .map((el) => el.name));
  assert.deepEqual(unlabeled, [], `${name}: form fields without a label`);
  const lang = await page.getAttribute('html', 'lang');
  assert.equal(lang, 'en', `${name}: no page language`);
  const violations = await accessibility(page);
  assert.deepEqual(violations, [], `${name}: accessibility violations`);
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

// Opens a page and checks its security headers.
async function visit(page, path, expectStatus = 200) {
  const resp = await page.goto(BASE + path);
  assert.equal(resp.status(), expectStatus, `GET ${path}`);
  const h = resp.headers();
  assert.equal(h['x-frame-options'], 'DENY', `${path}: X-Frame-Options`);
  assert.match(h['content-security-policy'] ?? '', /frame-ancestors 'none'/, `${path}: CSP`);
  return resp;
}

async function signIn(page, username, password, { keyboard = false } = {}) {
  assert.match(page.url(), /\/accounts\/login\//, 'the sign-in page');
  if (keyboard) {
    // Tab from the top of the page to the username field, then type and submit by keyboard.
    for (let i = 0; i < 6 && (await page.evaluate(() => document.activeElement?.id)) !== 'username'; i++) {
      await page.keyboard.press('Tab');
    }
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'username', 'Tab reaches the username');
    await page.keyboard.type(username);
    await page.keyboard.press('Tab');
    await page.keyboard.type(password);
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  } else {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill(password);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Log in' }).click()]);
  }
}

async function submit(page, button) {
  await Promise.all([page.waitForNavigation(), button.click()]);
}

const text = (page, selector) => page.locator(selector).first().innerText();

try {
  // 1. A developer registers an app on the dashboard.
  step('developer signs in and registers an app');
  const dev = await open();
  await visit(dev.page, '/developers/apps/');
  await check(dev.page, 'login');
  await signIn(dev.page, 'devon', 'devon-password');
  assert.equal(new URL(dev.page.url()).pathname, '/developers/apps/');
  await check(dev.page, 'dashboard');
  await dev.page.getByLabel('App name').fill(XSS);
  await dev.page.getByLabel('Valid OAuth redirect URIs').fill('http://127.0.0.1/cb');
  await dev.page.getByLabel('Deauthorize callback URL (optional)').fill(`${RX}/deauth`);
  await dev.page.getByLabel('Data deletion request URL (optional)').fill(`${RX}/delete`);
  await submit(dev.page, dev.page.getByRole('button', { name: 'Create app' }));
  assert.equal(await text(dev.page, 'h1'), XSS, 'the app name shows as text');
  const clientId = (await text(dev.page, '#client-id')).trim();
  const secret = (await text(dev.page, '#client-secret')).trim();
  assert.match(clientId, /^\d{15,17}$/);
  assert.match(secret, /^[0-9a-f]{32}$/);
  await check(dev.page, 'app-created');
  const appPath = `/developers/apps/${clientId}/`;
  await visit(dev.page, appPath);
  assert.equal(await dev.page.locator('#client-secret').count(), 0, 'the secret is shown once');
  await fetch(`${RX}/test/secret`, { method: 'POST', body: secret });

  // 1b. The app subscribes a webhook endpoint with its app token; in development mode the
  // dashboard says only test deliveries come, and "Send test" sends one.
  step('developer subscribes a webhook and sends a test notification');
  const subscribed = await fetch(`${BASE}/v22.0/${clientId}/subscriptions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${clientId}|${secret}` },
    body: new URLSearchParams({
      object: 'instagram',
      callback_url: `${RX}/hook`,
      fields: 'comments,mentions',
      verify_token: 'browser-verify',
    }),
  });
  assert.equal(subscribed.status, 200, await subscribed.text());
  await visit(dev.page, appPath);
  assert.match(await text(dev.page, '#webhook-mode'), /^Development mode: the app receives test deliveries only/);
  assert.equal(await text(dev.page, '#webhook-url'), `${RX}/hook`);
  assert.equal(await text(dev.page, '#webhook-fields'), 'comments, mentions');
  await dev.page.getByLabel('Field', { exact: true }).selectOption('mentions');
  await submit(dev.page, dev.page.getByRole('button', { name: 'Send test' }));
  assert.match(await text(dev.page, '[role=status]'), /A test notification was queued/);
  let deliveries = '';
  for (let i = 0; i < 50 && !/delivered/.test(deliveries); i++) {
    await visit(dev.page, appPath);
    deliveries = await text(dev.page, '#webhook-deliveries tbody');
    if (!/delivered/.test(deliveries)) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(deliveries, /mentions\s+test\s+delivered\s+1\s+HTTP 200/);
  const hooks = await (await fetch(`${RX}/test/hooks`)).json();
  assert.equal(hooks.length, 1);
  assert.equal(hooks[0].entry[0].changes[0].field, 'mentions');
  await check(dev.page, 'app-webhooks');

  // 2. The developer invites a tester; the tester accepts.
  step('developer invites a tester, who accepts');
  await dev.page.getByLabel('Username', { exact: true }).fill('tess');
  await submit(dev.page, dev.page.getByRole('button', { name: 'Invite' }));
  assert.match(await text(dev.page, '[role=status]'), /Invitation sent/);
  assert.match(await text(dev.page, '#invitations tbody'), /tess\s+tester\s+pending/);
  await check(dev.page, 'app-invited');

  const tester = await open();
  await visit(tester.page, '/accounts/invitations/');
  await signIn(tester.page, 'tess', 'tess-password', { keyboard: true });
  assert.equal(new URL(tester.page.url()).pathname, '/accounts/invitations/');
  assert.equal(await text(tester.page, 'article h2'), XSS);
  assert.match(await text(tester.page, 'article p'), /^devon invited you as tester/);
  await check(tester.page, 'invitations');
  await submit(tester.page, tester.page.getByRole('button', { name: /^Accept the invitation/ }));
  assert.match(await text(tester.page, '[role=status]'), /Invitation accepted/);

  await visit(dev.page, appPath);
  assert.match(await text(dev.page, '#invitations tbody'), /tess\s+tester\s+accepted/);
  assert.match(await text(dev.page, '#roles tbody'), /tess\s+tester/);

  // 3. The tester authorizes the app (in development mode) through consent.
  step('tester authorizes the app through consent');
  const authorize = `/oauth/authorize?${new URLSearchParams({
    client_id: clientId,
    redirect_uri: `${RX}/cb`,
    scope: 'user_profile,user_media',
    response_type: 'code',
    state: 'browser-state',
  })}`;
  await visit(tester.page, authorize);
  assert.match(await text(tester.page, 'h1'), /would like to access your account/);
  assert.ok((await text(tester.page, 'h1')).startsWith(XSS), 'consent shows the name as text');
  await check(tester.page, 'consent');
  await submit(tester.page, tester.page.getByRole('button', { name: 'Allow' }));
  const landed = new URL(tester.page.url());
  assert.equal(landed.origin + landed.pathname, `${RX}/cb`);
  assert.equal(landed.searchParams.get('state'), 'browser-state');
  const code = landed.searchParams.get('code');
  assert.ok(code, 'a code');

  const exchanged = await fetch(`${BASE}/oauth/access_token`, {
    method: 'POST',
    body: new URLSearchParams({
      client_id: clientId,
      client_secret: secret,
      grant_type: 'authorization_code',
      redirect_uri: `${RX}/cb`,
      code,
    }),
  });
  assert.equal(exchanged.status, 200);
  const token = (await exchanged.json()).access_token;
  const me = () => fetch(`${BASE}/me?fields=id,username&access_token=${encodeURIComponent(token)}`);
  for (let i = 0; i < 5; i++) assert.equal((await me()).status, 200);

  // 4. The developer reads the usage chart.
  step('developer reads the usage chart');
  await visit(dev.page, appPath);
  const bars = dev.page.locator('#usage-chart rect.bar');
  assert.equal(await bars.count(), 24);
  assert.equal(await bars.last().getAttribute('data-calls'), '5', 'this hour: five calls to /me');
  assert.equal(await dev.page.getAttribute('#usage-chart', 'data-ceiling'), '200', 'one user: 200 calls an hour');
  assert.equal(await dev.page.locator('#usage-chart line.ceiling').count(), 1, 'the ceiling is drawn');
  assert.match(await text(dev.page, 'figure.chart figcaption'), /^5 calls in the last 24 hours/);
  // The table behind "The numbers" (closed, so read as text content).
  assert.match(await dev.page.locator('#usage-table tbody tr:last-child').textContent(), /UTC5$/);
  await check(dev.page, 'app-usage');

  // 4b. The sandbox tools: a fault for the next call to /me, the call log, the test clock.
  step('developer injects a fault, reads the call log and moves the test clock');
  assert.match(await text(dev.page, '#test-clock'), /real time/);
  await dev.page.getByLabel('Fault', { exact: true }).selectOption('server_error');
  await dev.page.getByLabel('Path', { exact: true }).fill('/me');
  await submit(dev.page, dev.page.getByRole('button', { name: 'Add fault' }));
  assert.match(await text(dev.page, '[role=status]'), /The fault rule was added/);
  assert.match(await text(dev.page, '#fault-rules tbody'), /server_error\s+any\s+\/me\s+the next 1 calls/);
  assert.equal((await me()).status, 500, 'the injected server error');
  assert.equal((await me()).status, 200, 'then calls are answered as usual');
  await visit(dev.page, appPath);
  assert.equal(await dev.page.locator('#fault-rules').count(), 0, 'the spent rule is gone');
  assert.match(await text(dev.page, '#call-log tbody tr:first-child'), /GET \/me\s+200/);
  assert.match(await text(dev.page, '#call-log tbody'), /GET \/me\s+500\s+2\s.*server_error/);
  await dev.page.getByLabel('Move forward by').selectOption('90000');
  await submit(dev.page, dev.page.getByRole('button', { name: 'Advance clock' }));
  assert.match(await text(dev.page, '[role=status]'), /test clock was moved/);
  assert.match(await text(dev.page, '#test-clock'), /1 day 1 hour ahead of real time/);
  const expired = await (await me()).json();
  assert.equal(expired.error.error_subcode, 463, '25 hours later the short-lived token has expired');
  await check(dev.page, 'app-sandbox-tools');
  await submit(dev.page, dev.page.getByRole('button', { name: 'Back to real time' }));
  assert.match(await text(dev.page, '[role=status]'), /back on real time/);
  assert.equal((await me()).status, 200, 'on real time the token is alive again');

  // 4c. The device flow: the developer turns it on; a device asks for a code; the tester,
  // signed in, opens the link the device shows, checks the code, and allows.
  step('developer turns the device flow on; the tester connects a device with its code');
  await visit(dev.page, appPath);
  await dev.page.getByRole('checkbox', { name: /Device flow/ }).check();
  await submit(dev.page, dev.page.getByRole('button', { name: 'Save changes' }));
  assert.match(await text(dev.page, '[role=status]'), /saved/i);
  const asked = await fetch(`${BASE}/oauth/device/code`, {
    method: 'POST',
    body: new URLSearchParams({ client_id: clientId, client_secret: secret, scope: 'user_profile' }),
  });
  assert.equal(asked.status, 200, await asked.clone().text());
  const codes = await asked.json();
  const poll = () => fetch(`${BASE}/oauth/access_token`, {
    method: 'POST',
    body: new URLSearchParams({
      client_id: clientId,
      client_secret: secret,
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: codes.device_code,
    }),
  });
  assert.equal((await (await poll()).json()).error, 'authorization_pending');
  await visit(tester.page, new URL(codes.verification_uri_complete).pathname + new URL(codes.verification_uri_complete).search);
  assert.equal(await tester.page.getByLabel('Enter the code your device shows').inputValue(), codes.user_code);
  await check(tester.page, 'device');
  await submit(tester.page, tester.page.getByRole('button', { name: 'Continue' }));
  assert.ok((await text(tester.page, 'h1')).startsWith(XSS), 'the device consent shows the name as text');
  await submit(tester.page, tester.page.getByRole('button', { name: 'Allow' }));
  assert.equal(await text(tester.page, 'h1'), 'Device connected');
  await check(tester.page, 'device-connected');
  const granted = await poll();
  assert.equal(granted.status, 200, 'the device gets its token');
  assert.ok((await granted.json()).access_token);

  // 5. The tester sees the app under Active, removes it (asking for deletion too).
  step('tester removes the app in Apps and Websites');
  await visit(tester.page, '/accounts/manage_access/');
  assert.match(await text(tester.page, 'nav.tabs [aria-current]'), /Active \(1\)/);
  const listed = tester.page.getByRole('article', { name: XSS });
  assert.match(await listed.innerText(), /See your profile/);
  assert.match(await listed.innerText(), /Expires/);
  await check(tester.page, 'apps-and-websites-active');
  await listed.getByLabel(/Also ask/).check();
  await submit(tester.page, listed.getByRole('button', { name: `Remove ${XSS}` }));
  assert.match(await text(tester.page, 'nav.tabs [aria-current]'), /Removed \(1\)/);
  assert.match(await text(tester.page, '[role=status]'), /The app was removed/);
  await check(tester.page, 'apps-and-websites-removed');

  const refused = await me();
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, 190, 'the token is refused');

  // 6. Both callbacks arrive, and the dashboard says so.
  step('the callbacks are delivered');
  let arrived = [];
  for (let i = 0; i < 100 && arrived.length < 2; i++) {
    arrived = await (await fetch(`${RX}/test/arrived`)).json();
    if (arrived.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(arrived.map(([path]) => path).sort(), ['/deauth', '/delete']);
  let health = '';
  for (let i = 0; i < 50 && !/2 delivered/.test(health); i++) {
    await visit(dev.page, appPath);
    health = await text(dev.page, '#callback-health');
  }
  assert.match(health, /2 delivered · 0 pending · 0 failed/);
  // The app's answer to the deletion request reaches the person's Removed tab.
  await visit(tester.page, '/accounts/manage_access/?tab=removed');
  const removedApp = tester.page.getByRole('article', { name: XSS });
  assert.match(await removedApp.innerText(), /Data deletion\s+requested .*; confirmation code del-\d+/);
  assert.equal(await removedApp.getByRole('button').count(), 0, 'asked once already');
  assert.match(await text(dev.page, 'table.events'), /consent_removed/);
  await check(dev.page, 'app-callbacks');

  // 7. Phone width: the same pages, nothing wider than the screen.
  step('phone width');
  const phone = await open({ width: 390, storageState: await tester.context.storageState() });
  await visit(phone.page, '/accounts/manage_access/?tab=removed');
  await check(phone.page, 'phone-apps-and-websites');
  const devPhone = await open({ width: 390, storageState: await dev.context.storageState() });
  await visit(devPhone.page, appPath);
  await check(devPhone.page, 'phone-dashboard-app');

  // 8. Password change.
  step('tester changes their password');
  await visit(tester.page, '/accounts/password/change/');
  await check(tester.page, 'password');
  await tester.page.getByLabel('Current password').fill('tess-password');
  await tester.page.getByLabel('New password', { exact: true }).fill('tess-new-password');
  await tester.page.getByLabel('New password, again').fill('tess-new-password');
  await submit(tester.page, tester.page.getByRole('button', { name: 'Change password' }));
  assert.match(await text(tester.page, '[role=status]'), /Your password was changed/);

  // 9. The admin console: an admin user signs in; a developer may not enter.
  step('admin console');
  await visit(dev.page, '/console/audit', 403);
  const admin = await open();
  await visit(admin.page, `/accounts/login/?next=${encodeURIComponent('/console/audit')}`);
  await signIn(admin.page, 'olivia', 'olivia-password');
  assert.equal(new URL(admin.page.url()).pathname, '/console/audit');
  await check(admin.page, 'console-audit');
  await admin.page.getByLabel('App ID', { exact: true }).fill(clientId);
  await admin.page.getByLabel('Event', { exact: true }).selectOption('consent_removed');
  await submit(admin.page, admin.page.getByRole('button', { name: 'Filter' }));
  assert.equal(await admin.page.locator('table.events tbody tr').count(), 1);
  assert.match(await text(admin.page, 'table.events tbody'), /consent_removed/);
  await check(admin.page, 'console-audit-filtered');
  await visit(admin.page, '/console/apps');
  assert.match(await text(admin.page, '#all-apps'), new RegExp(XSS.replace(/[()[\]"/]/g, '\\$&')));
  await check(admin.page, 'console-apps');
  await visit(admin.page, '/console/users');
  assert.match(await text(admin.page, '#all-users'), /olivia/);
  await check(admin.page, 'console-users');

  // 10. An app someone does not manage is not found.
  await visit(admin.page, appPath, 404);
  await check(admin.page, 'not-found');

  console.log('all browser checks passed');
} finally {
  await browser.close();
}
