#!/usr/bin/env node
// tests/oidc/pim.mjs: a stand-in for the PIM in pimgate's single sign-on end-to-end tests.
//
// A minimal OpenID Connect relying party built only from the stock client library
// `openid-client` (v6): authorization code flow with PKCE (S256), state and nonce, ID token
// signatures checked against the issuer's JWKS, userinfo, and a refresh. Nothing of the protocol is
// hand-rolled here, so whatever it accepts, a standard client accepts.
//
//   node tests/oidc/pim.mjs --issuer URL --client-id ID [--client-secret S]
//                           [--scope "openid profile email offline_access"]
//
// When ready it prints exactly one line to stdout, {"url":"http://127.0.0.1:PORT"}, and nothing
// else there (logs go to stderr). It exits when its stdin closes and on SIGTERM/SIGINT.
//
//   GET /login[?connection=&login_hint=&prompt=&scope=]
//       302 to the issuer's authorization endpoint (the four parameters are passed through;
//       scope defaults to --scope). redirect_uri is <url>/callback.
//   GET /callback
//       200 JSON with the tokens, claims and userinfo; 400 JSON for an error response from the
//       issuer or an unknown state; 502 JSON when openid-client rejects something. See README.md.
//   GET /logout?id_token_hint=&state=
//       302 to the issuer's end_session_endpoint (openid-client's buildEndSessionUrl), with
//       post_logout_redirect_uri <url>/logged-out.
//   GET /logged-out
//       200 JSON {"logged_out": true, "state": ...}: where the issuer sends the browser at the end.
//   POST /backchannel-logout
//       The Back-Channel Logout 1.0 receiver: verifies the logout token with `jose` against the
//       issuer's JWKS (signature, iss, aud, typ logout+jwt, iat/exp), checks the logout event,
//       sid or sub, no nonce and jti not seen before; 200 when accepted, 400 JSON otherwise.
//   GET /__test/logouts
//       200 JSON [{sid, sub, jti}, ...]: the logout tokens accepted so far (test observation).

import * as http from 'node:http';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import * as client from 'openid-client';

const log = (...args) => console.error('pim:', ...args);

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------
const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    scope: { type: 'string', default: 'openid profile email offline_access' },
  },
});
if (!args.issuer || !args['client-id']) {
  console.error('usage: node tests/oidc/pim.mjs --issuer URL --client-id ID [--client-secret S] [--scope SCOPE]');
  process.exit(2);
}

// ---------------------------------------------------------------------------
// openid-client configuration, discovered lazily
// ---------------------------------------------------------------------------
// Discovery happens on the first request, not at start: the tests start this process before (or
// independently of) the issuer. A failed discovery is not cached, so the next request retries.
let configPromise = null;

function getConfig() {
  configPromise ??= client.discovery(
    new URL(args.issuer),
    args['client-id'],
    args['client-secret'], // undefined for a public client
    // A confidential client authenticates with HTTP Basic; a public one sends only its client_id.
    args['client-secret'] ? client.ClientSecretBasic(args['client-secret']) : client.None(),
    {
      execute: [
        // The issuer is plain http on loopback in the tests.
        client.allowInsecureRequests,
        // Verify ID token signatures against the issuer's JWKS (fetched, cached, and re-fetched
        // by openid-client on an unknown kid). Without this, openid-client checks iss, aud, exp and
        // nonce of an ID token received over TLS from the token endpoint, but not its signature.
        client.enableNonRepudiationChecks,
      ],
    },
  ).catch((err) => {
    configPromise = null;
    throw err;
  });
  return configPromise;
}

// Authorization requests in flight, by state: the PKCE verifier and nonce to check the answer with.
// Each is used once (removed at the callback).
const pending = new Map();

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------
let ownUrl; // http://127.0.0.1:PORT, known once listening

async function login(url, res) {
  const config = await getConfig();
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  pending.set(state, { codeVerifier, nonce });

  const params = {
    redirect_uri: `${ownUrl}/callback`,
    response_type: 'code',
    scope: url.searchParams.get('scope') || args.scope,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  // Passed through when the test gives them (connection: which upstream IdP pimgate should use).
  for (const name of ['connection', 'login_hint', 'prompt']) {
    const value = url.searchParams.get(name);
    if (value !== null) params[name] = value;
  }
  const location = client.buildAuthorizationUrl(config, params);
  res.writeHead(302, { location: location.href });
  res.end();
}

async function callback(url, res) {
  const query = url.searchParams;
  if (query.has('error')) {
    sendJson(res, 400, {
      error: query.get('error'),
      error_description: query.get('error_description'),
      state: query.get('state'),
      iss: query.get('iss'),
    });
    return;
  }
  const state = query.get('state');
  const request = pending.get(state);
  if (!request) {
    sendJson(res, 400, { error: 'unknown_state', message: `no authorization request in flight with state ${JSON.stringify(state)}` });
    return;
  }
  pending.delete(state);

  const config = await getConfig();
  const tokens = await client.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: request.codeVerifier,
    expectedState: state,
    expectedNonce: request.nonce,
    idTokenExpected: true,
  });
  const idTokenClaims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, idTokenClaims.sub);

  let refreshed = null;
  if (tokens.refresh_token) {
    const next = await client.refreshTokenGrant(config, tokens.refresh_token);
    refreshed = { access_token: next.access_token, id_token_claims: next.claims() ?? null };
  }

  sendJson(res, 200, {
    id_token_claims: idTokenClaims,
    userinfo,
    access_token: tokens.access_token,
    id_token: tokens.id_token,
    refresh_token: tokens.refresh_token ?? null,
    refreshed,
    // Handed back so that a test can try to replay the code (it must be refused).
    code: query.get('code'),
    code_verifier: request.codeVerifier,
  });
}

// Back-channel logout: accepted tokens (for the test to observe) and the jti values seen.
const logouts = [];
const seenJti = new Set();
let remoteJwks = null;

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function backchannelLogout(req, res) {
  const config = await getConfig();
  const meta = config.serverMetadata();
  const form = new URLSearchParams(await readBody(req));
  const token = form.get('logout_token');
  if (!token) {
    sendJson(res, 400, { error: 'invalid_request', error_description: 'logout_token is missing' });
    return;
  }
  remoteJwks ??= jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  let payload;
  try {
    ({ payload } = await jose.jwtVerify(token, remoteJwks, {
      issuer: meta.issuer,
      audience: args['client-id'],
      typ: 'logout+jwt',
      requiredClaims: ['iat', 'jti'],
      maxTokenAge: '10 minutes',
      clockTolerance: 60,
    }));
  } catch (err) {
    log(`back-channel logout refused: ${err.code ?? err.name}: ${err.message}`);
    sendJson(res, 400, { error: 'invalid_request', error_description: err.message });
    return;
  }
  const event = payload.events?.['http://schemas.openid.net/event/backchannel-logout'];
  const problem = (typeof event !== 'object' || event === null) ? 'no back-channel logout event'
    : (!payload.sid && !payload.sub) ? 'neither sid nor sub'
      : ('nonce' in payload) ? 'a logout token must not carry a nonce'
        : seenJti.has(payload.jti) ? 'jti replayed'
          : null;
  if (problem) {
    log(`back-channel logout refused: ${problem}`);
    sendJson(res, 400, { error: 'invalid_request', error_description: problem });
    return;
  }
  seenJti.add(payload.jti);
  logouts.push({ sid: payload.sid ?? null, sub: payload.sub ?? null, jti: payload.jti });
  log(`back-channel logout accepted: sid ${payload.sid}, sub ${payload.sub}`);
  res.writeHead(200, { 'cache-control': 'no-store' });
  res.end();
}

async function logout(url, res) {
  const config = await getConfig();
  const params = { post_logout_redirect_uri: `${ownUrl}/logged-out` };
  for (const name of ['id_token_hint', 'state']) {
    const value = url.searchParams.get(name);
    if (value !== null) params[name] = value;
  }
  const location = client.buildEndSessionUrl(config, params);
  res.writeHead(302, { location: location.href });
  res.end();
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------
function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// An error's cause as JSON: openid-client puts the offending response body, claims or an inner
// error there. Response objects and errors are summarised; anything else is passed as is if it
// serialises.
function describeCause(cause) {
  if (cause === undefined || cause === null) return null;
  if (cause instanceof Error) {
    return { name: cause.name, code: cause.code, message: cause.message };
  }
  if (typeof Response !== 'undefined' && cause instanceof Response) {
    return { response_status: cause.status };
  }
  try {
    return JSON.parse(JSON.stringify(cause));
  } catch {
    return String(cause);
  }
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, ownUrl);
  try {
    if (req.method === 'GET' && url.pathname === '/login') {
      await login(url, res);
    } else if (req.method === 'GET' && url.pathname === '/callback') {
      await callback(url, res);
    } else if (req.method === 'GET' && url.pathname === '/logout') {
      await logout(url, res);
    } else if (req.method === 'GET' && url.pathname === '/logged-out') {
      sendJson(res, 200, { logged_out: true, state: url.searchParams.get('state') });
    } else if (req.method === 'POST' && url.pathname === '/backchannel-logout') {
      await backchannelLogout(req, res);
    } else if (req.method === 'GET' && url.pathname === '/__test/logouts') {
      sendJson(res, 200, logouts);
    } else {
      sendJson(res, 404, { error: 'not_found' });
    }
  } catch (err) {
    log(`${url.pathname}: ${err.code ?? err.name}: ${err.message}`);
    sendJson(res, 502, {
      error: err.code ?? err.name,
      message: err.message,
      // For an OAuth error answered by the issuer (openid-client's ResponseBodyError).
      oauth_error: err.error,
      error_description: err.error_description,
      status: err.status,
      cause: describeCause(err.cause),
    });
  }
});

// ---------------------------------------------------------------------------
// Start and stop
// ---------------------------------------------------------------------------
function shutdown(why) {
  log(`exiting (${why})`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume(); // read (and discard) stdin, so that its end is noticed

server.on('error', (err) => {
  console.error('pim: cannot listen:', err.message);
  process.exit(1);
});
server.listen(0, '127.0.0.1', () => {
  ownUrl = `http://127.0.0.1:${server.address().port}`;
  log(`listening; issuer ${args.issuer}, client ${args['client-id']} (${args['client-secret'] ? 'confidential' : 'public'})`);
  process.stdout.write(`${JSON.stringify({ url: ownUrl })}\n`);
});
