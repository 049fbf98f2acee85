#!/usr/bin/env bash
# The receiver-side libraries the signature tests verify real deliveries with, as a receiver would:
#
#   bash scripts/receiver-tools.sh      # prints the venv's python path on its last line
#
# Installs into the repository's .tools/receiver-venv (idempotent; the second run installs nothing), from PyPI
# only: `standardwebhooks` (the official Standard Webhooks library, HMAC `v1,`) and `cryptography` (an
# Ed25519 verifier independent of ring, for `v1a,`). A venv of its own, like check-openapi.sh's, so no pip
# install here moves another script's pins. `make test` runs it before the tests; the e2e signature tests run
# it themselves too (tests/e2e/signatures.rs), so `cargo test` alone also works.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

VENV="$ROOT/.tools/receiver-venv"
# Pinned: the tests assert these libraries' behaviour (error texts, skipped signature versions).
PY_REQUIREMENTS=(standardwebhooks==1.1.0 cryptography==50.0.2)

CHECK_NAME="receiver tools"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

want="${PY_REQUIREMENTS[*]}"
if ! venv_current "$VENV" "$want"; then
  # Progress goes to stderr: stdout's last line is the interpreter's path.
  venv_install "$VENV" "${PY_REQUIREMENTS[@]}" >&2
  venv_stamp "$VENV" "$want"
fi
echo "$VENV/bin/python"
