"""Polling for an asynchronous outcome in the cloud tests (the engine and Lambdas run on threads)."""

from __future__ import annotations

import time


def wait_for(pred, timeout=10, what="condition"):
    """pred()'s first truthy value within timeout seconds; otherwise an AssertionError naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("no %s within %s s" % (what, timeout))
