#!/usr/bin/env bash
# Installs the system packages Hookline's local stack and tests need, only when missing.
# Debian/Ubuntu: apt-get (as root, or through sudo when available).
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
# PostgreSQL for hookline-migrate's tests (TMI's database): the server binaries live in
# /usr/lib/postgresql/<version>/bin, not on PATH. The tests start their own server there.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null 2>&1 || need+=(postgresql)
# Prometheus for the rules' unit tests (promtool) and the e2e test that scrapes the services (prometheus).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  need+=(prometheus)
fi
if [ "${HOOKLINE_BENCH:-}" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing: ${need[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "please install: ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system Prometheus on :9090 where an init system runs it; the tests run their own on a
# free loopback port, so stop the packaged one that this install started.
if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
