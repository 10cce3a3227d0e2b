"""Hardware-in-the-loop fixtures.

    pytest hil_tests                                  # the virtual ESP32 (part of make test)
    pytest hil_tests --board serial --port /dev/ttyUSB0 \\
        --service-cert svc.crt.pem --service-key svc.key.pem --ca root-ca.pem --endpoint host:8883

The real board must run MotorGuard with a test config ("test_hook": true); the cloud-side checks
need the service identity of the broker the board uses (skipped without it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THING = "hil-001"


def pytest_addoption(parser):
    g = parser.getgroup("motorguard board")
    g.addoption("--board", choices=("virtual", "serial"), default="virtual", help="board under test")
    g.addoption("--port", help="serial port of the real board")
    g.addoption("--service-cert", help="PEM certificate of the cloud's service identity (observer)")
    g.addoption("--service-key", help="its private key")
    g.addoption("--ca", help="CA that signed the broker's certificate (PEM)")
    g.addoption("--endpoint", help="the board's broker host:port")
    g.addoption("--thing", default=None, help="the real board's thing name")


class Site:
    """Where the board's broker is and how the observer reaches it."""

    def __init__(self, thing, endpoint, cert, key, ca, virtual):
        self.thing, self.endpoint, self.cert, self.key, self.ca, self.virtual = thing, endpoint, cert, key, ca, virtual


@pytest.fixture(scope="session")
def site_and_board(request, tmp_path_factory):
    opt = request.config.getoption
    if opt("--board") == "serial":
        port = opt("--port")
        if not port:
            pytest.skip("--board serial needs --port /dev/ttyUSB0 (a MotorGuard board with a test config)")
        if not Path(port).exists():
            pytest.skip("serial port %s not present: no board connected" % port)
        from hil_tests.boards import SerialBoard

        board = SerialBoard(port)
        site = Site(opt("--thing") or THING, opt("--endpoint"), opt("--service-cert"), opt("--service-key"),
                    opt("--ca"), False)
        yield site, board
        board.close()
        return
    from cloud.local.broker import LocalBroker, free_port

    work = tmp_path_factory.mktemp("hil")
    broker = LocalBroker.with_new_pki(work / "broker", free_port())
    broker.start()
    dev = broker.device_dir(THING, work / THING, {
        "thing": THING, "test_hook": True, "wifi": {"ssid": "hil-lab", "password": "hil-pass"},
        "mqtt": {"host": "localhost", "port": 8883, "backoff_min_ms": 200, "backoff_max_ms": 1000},
        "telemetry": {"sample_period_ms": 200, "samples_per_message": 5},
        "control": {"wdt_timeout_ms": 1000, "remote_start_enabled": True},
    })
    from hil_tests.boards import VirtualBoard

    board = VirtualBoard(dev, "%s:%d" % (broker.host, broker.port), ROOT / "firmware")
    cert, key = broker.service_credentials(broker.service_identity)  # the cloud's observer, not the rules engine
    site = Site(THING, "localhost:%d" % broker.port, str(cert), str(key), str(broker.ca_cert), True)
    yield site, board
    board.close()
    broker.stop()


@pytest.fixture
def board(site_and_board):
    site, b = site_and_board
    # Every test starts from a clean boot: STOPPED, inputs released, and (with a broker) connected:
    # NTP and the first TLS handshake block the VM at boot, so a 100 ms press then could be missed.
    mark = b.mark()
    b.reboot()
    b.wait_for_state("STOPPED", 10)
    if site.virtual or site.endpoint:
        b.wait_for("MG NET online", 30, since=mark)
    return b


@pytest.fixture
def site(site_and_board):
    return site_and_board[0]


@pytest.fixture
def observer(site):
    if not (site.endpoint and site.cert and site.key and site.ca):
        pytest.skip("cloud-side checks need --endpoint, --service-cert, --service-key and --ca")
    from hil_tests.observer import Observer

    obs = Observer(site)
    yield obs
    obs.close()
