// Interop: npm `oidc-provider` as a THIRD-PARTY authorization server in front of mcpgate's
// gateway (ci/interop.sh). Listens on 127.0.0.1:0 and prints `ISSUER http://127.0.0.1:<port>`
// once it serves. Configuration:
//   - PKCE required for every client, S256 only (oidc-provider supports no other method);
//   - dynamic client registration (RFC 7591, open: no initial access token);
//   - resource indicators (RFC 8707): the gateway's `notes` resource, $GATEWAY_URL/mcp/notes,
//     gets JWT access tokens (RFC 9068, `typ: at+jwt`, ES256) whose `aud` is that resource and
//     whose scopes are `notes:read` / `notes:write`. A second resource, $GATEWAY_URL/mcp/elsewhere,
//     is known too (same format): the gateway must refuse its tokens at /mcp/notes. An
//     authorization without `resource` gets an opaque access token (userinfo only);
//   - refresh tokens for clients registered with the refresh_token grant;
//   - DPoP (RFC 9449, always on in oidc-provider 9): a token request with a proof gets a
//     DPoP-bound access token (`cnf.jkt`)
//     and, for a public client, a bound refresh token; without a proof, bearer tokens;
//   - the development interactions: a login form accepting any login name and password, and a
//     consent form (both submitted headlessly by the drivers).
// Environment: OIDC_PROVIDER_MODULE (the package's lib/index.js), GATEWAY_URL. Stops on SIGTERM
// (ci/interop.sh kills it by pid). Only 127.0.0.1 is listened on.
import crypto from 'node:crypto';
import http from 'node:http';

const { default: Provider, errors } = await import(process.env.OIDC_PROVIDER_MODULE);
const GATEWAY = process.env.GATEWAY_URL;
if (!GATEWAY) { console.error('GATEWAY_URL required'); process.exit(2); }
const RESOURCES = {
  [`${GATEWAY}/mcp/notes`]: 'notes:read notes:write',
  [`${GATEWAY}/mcp/elsewhere`]: 'notes:read notes:write',
};

function jwk(kind, opts, alg) {
  const { privateKey } = crypto.generateKeyPairSync(kind, opts);
  const key = privateKey.export({ format: 'jwk' });
  return { ...key, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}` };
}
// ES256 for the access tokens; RS256 because ID tokens default to it.
const jwks = { keys: [jwk('ec', { namedCurve: 'P-256' }, 'ES256'), jwk('rsa', { modulusLength: 2048 }, 'RS256')] };

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access'],
    pkce: { required: () => true },
    async findAccount(_ctx, id) {
      return { accountId: id, async claims() { return { sub: id }; } };
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No `resource` in the request: no resource server, an opaque (userinfo) token.
        defaultResource: async () => undefined,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          const scope = RESOURCES[resourceIndicator];
          if (!scope) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          return {
            scope,
            audience: resourceIndicator,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider server_error: ${err?.stack}\n`));
  const handle = provider.callback();
  server.on('request', handle);
  process.stdout.write(`ISSUER ${issuer}\n`);
});
process.on('SIGTERM', () => process.exit(0));
