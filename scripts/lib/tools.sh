# shellcheck shell=bash
# Tool bootstrap shared by the check scripts (check-deploy.sh, check-openapi.sh, fuzz-api.sh): each sources
# this file after setting CHECK_NAME (for messages), then keeps its own pinned requirements in a venv of its
# own, so one script's pins never move another's.

note() { printf '%s\n' "$*"; }
die() { printf '%s: cannot set up tools: %s\n' "${CHECK_NAME:-checks}" "$*" >&2; exit 2; }

export PIP_DISABLE_PIP_VERSION_CHECK=1

# apt-get install when root on Debian/Ubuntu; otherwise explain what is missing.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "setup: apt-get install $*"
    { [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] \
        || apt-get update -qq; } >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
      || die "apt-get install $* failed"
  else
    die "missing $* (install the Debian package(s) $*)"
  fi
}

# venv_current VENV WANT: whether VENV exists and was last set up for the requirement list WANT.
venv_current() {
  [ -x "$1/bin/python" ] && [ "$(cat "$1/.requirements" 2>/dev/null)" = "$2" ]
}

# venv_install VENV PKG...: creates VENV if needed (installing python3 and python3-venv when missing) and
# pip-installs the pinned PKGs into it.
venv_install() {
  local venv=$1
  shift
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  if ! [ -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv" || die "python3 -m venv failed"
    fi
  fi
  note "setup: pip install $*"
  "$venv/bin/pip" install -q "$@" || die "pip install $* failed"
}

# venv_stamp VENV WANT: records that VENV is set up for WANT (see venv_current).
venv_stamp() {
  printf '%s' "$2" >"$1/.requirements"
}
