#!/usr/bin/env bash
# Fuzzes the api-gateway against its OpenAPI document with schemathesis:
#
#   bash scripts/fuzz-api.sh            # FUZZ_EXAMPLES (default 40) cases per operation, FUZZ_SEED (default 6)
#
# What it does, all on loopback and all torn down on exit (trap), whatever happens:
# - installs schemathesis from PyPI into its own venv, .tools/fuzz-venv (idempotent; the second run installs
#   nothing). A venv of its own, like check-openapi.sh's, so no pip install here moves another script's pins;
# - starts a private redis-server on a free port (no persistence, a temporary directory);
# - starts the api-gateway alone (target/debug/api-gateway, built when missing) on another free port. No
#   delivery-worker runs, so the subscriptions, test deliveries and invocations the fuzzer creates are never
#   sent anywhere; the outbound allowlist is loopback only as a second belt;
# - mints an administrator token with `api-gateway dev-token --admin --secret …` for a throwaway secret;
# - runs `st run openapi/openapi.yaml` against it: every operation, the examples, coverage and fuzzing phases,
#   a bounded number of cases, a fixed seed (reproducible; FUZZ_SEED changes it), and these checks:
#   not_a_server_error (no 5xx), status_code_conformance (every status is documented),
#   content_type_conformance, response_headers_conformance and response_schema_conformance (bodies and
#   documented headers match the document), missing_required_header (no credentials: 401),
#   unsupported_method and allow_header_conformance (undocumented methods: 405 with a true `Allow`).
#   FUZZ_CHECKS replaces the list (e.g. FUZZ_CHECKS=all for the stricter, advisory checks).
#
# Ends with `api fuzz: N passed, 0 failed` (exit 0) or `api fuzz: N passed, M failed` and schemathesis's
# report of each failure with a curl line to reproduce it (exit 1). Exit 2: the tools or the services could
# not be set up. About 30 s on 2 cores once the venv exists (the first run adds the pip install).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

TOOLS="$ROOT/.tools"
VENV="$TOOLS/fuzz-venv"
SPEC="openapi/openapi.yaml"
GATEWAY="$ROOT/target/debug/api-gateway"
EXAMPLES="${FUZZ_EXAMPLES:-40}"
SEED="${FUZZ_SEED:-6}"
# Pinned tool version: checks and their names change between schemathesis releases.
PY_REQUIREMENTS=(schemathesis==4.32.5)
CHECKS="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,unsupported_method,allow_header_conformance}"

CHECK_NAME="api fuzz"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

# ---- tools -----------------------------------------------------------------------------------------------

setup_python() {
  local want="${PY_REQUIREMENTS[*]}"
  venv_current "$VENV" "$want" && [ -x "$VENV/bin/st" ] && return 0
  venv_install "$VENV" "${PY_REQUIREMENTS[@]}"
  venv_stamp "$VENV" "$want"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---- services --------------------------------------------------------------------------------------------

WORK=""
REDIS_PID=""
GATEWAY_PID=""

# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  # Only the processes this script started, by their id.
  [ -n "$GATEWAY_PID" ] && kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    python3 - "$1" <<'PY' 2>/dev/null && return 0
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
PY
    sleep 0.1
  done
  return 1
}

setup_python
command -v redis-server >/dev/null 2>&1 || die "redis-server is missing (make deps)"
if ! [ -x "$GATEWAY" ]; then
  note "setup: cargo build -p api-gateway"
  cargo build -q -p api-gateway || die "cargo build -p api-gateway failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hookline-fuzz.XXXXXX") || die "mktemp failed"
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!

API_PORT=$(free_port)
SECRET="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export HOOKLINE__REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
export HOOKLINE__API__LISTEN="127.0.0.1:$API_PORT"
# The ops listener too: its default, 0.0.0.0:9090, is taken whenever another stack runs on the machine.
OPS_PORT=$(free_port)
export HOOKLINE__OPS__LISTEN="127.0.0.1:$OPS_PORT"
export HOOKLINE__API__WORKERS=2
export HOOKLINE__AUTH__JWT_ALGORITHM=HS256
export HOOKLINE__AUTH__JWT_SECRET="$SECRET"
export HOOKLINE__OUTBOUND__ALLOWLIST="127.0.0.1/32,::1/128"
export HOOKLINE__TELEMETRY__LOG_LEVEL=warn
# /metrics is documented on the API port, where it is served only with this switch (it moved to the ops
# listener in d80c782); without it every /metrics case fails with an undocumented 404.
export HOOKLINE__API__METRICS_ON_API_PORT=true
# TMI's quota bounds at their widest, so that creates reach validation instead of stopping at the per-owner
# quota after ten (the quota itself is tested by tests/e2e/quotas.rs).
export HOOKLINE__QUOTAS__MAX_SUBSCRIPTIONS=100
export HOOKLINE__QUOTAS__MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE=100
export HOOKLINE__QUOTAS__MAX_SUBSCRIPTION_REQUESTS_PER_DAY=10000
unset HOOKLINE_CONFIG
"$GATEWAY" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
BASE="http://127.0.0.1:$API_PORT"
if ! wait_http "$BASE/readyz" 20; then
  tail -20 "$WORK/gateway.log" >&2
  die "the api-gateway did not become ready at $BASE"
fi
TOKEN=$("$GATEWAY" dev-token --admin --secret "$SECRET") || die "dev-token failed"

# ---- fuzz ------------------------------------------------------------------------------------------------

note "api fuzz: schemathesis against $BASE ($EXAMPLES cases per operation, seed $SEED)"
JUNIT="$WORK/junit.xml"

# One schemathesis run; sets ST_STATUS and, from the JUnit report (one test case per operation), PASSED,
# FAILED (operations with a <failure> or an <error>) and ERRORED (with an <error> only: schemathesis itself
# crashed there, no check failed).
fuzz_once() {
  "$VENV/bin/st" run "$SPEC" --url "$BASE" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing \
    --max-examples "$EXAMPLES" --seed "$SEED" \
    --workers 2 --request-timeout 10 \
    --suppress-health-check all \
    --report junit --report-junit-path "$JUNIT" \
    --output-truncate true \
    >"$WORK/st.log" 2>&1
  ST_STATUS=$?
  read -r PASSED FAILED ERRORED < <(python3 - "$JUNIT" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 0, 0)
    sys.exit()
passed = failed = errored = 0
for case in root.iter("testcase"):
    failure, error = case.find("failure") is not None, case.find("error") is not None
    if failure or error:
        failed += 1
        errored += error and not failure
    elif case.find("skipped") is None:
        passed += 1
print(passed, failed, errored)
PY
)
}

fuzz_once
# schemathesis 4.32 under CPython 3.11 sometimes crashes inside Hypothesis ("AST constructor recursion depth
# mismatch", a CPython bug, gh-106905) while describing a strategy: an <error> on an operation, no check
# failed. Such a run is repeated, up to three times (about one run in three crashed, and once two in a row
# did); a check failure, or a fourth crash, fails.
for _ in 1 2 3; do
  if [ "$FAILED" -ne 0 ] && [ "$FAILED" -eq "$ERRORED" ] && grep -q "AST constructor recursion depth mismatch" "$WORK/st.log"; then
    note "api fuzz: schemathesis crashed internally (CPython gh-106905) on $ERRORED operation(s), no check failed: running again"
    fuzz_once
  fi
done

if [ "$ST_STATUS" -ne 0 ] || [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then
  cat "$WORK/st.log"
  if [ -s "$WORK/gateway.log" ]; then
    note "---- api-gateway log (last 40 lines) ----"
    tail -40 "$WORK/gateway.log"
  fi
  # A run that fails without a failing operation (a crash, a bad option) still counts as one failure.
  [ "$FAILED" -eq 0 ] && FAILED=1
  note "api fuzz: $PASSED passed, $FAILED failed"
  exit 1
fi
note "api fuzz: $PASSED passed, 0 failed"
exit 0
