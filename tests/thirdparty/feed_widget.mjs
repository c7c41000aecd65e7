// Drive gramkey with instafeed.js 2.1.0 (npm), a browser feed widget, unmodified, in headless
// Chromium, from a page on another origin. The widget hard-codes
// https://graph.instagram.com/me/media; Chromium maps that host to gramkey
// (--host-resolver-rules) and trusts gramkey's self-signed certificate by its key
// (--ignore-certificate-errors-spki-list), as a developer testing a widget against a sandbox
// would. The widget's own XHR has to pass CORS, errors included.
//
// Ends with `RESULT <json>`; exits 1 on any failure.
// Env: GRAMKEY_URL (https://127.0.0.1:PORT), GRAMKEY_CERT (its PEM certificate), GRAMKEY_TOKEN,
// GRAMKEY_EXPECT_MEDIA.
import { createServer } from 'node:http';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
}

const here = dirname(fileURLToPath(import.meta.url));
const gramkey = new URL(process.env.GRAMKEY_URL);
const spki = createHash('sha256')
  .update(new X509Certificate(readFileSync(process.env.GRAMKEY_CERT)).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');
const widget = readFileSync(join(here, 'node_modules/instafeed.js/dist/instafeed.min.js'));

const page = (token) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Feed</title></head>
<body><div id="instafeed"></div>
<script src="/instafeed.min.js"></script>
<script>
  window.feedLog = { pages: 0, errors: [], done: false };
  const feed = new Instafeed({
    accessToken: ${JSON.stringify(token)},
    target: 'instafeed',
    apiLimit: 2,
    template: '<a class="item" data-id="{{model.id}}" href="{{link}}">{{caption}}</a>',
    after() {
      window.feedLog.pages += 1;
      if (feed.hasNext()) setTimeout(() => feed.next(), 0);
      else window.feedLog.done = true;
    },
    error(e) { window.feedLog.errors.push(String(e && e.message || e)); window.feedLog.done = true; },
  });
  feed.run();
</script></body></html>`;

// The page's own origin: another port on loopback, plain HTTP.
const site = createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/instafeed.min.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(widget);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page(u.searchParams.get('token')));
  }
});
await new Promise((ok) => site.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${site.address().port}`;

const profile = mkdtempSync(join(tmpdir(), 'gramkey-feed-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    `--host-resolver-rules=MAP graph.instagram.com:443 127.0.0.1:${gramkey.port}`,
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
const out = { library: 'instafeed.js', checks: [] };
try {
  const tab = await browser.newPage();
  const graphAnswers = [];
  tab.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('/me/media')) {
      graphAnswers.push({ url: r.url(), status: r.status(), acao: r.headers()['access-control-allow-origin'] });
    }
  });
  const run = async (token) => {
    await tab.goto(`${origin}/?token=${encodeURIComponent(token)}`);
    await tab.waitForFunction(() => window.feedLog.done, null, { timeout: 20000 });
    return tab.evaluate(() => ({
      log: window.feedLog,
      ids: [...document.querySelectorAll('#instafeed .item')].map((a) => a.dataset.id),
    }));
  };

  const ok = await run(process.env.GRAMKEY_TOKEN);
  const expected = Number(process.env.GRAMKEY_EXPECT_MEDIA);
  check(ok.log.errors.length === 0, `errors: ${ok.log.errors}`);
  check(ok.ids.length === expected && new Set(ok.ids).size === expected, `${ok.ids.length} media of ${expected}`);
  check(graphAnswers[0].url.startsWith('https://graph.instagram.com/me/media?'), 'the widget called its own host');
  check(graphAnswers.every((a) => a.acao === '*'), 'every answer allows any origin');
  out.media = { count: ok.ids.length, pages: ok.log.pages };
  out.checks.push('feed');

  graphAnswers.length = 0;
  const bad = await run(process.env.GRAMKEY_TOKEN + 'x');
  check(bad.ids.length === 0 && bad.log.errors.length === 1, 'a bad token is an error');
  check(/190/.test(bad.log.errors[0]), `the widget read the Graph error: ${bad.log.errors[0]}`);
  check(graphAnswers.length === 1 && graphAnswers[0].acao === '*', 'the error allows any origin');
  out.checks.push('error_readable');
} finally {
  await browser.close();
  site.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log('RESULT ' + JSON.stringify(out));
