#!/usr/bin/env bash
# Run every Wokwi scenario against the factory image with wokwi-cli (needs WOKWI_CLI_TOKEN and internet).
set -euo pipefail
if [ -z "${WOKWI_CLI_TOKEN:-}" ]; then
  echo "wokwi: WOKWI_CLI_TOKEN is not set. Get a CI token at https://wokwi.com/dashboard/ci, then:" >&2
  echo "       WOKWI_CLI_TOKEN=... make wokwi   (add FIRMWARE=path/to/ESP32_GENERIC.bin if micropython.org is unreachable)" >&2
  echo "       (the same scenarios run on the virtual ESP32 in make test: tests/wokwi)" >&2
  exit 2
fi
cli=${WOKWI_CLI:-$(command -v wokwi-cli || echo "$HOME/.wokwi/bin/wokwi-cli")}
if [ ! -x "$cli" ]; then
  echo "wokwi: wokwi-cli not found. Install it: curl -L https://wokwi.com/ci/install.sh | sh" >&2
  exit 2
fi
for s in wokwi/scenarios/*.yaml; do
  echo "== $s"
  "$cli" wokwi --scenario "scenarios/$(basename "$s")" --timeout 30000
done
