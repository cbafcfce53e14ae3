// A real, certified OpenID Connect provider (panva/node-oidc-provider) for bffgate's OIDC tests.
//
//   node server.mjs [port]        (port 0 or absent: an ephemeral loopback port)
//
// Prints one line `BFFGATE_TEST_ISSUER <issuer>` on stdout once it accepts connections.
// Configured like a strict production provider: PKCE required, refresh-token rotation with reuse
// detection (a reused refresh token revokes the whole grant), 20-second access tokens, opaque access
// tokens, revocation, introspection, RP-initiated and back-channel logout, client credentials.
// Clients register dynamically (RFC 7591), so
// each test brings its own redirect URI; one static client matches the README's settings.
// Resource indicators (RFC 8707): two APIs, RESOURCE_SERVERS below, each get JWT access tokens whose
// audience is their resource indicator; a token asked without `resource` stays the opaque userinfo
// token, as before.
//
// Test-only extras, outside the provider's routes:
//   GET  /resource/me                 a protected resource: 200 {sub, client_id} for a valid access token
//   GET  /__test/stats?client_id=     token-endpoint calls of that client by grant type and outcome
//                                     ("refresh_token 200", or "refresh_token 200 <resource>" for a
//                                     grant that named a resource), and back-channel logout
//                                     deliveries (backchannel_ok / _error)
//   POST /__test/forge?client_id=&mode=
//        the client's next token answer carries a bad ID token: mode = foreign-key | unknown-kid |
//        alg-none | hs256-public-key | other-subject (validly signed, sub "mallory") |
//        no-sid (validly signed, without the sid claim)
//   POST /__test/hold?client_id=      the client's next successful refresh_token answer is held (the
//                                     tokens are issued, the answer not yet sent) until /__test/release
//   GET  /__test/held?client_id=      answers once such an answer is being held (an event, not a poll)
//   POST /__test/release?client_id=   sends the held answer
//   GET  /__test/last-tokens?client_id=  the tokens of the client's last token answer (to introspect)

import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import Provider, { errors } from 'oidc-provider';

const ACCESS_TOKEN_TTL = 20;
// RFC 8707 resource indicators the provider issues JWT access tokens for, and the scopes of each.
const RESOURCE_SERVERS = {
  'https://orders.example.test/': 'orders:read orders:write',
  'https://billing.example.test/': 'billing:read',
};
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

function rsaKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  return { jwk: { ...jwk, kid, use: 'sig', alg: 'RS256' }, privateKey };
}

const signing = rsaKey();
const foreign = rsaKey(); // never published: ID tokens signed with it must be refused

const accounts = {
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: `User ${sub}`,
          preferred_username: sub,
          email: `${sub}@example.test`,
          email_verified: true,
        };
      },
    };
  },
};

const stats = new Map(); // client_id -> {"<grant_type> <status>": count, grants_revoked: count}
const forgeries = new Map(); // client_id -> mode for its next token answer
const lastTokens = new Map(); // client_id -> the body of its last token answer
const holds = new Map(); // client_id -> {used, held, release}: from /__test/hold to /__test/release

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

function count(clientId, key) {
  if (!clientId) return;
  const entry = stats.get(clientId) ?? {};
  entry[key] = (entry[key] ?? 0) + 1;
  stats.set(clientId, entry);
}

async function forge(idToken, mode) {
  const claims = decodeJwt(idToken);
  const { kid } = decodeProtectedHeader(idToken);
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  switch (mode) {
    case 'foreign-key': // the provider's kid, another key: the signature does not verify
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).sign(foreign.privateKey);
    case 'unknown-kid': // a kid the JWKS never had, even after a refetch
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'unknown-kid' }).sign(foreign.privateKey);
    case 'alg-none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    case 'hs256-public-key': { // algorithm confusion: HMAC keyed with the provider's public key
      const publicKey = JSON.stringify({ e: signing.jwk.e, kty: 'RSA', n: signing.jwk.n });
      return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid }).sign(Buffer.from(publicKey));
    }
    case 'other-subject': // another user's identity, signed with the provider's own key
      return new SignJWT({ ...claims, sub: 'mallory' }).setProtectedHeader({ alg: 'RS256', kid }).sign(signing.privateKey);
    case 'no-sid': { // a valid refresh ID token that carries no sid (allowed by OIDC Core 12.2)
      const { sid, ...rest } = claims;
      return new SignJWT(rest).setProtectedHeader({ alg: 'RS256', kid }).sign(signing.privateKey);
    }
    default:
      throw new Error(`unknown forge mode ${mode}`);
  }
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    ...accounts,
    clients: [
      {
        client_id: 'bffgate-demo',
        client_secret: 'bffgate-demo-secret-for-local-testing-only',
        redirect_uris: ['http://127.0.0.1:8000/api/auth/callback'],
        post_logout_redirect_uris: ['http://127.0.0.1:8000/'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    ],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    cookies: { keys: [createHash('sha256').update(signing.jwk.d).digest('hex')] },
    jwks: { keys: [signing.jwk] },
    pkce: { required: () => true },
    // oidc-provider's SSRF guard refuses loopback addresses for its outgoing calls (back-channel
    // logout tokens); the gateways under test listen on 127.0.0.1, so only those calls skip it.
    fetch(url, options) {
      if (new URL(url).hostname === '127.0.0.1') delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
    rotateRefreshToken: true,
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    features: {
      devInteractions: { enabled: true }, // the provider's own login and consent forms
      registration: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true }, // clients registered with a backchannel_logout_uri
      resourceIndicators: {
        enabled: true,
        // No resource asked: no audience, the opaque userinfo token (the session's own token).
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        async getResourceServerInfo(ctx, resourceIndicator) {
          const scope = RESOURCE_SERVERS[resourceIndicator];
          if (!scope) throw new errors.InvalidTarget();
          return {
            scope,
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      clientCredentials: { enabled: true }, // clients registered with the client_credentials grant
    },
  });

  provider.on('grant.revoked', (ctx) => count(ctx.oidc?.client?.clientId, 'grants_revoked'));
  // After an end-session, the logout tokens the provider delivered (its caller got 200) or failed to.
  provider.on('backchannel.success', (ctx, client) => count(client.clientId, 'backchannel_ok'));
  provider.on('backchannel.error', (ctx, err, client) => {
    count(client.clientId, 'backchannel_error');
    console.error(`back-channel logout to ${client.backchannelLogoutUri} failed: ${err.message}${err.cause ? ` (${err.cause.code ?? err.cause.message})` : ''}`);
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== '/token' || ctx.method !== 'POST') return;
    const clientId = ctx.oidc?.client?.clientId;
    const resource = ctx.oidc?.params?.resource;
    count(clientId, `${ctx.oidc?.params?.grant_type ?? 'unknown'} ${ctx.status}${resource ? ` ${resource}` : ''}`);
    const mode = forgeries.get(clientId);
    if (mode && ctx.status === 200 && ctx.body?.id_token) {
      forgeries.delete(clientId);
      ctx.body = { ...ctx.body, id_token: await forge(ctx.body.id_token, mode) };
    }
    if (ctx.status === 200) lastTokens.set(clientId, ctx.body);
    const hold = holds.get(clientId);
    if (hold && !hold.used && ctx.status === 200 && ctx.oidc?.params?.grant_type === 'refresh_token') {
      hold.used = true;
      hold.held.resolve();
      await hold.release.promise; // the tokens exist; the gateway has not received them yet
    }
  });

  const handle = provider.callback();
  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    const json = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/resource/me') {
      const header = req.headers.authorization ?? '';
      const token = header.startsWith('Bearer ') ? await provider.AccessToken.find(header.slice(7)) : undefined;
      if (!token || token.isExpired) return json(401, { error: 'invalid_token' });
      return json(200, { sub: token.accountId, client_id: token.clientId });
    }
    if (url.pathname === '/__test/stats') {
      return json(200, stats.get(url.searchParams.get('client_id')) ?? {});
    }
    const testClient = url.searchParams.get('client_id');
    if (url.pathname === '/__test/hold' && req.method === 'POST') {
      holds.set(testClient, { used: false, held: deferred(), release: deferred() });
      return json(200, { ok: true });
    }
    if (url.pathname === '/__test/held') {
      const hold = holds.get(testClient);
      if (!hold) return json(404, { error: 'no hold armed' });
      await hold.held.promise;
      return json(200, { ok: true });
    }
    if (url.pathname === '/__test/release' && req.method === 'POST') {
      const hold = holds.get(testClient);
      holds.delete(testClient);
      if (!hold) return json(404, { error: 'nothing held' });
      hold.release.resolve();
      return json(200, { ok: true });
    }
    if (url.pathname === '/__test/last-tokens') {
      return json(200, lastTokens.get(testClient) ?? {});
    }
    if (url.pathname === '/__test/forge' && req.method === 'POST') {
      forgeries.set(url.searchParams.get('client_id'), url.searchParams.get('mode'));
      return json(200, { ok: true });
    }
    return handle(req, res);
  });
  process.stdout.write(`BFFGATE_TEST_ISSUER ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
