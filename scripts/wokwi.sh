#!/usr/bin/env bash
# Run the Wokwi scenarios against the factory image with wokwi-cli (needs WOKWI_CLI_TOKEN and internet),
# then check what the logic analyzer recorded on the servo pin in each (wokwi/servo_vcd.py).
#   bash scripts/wokwi.sh [SCENARIO ...]     e.g. 02-start-running; default: every wokwi/scenarios/*.yaml
# The recordings go to $WOKWI_OUT (default build/wokwi), one <scenario>.vcd each.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WOKWI_CLI_TOKEN:-}" ]; then
  echo "wokwi: WOKWI_CLI_TOKEN is not set. Get a CI token at https://wokwi.com/dashboard/ci, then:" >&2
  echo "       WOKWI_CLI_TOKEN=... make wokwi   (add FIRMWARE=path/to/ESP32_GENERIC.bin if micropython.org is unreachable)" >&2
  echo "       (the same scenarios run on the virtual ESP32 in make test: tests/wokwi)" >&2
  exit 2
fi
cli=${WOKWI_CLI:-$(command -v wokwi-cli || echo "$HOME/.wokwi/bin/wokwi-cli")}
if [ ! -x "$cli" ]; then
  echo "wokwi: wokwi-cli not found. Install it (v0.21 or later writes the analyzer's VCD): curl -L https://wokwi.com/ci/install.sh | sh" >&2
  exit 2
fi
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
if [ $# -eq 0 ]; then
  set -- $(cd wokwi/scenarios && ls *.yaml | sed 's/\.yaml$//')
fi
out=${WOKWI_OUT:-build/wokwi}
mkdir -p "$out"
for stem in "$@"; do
  if [ ! -f "wokwi/scenarios/$stem.yaml" ]; then
    echo "wokwi: no scenario wokwi/scenarios/$stem.yaml" >&2
    exit 2
  fi
  vcd="$out/$stem.vcd"
  rm -f "$vcd"  # wokwi-cli writes none when the analyzer saw no change: never judge an old one
  echo "== $stem"
  # 30000 ms of simulated time for the whole run, as in CI; a relative VCD path is taken from this directory.
  "$cli" wokwi --scenario "scenarios/$stem.yaml" --timeout 30000 --vcd-file "$vcd"
  "$py" wokwi/servo_vcd.py "$vcd" "$stem"
done
