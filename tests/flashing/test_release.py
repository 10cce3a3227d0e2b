"""The pinned MicroPython release: the download served over HTTP and checked against its SHA-256,
and the pin kept as data the module reads."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contract import exit_codes
from flashing import firmware, image, release
from flashing.errors import FlashError

from flashing_cli import ROOT, cli, stand_in_firmware


# ------------------------------------------------------------------ the pinned release


def test_the_release_is_pinned_in_one_place():
    assert len(release.SHA256) == 64 and int(release.SHA256, 16) >= 0
    assert release.SIZE > 1_000_000 and release.SHA256_SOURCE
    assert release.URL.endswith("/" + release.FILENAME) and release.VERSION in release.FILENAME
    # the offline hint tells a user what sha256sum must print
    with pytest.raises(FlashError) as e:
        firmware._download("http://127.0.0.1:9/" + release.FILENAME, Path("/nonexistent/x"))
    assert release.SHA256 in e.value.hint and "FIRMWARE=" in e.value.hint and e.value.code == exit_codes.DOWNLOAD_FAILED


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local HTTP server with a file named like the release, and an empty download cache."""
    site = tmp_path / "site"
    site.mkdir()
    body = b"pretend micropython" * 100
    (site / release.FILENAME).write_bytes(body)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOTORGUARD_FIRMWARE_CACHE", str(cache))

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(site), **kw)

        def log_message(self, *_):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/%s" % (httpd.server_address[1], release.FILENAME), body, cache
    httpd.shutdown()


def test_download_with_matching_hash_is_kept_and_reused(served):
    url, body, cache = served
    got = firmware.pinned(url=url, sha256=hashlib.sha256(body).hexdigest(), echo=lambda *_: None)
    assert got == cache / release.FILENAME and got.read_bytes() == body
    # cached: a second call does not need the server
    again = firmware.pinned(url="http://127.0.0.1:9/gone", sha256=hashlib.sha256(body).hexdigest(),
                            echo=lambda *_: None)
    assert again == got


def test_download_with_wrong_hash_is_refused_and_deleted(served):
    url, _, cache = served
    with pytest.raises(FlashError) as e:
        firmware.pinned(url=url, sha256="0" * 64, echo=lambda *_: None)
    assert e.value.code == exit_codes.HASH_MISMATCH and "deleted" in e.value.message
    assert not list(cache.glob("*"))


def test_the_real_pin_refuses_a_file_of_the_wrong_size_through_the_cli(served, tmp_path):
    url, _, cache = served
    r = cli("flash", "--port", "/dev/null", env={"MOTORGUARD_FIRMWARE_URL": url,
                                                  "MOTORGUARD_FIRMWARE_CACHE": str(cache)})
    assert r.returncode == exit_codes.HASH_MISMATCH and "bytes, expected %d" % release.SIZE in r.stderr
    assert not list(cache.glob("*.bin"))


def test_download_impossible_names_the_offline_route(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTORGUARD_FIRMWARE_CACHE", str(tmp_path))
    r = cli("flash", "--port", "/dev/null", env={"MOTORGUARD_FIRMWARE_URL": "http://127.0.0.1:9/x.bin",
                                                  "MOTORGUARD_FIRMWARE_CACHE": str(tmp_path)})
    assert r.returncode == exit_codes.DOWNLOAD_FAILED and "FIRMWARE=" in r.stderr and "cannot download" in r.stderr


def test_the_pinned_release_is_data_the_module_reads():
    pinned = json.loads((ROOT / "flashing" / "release.json").read_text())
    assert (release.VERSION, release.BOARD, release.FILENAME, release.URL, release.SIZE, release.SHA256,
            release.SHA256_SOURCE) == tuple(pinned[f] for f in release.FIELDS)


def test_pin_rewrites_hash_and_size_in_the_data_file(tmp_path):
    data = tmp_path / "release.json"
    shutil.copyfile(release.PINNED, data)
    before = release.load(data)
    fw = stand_in_firmware(tmp_path / "fw.bin")
    digest, size = image.pin(fw, data)
    assert digest == hashlib.sha256(fw.read_bytes()).hexdigest() and size == fw.stat().st_size
    after = release.load(data)
    assert (after["sha256"], after["size"]) == (digest, size)
    assert {k: v for k, v in after.items() if k not in ("sha256", "size")} == \
        {k: v for k, v in before.items() if k not in ("sha256", "size")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin", "release.json"]  # no leftover temp file


def test_pin_refuses_a_file_with_another_layout_and_keeps_the_pin(tmp_path):
    data = tmp_path / "release.json"
    shutil.copyfile(release.PINNED, data)
    with pytest.raises(FlashError, match="end at 0x180000") as e:
        image.pin(stand_in_firmware(tmp_path / "fw.bin", end=0x180000), data)
    assert e.value.code == exit_codes.BAD_INPUT
    assert data.read_bytes() == release.PINNED.read_bytes()
