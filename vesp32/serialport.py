"""The virtual board's USB-serial port: a pseudo-terminal whose path mpremote, ``make deploy`` and
``make console`` open as they open /dev/ttyUSB0.

Bytes written to the port go to the board process's stdin (its UART); a Ctrl-C among them is also
delivered as SIGINT, which the unix port raises as KeyboardInterrupt, as the chip's UART interrupt
does. What the board prints goes to the port while someone has it open, and is lost otherwise, as
on a USB-serial bridge with no terminal attached (a pseudo-terminal would otherwise queue it for
the next one to open it).
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty


class SerialPort:
    def __init__(self, to_board, interrupt, baud=115200):
        """to_board(bytes): the board's stdin; interrupt(): a Ctrl-C for the running program;
        baud: the UART's rate, which paces what the host sends (10 bits a byte), as the chip's
        115200 baud does: a copy takes as long as on a board. None: no pacing."""
        self._to_board = to_board
        self._byte_s = 10.0 / baud if baud else 0.0
        self._interrupt = interrupt
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)  # only the host side's users hold it open: see listening
        os.set_blocking(self._master, False)
        self.listening = False  # someone has the port open
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="vesp32-serial", daemon=True)
        self._thread.start()

    def from_board(self, data: bytes):
        """What the board printed: to whoever has the port open, else nowhere."""
        if not self.listening:
            return
        try:
            os.write(self._master, data)
        except OSError:
            pass  # nobody reads fast enough (or the port just closed): dropped, as by a UART

    def _run(self):
        m = self._master
        while not self._stop:
            try:
                ready, _, _ = select.select([m], [], [], 0.02)
            except (OSError, ValueError):
                return
            if not ready:
                self.listening = True  # with no one on the port, the master reads as hung up
                continue
            try:
                data = os.read(m, 4096)
            except BlockingIOError:
                self.listening = True
                continue
            except OSError:
                self.listening = False  # EIO: the last user closed the port
                time.sleep(0.02)
                continue
            self.listening = True
            if b"\x03" in data:
                self._interrupt()
            self._to_board(data)
            if self._byte_s:
                time.sleep(len(data) * self._byte_s)  # the wire's pace: the host waits on it

    def close(self):
        self._stop = True
        self._thread.join(1)
        try:
            os.close(self._master)
        except OSError:
            pass
