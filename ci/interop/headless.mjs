// Shared parts of the Node interop drivers (ci/interop/ts-client.mjs, ci/interop/mcpgate-cli.mjs,
// ci/interop/third-party-as.mjs): PASS/FAIL bookkeeping, the headless user (mcpgate-play-user) that signs in and
// approves consent on mcpgate's own pages or on oidc-provider's development interaction pages,
// and a driver for the `mcpgate` client CLI that plays the user when the CLI prints an
// authorization URL. Only 127.0.0.1 is contacted.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// ---- results --------------------------------------------------------------------------------
export class Results {
  constructor() { this.cells = {}; this.failed = false; }
  check(name, ok, note = '') {
    console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${note ? ` — ${note}` : ''}`);
    if (!ok) this.failed = true;
    return ok;
  }
  cell(key, ok, note = '', workaround = false) {
    this.cells[key] = { ok, note, ...(workaround ? { workaround: true } : {}) };
  }
  notReached(keys, why) {
    for (const k of keys) if (!this.cells[k]) this.cell(k, false, `not reached: ${why}`);
    this.failed = true;
  }
  write(file, meta) {
    if (file) fs.writeFileSync(file, JSON.stringify({ ...meta, cells: this.cells }, null, 2));
  }
}

// ---- headless user agent --------------------------------------------------------------------
// The project's one headless user (mcpgate_testkit::Browser::play, the same code the Rust tests
// use), run as the `mcpgate-play-user` binary that ci/interop.sh builds and names in
// MCPGATE_PLAY_USER. Its cookies live in a jar file per UserAgent, so later authorizations find
// the session of earlier ones, as in a browser.
export class UserAgent {
  // mcpgate: { password, newPassword } for the `admin` account of `mcpgate serve --demo`;
  // `login` is the name typed on oidc-provider's development sign-in page.
  constructor({ password = '', newPassword, login = 'interop-user' } = {}) {
    this.bin = process.env.MCPGATE_PLAY_USER;
    if (!this.bin) throw new Error('MCPGATE_PLAY_USER (the mcpgate-play-user binary) is not set');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-ua-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    this.args = ['--jar', path.join(dir, 'cookies.json'), '--username', 'admin', '--password', password,
      '--new-password', newPassword || password, '--provider-login', login];
    this.consents = []; // { at, scopes } per consent page approved
  }

  // Follows an authorization URL through sign-in and consent until a redirect goes to
  // `redirectPrefix`; returns that URL (with code, state, iss).
  authorize(authorizationUrl, redirectPrefix) {
    return this.play([authorizationUrl, '--until', redirectPrefix]).then((out) => new URL(out.redirect));
  }

  // Follows a connect URL of a URL-mode elicitation (mcpgate's `/connect/{upstream}`): sign-in,
  // the connect page, the service's own sign-in and consent, and back to mcpgate's callback,
  // which is visited too. Returns that last page: { status, body }.
  connect(connectUrl) {
    const u = new URL(connectUrl);
    return this.play([connectUrl, '--until', `${u.origin}${u.pathname}/callback`, '--visit']).then((out) => out.visited);
  }

  play(args) {
    return new Promise((resolve, reject) => {
      execFile(this.bin, [...this.args, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`mcpgate-play-user: ${stderr.trim() || err.message}`));
        const out = JSON.parse(stdout);
        this.consents.push(...out.consents);
        resolve(out);
      });
    });
  }
}

// ---- the mcpgate client CLI -----------------------------------------------------------------
// Runs `mcpgate <args>`; whenever the CLI prints an authorization URL on stderr (--no-browser),
// the user agent completes it and delivers the redirect to the CLI's loopback listener; whenever
// it prints a connect URL (a URL-mode elicitation), the user agent completes that.
export function runCli(bin, args, ua, { timeoutMs = 90_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MCPGATE_LOG: 'warn' } });
    let stdout = '', stderr = '', buf = '';
    const authUrls = [], callbacks = [], errors = [], connectUrls = [];
    const pending = [];
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => {
      stderr += d; buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim(); buf = buf.slice(i + 1);
        if (/^https?:\/\/\S+\/connect\/[a-z0-9-]+\?elicitation=\S+$/.test(line)) {
          // A URL-mode elicitation the CLI shows (connect an account): the user completes it.
          connectUrls.push(line);
          pending.push(ua.connect(line).then((page) => {
            if (page?.status !== 200) errors.push(`connect page answered ${page?.status}: ${short(page?.body || '')}`);
          }, (e) => { errors.push(String(e.message || e)); child.kill('SIGTERM'); }));
        } else if (/^https?:\/\/\S+\?\S*response_type=code/.test(line)) {
          const u = new URL(line);
          authUrls.push(u);
          const redirect = u.searchParams.get('redirect_uri');
          pending.push((async () => {
            try {
              const back = await ua.authorize(line, redirect);
              callbacks.push(back);
              const r = await fetch(back, { redirect: 'manual' });
              await r.text();
              if (r.status !== 200) errors.push(`loopback listener answered ${r.status}`);
            } catch (e) { errors.push(String(e.message || e)); child.kill('SIGTERM'); }
          })());
        }
      }
    });
    const timer = setTimeout(() => { errors.push(`timed out after ${timeoutMs} ms`); child.kill('SIGTERM'); }, timeoutMs);
    child.on('close', async (code) => {
      clearTimeout(timer);
      await Promise.all(pending);
      resolve({ code, stdout, stderr, authUrls, callbacks, errors, connectUrls });
    });
  });
}

// The token file of the only stored login (DIR/tokens/*.json).
export function tokenFile(dir) {
  const d = path.join(dir, 'tokens');
  const files = fs.readdirSync(d).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`expected one token file in ${d}, found ${files.length}`);
  const p = path.join(d, files[0]);
  return { path: p, json: JSON.parse(fs.readFileSync(p, 'utf8')) };
}

export const short = (s, n = 160) => String(s).replace(/\s+/g, ' ').trim().slice(0, n);

// ---- one row: mcpgate's own client against a protected MCP server -----------------------------
// Cells: discovery, registration, authcode, tools, stepup, refresh. `issuer` is the
// authorization server the client is expected to pick from the server's PRM.
export async function mcpgateClientFlow(res, { bin, url, issuer, ua, dir }) {
  const common = ['--token-dir', dir, '--allow-http-loopback', '--no-browser'];
  const scopesOf = () => (tokenFile(dir).json.scope || '').split(' ').filter(Boolean);
  // 1. login: PRM -> AS metadata -> DCR -> authorize (PKCE) -> consent -> token
  const consentsBefore = ua.consents.length;
  const login = await runCli(bin, ['login', url, ...common], ua);
  const au = login.authUrls[0];
  const back = login.callbacks[0];
  const loginOk = login.code === 0 && login.errors.length === 0;
  if (!res.check('mcpgate login', loginOk, `exit ${login.code}; ${short(login.errors.join('; ') || login.stderr.split('\n').filter((l) => /issuer:|error/.test(l)).join(' '))}`)) {
    console.log(login.stderr);
    res.notReached(['discovery', 'registration', 'authcode', 'tools', 'stepup', 'refresh'], 'mcpgate login failed');
    return;
  }
  const disc = !!au && au.origin === new URL(issuer).origin && login.stderr.includes(`issuer:   ${issuer}`)
    && login.stderr.includes(`resource: ${url}`);
  res.cell('discovery', res.check('discovery (401 → PRM → AS metadata; the AS named in the PRM is used)', disc,
    `authorization endpoint ${au?.origin}${au?.pathname}`));
  const clientsDir = path.join(dir, 'clients');
  const regs = fs.existsSync(clientsDir) ? fs.readdirSync(clientsDir).filter((f) => f.endsWith('.json')) : [];
  const reg = regs.length === 1 ? JSON.parse(fs.readFileSync(path.join(clientsDir, regs[0]), 'utf8')) : {};
  const regOk = !!reg.client_id && au?.searchParams.get('client_id') === reg.client_id;
  res.cell('registration', res.check('registration (DCR), stored and used', regOk, `client_id ${reg.client_id}`));
  const pkce = au?.searchParams.get('code_challenge_method') === 'S256' && !!au?.searchParams.get('code_challenge')
    && au?.searchParams.get('resource') === url && !!au?.searchParams.get('state');
  const held = scopesOf();
  const codeOk = pkce && !!back?.searchParams.get('code') && back?.searchParams.get('iss') === issuer
    && ua.consents.length > consentsBefore && held.includes('notes:read');
  res.cell('authcode', res.check('auth code + PKCE (S256, resource, state; consent approved through the form; iss)', codeOk,
    `scope requested "${au?.searchParams.get('scope')}", held "${held.join(' ')}"`));

  // 2. tools
  const tools = await runCli(bin, ['tools', url, ...common], ua);
  const call = await runCli(bin, ['call', url, 'list_notes', '{}', ...common], ua);
  const toolsOk = tools.code === 0 && /list_notes/.test(tools.stdout) && /add_note/.test(tools.stdout)
    && call.code === 0 && tools.authUrls.length === 0 && call.authUrls.length === 0;
  res.cell('tools', res.check('mcpgate tools + mcpgate call list_notes', toolsOk,
    `tools exit ${tools.code}, call exit ${call.code}: ${short(call.stdout, 80)}`));

  // 3. step-up: add_note needs notes:write -> 403 insufficient_scope -> new authorization for the
  //    union of scopes -> consent -> the call is retried.
  const title = `interop-${Date.now()}`;
  const before = ua.consents.length;
  const add = await runCli(bin, ['call', url, 'add_note', JSON.stringify({ title, body: 'from mcpgate\'s client' }), ...common], ua);
  const upScope = add.authUrls[0]?.searchParams.get('scope') || '';
  const stepOk = add.code === 0 && add.errors.length === 0 && add.authUrls.length === 1 && /notes:write/.test(upScope)
    && ua.consents.length > before && add.stdout.includes(title) && scopesOf().includes('notes:write');
  res.cell('stepup', res.check('step-up: 403 → re-authorization with notes:write → add_note retried', stepOk,
    `exit ${add.code}; authorizations ${add.authUrls.length}, scope "${upScope}"; ${short(add.errors.join('; ') || add.stdout, 100)}`));

  // 4. refresh: the stored access token is marked expired; the next call refreshes first.
  const t = tokenFile(dir);
  const hadRefresh = !!t.json.refresh_token;
  fs.writeFileSync(t.path, JSON.stringify({ ...t.json, expires_at: Math.floor(Date.now() / 1000) - 5 }));
  const again = await runCli(bin, ['call', url, 'list_notes', '{}', ...common], ua);
  const after = tokenFile(dir).json;
  const refreshOk = hadRefresh && again.code === 0 && again.authUrls.length === 0
    && after.access_token !== t.json.access_token && after.expires_at > Date.now() / 1000;
  res.cell('refresh', res.check('refresh: expired access token → refresh_token grant → call succeeds', refreshOk,
    `refresh token held: ${hadRefresh}; exit ${again.code}; new access token: ${after.access_token !== t.json.access_token}`));
}
