"""Fixtures for the provisioning CLI: a moto server (AWS IoT's registry over real HTTP) and a
local home with a running broker."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from provisioning import local as localb
from provisioning import pki
from provisioning.broker import free_port


@pytest.fixture(scope="session")
def moto_url():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield "http://127.0.0.1:%d" % port
    server.stop()


@pytest.fixture
def aws_env(moto_url, monkeypatch):
    """boto3 pointed at the moto server with throwaway credentials; every test starts from an empty account."""
    import requests

    requests.post(moto_url + "/moto-api/reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_url


@pytest.fixture
def signing_ca(tmp_path):
    return pki.make_ca("Test Amazon Stand-in CA", tmp_path / "amazon-ca")


@pytest.fixture
def aws_session(aws_env, signing_ca):
    """A boto3 session whose CreateCertificateFromCsr answers carry a certificate for OUR key.

    moto signs a fresh RSA key of its own instead of the CSR's (see shared/FACTS.md), which the
    provisioning code rightly refuses. Real AWS IoT signs the CSR's key; this hook makes the test
    account do the same, so the product's public-key check stays exactly as strict as in production
    (test_moto_certificate_for_another_key_is_refused proves it refuses moto's answer as is)."""
    import boto3
    from cryptography import x509

    session = boto3.Session()
    ca_cert, ca_key = signing_ca

    def keep_csr(params, context, **kw):
        context["csr"] = params["certificateSigningRequest"]

    def sign_our_key(parsed, context, **kw):
        csr = x509.load_pem_x509_csr(context["csr"].encode())
        parsed["certificatePem"] = pki.cert_bytes(pki.sign_csr(ca_cert, ca_key, csr)).decode()

    session.events.register("provide-client-params.iot.CreateCertificateFromCsr", keep_csr)
    session.events.register("after-call.iot.CreateCertificateFromCsr", sign_our_key)
    return session


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("MOTORGUARD_HOME", str(h))
    return h


@pytest.fixture
def local_broker(home):
    localb.ca_init(home, free_port())
    b = localb.broker_start(home)
    yield b
    b.stop()


@pytest.fixture
def cli():
    from provisioning.cli import main

    runner = CliRunner()

    def run(*args, env=None):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run
