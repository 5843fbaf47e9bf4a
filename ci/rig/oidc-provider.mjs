// A real OpenID provider (the npm package oidc-provider) over HTTPS on
// loopback, with one confidential client allowed the client-credentials
// grant, issuing JWT access tokens (librdkafka's OIDC method reads the
// token's exp and sub). Started by ci/rig/oidc.sh; every token-endpoint
// outcome is one JSON line on stdout (the rig's log), for the tests.
//
// Tokens for the scope OIDC_SCOPE are for the audience "kafka" (the broker);
// tokens for the scope "other-api" are for the audience "other-api" (another
// service: what a client configured with the wrong scope gets, and a broker
// expecting "kafka" must refuse).
//
// Environment: OIDC_PORT, OIDC_CERT, OIDC_KEY, OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET, OIDC_SCOPE; OIDC_TOKEN_TTL, the lifetime of every
// access token in seconds (default 600).
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const port = Number(env('OIDC_PORT'));
const scope = env('OIDC_SCOPE');
const ttl = Number(process.env.OIDC_TOKEN_TTL || 600);
if (!Number.isInteger(ttl) || ttl < 1) throw new Error(`OIDC_TOKEN_TTL=${process.env.OIDC_TOKEN_TTL}: seconds, 1 or more`);
const issuer = `https://127.0.0.1:${port}`;
const OTHER = 'other-api';
const say = (o) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...o }) + '\n');

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('OIDC_CLIENT_ID'),
    client_secret: env('OIDC_CLIENT_SECRET'),
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: [scope, OTHER],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx) => (ctx.oidc.params?.scope === OTHER ? `urn:${OTHER}` : 'urn:jobcomp-kafka:broker'),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => (resource === `urn:${OTHER}`
        ? { scope: OTHER, audience: OTHER, accessTokenFormat: 'jwt', accessTokenTTL: ttl }
        : { scope, audience: 'kafka', accessTokenFormat: 'jwt', accessTokenTTL: ttl }),
    },
  },
});
provider.proxy = false;
provider.on('grant.success', (ctx) => say({ event: 'grant.success', path: ctx.path, grant_type: ctx.oidc.params?.grant_type, client_id: ctx.oidc.client?.clientId, scope: ctx.oidc.params?.scope }));
provider.on('grant.error', (ctx, err) => say({ event: 'grant.error', path: ctx.path, grant_type: ctx.oidc.params?.grant_type, client_id: ctx.oidc.client?.clientId, error: err.error || String(err), description: err.error_description }));
provider.on('server_error', (ctx, err) => say({ event: 'server_error', error: String(err) }));

const server = https.createServer({ cert: fs.readFileSync(env('OIDC_CERT')), key: fs.readFileSync(env('OIDC_KEY')) }, provider.callback());
server.listen(port, '127.0.0.1', () => say({ event: 'listening', issuer, token_endpoint: `${issuer}/token`, token_ttl: ttl }));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
