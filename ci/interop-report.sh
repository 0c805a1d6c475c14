#!/usr/bin/env bash
# Regenerates docs/interop.md from target/interop/matrix.md (written by ci/interop.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MATRIX=$ROOT/target/interop/matrix.md
[[ -f $MATRIX ]] || { echo "no $MATRIX: run ci/interop.sh first" >&2; exit 1; }
{
    cat <<'MD'
# Interoperability

Real MCP clients, each using its **own** OAuth support, against mcpgate's authorization server and
gateway (`mcpgate serve --demo`, the `notes` server at `/mcp/notes`), and a third-party
authorization server (npm `oidc-provider`) in front of the gateway. Every cell is an automated
check in `ci/interop.sh`.

The clients: the official TypeScript SDK (`ci/interop/ts-client.mjs`), the official Python SDK
(`ci/interop/py_client.py`), the official Rust SDK rmcp with its `auth` feature (`OAuthState`,
`AuthorizationManager`, `AuthClient`; the binary `rmcp-oauth-client` in `crates/mcpgate-interop`)
and mcpgate's own client (the `mcpgate login|tools|call` CLI, driven by
`ci/interop/mcpgate-cli.mjs`). The client columns:

- **discovery** — the 401 challenge with `resource_metadata`, the protected resource metadata
  (RFC 9728) and the authorization server metadata (RFC 8414, or OpenID discovery), all fetched
  by the client;
- **registration** — dynamic client registration (RFC 7591) by the client;
- **auth code + PKCE** — the client's authorization request (S256, `resource`), signed in and
  approved headlessly through the real login, password-change and consent forms, code and `iss`
  returned to the redirect URI, the client's token request with the verifier;
- **tools/list + call** — `tools/list` and `tools/call list_notes` with the token;
- **step-up** — `add_note` needs `notes:write`: the gateway answers 403 `insufficient_scope`
  (checked: it names `notes:write`), the client re-authorizes, consent is approved again, the call
  is retried and succeeds;
- **refresh** — the access token is made unusable (TypeScript and rmcp: replaced, so the gateway
  answers 401; Python and mcpgate: marked expired) and the client's own refresh-token grant gets
  a new one.

One headless user agent plays the browser for every driver: the Rust tests' own
(`mcpgate_testkit::Browser::play`), used by the rmcp driver directly and by the Node and Python
drivers as the `mcpgate-play-user` binary. It follows the authorization URL without
auto-redirects, resends the `__Host-` cookies by hand (kept in a jar file between runs), submits
the forms the pages render (mcpgate's, or oidc-provider's development interactions), and reads
the code from the final `Location` (for mcpgate's client the driver then delivers that redirect
to the CLI's loopback listener).

**Third-party authorization server.** `ci/interop/oidc-as.mjs` runs `oidc-provider` with PKCE
required (S256 only), open dynamic registration and resource indicators (RFC 8707): for the
gateway's resource it issues JWT access tokens (RFC 9068 `at+jwt`, ES256) whose `aud` is that
resource, with the scopes `notes:read` / `notes:write`. A second gateway trusts it
(`[[gateway.trusted_issuer]]`) with `advertise_own_issuer = false`, so its PRM names only the
provider. `ci/interop/third-party-as.mjs` registers at the provider, gets tokens through its
login and consent pages and presents them to the gateway: minted for the gateway's resource →
accepted (`tools/list` + `tools/call`); minted for another resource, or without a resource (an
opaque token) → 401 `invalid_token`. Then mcpgate's own client logs in to the gateway's server
and is sent to the provider by the PRM (the "signing in at `oidc-provider`" row).

**DPoP.** mcpgate's authorization server, its gateway and `oidc-provider` all offer DPoP (RFC
9449), so mcpgate's client holds DPoP-bound tokens in both of its rows: every token request and
every MCP request carries a proof made with the grant's key, refreshes of the provider's bound
refresh token included. The third-party run then checks that the provider bound the token
(`cnf.jkt`, the key in the client's 0600 token file) and that the gateway refuses the same access
token presented as a bearer token. The SDK clients do not implement DPoP; they ask without a
proof and get bearer tokens, as before.

**Each user's own account at an upstream** (`user_oauth`, [upstream-credentials.md](upstream-credentials.md)).
A third mcpgate has the gateway trusting `oidc-provider` as its upstream `partner`, with
`auth = { type = "user_oauth" }` and neither issuer nor endpoints configured: it finds the
provider through that upstream's protected-resource metadata. Its client at the provider is
registered by `ci/interop.sh` (DCR) with the connect callback as redirect URI.
`ci/interop/user-oauth.mjs` runs two clients against it:
- **The official TypeScript SDK client** gets the URL-elicitation-required error (`-32042`) with
  a connect URL. The user signs in at mcpgate, continues on the connect page, and signs in and
  consents at the provider. `mcpgate users connections` then lists the account, and the retried
  call succeeds.
- **mcpgate's client:** after `mcpgate users connections admin --unlink partner`, `mcpgate call`
  shows the connect URL once and waits while the user connects, then succeeds.

In both rows the upstream gateway's audit log names the provider's subject that the user chose,
so the call reached the upstream with the user's own provider token.

"with workaround" means the client as shipped does not complete that step by itself; the note
says why and what the test does so that the rest of the flow is still verified.

## Matrix

MD
    cat "$MATRIX"
    cat <<'MD'

Regenerate: `ci/interop.sh --report` (or `ci/interop.sh` then `ci/interop-report.sh`).
Covered elsewhere as well: mcpgate's own client (`mcpgate login|tools|call|bridge`) in
`crates/mcpgate/tests/it/client.rs`; rmcp without OAuth through the gateway in
`crates/mcpgate-gateway/tests/it/sdk.rs` and driving `mcpgate bridge`; a real `oidc-provider` as
the upstream identity provider in `crates/mcpgate-authz/tests/it/idp_real.rs`.
MD
} > "$ROOT/docs/interop.md"
echo "wrote docs/interop.md" >&2
