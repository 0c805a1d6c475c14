// Interop: npm `oidc-provider` (ci/interop/oidc-as.mjs) as a third-party authorization server for
// mcpgate's gateway. The gateway runs with `[[gateway.trusted_issuer]]` = the provider and
// `gateway.advertise_own_issuer = false` (its PRM names only the provider). Run by ci/interop.sh,
// which passes:
//   MCPGATE_BIN, GATEWAY_URL (the gateway; its MCP server is $GATEWAY_URL/mcp/notes),
//   ISSUER (the provider), OIDC_PROVIDER_VERSION, RESULT_FILE_TOKENS, RESULT_FILE_CLIENT
// Two result rows:
//   - tokens: this script is the provider's OAuth client (DCR, authorization code + PKCE through
//     the provider's login/consent pages) and presents the tokens to the gateway: minted for the
//     gateway's resource → accepted (tools/list + call); minted for another resource → 401
//     invalid_token; minted without a resource (opaque) → 401 invalid_token;
//   - mcpgate's own client signing in at the provider (picked from the gateway's PRM), then tools,
//     step-up and refresh, as in ci/interop/mcpgate-cli.mjs. The provider and the gateway both
//     offer DPoP, so the client holds DPoP-bound tokens (RFC 9449): the gateway takes them with
//     the client's proofs and refuses the same access token presented without its key.
// Prints `PASS name` / `FAIL name` per check; exits non-zero on any FAIL. Only 127.0.0.1.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Results, UserAgent, mcpgateClientFlow, short, tokenFile } from './headless.mjs';

const { MCPGATE_BIN: BIN, GATEWAY_URL: GW, ISSUER } = process.env;
if (!BIN || !GW || !ISSUER) { console.error('MCPGATE_BIN, GATEWAY_URL, ISSUER required'); process.exit(2); }
const RESOURCE = `${GW}/mcp/notes`;
const OTHER = `${GW}/mcp/elsewhere`;
const REDIRECT = 'http://127.0.0.1:1/callback'; // never contacted: the code is read from Location
const b64u = (b) => Buffer.from(b).toString('base64url');

// ---- the provider's OAuth client (this script) ------------------------------------------------
async function register() {
  const r = await fetch(`${ISSUER}/reg`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'mcpgate interop token minter', redirect_uris: [REDIRECT], application_type: 'native',
      token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'] }),
  });
  const j = await r.json();
  if (r.status !== 201 || !j.client_id) throw new Error(`registration: ${r.status} ${JSON.stringify(j)}`);
  return j.client_id;
}

function authUrl(clientId, { resource, scope, pkce = true }) {
  const verifier = b64u(crypto.randomBytes(32));
  const u = new URL(`${ISSUER}/auth`);
  const p = { response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, scope, state: b64u(crypto.randomBytes(12)) };
  if (pkce) Object.assign(p, { code_challenge: b64u(crypto.createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256' });
  if (resource) p.resource = resource;
  for (const [k, v] of Object.entries(p)) u.searchParams.set(k, v);
  return { url: u, verifier };
}

async function mint(ua, clientId, { resource, scope }) {
  const { url, verifier } = authUrl(clientId, { resource, scope });
  const back = await ua.authorize(url.toString(), REDIRECT);
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`no code: ${back.search}`);
  if (back.searchParams.get('iss') !== ISSUER) throw new Error(`iss ${back.searchParams.get('iss')}`);
  const form = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: clientId, code_verifier: verifier };
  if (resource) form.resource = resource;
  const r = await fetch(`${ISSUER}/token`, { method: 'POST', body: new URLSearchParams(form),
    headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  const j = await r.json();
  if (r.status !== 200 || !j.access_token) throw new Error(`token: ${r.status} ${JSON.stringify(j)}`);
  return j.access_token;
}

function jwtParts(t) {
  const p = t.split('.');
  if (p.length !== 3) return null;
  return { header: JSON.parse(Buffer.from(p[0], 'base64url')), payload: JSON.parse(Buffer.from(p[1], 'base64url')) };
}

// ---- a minimal MCP client over Streamable HTTP (bearer token given) ---------------------------
async function mcpPost(token, body, session) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` };
  if (session) Object.assign(headers, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' });
  const r = await fetch(RESOURCE, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  let msg = null;
  if (text) {
    if ((r.headers.get('content-type') || '').includes('text/event-stream')) {
      for (const line of text.split('\n')) if (line.startsWith('data:')) { try { const m = JSON.parse(line.slice(5)); if (m.id === body.id) msg = m; } catch {} }
    } else { try { msg = JSON.parse(text); } catch {} }
  }
  return { status: r.status, www: r.headers.get('www-authenticate') || '', session: r.headers.get('mcp-session-id'), msg, text };
}
const initialize = (token) => mcpPost(token, { jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'mcpgate-interop-third-party-as', version: '1' } } });

const tokens = new Results();
const viaClient = new Results();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-interop-oidc-'));
try {
  // 0. The provider as configured: S256 only, registration endpoint, PKCE required.
  const meta = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
  const ua = new UserAgent({ login: 'interop-user' });
  const clientId = await register();
  const noPkce = authUrl(clientId, { resource: RESOURCE, scope: 'notes:read', pkce: false });
  let refused = '';
  try {
    const back = await ua.authorize(noPkce.url.toString(), REDIRECT);
    refused = back.searchParams.get('error') || '';
  } catch (e) { refused = `page: ${short(e.message, 80)}`; }
  const pkceOk = JSON.stringify(meta.code_challenge_methods_supported) === '["S256"]' && !!meta.registration_endpoint
    && refused === 'invalid_request';
  tokens.cell('pkce', tokens.check('provider: S256 only, DCR endpoint, an authorization request without PKCE refused', pkceOk,
    `code_challenge_methods_supported ${JSON.stringify(meta.code_challenge_methods_supported)}; without PKCE: ${refused}`));

  // 1. A token for the gateway's resource: a JWT (at+jwt, ES256, aud = the resource) that the
  //    gateway accepts.
  const good = await mint(ua, clientId, { resource: RESOURCE, scope: 'notes:read' });
  const g = jwtParts(good);
  const shape = !!g && g.header.typ === 'at+jwt' && g.header.alg === 'ES256' && g.payload.iss === ISSUER
    && (g.payload.aud === RESOURCE || (Array.isArray(g.payload.aud) && g.payload.aud.includes(RESOURCE)))
    && /notes:read/.test(g.payload.scope || '');
  tokens.check('token for the resource: JWT at+jwt, ES256, iss = provider, aud = resource, scope notes:read', shape,
    g ? `header ${JSON.stringify(g.header)}, aud ${JSON.stringify(g.payload.aud)}, scope "${g.payload.scope}"` : 'not a JWT');
  const init = await initialize(good);
  let listed = false, called = false;
  if (init.status === 200 && init.session) {
    await mcpPost(good, { jsonrpc: '2.0', method: 'notifications/initialized' }, init.session);
    const list = await mcpPost(good, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, init.session);
    const names = (list.msg?.result?.tools || []).map((t) => t.name);
    listed = tokens.check('gateway accepts it: tools/list', list.status === 200 && names.includes('list_notes'), names.join(','));
    const call = await mcpPost(good, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'list_notes', arguments: {} } }, init.session);
    called = tokens.check('gateway accepts it: tools/call list_notes', call.status === 200 && !!call.msg?.result && !call.msg.result.isError,
      short(JSON.stringify(call.msg?.result?.content || call.text), 80));
  } else {
    tokens.check('gateway accepts it: initialize', false, `${init.status} ${init.www} ${short(init.text)}`);
  }
  tokens.cell('accepted', shape && listed && called);

  // 2. A token the provider minted for another resource: refused.
  const other = await mint(ua, clientId, { resource: OTHER, scope: 'notes:read' });
  const o = jwtParts(other);
  const r2 = await initialize(other);
  tokens.cell('other', tokens.check('token for another resource (aud elsewhere) → 401 invalid_token',
    !!o && JSON.stringify(o.payload.aud).includes(OTHER) && r2.status === 401 && /error="invalid_token"/.test(r2.www),
    `aud ${JSON.stringify(o?.payload.aud)}; gateway ${r2.status} ${r2.www}`));

  // 3. Without a resource indicator the provider issues an opaque (userinfo) token: refused.
  const opaque = await mint(ua, clientId, { scope: 'openid' });
  const r3 = await initialize(opaque);
  tokens.cell('none', tokens.check('token without resource (opaque) → 401 invalid_token',
    !jwtParts(opaque) && r3.status === 401 && /error="invalid_token"/.test(r3.www), `gateway ${r3.status} ${r3.www}`));

  // 4. mcpgate's client: the gateway's PRM names only the provider; the client signs in there.
  const prm = await (await fetch(`${GW}/.well-known/oauth-protected-resource/mcp/notes`)).json();
  viaClient.check('PRM authorization_servers = [the provider] (advertise_own_issuer = false)',
    JSON.stringify(prm.authorization_servers) === JSON.stringify([ISSUER]), JSON.stringify(prm.authorization_servers));
  await mcpgateClientFlow(viaClient, { bin: BIN, url: RESOURCE, issuer: ISSUER, ua: new UserAgent({ login: 'cli-user' }), dir });
  // 5. DPoP: the provider bound the client's tokens to its key (cnf.jkt = the key kept in the
  //    token file); the flow above used them through the gateway; without the key they are refused.
  const held = tokenFile(dir).json;
  const at = jwtParts(held.access_token || '');
  const stolen = await initialize(held.access_token || '');
  viaClient.check('DPoP: the provider bound the client\'s tokens (cnf.jkt, key in the 0600 token file); the gateway refuses the access token without its key',
    !!held.dpop_key?.pkcs8 && !!at?.payload.cnf?.jkt && stolen.status === 401 && /invalid_token/.test(stolen.www),
    `dpop_key ${!!held.dpop_key}; cnf ${JSON.stringify(at?.payload.cnf)}; as Bearer: ${stolen.status} ${stolen.www}`);
} catch (e) {
  tokens.check('flow', false, e.stack || String(e));
  tokens.notReached(['pkce', 'accepted', 'other', 'none'], String(e.message || e));
  viaClient.notReached(['discovery', 'registration', 'authcode', 'tools', 'stepup', 'refresh'], String(e.message || e));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
const version = process.env.OIDC_PROVIDER_VERSION || '?';
tokens.write(process.env.RESULT_FILE_TOKENS, { table: 'tokens', client: '`oidc-provider` (third-party AS) → mcpgate gateway', version });
const mcpgateVersion = execFileSync(BIN, ['--version'], { encoding: 'utf8' }).trim().split(/\s+/).pop();
viaClient.write(process.env.RESULT_FILE_CLIENT, { client: 'mcpgate client, signing in at `oidc-provider` (third-party AS)',
  version: `${mcpgateVersion} (oidc-provider ${version})` });
process.exit(tokens.failed || viaClient.failed ? 1 : 0);
