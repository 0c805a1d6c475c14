#!/usr/bin/env bash
# Drives mcpgate's login and consent pages in a real headless Chromium (ci/browser/pages.test.mjs):
# sign-in through the one-time password change, the consent page's facts, approve and deny
# reaching a loopback redirect_uri, a consent form without its CSRF token refused, the pages
# refused in a frame, the cookies' attributes, and screenshots at laptop and phone widths
# (written to docs/img: consent.png, consent-phone.png, connect.png, connect-phone.png,
# connections.png).
#
#   1. installs Debian's chromium when /usr/bin/chromium is missing (needs root and apt);
#   2. installs the pinned playwright-core into ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/browser
#      (cached; a cold run installs from npm); Node >= 20 must be on PATH;
#   3. builds target/debug/mcpgate (dev profile) unless MCPGATE_BIN names a binary;
#   4. starts `mcpgate serve --demo` on a free 127.0.0.1 port with a temporary data directory;
#   5. runs the tests with `node --test`, stops the server; exits non-zero on any failure.
#
# Environment: MCPGATE_BIN, CARGO_TARGET_DIR, CHROMIUM (default /usr/bin/chromium),
# BROWSER_IMG_DIR (default docs/img). Only 127.0.0.1 is contacted, apart from apt and npm on a
# cold machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PLAYWRIGHT_VERSION=1.65.1
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/browser
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
IMG=${BROWSER_IMG_DIR:-$ROOT/docs/img}

log() { printf '== %s\n' "$*" >&2; }

# --- 1. Chromium -------------------------------------------------------------------------------
if [[ ! -x $CHROMIUM ]]; then
    log "installing Debian's chromium"
    SUDO=
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
[[ -x $CHROMIUM ]] || { log "no browser at $CHROMIUM"; exit 1; }
log "$("$CHROMIUM" --version 2>/dev/null || echo chromium)"

# --- 2. playwright-core (cached) ---------------------------------------------------------------
command -v node >/dev/null || { log "node (>= 20) is required"; exit 1; }
installed=$(node -p "try { require('$CACHE/node_modules/playwright-core/package.json').version } catch { '' }")
if [[ $installed != "$PLAYWRIGHT_VERSION" ]]; then
    log "installing playwright-core@$PLAYWRIGHT_VERSION into $CACHE"
    mkdir -p "$CACHE"
    [[ -f $CACHE/package.json ]] || (cd "$CACHE" && npm init -y >/dev/null)
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core never downloads browsers, but be explicit.
    (cd "$CACHE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
        npm install --no-audit --no-fund --save-exact "playwright-core@$PLAYWRIGHT_VERSION" >&2)
fi

# --- 3. mcpgate --------------------------------------------------------------------------------
if [[ -n ${MCPGATE_BIN:-} ]]; then
    BIN=$MCPGATE_BIN
else
    log "cargo build -p mcpgate (dev profile)"
    cargo build -q -p mcpgate >&2
    BIN=$TARGET_DIR/debug/mcpgate
fi
[[ -x $BIN ]] || { log "no mcpgate binary at $BIN"; exit 1; }

# --- 4. the server -----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-browser.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

OTP=
for attempt in 1 2 3; do
    PORT=$(free_port)
    rm -rf "$WORK/data" && mkdir -p "$WORK/data"
    # The demo's notes upstream spelled out (a config file replaces the embedded defaults), and a
    # `user_oauth` upstream whose authorization server is a closed loopback port: its connect
    # and connected-accounts pages render without a live third party.
    cat > "$WORK/mcpgate.toml" <<TOML
[gateway]
dev_allow_http_loopback_token_url = true

[[upstream]]
name = "notes"
title = "Notes (demo)"
scopes = ["notes:read"]
stdio = { command = "$BIN", args = ["demo-upstream"] }
shared = true

[[upstream]]
name = "github"
title = "GitHub"
http = { url = "http://127.0.0.1:4/mcp" }
auth = { type = "user_oauth", client_id = "mcpgate-browser-test", client_secret = "\${env:BROWSER_TEST_SECRET}", authorization_endpoint = "http://127.0.0.1:4/authorize", token_endpoint = "http://127.0.0.1:4/token", scopes = ["repo", "read:org"] }
TOML
    BROWSER_TEST_SECRET=not-a-real-secret \
        "$BIN" --config "$WORK/mcpgate.toml" --data-dir "$WORK/data" serve --demo --listen "127.0.0.1:$PORT" \
        >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        if grep -q 'listening' "$WORK/server.err" 2>/dev/null \
            && grep -q 'one-time password:' "$WORK/server.out" 2>/dev/null; then
            OTP=$(sed -n 's/.*one-time password: *\([^ ]*\).*/\1/p' "$WORK/server.out" | head -n1)
            break
        fi
        sleep 0.1
    done
    [[ -n $OTP ]] && break
    log "server did not start on port $PORT (attempt $attempt):"
    tail -n 20 "$WORK/server.err" >&2 || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
done
[[ -n $OTP ]] || { log "could not start mcpgate serve --demo"; exit 1; }
log "mcpgate serve --demo on http://127.0.0.1:$PORT"

# --- 5. the tests ------------------------------------------------------------------------------
mkdir -p "$IMG"
status=0
MCPGATE_URL="http://127.0.0.1:$PORT" MCPGATE_OTP="$OTP" MCPGATE_IMG="$IMG" CHROMIUM="$CHROMIUM" \
    PLAYWRIGHT_DIR="$CACHE" node --test --test-reporter=spec ci/browser/pages.test.mjs || status=$?
if [[ $status -ne 0 ]]; then
    log "browser tests failed (exit $status); server log:"
    tail -n 40 "$WORK/server.err" >&2 || true
    exit "$status"
fi
log "browser tests passed; screenshots in ${IMG#"$ROOT"/}: consent.png, consent-phone.png, connect.png, connect-phone.png, connections.png"
