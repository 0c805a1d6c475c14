// Drives mcpgate's login and consent pages in a real headless Chromium (playwright-core).
// Run by ci/browser.sh, which starts `mcpgate serve --demo` and passes:
//   MCPGATE_URL   base URL of the running server (http://127.0.0.1:PORT)
//   MCPGATE_OTP   the admin's one-time password printed by `serve --demo`
//   MCPGATE_IMG   directory for the screenshots (docs/img)
//   CHROMIUM      browser executable (default /usr/bin/chromium)
//   PLAYWRIGHT_DIR  directory with node_modules/playwright-core
// Only 127.0.0.1 is contacted. Tests run in order and share one browser context (one session).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import { createRequire } from 'node:module';

// PLAYWRIGHT_DIR: the directory whose node_modules holds playwright-core (ci/browser.sh's cache).
const require = createRequire(process.env.PLAYWRIGHT_DIR
  ? path.join(process.env.PLAYWRIGHT_DIR, 'noop.js') : import.meta.url);
const { chromium } = require('playwright-core');

const BASE = process.env.MCPGATE_URL;
const OTP = process.env.MCPGATE_OTP;
const IMG = process.env.MCPGATE_IMG;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
assert.ok(BASE && OTP && IMG, 'MCPGATE_URL, MCPGATE_OTP and MCPGATE_IMG must be set');
const RESOURCE = `${BASE}/mcp/notes`;
const NEW_PASSWORD = 'browser-test-' + crypto.randomBytes(12).toString('hex');
const ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-gpu'];

let browser, context, page;
let redirectServer, redirectBase; // loopback redirect_uri target; also serves the framing page
const hits = []; // query strings received at /callback
const waiters = [];

function b64url(buf) { return Buffer.from(buf).toString('base64url'); }

function waitForCallback(state, ms = 10000) {
  const found = hits.find((q) => q.get('state') === state);
  if (found) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no callback with state ${state} within ${ms} ms`)), ms);
    waiters.push({ state, resolve: (q) => { clearTimeout(t); resolve(q); } });
  });
}

async function register(name) {
  const r = await fetch(`${BASE}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [`${redirectBase}/callback`],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
    }),
  });
  assert.equal(r.status, 201, `registration: ${r.status} ${await r.clone().text()}`);
  const j = await r.json();
  assert.ok(j.client_id);
  return j.client_id;
}

function authorizeUrl(clientId, state) {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const u = new URL(`${BASE}/oauth/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: clientId, redirect_uri: `${redirectBase}/callback`,
    scope: 'notes:read', state, code_challenge: challenge, code_challenge_method: 'S256',
    resource: RESOURCE,
  })) u.searchParams.set(k, v);
  return u.toString();
}

// Opens a fresh consent page for a newly registered client (so no remembered consent skips it).
async function openConsent(p, name) {
  const clientId = await register(name);
  const state = b64url(crypto.randomBytes(12));
  await p.goto(authorizeUrl(clientId, state));
  await p.waitForSelector('.client-name');
  return { clientId, state };
}

before(async () => {
  redirectServer = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (u.pathname === '/callback') {
      hits.push(u.searchParams);
      for (const w of waiters.splice(0)) {
        if (u.searchParams.get('state') === w.state) w.resolve(u.searchParams); else waiters.push(w);
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('callback received');
    } else if (u.pathname === '/frame') {
      const target = u.searchParams.get('src');
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>framer</title><iframe id="f" src="${target.replace(/"/g, '&quot;')}" width="600" height="600"></iframe>`);
    } else {
      res.writeHead(404); res.end();
    }
  });
  await new Promise((r) => redirectServer.listen(0, '127.0.0.1', r));
  redirectBase = `http://127.0.0.1:${redirectServer.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
});

after(async () => {
  await browser?.close();
  await new Promise((r) => redirectServer ? redirectServer.close(r) : r());
});

let first; // the first consent page's client and state

test('sign in (through the one-time password change) and read the consent page', async () => {
  const clientId = await register('Browser Test App');
  const state = b64url(crypto.randomBytes(12));
  await page.goto(authorizeUrl(clientId, state));
  assert.equal(new URL(page.url()).pathname, '/login', 'unauthenticated authorize goes to /login');
  await page.fill('#username', 'admin');
  await page.fill('#password', OTP);
  await Promise.all([page.waitForLoadState('load'), page.waitForNavigation(), page.click('button[type=submit]')]);
  // First sign-in with the one-time password: choose a new one.
  assert.ok(await page.locator('#new_password').count(), `expected the password page, got ${page.url()}`);
  await page.fill('#new_password', NEW_PASSWORD);
  await page.fill('#confirm', NEW_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.waitForSelector('.client-name');

  assert.equal((await page.textContent('.client-name')).trim(), 'Browser Test App');
  assert.equal((await page.textContent('.client-id')).trim(), clientId);
  assert.equal((await page.textContent('.redirect-host')).trim(), new URL(redirectBase).host);
  assert.equal((await page.textContent('.resource')).trim().length > 0, true);
  assert.ok((await page.textContent('dl.facts')).includes(RESOURCE), 'resource URI is shown');
  // The client host: a dynamically registered client has no verified host, so the page must
  // not claim one ("from <host>" is only for URL-named metadata-document clients).
  assert.equal(await page.locator('dl.facts .tag').count(), 0, 'no verified-host claim for a DCR client');
  assert.ok((await page.textContent('.issuer')).includes(new URL(BASE).host), 'server host in the header');
  const scopes = await page.$$eval('ul.scopes code.scope', (els) => els.map((e) => e.textContent.trim()));
  assert.deepEqual(scopes, ['notes:read']);
  // Loopback redirect: the page warns about it.
  assert.equal(await page.locator('p.warn').count(), 1, 'loopback redirect warning shown');
  first = { clientId, state };
});

test('screenshots at laptop and phone widths; no horizontal overflow on a phone', async () => {
  assert.ok(first, 'needs the consent page from the first test');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(IMG, 'consent.png') });
  const laptop = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(laptop <= 1280, `laptop scrollWidth ${laptop}`);

  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    storageState: await context.storageState(),
  });
  try {
    const p = await phone.newPage();
    await openConsent(p, 'Browser Test App (phone)');
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 390, `phone: document scrollWidth ${w} > 390 (horizontal overflow)`);
    // Buttons fully visible inside the viewport width.
    for (const v of ['approve', 'deny']) {
      const b = await p.locator(`button[value=${v}]`).boundingBox();
      assert.ok(b && b.x >= 0 && b.x + b.width <= 390, `${v} button inside the viewport: ${JSON.stringify(b)}`);
    }
    await p.screenshot({ path: path.join(IMG, 'consent-phone.png'), fullPage: true });
  } finally {
    await phone.close();
  }
  // The sign-in page at phone width too (a fresh context: no session).
  const anon = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  try {
    const p = await anon.newPage();
    await p.goto(`${BASE}/login`);
    await p.waitForSelector('#username');
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 390, `phone: sign-in page scrollWidth ${w} > 390`);
  } finally {
    await anon.close();
  }
});

test('cookies carry __Host-, Secure, HttpOnly, SameSite=Lax', async () => {
  const cookies = await context.cookies(BASE);
  assert.ok(cookies.length > 0, 'the browser kept cookies on http://127.0.0.1');
  assert.ok(cookies.some((c) => c.name === '__Host-mcpgate-session'), `session cookie kept: ${cookies.map((c) => c.name)}`);
  for (const c of cookies) {
    assert.ok(c.name.startsWith('__Host-'), `${c.name}: __Host- prefix`);
    assert.equal(c.secure, true, `${c.name}: Secure`);
    assert.equal(c.httpOnly, true, `${c.name}: HttpOnly`);
    assert.equal(c.sameSite, 'Lax', `${c.name}: SameSite`);
    assert.equal(c.path, '/', `${c.name}: Path=/`);
    assert.equal(c.domain, '127.0.0.1', `${c.name}: host-only`);
  }
  // Not readable from script.
  assert.equal(await page.evaluate(() => document.cookie), '');
});

test('approve: the code reaches the loopback redirect with state and iss', async () => {
  assert.ok(first, 'needs the consent page from the first test');
  assert.ok(await page.locator('.client-name').count(), 'still on the consent page');
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectBase)), page.click('button[name=decision][value=approve]')]);
  const q = await waitForCallback(first.state);
  assert.ok(q.get('code'), 'code present');
  assert.equal(q.get('iss'), BASE);
  assert.equal(q.get('error'), null);
  assert.equal(await page.textContent('body'), 'callback received');
});

test('approved once, a public loopback client still waits for a click naming its port', async () => {
  assert.ok(first, 'needs the client approved in the tests above');
  const state = b64url(crypto.randomBytes(12));
  await page.goto(authorizeUrl(first.clientId, state));
  // Consent is on record, yet the page is shown: the continue step, not a redirect.
  await page.waitForSelector('form[data-step=confirm]');
  assert.equal(new URL(page.url()).origin, BASE, 'no redirect before the click');
  assert.equal(hits.filter((q) => q.get('state') === state).length, 0, 'no code before the click');
  assert.equal((await page.textContent('.redirect-uri')).trim(), `${redirectBase}/callback`);
  assert.equal((await page.textContent('.redirect-port')).trim(), `port ${new URL(redirectBase).port}`);
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectBase)), page.click('button[name=decision][value=approve]')]);
  const q = await waitForCallback(state);
  assert.ok(q.get('code'), 'code after the click');
  assert.equal(q.get('iss'), BASE);
});

test('deny: access_denied reaches the loopback redirect', async () => {
  const { state } = await openConsent(page, 'Browser Test App (deny)');
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectBase)), page.click('button[name=decision][value=deny]')]);
  const q = await waitForCallback(state);
  assert.equal(q.get('error'), 'access_denied');
  assert.equal(q.get('code'), null);
  assert.equal(q.get('iss'), BASE);
});

test('a consent form submitted without its CSRF token is refused', async () => {
  const { state } = await openConsent(page, 'Browser Test App (csrf)');
  const removed = await page.evaluate(() => {
    const i = document.querySelector('form input[name=csrf]');
    if (!i) return false;
    i.remove();
    return true;
  });
  assert.ok(removed, 'the consent form has a csrf input');
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/consent'),
    page.click('button[name=decision][value=approve]'),
  ]);
  assert.equal(resp.status(), 403);
  await page.waitForLoadState('load');
  assert.equal(new URL(page.url()).origin, BASE, 'stayed on mcpgate');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(hits.filter((q) => q.get('state') === state).length, 0, 'no redirect for the refused form');

  // A forged token is refused too.
  const again = await openConsent(page, 'Browser Test App (csrf2)');
  await page.evaluate(() => { document.querySelector('form input[name=csrf]').value = '1.AAAA'; });
  const [resp2] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/consent'),
    page.click('button[name=decision][value=approve]'),
  ]);
  assert.equal(resp2.status(), 403);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hits.filter((q) => q.get('state') === again.state).length, 0);
});

test('the login and consent pages cannot be framed', async () => {
  const consentClient = await register('Browser Test App (frame)');
  const targets = {
    login: `${BASE}/login`,
    consent: authorizeUrl(consentClient, b64url(crypto.randomBytes(12))),
  };
  for (const [name, src] of Object.entries(targets)) {
    // A cross-origin (other port) page that frames the target.
    const p = await context.newPage();
    const messages = [];
    p.on('console', (m) => messages.push(m.text()));
    const [resp] = await Promise.all([
      p.waitForResponse((r) => r.url().startsWith(BASE) && r.status() === 200),
      p.goto(`${redirectBase}/frame?src=${encodeURIComponent(src)}`),
    ]);
    // The server answered (so a blank frame is the browser's refusal, not a failed request).
    const h = await resp.allHeaders();
    assert.equal(h['x-frame-options'], 'DENY', `${name}: X-Frame-Options`);
    assert.match(h['content-security-policy'] || '', /frame-ancestors 'none'/, `${name}: CSP`);
    await p.waitForTimeout(500);
    const child = p.frames().find((f) => f !== p.mainFrame());
    assert.ok(child, `${name}: the iframe exists`);
    // A blocked frame is Chromium's error page: not mcpgate's URL and none of its content.
    assert.ok(!child.url().startsWith(BASE), `${name}: frame URL is ${child.url()}`);
    const html = await child.evaluate(() => document.documentElement.outerHTML).catch(() => '');
    assert.ok(!/mcpgate|csrf|<form/i.test(html), `${name}: frame content leaked: ${html.slice(0, 200)}`);
    assert.ok(messages.some((m) => /frame-ancestors|X-Frame-Options/i.test(m)),
      `${name}: Chromium reports the refusal (console: ${JSON.stringify(messages)})`);
    await p.close();
  }
});

// ---- each user's own upstream account (user_oauth, docs/upstream-credentials.md) -------------
// ci/browser.sh configures the upstream `github` with configured endpoints on a closed loopback
// port: the pages are shown without a live third party, and nothing follows the redirect there.
const CONNECT = `${BASE}/connect/github`;

test('connect page: the service, the signed-in account and the scopes; Continue goes there with state and PKCE', async () => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(CONNECT);
  await page.waitForSelector('form[data-step=connect]');
  assert.equal((await page.textContent('.upstream-title')).trim(), 'GitHub');
  assert.equal((await page.textContent('.username')).trim(), 'admin');
  assert.equal((await page.textContent('.provider-host')).trim(), '127.0.0.1');
  const scopes = await page.$$eval('ul.scopes code.scope', (els) => els.map((e) => e.textContent.trim()));
  assert.deepEqual(scopes, ['repo', 'read:org']);
  await page.screenshot({ path: path.join(IMG, 'connect.png') });
  const laptop = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(laptop <= 1280, `laptop scrollWidth ${laptop}`);

  // Continue: the form's POST answers 303 to the service's authorization endpoint (sent with
  // the page's cookies; the redirect is not followed: nothing listens there).
  const form = await page.$$eval('form[data-step=connect] input[type=hidden]',
    (els) => Object.fromEntries(els.map((e) => [e.name, e.value])));
  const resp = await page.request.post(CONNECT, { form, maxRedirects: 0 });
  assert.equal(resp.status(), 303, await resp.text());
  const sent = new URL(resp.headers().location);
  assert.equal(sent.origin, 'http://127.0.0.1:4');
  assert.equal(sent.pathname, '/authorize');
  const q = sent.searchParams;
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('client_id'), 'mcpgate-browser-test');
  assert.equal(q.get('redirect_uri'), `${CONNECT}/callback`);
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.ok(q.get('code_challenge') && q.get('state'), 'challenge and state sent');
  assert.equal(q.get('scope'), 'repo read:org');
  const binding = (await context.cookies(BASE)).find((c) => c.name === '__Host-mcpgate-connect');
  assert.ok(binding && binding.httpOnly && binding.secure && binding.sameSite === 'Lax', 'binding cookie set');

  // The phone width.
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    storageState: await context.storageState(),
  });
  try {
    const p = await phone.newPage();
    await p.goto(CONNECT);
    await p.waitForSelector('form[data-step=connect]');
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 390, `phone: connect page scrollWidth ${w} > 390`);
    await p.screenshot({ path: path.join(IMG, 'connect-phone.png'), fullPage: true });
  } finally {
    await phone.close();
  }
});

test('a connect link that is not one of ours is refused, and the answer of an unknown flow too', async () => {
  const r = await page.goto(`${CONNECT}?elicitation=${b64url(crypto.randomBytes(48))}`);
  assert.equal(r.status(), 400);
  assert.match(await page.textContent('body'), /expired or was not made by this server/);
  assert.equal(await page.locator('form[data-step=connect]').count(), 0, 'no form to continue');
  const cb = await page.goto(`${CONNECT}/callback?code=x&state=${b64url(crypto.randomBytes(16))}`);
  assert.equal(cb.status(), 400);
});

test('connected accounts: the service listed, not connected, with a Connect link', async () => {
  await page.goto(`${BASE}/account/connections`);
  await page.waitForSelector('table.connections');
  const row = page.locator('tr[data-upstream=github]');
  assert.match(await row.textContent(), /GitHub/);
  assert.match(await row.textContent(), /not connected/);
  assert.equal(await row.locator('a.button').getAttribute('href'), '/connect/github');
  await page.screenshot({ path: path.join(IMG, 'connections.png') });
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(w <= 1280, `scrollWidth ${w}`);
});
