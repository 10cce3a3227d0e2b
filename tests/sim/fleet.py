"""A simulated fleet on the local broker for the simulator's tests: per-device identities and
sessions (fleet), run on threads and stopped with a drain (running)."""

from __future__ import annotations

import contextlib
import threading
import types

from sim import identities
from sim.device import Device
from sim.session import Session


def fleet(broker, tmp_path, n, settings, counters):
    """(identities, sessions) of n devices, each with its own certificate, counting into counters."""
    ids = identities.ensure(tmp_path / "ids", broker.ca_cert, broker.ca_key, n)
    sessions = []
    for i in range(n):
        thing = identities.thing_name(i)
        sessions.append(Session(Device(thing, settings, counters, seed=i), broker.host, broker.port,
                                lambda thing=thing: identities.context(ids["dir"], thing, broker.ca_cert)))
    return ids, sessions


@contextlib.contextmanager
def running(sessions, drain_s):
    """The sessions, each on its thread, while the block runs; then stopped, woken and joined, and
    each given drain_s to send what it holds. The yielded namespace's .left is then how many
    messages were still unacknowledged."""
    result = types.SimpleNamespace(left=None)
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in sessions]
    for t in threads:
        t.start()
    try:
        yield result
    finally:
        stop.set()
        for s in sessions:
            s.wake.set()
        for t in threads:
            t.join(5)
        result.left = sum(s.finish(drain_s=drain_s) for s in sessions)
