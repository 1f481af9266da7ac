// A real OpenID Connect provider (panva/oidc-provider) on loopback, for the console's sign-in
// tests: authorization code with PKCE, refresh tokens, RP-initiated logout, RS256 JWT access
// tokens for the services (audience "opora") carrying the person's roles and agency, as the
// region's Keycloak does. Its own login page (devInteractions) takes any login and no password
// check; PEOPLE names who is who. Settings come from the environment:
//   PORT           where to listen on 127.0.0.1
//   ISSUER         the issuer it claims (default http://127.0.0.1:PORT; a different one makes
//                  the "wrong issuer" provider)
//   REDIRECT_URIS  the console's callback URLs, comma-separated
//   LOGOUT_URIS    where the console may be sent back after sign-out, comma-separated
//   PEOPLE         JSON {"sub": {"name": ..., "roles": [...], "agency": ...}}
//   ACCESS_TTL     access token lifetime in seconds (default 300)
// Client "opora-console" gets tokens for the services; "opora-console-other" gets tokens for
// another audience (the "wrong audience" case). Both have the secret "console-secret".
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const redirects = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const logouts = (process.env.LOGOUT_URIS || '').split(',').filter(Boolean);
const people = JSON.parse(process.env.PEOPLE || '{}');
const audiences = { 'opora-console': 'opora', 'opora-console-other': 'another-system' };

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

const client = (id) => ({
  client_id: id,
  client_secret: 'console-secret',
  redirect_uris: redirects,
  post_logout_redirect_uris: logouts,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(issuer, {
  clients: [client('opora-console'), client('opora-console-other')],
  jwks: { keys: [key] },
  cookies: { keys: ['opora-test-cookie-key'] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'offline_access'],
  claims: { openid: ['sub'], profile: ['name'] },
  ttl: {
    AccessToken: Number(process.env.ACCESS_TTL || 300),
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => 'urn:opora:services',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, _resource, c) => ({
        scope: 'profile',
        audience: audiences[c.clientId],
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, name: people[sub]?.name ?? sub }),
  }),
  extraTokenClaims: async (_ctx, token) => {
    if (token.kind !== 'AccessToken') return undefined;
    const person = people[token.accountId] || {};
    return { roles: person.roles || [], agency: person.agency, name: person.name };
  },
  // Every client here is the console, trusted: no consent screen, a refresh token always.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile offline_access');
    grant.addResourceScope('urn:opora:services', 'profile');
    await grant.save();
    return grant;
  },
  issueRefreshToken: async (_ctx, c) => c.grantTypeAllowed('refresh_token'),
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} listening on 127.0.0.1:${port}`);
});
