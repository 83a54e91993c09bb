#!/usr/bin/env python3
"""Checks deploy/kubernetes/ statically, against the binary itself.

What the binary knows comes from its own help text, not from a list kept
here: the subcommands from `batchline --help`, each command's environment
variables from `batchline <command> --help` ([env: NAME]), and the paths
the probe server answers from the METRICS_ADDR option's help.

- kustomization.yaml lists every manifest and only existing ones;
- every object passes the Kubernetes schema (kubernetes-validate, strict);
- every batchline container runs the image `batchline` (kustomize's
  `images:` rewrites it) with the image's entrypoint and a real subcommand;
- every env var it sets (directly or from a ConfigMap) is one that
  subcommand reads; no secret is set as a value or from secretKeyRef: a
  secret is a *_FILE pointing into a mounted Secret volume that holds
  that file; no value looks like a URL with a password;
- liveness and readiness probes ask /healthz and /readyz (paths the binary
  serves) on the METRICS_ADDR port, declared as a containerPort;
- requests are set, memory requests cover the bench's peak RSS of that
  stage (bench/results.json) and memory limits are above the requests;
- the aggregator is a StatefulSet whose volumeClaimTemplate is mounted at
  WORKER_DATA_DIR; executors are a Deployment.

Usage: scripts/check-kubernetes.py [--bin target/debug/batchline]
Needs PyYAML and kubernetes-validate (pip install pyyaml kubernetes-validate).
Exit 0 when all checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("check-kubernetes: PyYAML is missing: pip install pyyaml")

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "deploy/kubernetes"
IMAGE = "batchline"
# The web console (`batchline web`) is being written on its own branch.
# Options that carry a secret: only their *_FILE form may be set.
SECRET_VARS = {"DATABASE_URL", "RABBITMQ_URL", "RABBITMQ_PASS", "WEB_TOKEN"}
# Variables that name a file and the Secret that must hold it.
FILE_VARS_SUFFIX = "_FILE"
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
# bench/results.json names processes by their role (executor-1, …).
BENCH_ROLE = {"executor": "executor-1", "aggregator": "aggregator", "verifier": "verifier"}

errors: list[str] = []
warnings: list[str] = []


def error(msg: str) -> None:
    errors.append(msg)


def warn(msg: str) -> None:
    warnings.append(msg)


# --- what the binary says ------------------------------------------------


def run_help(binary: Path, *args: str) -> str | None:
    out = subprocess.run([str(binary), *args, "--help"], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "")}, timeout=30)
    return out.stdout if out.returncode == 0 else None


def subcommands(binary: Path) -> set[str]:
    text = run_help(binary) or ""
    block = text.split("Commands:", 1)[-1].split("Options:", 1)[0]
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)\s", block, re.M)} - {"help"}


def env_vars(help_text: str) -> set[str]:
    return set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", help_text))


def served_paths(help_text: str) -> set[str]:
    """The paths the METRICS_ADDR option's help says the server answers."""
    entry = re.search(r"--metrics-addr[^\n]*\n(.*?)\[env: METRICS_ADDR", help_text, re.S)
    return set(re.findall(r"(/[a-z]+)\b", entry.group(1))) if entry else set()


# --- the manifests -------------------------------------------------------


def load_manifests() -> list[tuple[str, dict]]:
    kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    listed = kustomization.get("resources") or []
    present = sorted(p.name for p in DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in listed:
        if not (DIR / name).exists():
            error(f"kustomization.yaml lists {name}, which does not exist")
    for name in present:
        if name not in listed:
            error(f"deploy/kubernetes/{name} is not in kustomization.yaml's resources")
    if not any(i.get("name") == IMAGE for i in kustomization.get("images") or []):
        error(f"kustomization.yaml has no images: entry for {IMAGE}")
    docs = []
    for name in listed:
        path = DIR / name
        if not path.exists():
            continue
        try:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    docs.append((name, doc))
        except yaml.YAMLError as e:
            error(f"{name}: not valid YAML: {e}")
    return docs


def schema_check(docs: list[tuple[str, dict]]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        error("kubernetes-validate is missing: pip install kubernetes-validate")
        return
    version = kubernetes_validate.latest_version()
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            error(f"{name}: {doc.get('kind')} {doc['metadata'].get('name')}: schema: {path}: {e.message}")
        except Exception as e:  # an unknown kind or version: the tool says which
            error(f"{name}: {doc.get('kind')}: cannot validate: {e}")


def container_env(container: dict, configmaps: dict[str, dict]) -> dict[str, dict]:
    """name -> the env entry ({value} or {valueFrom}) of a container."""
    env: dict[str, dict] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            data = configmaps.get(ref["name"])
            if data is None:
                error(f"envFrom names ConfigMap {ref['name']}, which is not among the manifests")
                continue
            env.update({k: {"value": str(v)} for k, v in data.items()})
        if source.get("secretRef"):
            error("envFrom secretRef: secrets must be mounted as files, not put in the environment")
    for item in container.get("env") or []:
        env[item["name"]] = item
    return env


def secret_files(pod: dict, container: dict) -> dict[str, str]:
    """mounted path of every file a Secret volume provides -> secret name."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    files = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        secret = volume.get("secret")
        if not secret:
            continue
        items = secret.get("items")
        if not items:
            files[mount["mountPath"].rstrip("/") + "/*"] = secret["secretName"]
        for item in items or []:
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = secret["secretName"]
    return files


def check_env(where: str, env: dict[str, dict], known: set[str] | None, files: dict[str, str]) -> None:
    for name, entry in env.items():
        if known is not None and name not in known:
            error(f"{where}: sets {name}, which `batchline` does not read for this command")
        value_from = entry.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            error(f"{where}: {name} comes from secretKeyRef: mount the Secret and use a *_FILE variable")
        if name in SECRET_VARS:
            error(f"{where}: sets {name} directly: use {name}_FILE and a mounted Secret")
        value = entry.get("value", "")
        if CREDENTIALS_IN_URL.search(value):
            error(f"{where}: {name} holds a URL with a password")
        if name.endswith(FILE_VARS_SUFFIX):
            parent = value.rsplit("/", 1)[0] + "/*"
            if value not in files and parent not in files:
                error(f"{where}: {name}={value} is not a file of a mounted Secret")


def check_probes(where: str, container: dict, env: dict[str, dict], served: set[str] | None) -> None:
    addr = (env.get("METRICS_ADDR") or {}).get("value")
    if not addr:
        error(f"{where}: no METRICS_ADDR: the probes have nothing to ask")
        return
    port = int(addr.rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    if port not in ports.values():
        error(f"{where}: METRICS_ADDR port {port} is not a containerPort")
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
        probe = container.get(kind)
        if probe is None:
            if path:
                error(f"{where}: no {kind}")
            continue
        get = probe.get("httpGet")
        if not get:
            error(f"{where}: {kind} is not an httpGet on the probe server")
            continue
        if path and get.get("path") != path:
            error(f"{where}: {kind} asks {get.get('path')}, should ask {path}")
        if served is not None and get.get("path") not in served:
            error(f"{where}: {kind} asks {get.get('path')}, which the binary does not serve ({sorted(served)})")
        target = get.get("port")
        target = ports.get(target) if isinstance(target, str) else target
        if target != port:
            error(f"{where}: {kind} port {get.get('port')} is not METRICS_ADDR's port {port}")


def memory_mib(quantity: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(quantity))
    if not m:
        error(f"unreadable memory quantity {quantity!r}")
        return 0.0
    scale = {None: 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    return float(m.group(1)) * scale[m.group(2)]


def check_resources(where: str, role: str, container: dict, bench: dict) -> None:
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for key in ("cpu", "memory"):
        if key not in requests:
            error(f"{where}: no {key} request")
    if "memory" not in requests:
        return
    request = memory_mib(requests["memory"])
    peaks = [sizes.get(BENCH_ROLE.get(role, ""), 0) for sizes in (bench.get("peak_rss_mb") or {}).values()]
    if role in BENCH_ROLE:
        if not peaks or not max(peaks):
            error(f"{where}: bench/results.json has no peak RSS for {role}")
        elif request < max(peaks):
            error(f"{where}: memory request {requests['memory']} is below the bench's peak RSS {max(peaks)} MiB")
    if "memory" in limits and memory_mib(limits["memory"]) < request:
        error(f"{where}: memory limit below the request")


def check_workload(name: str, doc: dict, configmaps: dict, binary: Path | None, commands: set[str], bench: dict) -> str | None:
    kind, meta = doc["kind"], doc["metadata"]["name"]
    pod = doc["spec"]["template"]["spec"]
    role = None
    for container in pod.get("containers") or []:
        where = f"{name}: {kind} {meta} container {container['name']}"
        if container.get("image") != IMAGE:
            error(f"{where}: image {container.get('image')!r}, expected {IMAGE!r} (kustomize sets the registry and tag)")
        if container.get("command"):
            error(f"{where}: overrides the image's entrypoint (batchline)")
        args = container.get("args") or []
        role = args[0] if args else None
        known = served = None
        if role in commands and binary:
            help_text = run_help(binary, role) or ""
            known, served = env_vars(help_text), served_paths(help_text)
            if not served:
                error(f"`batchline {role} --help` names no served path for METRICS_ADDR")
        else:
            error(f"{where}: `batchline {role}` is not a subcommand ({sorted(commands)})")
        env = container_env(container, configmaps)
        check_env(where, env, known, secret_files(pod, container))
        check_probes(where, container, env, served)
        check_resources(where, role or "", container, bench)
        if role == "aggregator":
            claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates") or []}
            data_dir = (env.get("WORKER_DATA_DIR") or {}).get("value")
            mounted = {m["name"] for m in container.get("volumeMounts") or [] if m["mountPath"] == data_dir}
            if kind != "StatefulSet" or not claims & mounted:
                error(f"{where}: the aggregator must be a StatefulSet with a volume claim mounted at WORKER_DATA_DIR ({data_dir})")
        if role == "executor" and kind != "Deployment":
            error(f"{where}: executors should be a Deployment (stateless, scaled freely)")
    return role


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("BATCHLINE_BIN") or str(ROOT / "target/debug/batchline"))
    args = parser.parse_args()
    binary = Path(args.bin)
    if not binary.is_file():
        print(f"error: no batchline binary at {binary}: cargo build -p batchline first (or --bin)")
        return 1
    commands = subcommands(binary)
    if not commands:
        error(f"`{binary} --help` lists no subcommands")

    docs = load_manifests()
    schema_check(docs)
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for _, d in docs if d.get("kind") == "ConfigMap"}
    for name, data in configmaps.items():
        for key, value in data.items():
            if CREDENTIALS_IN_URL.search(str(value)):
                error(f"ConfigMap {name}: {key} holds a URL with a password")
    bench = json.loads((ROOT / "bench/results.json").read_text())
    roles = set()
    for name, doc in docs:
        if doc.get("kind") in ("Deployment", "StatefulSet"):
            roles.add(check_workload(name, doc, configmaps, binary, commands, bench))
    for role in ("executor", "aggregator", "verifier", "web"):
        if role not in roles:
            error(f"deploy/kubernetes: no workload runs `batchline {role}`")

    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"check-kubernetes: {len(docs)} objects, {len(errors)} errors, {len(warnings)} warnings: "
          f"{'FAILED' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
