"""Rules a rendered proctor chart must keep, checked against the binary's
own source so chart and code cannot drift apart silently.

usage: check_rendered.py default|production RENDERED.yaml SRC_DIR

Kubernetes validity is kubernetes-validate's job; this checks what only
proctor knows: the TOML keys and PROCTOR_* variables the binary accepts,
the `healthcheck` flags the probes use, the hardening, the migration hook.
"""

import pathlib
import re
import sys
import tomllib

import yaml

# The server keys: every render must wire all four from mounted Secrets, or
# replicas would each make keys of their own.
KEY_ENV = {
    "PROCTOR_IDENTIFIER_ENCRYPTION_KEY_FILE",
    "PROCTOR_IDENTIFIER_HASH_KEY_FILE",
    "PROCTOR_RECEIPT_SIGNING_KEY_FILE",
    "PROCTOR_AUDIT_SIGNING_KEY_FILE",
}
# Variables the chart sets only when their value is enabled (off by
# default), so a default render never does.
PENDING_ENV = {
    "PROCTOR_TLS_CERT",
    "PROCTOR_TLS_KEY",
    "PROCTOR_TLS_CLIENT_CA",
    "PROCTOR_OUTBOUND_CA_FILE",
}
BINARY = "/usr/local/bin/proctor"

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def source_facts(src):
    code = "\n".join(p.read_text() for p in pathlib.Path(src).rglob("*.rs"))
    config_rs = (pathlib.Path(src) / "config.rs").read_text()
    body = re.search(r"pub struct Config \{(.*?)\n\}", config_rs, re.S).group(1)
    toml_keys = set(re.findall(r"pub (\w+):", body))
    env_names = set(re.findall(r'env = "(PROCTOR_[A-Z0-9_]+)"', code))
    # clap derives `--tls-ca` from a field `tls_ca`.
    fields = set(re.findall(r"\b(\w+): (?:Option<|bool|String|u64|Vec<|PathBuf)", code))
    return toml_keys, env_names, fields


def main(variant, rendered, src):
    toml_keys, env_names, fields = source_facts(src)
    check(toml_keys and env_names, "could not read the Config struct or env names from src/")
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    for kind, n in [
        ("Deployment", 1),
        ("Service", 2),
        ("ConfigMap", 1),
        ("ServiceAccount", 1),
        ("HorizontalPodAutoscaler", 1),
        ("PodDisruptionBudget", 1),
        ("NetworkPolicy", 1),
        ("Job", 1),
        ("Pod", 1),
    ]:
        check(len(by_kind.get(kind, [])) == n, f"expected {n} {kind}, got {len(by_kind.get(kind, []))}")
    if errors:
        return

    dep = by_kind["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}

    # Configuration the binary understands.
    cm = next(d for d in by_kind["ConfigMap"] if "config.toml" in d.get("data", {}))
    cfg = tomllib.loads(cm["data"]["config.toml"])
    unknown = set(cfg) - toml_keys
    check(not unknown, f"config.toml has keys the binary refuses: {sorted(unknown)}")
    proctor_env = {n for d in docs for n in env_names_in(d)}
    allowed = env_names | (PENDING_ENV if variant == "production" else set())
    check(not (proctor_env - allowed), f"unknown PROCTOR_* variables: {sorted(proctor_env - allowed)}")
    if variant == "default":
        check(not (proctor_env & PENDING_ENV), "default render sets not-yet-supported variables")
    else:
        check(PENDING_ENV <= proctor_env, f"production render lacks {sorted(PENDING_ENV - proctor_env)}")
    check(KEY_ENV <= env_names, f"the binary lacks {sorted(KEY_ENV - env_names)}")
    check(KEY_ENV <= set(env), f"the server keys are not all wired: {sorted(KEY_ENV - set(env))}")
    check("PROCTOR_DEV_KEYS" not in env, "a multi-replica release never runs on development keys")

    # Pod wiring the operations guide promises.
    check(env.get("PROCTOR_LISTEN", {}).get("value") == "0.0.0.0:50051", "listen on 0.0.0.0:50051")
    check(env.get("PROCTOR_LOG_FORMAT", {}).get("value") == "json", "JSON logs")
    check("secretKeyRef" in env.get("PROCTOR_DATABASE_URL", {}).get("valueFrom", {}), "database URL from a Secret")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data_dir = env["PROCTOR_DATA_DIR"]["value"]
    check("emptyDir" in volumes.get(mounts.get(data_dir, ""), {}), "data dir is a writable emptyDir")
    for name in ["PROCTOR_CONFIG", "PROCTOR_JWT_JWKS", *sorted((PENDING_ENV | KEY_ENV) & set(env))]:
        path = env[name]["value"]
        check(any(path.startswith(m + "/") for m in mounts), f"{name}={path} is not on a mounted volume")
    check(c["args"][0] == "serve" and "--no-migrate" in c["args"], "serve --no-migrate (the Job migrates)")
    check("no_migrate" in fields, "the binary lacks --no-migrate")
    grace = cfg.get("shutdown_grace_seconds", 20)
    check(pod["terminationGracePeriodSeconds"] > grace, "termination grace exceeds the server's")

    # Hardening.
    psc, sc = pod["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True, "runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    check(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities dropped")
    check(pod.get("automountServiceAccountToken") is False, "no API token mounted")
    check(len(pod.get("topologySpreadConstraints", [])) == 2, "spread over zones and nodes")
    check("replicas" not in dep["spec"], "the autoscaler owns replicas")
    check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rolling update maxUnavailable 0")

    # Probes: kubelet gRPC without TLS, the binary's healthcheck with it.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
        p = c.get(probe)
        check(p is not None, f"{probe} missing")
        if not p:
            continue
        if variant == "default":
            check(p.get("grpc", {}).get("port") == 50051, f"{probe} is a gRPC probe")
        else:
            cmd = p.get("exec", {}).get("command", [])
            check(cmd[:2] == [BINARY, "healthcheck"], f"{probe} runs proctor healthcheck: {cmd}")
            check_flags(cmd, fields, probe)
    live = c["livenessProbe"]
    live_service = live.get("grpc", {}).get("service") or arg_after(live.get("exec", {}).get("command", []), "--service")
    check(live_service == "liveness", "liveness probes the process, not the database")
    ready = c["readinessProbe"]
    check(not ready.get("grpc", {}).get("service") and "--service" not in ready.get("exec", {}).get("command", []),
          "readiness probes the whole server")

    # The test pod uses the same binary.
    test_pod = by_kind["Pod"][0]
    check_flags(test_pod["spec"]["containers"][0]["args"], fields, "helm test pod")

    # Migration hook.
    job = by_kind["Job"][0]
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    check({"pre-install", "pre-upgrade"} <= set(hooks), "migration Job is a pre-install/pre-upgrade hook")
    check(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"], "Job runs proctor migrate")

    # Services.
    for svc in by_kind["Service"]:
        (port,) = svc["spec"]["ports"]
        check(port["name"] == "grpc" and port.get("appProtocol") == "grpc", f"{svc['metadata']['name']}: grpc port")
    check(any(s["spec"].get("clusterIP") == "None" for s in by_kind["Service"]), "headless Service")

    # Network policy: gRPC in, database and DNS out.
    np_ = by_kind["NetworkPolicy"][0]["spec"]
    check([p["port"] for r in np_["ingress"] for p in r["ports"]] == ["grpc"], "ingress on the gRPC port only")
    out_ports = {p["port"] for r in np_["egress"] for p in r["ports"]}
    check(5432 in out_ports, "egress to PostgreSQL")
    check(443 in out_ports, "egress to webhook receivers and list hosts over HTTPS")
    webhook_blocks = [
        peer["ipBlock"]
        for r in np_["egress"]
        if any(p["port"] == 443 for p in r["ports"])
        for peer in r.get("to", [])
        if "ipBlock" in peer
    ]
    check(
        any(b["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in b.get("except", []) for b in webhook_blocks),
        "webhook egress excludes private ranges",
    )
    if variant == "production":
        check(4317 in out_ports, "egress to the OTLP collector")
        check("OTEL_EXPORTER_OTLP_ENDPOINT" in env, "OTLP endpoint wired")
        check(
            env.get("OTEL_METRICS_EXPORTER", {}).get("value") == "otlp"
            and env.get("OTEL_METRIC_EXPORT_INTERVAL", {}).get("value", "").isdigit(),
            "metrics exported over OTLP on an interval in milliseconds",
        )

    dockerfile = pathlib.Path(src).parent / "Dockerfile"
    check(BINARY in dockerfile.read_text(), f"Dockerfile installs {BINARY}")


def env_names_in(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)
    for c in pod.get("containers", []) if isinstance(pod, dict) else []:
        for e in c.get("env", []):
            if e["name"].startswith("PROCTOR_"):
                yield e["name"]


def arg_after(cmd, flag):
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def check_flags(cmd, fields, where):
    for a in cmd:
        if a.startswith("--"):
            check(a[2:].replace("-", "_") in fields, f"{where}: proctor has no flag {a}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
    for e in errors:
        print(f"check_rendered ({sys.argv[1]}): {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)
