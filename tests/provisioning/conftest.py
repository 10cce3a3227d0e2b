"""Fixtures for the provisioning CLI: a moto server (AWS IoT's registry over real HTTP), a local
home with a running broker, and `provision` itself, run in-process through its main(argv)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from provisioning import local, pki
from cloud.local import moto_env
from cloud.local.broker import free_port


@pytest.fixture(scope="session")
def moto_url():
    server = moto_env.MotoServer().start(provision=False)
    yield server.url
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

    moto signs a fresh RSA key of its own instead of the CSR's, which the
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
    local.ca_init(home, free_port())
    b = local.broker_start(home)
    yield b
    b.stop()


@dataclass
class Run:
    """One `provision` run: its exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """provision ARGS..., as the console script runs it (argparse's own exit for a malformed command
    line included); env: variables set for this run only."""
    from provisioning.cli import main

    def run(*args, env=None):
        capsys.readouterr()  # what came before is not this run's output
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run
