"""Several gateway processes on one port, for fleets larger than one process's open files allow.

A device costs the gateway two descriptors (its TLS socket and its unix socket to Mosquitto), so a
process whose hard open-file limit is 20,000 holds under 10,000 devices, and a container may forbid
raising it. With --workers N the gateway forks N processes that listen on the same port
(SO_REUSEPORT: the kernel spreads new connections over them). Two things must still behave as one
gateway, and go over a unix datagram socket each worker binds next to Mosquitto's socket:

- a takeover: a new session of a client id that another worker holds ends the old one as
  DUPLICATE_CLIENTID. The new session sends its notice before it connects to Mosquitto, and a session
  whose upstream closes reads any pending notices before it names its reason, so the old session can
  never see Mosquitto's own takeover first and call it something else;
- the lifecycle events: Mosquitto names a client by its user name, so the gateway has one events
  client; workers other than 0 hand their events to worker 0, which publishes them.

Worker 0 is the process cloud.local.broker started: it forwards SIGHUP (each worker reloads and logs
it) and SIGTERM to the others, which also end when it dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
from pathlib import Path

TAKEOVER = b"T"  # + the client id
EVENT = b"E"  # + a lifecycle event's PUBLISH packet, for worker 0
_PR_SET_PDEATHSIG = 1
RESEND_S = 0.05  # a datagram the receiver had no room for is tried again this much later


def fork_workers(count: int) -> tuple[int, list[int]]:
    """Forks count - 1 copies of this process before any event loop exists: (this process's index,
    the children's pids, which only worker 0 knows)."""
    children = []
    for index in range(1, count):
        pid = os.fork()
        if pid == 0:
            try:
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            except (OSError, AttributeError):
                pass  # not Linux: the children then outlive a killed worker 0 until stopped
            return index, []
        children.append(pid)
    return 0, children


def forward(children: list[int], sig: int):
    for pid in children:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def reap(children: list[int]):
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


class Siblings:
    """This worker's end of the datagram channel between the gateway's processes."""

    def __init__(self, directory: Path, index: int, count: int, on_takeover, on_event, log):
        self.index, self.count = index, count
        self.paths = [str(Path(directory) / ("gw-%d.sock" % i)) for i in range(count)]
        self.on_takeover, self.on_event, self.log = on_takeover, on_event, log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        Path(self.paths[index]).unlink(missing_ok=True)
        self.sock.bind(self.paths[index])
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.read_pending)

    def takeover(self, client_id: str):
        """Tells every other worker that client_id now belongs to a new session here."""
        msg = TAKEOVER + client_id.encode()
        for i in range(self.count):
            if i != self.index:
                self.send(i, msg)

    def event(self, packet: bytes):
        self.send(0, EVENT + packet)

    def send(self, to: int, msg: bytes, tries: int = 40):
        try:
            self.sock.sendto(msg, self.paths[to])
        except BlockingIOError:
            if tries:
                asyncio.get_running_loop().call_later(RESEND_S, self.send, to, msg, tries - 1)
            else:
                self.log("gateway worker %d: worker %d has no room for a message; dropped" % (self.index, to))
        except (FileNotFoundError, ConnectionRefusedError):
            self.log("gateway worker %d: worker %d is not listening; a message to it was dropped" % (self.index, to))

    def read_pending(self):
        """Handles every datagram waiting now (also called, synchronously, before a session decides why
        its upstream closed)."""
        while True:
            try:
                msg = self.sock.recv(65536)
            except BlockingIOError:
                return
            if msg[:1] == TAKEOVER:
                self.on_takeover(msg[1:].decode())
            elif msg[:1] == EVENT:
                self.on_event(msg[1:])

    def close(self):
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        Path(self.paths[self.index]).unlink(missing_ok=True)
