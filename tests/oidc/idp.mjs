#!/usr/bin/env node
// tests/oidc/idp.mjs: the "company IdP" of pimgate's single sign-on end-to-end tests.
//
// A real, OpenID-certified OpenID Provider (the npm package `oidc-provider`, v9) on 127.0.0.1,
// configured from a JSON file, plus a few /__test/* HTTP hooks that let a test make it misbehave
// (tampered ID tokens, key rotation) and observe it (JWKS fetch count). The hooks are test
// instrumentation wrapped around the provider; the OpenID Connect protocol itself is the
// library's, unchanged.
//
//   node tests/oidc/idp.mjs CONFIG_JSON_PATH
//
// When ready it prints exactly one line to stdout, {"issuer":"http://127.0.0.1:PORT"}, and nothing
// else there afterwards (all logging goes to stderr). It exits when its stdin closes (so a test that
// dies never leaves it behind: spawn it with a piped stdin and keep the pipe open) and on
// SIGTERM/SIGINT. See README.md beside this file for the config format and the hooks.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

// stdout carries the ready line and nothing else. oidc-provider prints its notices with
// console.info (stdout), so every console method is pointed at stderr, and this happens before
// the library is loaded (it warns about the Node version at import time): hence the dynamic import.
const writeReadyLine = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}
const { default: Provider } = await import('oidc-provider');
// The provider's own in-memory adapter (sessions, interactions, grants, codes, tokens). It is
// imported from the package's internals (fine with the exact version pinned in package.json) so
// that ONE store can be shared by every provider instance this process builds: POST /__test/rotate
// rebuilds the provider, and logins, grants and tokens must survive that.
const { createMemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');

const log = (...args) => console.error('idp:', ...args);

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------
const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node tests/oidc/idp.mjs CONFIG_JSON_PATH');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const listenPort = Number(config.port ?? 0);

// The accounts map is mutable at run time (POST /__test/accounts). A Map, so that no account id
// can collide with an Object.prototype property.
const accounts = new Map(Object.entries(config.accounts ?? {}));

// Client registrations: whatever metadata the config gives, over defaults that suit the tests.
// A client with a secret authenticates with client_secret_basic or client_secret_post (oidc-provider
// accepts both for a client registered with either); one without is a public client ("none").
const clients = (config.clients ?? []).map((client) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: client.client_secret ? 'client_secret_basic' : 'none',
  id_token_signed_response_alg: 'ES256',
  ...client,
}));

// ---------------------------------------------------------------------------
// Signing keys (ES256, EC P-256), generated at start with node:crypto
// ---------------------------------------------------------------------------
// Each key gets a random kid, so that a restarted IdP (same port, new process) never reuses a kid
// with a different key: a relying party then sees an unknown kid, as it would at a real rotation.
function newSigningKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = `es256-${crypto.randomBytes(9).toString('base64url')}`;
  return {
    kid,
    privateKey,
    publicKey,
    jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' },
  };
}

// signingKeys[0] signs; all of them are published in the JWKS. POST /__test/rotate puts a new key
// in front and KEEPS the old ones published (as a real IdP does during a rotation): tokens signed
// before the rotation still verify, and a relying party that cached the old JWKS meets an unknown
// kid on the next ID token and must re-fetch the JWKS.
let signingKeys = [newSigningKey()];

// ---------------------------------------------------------------------------
// Small JWT helpers for the tamper hook (node:crypto only)
// ---------------------------------------------------------------------------
const b64json = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const unb64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function decodeJwt(jwt) {
  const [header, payload] = jwt.split('.');
  return { header: unb64json(header), payload: unb64json(payload) };
}

// ES256 signature in JOSE form: the raw 64-byte r||s (IEEE P1363), not DER.
function signEs256(header, payload, privateKey) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

function signHs256(header, payload, secret) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest();
  return `${input}.${sig.toString('base64url')}`;
}

// Each mode turns the real ID token into a forged or altered one. Unless the mode says otherwise,
// the result is re-signed with the current real key and kid (ES256): only the claims are wrong.
const TAMPER_MODES = {
  wrong_iss: (header, payload) => resign(header, { ...payload, iss: 'http://evil.example' }),
  wrong_aud: (header, payload) => resign(header, { ...payload, aud: 'someone-else' }),
  expired: (header, payload) => {
    const now = Math.floor(Date.now() / 1000);
    return resign(header, { ...payload, exp: now - 600, iat: now - 900 });
  },
  nonce: (header, payload) => resign(header, { ...payload, nonce: 'not-the-nonce' }),
  // Unsigned token: header exactly {"alg":"none"}, same claims, empty signature part.
  alg_none: (_header, payload) => `${b64json({ alg: 'none' })}.${b64json(payload)}.`,
  // Algorithm confusion: HS256 with the IdP's public key as the HMAC secret. The secret is the
  // UTF-8 bytes of the current signing key's public key as SPKI PEM text, exactly as Node's
  // KeyObject.export({ type: 'spki', format: 'pem' }) prints it ("-----BEGIN PUBLIC KEY-----\n"
  // ... "-----END PUBLIC KEY-----\n", trailing newline included). The header keeps the real kid,
  // as an attacker would, to steer a naive verifier to that key.
  hs256_pubkey: (header, payload) => {
    const pem = signingKeys[0].publicKey.export({ type: 'spki', format: 'pem' });
    return signHs256({ ...header, alg: 'HS256' }, payload, Buffer.from(pem, 'utf8'));
  },
  // Same claims, validly signed, but by a throw-away key whose kid is not in the JWKS.
  unknown_kid: (header, payload) => {
    const stranger = newSigningKey();
    return signEs256({ ...header, alg: 'ES256', kid: stranger.kid }, payload, stranger.privateKey);
  },
  // Entra ID's group overage: no `groups`, a pointer to where they could be fetched instead.
  overage: (header, payload) => {
    const { groups: _dropped, ...rest } = payload;
    return resign(header, {
      ...rest,
      _claim_names: { groups: 'src1' },
      _claim_sources: { src1: { endpoint: 'https://graph.example/x' } },
    });
  },
};

function resign(header, payload) {
  const key = signingKeys[0];
  return signEs256({ ...header, alg: 'ES256', kid: key.kid }, payload, key.privateKey);
}

// The one pending tamper mode (one-shot), or null.
let pendingTamper = null;

// GETs of the jwks_uri, counted for GET /__test/stats.
const stats = { jwks_fetches: 0 };

// ---------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------
// Fixed cookie-signing keys: oidc-provider wants them (it signs its session and interaction
// cookies), and keeping them the same across the in-process provider rebuilds of /__test/rotate
// keeps browser sessions valid through a rotation.
const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];
const ADAPTER = createMemoryAdapter(15); // 15 s: the provider's default clockTolerance

async function findAccount(_ctx, id) {
  if (!accounts.has(id)) return undefined; // unknown (or deleted) account: the provider refuses it
  return {
    accountId: id,
    // Read at call time, so /__test/accounts changes show up in later tokens and userinfo.
    // The account id is the subject; the claims object may not override it.
    async claims() {
      return { ...(accounts.get(id) ?? {}), sub: id };
    },
  };
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: ADAPTER,
    clients,
    jwks: { keys: signingKeys.map((key) => key.jwk) },
    findAccount,
    // Scopes and the claims each one releases. `groups` also carries Entra ID's `hasgroups`; the
    // overage pointers `_claim_names`/`_claim_sources` need no declaration: oidc-provider passes an
    // account's aggregated/distributed-claims pointers through for every released claim they name
    // (here `groups`, when the `groups` scope is granted).
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name', 'oid', 'tid'],
      groups: ['groups', 'hasgroups'],
    },
    // Scope-requested claims go into the ID token too, not only to userinfo (pimgate reads
    // `groups` from the ID token, as with Entra ID).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    features: {
      // Built-in login and consent forms, driven over HTTP by the tests: POST
      // prompt=login&login=<accountId>&password=<anything>, then prompt=consent.
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    cookies: { keys: COOKIE_KEYS },
    // Explicit lifetimes (the defaults print "you SHOULD change" notices).
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Grant: 14 * 24 * 3600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
    // Back-channel logout deliveries go to the relying party under test on 127.0.0.1, which the
    // provider's SSRF guard refuses (special-use address). Drop the guarded dispatcher and use the
    // global fetch: acceptable only because this is a test IdP on loopback.
    fetch: (url, options) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
  });

  // Plain http on 127.0.0.1, no reverse proxy in front: do not trust X-Forwarded-* headers.
  // Cookies are then not marked Secure (the request is not secure), so the interaction and
  // session cookies work over http://127.0.0.1.
  provider.proxy = false;

  const tokenPath = new URL(provider.urlFor('token')).pathname;
  const authorizationPath = new URL(provider.urlFor('authorization')).pathname;
  const interactionPrefix = new URL(provider.urlFor('interaction', { uid: 'UID' })).pathname.replace(/UID$/, '');

  // A browser session whose account was deleted (POST /__test/accounts {"id": null}) is ended
  // before the authorization endpoint sees it: oidc-provider cannot go on with a session whose
  // account findAccount does not know (it answers 500). The user is asked to log in again instead,
  // as an IdP that removed a user would do.
  provider.use(async (ctx, next) => {
    if (ctx.path === authorizationPath || ctx.path.startsWith(`${authorizationPath}/`)) {
      const session = await provider.Session.get(ctx);
      if (session.accountId && !accounts.has(session.accountId)) {
        log(`session of deleted account ${JSON.stringify(session.accountId)} ended`);
        await session.destroy();
      }
    }
    await next();
  });

  // Unknown accounts are refused at the login form. devInteractions accepts any login name, and
  // oidc-provider cannot go on with a session whose account findAccount does not know (it answers
  // 500), so a login as an id that is not in the accounts map ends the interaction with
  // access_denied instead, which the provider sends to the client's redirect_uri as usual.
  // The form body is read here and handed on as req.body, which the provider's body parser accepts.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path.startsWith(interactionPrefix)
      && ctx.is('application/x-www-form-urlencoded')) {
      const raw = (await readBody(ctx.req)).toString('utf8');
      ctx.req.body = raw;
      const form = new URLSearchParams(raw);
      if (form.get('prompt') === 'login' && !accounts.has(form.get('login') ?? '')) {
        log(`login refused: unknown account ${JSON.stringify(form.get('login'))}`);
        ctx.respond = false; // interactionFinished writes the 303 itself
        await provider.interactionFinished(ctx.req, ctx.res, {
          error: 'access_denied',
          error_description: 'unknown account',
        }, { mergeWithLastSubmission: false });
        return;
      }
    }
    await next();
  });

  // Tamper hook, on the token endpoint's response (provider.use puts this middleware before the
  // provider's own routes, so it wraps them). Everything but the id_token is left as the provider
  // made it; the pending mode is consumed by the first response that carries an id_token.
  provider.use(async (ctx, next) => {
    await next();
    if (pendingTamper === null || ctx.method !== 'POST' || ctx.path !== tokenPath) return;
    const body = ctx.body;
    if (!body || typeof body !== 'object' || typeof body.id_token !== 'string') return;
    const mode = pendingTamper;
    pendingTamper = null;
    const { header, payload } = decodeJwt(body.id_token);
    ctx.body = { ...body, id_token: TAMPER_MODES[mode](header, payload) };
    log(`token response: id_token tampered (${mode})`);
  });

  provider.on('server_error', (_ctx, err) => log('server_error:', err));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error',
    'backchannel.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (_ctx, err) => log(`${event}: ${err.name}: ${err.message}`,
      err.error_description ? `(${err.error_description})` : ''));
  }
  return provider;
}

// ---------------------------------------------------------------------------
// HTTP server: the /__test/* hooks, then the provider
// ---------------------------------------------------------------------------
let issuer;
let provider;
let providerHandler;
let jwksPath;

function useProvider(next) {
  provider = next;
  providerHandler = next.callback();
  jwksPath = new URL(next.urlFor('jwks')).pathname;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function readJson(req) {
  const text = (await readBody(req)).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not JSON: ${err.message}`);
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const isPlainObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

const hooks = {
  // Merge accounts into the map: {"<id>": {claims...}}; a null value deletes the account.
  'POST /__test/accounts': async (req) => {
    const body = await readJson(req);
    if (!isPlainObject(body)) throw new HttpError(400, 'expected {"<accountId>": {claims} | null, ...}');
    for (const [id, claims] of Object.entries(body)) {
      if (claims === null) {
        accounts.delete(id);
      } else if (isPlainObject(claims)) {
        accounts.set(id, claims);
      } else {
        throw new HttpError(400, `account ${JSON.stringify(id)}: expected a claims object or null`);
      }
    }
    log(`accounts updated: ${Object.keys(body).join(', ')}`);
    return null;
  },
  // Arm a one-shot tamper of the next token response's id_token ({"mode": null} disarms).
  'POST /__test/tamper': async (req) => {
    const { mode } = await readJson(req);
    if (mode !== null && !Object.hasOwn(TAMPER_MODES, mode)) {
      throw new HttpError(400, `unknown mode ${JSON.stringify(mode)}; one of: ${Object.keys(TAMPER_MODES).join(', ')}`);
    }
    pendingTamper = mode;
    log(`tamper armed: ${mode}`);
    return null;
  },
  // Rotate the signing key: a new key (new kid) signs from now on and is published first in the
  // JWKS; the old keys stay published. oidc-provider reads its keys once, at construction, so the
  // provider is rebuilt in place with the new key set. Its state (sessions, grants, codes, tokens)
  // lives in the in-memory adapter, which is per process, not per provider instance, and the cookie
  // keys are unchanged, so logins in progress and issued tokens carry on across the rotation.
  'POST /__test/rotate': async () => {
    signingKeys = [newSigningKey(), ...signingKeys];
    useProvider(buildProvider(issuer));
    log(`signing key rotated: now ${signingKeys[0].kid}; published: ${signingKeys.map((k) => k.kid).join(', ')}`);
    return null;
  },
  'GET /__test/stats': async () => ({ jwks_fetches: stats.jwks_fetches }),
  // A back-channel logout token as this IdP would send it, signed with its current key (or,
  // with "forge": true, with a throw-away key under the current kid): {"aud", "sid"?, "sub"?,
  // "claims"?: {...overrides, null deletes}} -> {"logout_token": "..."}. It lets a test
  // present tokens that are wrong in one way each, and replay one.
  'POST /__test/logout-token': async (req) => {
    const body = await readJson(req);
    if (!isPlainObject(body) || typeof body.aud !== 'string') {
      throw new HttpError(400, 'expected {"aud": "<client_id>", "sid"?, "sub"?, "claims"?, "forge"?}');
    }
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      iss: issuer,
      aud: body.aud,
      iat: now,
      exp: now + 120,
      jti: crypto.randomBytes(12).toString('base64url'),
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
    };
    if (typeof body.sid === 'string') payload.sid = body.sid;
    if (typeof body.sub === 'string') payload.sub = body.sub;
    for (const [k, v] of Object.entries(body.claims ?? {})) {
      if (v === null) delete payload[k]; else payload[k] = v;
    }
    const key = signingKeys[0];
    const signer = body.forge ? newSigningKey().privateKey : key.privateKey;
    const token = signEs256({ alg: 'ES256', kid: key.kid, typ: 'logout+jwt' }, payload, signer);
    return { logout_token: token };
  },
};

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  if (path.startsWith('/__test/')) {
    const hook = hooks[`${req.method} ${path}`];
    try {
      if (!hook) throw new HttpError(404, `no such test hook: ${req.method} ${path}`);
      const result = await hook(req);
      if (result === null) {
        res.writeHead(204);
        res.end();
      } else {
        sendJson(res, 200, result);
      }
    } catch (err) {
      if (!(err instanceof HttpError)) log('hook error:', err);
      sendJson(res, err.status ?? 500, { error: err.message });
    }
    return;
  }
  if (!providerHandler) {
    sendJson(res, 503, { error: 'starting' });
    return;
  }
  if (req.method === 'GET' && path === jwksPath) stats.jwks_fetches += 1;
  providerHandler(req, res);
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
  console.error('idp: cannot listen:', err.message);
  process.exit(1);
});
server.listen(listenPort, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  useProvider(buildProvider(issuer));
  log(`listening, ${clients.length} client(s), ${accounts.size} account(s), key ${signingKeys[0].kid}`);
  writeReadyLine({ issuer });
});
