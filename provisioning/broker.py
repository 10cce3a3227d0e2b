"""A local stand-in for AWS IoT Core: Mosquitto with mutual TLS and the same least privilege.

Python:
    with LocalBroker.with_new_pki("/tmp/mg-broker", port=18883) as broker:
        creds = broker.issue_device("motor-1")      # DER + PEM paths for the device
        ...
        broker.revoke(creds["cert_pem"])            # CRL updated, Mosquitto reloaded

CLI:
    python -m provisioning.broker start|stop|status|config [--state-dir DIR] [--port N]

What mirrors AWS IoT: clients must present a certificate from our CA (no
anonymous access); the certificate's CN is the identity (the thing name), as a
policy's ${iot:Connection.Thing.ThingName}; the client id is that name too, so
one device cannot take over another's session; a device may publish only under
devices/<its name>/ and subscribe only to devices/<its name>/cmd; each local
service client has an identity of its own (provisioning/services.py: the engine and
the observer read every device's topics and write their cmd topics, the API's
publisher only writes cmd topics, provision check and rotation read only
telemetry or status); a payload over 128 KB (AWS IoT's limit) is not delivered.
What does not: Mosquitto 2.0.11 cannot refuse a CONNECT whose client id is not
the certificate's name (no plugin hook runs at CONNECT for certificate
identities), so it replaces the client id with the name (use_username_as_clientid):
a device claiming another's id is connected under its own, where AWS refuses the
connect. It answers a forbidden publish, and one over the size limit, with a
normal PUBACK and drops the message (AWS IoT closes the connection); and with an
acl_file, Mosquitto 2.0 grants every SUBSCRIBE (SUBACK 0x00/0x01, never 0x80) and
enforces "read" only when delivering, so a device subscribed to another device's
cmd topic simply never receives anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from provisioning import pki
from provisioning.services import (API_IDENTITY, CHECK_IDENTITY, CHECK_PROBE_THING,  # noqa: F401 (re-exported)
                                   DEVICE_PUBLISH_TOPICS, ENGINE_IDENTITY, RESERVED_THING_NAMES, ROTATION_IDENTITY,
                                   SERVICE_GRANTS, SERVICE_IDENTITIES, SERVICE_IDENTITY, acl_text)

MOSQUITTO_HINT = "mosquitto is not installed: sudo apt-get install -y mosquitto (macOS: brew install mosquitto)"

# Per-client queue limits. Mosquitto silently drops QoS 1 messages for a
# subscriber once max_queued_messages are waiting (default 1000: a slow bridge
# lost 976 of a 2,000-message burst). The service subscriber must never be the
# bottleneck of a test or a bench, so its queue is deep; a device's queue only
# ever holds a few commands, so the shared limit costs nothing there.
MAX_QUEUED_MESSAGES = 100000
# Outgoing QoS 1 messages in flight per client before Mosquitto queues the
# rest. The rules engine acknowledges a telemetry message only once its
# batch is stored (cloud/local/esm.py), so this window must hold several
# 100-message batches (and it bounds what the engine's queue holds); devices
# only ever receive a few commands, so the shared limit costs nothing there.
MAX_INFLIGHT_MESSAGES = 1000
# AWS IoT Core refuses a payload over 128 KB; Mosquitto then acknowledges and drops it.
MESSAGE_SIZE_LIMIT = 128 * 1024


class BrokerError(RuntimeError):
    pass


def find_mosquitto() -> str:
    """The mosquitto binary: $MOTORGUARD_MOSQUITTO if set, else PATH, else /usr/sbin (Debian)."""
    explicit = os.environ.get("MOTORGUARD_MOSQUITTO")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"{explicit} (MOTORGUARD_MOSQUITTO) is not an executable; " + MOSQUITTO_HINT)
        return explicit
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if not exe:
        raise BrokerError(MOSQUITTO_HINT)
    return exe


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


class LocalBroker:
    """One Mosquitto process with a TLS listener, configured from files in state_dir."""

    def __init__(
        self,
        state_dir,
        port: int = 8883,
        ca_cert=None,
        server_cert=None,
        server_key=None,
        crl=None,
        host: str = "127.0.0.1",
        service_identity: str = SERVICE_IDENTITY,
        ca_key=None,
        service_cert=None,
        service_key=None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.port = int(port)
        self.host = host
        self.ca_cert = Path(ca_cert) if ca_cert else None
        self.ca_key = Path(ca_key) if ca_key else None  # only needed to issue certs and CRLs
        self.server_cert = Path(server_cert) if server_cert else None
        self.server_key = Path(server_key) if server_key else None
        self.crl = Path(crl) if crl else None
        self.service_identity = service_identity
        self.service_cert = Path(service_cert) if service_cert else None
        self.service_key = Path(service_key) if service_key else None
        self.conf_path = self.state_dir / "mosquitto.conf"
        self.acl_path = self.state_dir / "acl"
        self.log_path = self.state_dir / "mosquitto.log"
        self.pid_path = self.state_dir / "mosquitto.pid"
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------ set-up

    @classmethod
    def with_new_pki(cls, state_dir, port: int = 8883, crl: bool = True, **kw) -> "LocalBroker":
        """A CA, a server certificate for localhost/127.0.0.1, the service identity and an (empty) CRL."""
        state = Path(state_dir).resolve()
        d = state / "pki"
        ca_cert, ca_key = pki.make_ca("MotorGuard Local Test CA", d)
        server_cert, server_key = pki.make_server_cert(ca_cert, ca_key, d)
        svc = pki.issue_client(ca_cert, ca_key, SERVICE_IDENTITY, d / "service")
        for identity in SERVICE_IDENTITIES[1:]:
            pki.issue_client(ca_cert, ca_key, identity, d / "service")
        crl_path = None
        if crl:
            crl_path = d / "crl.pem"
            crl_path.write_bytes(pki.make_crl(ca_cert, ca_key, []))
        return cls(
            state,
            port,
            ca_cert=ca_cert,
            server_cert=server_cert,
            server_key=server_key,
            crl=crl_path,
            ca_key=ca_key,
            service_cert=svc["cert_pem"],
            service_key=svc["key_pem"],
            **kw,
        )

    @classmethod
    def from_state_dir(cls, state_dir, port: int | None = None) -> "LocalBroker":
        """The broker whose PKI with_new_pki() left in state_dir (used by the CLI)."""
        state = Path(state_dir).resolve()
        d = state / "pki"
        ca = d / "motorguard-local-test-ca.crt.pem"
        if not ca.exists():
            raise BrokerError(f"no PKI in {state}: run 'start' once to create it")
        if port is None:
            port_file = state / "port"
            port = int(port_file.read_text()) if port_file.exists() else 8883
        crl = d / "crl.pem"
        return cls(
            state,
            port,
            ca_cert=ca,
            ca_key=d / "motorguard-local-test-ca.key.pem",
            server_cert=d / "server.crt.pem",
            server_key=d / "server.key.pem",
            crl=crl if crl.exists() else None,
            service_cert=d / "service" / f"{SERVICE_IDENTITY}.crt.pem",
            service_key=d / "service" / f"{SERVICE_IDENTITY}.key.pem",
        )

    def config_text(self) -> str:
        if not (self.ca_cert and self.server_cert and self.server_key):
            raise BrokerError("ca_cert, server_cert and server_key are required")
        user = _user_name()
        lines = [
            "# Generated by provisioning.broker: a local AWS IoT Core stand-in. Do not edit; regenerate.",
            "per_listener_settings false",
            "allow_anonymous false",
            # Persistent sessions (the rules engine's) and retained status survive a restart, as
            # in AWS IoT Core, where the rules never stop listening. Devices use clean sessions.
            "persistence true",
            f"persistence_location {self.state_dir}/",
            "autosave_interval 10",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            # See MAX_QUEUED_MESSAGES / MAX_INFLIGHT_MESSAGES above: set on purpose,
            # because the defaults silently drop a slow subscriber's QoS 1 backlog.
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "max_queued_bytes 0",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"message_size_limit {MESSAGE_SIZE_LIMIT}",
            f"acl_file {self.acl_path}",
            # Started as root, Mosquitto would switch to the 'mosquitto' user and
            # lose read access to our 0600 keys: stay the user who started it.
            f"user {user}",
            "",
            f"listener {self.port} {self.host}",
            "protocol mqtt",
            f"cafile {self.ca_cert}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
            # The client id becomes the certificate's CN: a device that connects with another
            # device's id gets its own, so it cannot disconnect the other (AWS refuses the connect).
            "use_username_as_clientid true",
            "tls_version tlsv1.2",  # the minimum; TLS 1.3 is accepted too
        ]
        if self.crl:
            lines.append(f"crlfile {self.crl}")
        return "\n".join(lines) + "\n"

    def grants(self) -> dict:
        """SERVICE_GRANTS, and the observer's grants for a service identity named otherwise here."""
        return dict(SERVICE_GRANTS, **{self.service_identity: SERVICE_GRANTS.get(
            self.service_identity, SERVICE_GRANTS[SERVICE_IDENTITY])})

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.acl_path.write_text(acl_text(self.grants()))
        self.conf_path.write_text(self.config_text())
        (self.state_dir / "port").write_text(str(self.port))
        return self.conf_path

    def update_acl(self) -> bool:
        """A running Mosquitto whose ACL file lacks a grant (started from a state dir before a
        service identity existed) gets the current one and re-reads it; True if it changed."""
        text = acl_text(self.grants())
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
        out = open(self.state_dir / "mosquitto.out", "wb")  # startup errors go to stderr
        try:
            self._proc = subprocess.Popen(
                [exe, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach it
            )
        finally:
            out.close()
        self.pid_path.write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise BrokerError(
                    f"mosquitto exited with status {self._proc.returncode} at start; "
                    f"log tail:\n{_tail(self.state_dir / 'mosquitto.out')}\n{_tail(self.log_path)}"
                )
            try:
                self.check_tls(timeout=1.0)
                return self
            except (OSError, ssl.SSLError) as e:
                last = e
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not accept TLS on {self.host}:{self.port} within {timeout} s ({last}); "
                          f"log tail:\n{_tail(self.log_path)}")

    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self.pid_path.read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) and _is_mosquitto(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: Mosquitto re-reads its config, ACL file and CRL. Returns once its log says so."""
        pid = self.pid()
        if pid is None:
            raise BrokerError("broker is not running")
        before = self._log_count(b"Reloading config.")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._log_count(b"Reloading config.") <= before:
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not log a reload within {timeout} s; log tail:\n{_tail(self.log_path)}")
            time.sleep(0.02)

    def _log_count(self, needle: bytes) -> int:
        try:
            return self.log_path.read_bytes().count(needle)
        except OSError:
            return 0

    def stop(self, timeout: float = 5.0) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc is not None:
                    if self._proc.poll() is not None:
                        break
                elif not _pid_alive(pid):
                    break
                time.sleep(0.02)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if self._proc is not None:
                    self._proc.wait(timeout)
        self._proc = None
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> "LocalBroker":
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ clients

    def client_context(self, cert=None, key=None, identity: str | None = None) -> ssl.SSLContext:
        """A CPython TLS context for a client of this broker: cert and key, else the service
        identity named (SERVICE_IDENTITIES: ENGINE_IDENTITY for the rules engine, ...), else the
        observer's (SERVICE_IDENTITY)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        if not cert:
            cert, key = self.service_credentials(identity or self.service_identity)
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def service_credentials(self, identity: str) -> tuple:
        """(cert, key) PEM paths of a service identity; one this broker's PKI does not hold yet
        (a state dir from before it had its own) is issued from the CA."""
        if identity == self.service_identity:
            return self.service_cert, self.service_key
        if identity not in SERVICE_IDENTITIES:
            raise BrokerError(f"{identity!r} is not a service identity ({', '.join(SERVICE_IDENTITIES)})")
        d = (self.service_cert.parent if self.service_cert else self.state_dir / "pki" / "service")
        cert, key = d / f"{identity}.crt.pem", d / f"{identity}.key.pem"
        if not cert.exists():
            if not self.ca_key:
                raise BrokerError(f"no certificate for {identity} and no CA key to issue one")
            pki.issue_client(self.ca_cert, self.ca_key, identity, d)
        return cert, key

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
        import json

        creds = self.issue_device(thing)
        d = Path(dest)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(creds["cert_der"], d / "device.crt.der")
        shutil.copy(creds["key_der"], d / "device.key.der")
        shutil.copy(creds["ca_der"], d / "root-ca.der")
        (d / "config.json").write_text(json.dumps(config))
        return d

    def revoke(self, cert, reload: bool = True) -> None:
        """Adds cert (path, x509 object or serial) to the CRL, then reloads Mosquitto."""
        if not (self.crl and self.ca_key):
            raise BrokerError("broker has no CRL configured (use with_new_pki(crl=True))")
        pki.revoke(self.ca_cert, self.ca_key, self.crl, cert)
        if reload and self.running():
            self.reload()

    def status(self) -> dict:
        pid = self.pid()
        tls = False
        if pid is not None:
            try:
                self.check_tls(timeout=1.0)
                tls = True
            except (OSError, ssl.SSLError):
                pass
        return {"running": pid is not None, "pid": pid, "host": self.host, "port": self.port,
                "tls_ok": tls, "state_dir": str(self.state_dir)}


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "mosquitto"


def _is_mosquitto(pid: int) -> bool:
    # A stale pid file must not make us signal an unrelated process.
    try:
        return b"mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.broker", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["start", "stop", "status", "config"])
    p.add_argument("--state-dir", default=os.environ.get("MOTORGUARD_BROKER_DIR", "build/broker"),
                   help="where the PKI, config, ACL and log live (default: build/broker)")
    p.add_argument("--port", type=int, default=None, help="TLS port (default: last used, else 8883)")
    a = p.parse_args(argv)
    state = Path(a.state_dir)
    try:
        if a.command == "start" and not (state / "pki").exists():
            broker = LocalBroker.with_new_pki(state, a.port or 8883)
            print(f"created a test PKI in {state / 'pki'}")
        else:
            broker = LocalBroker.from_state_dir(state, a.port)
        if a.command == "start":
            broker.start()
            print(f"mosquitto running: pid {broker.pid()}, mqtts://{broker.host}:{broker.port}, log {broker.log_path}")
            print(f"CA: {broker.ca_cert}  service identity: {broker.service_cert}")
        elif a.command == "stop":
            was = broker.pid()
            broker.stop()
            print("stopped" if was else "not running")
        elif a.command == "status":
            st = broker.status()
            for k, v in st.items():
                print(f"{k}: {v}")
            return 0 if st["running"] and st["tls_ok"] else 3
        else:
            sys.stdout.write(broker.config_text())
    except BrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
