// A real OpenID Connect provider (npm `oidc-provider`, pinned by the
// tests) for mcpgate's upstream sign-in tests. Listens on 127.0.0.1:0 and
// prints `PORT <n>`; then reads ONE line of JSON from stdin,
// {"client_id","client_secret","redirect_uris"}, configures the provider
// with issuer http://127.0.0.1:<n> and that single client, and prints
// `READY`. Sign-in and consent use the provider's own development
// interaction pages (any login name, any password; the login name becomes
// `sub`). Consent is remembered by the provider (its grant, found through
// its session cookie), so a second authorization in the same browser skips
// the consent page: the precondition of the confused-deputy attack.
import http from 'node:http';
import readline from 'node:readline';

const modulePath = process.env.OIDC_PROVIDER_MODULE;
const { default: Provider } = await import(modulePath);

let handler = null;
const server = http.createServer((req, res) => {
  if (handler) {
    handler(req, res);
  } else {
    res.statusCode = 503;
    res.end('not ready');
  }
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});

const rl = readline.createInterface({ input: process.stdin });
rl.once('line', (line) => {
  const cfg = JSON.parse(line);
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: cfg.client_id,
      client_secret: cfg.client_secret,
      redirect_uris: cfg.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          const domain = id.startsWith('outsider') ? 'elsewhere.example' : 'corp.example';
          return {
            sub: id,
            email: `${id}@${domain}`,
            email_verified: true,
            name: `User ${id}`,
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Put the scope's claims into the ID token (mcpgate reads them there).
    conformIdTokenClaims: false,
    cookies: { keys: ['mcpgate-test-only-cookie-key'] },
    features: { devInteractions: { enabled: true } },
  });
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`server_error: ${err && err.stack}\n`);
  });
  handler = provider.callback();
  process.stdout.write('READY\n');
});
rl.on('close', () => process.exit(0));
