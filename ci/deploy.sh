#!/usr/bin/env bash
# The deployment files of docs/deployment.md, checked as shipped:
#
#   1. installs the pinned PyPI kubernetes-validate (with its offline schemas) into a venv at
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/kubernetes-validate (cached; a cold run
#      installs it); needs python3;
#   2. validates every manifest in deploy/kubernetes/ with --strict (unknown fields are errors)
#      against the schemas of Kubernetes 1.25 to 1.37; a WARN (a kind or apiVersion it has no
#      schema for) fails too;
#   3. ci/deploy/crosscheck.py: what no schema sees (selectors, named ports, probe paths, secret
#      paths under mounted Secrets or LoadCredential=, shutdown timings, unit settings that
#      would break the stdio sandbox);
#   4. `mcpgate check-config` on the ConfigMap's mcpgate.toml and deploy/systemd/mcpgate.toml,
#      with their secret files (random) in a temporary directory in place of /run/secrets/mcpgate
#      and /run/credentials/mcpgate.service, and this build's binary as the demo upstream's
#      command; builds target/debug/mcpgate unless MCPGATE_BIN names one;
#   5. `systemd-analyze verify` of deploy/systemd/mcpgate.service when systemd-analyze is
#      installed (skipped otherwise); any warning it prints fails.
#
# Environment: MCPGATE_BIN, CARGO_TARGET_DIR. Nothing is contacted, apart from PyPI on a cold
# cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KUBERNETES_VALIDATE_VERSION=1.37.0   # PyPI kubernetes-validate
TOMLI_VERSION=2.5.0                  # PyPI tomli, for Python < 3.11 only
KUBERNETES_VERSIONS=(1.25.0 1.26.0 1.27.0 1.28.0 1.29.0 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0)
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/kubernetes-validate
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '== %s\n' "$*" >&2; }
START=$(date +%s)

# --- 1. kubernetes-validate (cached) -----------------------------------------------------------
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
PY=$VENV/bin/python
installed=$([[ -x $PY ]] && "$PY" -c 'from importlib.metadata import version; print(version("kubernetes-validate"))' 2>/dev/null || true)
if [[ $installed != "$KUBERNETES_VALIDATE_VERSION" ]]; then
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into the venv $VENV"
    [[ -x $PY ]] || { rm -rf "$VENV"; python3 -m venv "$VENV"; }
    "$PY" -m pip install -q --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "tomli==$TOMLI_VERSION; python_version < '3.11'" >&2
fi

# --- 2. the manifests against the Kubernetes schemas -------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
manifests=(deploy/kubernetes/*.yaml)
log "kubernetes-validate --strict: ${manifests[*]} against Kubernetes ${KUBERNETES_VERSIONS[0]%.0}..${KUBERNETES_VERSIONS[-1]%.0}"
versions=()
for v in "${KUBERNETES_VERSIONS[@]}"; do versions+=(-k "$v"); done
set +e
"$VENV/bin/kubernetes-validate" --strict --quiet "${versions[@]}" "${manifests[@]}" >"$WORK/validate.out" 2>&1
rc=$?
set -e
# It exits 0 on a WARN (no schema for a kind or apiVersion, such as a misspelt kind): fail on
# any line it prints.
if [[ $rc -ne 0 || -s $WORK/validate.out ]]; then
    cat "$WORK/validate.out" >&2
    log "FAIL: a manifest does not validate"
    exit 1
fi
count=0
for f in "${manifests[@]}"; do count=$((count + $(grep -c '^kind:' "$f"))); done
log "$count resources in ${#manifests[@]} files valid for ${#KUBERNETES_VERSIONS[@]} Kubernetes versions"

# --- 3. what the schemas cannot see ------------------------------------------------------------
log "cross-checks (ci/deploy/crosscheck.py)"
"$PY" ci/deploy/crosscheck.py deploy "$WORK/configmap.toml" >&2

# --- 4. mcpgate check-config on the example configurations -------------------------------------
if [[ -n ${MCPGATE_BIN:-} ]]; then
    BIN=$MCPGATE_BIN
else
    log "cargo build -p mcpgate (dev profile)"
    cargo build -q -p mcpgate --bin mcpgate >&2
    BIN=$TARGET_DIR/debug/mcpgate
fi
[[ -x $BIN ]] || { log "no mcpgate binary at $BIN"; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
secret() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }

mkdir -m 700 "$WORK/secrets" "$WORK/credentials"
secret >"$WORK/secrets/master-key"
echo "postgres://mcpgate:$(secret | tr -d '=+/')@db.example:5432/mcpgate" >"$WORK/secrets/postgres-url"
secret | tr -d '=+/' >"$WORK/secrets/metrics-token"
sed "s#/run/secrets/mcpgate/#$WORK/secrets/#g" "$WORK/configmap.toml" >"$WORK/kubernetes.toml"
log "check-config: deploy/kubernetes/configmap.yaml's mcpgate.toml"
"$BIN" --config "$WORK/kubernetes.toml" check-config >"$WORK/check-kubernetes.out" 2>&1 \
    || { cat "$WORK/check-kubernetes.out" >&2; log "FAIL: check-config"; exit 1; }

secret >"$WORK/credentials/master-key"
: >"$WORK/credentials/tls.crt"
: >"$WORK/credentials/tls.key"
sed -e "s#/run/credentials/mcpgate.service/#$WORK/credentials/#g" \
    -e "s#command = \"/usr/local/bin/mcpgate\"#command = \"$BIN\"#" \
    deploy/systemd/mcpgate.toml >"$WORK/systemd.toml"
log "check-config: deploy/systemd/mcpgate.toml"
"$BIN" --config "$WORK/systemd.toml" check-config >"$WORK/check-systemd.out" 2>&1 \
    || { cat "$WORK/check-systemd.out" >&2; log "FAIL: check-config"; exit 1; }

# --- 5. the systemd unit -----------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    log "systemd-analyze verify deploy/systemd/mcpgate.service"
    # verify checks that ExecStart's program exists: point it at this build's binary.
    sed "s#^ExecStart=/usr/local/bin/mcpgate #ExecStart=$BIN #" deploy/systemd/mcpgate.service \
        >"$WORK/mcpgate.service"
    # It exits 0 on unknown keys and unparsable values (it ignores them, as systemd would):
    # fail on any line it prints.
    (cd "$WORK" && systemd-analyze verify --man=no "$WORK/mcpgate.service") >"$WORK/verify.out" 2>&1 \
        && [[ ! -s $WORK/verify.out ]] \
        || { cat "$WORK/verify.out" >&2; log "FAIL: systemd-analyze verify"; exit 1; }
else
    log "systemd-analyze not installed: the unit's syntax is not verified"
fi

# --- 6. the HAProxy configuration (the fleet tests run it; here its syntax alone) --------------
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [[ -x $HAPROXY ]]; then
    log "haproxy -c deploy/haproxy/mcpgate.cfg"
    "$HAPROXY" -c -q -f deploy/haproxy/mcpgate.cfg >"$WORK/haproxy.out" 2>&1 \
        || { cat "$WORK/haproxy.out" >&2; log "FAIL: haproxy -c"; exit 1; }
else
    log "haproxy not installed: deploy/haproxy/mcpgate.cfg is not checked"
fi

log "deployment files pass ($(( $(date +%s) - START )) s)"
