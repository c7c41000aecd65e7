// Drive gramkey with oauth4webapi 3.8.8 (npm), a strict generic OAuth 2.0 client, unmodified:
// RFC 8414 discovery from the issuer URL, authorization code with PKCE and RFC 9207 `iss`
// checked, client_secret_post, the profile and every media page through its protected-resource
// requests, refresh, introspection (RFC 7662), revocation (RFC 7009), and a replayed code told
// apart from a token. Over HTTPS: NODE_EXTRA_CA_CERTS must name gramkey's certificate.
//
// Protocol with the test: prints `AUTHORIZE <url>`, reads the redirect URL on stdin, ends with
// `RESULT <json>`. Exits 1 on any failure.
//
// Env: GRAMKEY_URL (the issuer), GRAMKEY_CLIENT_ID, GRAMKEY_CLIENT_SECRET, GRAMKEY_REDIRECT_URI,
// GRAMKEY_EXPECT_MEDIA.
import * as oauth from 'oauth4webapi';
import { createInterface } from 'node:readline/promises';

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
}

const issuer = new URL(process.env.GRAMKEY_URL);
const client = { client_id: process.env.GRAMKEY_CLIENT_ID };
const auth = oauth.ClientSecretPost(process.env.GRAMKEY_CLIENT_SECRET);
const redirectUri = process.env.GRAMKEY_REDIRECT_URI;
const out = { library: 'oauth4webapi', checks: [] };

const as = await oauth.processDiscoveryResponse(
  issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2' }));
check(as.authorization_response_iss_parameter_supported === true, 'metadata announces iss');
check(as.grant_types_supported.includes('refresh_token'), 'metadata lists refresh_token');
out.checks.push('discovery');

const verifier = oauth.generateRandomCodeVerifier();
const state = oauth.generateRandomState();
const url = new URL(as.authorization_endpoint);
for (const [k, v] of Object.entries({
  client_id: client.client_id, redirect_uri: redirectUri, response_type: 'code',
  scope: 'user_profile,user_media', state,
  code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
})) url.searchParams.set(k, v);
console.log('AUTHORIZE ' + url.href);
const rl = createInterface({ input: process.stdin });
const landed = new URL((await rl[Symbol.asyncIterator]().next()).value.trim());
rl.close();
// Checks state, and iss against the discovered issuer (required, as the metadata says).
const params = oauth.validateAuthResponse(as, client, landed, state);

const tokens = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, verifier));
check(tokens.token_type === 'bearer' && tokens.expires_in > 0, 'RFC 6749 token response');
check(tokens.refresh_token, 'a refresh token (the app opted in)');
out.checks.push('exchange');

// The code again: an error the library recognises, not a token.
try {
  await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, verifier));
  throw new Error('FAILED: a replayed code gave a token');
} catch (e) {
  check(e instanceof oauth.ResponseBodyError && e.error === 'invalid_grant', `replay: ${e}`);
}
out.checks.push('replay_is_an_error');

async function get(token, href) {
  const res = await oauth.protectedResourceRequest(token, 'GET', new URL(href), new Headers(), null);
  check(res.status === 200, `GET ${href} answered ${res.status}`);
  return res.json();
}

// The replay revoked the first token (RFC 6749 §4.1.2): sign in again for the rest.
console.log('AUTHORIZE ' + url.href);
const rl2 = createInterface({ input: process.stdin });
const landed2 = new URL((await rl2[Symbol.asyncIterator]().next()).value.trim());
rl2.close();
const fresh = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, auth,
    oauth.validateAuthResponse(as, client, landed2, state), redirectUri, verifier));

const me = await get(fresh.access_token, `${issuer.origin}/me?fields=id,username,media_count`);
check(me.username && me.media_count >= 1, 'profile');
out.checks.push('profile');
const ids = [];
let next = `${issuer.origin}/me/media?fields=id,timestamp&limit=2`;
let pages = 0;
while (next) {
  const page = await get(fresh.access_token, next);
  ids.push(...page.data.map((m) => m.id));
  next = page.paging && page.paging.next;
  pages += 1;
}
const expected = Number(process.env.GRAMKEY_EXPECT_MEDIA);
check(ids.length === expected && new Set(ids).size === expected, `${ids.length} media of ${expected}`);
out.media = { count: ids.length, pages };
out.checks.push('media_walk');

const refreshed = await oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, auth, fresh.refresh_token));
check(refreshed.access_token !== fresh.access_token && refreshed.token_type === 'bearer', 'refresh');
out.checks.push('refresh');

const introspect = async (token) => oauth.processIntrospectionResponse(as, client,
  await oauth.introspectionRequest(as, client, auth, token));
const active = await introspect(refreshed.access_token);
check(active.active === true && active.client_id === client.client_id, 'introspection: active');
out.checks.push('introspect');

await oauth.processRevocationResponse(
  await oauth.revocationRequest(as, client, auth, refreshed.access_token));
check((await introspect(refreshed.access_token)).active === false, 'revoked: inactive');
const res = await oauth.protectedResourceRequest(refreshed.access_token, 'GET',
  new URL(`${issuer.origin}/me?fields=id`), new Headers(), null);
check(res.status === 400 || res.status === 401, `a revoked token is refused (${res.status})`);
out.checks.push('revoke');
console.log('RESULT ' + JSON.stringify(out));
