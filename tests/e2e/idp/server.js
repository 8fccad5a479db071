// A real OpenID Connect provider (npm `oidc-provider` 8.x) for postern's end-to-end tests and `make demo`.
//
// It is the unmodified library with a test configuration: a plain-http issuer on loopback, the library's
// development login form (any password), a fixed set of accounts and their claims, and one confidential
// client per signing algorithm. Nothing here is safe for production; it only ever listens on loopback.
//
// Usage: node server.js [PORT]      (or IDP_PORT=...; default 9000)
// Environment:
//   IDP_HOST             address to listen on and to name in the issuer (default 127.0.0.1; loopback only)
//   IDP_REDIRECT_URIS    comma-separated redirect URIs for the clients
//                        (default https://auth.localhost:8443/oauth2/callback)
//   IDP_CLIENT_SECRET    secret of the clients (default "postern-test-secret")
//   IDP_TOKEN_AUTH       token endpoint auth method: client_secret_basic (default) or client_secret_post
//   IDP_STRICT_ACCOUNTS  "1": only the accounts below may log in (default: any other email logs in as a
//                        verified user without groups)
// Prints "IdP ready at <issuer>" on stdout once it listens.

import crypto from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || process.env.IDP_PORT || 9000);
const host = process.env.IDP_HOST || '127.0.0.1';
if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
  console.error(`IDP_HOST=${host}: this test IdP only listens on loopback`);
  process.exit(2);
}
const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
const redirectUris = (process.env.IDP_REDIRECT_URIS || 'https://auth.localhost:8443/oauth2/callback')
  .split(',').map((s) => s.trim()).filter(Boolean);
const clientSecret = process.env.IDP_CLIENT_SECRET || 'postern-test-secret';
const tokenAuth = process.env.IDP_TOKEN_AUTH || 'client_secret_basic';
const strictAccounts = process.env.IDP_STRICT_ACCOUNTS === '1';

// The people of the tests and the demo. Keys are the login typed into the form (lower-cased).
const ACCOUNTS = {
  'alice@example.com': { name: 'Alice Example', email_verified: true, groups: ['admins'] },
  'bob@example.com': { name: 'Bob Example', email_verified: true, groups: [] },
  'carol@other.example': { name: 'Carol Other', email_verified: true, groups: ['staff'] },
  'mallory@example.com': { name: 'Mallory Unverified', email_verified: false, groups: [] },
};

function account(login) {
  const email = String(login || '').trim().toLowerCase();
  const known = ACCOUNTS[email];
  if (!known && (strictAccounts || !/^[^@\s]+@[^@\s]+$/.test(email))) return undefined;
  const claims = known || { name: email.split('@')[0], email_verified: true, groups: [] };
  return {
    accountId: email,
    async claims() {
      // `sub` is the email itself so that logs are easy to read.
      return {
        sub: email,
        email,
        email_verified: claims.email_verified,
        name: claims.name,
        groups: claims.groups,
      };
    },
  };
}

// Fresh signing keys at every start: one RSA key for RS256, one P-256 key for ES256.
function jwk(type, options, kid) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}
const jwks = {
  keys: [
    { ...jwk('rsa', { modulusLength: 2048 }, 'rs256-test'), alg: 'RS256' },
    { ...jwk('ec', { namedCurve: 'P-256' }, 'es256-test'), alg: 'ES256' },
  ],
};

const client = (clientId, alg) => ({
  client_id: clientId,
  client_secret: clientSecret,
  redirect_uris: redirectUris,
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: tokenAuth,
  id_token_signed_response_alg: alg,
});

const configuration = {
  clients: [client('postern', 'RS256'), client('postern-es256', 'ES256')],
  jwks,
  findAccount: (ctx, id) => account(id),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Put the scope's claims into the id_token itself (postern reads them there), not only into userinfo.
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: true }, // the login form that takes any password
    rpInitiatedLogout: { enabled: true },
  },
  // First-party clients: consent is implied, so the user only sees the login form.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
  // SameSite=Lax on every cookie: a plain-http issuer cannot set `SameSite=None` cookies in browsers.
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64')],
    long: { sameSite: 'lax', signed: true },
    short: { sameSite: 'lax', signed: true },
  },
  ttl: {
    Session: 3600,
    Interaction: 600,
    Grant: 3600,
    AuthorizationCode: 60,
    AccessToken: 600,
    IdToken: 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>IdP error</title><h1>IdP error</h1><pre>${
      Object.entries(out).map(([k, v]) => `${k}: ${String(v).replace(/[<>&]/g, '')}`).join('\n')
    }</pre>`;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

// One log line per event that helps debug a failed login; never tokens.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error',
  'userinfo.error', 'discovery.error', 'jwks.error', 'interaction.ended']) {
  provider.on(event, (ctx, err) => {
    const detail = err ? `${err.name || ''} ${err.message || ''} ${err.error_description || ''}` : '';
    console.log(`[idp] ${event} ${ctx?.method || ''} ${ctx?.path || ''} ${detail}`.trim());
  });
}
provider.use(async (ctx, next) => {
  await next();
  console.log(`[idp] ${ctx.method} ${ctx.path} -> ${ctx.status}`);
});

const server = createServer(provider.callback());
server.listen(port, host, () => {
  console.log(`IdP ready at ${issuer} (clients postern [RS256], postern-es256 [ES256]; `
    + `token auth ${tokenAuth}; redirect_uris ${redirectUris.join(' ')})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server.close(); process.exit(0); });
}
