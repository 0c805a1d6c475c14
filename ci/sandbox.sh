#!/usr/bin/env bash
# A third-party stdio MCP server from a registry inside mcpgate's default sandbox (docs/sandbox.md):
#
#   1. installs the pinned npm @modelcontextprotocol/server-filesystem under /opt/mcpgate-ci
#      (cached). Not under $HOME: the sandboxed child runs as `nobody`, which cannot enter /root;
#   2. builds target/debug/mcpgate (MCPGATE_BIN names a prebuilt one);
#   3. starts `mcpgate serve` on a free 127.0.0.1 port in no-auth loopback mode with two upstreams
#      running the server under Debian's /usr/bin/node: `files` with the rules the server needs
#      (read its install dir, write its files dir) and `files_readonly` without the write rule;
#   4. runs ci/sandbox/check.mjs: the server starts, lists and writes inside the sandbox, and
#      without the write rule its write is refused with EACCES and nothing reaches the disk.
#
# Only 127.0.0.1 is contacted, apart from npm on a cold cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

FS_VERSION=2026.8.31   # npm @modelcontextprotocol/server-filesystem
PREFIX=${MCPGATE_CI_OPT:-/opt/mcpgate-ci}/server-filesystem-$FS_VERSION
PKG=$PREFIX/node_modules/@modelcontextprotocol/server-filesystem
NODE=/usr/bin/node
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '== %s\n' "$*" >&2; }

if [[ ! -x $NODE ]]; then
    log "installing Debian's nodejs"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
fi
[[ -x $NODE ]] || { log "Debian's nodejs ($NODE) is required"; exit 1; }
if [[ ! -f $PKG/package.json ]]; then
    log "installing @modelcontextprotocol/server-filesystem@$FS_VERSION into $PREFIX"
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
        "@modelcontextprotocol/server-filesystem@$FS_VERSION" >&2
fi
# Readable by the sandbox's unprivileged user whatever the umask was.
chmod -R a+rX "$(dirname "$PREFIX")"

if [[ -n ${MCPGATE_BIN:-} ]]; then
    MCPGATE=$MCPGATE_BIN
else
    cargo build -p mcpgate --bin mcpgate >&2
    MCPGATE=$TARGET_DIR/debug/mcpgate
fi

WORK=$(mktemp -d)
chmod 755 "$WORK"
FILES=$WORK/files
mkdir -m 777 "$FILES"
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$("$NODE" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat >"$WORK/mcpgate.toml" <<TOML
[gateway]
authentication = "none"

[gateway.audit]
stdout = false

[[upstream]]
name = "files"
stdio = { command = "$NODE", args = ["$PKG/dist/index.js", "$FILES"] }

[upstream.sandbox]
read = ["$PREFIX"]
write = ["$FILES"]

[[upstream]]
name = "files_readonly"
stdio = { command = "$NODE", args = ["$PKG/dist/index.js", "$FILES"] }

[upstream.sandbox]
read = ["$PREFIX", "$FILES"]
TOML

log "check-config: the effective sandboxes"
"$MCPGATE" --config "$WORK/mcpgate.toml" --data-dir "$WORK/data" check-config | sed -n '/^upstreams:/,$p' >&2

"$MCPGATE" --config "$WORK/mcpgate.toml" --data-dir "$WORK/data" serve --listen "127.0.0.1:$PORT" \
    >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 150); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }

if ! "$NODE" ci/sandbox/check.mjs "http://127.0.0.1:$PORT" "$FILES"; then
    log "mcpgate log:"
    cat "$WORK/serve.log" >&2
    exit 1
fi
