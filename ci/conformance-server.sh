#!/usr/bin/env bash
# Runs the server side of the official MCP conformance suite against mcpgate's conformance
# fixture (crates/mcpgate-upstreams, binary mcpgate-conformance-server) directly, and through
# `mcpgate serve` in its loopback-only no-auth mode (`[gateway] authentication = "none"`) for
# an HTTP upstream (the fixture over Streamable HTTP) and a stdio upstream (the fixture as a
# child process). See docs/conformance.md.
#
#   1. installs Node 22 and the pinned @modelcontextprotocol/conformance into
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci (cached, like ci/conformance-client.sh);
#   2. builds mcpgate-conformance-server and mcpgate (dev profile);
#   3. starts the fixture on 127.0.0.1 (port chosen by the OS) and `mcpgate serve` on a free
#      127.0.0.1 port with a temporary data dir and two upstreams, `http` and `stdio`;
#   4. for each target (direct, gateway-http, gateway-stdio) runs `--requirements 2025-11-25`,
#      `--requirements 2026-07-28` and the single scenarios dns-rebinding-protection and
#      server-session-lifecycle, all with the SAME --expected-failures file
#      (ci/conformance-server-expected-failures.yaml): a listed failure that passes fails the
#      run, so every target must give exactly the direct result;
#   5. writes $OUT/summary.md (scenario x target, per run) and fails on any unexpected result
#      or on any scenario whose result differs between targets.
#
# Environment: CONFORMANCE_OUT (default target/conformance-server), CARGO_TARGET_DIR.
# Only 127.0.0.1 is contacted, apart from npm on a cold cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
OUT=${CONFORMANCE_OUT:-$ROOT/target/conformance-server}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FIXTURE=$TARGET_DIR/debug/mcpgate-conformance-server
MCPGATE=$TARGET_DIR/debug/mcpgate
EXPECTED=$ROOT/ci/conformance-server-expected-failures.yaml

log() { printf '== %s\n' "$*" >&2; }

# --- 1. Node 22 and the suite (cached) -------------------------------------------------------
# shellcheck source=ci/conformance-suite.sh
source "$ROOT/ci/conformance-suite.sh"

# --- 2. binaries -----------------------------------------------------------------------------
log "building mcpgate-conformance-server and mcpgate"
cargo build -p mcpgate-upstreams --bin mcpgate-conformance-server >&2
cargo build -p mcpgate --bin mcpgate >&2
[[ -x $FIXTURE && -x $MCPGATE ]] || { echo "missing $FIXTURE or $MCPGATE" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- 3. fixture and gateway ------------------------------------------------------------------
"$FIXTURE" http >"$WORK/fixture.out" 2>"$OUT/fixture.log" &
PIDS+=($!)
for _ in $(seq 100); do
    grep -q '^LISTENING ' "$WORK/fixture.out" 2>/dev/null && break
    sleep 0.1
done
FIXTURE_ADDR=$(sed -n 's/^LISTENING //p' "$WORK/fixture.out")
[[ -n $FIXTURE_ADDR ]] || { echo "fixture did not start (see $OUT/fixture.log)" >&2; exit 1; }
log "fixture at http://$FIXTURE_ADDR/mcp"

GATEWAY_PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat >"$WORK/mcpgate.toml" <<EOF
[gateway]
authentication = "none"

[gateway.audit]
stdout = false
file = "$OUT/audit.jsonl"

[[upstream]]
name = "http"
http = { url = "http://$FIXTURE_ADDR/mcp" }

[[upstream]]
name = "stdio"
stdio = { command = "$FIXTURE", args = ["stdio"] }
EOF
cp "$WORK/mcpgate.toml" "$OUT/mcpgate.toml"
"$MCPGATE" --data-dir "$WORK/data" --config "$WORK/mcpgate.toml" serve --listen "127.0.0.1:$GATEWAY_PORT" \
    >"$OUT/gateway.stdout" 2>"$OUT/gateway.log" &
PIDS+=($!)
GATEWAY=http://127.0.0.1:$GATEWAY_PORT
for _ in $(seq 150); do
    curl -fsS "$GATEWAY/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$GATEWAY/healthz" >/dev/null || { echo "mcpgate serve did not start (see $OUT/gateway.log)" >&2; exit 1; }
log "gateway at $GATEWAY (authentication = \"none\")"

declare -A URLS=(
    [direct]="http://$FIXTURE_ADDR/mcp"
    [gateway-http]="$GATEWAY/mcp/http"
    [gateway-stdio]="$GATEWAY/mcp/stdio"
)
TARGETS=(direct gateway-http gateway-stdio)
RUNS=(requirements-2025-11-25 requirements-2026-07-28 dns-rebinding-protection server-session-lifecycle)

# --- 4. the suite ----------------------------------------------------------------------------
failed=0
for target in "${TARGETS[@]}"; do
    for run in "${RUNS[@]}"; do
        case $run in
            requirements-*) args=(--requirements "${run#requirements-}") ;;
            *) args=(--scenario "$run") ;;
        esac
        dir=$OUT/$target/$run
        mkdir -p "$dir"
        log "$target: $run"
        if "${CONF[@]}" server --url "${URLS[$target]}" "${args[@]}" --expected-failures "$EXPECTED" \
            -o "$dir" >"$dir.log" 2>&1; then
            echo "$target $run ok" >>"$OUT/runs.txt"
        else
            echo "$target $run UNEXPECTED" >>"$OUT/runs.txt"
            log "$target: $run had unexpected results:"
            sed -n '/=== SUMMARY/,$p' "$dir.log" | grep -v '^✓' >&2 || tail -n 30 "$dir.log" >&2
            failed=1
        fi
    done
done

# --- 5. summary ------------------------------------------------------------------------------
# Each scenario's result per target from its checks.json: FAIL (a FAILURE), WARN (a WARNING),
# else pass; then the table and a check that every target equals direct.
node - "$OUT" "${TARGETS[@]}" -- "${RUNS[@]}" >"$OUT/summary.md" <<'JS' || failed=1
const fs = require("fs"), path = require("path");
const argv = process.argv.slice(2), out = argv[0], sep = argv.indexOf("--");
const targets = argv.slice(1, sep), runs = argv.slice(sep + 1);
const table = {}; // run -> scenario -> target -> result
for (const run of runs) for (const target of targets) {
  const dir = path.join(out, target, run);
  for (const d of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const f = path.join(dir, d, "checks.json");
    if (!fs.existsSync(f)) continue;
    const checks = JSON.parse(fs.readFileSync(f, "utf8"));
    const scenario = d.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
    const count = (s) => checks.filter((c) => c.status === s).length;
    const fail = count("FAILURE"), warn = count("WARNING"), ok = count("SUCCESS");
    const res = fail ? `FAIL (${fail} failed, ${ok} passed)` : warn ? `WARN (${warn} warnings, ${ok} passed)` : `pass (${ok})`;
    ((table[run] ??= {})[scenario] ??= {})[target] = res;
  }
}
let differ = 0;
const lines = ["# MCP conformance, server side", "",
  "Targets: `direct` = the fixture over HTTP; `gateway-http` / `gateway-stdio` = through",
  "`mcpgate serve` (`authentication = \"none\"`) to the fixture over HTTP / as a stdio child.", ""];
const totals = [];
for (const run of runs) {
  lines.push(`## ${run}`, "", `| scenario | ${targets.join(" | ")} |`, `|---|${targets.map(() => "---").join("|")}|`);
  const scen = table[run] ?? {};
  for (const s of Object.keys(scen).sort()) {
    const row = targets.map((t) => scen[s][t] ?? "missing");
    const kinds = new Set(row.map((r) => r.split(" ")[0]));
    if (kinds.size > 1) { differ++; process.stderr.write(`DIFFERS: ${run} ${s}: ${row.join(" / ")}\n`); }
    lines.push(`| \`${s}\`${kinds.size > 1 ? " **differs**" : ""} | ${row.join(" | ")} |`);
  }
  for (const t of targets) {
    const rs = Object.values(scen).map((r) => r[t] ?? "missing");
    totals.push(`| ${run} | ${t} | ${rs.filter((r) => r.startsWith("pass")).length} | ${rs.filter((r) => !r.startsWith("pass")).length} |`);
  }
  lines.push("");
}
lines.push("## Totals (scenarios)", "", "| run | target | pass | fail/warn |", "|---|---|---|---|", ...totals, "");
console.log(lines.join("\n"));
process.exit(differ ? 1 : 0);
JS
log "summary: $OUT/summary.md"
cat "$OUT/runs.txt" >&2

if [[ $failed -ne 0 ]]; then
    echo "conformance (server): FAILED" >&2
    exit 1
fi
echo "conformance (server): every target matches the expected results" >&2
