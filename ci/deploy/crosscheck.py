"""What a schema cannot see in deploy/: the facts that tie the files to each other and to
mcpgate's configuration (docs/deployment.md says why each one matters).

    crosscheck.py DEPLOY_DIR CONFIGMAP_TOML_OUT

Reads deploy/kubernetes/*.yaml, deploy/systemd/mcpgate.service and deploy/systemd/mcpgate.toml,
prints one line per broken fact and exits 1 if there is any. Writes the ConfigMap's mcpgate.toml
to CONFIGMAP_TOML_OUT for `mcpgate check-config`. Run by ci/deploy.sh with the venv's Python
(PyYAML comes with kubernetes-validate).
"""

import pathlib
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: ci/deploy.sh installs tomli
    import tomli as tomllib
import yaml

# mcpgate serve: in-flight requests drain for up to 30 s, then sessions and children get 5 s
# (crates/mcpgate/src/serve.rs DRAIN_TIMEOUT, gateway.shutdown).
DRAIN_SECS = 30 + 5
FILE_REF = re.compile(r"\$\{file:([^}]*)\}")

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def under(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def file_refs(text):
    return FILE_REF.findall(text)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def mounted_config(where, pod, container, configmaps):
    """The text of the config file `--config` names, from a mounted ConfigMap key, and the
    paths the pod's Secrets are mounted at."""
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for m in container.get("volumeMounts", []):
        if m["name"] not in volumes:
            fail(where, f"volumeMount {m['name']} names no volume")
        mounts[m["mountPath"]] = volumes.get(m["name"])
    text = None
    for _, cm in configmaps:
        for mount, vol in mounts.items():
            if not vol or vol.get("configMap", {}).get("name") != cm["metadata"]["name"]:
                continue
            items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]
            for item in items:
                if f"{mount.rstrip('/')}/{item['path']}" == config_path:
                    text = cm["data"].get(item["key"])
    if text is None:
        fail(where, f"--config {config_path} is not a key of a mounted ConfigMap")
    secrets = sorted(m for m, v in mounts.items() if v and "secret" in v)
    return text, secrets


def kubernetes(directory, toml_out):
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    by_kind = {}
    for name, doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append((name, doc))
    for kind in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in by_kind:
            fail("deploy/kubernetes", f"no {kind}")
    if errors:
        return
    [(dep_file, dep)] = by_kind["Deployment"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    if not matches(spec["selector"].get("matchLabels"), labels):
        fail(dep_file, "spec.selector does not select the pod template's labels")
    if spec.get("replicas", 1) < 2:
        fail(dep_file, "a fleet needs at least 2 replicas")
    [container] = [c for c in pod["containers"] if c["name"] == "mcpgate"]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

    for name, svc in by_kind["Service"]:
        if not matches(svc["spec"].get("selector"), labels):
            fail(name, f"Service {svc['metadata']['name']} does not select the Deployment's pods")
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in ports:
                fail(name, f"targetPort {p.get('targetPort')!r} is not a named container port")
    for name, pdb in by_kind["PodDisruptionBudget"]:
        if not matches(pdb["spec"]["selector"].get("matchLabels"), labels):
            fail(name, "the PodDisruptionBudget does not select the Deployment's pods")
        if pdb["spec"].get("minAvailable", 0) >= spec.get("replicas", 1):
            fail(name, "minAvailable leaves no disruption possible: node drains would block")

    probes = {k: container.get(k) for k in ("readinessProbe", "livenessProbe", "startupProbe")}
    want = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for kind, path in want.items():
        probe = probes[kind]
        if not probe or probe.get("httpGet", {}).get("path") != path:
            fail(dep_file, f"{kind} must be an httpGet of {path}")
    for kind, probe in probes.items():
        if probe and probe.get("httpGet", {}).get("port") not in ports:
            fail(dep_file, f"{kind} must probe a named container port over httpGet")

    config_text, secret_mounts = mounted_config(dep_file, pod, container, by_kind["ConfigMap"])
    if config_text is None:
        return
    toml_out.write_text(config_text)
    try:
        cfg = tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as e:
        fail("ConfigMap mcpgate.toml", f"not TOML: {e}")
        return
    # Operator jobs (keys rotate) must read the very same file and secrets.
    for name, job in by_kind.get("CronJob", []):
        job_pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for c in job_pod["containers"]:
            text, mounts = mounted_config(name, job_pod, c, by_kind["ConfigMap"])
            if text is not None and (text != config_text or mounts != secret_mounts):
                fail(name, f"container {c['name']} does not read the Deployment's config and secrets")

    if port_of(cfg.get("listen", "127.0.0.1:8080")) != ports.get("http"):
        fail(dep_file, "container port `http` is not the config's listen port")
    metrics_listen = cfg.get("metrics", {}).get("listen")
    if metrics_listen and port_of(metrics_listen) != ports.get("metrics"):
        fail(dep_file, "container port `metrics` is not the config's [metrics] listen port")
    if cfg.get("store", {}).get("backend") != "postgres":
        fail("ConfigMap mcpgate.toml", "replicas must share PostgreSQL: [store] backend = \"postgres\"")
    if "master_key" not in cfg:
        fail("ConfigMap mcpgate.toml", "replicas must share one master_key (else each generates its own)")
    for path in file_refs(config_text):
        if not any(under(path, m) for m in secret_mounts):
            fail("ConfigMap mcpgate.toml", f"${{file:{path}}} is not in a mounted Secret")

    # SIGTERM: /readyz says 503 for shutdown_delay_secs, then the drain; the kubelet's SIGKILL
    # must not come first, and the probe must see 503 before the listener closes.
    delay = cfg.get("shutdown_delay_secs", 0)
    ready = probes["readinessProbe"]
    seen_after = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
    if delay and delay <= seen_after:
        fail(dep_file, f"shutdown_delay_secs {delay} must exceed the readiness probe's "
                       f"periodSeconds x failureThreshold ({seen_after})")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= delay + DRAIN_SECS:
        fail(dep_file, f"terminationGracePeriodSeconds {grace} must exceed shutdown_delay_secs "
                       f"{delay} + {DRAIN_SECS}")


def unit_settings(text):
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd(directory):
    unit_path, config_path = directory / "mcpgate.service", directory / "mcpgate.toml"
    unit = unit_settings(unit_path.read_text())
    config_text = config_path.read_text()
    cfg = tomllib.loads(config_text)
    one = lambda key: (unit.get(key) or [""])[-1]
    exec_start = one("ExecStart").split()
    if "--config" not in exec_start or "serve" not in exec_start:
        fail(unit_path.name, "ExecStart must run `mcpgate --config FILE serve`")
    credentials = {v.split(":", 1)[0] for v in unit.get("LoadCredential", [])}
    cred_dir = "/run/credentials/mcpgate.service/"
    paths = file_refs(config_text) + [v for v in cfg.get("tls", {}).values() if isinstance(v, str)]
    for path in paths:
        if under(path, cred_dir) and path[len(cred_dir):] not in credentials:
            fail(config_path.name, f"{path} is not loaded by a LoadCredential= line")
    state = one("StateDirectory")
    if cfg.get("store", {}).get("backend", "sqlite") == "sqlite" and cfg.get("data_dir") != f"/var/lib/{state}":
        fail(config_path.name, f"data_dir must be the unit's StateDirectory (/var/lib/{state})")
    port = port_of(cfg.get("listen", "127.0.0.1:8080"))
    if port < 1024 and "CAP_NET_BIND_SERVICE" not in one("AmbientCapabilities"):
        fail(unit_path.name, f"listen port {port} needs AmbientCapabilities=CAP_NET_BIND_SERVICE")
    if one("KillMode") != "mixed":
        fail(unit_path.name, "KillMode=mixed: SIGTERM to mcpgate alone, which stops its children itself")
    stop = one("TimeoutStopSec")
    if not stop.isdigit() or int(stop) <= cfg.get("shutdown_delay_secs", 0) + DRAIN_SECS:
        fail(unit_path.name, f"TimeoutStopSec must exceed shutdown_delay_secs + {DRAIN_SECS}")
    # The sandbox helper needs these calls; @system-service does not hold them.
    allowed = " ".join(unit.get("SystemCallFilter", []))
    if allowed:
        for call in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "seccomp"):
            if call not in allowed.split():
                fail(unit_path.name, f"SystemCallFilter= must allow {call} (the stdio sandbox)")
    # Inherited by every stdio server: JIT runtimes die, runtimes lose /proc files.
    for key, bad in (("MemoryDenyWriteExecute", "yes"), ("ProcSubset", "pid")):
        if one(key) == bad:
            fail(unit_path.name, f"{key}={bad} breaks stdio servers (docs/deployment.md)")
    if one("ProtectSystem") == "strict" and one("PrivateTmp") != "yes":
        fail(unit_path.name, "ProtectSystem=strict needs PrivateTmp=yes: stdio servers' private dirs live in /tmp")


def main():
    deploy, toml_out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    kubernetes(deploy / "kubernetes", toml_out)
    systemd(deploy / "systemd")
    for e in errors:
        print(f"ERROR {e}")
    if errors:
        return 1
    print("cross-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
