"""Test and fleet PKI helpers: a private CA, device and broker certificates, CRLs.

AWS IoT Core can sign device certificates itself (create-certificate-from-csr)
or trust a registered CA; the local broker and the tests use a CA made here.
Keys are made where they are used (a tmp dir in tests, the provisioning host
for a fleet) and written with mode 0600; nothing here prints or logs key
material. The ESP32's mbedTLS wants DER, so device credentials are written in
both DER (for the board) and PEM (for Mosquitto, paho and OpenSSL).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import contract

_SKEW = _dt.timedelta(minutes=5)  # backdate notBefore: boards and hosts disagree on the time


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# ------------------------------------------------------------------ files


def _write_private(path: Path, data: bytes) -> Path:
    """Writes a private key so it is never readable by others, not even briefly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # in case the umask was stricter than needed or odd
    return path


def _write_public(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def key_bytes(key, der: bool = False) -> bytes:
    """PKCS#8, unencrypted (mbedTLS and OpenSSL both read it)."""
    enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return key.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_bytes(cert: x509.Certificate, der: bool = False) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def write_key(path, key, der: bool = False) -> Path:
    return _write_private(path, key_bytes(key, der))


def write_cert(path, cert: x509.Certificate, der: bool = False) -> Path:
    return _write_public(path, cert_bytes(cert, der))


def load_cert(path) -> x509.Certificate:
    data = Path(path).read_bytes()
    if data.startswith(b"-----"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_key(path):
    data = Path(path).read_bytes()
    if data.startswith(b"-----"):
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


# ------------------------------------------------------------------ keys and certs


def make_key(kind: str = "ec"):
    """An EC P-256 key (small and fast on the ESP32) or RSA 2048 (what AWS makes by default)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError("key kind must be 'ec' or 'rsa'")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(common_name: str, out_dir, days: int = 3650) -> tuple[Path, Path]:
    """A self-signed EC P-256 CA. Returns (cert_path, key_path), both PEM; the key is 0600."""
    out = Path(out_dir)
    key = make_key("ec")
    name = _name(common_name)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", common_name).strip("-").lower() or "ca"
    cert_path = write_cert(out / f"{slug}.crt.pem", cert)
    key_path = write_key(out / f"{slug}.key.pem", key)
    return cert_path, key_path


def make_csr(key, thing: str) -> x509.CertificateSigningRequest:
    """A CSR whose CN is the thing name (what AWS IoT and the broker's ACL key on)."""
    if not contract.is_thing_name(thing):
        raise ValueError("thing name must be %s" % contract.THING_NAME_RULE)
    return x509.CertificateSigningRequestBuilder().subject_name(_name(thing)).sign(key, hashes.SHA256())


def _leaf_key_usage(public_key) -> x509.KeyUsage:
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(ca_cert_path, ca_key_path, subject, public_key, days, eku, sans=None) -> x509.Certificate:
    ca_cert = load_cert(ca_cert_path)
    ca_key = load_key(ca_key_path)
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def sign_csr(ca_cert_path, ca_key_path, csr: x509.CertificateSigningRequest, days: int = 365) -> x509.Certificate:
    """A client certificate (clientAuth) for the CSR's key, CN = the CSR's CN (the thing name)."""
    if not csr.is_signature_valid:
        raise ValueError("CSR signature is not valid")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not contract.is_thing_name(cns[0].value):
        raise ValueError("CSR must carry exactly one CN that is a valid thing name")
    return _issue(ca_cert_path, ca_key_path, _name(cns[0].value), csr.public_key(), days, ExtendedKeyUsageOID.CLIENT_AUTH)


def make_server_cert(
    ca_cert_path,
    ca_key_path,
    out_dir,
    hostnames=("localhost",),
    ips=("127.0.0.1",),
    days: int = 825,
    name: str = "server",
) -> tuple[Path, Path]:
    """A broker certificate (serverAuth) with DNS and IP SANs. Returns PEM (cert_path, key_path)."""
    hostnames = list(hostnames)
    key = make_key("ec")
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cn = hostnames[0] if hostnames else str(ips[0])
    cert = _issue(ca_cert_path, ca_key_path, _name(cn), key.public_key(), days, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    out = Path(out_dir)
    return write_cert(out / f"{name}.crt.pem", cert), write_key(out / f"{name}.key.pem", key)


def write_der_bundle(out_dir, name: str, cert: x509.Certificate, key=None, ca_cert_path=None) -> dict:
    """Writes cert (and key, and the CA) as DER for the ESP32 and PEM for everything else.

    Returns {"cert_der", "cert_pem", "key_der", "key_pem", "ca_der", "ca_pem"} (only those written).
    The file names match firmware config defaults: <name>.crt.der, <name>.key.der, root-ca.der.
    """
    out = Path(out_dir)
    paths = {
        "cert_der": write_cert(out / f"{name}.crt.der", cert, der=True),
        "cert_pem": write_cert(out / f"{name}.crt.pem", cert),
    }
    if key is not None:
        paths["key_der"] = write_key(out / f"{name}.key.der", key, der=True)
        paths["key_pem"] = write_key(out / f"{name}.key.pem", key)
    if ca_cert_path is not None:
        ca = load_cert(ca_cert_path)
        paths["ca_der"] = write_cert(out / "root-ca.der", ca, der=True)
        paths["ca_pem"] = write_cert(out / "root-ca.pem", ca)
    return paths


def issue_client(ca_cert_path, ca_key_path, thing: str, out_dir, kind: str = "ec", days: int = 365) -> dict:
    """Key + CSR + signed client cert in one step, written by write_der_bundle (name = thing)."""
    key = make_key(kind)
    cert = sign_csr(ca_cert_path, ca_key_path, make_csr(key, thing), days)
    return write_der_bundle(out_dir, thing, cert, key, ca_cert_path)


# ------------------------------------------------------------------ revocation


def make_crl(ca_cert_path, ca_key_path, revoked_serials=(), days: int = 30) -> bytes:
    """A PEM CRL signed by the CA listing the given serial numbers (may be empty)."""
    ca_cert = load_cert(ca_cert_path)
    ca_key = load_key(ca_key_path)
    now = _now()
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _SKEW)
        .next_update(now + _dt.timedelta(days=days))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for serial in sorted(set(revoked_serials)):
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - _SKEW).build()
        )
    crl = b.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_serials(crl_path) -> set[int]:
    path = Path(crl_path)
    if not path.exists():
        return set()
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return {r.serial_number for r in crl}


def revoke(ca_cert_path, ca_key_path, crl_path, certs) -> bytes:
    """Adds certificates (x509 objects, cert paths or serial ints) to the CRL file; returns its PEM."""
    if isinstance(certs, (str, Path, int, x509.Certificate)):
        certs = [certs]
    serials = crl_serials(crl_path)
    for c in certs:
        if isinstance(c, int):
            serials.add(c)
        elif isinstance(c, x509.Certificate):
            serials.add(c.serial_number)
        else:
            serials.add(load_cert(c).serial_number)
    pem = make_crl(ca_cert_path, ca_key_path, serials)
    _write_public(crl_path, pem)
    return pem
