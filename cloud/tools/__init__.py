"""The local tools around the cloud, apart from the product: `make demo` (demo, demo_fleet),
`make bench-cloud` (bench, bench_fleet) and `make fuzz` (fuzz, fuzz_engine, fuzz_payloads,
fuzz_tables). They drive the local IoT Core (cloud/local) and the virtual ESP32; only the tests and
the fleet simulator import them (pyproject.toml [tool.importlinter])."""
