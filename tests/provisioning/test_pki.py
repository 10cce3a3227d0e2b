"""provisioning.pki: CA, device and server certificates, DER bundles and CRLs."""

from __future__ import annotations

import ipaddress
import re
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import contract
from provisioning import pki


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def is_unencrypted_pkcs8_pem(data: bytes) -> bool:
    """True when data is a private key written as unencrypted PKCS#8 PEM, byte for byte."""
    key = serialization.load_pem_private_key(data, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()) == data


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    return pki.make_ca("Test CA", d)


def test_ca_is_a_self_signed_p256_ca_with_a_private_key_file(ca):
    cert_path, key_path = ca
    cert = pki.load_cert(cert_path)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)
    assert mode(key_path) == 0o600
    assert is_unencrypted_pkcs8_pem(key_path.read_bytes())


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_csr_signed_into_a_client_cert_for_the_thing(ca, kind):
    key = pki.make_key(kind)
    assert isinstance(key, ec.EllipticCurvePrivateKey if kind == "ec" else rsa.RSAPrivateKey)
    csr = pki.make_csr(key, "motor-0001")
    cert = pki.sign_csr(*ca, csr, days=30)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "motor-0001"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(pki.load_cert(ca[0]))
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 30 <= days <= 31


@pytest.mark.parametrize("bad", ["", "has space", "slash/name", "x" * 129, "dollar$", "motor-1\n"])
def test_thing_names_follow_aws_rules(bad):
    with pytest.raises(ValueError, match=re.escape(contract.THING_NAME_RULE)):
        pki.make_csr(pki.make_key(), bad)


def test_server_cert_names_localhost_and_loopback(ca, tmp_path):
    cert_path, key_path = pki.make_server_cert(*ca, tmp_path, hostnames=["localhost", "broker.test"],
                                               ips=["127.0.0.1", "::1"])
    cert = pki.load_cert(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "broker.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert mode(key_path) == 0o600


def test_der_bundle_for_the_esp32(ca, tmp_path):
    paths = pki.issue_client(*ca, "motor-7", tmp_path)
    assert set(paths) == {"cert_der", "cert_pem", "key_der", "key_pem", "ca_der", "ca_pem"}
    assert paths["cert_der"].name == "motor-7.crt.der" and paths["ca_der"].name == "root-ca.der"
    der = pki.load_cert(paths["cert_der"])
    assert der == pki.load_cert(paths["cert_pem"])
    assert pki.load_cert(paths["ca_der"]) == pki.load_cert(ca[0])
    k_der, k_pem = pki.load_key(paths["key_der"]), pki.load_key(paths["key_pem"])
    assert k_der.private_numbers() == k_pem.private_numbers()
    assert k_der.public_key().public_numbers() == der.public_key().public_numbers()
    for k in ("key_der", "key_pem"):
        assert mode(paths[k]) == 0o600
    for k in ("cert_der", "cert_pem", "ca_der"):
        assert not paths[k].read_bytes().count(b"PRIVATE")


def test_rewriting_a_key_keeps_it_private(tmp_path):
    p = tmp_path / "k.pem"
    p.write_bytes(b"old")
    p.chmod(0o644)
    pki.write_key(p, pki.make_key())
    assert mode(p) == 0o600 and is_unencrypted_pkcs8_pem(p.read_bytes())


def test_crl_lists_revoked_serials_and_grows(ca, tmp_path):
    a = pki.sign_csr(*ca, pki.make_csr(pki.make_key(), "a"))
    b = pki.sign_csr(*ca, pki.make_csr(pki.make_key(), "b"))
    empty = x509.load_pem_x509_crl(pki.make_crl(*ca, []))
    assert len(empty) == 0 and empty.is_signature_valid(pki.load_cert(ca[0]).public_key())
    crl_path = tmp_path / "crl.pem"
    pki.revoke(*ca, crl_path, a)
    pki.revoke(*ca, crl_path, [b.serial_number])
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert {r.serial_number for r in crl} == {a.serial_number, b.serial_number}
    assert crl.is_signature_valid(pki.load_cert(ca[0]).public_key())
    assert crl.issuer == pki.load_cert(ca[0]).subject
    assert crl.next_update_utc > crl.last_update_utc
    assert pki.crl_serials(crl_path) == {a.serial_number, b.serial_number}


def test_sign_csr_refuses_a_csr_without_a_valid_thing_cn(ca):
    key = pki.make_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no cn")])).sign(key, pki.hashes.SHA256())
    with pytest.raises(ValueError):
        pki.sign_csr(*ca, csr)
