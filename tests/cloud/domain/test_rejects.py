"""The dead-letter envelope (cloud/domain/rejects.py): it always fits the queue and says what it kept."""

from __future__ import annotations

import hashlib

from cloud.domain import rejects


def test_the_envelope_always_fits_and_says_what_it_kept():
    for size in (0, 10, 200_000, 2_000_000):
        raw = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        body = rejects.envelope("schema: " + "\u2603" * 2000, "ingest", thing="t" * 5000, kind="telemetry",
                                received_ms=1, original=raw, max_bytes=256 * 1024)
        d = rejects.read(body)
        assert len(body.encode()) <= 256 * 1024 and body.isascii()
        assert d["payload"]["size"] == size and d["payload"]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert raw.startswith(d["payload"]["bytes"]) and d["payload"]["truncated"] == (len(d["payload"]["bytes"]) < size)
        assert size < 150_000 or len(d["payload"]["bytes"]) > 150_000, "as much as fits is kept"
