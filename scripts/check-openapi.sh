#!/usr/bin/env bash
# Offline checks of Hookline's OpenAPI document, openapi/openapi.yaml:
#
#   bash scripts/check-openapi.sh
#
# Installs what it needs into the repository's .tools/ (idempotent; the second run installs nothing), from
# PyPI only: a Python venv, .tools/openapi-venv, with openapi-spec-validator (which brings jsonschema) and
# PyYAML. It is a venv of its own rather than check-deploy.sh's .tools/deploy-venv because both pin
# jsonschema, and one script's pip install must never move the other's pins. On a fresh Debian machine, run
# as root, it apt-installs python3-venv when it is missing.
#
# The checks themselves are scripts/openapi_checks.py: openapi-spec-validator (OpenAPI 3.1), then Hookline's
# conventions (Error bodies, required headers, security schemes, Hookline additions marked, examples valid
# against their schemas, …). That the router serves exactly what the document describes is checked by
# `cargo test -p api-gateway --test openapi_routes`, which `make test` runs with every other test.
#
# Prints PASS/FAIL/SKIP per check and ends with
#   openapi checks: N passed, M failed[, K skipped]
# Exit status: 0 when nothing failed, 1 otherwise (2 when the tools cannot be installed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

TOOLS="$ROOT/.tools"
VENV="$TOOLS/openapi-venv"
SPEC="openapi/openapi.yaml"

# Pinned tool versions (openapi-spec-validator pulls jsonschema, referencing and rfc3339-validator, which
# the example check uses for formats).
PY_REQUIREMENTS=(openapi-spec-validator==0.9.0 PyYAML==6.0.4 jsonschema==4.26.0 rfc3339-validator==0.1.4)

CHECK_NAME="openapi checks"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

setup_python() {
  local want="${PY_REQUIREMENTS[*]}"
  venv_current "$VENV" "$want" && return 0
  venv_install "$VENV" "${PY_REQUIREMENTS[@]}"
  venv_stamp "$VENV" "$want"
}

setup_python
[ -f "$SPEC" ] || { note "FAIL $SPEC is missing"; note "openapi checks: 0 passed, 1 failed"; exit 1; }
"$VENV/bin/python" scripts/openapi_checks.py "$SPEC"
