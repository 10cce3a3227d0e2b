import pytest
from vesp32_support import BASE_CONFIG, FIXTURE_FW, ROOT, EchoServer, write_device

from vesp32.harness import VirtualESP32

collect_ignore = ["fixture_fw"]


@pytest.fixture
def make_vm(tmp_path):
    """Factory: a started virtual board running the fixture firmware (or firmware_dir=...).
    Every board is powered off at teardown, whatever the test did."""
    made = []

    def make(config=None, firmware_dir=FIXTURE_FW, start=True, name="dev", **kw):
        cfg = dict(BASE_CONFIG) if config is None else config
        dev = write_device(tmp_path / name, cfg if cfg != "none" else None)
        kw.setdefault("extra_path", [ROOT / "firmware"])
        vm = VirtualESP32(dev, firmware_dir=firmware_dir, **kw)
        made.append(vm)
        if start:
            vm.start()
        return vm

    yield make
    for vm in made:
        vm.stop()


@pytest.fixture
def echo_server():
    srv = EchoServer()
    yield srv
    srv.close()
