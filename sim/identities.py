"""The simulated fleet's X.509 identities, made once with the provisioning code and kept for later runs.

A fleet of N local devices is things sim-00000 .. sim-<N-1>, each with its own EC key and a certificate
from the local broker's fleet CA (provisioning/pki.py, as `provision` issues them), CN = the thing
name. They live in <ids_dir>/<CA fingerprint>/<thing>.pem (the key, then the certificate; mode 0600),
so a run against another CA never picks up certificates that CA did not sign, and a second run of
the same fleet costs nothing. Made in a process pool (one process a core): about 1.5 ms of CPU each.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import ssl
from pathlib import Path

from provisioning import pki

PREFIX = "sim-"


def thing_name(index: int, prefix: str = PREFIX) -> str:
    return "%s%05d" % (prefix, index)


def ca_dir(ids_dir, ca_cert) -> Path:
    fp = hashlib.sha256(pki.cert_bytes(pki.load_cert(ca_cert), der=True)).hexdigest()[:16]
    return Path(ids_dir) / fp


def _make_range(ca_cert, ca_key, out: str, things: list) -> int:
    from cryptography.hazmat.primitives import serialization

    out = Path(out)
    made = 0
    for thing in things:
        path = out / (thing + ".pem")
        if path.exists():
            continue
        key = pki.make_key("ec")
        cert = pki.sign_csr(ca_cert, ca_key, pki.make_csr(key, thing))
        tmp = out / (thing + ".pem.tmp")
        pki._write_private(tmp, pki.key_bytes(key) + cert.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, path)  # a run cut short never leaves half a file under the final name
        made += 1
    return made


def ensure(ids_dir, ca_cert, ca_key, count: int, prefix: str = PREFIX, processes: int | None = None) -> dict:
    """Identities sim-00000 .. for count devices under ids_dir (made where missing). Returns
    {"dir", "made", "count"}."""
    if count < 1:
        raise ValueError("a fleet needs at least one device, not %d" % count)
    out = ca_dir(ids_dir, ca_cert)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    missing = [thing_name(i, prefix) for i in range(count) if not (out / (thing_name(i, prefix) + ".pem")).exists()]
    made = 0
    if missing:
        n = processes or min(os.cpu_count() or 1, 4)
        chunks = [missing[i::n] for i in range(n)]
        if n == 1 or len(missing) < 50:
            made = _make_range(str(ca_cert), str(ca_key), str(out), missing)
        else:
            with concurrent.futures.ProcessPoolExecutor(n) as pool:
                made = sum(pool.map(_make_range, [str(ca_cert)] * n, [str(ca_key)] * n, [str(out)] * n, chunks))
    return {"dir": str(out), "made": made, "count": count}


def context(ids: Path, thing: str, ca_cert) -> ssl.SSLContext:
    """A TLS client context that presents thing's certificate and trusts the broker's CA."""
    path = Path(ids) / (thing + ".pem")
    if not path.exists():
        raise FileNotFoundError("no identity for %s in %s: make it first (python -m sim ids --devices N)" %
                                (thing, ids))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca_cert))
    ctx.load_cert_chain(str(path))
    return ctx
