// The official TypeScript MCP SDK (@modelcontextprotocol/sdk) as the interop drivers use it
// (ci/interop/ts-client.mjs, ci/interop/user-oauth.mjs): loading the pinned package from SDK_DIR,
// and the OAuthClientProvider that plays the user through the shared headless user agent.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// The SDK's client classes from SDK_DIR/node_modules/@modelcontextprotocol/sdk.
export async function loadSdk(sdkDir) {
  const root = path.join(sdkDir, 'node_modules', '@modelcontextprotocol', 'sdk');
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  const imp = (p) => import(pathToFileURL(path.join(root, 'dist/esm', p)).href);
  const { Client } = await imp('client/index.js');
  const { StreamableHTTPClientTransport } = await imp('client/streamableHttp.js');
  const { UnauthorizedError } = await imp('client/auth.js');
  return { version, Client, StreamableHTTPClientTransport, UnauthorizedError };
}

// An OAuthClientProvider for a public client registered dynamically: the user is played by `ua`
// (a UserAgent of ci/interop/headless.mjs), and the code is read from the redirect to
// `redirect`, which is never contacted.
export class SdkAuthProvider {
  constructor({ ua, redirect, clientName }) {
    Object.assign(this, { ua, redirect, clientName });
    this._client = undefined; this._tokens = undefined; this._verifier = undefined;
    this.codes = []; this.authUrls = []; this.savedTokens = [];
    // A 403 insufficient_scope went by since the last tokens were saved (set by the driver's
    // fetch), and the opt-in workaround that hides the refresh token while stepping up.
    this.stepUpSeen = false; this.hideRefreshOnStepUp = false;
  }
  get redirectUrl() { return this.redirect; }
  get clientMetadata() {
    return { client_name: this.clientName, redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this._client; }
  saveClientInformation(c) { this._client = c; }
  tokens() {
    // Workaround (opt-in): while a step-up is pending, hide the refresh token, so the SDK's
    // auth() starts a new authorization with the challenge's scope instead of refreshing
    // (a refresh cannot widen the grant).
    if (this.hideRefreshOnStepUp && this.stepUpSeen && this._tokens) {
      const { refresh_token, ...rest } = this._tokens; return rest;
    }
    return this._tokens;
  }
  saveTokens(t) {
    if (this.hideRefreshOnStepUp && this.stepUpSeen && !t.refresh_token && this._tokens?.refresh_token) t = { ...t, refresh_token: this._tokens.refresh_token };
    this._tokens = t; this.savedTokens.push(t); this.stepUpSeen = false;
  }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  async redirectToAuthorization(url) {
    this.authUrls.push(new URL(url));
    const back = await this.ua.authorize(url.toString(), this.redirect);
    const code = back.searchParams.get('code');
    if (!code) throw new Error(`no code in the redirect: ${back.search}`);
    if (back.searchParams.get('state') !== url.searchParams.get('state')) throw new Error('state mismatch');
    this.codes.push({ code, iss: back.searchParams.get('iss') });
  }
}
