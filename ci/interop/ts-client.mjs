// Interop: the official TypeScript MCP SDK client (@modelcontextprotocol/sdk) with its own OAuth
// support (StreamableHTTPClientTransport + an OAuthClientProvider) against `mcpgate serve --demo`.
// Run by ci/interop.sh, which passes:
//   MCPGATE_URL        base URL (http://127.0.0.1:PORT); the MCP server is $MCPGATE_URL/mcp/notes
//   MCPGATE_PASSWORD   the admin's current password (the one-time password on a fresh server)
//   MCPGATE_NEW_PASSWORD  chosen if the server asks for a new password at sign-in
//   SDK_DIR            directory whose node_modules holds @modelcontextprotocol/sdk
//   RESULT_FILE        (optional) where to write the JSON results for the matrix
// The shared headless user agent (ci/interop/headless.mjs) signs in and approves through the real
// login and consent forms. Only 127.0.0.1 is contacted.
// Prints `PASS name` / `FAIL name` per check; exits non-zero on any FAIL.
import fs from 'node:fs';
import { UserAgent } from './headless.mjs';
import { SdkAuthProvider, loadSdk } from './ts-sdk.mjs';

const BASE = process.env.MCPGATE_URL;
const PASSWORD = process.env.MCPGATE_PASSWORD;
const NEW_PASSWORD = process.env.MCPGATE_NEW_PASSWORD || PASSWORD;
const SDK_DIR = process.env.SDK_DIR;
if (!BASE || !PASSWORD || !SDK_DIR) { console.error('MCPGATE_URL, MCPGATE_PASSWORD, SDK_DIR required'); process.exit(2); }
const SERVER = `${BASE}/mcp/notes`;
const REDIRECT = 'http://127.0.0.1:1/callback'; // never contacted: the code is read from Location

const { version: SDK_VERSION, Client, StreamableHTTPClientTransport, UnauthorizedError } = await loadSdk(SDK_DIR);

// ---- results --------------------------------------------------------------------------------
const results = {}; // cell -> { ok, note }
let failed = false;
function check(name, ok, note = '') {
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${note ? ` — ${note}` : ''}`);
  if (!ok) failed = true;
  return ok;
}
function cell(name, ok, note = '') { results[name] = { ok, note }; }

// ---- traffic log (every request the SDK makes goes through this fetch) -------------------------
const log = [];
const loggingFetch = async (url, init) => {
  const r = await fetch(url, init);
  const u = new URL(typeof url === 'string' || url instanceof URL ? url : url.url);
  const body = init?.body ? String(init.body) : '';
  log.push({ method: init?.method || 'GET', path: u.pathname, status: r.status,
    www: r.headers.get('www-authenticate'), body });
  if (r.status === 403 && /insufficient_scope/.test(r.headers.get('www-authenticate') || '')) provider.stepUpSeen = true;
  return r;
};

// ---- headless user agent: the interop drivers' shared one (ci/interop/headless.mjs) -----------
const ua = new UserAgent({ password: PASSWORD, newPassword: NEW_PASSWORD });
const consentSeen = () => ua.consents.map((c) => c.scopes); // scopes shown on each consent page

// ---- the SDK's OAuthClientProvider (ci/interop/ts-sdk.mjs) -----------------------------------
const provider = new SdkAuthProvider({ ua, redirect: REDIRECT, clientName: `mcpgate interop (TypeScript SDK ${SDK_VERSION})` });
const scopesOf = (t) => (t?.scope || '').split(' ').filter(Boolean);

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(SERVER), { authProvider: provider, fetch: loggingFetch });
  const client = new Client({ name: 'mcpgate-interop-ts', version: '1.0.0' });
  return { client, transport };
}

// Runs op(); when the SDK stops for a browser redirect (UnauthorizedError), completes it with
// finishAuth(code) and runs op() again.
async function withAuth(transport, op) {
  try { return await op(); } catch (e) {
    if (!(e instanceof UnauthorizedError) && !/Unauthorized/.test(String(e))) throw e;
    const c = provider.codes.at(-1);
    if (!c) throw e;
    await transport.finishAuth(c.code);
    return await op();
  }
}

let client, transport;
try {
  // 1. connect: 401 -> PRM -> AS metadata -> DCR -> authorize (PKCE) -> consent -> token
  ({ client, transport } = await connect());
  try { await client.connect(transport); } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    const c = provider.codes.at(-1);
    if (!c) throw e;
    await transport.finishAuth(c.code);
    ({ client, transport } = await connect());
    await client.connect(transport);
  }
  const first401 = log.find((l) => l.path === '/mcp/notes' && l.status === 401);
  const prm = log.find((l) => l.path === '/.well-known/oauth-protected-resource/mcp/notes' && l.status === 200);
  const asm = log.find((l) => l.path.startsWith('/.well-known/oauth-authorization-server') && l.status === 200);
  const discovery = check('discovery', !!(first401 && /resource_metadata=/.test(first401.www || '') && prm && asm),
    `401 challenge, PRM, AS metadata`);
  cell('discovery', discovery);
  const reg = log.find((l) => l.path === '/oauth/register');
  cell('registration', check('registration (DCR)', reg?.status === 201 && !!provider._client?.client_id, `client_id ${provider._client?.client_id}`));
  const au = provider.authUrls[0];
  const pkce = !!au && au.searchParams.get('code_challenge_method') === 'S256' && !!au.searchParams.get('code_challenge')
    && au.searchParams.get('resource') === SERVER;
  const tok = log.find((l) => l.path === '/oauth/token' && /grant_type=authorization_code/.test(l.body));
  const codeOk = pkce && tok?.status === 200 && /code_verifier=/.test(tok.body) && scopesOf(provider._tokens).includes('notes:read')
    && provider.codes[0]?.iss === BASE && consentSeen().length >= 1;
  cell('authcode', check('auth code + PKCE (S256, resource, consent approved through the form, iss)', codeOk,
    `scopes shown on consent: ${JSON.stringify(consentSeen()[0])}; token scope "${provider._tokens?.scope}"`));

  // 2. tools
  const list = await client.listTools();
  const names = list.tools.map((t) => t.name);
  const listed = check('tools/list', names.includes('list_notes') && names.includes('add_note'), names.join(','));
  const r = await client.callTool({ name: 'list_notes', arguments: {} });
  const called = check('tools/call list_notes', !r.isError, JSON.stringify(r.content).slice(0, 80));
  cell('tools', listed && called);

  // 3. step-up: add_note needs notes:write
  const addNote = () => client.callTool({ name: 'add_note', arguments: { title: 'interop', body: 'from the TypeScript SDK' } });
  const challengeOk = (from) => {
    const ch = log.slice(from).find((l) => l.path === '/mcp/notes' && l.status === 403);
    return [!!ch && /error="insufficient_scope"/.test(ch.www || '') && /scope="[^"]*notes:write/.test(ch.www || ''), ch?.www || 'no 403 seen'];
  };
  let logBefore = log.length;
  let codesBefore = provider.codes.length;
  let stepOk = false, stepNote = '';
  let plainError;
  let add;
  try { add = await withAuth(transport, addNote); } catch (e) { plainError = e; }
  const [chOk, chText] = challengeOk(logBefore);
  check('step-up: 403 insufficient_scope challenge names notes:write', chOk, chText);
  if (!plainError) {
    const reauth = provider.codes.length > codesBefore && scopesOf(provider._tokens).includes('notes:write');
    check('step-up: SDK re-authorized with notes:write (consent approved again)', reauth, `token scope "${provider._tokens?.scope}"`);
    check('step-up: add_note retried and succeeded', !add.isError, JSON.stringify(add.content).slice(0, 80));
    stepOk = chOk && reauth && !add.isError;
  } else {
    // SDK behaviour seen with 1.32.x: on 403 insufficient_scope, auth() first uses the stored
    // refresh token (a refresh cannot widen the grant), gets notes:read back, retries, gets the
    // same 403 and gives up. Record it, then verify the step-up with a provider that hides its
    // refresh token while a step-up is pending.
    const refreshed = log.slice(logBefore).some((l) => l.path === '/oauth/token' && /grant_type=refresh_token/.test(l.body));
    const msg = String(plainError.message || plainError);
    console.log(`INFO step-up with a plain provider: ${msg}${refreshed ? ' (the SDK refreshed instead of re-authorizing)' : ''}`);
    provider.hideRefreshOnStepUp = true;
    logBefore = log.length; codesBefore = provider.codes.length;
        try {
      ({ client, transport } = await connect());
      await client.connect(transport);
      try { add = await addNote(); } catch (e) {
        if (!(e instanceof UnauthorizedError)) throw e;
        await transport.finishAuth(provider.codes.at(-1).code);
        // Reconnect with the new token (a fresh MCP session for the same user and client).
        await client.close().catch(() => {});
        ({ client, transport } = await connect());
        await client.connect(transport);
        add = await addNote();
      }
      const [ch2] = challengeOk(logBefore);
      const reauth = provider.codes.length > codesBefore && scopesOf(provider._tokens).includes('notes:write');
      check('step-up (provider hides refresh_token while stepping up): SDK re-authorized with notes:write, consent approved again', ch2 && reauth,
        `consent scopes ${JSON.stringify(consentSeen().at(-1))}; token scope "${provider._tokens?.scope}"`);
      check('step-up: add_note retried and succeeded', !add.isError, JSON.stringify(add.content).slice(0, 80));
      stepOk = chOk && ch2 && reauth && !add.isError;
      stepNote = `plain provider fails: on 403 insufficient_scope the SDK refreshes first (a refresh cannot widen the grant) and gives up ("${msg}"). `
        + `Passes when the provider hides its refresh token while a step-up is pending: the SDK then re-authorizes the same client `
        + `with the challenge's scopes, the user approves the new scope, and the call is retried`;
      results.stepupWorkaround = true;
    } catch (e) {
      check('step-up: SDK completes step-up', false, String(e.message || e));
      stepNote = `fails: ${msg}`;
    }
    provider.hideRefreshOnStepUp = false;
  }
  cell('stepup', stepOk, stepNote);
  if (results.stepupWorkaround) { results.stepup.workaround = true; delete results.stepupWorkaround; }

  // 4. refresh: invalidate the access token; the SDK gets a 401 and uses the refresh token.
  const rt = provider._tokens?.refresh_token;
  check('refresh: token response carried a refresh_token', !!rt);
  const codesBeforeRefresh = provider.codes.length;
  const logBeforeRefresh = log.length;
  provider._tokens = { ...provider._tokens, access_token: 'expired-or-revoked-token' };
  const again = await withAuth(transport, () => client.callTool({ name: 'list_notes', arguments: {} }));
  const rf = log.slice(logBeforeRefresh).find((l) => l.path === '/oauth/token' && /grant_type=refresh_token/.test(l.body));
  const refreshOk = !!rf && rf.status === 200 && provider.codes.length === codesBeforeRefresh && !again.isError
    && provider._tokens.access_token !== 'expired-or-revoked-token';
  cell('refresh', check('refresh: 401 → SDK refresh_token grant → call retried', refreshOk,
    rf ? `token endpoint ${rf.status}` : 'no refresh_token grant seen'));
  await client.close();
} catch (e) {
  check('flow', false, e.stack || String(e));
  for (const k of ['discovery', 'registration', 'authcode', 'tools', 'stepup', 'refresh']) if (!results[k]) cell(k, false, 'not reached');
}

if (process.env.RESULT_FILE) {
  fs.writeFileSync(process.env.RESULT_FILE, JSON.stringify({ client: 'TypeScript SDK (`@modelcontextprotocol/sdk`)', version: SDK_VERSION, cells: results }, null, 2));
}
process.exit(failed ? 1 : 0);
