// Drive gramkey with instagram-node 0.5.8 (npm), unmodified: a legacy v1 client that only ever
// speaks HTTPS (`https.request`, whatever host it is given). Only its `host` and `port` are
// set. NODE_EXTRA_CA_CERTS must name gramkey's certificate.
//
// Protocol with the test: prints `AUTHORIZE <url>`, reads the redirect URL on stdin, ends with
// `RESULT <json>`. Exits 1 on any failure.
//
// Env: GRAMKEY_URL (https://127.0.0.1:PORT), GRAMKEY_CLIENT_ID, GRAMKEY_CLIENT_SECRET,
// GRAMKEY_REDIRECT_URI, GRAMKEY_EXPECT_MEDIA.
'use strict';
const readline = require('node:readline');
const { promisify } = require('node:util');

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
}

async function main() {
  const base = new URL(process.env.GRAMKEY_URL);
  const ig = require('instagram-node').instagram({
    host: base.origin,
    port: Number(base.port),
  });
  const out = { library: 'instagram-node', checks: [] };
  const redirect = process.env.GRAMKEY_REDIRECT_URI;
  ig.use({ client_id: process.env.GRAMKEY_CLIENT_ID, client_secret: process.env.GRAMKEY_CLIENT_SECRET });
  // No scope: a v1 app gets `basic`.
  console.log('AUTHORIZE ' + ig.get_authorization_url(redirect, { state: 'node-state' }));
  const rl = readline.createInterface({ input: process.stdin });
  const landed = new URL((await rl[Symbol.asyncIterator]().next()).value.trim());
  rl.close();
  check(landed.searchParams.get('state') === 'node-state', 'state comes back');
  const result = await promisify(ig.authorize_user)(landed.searchParams.get('code'), redirect);
  check(result.access_token && result.user && result.user.username, 'exchange gives token and user');
  out.checks.push('exchange');

  ig.use({ access_token: result.access_token });
  const user = await new Promise((ok, fail) => ig.user('self', (e, u) => (e ? fail(e) : ok(u))));
  check(user.username === result.user.username && user.counts.media >= 1, 'users/self');
  out.checks.push('profile');

  // Paging by pagination.next_max_id, as the library does.
  const seen = [];
  let page = await new Promise((ok, fail) =>
    ig.user_self_media_recent({ count: 2 }, (e, medias, pagination, remaining, limit) =>
      e ? fail(e) : ok({ medias, pagination, remaining, limit })));
  check(page.limit > 0 && page.remaining >= 0, 'X-Ratelimit headers read');
  let pages = 1;
  for (;;) {
    seen.push(...page.medias);
    if (!page.pagination.next) break;
    page = await new Promise((ok, fail) =>
      page.pagination.next((e, medias, pagination) => (e ? fail(e) : ok({ medias, pagination }))));
    pages += 1;
  }
  const expected = Number(process.env.GRAMKEY_EXPECT_MEDIA);
  check(seen.length === expected && new Set(seen.map((m) => m.id)).size === expected,
    `${seen.length} media of ${expected}`);
  const times = seen.map((m) => Number(m.created_time));
  check(times.every((t, i) => i === 0 || times[i - 1] >= t), 'newest first');
  out.media = { count: seen.length, pages };
  out.checks.push('media_walk');

  const one = await new Promise((ok, fail) => ig.media(seen[0].id, (e, m) => (e ? fail(e) : ok(m))));
  check(one.id === seen[0].id && one.images.standard_resolution.url, 'media/{id}');
  out.checks.push('media');

  // A refused call surfaces as the library's error, with v1's error type.
  ig.use({ access_token: result.access_token + 'x' });
  const err = await new Promise((ok) => ig.user('self', (e) => ok(e)));
  check(err && err.error_type === 'OAuthAccessTokenException', `error shape: ${err && err.message}`);
  out.checks.push('error_shape');
  console.log('RESULT ' + JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
