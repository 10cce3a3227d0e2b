"""The local broker as provisioning makes and uses it: its home (the fleet CA, the broker's and the
service identities' certificates, the CRL) and, for the process, the broker's command line.

    b = LocalBroker.with_new_pki(home / "broker", 8883)   # provision ca init
    b = LocalBroker.from_state_dir(home / "broker")       # every later provision command
    b.ca_cert, b.ca_key, b.crl, b.port                    # what the local backend signs and revokes with
    b.client_context(identity=contract.CHECK_IDENTITY)    # provision check's and rotate's listeners
    b.start(); b.reload(); b.status(); b.stop()           # python -m cloud.local.broker, a process of its own

The broker itself, Mosquitto configured as AWS IoT Core's stand-in (its config, ACL and process), is
the local IoT Core's: cloud/local/broker.py, whose LocalBroker is this class with the process in
hand. Provisioning imports nothing of the local IoT Core (docs/architecture.md, Rooms and allowed
imports); it reaches that broker only through its command line (BROKER_COMMAND), as the aws
backend reaches AWS IoT Core only through its API.

The state dir:
    pki/                       the fleet CA, the broker's certificate (localhost, 127.0.0.1), crl.pem
    pki/service/<name>.*.pem   each service identity's certificate and key (contract.SERVICE_IDENTITIES)
    port                       the TLS port last used
    mosquitto.conf, acl, mosquitto.log, mosquitto.pid    the broker's own
    device-policy.json         the device policy the gateway enforces (provisioning/policy.py's document)
    gateway.log, gateway.pid   the gateway's own (cloud/local/gateway.py: TLS and the policy, in front)
The broker's unix socket, which only the gateway connects to, is in a private directory of its own
(socket_path): a unix socket's path must stay short, and a test's state dir may be deep.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import contract
from contract import exit_codes
from provisioning import pki

DEFAULT_PORT = 8883
CA_NAME = "MotorGuard Local Test CA"  # its files: pki/motorguard-local-test-ca.{crt,key}.pem
MOSQUITTO_HINT = "mosquitto is not installed: sudo apt-get install -y mosquitto (macOS: brew install mosquitto)"
# The local IoT Core's broker command line (cloud/local/broker.py main): what provisioning runs to
# start, stop, reload and ask the broker, instead of importing it.
BROKER_COMMAND = (sys.executable, "-m", "cloud.local.broker")


class BrokerError(RuntimeError):
    """The local broker could not do what was asked; code: what it means, from contract/exit_codes.py."""

    def __init__(self, message: str, code: int = exit_codes.SERVICE_ERROR):
        super().__init__(message)
        self.code = code


def find_mosquitto() -> str:
    """The mosquitto binary: $MOTORGUARD_MOSQUITTO if set, else PATH, else /usr/sbin (Debian)."""
    explicit = os.environ.get("MOTORGUARD_MOSQUITTO")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"{explicit} (MOTORGUARD_MOSQUITTO) is not an executable; " + MOSQUITTO_HINT,
                              exit_codes.BROKER_MISSING)
        return explicit
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if not exe:
        raise BrokerError(MOSQUITTO_HINT, exit_codes.BROKER_MISSING)
    return exe


class LocalBroker:
    """One local broker's state dir: its PKI, and its process through the broker's command line."""

    def __init__(
        self,
        state_dir,
        port: int = DEFAULT_PORT,
        ca_cert=None,
        server_cert=None,
        server_key=None,
        crl=None,
        host: str = "127.0.0.1",
        service_identity: str = contract.SERVICE_IDENTITY,
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
        self.policy_path = self.state_dir / "device-policy.json"
        self.gateway_log_path = self.state_dir / "gateway.log"
        self.gateway_pid_path = self.state_dir / "gateway.pid"
        self.record = None  # a JSONL path: the gateway appends every device packet's header to it

    @property
    def socket_path(self) -> Path:
        """Mosquitto's unix socket, which only the gateway uses: in the state dir when its path is short
        enough for a socket (about 100 bytes), else in a private directory named after the state dir."""
        here = self.state_dir / "mqtt.sock"
        if len(str(here)) < 100:
            return here
        tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / ("motorguard-%s" % tag) / "mqtt.sock"

    # ------------------------------------------------------------ set-up

    @classmethod
    def with_new_pki(cls, state_dir, port: int = DEFAULT_PORT, crl: bool = True, **kw) -> "LocalBroker":
        """A CA, a server certificate for localhost/127.0.0.1, the service identities and an (empty) CRL."""
        state = Path(state_dir).resolve()
        d = state / "pki"
        ca_cert, ca_key = pki.make_ca(CA_NAME, d)
        server_cert, server_key = pki.make_server_cert(ca_cert, ca_key, d)
        svc = pki.issue_client(ca_cert, ca_key, contract.SERVICE_IDENTITY, d / "service")
        for identity in contract.SERVICE_IDENTITIES:
            if identity != contract.SERVICE_IDENTITY:
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
        """The broker whose PKI with_new_pki() left in state_dir."""
        state = Path(state_dir).resolve()
        d = state / "pki"
        ca = d / "motorguard-local-test-ca.crt.pem"
        if not ca.exists():
            raise BrokerError(f"no PKI in {state}: run 'start' once to create it", exit_codes.NOT_FOUND)
        if port is None:
            port_file = state / "port"
            port = int(port_file.read_text()) if port_file.exists() else DEFAULT_PORT
        crl = d / "crl.pem"
        return cls(
            state,
            port,
            ca_cert=ca,
            ca_key=d / "motorguard-local-test-ca.key.pem",
            server_cert=d / "server.crt.pem",
            server_key=d / "server.key.pem",
            crl=crl if crl.exists() else None,
            service_cert=d / "service" / f"{contract.SERVICE_IDENTITY}.crt.pem",
            service_key=d / "service" / f"{contract.SERVICE_IDENTITY}.key.pem",
        )

    # ------------------------------------------------------------ clients

    def client_context(self, cert=None, key=None, identity: str | None = None) -> ssl.SSLContext:
        """A CPython TLS context for a client of this broker: cert and key, else the service
        identity named (contract.SERVICE_IDENTITIES: ENGINE_IDENTITY for the rules engine, ...), else
        the observer's (contract.SERVICE_IDENTITY)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        if not cert:
            cert, key = self.service_credentials(identity or self.service_identity)
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def service_client(self, client_id: str, identity: str | None = None, topics=(), on_message=None,
                       timeout_s: float = 10.0, keepalive: int = 30, setup=None, **client_options):
        """A paho MQTT client of this broker, the one way every service and tool connects one: TLS
        with the service identity named (see client_context), connected with its network loop
        running, and, when topics ((filter, qos) pairs, or a callable giving them) are given,
        subscribed with one SUBSCRIBE on every connect, the first SUBACK waited for. setup(client)
        runs before the connect (reconnect delays, in-flight limits); client_options go to
        paho's Client (clean_session, manual_ack). Raises ConnectionError when no CONNACK or SUBACK
        comes within timeout_s; the caller stops the client (loop_stop, disconnect)."""
        import threading

        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                        **client_options)
        c.tls_set_context(self.client_context(identity=identity))
        if on_message is not None:
            c.on_message = on_message
        subscribed = threading.Event()
        if topics:
            c.on_connect = lambda cl, *a: cl.subscribe(list(topics() if callable(topics) else topics))
            c.on_subscribe = lambda *a: subscribed.set()
        if setup is not None:
            setup(c)
        c.connect(self.host, self.port, keepalive=keepalive)
        c.loop_start()
        if topics:
            ok = subscribed.wait(timeout_s)
        else:
            deadline = time.monotonic() + timeout_s
            while not c.is_connected() and time.monotonic() < deadline:
                time.sleep(0.01)
            ok = c.is_connected()
        if not ok:
            c.loop_stop()
            c.disconnect()
            raise ConnectionError("%s: no %s from the broker at %s:%d within %.0f s" % (
                client_id, "SUBACK" if topics else "CONNACK", self.host, self.port, timeout_s))
        return c

    def service_credentials(self, identity: str) -> tuple:
        """(cert, key) PEM paths of a service identity; one this broker's PKI does not hold yet
        (a state dir from before it had its own) is issued from the CA."""
        if identity == self.service_identity:
            return self.service_cert, self.service_key
        if identity not in contract.SERVICE_IDENTITIES:
            raise BrokerError(f"{identity!r} is not a service identity ({', '.join(contract.SERVICE_IDENTITIES)})",
                              exit_codes.BAD_INPUT)
        d = (self.service_cert.parent if self.service_cert else self.state_dir / "pki" / "service")
        cert, key = d / f"{identity}.crt.pem", d / f"{identity}.key.pem"
        if not cert.exists():
            if not self.ca_key:
                raise BrokerError(f"no certificate for {identity} and no CA key to issue one")
            pki.issue_client(self.ca_cert, self.ca_key, identity, d)
        return cert, key

    # ------------------------------------------------------------ process, through the broker's command line

    def _broker_command(self, command: str, *args, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([*BROKER_COMMAND, command, "--state-dir", str(self.state_dir), "--port", str(self.port),
                            *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check and r.returncode != exit_codes.OK:
            raise BrokerError(_error_text(r), r.returncode)
        return r

    def write_config(self) -> Path:
        """The broker's config and ACL for this state dir, and the port file."""
        self._broker_command("write-config")
        return self.conf_path

    def update_acl(self) -> bool:
        """A running broker whose ACL lacks a grant (started from a state dir before a service
        identity existed) gets the current one and re-reads it; True if it changed."""
        return self._broker_command("update-acl").stdout.strip() == "updated"

    def start(self, timeout: float = 10.0) -> "LocalBroker":
        self._broker_command("start", "--timeout", str(timeout))
        return self

    def status(self) -> dict:
        """{running, pid, host, port, tls_ok, state_dir}."""
        r = self._broker_command("status", "--json", check=False)
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise BrokerError(_error_text(r), r.returncode) from None

    def pid(self) -> int | None:
        return self.status()["pid"]

    def running(self) -> bool:
        return self.pid() is not None

    def reload(self, timeout: float = 5.0) -> None:
        """Mosquitto re-reads its config, ACL file and CRL. Returns once its log says so."""
        self._broker_command("reload", "--timeout", str(timeout))

    def stop(self, timeout: float = 5.0) -> None:
        self._broker_command("stop", "--timeout", str(timeout))

    def __enter__(self) -> "LocalBroker":
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _error_text(r: subprocess.CompletedProcess) -> str:
    """The broker command's message (it prints 'error: <message>' on stderr)."""
    text = (r.stderr or r.stdout).strip()
    if text.startswith("error: "):
        text = text[len("error: "):]
    return text or f"{' '.join(BROKER_COMMAND[1:])} exited with status {r.returncode}"
