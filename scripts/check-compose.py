#!/usr/bin/env python3
"""Checks the Docker side of the drill without a Docker engine.

Parses docker-compose.yml, Dockerfile, .dockerignore and deploy/ and checks
that they agree with each other, with .env.example and with the workspace.
(.env.example itself is checked against `batchline <command> --help` by
crates/batchline/tests/env_docs.rs, so these files are tied to the options
the binary really has; no list of them is kept here.)

- every variable the compose file interpolates or sets for a batchline
  service is listed in .env.example, with the same default, and so are the
  defaults scripts/stack.sh uses in compose mode;
- every path it names exists; depends_on targets exist and have what their
  condition needs (a healthcheck, a one-shot command);
- Prometheus scrapes every worker's METRICS_ADDR port and RabbitMQ's
  rabbitmq_prometheus endpoint; Grafana's datasource and dashboard are
  mounted where the provisioning files say, and the dashboard queries only
  metrics that exist;
- the Dockerfile copies every workspace member's manifest, runs as a
  non-root user, has batchline as its entrypoint, a Rust builder, a slim
  default runtime, and a `prebuilt` stage (before the builder) that takes a
  binary built on the host.

Usage: scripts/check-compose.py [--schema compose-spec.json] [--strict]
Needs PyYAML (pip install pyyaml); jsonschema only with --schema. Exit 0 when
all checks pass (warnings allowed unless --strict), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # a standalone tool: say how to get its one dependency
    sys.exit("check-compose: PyYAML is missing: pip install pyyaml (or apt-get install python3-yaml)")

ROOT = Path(__file__).resolve().parent.parent
BATCHLINE_IMAGE = "batchline:local"
# Events and phases the dashboard may name (the stages' StageStats counters).
METRIC_PREFIXES = ("batchline_", "rabbitmq_", "up")

errors: list[str] = []
warnings: list[str] = []


def error(msg: str) -> None:
    errors.append(msg)


def warn(msg: str) -> None:
    if msg not in warnings:
        warnings.append(msg)


def load_yaml(rel: str):
    path = ROOT / rel
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        error(f"{rel}: missing")
    except yaml.YAMLError as e:
        error(f"{rel}: not valid YAML: {e}")
    return None


def env_example() -> dict[str, str | None]:
    """Variables .env.example lists and their values; a commented-out one
    (`# VAR=`) is listed with no value."""
    out: dict[str, str | None] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out.setdefault(m.group(2), None if m.group(1) else m.group(3).strip())
    return out


INTERP = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolations(text: str) -> list[tuple[str, str | None]]:
    """(variable, default) for every ${VAR}, ${VAR:-default} and $VAR."""
    out = []
    for m in INTERP.finditer(text):
        name = m.group(1) or m.group(4)
        default = m.group(3) if m.group(2) in (":-", "-") else None
        out.append((name, default))
    return out


def is_batchline(svc: dict) -> bool:
    return svc.get("image") == BATCHLINE_IMAGE or "build" in svc


def check_compose(compose: dict, env: dict[str, str | None]) -> dict:
    text = (ROOT / "docker-compose.yml").read_text()
    for name, default in interpolations(text):
        if name not in env:
            error(f"docker-compose.yml interpolates ${name}, which .env.example does not list")
        elif default is not None and env[name] and default != env[name]:
            error(f"docker-compose.yml defaults {name} to {default!r}, .env.example to {env[name]!r}")

    services: dict = compose.get("services") or {}
    if not services:
        error("docker-compose.yml: no services")
        return services
    for required in ("postgres", "rabbitmq", "worker-1", "worker-2", "worker-3", "runner", "prometheus", "grafana"):
        if required not in services:
            error(f"docker-compose.yml: no service {required}")

    for name, svc in services.items():
        where = f"docker-compose.yml: {name}"
        # env_file: a required one must exist; .env is optional, its template must exist
        for ef in svc.get("env_file") or []:
            path, required = (ef, True) if isinstance(ef, str) else (ef.get("path"), ef.get("required", True))
            if required and not (ROOT / path).exists():
                error(f"{where}: env_file {path} does not exist")
            if path == ".env" and not (ROOT / ".env.example").exists():
                error(f"{where}: uses .env but there is no .env.example to copy it from")
        if "build" in svc:
            build = svc["build"]
            ctx = ROOT / (build.get("context", ".") if isinstance(build, dict) else build)
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            if not (ctx / dockerfile).exists():
                error(f"{where}: build file {ctx / dockerfile} does not exist")
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                if not (ROOT / source).exists():
                    error(f"{where}: bind mount source {source} does not exist")
            elif source and source not in (compose.get("volumes") or {}):
                error(f"{where}: volume {source} is not declared under volumes:")
        envs = svc.get("environment") or {}
        if isinstance(envs, list):
            envs = dict(e.split("=", 1) if "=" in e else (e, None) for e in envs)
        if is_batchline(svc):
            for key in envs:
                if key not in env:
                    error(f"{where}: sets {key}, which .env.example does not list")
            if not any((isinstance(e, dict) and e.get("path") == ".env") or e == ".env" for e in svc.get("env_file") or []):
                error(f"{where}: does not read .env")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                error(f"{where}: depends on {dep}, which is no service")
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond == "service_healthy" and "healthcheck" not in services[dep]:
                error(f"{where}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully" and services[dep].get("restart", "no") != "no":
                error(f"{where}: waits for {dep} to complete, but {dep} restarts")
    for name, probe in (("postgres", "pg_isready"), ("rabbitmq", "rabbitmq-diagnostics")):
        test = json.dumps((services.get(name) or {}).get("healthcheck", {}).get("test", ""))
        if probe not in test:
            error(f"docker-compose.yml: {name}'s healthcheck does not use {probe}")
    roles = {"worker-1": "executor", "worker-2": "aggregator", "worker-3": "verifier", "runner": "submit"}
    for name, role in roles.items():
        cmd = (services.get(name) or {}).get("command") or []
        if not cmd or cmd[0] != role:
            error(f"docker-compose.yml: {name} should run `batchline {role}`, runs {cmd}")
    runner = services.get("runner") or {}
    cmd = " ".join(str(c) for c in runner.get("command") or [])
    for var in ("NUM_BATCHES", "RUNS_PER_BATCH", "CHUNK_SIZE"):
        if var not in cmd:
            error(f"docker-compose.yml: the runner's command does not use {var}")
    if "--wait" not in cmd:
        error("docker-compose.yml: the runner does not --wait for the verdicts")
    w2 = services.get("worker-2") or {}
    if not any(str(v).startswith("./worker-data:") for v in w2.get("volumes") or []):
        error("docker-compose.yml: worker-2 does not bind-mount ./worker-data")
    for name, var in (("worker-1", "EXECUTORS"), ("worker-2", "AGGREGATORS")):
        replicas = str(((services.get(name) or {}).get("deploy") or {}).get("replicas", ""))
        if var not in replicas:
            error(f"docker-compose.yml: {name} has no deploy.replicas from {var}")
    return services


def metrics_port(svc: dict) -> int | None:
    envs = svc.get("environment") or {}
    addr = envs.get("METRICS_ADDR") if isinstance(envs, dict) else None
    if not addr:
        return None
    m = re.match(r"^.*:(\d+)$", str(addr))
    return int(m.group(1)) if m else None


def check_prometheus(services: dict) -> None:
    prom = load_yaml("deploy/prometheus.yml")
    if prom is None:
        return
    scraped: set[tuple[str, int]] = set()
    paths: dict[tuple[str, int], set[str]] = {}
    for job in prom.get("scrape_configs") or []:
        path = job.get("metrics_path", "/metrics")
        targets = []
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                host, _, port = t.partition(":")
                targets.append((host, int(port or 80)))
        for dns in job.get("dns_sd_configs") or []:
            for host in dns.get("names") or []:
                targets.append((host, int(dns.get("port", 0))))
        for host, port in targets:
            if host not in services:
                error(f"deploy/prometheus.yml: job {job.get('job_name')} scrapes {host}, which is no compose service")
            scraped.add((host, port))
            paths.setdefault((host, port), set()).add(path)
    for name, svc in services.items():
        port = metrics_port(svc)
        if port is not None and (name, port) not in scraped:
            error(f"deploy/prometheus.yml: {name} serves metrics on :{port} but no job scrapes it")
    if ("rabbitmq", 15692) not in scraped:
        error("deploy/prometheus.yml: RabbitMQ's rabbitmq_prometheus endpoint (rabbitmq:15692) is not scraped")
    elif "/metrics/detailed" not in paths[("rabbitmq", 15692)]:
        error("deploy/prometheus.yml: no /metrics/detailed job: no per-queue depths")
    plugins = ROOT / "deploy/rabbitmq/enabled_plugins"
    if plugins.exists() and "rabbitmq_prometheus" not in plugins.read_text():
        error("deploy/rabbitmq/enabled_plugins does not enable rabbitmq_prometheus")


def mounts_of(svc: dict) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str) and vol.startswith("."):
            parts = vol.split(":")
            out[parts[1]] = parts[0]
    return out


def source_events() -> tuple[set[str], set[str]]:
    """Event and phase names the pipeline's code records, read from its source."""
    events, phases = set(), set()
    for path in (ROOT / "crates").rglob("*.rs"):
        text = path.read_text(errors="replace")
        # the first argument of .count(…), a literal or an `if … { "a" } else { "b" }`
        for arg in re.findall(r'\.count\(\s*((?:if\b[^;]*?\}\s*else\s*\{[^}]*\})|"[a-z_]+")\s*,', text):
            events.update(re.findall(r'"([a-z_]+)"', arg))
        phases.update(re.findall(r'\.(?:phase|time)\(\s*"([a-z_]+)"', text))
    return events, phases


def check_grafana(services: dict) -> None:
    grafana = services.get("grafana") or {}
    mounts = mounts_of(grafana)
    prov = mounts.get("/etc/grafana/provisioning")
    if not prov:
        error("docker-compose.yml: grafana does not mount its provisioning directory")
        return
    ds_uids = set()
    for f in sorted((ROOT / prov / "datasources").glob("*.y*ml")):
        doc = load_yaml(str(f.relative_to(ROOT))) or {}
        for ds in doc.get("datasources") or []:
            ds_uids.add(ds.get("uid"))
            host = re.sub(r"^\w+://([^:/]+).*$", r"\1", ds.get("url", ""))
            if host not in services:
                error(f"{f.relative_to(ROOT)}: datasource URL host {host} is no compose service")
    if not ds_uids:
        error(f"{prov}/datasources: no datasource")
    dashboards = []
    for f in sorted((ROOT / prov / "dashboards").glob("*.y*ml")):
        doc = load_yaml(str(f.relative_to(ROOT))) or {}
        for p in doc.get("providers") or []:
            cpath = (p.get("options") or {}).get("path")
            host = mounts.get(cpath)
            if not host:
                error(f"{f.relative_to(ROOT)}: dashboards path {cpath} is not mounted into grafana")
                continue
            dashboards += sorted((ROOT / host).glob("*.json"))
    if not dashboards:
        error("grafana: no dashboard JSON is provisioned")
    home = (grafana.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        dir_, _, file = home.rpartition("/")
        if dir_ not in mounts or not (ROOT / mounts[dir_] / file).exists():
            error(f"docker-compose.yml: grafana's home dashboard {home} is not mounted")
    events, phases = source_events()
    known = {"batchline_events_total", "batchline_phase_seconds_sum", "batchline_phase_seconds_count",
             "batchline_phase_seconds_bucket", "batchline_phase_seconds", "batchline_partition_depth"}
    for f in dashboards:
        rel = f.relative_to(ROOT)
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            error(f"{rel}: not valid JSON: {e}")
            continue
        exprs = []
        for panel in dash.get("panels") or []:
            uid = (panel.get("datasource") or {}).get("uid")
            if panel.get("type") != "row" and uid not in ds_uids:
                error(f"{rel}: panel {panel.get('title')!r} uses datasource uid {uid}, not a provisioned one")
            exprs += [t.get("expr", "") for t in panel.get("targets") or []]
        titles = " ".join(p.get("title", "").lower() for p in dash.get("panels") or [])
        for topic in ("throughput", "duplicates", "retries", "dead letters", "queue depth", "partition"):
            if topic not in titles:
                error(f"{rel}: no panel about {topic}")
        for expr in exprs:
            for metric in re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?=[{\[)]|$)", expr):
                if metric.startswith("batchline_") and metric not in known:
                    error(f"{rel}: unknown batchline metric {metric}")
            for sel in re.findall(r'event=~?"([^"]+)"', expr):
                for ev in sel.split("|"):
                    if events and ev not in events:
                        warn(f"{rel}: event {ev!r} is not counted anywhere in crates/ (yet?)")
        if not any("batchline_phase_seconds" in e for e in exprs):
            error(f"{rel}: no panel on batchline_phase_seconds")
        if not any("rabbitmq_detailed_queue_messages" in e for e in exprs):
            error(f"{rel}: no panel on queue depths (rabbitmq_detailed_queue_messages*)")


def workspace_members() -> list[str]:
    doc = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return doc["workspace"]["members"]


def check_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # join continuation lines
    lines = re.sub(r"\\\n", " ", text).splitlines()
    args: dict[str, str] = {}  # ARGs before the first FROM: their defaults
    stages: list[tuple[str, str]] = []  # (base image, stage name)
    copies, user, entry = [], None, None
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        op = parts[0].upper()
        if op == "ARG" and not stages and "=" in parts[1]:
            name, default = parts[1].split("=", 1)
            args[name] = default
        elif op == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[1])
            name = parts[3] if len(parts) > 3 and parts[2].upper() == "AS" else str(len(stages))
            stages.append((base, name))
        # The prebuilt stage's context is a directory holding the binary
        # alone (scripts/containers/images.sh), not the repository.
        elif op == "COPY" and not any(p.startswith("--from") for p in parts) and stages[-1][1] != "prebuilt":
            copies += [p for p in parts[1:-1] if not p.startswith("--")]
        elif op == "USER":
            user = parts[1]
        elif op == "ENTRYPOINT":
            entry = line
    for src in copies:
        if not (ROOT / src).exists():
            error(f"Dockerfile: COPY {src}: no such path")
    manifests = {c.removesuffix("/Cargo.toml") for c in copies if c.endswith("/Cargo.toml") and c != "Cargo.toml"}
    members = set(workspace_members())
    if manifests != members:
        error(f"Dockerfile: the dependency layer copies the manifests of {sorted(manifests)}, "
              f"the workspace members are {sorted(members)}")

    def root_image(stage: str) -> str:
        """The image a stage ultimately builds on, through other stages."""
        bases = dict((name, base) for base, name in stages)
        seen = set()
        while stage in bases and stage not in seen:
            seen.add(stage)
            stage = bases[stage]
        return stage

    names = [name for _, name in stages]
    if len(stages) < 2:
        error("Dockerfile: not multi-stage")
    elif not any(base.startswith("rust:") for base, _ in stages):
        error(f"Dockerfile: no rust: builder stage among {stages}")
    elif "slim" not in root_image(names[-1]):
        error(f"Dockerfile: the default (last) stage {names[-1]} does not run on a slim image: {stages}")
    if "prebuilt" not in names:
        error("Dockerfile: no `prebuilt` stage (the container suite builds its image from a host binary)")
    elif any(base.startswith("rust:") for base, _ in stages[: names.index("prebuilt")]):
        error("Dockerfile: the prebuilt stage must come before the Rust builder, which the classic builder would build too")
    if user in (None, "root", "0"):
        error("Dockerfile: the runtime runs as root")
    if not entry or "batchline" not in entry:
        error("Dockerfile: ENTRYPOINT is not batchline")
    ignore = ROOT / ".dockerignore"
    if ignore.exists():
        patterns = [p.strip().strip("/") for p in ignore.read_text().splitlines() if p.strip() and not p.startswith(("#", "!"))]
        for src in copies:
            top = src.split("/")[0]
            if top in patterns:
                error(f".dockerignore excludes {top}, which the Dockerfile copies")


def check_stack_script(env: dict[str, str | None]) -> None:
    """The defaults scripts/stack.sh uses in compose mode (`setting NAME DEFAULT`)."""
    stack = (ROOT / "scripts/stack.sh").read_text()
    for var, default in re.findall(r"setting ([A-Z_]+) ([^)\s]+)\)", stack):
        if var not in env:
            error(f"scripts/stack.sh reads {var}, which .env.example does not list")
        elif env[var] and env[var] != default:
            error(f"scripts/stack.sh defaults {var} to {default!r}, .env.example to {env[var]!r}")


def interpolate(text: str, env: dict[str, str | None]) -> str:
    """The file as Compose sees it with .env copied from .env.example."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        value = env.get(name) or ""
        if m.group(2) in (":-", "-") and not value:
            return m.group(3)
        return value

    return INTERP.sub(sub, text).replace("$$", "$")


def check_schema(env: dict[str, str | None], schema_path: str) -> None:
    try:
        import jsonschema
    except ImportError:
        error("--schema needs jsonschema: pip install jsonschema")
        return
    compose = yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))
    schema = json.loads(Path(schema_path).read_text())
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
        error(f"docker-compose.yml: schema: {'/'.join(map(str, e.path))}: {e.message}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", help="validate against the Compose Specification JSON schema in this file")
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    args = parser.parse_args()

    env = env_example()
    compose = load_yaml("docker-compose.yml")
    if compose is not None:
        services = check_compose(compose, env)
        check_prometheus(services)
        check_grafana(services)
        if args.schema:
            check_schema(env, args.schema)
    check_dockerfile()
    check_stack_script(env)

    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    failed = bool(errors) or (args.strict and bool(warnings))
    print(f"check-compose: {len(errors)} errors, {len(warnings)} warnings: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
