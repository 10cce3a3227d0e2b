"""The local IoT Core's broker: one Mosquitto with mutual TLS and AWS IoT's least privilege.

Python:
    with LocalBroker.with_new_pki("/tmp/mg-broker", port=18883) as broker:
        creds = broker.issue_device("motor-1")      # DER + PEM paths for the device
        ...
        broker.revoke(creds["cert_pem"])            # CRL updated, Mosquitto reloaded

CLI (python -m cloud.local.broker --help):
    python -m cloud.local.broker start|stop|status|config|reload|update-acl|write-config
                                 [--state-dir DIR] [--port N]

Two processes: Mosquitto on a private unix socket, and in front of it on the TLS port the gateway
(cloud/local/gateway.py), which authenticates each client's certificate and enforces the device policy
as AWS IoT Core does. What Mosquitto is told: cloud/local/broker_config.py. Its state dir
(the fleet CA, its own and the service identities' certificates, the CRL) is laid out and made by
provisioning/broker_home.py, whose LocalBroker this one is, with the Mosquitto process in hand:
`provision ca init` makes that PKI, and `provision` drives this broker through the CLI below.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from contract import CONFIG_FILE, DEVICE_CERT, DEVICE_KEY, ROOT_CA, RESERVED_THING_NAMES, exit_codes
from cloud.local import broker_config, gateway
from provisioning import broker_home, pki, policy
from provisioning.broker_home import BrokerError, find_mosquitto


class LocalBroker(broker_home.LocalBroker):
    """One Mosquitto process with a TLS listener, configured from files in state_dir."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._proc: subprocess.Popen | None = None
        self._gateway: subprocess.Popen | None = None
        # Gateway processes sharing the port: one holds under half its open-file limit in devices
        # (cloud/local/gateway_workers.py); the fleet simulator asks for more.
        self.gateway_workers = 1

    # ------------------------------------------------------------ config

    def config_text(self) -> str:
        return broker_config.config_text(self)

    def grants(self) -> dict:
        """The ACL's grants (broker_config.SERVICE_GRANTS, with this broker's service identity's)."""
        return broker_config.grants(self.service_identity)

    def device_policy(self) -> dict:
        """The device policy this broker enforces: device-policy.json, written from provisioning's
        document when missing (a test or an operator may put another one there, then reload)."""
        if not self.policy_path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.policy_path.write_text(policy.document_json())
        return json.loads(self.policy_path.read_text())

    def acl(self) -> str:
        return broker_config.acl_text(self.grants(), self.device_policy())

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.acl_path.write_text(self.acl())
        self.conf_path.write_text(self.config_text())
        (self.state_dir / "port").write_text(str(self.port))
        return self.conf_path

    def update_acl(self) -> bool:
        """A running Mosquitto whose ACL file lacks a grant (started from a state dir before a
        service identity existed) gets the current one and re-reads it; True if it changed."""
        text = self.acl()
        try:
            current = self.acl_path.read_text()
        except OSError:
            current = None
        if current == text or not self.running():
            return False  # not running: start() writes it
        self.acl_path.write_text(text)
        self.reload()
        return True

    # ------------------------------------------------------------ process

    def start(self, timeout: float = 10.0) -> "LocalBroker":
        exe = find_mosquitto()
        if self.running():
            raise BrokerError(f"a broker from {self.state_dir} is already running (pid {self.pid()})")
        self.write_config()
        sock = self.socket_path
        sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        self._proc = _spawn([exe, "-c", str(self.conf_path)], self.state_dir / "mosquitto.out")
        self.pid_path.write_text(str(self._proc.pid))
        while not sock.exists():
            self._started_or_fail(self._proc, deadline, "mosquitto", self.state_dir / "mosquitto.out", self.log_path)
            time.sleep(0.02)
        cmd = [sys.executable, "-m", "cloud.local.gateway", "--host", self.host, "--port", str(self.port),
               "--upstream", str(sock), "--cafile", str(self.ca_cert), "--certfile", str(self.server_cert),
               "--keyfile", str(self.server_key), "--policy", str(self.policy_path),
               "--service", self.service_identity]
        if self.crl:
            cmd += ["--crlfile", str(self.crl)]
        if self.record:
            cmd += ["--record", str(self.record)]
        cmd += ["--workers", str(self.gateway_workers)]
        self.gateway_workers_path.write_text(str(self.gateway_workers))
        self._gateway = _spawn(cmd, self.gateway_log_path, append=True)
        self.gateway_pid_path.write_text(str(self._gateway.pid))
        last = None
        while True:
            self._started_or_fail(self._gateway, deadline, "the gateway", self.gateway_log_path, self.gateway_log_path,
                                  last)
            try:
                self.check_tls(timeout=1.0)
                return self
            except (OSError, ssl.SSLError) as e:
                last = e
                time.sleep(0.05)

    def _started_or_fail(self, proc, deadline, what, out, log, last=None):
        if proc.poll() is not None:
            self.stop()
            raise BrokerError(f"{what} exited with status {proc.returncode} at start; log tail:\n{_tail(out)}\n"
                              f"{_tail(log) if log != out else ''}")
        if time.monotonic() > deadline:
            self.stop()
            raise BrokerError(f"{what} did not come up on {self.host}:{self.port} in time ({last}); "
                              f"log tail:\n{_tail(log)}")

    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        return _live_pid(self.pid_path, b"mosquitto")

    def gateway_pid(self) -> int | None:
        if self._gateway is not None:
            return self._gateway.pid if self._gateway.poll() is None else None
        return _live_pid(self.gateway_pid_path, b"cloud.local.gateway")

    @property
    def gateway_workers_path(self) -> Path:
        return self.state_dir / "gateway.workers"

    def running_gateway_workers(self) -> int:
        """How many processes the running gateway was started with (each logs its own reload)."""
        try:
            return max(1, int(self.gateway_workers_path.read_text()))
        except (OSError, ValueError):
            return 1

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP to both: Mosquitto re-reads its config and ACL file, the gateway the device policy and
        the CRL. Returns once both logs say so."""
        pid, gw = self.pid(), self.gateway_pid()
        if pid is None or gw is None:
            raise BrokerError("broker is not running")
        self.acl_path.write_text(self.acl())  # the device patterns follow device-policy.json
        waits = [(self.log_path, b"Reloading config.", 1),
                 (self.gateway_log_path, gateway.RELOADED.encode(), self.running_gateway_workers())]
        before = [_count(path, needle) for path, needle, _ in waits]
        os.kill(pid, signal.SIGHUP)
        os.kill(gw, signal.SIGHUP)  # its first worker passes it on to the others
        deadline = time.monotonic() + timeout
        for (path, needle, times), n in zip(waits, before):
            while _count(path, needle) < n + times:
                if time.monotonic() > deadline:
                    raise BrokerError(f"no reload logged in {path.name} within {timeout} s; log tail:\n{_tail(path)}")
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        _terminate(self.gateway_pid(), self._gateway, timeout)
        _terminate(self.pid(), self._proc, timeout)
        self._proc = self._gateway = None
        self.pid_path.unlink(missing_ok=True)
        self.gateway_pid_path.unlink(missing_ok=True)

    def status(self) -> dict:
        pid = self.pid()
        tls = False
        if pid is not None and self.gateway_pid() is not None:
            try:
                self.check_tls(timeout=1.0)
                tls = True
            except (OSError, ssl.SSLError):
                pass
        return {"running": pid is not None and self.gateway_pid() is not None, "pid": pid,
                "gateway_pid": self.gateway_pid(), "host": self.host, "port": self.port,
                "tls_ok": tls, "state_dir": str(self.state_dir)}

    # ------------------------------------------------------------ clients and credentials

    def check_tls(self, timeout: float = 2.0) -> None:
        """Completes one TLS handshake with the listener (service identity) or raises."""
        ctx = self.client_context()
        with socket.create_connection((self.host, self.port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.do_handshake()

    def issue_device(self, thing: str, kind: str = "ec", days: int = 365) -> dict:
        """Device credentials from this broker's CA: DER and PEM paths (see pki.write_der_bundle)."""
        if not self.ca_key:
            raise BrokerError("this broker has no CA key to issue certificates with")
        if thing in RESERVED_THING_NAMES:
            raise BrokerError(f"{thing!r} is a service identity's name: a device certificate by it would "
                              "carry its grants")
        return pki.issue_client(self.ca_cert, self.ca_key, thing, self.state_dir / "devices" / thing, kind, days)

    def device_dir(self, thing: str, dest, config: dict) -> Path:
        """A device's flash for the virtual ESP32: this CA's credentials in DER under the firmware's
        default names, and config.json (config: the device's own settings, thing included)."""
        creds = self.issue_device(thing)
        d = Path(dest)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(creds["cert_der"], d / DEVICE_CERT)
        shutil.copy(creds["key_der"], d / DEVICE_KEY)
        shutil.copy(creds["ca_der"], d / ROOT_CA)
        (d / CONFIG_FILE).write_text(json.dumps(config))
        return d

    def revoke(self, cert, reload: bool = True) -> None:
        """Adds cert (path, x509 object or serial) to the CRL, then reloads Mosquitto."""
        if not (self.crl and self.ca_key):
            raise BrokerError("broker has no CRL configured (use with_new_pki(crl=True))")
        pki.revoke(self.ca_cert, self.ca_key, self.crl, cert)
        if reload and self.running():
            self.reload()


def _spawn(cmd, out_path: Path, append: bool = False) -> subprocess.Popen:
    out = open(out_path, "ab" if append else "wb")  # startup errors go to stderr
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a Ctrl-C in the caller's terminal does not reach it
    finally:
        out.close()


def _terminate(pid, proc, timeout: float) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (proc.poll() is not None) if proc is not None else not _pid_alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait(timeout)


def _live_pid(path: Path, marker: bytes) -> int | None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) and _runs(pid, marker) else None


def _count(path: Path, needle: bytes) -> int:
    try:
        return path.read_bytes().count(needle)
    except OSError:
        return 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": look at its state where /proc tells.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _runs(pid: int, marker: bytes) -> bool:
    # A stale pid file must not make us signal an unrelated process.
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ command line

CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.SERVICE_ERROR, exit_codes.NOT_FOUND,
         exit_codes.BROKER_MISSING)
COMMANDS = {
    "start": "start Mosquitto (creating a test PKI in the state dir first if it has none)",
    "stop": "stop it",
    "status": "is it running and accepting TLS? (exit 0 if so, %d if not)" % exit_codes.SERVICE_ERROR,
    "config": "print the generated mosquitto.conf",
    "reload": "make a running broker re-read its config, ACL and CRL (SIGHUP), and wait until it has",
    "update-acl": "rewrite a running broker's ACL if it lacks a grant, and reload it; prints updated or unchanged",
    "write-config": "write mosquitto.conf, the ACL and the port file into the state dir",
}


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=os.environ.get("MOTORGUARD_BROKER_DIR", "build/broker"),
                        help="where the PKI, config, ACL and log live [env MOTORGUARD_BROKER_DIR; default: "
                             "build/broker; provision uses <home>/broker]")
    common.add_argument("--port", type=int, default=None, help="TLS port (default: the last one used, else 8883)")
    p = argparse.ArgumentParser(prog="python -m cloud.local.broker", description=__doc__.split("\n")[0],
                                epilog=exit_codes.epilog(CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        c = sub.add_parser(name, parents=[common], help=text, description=text)
        if name in ("start", "stop", "reload"):
            c.add_argument("--timeout", type=float, default=10.0 if name == "start" else 5.0,
                           help="seconds to wait for Mosquitto (default: %(default)s)")
        if name == "start":
            c.add_argument("--gateway-workers", type=int, default=1, metavar="N",
                           help="gateway processes sharing the port (default 1); each holds under half its "
                                "open-file limit in devices, so a 10,000-device fleet under a 20,000 limit needs 3")
        if name == "status":
            c.add_argument("--json", action="store_true", help="one JSON object instead of key: value lines")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    state = Path(a.state_dir)
    try:
        if a.command == "start" and not (state / "pki").exists():
            broker = LocalBroker.with_new_pki(state, a.port or broker_home.DEFAULT_PORT)
            print(f"created a test PKI in {state / 'pki'}")
        else:
            broker = LocalBroker.from_state_dir(state, a.port)
        if a.command == "start":
            broker.gateway_workers = max(1, a.gateway_workers)
            broker.start(a.timeout)
            print(f"mosquitto running: pid {broker.pid()}, gateway pid {broker.gateway_pid()}, "
                  f"mqtts://{broker.host}:{broker.port}, logs {broker.log_path} {broker.gateway_log_path}")
            print(f"CA: {broker.ca_cert}  service identity: {broker.service_cert}")
        elif a.command == "stop":
            was = broker.pid()
            broker.stop(a.timeout)
            print("stopped" if was else "not running")
        elif a.command == "status":
            st = broker.status()
            print(json.dumps(st) if a.json else "\n".join(f"{k}: {v}" for k, v in st.items()))
            return exit_codes.OK if st["running"] and st["tls_ok"] else exit_codes.SERVICE_ERROR
        elif a.command == "reload":
            broker.reload(a.timeout)
            print("reloaded")
        elif a.command == "update-acl":
            print("updated" if broker.update_acl() else "unchanged")
        elif a.command == "write-config":
            print(broker.write_config())
        else:
            sys.stdout.write(broker.config_text())
    except BrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
