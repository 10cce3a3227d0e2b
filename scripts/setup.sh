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

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Mosquitto with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  else
    echo "setup: Mosquitto is not installed. Install it with: sudo apt-get install -y mosquitto" >&2
    echo "       (macOS: brew install mosquitto). The broker tests need it." >&2
    exit 1
  fi
fi
# Node.js runs the AWS CDK (jsii) when the stack is synthesized, in the tests and in make synth-cloud.
if ! command -v node >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Node.js with apt-get (for the AWS CDK)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
  else
    echo "setup: Node.js is not installed; the CDK tests need it: sudo apt-get install -y nodejs" >&2
    exit 1
  fi
fi
# The Debian package starts a system broker on port 1883; our tests start their own brokers.
echo "setup: done ($("$venv/bin/micropython" -c 'import sys; print(sys.implementation.name, sys.version)'))"
