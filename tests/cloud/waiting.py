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


def waited(pred, timeout=5.0, step=0.05) -> bool:
    """Whether pred() came true within timeout seconds (checked once more at the end), for an
    `assert waited(...), "what went wrong"` that says its own message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
