#!/usr/bin/env python3
"""Offline checks of Hookline's observability and scaling files, run by scripts/check-deploy.sh (issue #19).

Subcommands, each exiting non-zero with one line per problem:

  crds RENDERED        every custom resource of a `helm template` output (ScaledObject, TriggerAuthentication,
                       PrometheusRule, ServiceMonitor) against its CRD's schema (the cloudcoil models generated
                       from the KEDA and Prometheus Operator CRDs; an unknown field fails), then its wiring: the
                       ScaledObject scales the worker Deployment on the queue stream the services use, in the
                       workers' group, at the Redis the pods reach, with the pods' credentials and TLS; the
                       PrometheusRule is the rule file; the dashboard ConfigMap holds the dashboard file
  rules RULES TESTS    every alert of the rule file has a promtool unit test where it fires and one where it
                       stays quiet
  dashboard JSON       the Grafana dashboard: a Prometheus datasource variable, every panel on it, every target
                       with an expression, and the panels the operations guide promises
  selftest RENDERED    mutates a good rendering (one with a ScaledObject) and expects `crds` to catch each one

Needs PyYAML and the cloudcoil model packages (installed by check-deploy.sh into .tools/).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "k8s" / "hookline" / "files" / "prometheus" / "hookline-rules.yaml"
DASHBOARD = ROOT / "k8s" / "hookline" / "files" / "grafana" / "hookline-dashboard.json"
QUEUE_STREAM = "hookline:queue"  # crates/delivery-model/src/keys.rs, after config.redis.key_prefix
QUEUE_GROUP = "delivery-workers"
# What the dashboard must show (issue #19): a panel title for each, matched case-insensitively.
DASHBOARD_TOPICS = ["attempts by outcome", "event to delivered", "event to first attempt", "oldest undelivered",
                    "backlog", "by class", "circuit", "cleanup"]


class Problems:
    def __init__(self, what: str) -> None:
        self.what = what
        self.items: list[str] = []

    def check(self, cond: Any, msg: str) -> bool:
        if not cond:
            self.items.append(msg)
        return bool(cond)

    def finish(self) -> int:
        for p in self.items:
            print(f"FAIL {self.what}: {p}")
        if not self.items:
            print(f"ok {self.what}")
        return 1 if self.items else 0


# ---- schema validation ---------------------------------------------------------------------------------------


def _models() -> dict[tuple[str, str], Any]:
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
        ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    }


def _unknown_fields(given: Any, known: Any, path: str) -> list[str]:
    """Fields of `given` that the validated model dropped: the CRD's schema has no such field."""
    out: list[str] = []
    if isinstance(given, dict) and isinstance(known, dict):
        for k, v in given.items():
            if k not in known:
                out.append(f"{path}.{k}")
            else:
                out += _unknown_fields(v, known[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (g, k) in enumerate(zip(given, known)):
            out += _unknown_fields(g, k, f"{path}[{i}]")
    return out


def validate_crd(doc: dict, models: dict) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = models.get(key)
    if model is None:
        return [f"{key[1]} {key[0]}: no schema known"]
    try:
        obj = model.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError, with one line per error
        return [f"{key[1]}/{doc['metadata'].get('name')}: {e}".replace("\n", " | ")]
    dumped = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    # Free-form maps (labels, trigger metadata) come back whole, so only schema fields can go missing.
    return [f"{key[1]}/{doc['metadata'].get('name')}: unknown field {f}" for f in _unknown_fields(doc, dumped, "")]


# ---- wiring --------------------------------------------------------------------------------------------------


def _by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def _worker(docs: list[dict]) -> dict | None:
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "delivery-worker":
            return d
    return None


def _key_prefix(docs: list[dict]) -> str:
    import tomllib

    for d in docs:
        if d["kind"] == "ConfigMap" and "hookline.toml" in (d.get("data") or {}):
            return tomllib.loads(d["data"]["hookline.toml"]).get("redis", {}).get("key_prefix", "")
    return ""


def check_scaling(docs: list[dict], p: Problems) -> None:
    kinds = _by_kind(docs)
    sos = kinds.get("ScaledObject", [])
    hpas = kinds.get("HorizontalPodAutoscaler", [])
    p.check(not (sos and hpas), "both a ScaledObject and an HPA scale the worker (KEDA makes its own HPA)")
    worker = _worker(docs)
    if not sos or worker is None:
        return
    p.check(len(sos) == 1, f"expected one ScaledObject, found {len(sos)}")
    so = sos[0]
    spec = so["spec"]
    ref = spec["scaleTargetRef"]
    p.check(ref["name"] == worker["metadata"]["name"] and ref.get("kind", "Deployment") == "Deployment",
            f"ScaledObject targets {ref}, not the delivery-worker Deployment")
    p.check("replicas" not in worker["spec"], "the KEDA-scaled Deployment also sets replicas")
    p.check(spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), "ScaledObject min > max replicas")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container.get("env", [])}
    url = str(env.get("HOOKLINE__REDIS__URL", {}).get("value", ""))
    m = re.match(r"(rediss?)://([^/:]+)(?::(\d+))?(?:/(\d+))?", url)
    auths = {a["metadata"]["name"]: a for a in kinds.get("TriggerAuthentication", [])}
    for t in spec.get("triggers", []):
        md = t.get("metadata", {})
        where = f"ScaledObject trigger {t.get('type')}"
        p.check(t.get("type") in ("redis-streams", "redis-sentinel-streams"), f"{where}: not a redis streams scaler")
        p.check(md.get("stream") == _key_prefix(docs) + QUEUE_STREAM,
                f"{where}: stream {md.get('stream')!r} is not the queue the services use")
        p.check(md.get("consumerGroup") == QUEUE_GROUP, f"{where}: consumerGroup is not {QUEUE_GROUP}")
        p.check(any(k in md for k in ("streamLength", "pendingEntriesCount", "lagCount")), f"{where}: no target")
        if m:
            tls, db = m.group(1) == "rediss", m.group(4) or "0"
            p.check((md.get("enableTLS") == "true") == tls, f"{where}: enableTLS does not match {url}")
            p.check(md.get("databaseIndex", "0") == db, f"{where}: databaseIndex is not the URL's {db}")
            if t.get("type") == "redis-streams" and "HOOKLINE__REDIS__TLS_SERVER_NAME" not in env:
                p.check(md.get("address") == f"{m.group(2)}:{m.group(3) or 6379}",
                        f"{where}: address {md.get('address')!r} is not the pods' Redis {url}")
        if "HOOKLINE__REDIS__SENTINELS" in env:
            p.check(t.get("type") == "redis-sentinel-streams", f"{where}: the pods use Sentinel, KEDA does not")
            p.check(md.get("addresses") == env["HOOKLINE__REDIS__SENTINELS"].get("value"),
                    f"{where}: sentinel addresses differ from the pods'")
        if "HOOKLINE__REDIS__USERNAME" in env:
            p.check(md.get("usernameFromEnv") == "HOOKLINE__REDIS__USERNAME" or md.get("username"),
                    f"{where}: the pods log in as an ACL user, KEDA does not")
        ref_name = (t.get("authenticationRef") or {}).get("name")
        auth = auths.get(ref_name) if ref_name else None
        p.check(not ref_name or auth, f"{where}: authenticationRef {ref_name} is not a rendered TriggerAuthentication")
        params = {}
        for src in ("secretTargetRef", "configMapTargetRef"):
            for r in (auth or {}).get("spec", {}).get(src, []):
                params[r["parameter"]] = (r["name"], r["key"])
        pw = (env.get("HOOKLINE__REDIS__PASSWORD", {}).get("valueFrom") or {}).get("secretKeyRef")
        if pw:
            p.check(params.get("password") == (pw["name"], pw["key"]),
                    f"{where}: KEDA's password is not the pods' Secret {pw['name']}/{pw['key']}")
        else:
            p.check("password" not in params, f"{where}: KEDA has a password, the pods do not")
        if "HOOKLINE__REDIS__TLS_CA_FILE" in env:
            p.check("ca" in params, f"{where}: the pods trust a private CA, KEDA does not")
        if "HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE" in env:
            p.check("cert" in params and "key" in params, f"{where}: the pods present a client certificate, KEDA does not")


def check_rules_and_dashboard(docs: list[dict], p: Problems) -> None:
    for pr in _by_kind(docs).get("PrometheusRule", []):
        with RULES.open() as f:
            p.check(pr["spec"] == yaml.safe_load(f), f"PrometheusRule/{pr['metadata']['name']} is not {RULES.name}")
    for cm in _by_kind(docs).get("ConfigMap", []):
        data = cm.get("data") or {}
        if "hookline-dashboard.json" in data:
            p.check(json.loads(data["hookline-dashboard.json"]) == json.loads(DASHBOARD.read_text()),
                    f"ConfigMap/{cm['metadata']['name']} does not hold {DASHBOARD.name}")
            p.check(any(v == "1" for v in cm["metadata"]["labels"].values()),
                    f"ConfigMap/{cm['metadata']['name']} has no sidecar label")


def check_rendered(docs: list[dict]) -> Problems:
    p = Problems("custom resources and scaling")
    models = _models()
    for d in docs:
        group = d.get("apiVersion", "").split("/")[0]
        if "." in group and not group.endswith(".k8s.io"):  # a CRD's group (keda.sh, monitoring.coreos.com)
            for msg in validate_crd(d, models):
                p.check(False, msg)
    check_scaling(docs, p)
    check_rules_and_dashboard(docs, p)
    return p


def load(rendered: str) -> list[dict]:
    with open(rendered) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def cmd_crds(rendered: str) -> int:
    return check_rendered(load(rendered)).finish()


# ---- rules and their tests -----------------------------------------------------------------------------------


def cmd_rules(rules_path: str, tests_path: str) -> int:
    p = Problems("every alert tested firing and quiet")
    with open(rules_path) as f:
        alerts = [r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(tests_path) as f:
        tests = yaml.safe_load(f)["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
    for a in alerts:
        p.check(a in fires, f"{a}: no test where it fires")
        p.check(a in quiet, f"{a}: no test where it stays quiet")
    p.check(alerts, "no alerts found")
    for a in (fires | quiet) - set(alerts):
        p.check(False, f"a test names {a}, which is no alert")
    return p.finish()


# ---- the dashboard -------------------------------------------------------------------------------------------


def dashboard_problems(dash: dict) -> Problems:
    p = Problems("dashboard")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    p.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus", "no Prometheus datasource variable")
    panels = [x for x in dash.get("panels", []) if x.get("type") != "row"]
    p.check(panels, "no panels")
    ids = [x.get("id") for x in dash.get("panels", [])]
    p.check(len(ids) == len(set(ids)), "panel ids repeat")
    for x in panels:
        where = f"panel {x.get('title')!r}"
        p.check((x.get("datasource") or {}).get("uid") == "${datasource}", f"{where}: not on the datasource variable")
        p.check(x.get("targets") and all(t.get("expr") for t in x["targets"]), f"{where}: a target without expr")
    titles = " | ".join(x.get("title", "").lower() for x in panels)
    for topic in DASHBOARD_TOPICS:
        p.check(topic in titles, f"no panel about {topic!r}")
    return p


def cmd_dashboard(path: str) -> int:
    return dashboard_problems(json.loads(Path(path).read_text())).finish()


# ---- selftest ------------------------------------------------------------------------------------------------


def _so(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "ScaledObject")


def _trigger_md(docs: list[dict]) -> dict:
    return _so(docs)["spec"]["triggers"][0]["metadata"]


def _ta(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "TriggerAuthentication")


MUTATIONS: list[tuple[str, str, Any]] = [
    ("unknown ScaledObject field", "unknown field", lambda d: _so(d)["spec"].update(minReplicas=2)),
    ("mistyped ScaledObject field", "ScaledObject/", lambda d: _so(d)["spec"].update(pollingInterval="often")),
    ("another Deployment scaled", "not the delivery-worker", lambda d: _so(d)["spec"]["scaleTargetRef"].update(name="x")),
    ("wrong stream", "not the queue", lambda d: _trigger_md(d).update(stream="queue")),
    ("wrong group", "consumerGroup", lambda d: _trigger_md(d).update(consumerGroup="webhook-consumers")),
    ("TLS dropped", "enableTLS", lambda d: _trigger_md(d).pop("enableTLS")),
    ("another database", "databaseIndex", lambda d: _trigger_md(d).update(databaseIndex="3")),
    ("ACL user dropped", "ACL user", lambda d: _trigger_md(d).pop("usernameFromEnv")),
    ("dangling authenticationRef", "not a rendered", lambda d: _so(d)["spec"]["triggers"][0].update(authenticationRef={"name": "nope"})),
    ("password from another Secret", "password is not",
     lambda d: next(r for r in _ta(d)["spec"]["secretTargetRef"] if r["parameter"] == "password").update(name="other")),
    ("client certificate dropped", "client certificate",
     lambda d: _ta(d)["spec"].update(secretTargetRef=[r for r in _ta(d)["spec"]["secretTargetRef"] if r["parameter"] != "cert"])),
    ("unknown TriggerAuthentication field", "unknown field", lambda d: _ta(d)["spec"].update(secretRef=[])),
    ("HPA and ScaledObject", "both a ScaledObject and an HPA",
     lambda d: d.append({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2", "metadata": {"name": "h"}, "spec": {}})),
    ("PrometheusRule edited", "is not hookline-rules.yaml",
     lambda d: next(x for x in d if x["kind"] == "PrometheusRule")["spec"]["groups"].pop()),
    ("dashboard edited", "does not hold",
     lambda d: next(x for x in d if x["kind"] == "ConfigMap" and "hookline-dashboard.json" in x["data"])["data"].update({"hookline-dashboard.json": "{}"})),
]


def cmd_selftest(rendered: str) -> int:
    base = load(rendered)
    if check_rendered(copy.deepcopy(base)).items:
        print(f"FAIL selftest: the unmutated rendering {rendered} does not pass")
        return 1
    failed = 0
    for label, expect, mutate in MUTATIONS:
        docs = copy.deepcopy(base)
        mutate(docs)
        found = check_rendered(docs).items
        if not any(expect in msg for msg in found):
            failed += 1
            print(f"FAIL selftest: mutation '{label}' was not caught (wanted {expect!r}; got {found})")
    dash = json.loads(DASHBOARD.read_text())
    dash["panels"][1]["targets"][0]["expr"] = ""
    if not dashboard_problems(dash).items:
        failed += 1
        print("FAIL selftest: a dashboard target without expr was not caught")
    if not failed:
        print(f"ok selftest: {len(MUTATIONS) + 1} mutations caught")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    cmds = {"crds": (cmd_crds, 1), "rules": (cmd_rules, 2), "dashboard": (cmd_dashboard, 1), "selftest": (cmd_selftest, 1)}
    if not argv or argv[0] not in cmds or len(argv) - 1 != cmds[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = cmds[argv[0]]
    return fn(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
