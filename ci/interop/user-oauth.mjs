// Interop: each user's own upstream account (`auth = { type = "user_oauth" }`,
// docs/upstream-credentials.md) with real parts. ci/interop.sh runs a third mcpgate whose upstream
// `partner` is the gateway that trusts npm `oidc-provider` (its MCP server accepts only the
// provider's tokens for its own audience); the `partner` upstream has neither issuer nor endpoints
// configured, so mcpgate discovers the provider from the upstream's protected-resource metadata.
// The gateway's client at the provider was registered by ci/interop.sh (DCR). Passes:
//   MCPGATE_BIN, PARTNER_URL (the MCP server $BASE/mcp/partner), MCPGATE_URL ($BASE),
//   MCPGATE_PASSWORD, MCPGATE_NEW_PASSWORD (the admin's), SDK_DIR, SERVER_CONFIG, SERVER_DATA
//   (the third mcpgate's, for `mcpgate users connections`), UPSTREAM_CONFIG, UPSTREAM_DATA (the
//   trusting gateway's, for its audit log), OIDC_PROVIDER_VERSION, RESULT_FILE.
// Two rows: the official TypeScript SDK client and mcpgate's client, each: the
// URL-elicitation-required error with a connect URL; the account connected through mcpgate's
// sign-in, the connect page and the provider's sign-in and consent; the call retried with the
// user's own provider token (the upstream's audit log names the provider's subject).
// Prints PASS/FAIL lines; exits non-zero on any FAIL. Only 127.0.0.1 is contacted.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Results, UserAgent, runCli, short } from './headless.mjs';
import { SdkAuthProvider, loadSdk } from './ts-sdk.mjs';

const env = process.env;
const { MCPGATE_BIN: BIN, PARTNER_URL, MCPGATE_URL: BASE, SDK_DIR } = env;
for (const k of ['MCPGATE_BIN', 'PARTNER_URL', 'MCPGATE_URL', 'MCPGATE_PASSWORD', 'SDK_DIR', 'SERVER_CONFIG', 'SERVER_DATA', 'UPSTREAM_CONFIG', 'UPSTREAM_DATA']) {
  if (!env[k]) { console.error(`${k} required`); process.exit(2); }
}
const PASSWORD = env.MCPGATE_PASSWORD;
const NEW_PASSWORD = env.MCPGATE_NEW_PASSWORD || PASSWORD;
const REDIRECT = 'http://127.0.0.1:1/callback'; // never contacted: the code is read from Location
const CONNECT = `${BASE}/connect/partner?elicitation=`;
const sdk = await loadSdk(SDK_DIR);

// The subjects of the upstream gateway's recent allowed requests (its audit log).
function upstreamSubjects() {
  const out = execFileSync(BIN, ['--config', env.UPSTREAM_CONFIG, '--data-dir', env.UPSTREAM_DATA, 'audit',
    '--since', '10m', '--decision', 'allow', '--json'], { encoding: 'utf8', env: { ...process.env, MCPGATE_LOG: 'warn' } });
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l).subject);
}
// The audit writer batches its records: the subjects once `subject` is among them (or after 10 s).
async function subjectsWith(subject) {
  for (let i = 0; i < 50; i++) {
    const s = upstreamSubjects();
    if (s.includes(subject)) return s;
    await new Promise((r) => setTimeout(r, 200));
  }
  return upstreamSubjects();
}
function connections(...extra) {
  return execFileSync(BIN, ['--config', env.SERVER_CONFIG, '--data-dir', env.SERVER_DATA, 'users', 'connections', 'admin', ...extra],
    { encoding: 'utf8', env: { ...process.env, MCPGATE_LOG: 'warn' } });
}

// ---- 1. the TypeScript SDK client ------------------------------------------------------------
const ts = new Results();
{
  const ua = new UserAgent({ password: PASSWORD, newPassword: NEW_PASSWORD, login: 'partner-ts-user' });
  const provider = new SdkAuthProvider({ ua, redirect: REDIRECT, clientName: `mcpgate interop (user_oauth, TypeScript SDK ${sdk.version})` });
  const open = async () => {
    const transport = new sdk.StreamableHTTPClientTransport(new URL(PARTNER_URL), { authProvider: provider });
    const client = new sdk.Client({ name: 'mcpgate-interop-user-oauth', version: '1.0.0' });
    try { await client.connect(transport); } catch (e) {
      if (!(e instanceof sdk.UnauthorizedError)) throw e;
      await transport.finishAuth(provider.codes.at(-1).code);
      return open();
    }
    return client;
  };
  try {
    // The first request that reaches the upstream (initialize) needs the user's account.
    let elicited;
    try { await (await open()).close(); } catch (e) { elicited = e; }
    const el = elicited?.data?.elicitations?.[0];
    const url = el?.url || '';
    ts.cell('elicitation', ts.check('URL-elicitation-required error (-32042) with a connect URL', elicited?.code === -32042
      && el?.mode === 'url' && url.startsWith(CONNECT) && !!el?.elicitationId, `${elicited?.code} ${short(elicited?.message || elicited)}; ${url.slice(0, 80)}`));
    const page = await ua.connect(url);
    const connected = page?.status === 200 && /is connected/.test(page.body || '');
    const listed = /^partner\s+scope=\[notes:read/m.test(connections());
    ts.cell('connect', ts.check('connected: mcpgate sign-in, connect page, the provider\'s sign-in and consent, callback', connected && listed,
      `callback ${page?.status}; consents at ${ua.consents.map((c) => c.at).join(', ')}; users connections lists it: ${listed}`));
    const client = await open();
    const r = await client.callTool({ name: 'list_notes', arguments: {} });
    await client.close();
    const subjects = await subjectsWith('partner-ts-user');
    const ok = !r.isError && subjects.includes('partner-ts-user');
    ts.cell('call', ts.check('the call retried with the user\'s own provider token (the upstream\'s audit names the provider\'s subject)', ok,
      `${short(JSON.stringify(r.content), 60)}; upstream subjects ${JSON.stringify([...new Set(subjects)])}`));
  } catch (e) {
    ts.check('TypeScript SDK flow', false, e.stack || String(e));
    ts.notReached(['elicitation', 'connect', 'call'], String(e.message || e));
  }
}
const provider = `oidc-provider ${env.OIDC_PROVIDER_VERSION || '?'}`;
ts.write(env.RESULT_FILE_TS, { table: 'user_oauth', client: 'TypeScript SDK (`@modelcontextprotocol/sdk`)', version: `${sdk.version} (${provider})` });

// ---- 2. mcpgate's client -----------------------------------------------------------------------
const cli = new Results();
{
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-user-oauth-'));
  const common = ['--token-dir', dir, '--allow-http-loopback', '--no-browser'];
  const ua = new UserAgent({ password: NEW_PASSWORD, newPassword: NEW_PASSWORD, login: 'partner-cli-user' });
  try {
    // The account connected above is unlinked first (and revoked at the provider).
    const unlinked = connections('--unlink', 'partner');
    const none = /no connected accounts/.test(connections());
    const login = await runCli(BIN, ['login', PARTNER_URL, ...common], ua);
    if (login.code !== 0) throw new Error(`mcpgate login: ${short(login.errors.join('; ') || login.stderr, 300)}`);
    const call = await runCli(BIN, ['call', PARTNER_URL, 'list_notes', '{}', ...common], ua);
    const shown = call.connectUrls.length === 1 && call.connectUrls[0].startsWith(CONNECT);
    cli.cell('elicitation', cli.check('unlinked, then mcpgate call shows the connect URL once and waits', /disconnected/.test(unlinked) && none && shown,
      `${short(unlinked)}; URLs shown ${call.connectUrls.length}`));
    cli.cell('connect', cli.check('connected through the same pages while the call waits', shown && call.errors.length === 0,
      short(call.errors.join('; ') || 'ok')));
    const subjects = await subjectsWith('partner-cli-user');
    const ok = call.code === 0 && /notes/.test(call.stdout) && subjects.includes('partner-cli-user');
    cli.cell('call', cli.check('the call completes with the user\'s own provider token', ok,
      `exit ${call.code}: ${short(call.stdout, 60)}; upstream subjects ${JSON.stringify([...new Set(subjects)])}`));
    if (!ok) console.log(call.stderr);
  } catch (e) {
    cli.check('mcpgate client flow', false, e.stack || String(e));
    cli.notReached(['elicitation', 'connect', 'call'], String(e.message || e));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const mcpgateVersion = execFileSync(BIN, ['--version'], { encoding: 'utf8' }).trim().split(/\s+/).pop();
cli.write(env.RESULT_FILE_CLI, { table: 'user_oauth', client: 'mcpgate client (`mcpgate login`, `call`)', version: `${mcpgateVersion} (${provider})` });
process.exit(ts.failed || cli.failed ? 1 : 0);
