#!/usr/bin/env bash
# Hookline's Prometheus rules, checked and unit-tested with Prometheus's own tool:
#
#   bash scripts/check-prometheus.sh
#
# `promtool check rules` (syntax, PromQL, templates) on deploy/prometheus/hookline-rules.yaml (a link to the
# chart's files/prometheus/hookline-rules.yaml), then `promtool test rules` on hookline-rules.test.yaml: every
# alert fires when it should and stays quiet when it should not (scripts/obs_checks.py rules, run by
# check-deploy.sh, checks that each alert has both kinds of test). promtool comes from Debian's `prometheus`
# package, installed here when missing (as scripts/install-deps.sh does for `make test`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CHECK_NAME="prometheus checks"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

command -v promtool >/dev/null 2>&1 || bash scripts/install-deps.sh
command -v promtool >/dev/null 2>&1 || die "promtool is missing (install the Debian package prometheus)"

note "$(promtool --version 2>&1 | head -1)"
promtool check rules deploy/prometheus/hookline-rules.yaml
promtool test rules deploy/prometheus/hookline-rules.test.yaml
note "prometheus checks: rules valid, unit tests pass"
