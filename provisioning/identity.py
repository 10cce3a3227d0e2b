"""A device's identity made on the host: input checks, key, CSR, and the checks on what comes back."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import contract
from contract import RESERVED_THING_NAMES
from provisioning import pki
from provisioning.errors import BAD_INPUT, SERVICE_ERROR, ProvisionError

_SSID_MAX = 32  # 802.11: an SSID is at most 32 bytes
_PSK = (8, 63)  # WPA2 passphrase length


def check_thing(name: str) -> str:
    if not contract.is_thing_name(name):
        raise ProvisionError(
            "invalid thing name %r: AWS IoT allows %s" % (name, contract.THING_NAME_RULE),
            "pick a name like motor-001",
            BAD_INPUT,
        )
    if name in RESERVED_THING_NAMES:
        # On the local broker a certificate's name is its identity: a device by this name would
        # get that service's grants (reading every device, commanding any), or be its probe.
        raise ProvisionError(
            "thing name %r is reserved: it is a service identity of the local IoT Core (%s)"
            % (name, ", ".join(RESERVED_THING_NAMES)),
            "pick a name like motor-001",
            BAD_INPUT,
        )
    return name


def check_wifi(ssid: str | None, password: str | None) -> None:
    if ssid is None:
        if password:
            raise ProvisionError("--wifi-password given without --wifi-ssid", "pass both, or neither", BAD_INPUT)
        return
    if not 1 <= len(ssid.encode()) <= _SSID_MAX:
        raise ProvisionError("Wi-Fi SSID must be 1-32 bytes", "check --wifi-ssid", BAD_INPUT)
    if password and not _PSK[0] <= len(password) <= _PSK[1]:
        raise ProvisionError(
            "Wi-Fi password must be 8-63 characters (WPA2), or empty for an open network",
            "check --wifi-password",
            BAD_INPUT,
        )


def check_key_type(kind: str) -> str:
    if kind not in ("ec", "rsa"):
        raise ProvisionError("key type must be 'ec' (P-256) or 'rsa' (2048)", "use --key-type ec", BAD_INPUT)
    return kind


def check_prefix(prefix: str, count: int) -> None:
    if count < 1 or count > 10000:
        raise ProvisionError("--count must be 1-10000", "batches larger than that: run several", BAD_INPUT)
    check_thing(batch_name(prefix, count - 1, count))


def batch_name(prefix: str, i: int, count: int) -> str:
    width = max(3, len(str(count)))
    return "%s-%0*d" % (prefix, width, i + 1)


def new_key_and_csr(thing: str, kind: str = "ec"):
    """The private key stays on this host; only the CSR goes to the signer."""
    key = pki.make_key(kind)
    return key, pki.make_csr(key, thing)


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_for_key(cert_pem: str, key) -> x509.Certificate:
    """The certificate a signer returned, refused unless it certifies our own public key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode() if isinstance(cert_pem, str) else cert_pem)
    except ValueError as e:
        raise ProvisionError("the signer returned something that is not a PEM certificate (%s)" % e,
                             "try again; if it persists, report it", SERVICE_ERROR) from None
    if public_der(cert.public_key()) != public_der(key.public_key()):
        raise ProvisionError(
            "the certificate returned for the CSR does not carry this device's public key",
            "refusing to write a bundle that cannot work; nothing was kept",
            SERVICE_ERROR,
        )
    return cert


def fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


def redact(text: str) -> str:
    """Removes anything that looks like PEM key material from text meant for a log or a terminal."""
    return re.sub(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", "[private key removed]",
                  text, flags=re.S)
