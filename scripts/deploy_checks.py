#!/usr/bin/env python3
"""Offline checks of Hookline's deployment files (deploy/, k8s/), run by scripts/check-deploy.sh.

Subcommands, each exiting non-zero with one line per problem:

  names                       every service, port, HOOKLINE__SECTION__KEY variable, config key and metric named
                              in deploy/ and k8s/ exists in config/default.toml, the workspace's binaries or the
                              code; every service binary is shipped by the Dockerfile, compose and the chart
  dockerfile                  deploy/Dockerfile: one runtime target per service, non-root, EXPOSE, no HEALTHCHECK,
                              cached `cargo build --release --locked --bins`, reference config baked in
  compose SCHEMA              deploy/compose.yaml against the compose-spec JSON schema, then its structure
  manifests RENDERED          `helm template` output: security settings, probes, grace period, wiring between
                              objects (selectors, ports, config file, Secret refs, HPA, PDB, NetworkPolicy)
  selftest RENDERED           mutates a good rendering in memory and expects `manifests` to catch each mutation
  kubeversion CHART_YAML      prints the minimum Kubernetes version the chart declares (x.y.z)

Needs PyYAML and jsonschema (installed by check-deploy.sh into .tools/); tomllib is in the standard library.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOML = ROOT / "config" / "default.toml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
CHART = ROOT / "k8s" / "hookline"
SCANNED = [ROOT / "deploy", ROOT / "k8s", ROOT / ".dockerignore"]

# Names that deploy/ and k8s/ may use before the code that provides them lands. Each entry prints a notice
# instead of failing, and a notice asking to remove it once the name exists. Keep this list short and dated.
PENDING: dict[str, str] = {}

# Stages of deploy/Dockerfile that are not services.
NON_SERVICE_STAGES = {"build", "runtime"}
# Compose services that are not Hookline binaries.
NON_HOOKLINE_COMPOSE = {"redis"}
# The service whose HTTP listener is [api] listen; every other one serves [ops] listen.
API_SERVICE = "api-gateway"
CONSUMER_NAME_ENV = {
    "event-consumer": "HOOKLINE__CONSUMER__CONSUMER_NAME",
    "delivery-worker": "HOOKLINE__WORKER__CONSUMER_NAME",
}


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.notices: list[str] = []
        self.pending: dict[str, list[str]] = {}

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def check(self, cond: Any, msg: str) -> bool:
        if not cond:
            self.add(msg)
        return bool(cond)

    def pending_or_fail(self, key: str, msg: str) -> None:
        if key in PENDING:
            self.pending.setdefault(key, []).append(msg)
        else:
            self.add(msg)

    def finish(self, what: str) -> int:
        for key, msgs in self.pending.items():
            print(f"NOTICE {what}: pending {key} ({PENDING[key]}), not failed: {len(msgs)} place(s), e.g. {msgs[0]}")
        for n in self.notices:
            print(f"NOTICE {what}: {n}")
        for p in self.items:
            print(f"FAIL {what}: {p}")
        if not self.items:
            print(f"ok {what}")
        return 1 if self.items else 0


# ---- shared facts --------------------------------------------------------------------------------------------


def config_defaults() -> dict[str, dict[str, Any]]:
    with DEFAULT_TOML.open("rb") as f:
        return tomllib.load(f)


def listen_port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def default_ports() -> dict[str, int]:
    cfg = config_defaults()
    return {"api": listen_port(cfg["api"]["listen"]), "ops": listen_port(cfg["ops"]["listen"])}


def expected_ports(service: str, ports: dict[str, int]) -> set[int]:
    """Every service listens on the ops port (/healthz, /readyz, /metrics); the api-gateway also on the API
    port."""
    return {ports["api"], ports["ops"]} if service == API_SERVICE else {ports["ops"]}


def workspace_binaries() -> dict[str, Path]:
    """Binary name -> member directory, for every member of the root workspace."""
    with (ROOT / "Cargo.toml").open("rb") as f:
        ws = tomllib.load(f)
    bins: dict[str, Path] = {}
    for member in ws.get("workspace", {}).get("members", []):
        for mdir in sorted(ROOT.glob(member)):
            manifest = mdir / "Cargo.toml"
            if not manifest.is_file():
                continue
            with manifest.open("rb") as f:
                pkg = tomllib.load(f)
            for b in pkg.get("bin", []):
                bins[b["name"]] = mdir
            autobins = pkg.get("package", {}).get("autobins", True)
            if autobins and (mdir / "src" / "main.rs").is_file():
                bins[pkg["package"]["name"]] = mdir
            if autobins:
                for rs in (mdir / "src" / "bin").glob("*.rs"):
                    bins[rs.stem] = mdir
                for main in (mdir / "src" / "bin").glob("*/main.rs"):
                    bins[main.parent.name] = mdir
    return bins


# One-shot tools under services/: binary -> Dockerfile target, image name and chart component. Each has a
# runtime target shipping /usr/local/bin/<binary> (no EXPOSE: no listener) and an optional Job in the chart
# (templates/job-<target>.yaml); no compose service, no Deployment. hookline-migrate: docs/migration.md.
JOBS = {"hookline-migrate": "migrate"}
JOB_TARGETS = {target: binary for binary, target in JOBS.items()}


def stage_binary(stage: str) -> str:
    """The binary a Dockerfile runtime target ships: the service of that name, or a one-shot tool."""
    return JOB_TARGETS.get(stage, stage)


def service_binaries() -> set[str]:
    """Binaries of members under services/ that run as long-lived services (Deployments, compose)."""
    return {b for b, d in workspace_binaries().items() if d.parent.name == "services" and b not in JOBS}


def expected_services() -> set[str]:
    """Deployed services: the service binaries, plus the pending ones (planned, not built yet)."""
    return service_binaries() | {k.split(":", 1)[1] for k in PENDING if k.startswith("binary:")}


def scanned_files() -> Iterable[Path]:
    for base in SCANNED:
        if base.is_file():
            yield base
        elif base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts:
                    yield p


def dockerfile_stages(text: str) -> dict[str, list[str]]:
    """Stage name -> its instruction lines (continuations joined)."""
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        s = raw.rstrip()
        if not buf and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        if buf and s.lstrip().startswith("#"):
            continue
        lines.append((buf + s).strip())
        buf = ""
    stages: dict[str, list[str]] = {}
    current = None
    for line in lines:
        m = re.match(r"(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line)
        if m:
            current = m.group(2) or f"<unnamed-{len(stages)}>"
            stages[current] = [line]
        elif current is not None:
            stages[current].append(line)
    return stages


def load_compose() -> dict[str, Any]:
    with COMPOSE.open() as f:
        return yaml.safe_load(f)


def helpers_components() -> list[str]:
    """Service names of the chart's hookline.components block in _helpers.tpl."""
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    m = re.search(r'define "hookline\.components" -}}\n(.*?)\{\{- end -}}', text, re.S)
    if not m:
        return []
    return list(yaml.safe_load(m.group(1)).keys())


# ---- names ---------------------------------------------------------------------------------------------------

ENV_RE = re.compile(r"\bHOOKLINE__([A-Z0-9_]+?)__([A-Z0-9_]+)\b")
SINGLE_ENV_RE = re.compile(r"\bHOOKLINE_(?!_)[A-Z0-9_]+\b")
CONFIG_PATH_RE = re.compile(r"\bconfig\.([a-z_]+)\.([a-z_]+)\b")
SECTION_KEY_RE = re.compile(r"\[([a-z_]+)\]`?\s+`?([a-z_]+)\b")
METRIC_RE = re.compile(r"\bhookline_[a-z0-9_]+\b")


def type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        if not isinstance(value, list):
            return False
        if default:
            return all(type_ok(default[0], v) for v in value)
        return all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value)
    return type(default) is type(value)


def check_config_tree(tree: Any, cfg: dict, where: str, p: Problems) -> None:
    if tree is None:
        return
    if not isinstance(tree, dict):
        p.add(f"{where}: config must be a map of sections")
        return
    for section, keys in tree.items():
        if section not in cfg:
            p.add(f"{where}: config section [{section}] is not in config/default.toml")
            continue
        if not isinstance(keys, dict):
            p.add(f"{where}: config.{section} must be a map of keys")
            continue
        for key, value in keys.items():
            if key not in cfg[section]:
                p.add(f"{where}: config key [{section}] {key} is not in config/default.toml")
            elif not type_ok(cfg[section][key], value):
                p.add(
                    f"{where}: config key [{section}] {key} = {value!r} has the wrong type "
                    f"(default.toml: {cfg[section][key]!r})"
                )


def code_metric_names() -> set[str]:
    names: set[str] = set()
    for base in (ROOT / "services", ROOT / "crates"):
        for rs in base.rglob("*.rs"):
            names.update(re.findall(r'"(hookline_[a-z0-9_]+)"', rs.read_text(errors="replace")))
    return names


def cmd_names() -> int:
    p = Problems()
    cfg = config_defaults()
    ports = default_ports()
    binaries = workspace_binaries()
    services = service_binaries()
    expected = expected_services()
    metrics = code_metric_names()

    # 1. Environment variables, config keys and metrics named anywhere in deploy/ and k8s/.
    for path in scanned_files():
        rel = path.relative_to(ROOT)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for m in ENV_RE.finditer(text):
            if m.group(0) == "HOOKLINE__SECTION__KEY":
                continue  # the documented pattern itself
            section, key = m.group(1).lower(), m.group(2).lower()
            if section not in cfg or key not in cfg[section]:
                p.pending_or_fail(
                    f"config:{section}.{key}",
                    f"{rel}: {m.group(0)} names [{section}] {key}, which config/default.toml does not have",
                )
        for m in SINGLE_ENV_RE.finditer(text):
            name = m.group(0)
            if name != "HOOKLINE_CONFIG" and not name.startswith("HOOKLINE_DEV_"):
                p.add(
                    f"{rel}: {name} looks like a Hookline variable but is neither HOOKLINE_CONFIG nor "
                    "HOOKLINE__SECTION__KEY (compose interpolation variables are HOOKLINE_DEV_*)"
                )
        for rx in (CONFIG_PATH_RE, SECTION_KEY_RE):
            for m in rx.finditer(text):
                section, key = m.group(1), m.group(2)
                if rx is SECTION_KEY_RE and section not in cfg:
                    continue  # "[x] y" outside config sections, e.g. Markdown links
                if section not in cfg or key not in cfg[section]:
                    p.pending_or_fail(
                        f"config:{section}.{key}",
                        f"{rel}: names config key [{section}] {key}, which config/default.toml does not have",
                    )
        for m in METRIC_RE.finditer(text):
            base = re.sub(r"_(bucket|sum|count)$", "", m.group(0))
            if m.group(0) not in metrics and base not in metrics:
                p.add(f"{rel}: metric {m.group(0)} is not defined in services/ or crates/")

    # 2. Config trees in chart values (the rendered ConfigMaps are checked again by `manifests`).
    for vf in [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]:
        with vf.open() as f:
            values = yaml.safe_load(f) or {}
        check_config_tree(values.get("config"), cfg, str(vf.relative_to(ROOT)), p)

    # Keys the chart sets itself and refuses in values.config must exist too.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    owned = re.search(r"\$chartOwned := dict (.*?) -}}", helpers)
    if p.check(owned, "_helpers.tpl: $chartOwned list not found"):
        for section, keys in re.findall(r'"([a-z_]+)" \(list ((?:"[a-z_]+" ?)+)\)', owned.group(1)):
            for key in re.findall(r'"([a-z_]+)"', keys):
                p.check(
                    key in cfg.get(section, {}),
                    f"_helpers.tpl: chart-owned key [{section}] {key} is not in config/default.toml",
                )

    # 3. Services: every name used is a binary, and every service binary is shipped everywhere.
    dstages = dockerfile_stages(DOCKERFILE.read_text())
    docker_targets = {s for s in dstages if s not in NON_SERVICE_STAGES and not s.startswith("<")}
    compose = load_compose()
    compose_services = set(compose.get("services", {})) - NON_HOOKLINE_COMPOSE
    chart_services = set(helpers_components())
    copied = set(re.findall(r"target/release/([a-z0-9_-]+)", DOCKERFILE.read_text()))
    for binary, target in JOBS.items():
        p.check(binary in binaries, f"scripts/deploy_checks.py JOBS: {binary} is not a binary of the workspace")
        p.check(target in docker_targets, f"deploy/Dockerfile: no target {target} for {binary}")
        p.check(binary in copied, f"deploy/Dockerfile: the build stage does not copy target/release/{binary}")
        p.check((CHART / "templates" / f"job-{target}.yaml").is_file(),
                f"k8s/hookline: no templates/job-{target}.yaml for {binary}")
        p.check(binary not in compose_services and target not in compose_services,
                f"deploy/compose.yaml: {binary} is a one-shot tool, not a compose service")
    docker_services = docker_targets - set(JOB_TARGETS)
    for where, names in [
        ("deploy/Dockerfile targets", docker_services),
        ("deploy/Dockerfile target/release copies", copied - set(JOBS)),
        ("deploy/compose.yaml services", compose_services),
        ("k8s/hookline hookline.components", chart_services),
    ]:
        for name in sorted(names - set(binaries)):
            p.pending_or_fail(f"binary:{name}", f"{where}: {name} is not a binary of the workspace")
        for name in sorted(expected - names):
            p.add(f"{where}: service binary {name} is missing")
    for key in PENDING:
        if key.startswith("binary:") and key.split(":", 1)[1] in binaries:
            p.notices.append(f"{key} now exists: remove it from PENDING in scripts/deploy_checks.py")
        if key.startswith("config:"):
            s, k = key.split(":", 1)[1].split(".", 1)
            if k in cfg.get(s, {}):
                p.notices.append(f"{key} now exists: remove it from PENDING in scripts/deploy_checks.py")
    p.check(services, "no service binaries found under services/ (workspace members)")

    # 4. Ports: default.toml's listeners are what the Dockerfile exposes, compose maps and the chart defaults.
    for stage in docker_targets:
        exposed = {int(x) for line in dstages[stage] if line.upper().startswith("EXPOSE")
                   for x in re.findall(r"\d+", line)}
        if stage in JOB_TARGETS:
            p.check(not exposed, f"deploy/Dockerfile: target {stage} has no listener but exposes {sorted(exposed)}")
            continue
        want = expected_ports(stage, ports)
        p.check(exposed == want, f"deploy/Dockerfile: target {stage} exposes {sorted(exposed)}, expected {sorted(want)}")
    for name in compose_services:
        svc = compose["services"][name]
        want = expected_ports(name, ports)
        container_ports = {int(str(m).rsplit(":", 1)[1].split("/")[0]) for m in svc.get("ports", [])}
        p.check(
            container_ports == want,
            f"deploy/compose.yaml: {name} maps container ports {sorted(container_ports)}, expected {sorted(want)}",
        )
        env = svc.get("environment") or {}
        for var, kind in (("HOOKLINE__API__LISTEN", "api"), ("HOOKLINE__OPS__LISTEN", "ops")):
            if var in env:
                p.check(
                    listen_port(str(env[var])) == ports[kind] and ports[kind] in want,
                    f"deploy/compose.yaml: {name} {var}={env[var]} is not its {kind} container port",
                )
    with (CHART / "values.yaml").open() as f:
        values = yaml.safe_load(f)
    p.check(
        values["ports"]["api"] == ports["api"] and values["ports"]["ops"] == ports["ops"],
        f"k8s/hookline/values.yaml: ports {values['ports']} differ from config/default.toml listeners {ports}",
    )

    # 5. Versions: the chart's appVersion (default image tag) is the workspace version.
    with (ROOT / "Cargo.toml").open("rb") as f:
        ws_version = tomllib.load(f)["workspace"]["package"]["version"]
    with (CHART / "Chart.yaml").open() as f:
        chart = yaml.safe_load(f)
    p.check(
        str(chart.get("appVersion")) == ws_version,
        f"k8s/hookline/Chart.yaml: appVersion {chart.get('appVersion')} != workspace version {ws_version}",
    )
    return p.finish("names")


# ---- dockerfile ----------------------------------------------------------------------------------------------


def cmd_dockerfile() -> int:
    p = Problems()
    text = DOCKERFILE.read_text()
    stages = dockerfile_stages(text)
    p.check("build" in stages, "no `build` stage")
    p.check("runtime" in stages, "no `runtime` stage")
    p.check(not re.search(r"(?im)^\s*HEALTHCHECK", text), "HEALTHCHECK present (Kubernetes probes do that)")
    build = " ".join(stages.get("build", []))
    p.check(
        re.search(r"cargo build --release --locked --bins", build),
        "build stage does not run `cargo build --release --locked --bins`",
    )
    for target in ("/usr/local/cargo/registry", "/src/target"):
        p.check(
            re.search(rf"--mount=type=cache,[^ ]*target={re.escape(target)}", build),
            f"build stage has no cache mount for {target}",
        )
    runtime = stages.get("runtime", [])
    p.check(
        any(re.match(r"(?i)^COPY .*config/default\.toml /etc/hookline/default\.toml$", line) for line in runtime),
        "runtime stage does not bake config/default.toml into /etc/hookline/default.toml",
    )
    p.check(not any(line.upper().startswith("ENV ") for lines in stages.values() for line in lines),
            "ENV set in the Dockerfile (configuration comes from the embedded defaults and the deployment)")
    base = runtime[0].split()[1] if runtime else ""
    arg = re.search(r"(?m)^ARG RUNTIME_IMAGE=(\S+)", text)
    base_image = arg.group(1) if arg and base == "${RUNTIME_IMAGE}" else base
    p.check("distroless" in base_image or "slim" in base_image, f"runtime base {base_image} is not minimal")

    def user_of(stage: str) -> str | None:
        user = None
        lines = stages.get(stage, [])
        if lines and lines[0].split()[1] in stages:
            user = user_of(lines[0].split()[1])
        for line in lines:
            if line.upper().startswith("USER "):
                user = line.split()[1]
        return user

    targets = [s for s in stages if s not in NON_SERVICE_STAGES and not s.startswith("<")]
    p.check(targets and targets[-1] == API_SERVICE, "the last (default) stage should be api-gateway")
    for t in targets:
        lines = stages[t]
        user = user_of(t)
        b = stage_binary(t)
        p.check(user and user.split(":")[0] not in ("0", "root"), f"target {t}: runs as {user!r}, not a non-root user")
        p.check(user and re.fullmatch(r"\d+(:\d+)?", user), f"target {t}: USER should be numeric (runAsNonRoot)")
        p.check(
            any(line == f'ENTRYPOINT ["/usr/local/bin/{b}"]' for line in lines),
            f'target {t}: ENTRYPOINT is not ["/usr/local/bin/{b}"]',
        )
        p.check(
            any(re.match(rf"(?i)^COPY --from=build .*/out/{re.escape(b)} /usr/local/bin/{re.escape(b)}$", line)
                for line in lines),
            f"target {t}: does not copy its binary from the build stage",
        )
    for binary, target in JOBS.items():
        p.check(target in stages, f"no target {target} shipping {binary}")
    return p.finish("dockerfile")


# ---- compose -------------------------------------------------------------------------------------------------


def cmd_compose(schema_path: str) -> int:
    import jsonschema

    p = Problems()
    with open(schema_path) as f:
        schema = json.load(f)
    # The newest compose-spec schema on a registry (docker-compose 1.29.2, May 2021) predates the top-level
    # `name` (a string) that Compose v2 accepts; add exactly that.
    schema.setdefault("properties", {}).setdefault(
        "name", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    )
    doc = load_compose()
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        p.add(f"schema: {'/'.join(map(str, err.path)) or '<root>'}: {err.message}")

    services = doc.get("services", {})
    redis = services.get("redis")
    if p.check(redis, "no redis service"):
        cmd = redis.get("command")
        cmd = cmd if isinstance(cmd, list) else str(cmd or "").split()
        args = dict(zip(cmd[1::2], cmd[2::2])) if cmd and cmd[0] == "redis-server" else {}
        p.check(args.get("--appendonly") == "yes", "redis: AOF persistence (--appendonly yes) is not on")
        p.check(args.get("--maxmemory-policy") == "noeviction", "redis: --maxmemory-policy is not noeviction")
        p.check(any(str(v).endswith(":/data") for v in redis.get("volumes", [])), "redis: /data is not a volume")
        p.check(redis.get("healthcheck"), "redis: no healthcheck (the services wait for it)")
    dstages = dockerfile_stages(DOCKERFILE.read_text())
    for name in sorted(set(services) - NON_HOOKLINE_COMPOSE):
        svc = services[name]
        env = svc.get("environment") or {}
        if not p.check(isinstance(env, dict), f"{name}: environment should be a map"):
            continue
        url = str(env.get("HOOKLINE__REDIS__URL", ""))
        p.check(re.match(r"rediss?://redis(:\d+)?(/\d+)?$", url), f"{name}: HOOKLINE__REDIS__URL {url!r} is not the redis service")
        p.check(env.get("HOOKLINE__AUTH__JWT_SECRET"), f"{name}: no HOOKLINE__AUTH__JWT_SECRET (every service validates it)")
        build = svc.get("build") or {}
        p.check(build.get("target") == name, f"{name}: build.target is {build.get('target')!r}, expected {name!r}")
        p.check(build.get("target") in dstages, f"{name}: build.target is not a stage of deploy/Dockerfile")
        p.check(build.get("dockerfile") == "deploy/Dockerfile" and build.get("context") == "..",
                f"{name}: build should use context .. and dockerfile deploy/Dockerfile")
        dep = svc.get("depends_on") or {}
        p.check(isinstance(dep, dict) and (dep.get("redis") or {}).get("condition") == "service_healthy",
                f"{name}: does not wait for redis to be healthy")
        p.check(svc.get("read_only") is True, f"{name}: root filesystem is not read-only")
        p.check("ALL" in (svc.get("cap_drop") or []), f"{name}: capabilities are not dropped")
        grace = str(svc.get("stop_grace_period", "10s"))
        secs = int(re.fullmatch(r"(\d+)s", grace).group(1)) if re.fullmatch(r"\d+s", grace) else 0
        drain = int(env.get("HOOKLINE__SHUTDOWN__GRACE_PERIOD_SECS", config_defaults()["shutdown"]["grace_period_secs"]))
        p.check(secs > drain, f"{name}: stop_grace_period {grace} is not longer than the {drain} s drain")
        for m in svc.get("ports", []):
            p.check(str(m).startswith("127.0.0.1:"), f"{name}: port {m} is published on every interface")
    return p.finish("compose")


# ---- manifests -----------------------------------------------------------------------------------------------


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def load_rendered(rendered: str) -> list[dict]:
    with open(rendered) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def cmd_manifests(rendered: str) -> int:
    return check_manifests(load_rendered(rendered)).finish(f"manifests {Path(rendered).name}")


def pod_spec(d: dict) -> dict | None:
    """The pod spec of a Deployment, CronJob or Job, else None."""
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if d["kind"] in ("Deployment", "Job"):
        return d["spec"]["template"]["spec"]
    return None


def pod_containers_env(d: dict) -> list[dict]:
    spec = pod_spec(d)
    return [e for c in (spec or {}).get("containers", []) for e in c.get("env", [])]


# What HOOKLINE__REDIS__URL may be: one node, or a Redis Cluster (seed nodes as ?node=host:port).
REDIS_URL_RE = re.compile(r"rediss?(-cluster)?://")
CLUSTER_URL_RE = re.compile(r"rediss?-cluster://")
# The most queue shards a cluster may have (delivery_model::keys::MAX_CLUSTER_SHARDS).
MAX_CLUSTER_SHARDS = 256


def redis_ports(url: str) -> set[int]:
    """The TCP ports a Redis URL names: its host's (6379 when absent) and, for a cluster, every seed's."""
    rest = url.split("://", 1)[-1]
    authority, _, query = rest.partition("?")
    m = re.search(r"@?[^/@:]+:(\d+)(/|$)", authority)
    ports = {int(m.group(1)) if m else 6379}
    if CLUSTER_URL_RE.match(url):
        for param in filter(None, query.split("&")):
            seed = re.fullmatch(r"node=[^:]+:(\d+)", param)
            if seed:
                ports.add(int(seed.group(1)))
    return ports


def check_container(p: Problems, where: str, c: dict, comp: str) -> None:
    """What every Hookline container must be: its own pinned image, hardened, with requests and limits."""
    image = str(c.get("image", ""))
    p.check(":" in image and not image.endswith(":latest"), f"{where}: image {image} is not pinned")
    p.check(image.split("@")[0].split(":")[0].endswith(f"/{comp}"), f"{where}: image {image} is not the {comp} image")
    sc = c.get("securityContext", {})
    p.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem is not true")
    p.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
    p.check("ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{where}: capabilities ALL not dropped")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            p.check(r in res.get(part, {}), f"{where}: resources.{part}.{r} missing")


def check_job(p: Problems, comp: str, job: dict, cm_files: dict, secrets: dict, grace: int) -> None:
    """A one-shot tool's Job: hardened like the services, bounded retries and lifetime, its Secret and CA
    wiring, and only the variables and mounts the tool reads."""
    cfg = config_defaults()
    where = f"Job/{job['metadata']['name']}"
    spec = job["spec"]
    p.check(isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] <= 3, f"{where}: backoffLimit not <= 3")
    p.check(isinstance(spec.get("ttlSecondsAfterFinished"), int), f"{where}: no ttlSecondsAfterFinished")
    p.check(isinstance(spec.get("activeDeadlineSeconds"), int), f"{where}: no activeDeadlineSeconds")
    p.check("helm.sh/hook" not in (job["metadata"].get("annotations") or {}),
            f"{where}: a Helm hook would run before the ConfigMap and Secret exist")
    pod = spec["template"]["spec"]
    p.check(pod.get("restartPolicy") == "Never", f"{where}: restartPolicy is not Never (backoffLimit retries)")
    psc = pod.get("securityContext", {})
    p.check(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot is not true")
    p.check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp is not RuntimeDefault")
    p.check(pod.get("automountServiceAccountToken") is False, f"{where}: service account token is mounted")
    tg = pod.get("terminationGracePeriodSeconds")
    p.check(isinstance(tg, int) and tg > grace, f"{where}: terminationGracePeriodSeconds {tg} is not > {grace}")
    containers = pod.get("containers", [])
    if not p.check(len(containers) == 1, f"{where}: expected one container"):
        return
    c = containers[0]
    check_container(p, where, c, comp)
    p.check(not c.get("ports"), f"{where}: {comp} has no listener but declares ports")
    p.check(not any(k in c for k in ("livenessProbe", "readinessProbe", "startupProbe")), f"{where}: probes on a Job")
    p.check(set(c.get("args") or []) <= {"--dry-run", "--drop-legacy"}, f"{where}: unknown args {c.get('args')}")
    env = {e["name"]: e for e in c.get("env", [])}
    p.check(len(env) == len(c.get("env", [])), f"{where}: duplicate env vars")
    for name in env:
        m = ENV_RE.fullmatch(name)
        if m:
            p.check(m.group(2).lower() in cfg.get(m.group(1).lower(), {}),
                    f"{where}: {name} is not a key of config/default.toml")
    url = str((env.get("HOOKLINE__REDIS__URL") or {}).get("value", ""))
    p.check(REDIS_URL_RE.match(url), f"{where}: HOOKLINE__REDIS__URL {url!r} is not a redis(s):// or redis(s)-cluster:// URL")
    p.check("HOOKLINE__AUTH__JWT_SECRET" in env or "HOOKLINE__AUTH__JWT_PUBLIC_KEY_PEM" in env,
            f"{where}: no JWT key variable (the whole configuration is validated)")
    p.check("HOOKLINE__WORKER__DELEGATION_KEY" not in env, f"{where}: the delegation key belongs to the delivery-worker only")
    pg = ((env.get("HOOKLINE__MIGRATE__POSTGRES_URL") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if p.check(pg, f"{where}: HOOKLINE__MIGRATE__POSTGRES_URL is not taken from a Secret"):
        p.check(not pg.get("optional"), f"{where}: the PostgreSQL URL Secret is optional")
        if pg["name"] in secrets:
            p.check(pg["key"] in (secrets[pg["name"]].get("data") or {}),
                    f"{where}: Secret {pg['name']} lacks key {pg['key']} (the PostgreSQL URL)")
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cfg_path = str((env.get("HOOKLINE_CONFIG") or {}).get("value", ""))
    p.check(any(cfg_path.startswith(mp + "/") and (vols.get(m["name"]) or {}).get("configMap")
                and ((vols[m["name"]]["configMap"]["name"], cfg_path[len(mp) + 1:]) in cm_files)
                for mp, m in mounts.items()),
            f"{where}: HOOKLINE_CONFIG={cfg_path!r} is not a mounted key of the ConfigMap")
    ca = (env.get("HOOKLINE__MIGRATE__POSTGRES_CA_FILE") or {}).get("value")
    if ca is not None:
        ca_dir, _, ca_key = str(ca).rpartition("/")
        m = mounts.get(ca_dir)
        if p.check(m, f"{where}: HOOKLINE__MIGRATE__POSTGRES_CA_FILE={ca!r} is not in a mounted volume"):
            p.check(m.get("readOnly") is True, f"{where}: the CA bundle is not mounted read-only")
            v = vols.get(m["name"]) or {}
            src = v.get("secret") or v.get("configMap") or {}
            p.check(src, f"{where}: the CA bundle is neither a Secret nor a ConfigMap")
            p.check(ca_key in {i["path"] for i in src.get("items", [])} or not src.get("items"),
                    f"{where}: the CA volume does not project {ca_key}")
    allowed = {cfg_path.rpartition("/")[0]} | ({str(ca).rpartition("/")[0]} if ca is not None else set())
    # The Redis CA bundle and client certificate, where the chart's TLS settings name them.
    redis_files = (str((env.get(f"HOOKLINE__REDIS__{k}") or {}).get("value", ""))
                   for k in ("TLS_CA_FILE", "TLS_CLIENT_CERT_FILE", "TLS_CLIENT_KEY_FILE"))
    allowed |= {f.rpartition("/")[0] for f in redis_files if f}
    p.check(set(mounts) <= allowed,
            f"{where}: mounts beyond the config file, the CA bundles and the Redis client certificate: {sorted(mounts)}")


def check_manifests(docs: list[dict]) -> Problems:
    p = Problems()
    cfg = config_defaults()
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        p.check(d.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/part-of") == "hookline",
                f"{d['kind']}/{d['metadata'].get('name')}: no app.kubernetes.io/part-of label")

    # The config file.
    # The Grafana dashboard's ConfigMap (metrics.grafanaDashboard) is checked by obs_checks.py.
    cms = [c for c in by_kind.get("ConfigMap", []) if "hookline-dashboard.json" not in (c.get("data") or {})]
    rendered_cfg: dict[str, dict[str, Any]] = {}
    cm_files: dict[tuple[str, str], dict] = {}
    if p.check(len(cms) == 1, f"expected one ConfigMap, found {len(cms)}"):
        for key, text in cms[0].get("data", {}).items():
            try:
                parsed = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                p.add(f"ConfigMap {key}: not valid TOML: {e}")
                continue
            check_config_tree(parsed, cfg, f"ConfigMap {key}", p)
            cm_files[(cms[0]["metadata"]["name"], key)] = parsed
            rendered_cfg = parsed
    grace = rendered_cfg.get("shutdown", {}).get("grace_period_secs", cfg["shutdown"]["grace_period_secs"])
    ports = {
        "api": listen_port(rendered_cfg.get("api", {}).get("listen", cfg["api"]["listen"])),
        "ops": listen_port(rendered_cfg.get("ops", {}).get("listen", cfg["ops"]["listen"])),
    }
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    # The Redis URL the pods get; every pod must get the same one.
    redis_urls = {str(e.get("value", "")) for d in docs for e in pod_containers_env(d)
                  if e.get("name") == "HOOKLINE__REDIS__URL"}
    p.check(len(redis_urls) == 1, f"the pods get {len(redis_urls)} different Redis URLs: {sorted(redis_urls)}")
    redis_url = min(redis_urls, default="")
    cluster = bool(CLUSTER_URL_RE.match(redis_url))
    want_redis_ports = redis_ports(redis_url)
    if cluster:
        # What the services refuse at start with a cluster URL must not reach a pod (the chart refuses it).
        rcfg = rendered_cfg.get("redis", {})
        shards = rcfg.get("cluster_shards", 0)
        p.check(isinstance(shards, int) and 0 <= shards <= MAX_CLUSTER_SHARDS,
                f"[redis] cluster_shards {shards!r} is not 0..{MAX_CLUSTER_SHARDS}")
        p.check(not re.search(r"[{}]", str(rcfg.get("key_prefix", ""))),
                "[redis] key_prefix holds a brace with a Redis Cluster URL")
        p.check(not by_kind.get("ScaledObject"),
                "a KEDA ScaledObject with a Redis Cluster URL (KEDA cannot read the per-shard queues)")
        p.check(not any("HOOKLINE__REDIS__SENTINELS" == e.get("name") for d in docs for e in pod_containers_env(d)),
                "Sentinel settings with a Redis Cluster URL")
    else:
        p.check(rendered_cfg.get("redis", {}).get("cluster_shards", 0) == 0,
                "[redis] cluster_shards is set without a Redis Cluster URL")

    # Workloads.
    workloads: dict[str, tuple[str, dict, dict]] = {}  # service -> (kind, object, pod template)
    for d in by_kind.get("Deployment", []):
        workloads[d["metadata"]["labels"]["app.kubernetes.io/component"]] = ("Deployment", d, d["spec"]["template"])
    for d in by_kind.get("CronJob", []):
        name = d["metadata"]["labels"]["app.kubernetes.io/component"]
        p.check(name not in workloads, f"{name}: both a Deployment and a CronJob")
        workloads[name] = ("CronJob", d, d["spec"]["jobTemplate"]["spec"]["template"])
    expected = expected_services()
    p.check(set(workloads) == expected, f"workloads {sorted(workloads)} != services {sorted(expected)}")

    for name, (kind, obj, tpl) in sorted(workloads.items()):
        where = f"{kind}/{obj['metadata']['name']}"
        spec = tpl["spec"]
        psc = spec.get("securityContext", {})
        p.check(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot is not true")
        p.check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp is not RuntimeDefault")
        p.check(spec.get("automountServiceAccountToken") is False, f"{where}: service account token is mounted")
        tg = spec.get("terminationGracePeriodSeconds")
        p.check(isinstance(tg, int) and tg > grace, f"{where}: terminationGracePeriodSeconds {tg} is not > drain grace {grace}")
        if kind == "Deployment":
            p.check(obj["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items(),
                    f"{where}: selector does not match the pod labels")
        containers = spec.get("containers", [])
        if not p.check(len(containers) == 1, f"{where}: expected one container"):
            continue
        c = containers[0]
        p.check(c["name"] == name, f"{where}: container is named {c['name']}")
        check_container(p, where, c, name)
        want = expected_ports(name, ports)
        ops_port = ports["ops"]
        cports = {cp["name"]: cp["containerPort"] for cp in c.get("ports", [])}
        p.check(set(cports.values()) == want and len(cports) == len(want),
                f"{where}: container ports {cports} != listener ports {sorted(want)}")
        if kind == "Deployment":
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                hg = (c.get(probe) or {}).get("httpGet", {})
                p.check(hg.get("path") == path, f"{where}: {probe} does not GET {path}")
                p.check(cports.get(hg.get("port")) == ops_port or hg.get("port") == ops_port,
                        f"{where}: {probe} port {hg.get('port')} is not the ops listener")
        else:
            p.check("--once" in (c.get("args") or []), f"{where}: the CronJob does not run --once")
            p.check(spec.get("restartPolicy") in ("Never", "OnFailure"), f"{where}: bad restartPolicy")
        ann = tpl["metadata"].get("annotations", {})
        if "prometheus.io/scrape" in ann:
            p.check(ann.get("prometheus.io/port") == str(ops_port), f"{where}: prometheus.io/port != {ops_port}")
            p.check(ann.get("prometheus.io/path") == "/metrics", f"{where}: prometheus.io/path != /metrics")

        env = c.get("env", [])
        names = [e["name"] for e in env]
        p.check(len(names) == len(set(names)), f"{where}: duplicate env vars")
        envd = {e["name"]: e for e in env}
        for i, e in enumerate(env):
            for ref in re.findall(r"\$\(([A-Za-z0-9_]+)\)", str(e.get("value", ""))):
                p.check(ref in names[:i], f"{where}: {e['name']} uses $({ref}) before it is defined")
            skr = (e.get("valueFrom") or {}).get("secretKeyRef")
            if skr and skr["name"] in secrets:
                data = secrets[skr["name"]].get("data") or {}
                p.check(skr.get("optional") or skr["key"] in data,
                        f"{where}: {e['name']} needs key {skr['key']} that Secret {skr['name']} lacks")
        url = str((envd.get("HOOKLINE__REDIS__URL") or {}).get("value", ""))
        p.check(REDIS_URL_RE.match(url), f"{where}: HOOKLINE__REDIS__URL {url!r} is not a redis(s):// or redis(s)-cluster:// URL")
        p.check("HOOKLINE__AUTH__JWT_SECRET" in envd or "HOOKLINE__AUTH__JWT_PUBLIC_KEY_PEM" in envd,
                f"{where}: no JWT key variable (every service validates [auth])")
        if name in CONSUMER_NAME_ENV:
            var = envd.get(CONSUMER_NAME_ENV[name], {})
            p.check(((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.name",
                    f"{where}: {CONSUMER_NAME_ENV[name]} is not the pod name (downward API)")
        p.check(("HOOKLINE__WORKER__DELEGATION_KEY" in envd) == (name == "delivery-worker"),
                f"{where}: the delegation key belongs to the delivery-worker only")
        cfg_path = str((envd.get("HOOKLINE_CONFIG") or {}).get("value", ""))
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        found = False
        for vname, mpath in mounts.items():
            cm = (vols.get(vname) or {}).get("configMap")
            if cm and cfg_path.startswith(mpath.rstrip("/") + "/"):
                found = (cm["name"], cfg_path[len(mpath.rstrip("/")) + 1:]) in cm_files
        p.check(found, f"{where}: HOOKLINE_CONFIG={cfg_path!r} is not a mounted key of the ConfigMap")

    # One-shot Jobs (hookline-migrate).
    jobs = {}
    for d in by_kind.get("Job", []):
        comp = d["metadata"]["labels"].get("app.kubernetes.io/component")
        if p.check(comp in JOB_TARGETS, f"Job/{d['metadata']['name']}: {comp} is not a one-shot tool (JOBS)"):
            jobs[comp] = d
    for comp, job in jobs.items():
        check_job(p, comp, job, cm_files, secrets, grace)

    # API Service, Ingress.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    api = [s for s in services.values() if s["metadata"]["labels"].get("app.kubernetes.io/component") == API_SERVICE
           and not s["metadata"]["labels"].get("hookline.io/metrics")]
    if p.check(len(api) == 1, f"expected one api-gateway Service, found {len(api)}") and API_SERVICE in workloads:
        tpl = workloads[API_SERVICE][2]
        p.check(labels_match(api[0]["spec"]["selector"], tpl["metadata"]["labels"]), "api Service selector misses the pods")
        cport_names = {cp["name"] for cp in tpl["spec"]["containers"][0]["ports"]}
        for sp in api[0]["spec"]["ports"]:
            p.check(sp["targetPort"] in cport_names, f"api Service targetPort {sp['targetPort']} is not a container port")
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"].get("rules", []):
            for path in rule["http"]["paths"]:
                b = path["backend"]["service"]
                svc = services.get(b["name"])
                p.check(svc and b["port"].get("name") in {sp["name"] for sp in svc["spec"]["ports"]},
                        f"Ingress backend {b} is not a Service port")

    # HPA and PDBs.
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        target = deployments.get(ref["name"])
        if p.check(target and ref["kind"] == "Deployment", f"HPA targets {ref}, not a rendered Deployment"):
            p.check(target["metadata"]["labels"]["app.kubernetes.io/component"] == "delivery-worker",
                    "HPA scales something other than the delivery-worker")
            p.check("replicas" not in target["spec"], "the autoscaled Deployment also sets replicas")
        p.check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "HPA minReplicas > maxReplicas")
    p.check(by_kind.get("HorizontalPodAutoscaler") or by_kind.get("ScaledObject") or "delivery-worker" not in workloads
            or "replicas" in workloads["delivery-worker"][1]["spec"], "delivery-worker has neither HPA, ScaledObject nor replicas")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        hits = [n for n, d in deployments.items() if labels_match(sel, d["spec"]["template"]["metadata"]["labels"])]
        p.check(len(hits) == 1, f"PDB {pdb['metadata']['name']} selects {hits}")

    # NetworkPolicies: one per service; only the delivery-worker may leave the cluster.
    nps = by_kind.get("NetworkPolicy", [])
    if nps:
        covered = set()
        for np_ in nps:
            comp = np_["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
            covered.add(comp)
            where = f"NetworkPolicy/{np_['metadata']['name']}"
            p.check(set(np_["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}, f"{where}: not both directions")
            egress = np_["spec"].get("egress", [])
            wide = [r for r in egress if not r.get("ports")]
            if comp == "delivery-worker":
                p.check(any(pe.get("ipBlock") for r in wide for pe in r.get("to", [])),
                        f"{where}: the worker has no egress to receivers")
            else:
                p.check(not wide, f"{where}: {comp} may connect to any port (only the worker may leave)")
            ingress_ports = {pt.get("port") for r in np_["spec"].get("ingress", []) for pt in r.get("ports", [])}
            # Every port the Redis URL names (a cluster's seeds too) is allowed out, exactly or in a range.
            egress_ranges = [(pt.get("port"), pt.get("endPort", pt.get("port"))) for r in egress
                             for pt in r.get("ports", []) if isinstance(pt.get("port"), int)]
            missing = sorted(rp for rp in want_redis_ports if not any(lo <= rp <= hi for lo, hi in egress_ranges))
            p.check(not missing, f"{where}: no egress to Redis port(s) {missing}")
            if comp in JOB_TARGETS:
                p.check(not np_["spec"].get("ingress"), f"{where}: the {comp} Job has no listener but allows ingress")
                continue
            want = expected_ports(comp, ports) if comp else set()
            p.check(ingress_ports == want, f"{where}: ingress ports {ingress_ports} != {want}")
            p.check(all(r.get("ports") for r in np_["spec"].get("ingress", [])), f"{where}: ingress on any port")
        p.check(covered >= set(workloads) | set(jobs), f"NetworkPolicies cover {sorted(covered)}, not every workload")

    # ServiceMonitor.
    for sm in by_kind.get("ServiceMonitor", []):
        p.check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        sel = sm["spec"]["selector"]["matchLabels"]
        hits = [s for s in services.values() if labels_match(sel, s["metadata"]["labels"])]
        p.check(hits, "ServiceMonitor selects no Service")
        for ep in sm["spec"]["endpoints"]:
            for s in hits:
                p.check(ep["port"] in {sp["name"] for sp in s["spec"]["ports"]},
                        f"ServiceMonitor port {ep['port']} missing on Service {s['metadata']['name']}")
        scraped = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in hits}
        p.check(scraped >= {n for n, (k, _, _) in workloads.items() if k == "Deployment"},
                f"ServiceMonitor scrapes {sorted(scraped)}, not every Deployment")
        for s in hits:
            comp = s["metadata"]["labels"]["app.kubernetes.io/component"]
            for sp in s["spec"]["ports"]:
                p.check(sp.get("targetPort") in ("ops", ports["ops"]),
                        f"metrics Service {s['metadata']['name']} targets {sp.get('targetPort')}, not the ops listener")
            if comp in workloads:
                p.check(labels_match(s["spec"]["selector"], workloads[comp][2]["metadata"]["labels"]),
                        f"metrics Service {s['metadata']['name']} selects no pod")
    return p


# ---- selftest ------------------------------------------------------------------------------------------------


def _find(docs: list[dict], kind: str, component: str | None = None) -> dict:
    for d in docs:
        if d["kind"] == kind and (
            component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ):
            return d
    raise KeyError(f"{kind} {component}")


def _container(docs: list[dict], component: str) -> dict:
    return _find(docs, "Deployment", component)["spec"]["template"]["spec"]["containers"][0]


def _env(docs: list[dict], component: str, name: str) -> dict:
    return next(e for e in _container(docs, component)["env"] if e["name"] == name)


MUTATIONS: list[tuple[str, str, Any]] = [
    ("writable root filesystem", "readOnlyRootFilesystem",
     lambda d: _container(d, "delivery-worker")["securityContext"].update(readOnlyRootFilesystem=False)),
    ("capabilities kept", "capabilities ALL",
     lambda d: _container(d, "event-consumer")["securityContext"]["capabilities"].update(drop=[])),
    ("grace period too short", "terminationGracePeriodSeconds",
     lambda d: _find(d, "Deployment", "api-gateway")["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=20)),
    ("consumer name not the pod name", "pod name",
     lambda d: _env(d, "event-consumer", "HOOKLINE__CONSUMER__CONSUMER_NAME").update(valueFrom={"fieldRef": {"fieldPath": "metadata.uid"}})),
    ("readiness on /healthz", "readinessProbe",
     lambda d: _container(d, "api-gateway")["readinessProbe"]["httpGet"].update(path="/healthz")),
    ("no memory limit", "resources.limits.memory",
     lambda d: _container(d, "event-consumer")["resources"]["limits"].pop("memory")),
    ("config file not mounted", "HOOKLINE_CONFIG",
     lambda d: _env(d, "api-gateway", "HOOKLINE_CONFIG").update(value="/etc/hookline/other.toml")),
    ("unknown config key", "not in config/default.toml",
     lambda d: _find(d, "ConfigMap")["data"].update({"hookline.toml": "[worker]\nno_such_key = 1\n"})),
    ("wrongly typed config value", "wrong type",
     lambda d: _find(d, "ConfigMap")["data"].update({"hookline.toml": "[worker]\nmax_in_flight = \"many\"\n"})),
    ("container port off the listener", "container ports",
     lambda d: _container(d, "event-consumer")["ports"][0].update(containerPort=9999)),
    ("gateway probed on the API port", "not the ops listener",
     lambda d: _container(d, "api-gateway")["readinessProbe"]["httpGet"].update(port="http")),
    ("API Service selects nothing", "selector misses",
     lambda d: _find(d, "Service", "api-gateway")["spec"]["selector"].update({"app.kubernetes.io/component": "x"})),
    ("consumer may leave the cluster", "only the worker may leave",
     lambda d: _find(d, "NetworkPolicy", "event-consumer")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})),
    ("HPA on a missing Deployment", "HPA targets",
     lambda d: _find(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(name="nope")),
    ("delegation key on the gateway", "delegation key",
     lambda d: _container(d, "api-gateway")["env"].append({"name": "HOOKLINE__WORKER__DELEGATION_KEY", "value": "x"})),
    ("password used before defined", "before it is defined",
     lambda d: _env(d, "api-gateway", "HOOKLINE__REDIS__URL").update(value="redis://:$(LATER)@redis:6379")),
    ("service missing", "workloads",
     lambda d: d.remove(_find(d, "Deployment", "event-consumer"))),
]


def _job_container(docs: list[dict]) -> dict:
    return _find(docs, "Job", "migrate")["spec"]["template"]["spec"]["containers"][0]


def _job_env(docs: list[dict], name: str) -> dict:
    return next(e for e in _job_container(docs)["env"] if e["name"] == name)


# Applied when the rendering holds the migrate Job (ci/production-values.yaml).
JOB_MUTATIONS: list[tuple[str, str, Any]] = [
    ("Job as a pre-install hook", "Helm hook",
     lambda d: _find(d, "Job", "migrate")["metadata"].setdefault("annotations", {}).update({"helm.sh/hook": "pre-install"})),
    ("Job retried many times", "backoffLimit",
     lambda d: _find(d, "Job", "migrate")["spec"].update(backoffLimit=10)),
    ("Job kept forever", "ttlSecondsAfterFinished",
     lambda d: _find(d, "Job", "migrate")["spec"].pop("ttlSecondsAfterFinished")),
    ("PostgreSQL URL as a plain value", "not taken from a Secret",
     lambda d: _job_env(d, "HOOKLINE__MIGRATE__POSTGRES_URL").update(valueFrom=None, value="postgres://u:p@db/tmi")),
    ("CA bundle writable", "read-only",
     lambda d: next(m for m in _job_container(d)["volumeMounts"] if m["name"] == "postgres-ca").update(readOnly=False)),
    ("CA file outside the mount", "not in a mounted volume",
     lambda d: _job_env(d, "HOOKLINE__MIGRATE__POSTGRES_CA_FILE").update(value="/tmp/ca.crt")),
    ("Job variable not in config", "not a key of config/default.toml",
     lambda d: _job_container(d)["env"].append({"name": "HOOKLINE__MIGRATE__POSTGRES_CA_PATH", "value": "x"})),
    ("Job writable root filesystem", "readOnlyRootFilesystem",
     lambda d: _job_container(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    ("Job NetworkPolicy allows ingress", "allows ingress",
     lambda d: _find(d, "NetworkPolicy", "migrate")["spec"].update(ingress=[{"ports": [{"port": 9090}]}])),
    ("Job without a NetworkPolicy", "not every workload",
     lambda d: d.remove(_find(d, "NetworkPolicy", "migrate"))),
]


def _redis_egress(docs: list[dict], component: str) -> list[dict]:
    """The ports of a component's NetworkPolicy rule towards Redis (the one holding the URL's port)."""
    url = str(_env(docs, component, "HOOKLINE__REDIS__URL")["value"])
    first = min(redis_ports(url.split("?")[0]))
    egress = _find(docs, "NetworkPolicy", component)["spec"]["egress"]
    return next(r["ports"] for r in egress if any(pt.get("port") == first for pt in r.get("ports", [])))


def _drop_seed_port(docs: list[dict]) -> None:
    url = str(_env(docs, "event-consumer", "HOOKLINE__REDIS__URL")["value"])
    seeds = redis_ports(url) - redis_ports(url.split("?")[0])
    ports = _redis_egress(docs, "event-consumer")
    ports[:] = [pt for pt in ports if pt.get("port") not in seeds]


def _set_redis_config(docs: list[dict], line: str) -> None:
    """Sets `key = value` in the rendered config file's [redis] section (replacing the key if present)."""
    cm = _find(docs, "ConfigMap")
    name = next(iter(cm["data"]))
    key = line.split("=", 1)[0].strip()
    text = re.sub(rf"(?m)^{re.escape(key)}\s*=.*\n?", "", cm["data"][name])
    if re.search(r"(?m)^\[redis\]$", text):
        text = re.sub(r"(?m)^\[redis\]$", f"[redis]\n{line}", text, count=1)
    else:
        text += f"\n[redis]\n{line}\n"
    cm["data"][name] = text


# Applied when the rendering's Redis URL is a cluster URL with seed nodes (ci/redis-cluster-values.yaml).
CLUSTER_MUTATIONS: list[tuple[str, str, Any]] = [
    ("a seed node's port not allowed out", "no egress to Redis port",
     _drop_seed_port),
    ("cluster URL rewritten to one node", "different Redis URLs",
     lambda d: _env(d, "api-gateway", "HOOKLINE__REDIS__URL").update(value="redis://redis-cluster-0:6379")),
    ("too many queue shards", "cluster_shards",
     lambda d: _set_redis_config(d, "cluster_shards = 300")),
    ("KEDA on a cluster", "KEDA ScaledObject",
     lambda d: d.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                         "metadata": {"name": "x", "labels": {"app.kubernetes.io/part-of": "hookline"}},
                         "spec": {"scaleTargetRef": {"name": "x"}}})),
]


def cmd_selftest(rendered: str) -> int:
    """Each mutation of a good rendering must be caught by check_manifests: the checks have teeth."""
    import copy

    base = load_rendered(rendered)
    failed = 0
    if check_manifests(copy.deepcopy(base)).items:
        print(f"FAIL selftest: the unmutated rendering {rendered} does not pass")
        return 1
    mutations = list(MUTATIONS)
    if any(d["kind"] == "Job" for d in base):
        mutations += JOB_MUTATIONS
    urls = {str(e.get("value", "")) for d in base for e in pod_containers_env(d) if e.get("name") == "HOOKLINE__REDIS__URL"}
    if any(CLUSTER_URL_RE.match(u) and "node=" in u for u in urls):
        mutations += CLUSTER_MUTATIONS
    for label, expect, mutate in mutations:
        docs = copy.deepcopy(base)
        mutate(docs)
        found = check_manifests(docs).items
        if not any(expect in msg for msg in found):
            failed += 1
            print(f"FAIL selftest: mutation '{label}' was not caught (wanted {expect!r}; got {found})")
    if not failed:
        print(f"ok selftest: {len(mutations)} mutations caught")
    return 1 if failed else 0


# ---- kubeversion ---------------------------------------------------------------------------------------------


def cmd_kubeversion(chart_yaml: str) -> int:
    with open(chart_yaml) as f:
        kv = str(yaml.safe_load(f).get("kubeVersion", ""))
    m = re.search(r">=\s*v?(\d+)\.(\d+)(?:\.(\d+))?", kv)
    if not m:
        print(f"Chart.yaml kubeVersion {kv!r} has no lower bound (>=x.y.z)", file=sys.stderr)
        return 1
    print(f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}")
    return 0


def main(argv: list[str]) -> int:
    cmds = {
        "names": (cmd_names, 0),
        "dockerfile": (cmd_dockerfile, 0),
        "compose": (cmd_compose, 1),
        "manifests": (cmd_manifests, 1),
        "selftest": (cmd_selftest, 1),
        "kubeversion": (cmd_kubeversion, 1),
    }
    if not argv or argv[0] not in cmds or len(argv) - 1 != cmds[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = cmds[argv[0]]
    return fn(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
