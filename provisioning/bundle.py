"""The device bundle: what goes onto the board's flash, written atomically, and copied with mpremote.

    config.json       the firmware's config (thing, Wi-Fi, broker); read over DEFAULTS
    device.crt.der    the device certificate (DER: what mbedTLS on the ESP32 loads)
    device.key.der    the private key, mode 0600
    root-ca.der       the CA that signed the broker's certificate
    device.crt.pem, device.key.pem (0600), root-ca.pem: the same for host tools (provision check)

The four board files and their names are the fleet contract's (contract.BOARD_FILES): the firmware's
config defaults name the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509

import boardlink
from contract import BOARD_FILES, CONFIG_FILE, DEVICE_CERT, DEVICE_KEY, ROOT_CA
from contract.exit_codes import NOT_ONLINE
from provisioning import pki
from provisioning.errors import ProvisionError

DEVICE_CERT_PEM, DEVICE_KEY_PEM, ROOT_CA_PEM = "device.crt.pem", "device.key.pem", "root-ca.pem"  # host tools'
KEY_FILES = (DEVICE_KEY, DEVICE_KEY_PEM)


def device_config(thing: str, host: str, port: int, wifi_ssid=None, wifi_password=None, remote_start=False) -> dict:
    cfg = {"thing": thing, "mqtt": {"host": host, "port": int(port)}}
    if wifi_ssid is not None:
        cfg["wifi"] = {"ssid": wifi_ssid, "password": wifi_password or ""}
    # The firmware refuses remote starts unless told otherwise (fail safe): only an explicit
    # choice at provisioning time (provision device --remote-start) writes the override.
    if remote_start:
        cfg["control"] = {"remote_start_enabled": True}
    return cfg


def write(out_dir, cfg: dict, cert: x509.Certificate, key, ca_pem: bytes) -> Path:
    """Writes the whole bundle next to out_dir and renames it into place: never half a bundle."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        pki.write_cert(tmp / DEVICE_CERT, cert, der=True)
        pki.write_cert(tmp / DEVICE_CERT_PEM, cert)
        pki.write_key(tmp / DEVICE_KEY, key, der=True)
        pki.write_key(tmp / DEVICE_KEY_PEM, key)
        pki.write_cert(tmp / ROOT_CA, ca, der=True)
        pki.write_cert(tmp / ROOT_CA_PEM, ca)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


ALL_FILES = BOARD_FILES + (DEVICE_CERT_PEM, DEVICE_KEY_PEM, ROOT_CA_PEM)


def install(new_dir, bundle_dir) -> Path:
    """Puts a staged bundle's files into bundle_dir file by file, keeping the directory itself.

    The directory stays because it may be a running virtual ESP32's flash (its working dir).
    The files it replaces are kept in <bundle_dir>.prev until commit() or restore().
    """
    new, cur = Path(new_dir), Path(bundle_dir)
    prev = cur.with_name(cur.name + ".prev")
    if not prev.exists():  # a second install keeps the first backup: that is the live identity
        tmp = prev.with_name(prev.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700, parents=True)
        for name in ALL_FILES:
            if (cur / name).exists():
                _copy_file(cur / name, tmp / name)
        os.replace(tmp, prev)
    for name in ALL_FILES:
        _replace_file(new / name, cur / name)
    return cur


def _copy_file(src: Path, dst: Path) -> None:
    """Copies with the source's mode from the first byte on: a key file is never readable by others."""
    mode = src.stat().st_mode & 0o777
    dst.unlink(missing_ok=True)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
    os.chmod(dst, mode)


def _replace_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".new")
    _copy_file(src, tmp)
    os.replace(tmp, dst)


def restore(bundle_dir) -> bool:
    """Undoes install(): the previous files back in place. False if there was nothing to restore."""
    cur = Path(bundle_dir)
    prev = cur.with_name(cur.name + ".prev")
    if not prev.exists():
        return False
    for name in ALL_FILES:
        if (prev / name).exists():
            _replace_file(prev / name, cur / name)
    shutil.rmtree(prev)
    return True


def installed(bundle_dir, new_dir) -> bool:
    """True when bundle_dir already holds new_dir's certificate."""
    a, b = Path(bundle_dir) / DEVICE_CERT, Path(new_dir) / DEVICE_CERT
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


def complete(out_dir) -> bool:
    out = Path(out_dir)
    return all((out / f).is_file() for f in ALL_FILES)


def sha256s(out_dir, names=BOARD_FILES) -> dict:
    return {n: hashlib.sha256((Path(out_dir) / n).read_bytes()).hexdigest() for n in names}


# ------------------------------------------------------------------ onto the board


def mpremote_cmd() -> list[str]:
    """boardlink's mpremote, as a ProvisionError when it is missing."""
    try:
        return [boardlink.mpremote_path()]
    except boardlink.BoardError as e:
        raise ProvisionError(e.message, e.hint, e.code) from None


def check_port(port: str) -> None:
    """boardlink.check_port, as a ProvisionError: the same checks and exit codes as the board tools'."""
    try:
        boardlink.check_port(port, "provision")
    except boardlink.BoardError as e:
        raise ProvisionError(e.message, e.hint, e.code) from None


# The board tools' command line (flashing/__main__.py): how provisioning puts a bundle onto a board,
# instead of importing them (docs/architecture.md, the doors that are not imports). A board that runs
# MotorGuard has armed a watchdog that no soft reset stops, so the copy goes through the board tools'
# maintenance mode (docs/flashing.md, Deploy), never through a plain mpremote copy.
FLASHING_COMMAND = (sys.executable, "-m", "flashing")
PUSH_TIMEOUT_S = 90


def push(out_dir, port: str, timeout_s: float = PUSH_TIMEOUT_S) -> dict:
    """Copies the bundle's board files onto the board through maintenance mode, each checked by
    SHA-256 on the board, then hard-resets it and follows its console: returns the files' hashes and
    "online" (True once the firmware reports it is online; False when it did not within timeout_s or
    runs in offline mode). Raises ProvisionError with the board tools' own message and exit code."""
    out = Path(out_dir)
    r = subprocess.run([*FLASHING_COMMAND, "deploy", "--port", port, "--bundle", str(out), "--bundle-only",
                        "--timeout", str(timeout_s)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout_s + 240)
    if r.returncode not in (0, NOT_ONLINE):
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        message = next((ln[len("error: "):] for ln in lines if ln.startswith("error: ")), lines[-1] if lines else
                       "python -m flashing deploy exited with status %d" % r.returncode)
        hint = next((ln[len("hint: "):] for ln in lines if ln.startswith("hint: ")), "")
        raise ProvisionError(message, hint, r.returncode)
    return dict(sha256s(out), online=r.returncode == 0 and "the device is online" in r.stdout)
