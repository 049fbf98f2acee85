#!/usr/bin/env bash
# What the console's browser test (tests/e2e/console.rs) drives a real browser with:
#
#   bash scripts/browser-tools.sh      # prints the venv's python path on its last line
#
# Debian's `chromium` and `chromium-driver` (apt-get, only when missing; a browser downloaded by a test does
# not arrive here) and Selenium from PyPI in .tools/browser-venv (idempotent; the second run installs
# nothing). A venv of its own, like receiver-tools.sh's, so no pip install here moves another script's pins.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

VENV="$ROOT/.tools/browser-venv"
# Pinned: the test uses Selenium 4's Chrome options, service and logging capabilities.
PY_REQUIREMENTS=(selenium==4.50.0)

CHECK_NAME="browser tools"
# shellcheck source=scripts/lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"

# Progress goes to stderr: stdout's last line is the interpreter's path.
{
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
} >&2

want="${PY_REQUIREMENTS[*]}"
if ! venv_current "$VENV" "$want"; then
  venv_install "$VENV" "${PY_REQUIREMENTS[@]}" >&2
  venv_stamp "$VENV" "$want"
fi
echo "$VENV/bin/python"
