"""The MicroPython .bin: FIRMWARE= as given, or the pinned release, downloaded once and checked.

A cached or downloaded file is used only when its SHA-256 equals release.SHA256; otherwise it is
deleted and the command stops. MOTORGUARD_FIRMWARE_URL and MOTORGUARD_FIRMWARE_CACHE point the
download elsewhere (a mirror, or the tests' local server); the hash check stays the same.
pin() records a file you verified as the pinned release (flashing/release.json).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from contract import exit_codes
from flashing import release, tools
from flashing.errors import FlashError

OFFLINE_HINT = ("download %s on a machine with internet access, check it (sha256sum should print %s), "
                "then pass it: FIRMWARE=path/to/%s")


def cache_dir() -> Path:
    return Path(os.environ.get("MOTORGUARD_FIRMWARE_CACHE") or tools.BUILD / "firmware")


def given(path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FlashError("firmware file %s not found" % p, "FIRMWARE= must name a MicroPython .bin for the ESP32",
                         exit_codes.BAD_INPUT)
    return p


def _download(url: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except (OSError, urllib.error.URLError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        why = getattr(e, "reason", None) or e
        raise FlashError("cannot download %s (%s)" % (url, why),
                         OFFLINE_HINT % (release.URL, release.SHA256, release.FILENAME),
                         exit_codes.DOWNLOAD_FAILED) from None
    os.replace(tmp, dest)


def pinned(url=None, sha256=None, echo=print) -> Path:
    """The pinned release, from the cache or downloaded, only if its SHA-256 matches."""
    want = release.SHA256 if sha256 is None else sha256
    if not want:
        raise FlashError("no SHA-256 is pinned for %s %s, so a download cannot be trusted"
                         % (release.BOARD, release.VERSION),
                         "pass a file you verified: FIRMWARE=path/to/%s" % release.FILENAME, exit_codes.HASH_MISMATCH)
    url = url or os.environ.get("MOTORGUARD_FIRMWARE_URL") or release.URL
    dest = cache_dir() / release.FILENAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        echo("downloading %s" % url)
        _download(url, dest)
    size = dest.stat().st_size
    if sha256 is None and release.SIZE and size != release.SIZE:
        dest.unlink()
        raise FlashError("%s has %d bytes, expected %d: a truncated or different file, deleted it"
                         % (dest.name, size, release.SIZE),
                         "run again, or pass a file you verified: FIRMWARE=path", exit_codes.HASH_MISMATCH)
    got = tools.sha256_file(dest)
    if got != want:
        dest.unlink()
        raise FlashError("%s has SHA-256 %s, expected %s: refused and deleted it" % (dest.name, got, want),
                         "a corrupted, truncated or substituted download; run again, or pass a file you "
                         "verified: FIRMWARE=path", exit_codes.HASH_MISMATCH)
    return dest


def obtain(path=None, echo=print) -> Path:
    return given(path) if path else pinned(echo=echo)
