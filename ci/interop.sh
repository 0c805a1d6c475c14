#!/usr/bin/env bash
# Interop matrix (issue 6): the official MCP SDK clients, each with its own OAuth support, against
# mcpgate's authorization server + gateway — discovery, dynamic registration, authorization code +
# PKCE with the consent approved through the real login/consent forms (headless), token,
# tools/list, tools/call, a step-up to notes:write and a refresh.
#
#   1. installs the pinned npm @modelcontextprotocol/sdk into
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/interop-ts and the pinned PyPI mcp into a venv at
#      .../mcpgate-ci/interop-py (cached; a cold run installs them); needs node >= 20, python3 >= 3.10;
#   2. builds target/debug/mcpgate (dev profile) unless MCPGATE_BIN names a binary;
#   3. starts one `mcpgate serve --demo` on a free 127.0.0.1 port with a temporary data directory
#      and a config file holding only the demo `notes` upstream (an empty config file would drop
#      the embedded demo upstream);
#   4. runs ci/interop/ts-client.mjs, then ci/interop/py_client.py (each prints PASS/FAIL lines);
#   5. writes target/interop/matrix.md (and results-*.json); exits non-zero on any FAIL.
#
#   ci/interop.sh --report   also regenerates docs/interop.md from the matrix (ci/interop-report.sh).
#
# Environment: MCPGATE_BIN, CARGO_TARGET_DIR. Only 127.0.0.1 is contacted, apart from npm and
# PyPI on a cold cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TS_SDK_VERSION=1.32.2   # npm @modelcontextprotocol/sdk
PY_SDK_VERSION=2.3.0    # PyPI mcp
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
TS_DIR=$CACHE/interop-ts
PY_DIR=$CACHE/interop-py
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

# --- 3. the server -----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-interop.XXXXXX")
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

# The embedded demo upstream, spelled out (a config file replaces the embedded defaults).
cat > "$WORK/mcpgate.toml" <<TOML
[[upstream]]
name = "notes"
title = "Notes (demo)"
scopes = ["notes:read"]
stdio = { command = "$BIN", args = ["demo-upstream"] }
scope_implies = { "notes:admin" = ["notes:write"], "notes:write" = ["notes:read"] }
[upstream.tools.add_note]
scopes = ["notes:write"]
[upstream.tools.delete_note]
scopes = ["notes:admin"]
TOML

OTP=
for attempt in 1 2 3; do
    PORT=$(free_port)
    rm -rf "$WORK/data" && mkdir -p "$WORK/data"
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

# --- 5. the matrix -----------------------------------------------------------------------------
python3 - "$OUT" "$(($(date +%s) - START))" <<'PY'
import glob, json, sys, datetime
out, secs = sys.argv[1], sys.argv[2]
cols = [("discovery", "discovery"), ("registration", "registration"), ("authcode", "auth code + PKCE"),
        ("tools", "tools/list + call"), ("stepup", "step-up"), ("refresh", "refresh")]
rows, notes = [], []
for f in sorted(glob.glob(f"{out}/results-*.json")):
    r = json.load(open(f))
    cells = []
    for key, _ in cols:
        c = r["cells"].get(key, {"ok": False, "note": "not run"})
        mark = ("pass with workaround" if c.get("workaround") else "pass") if c["ok"] else "**FAIL**"
        if c.get("note"):
            notes.append(f"{r['client']} {r['version']}, {dict(cols)[key]}: {c['note']}")
            mark += f" ({len(notes)})"
        cells.append(mark)
    rows.append(f"| {r['client']} | {r['version']} | " + " | ".join(cells) + " |")
md = ["| client | SDK version | " + " | ".join(t for _, t in cols) + " |",
      "|---|---|" + "---|" * len(cols), *rows, ""]
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
    log "interop failed; server log:"
    tail -n 40 "$WORK/server.err" >&2 || true
    exit "$status"
fi
log "interop passed in $(($(date +%s) - START)) s"
