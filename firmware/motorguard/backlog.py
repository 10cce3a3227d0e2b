# Store and forward: the telemetry backlog on flash.
#
# While the board is offline with the motor stopped, every sample the RAM ring holds is
# appended to a segment file in /backlog (littlefs on the board), about once a second. A
# running board writes nothing (a flash write stalls the whole chip for milliseconds, an
# erase for tens of them): its samples wait in the RAM ring and move here at the next stop.
# A batch that is whole on flash leaves the RAM ring (Outbox.spill), so the ring's room
# is free again. Back online, the backlog drains oldest first, paced, after the events and
# before the RAM ring. A segment whose batches were all acknowledged is deleted at the next
# moment the motor is stopped (a delete writes flash too), never before.
#
# Layout (docs/store-and-forward.md): a segment is one boot's run of consecutive samples,
# at most SEG_BATCHES batches, starting on a batch boundary, in a file named by a counter.
#   header, 26 bytes: b"MGB1", boot id (4 bytes), epoch at boot (s, 0 = not known yet),
#                     first sample index, base uptime (s), dropped so far, batch size
#   entry, 12 bytes:  uptime - base (s, u16), uptime ms (u16), temperature (0.1 C, i16),
#                     current (mA, i16), position|state (u16), speed (u8), check (u8)
# A write cut by a power loss leaves at most a short or unchecked last entry: a reader stops
# at the first entry whose length or check is wrong, so what was stored before it is intact
# and no wrong sample is ever read. littlefs itself drops a write that was not closed.
#
# Sample index i of a boot belongs to batch i // batch, whose message has seq i // batch and
# the boot's id: a batch drained after a reboot keeps both, so the cloud stores it once.

import os
import struct

from motorguard import controller
from motorguard.base import const, forget, log
from motorguard.telemetry import BACKLOG_DIR as DIR
_MAGIC = b"MGB1"
_HDR = "<4s4sIIIIH"
HDR_SIZE = const(26)
ENTRY = const(12)
_ENT = "<HHhhHB"
SEG_BATCHES = const(32)  # a segment holds at most this many batches (11.5 KB at 30 samples)


def _check(buf, at):
    c = 0x5A  # an all-zero entry (a block the filesystem had not written yet) fails the check
    for j in range(at, at + ENTRY - 1):
        c += buf[j]
    return c & 0xFF


def _path(n):
    return "%s/%08d" % (DIR, n)


def keep(app):
    """One round of net.keep_backlog: with the motor off, offline, what the RAM ring took since
    goes on to flash, and the segments drained since are deleted. Never a write while the motor
    runs (a flash write or erase stalls the whole chip); nothing here awaits, so no start can come
    in between the check and the write. Once drained and deleted, the backlog leaves the heap."""
    b = app.backlog
    try:
        if b is None:
            b = app.backlog = Backlog(app)
        if app.ctl.state != controller.RUNNING:
            if not app.online:
                b.spill(app.clock)
            b.collect()
    except OSError as e:  # a full or failing flash: the samples stay in the RAM ring
        log("BACKLOG", "error", repr(e))
        return
    if b.drops:
        log("BACKLOG", "dropped=%d" % b.drops)
        app._event(controller.EV_BACKLOG_DROPPED, b"%d samples" % b.drops)
        b.drops = 0
    if app.online and not b.pending() and not b.stored:
        app.backlog = None
        log("BACKLOG", "drained")
        forget("motorguard.backlog")


class Backlog:
    """The segments on flash, this boot's write cursor and the drain cursor. Few methods on
    purpose: on the board each costs heap for as long as there is a backlog."""

    def __init__(self, app):
        samples = self.samples = app.samples
        self.box = self  # the publisher acknowledges through ring.box.ack(k), as for a RAM ring
        self.dropped = 0  # (the publisher's renderer reads ring.box.dropped; a segment has its own)
        self.batch = samples.box.batch
        # An entry's uptime - base must fit in a u16: a segment is closed one batch before that
        # (a batch spans at most batch x 66 s: telemetry.MAX_GAP_MS between two samples).
        self.span = 65535 - self.batch * 66
        self.boot = int(app.boot_id, 16).to_bytes(4, "big")
        self.limit = app.backlog_samples  # samples at most; past it the oldest segment goes, counted
        self.gap_ms = app.drain_gap_ms  # between two drained messages: AWS IoT Core's publish limit
        self.clock = app.clock
        self.drain_at = 0  # uptime ms before which no drained message goes
        self.buf = bytearray(self.batch * ENTRY)
        self.hdr = bytearray(HDR_SIZE)
        self.first = self.next = self.done = 0  # files first..next-1; those before done are drained
        self.stored = 0  # samples in them
        self.written = 0  # this boot: samples index < written are on flash (or dropped)
        self.w_seg = -1  # the segment this boot appends to, or -1
        self.w_count = self.w_base = 0
        self.drops = 0  # samples dropped for room, not yet reported as an event
        self.rewind()
        try:
            names = [int(n) for n in os.listdir(DIR) if n.isdigit()]
        except OSError:
            os.mkdir(DIR)
            names = []
        if names:
            self.first = self.done = min(names)
            self.next = max(names) + 1
            for n in names:
                size = os.stat(_path(n))[6]
                if size < HDR_SIZE:
                    os.remove(_path(n))  # a header the power cut tore: it held no sample
                else:
                    self.stored += (size - HDR_SIZE) // ENTRY
        log("BACKLOG", "stored=%d" % self.stored)

    # --- writing: offline, motor stopped -------------------------------
    def spill(self, clock):
        """Appends what the RAM ring holds beyond what is on flash, a batch's worth per write."""
        s = self.samples
        box = s.box
        B = self.batch
        i = self.written
        if i < box.base * B:
            i = box.base * B  # the ring overwrote samples while the motor ran: a gap, counted there
            self.w_seg = -1
        end = box.head
        buf = self.buf
        while i < end:
            n = B - i % B
            if n > end - i:
                n = end - i
            m = -(i % B)  # the ring decodes a batch from its start
            for up, ms, temp, cur, ps, speed in s.rows(i // B, i % B + n):
                if m == 0 and (self.w_seg < 0 or (i % B == 0 and (self.w_count >= SEG_BATCHES * B or up - self.w_base > self.span))):
                    # A new segment: at a batch boundary once this boot has one, so no batch is split
                    # between two files; the first of a boot, or after a gap, starts where the ring does.
                    self.w_seg, self.w_count, self.w_base = self.next, 0, up
                    self.next += 1
                    self.d_seg = -1  # the header buffer now holds this one's: a drain reads its own again
                    struct.pack_into(_HDR, self.hdr, 0, _MAGIC, self.boot, clock.epoch_at_boot, i, up, box.dropped, B)
                    with open(_path(self.w_seg), "wb") as f:
                        f.write(self.hdr)
                if m >= 0:
                    at = m * ENTRY
                    struct.pack_into(_ENT, buf, at, up - self.w_base, ms, temp, cur, ps, speed)
                    buf[at + ENTRY - 1] = _check(buf, at)
                m += 1
            with open(_path(self.w_seg), "ab") as f:
                f.write(memoryview(buf)[: n * ENTRY])
            self.w_count += n
            self.stored += n
            i += n
        self.written = i
        box.spill(i)
        # Bounded: the oldest segment goes (not the one being written); unsent samples are counted.
        while self.stored > self.limit and self.first < self.next and self.first != self.w_seg:
            lost = self._remove()
            if self.first > self.done:
                self.done = self.first
                box.dropped += lost
                self.drops += lost
                self.rewind()

    def collect(self):
        """Deletes the segments whose batches were all acknowledged. Motor stopped only (a delete
        writes flash): the keeper calls it."""
        while self.first < self.done:
            self._remove()

    def _remove(self):
        """Deletes the oldest segment; returns the samples it held."""
        path = _path(self.first)
        self.first += 1
        try:
            lost = (os.stat(path)[6] - HDR_SIZE) // ENTRY
            os.remove(path)
        except OSError:
            lost = 0
        self.stored -= lost
        return lost

    # --- draining: online ----------------------------------------------
    def rewind(self):
        """After a (re)connect: drain again from the oldest segment not finished; what was sent and
        not acknowledged goes again (the cloud stores a batch once)."""
        self.d_seg = -1  # the segment being drained
        self.d_next = self.d_end = self.d_sent = self.d_acked = 0

    def pending(self):
        """Batches not yet acknowledged are on flash (the publisher drains before the RAM ring)."""
        return self.done < self.next

    def next_batch(self):
        """The batch number to publish next from the segment being drained, or -1. A segment is
        done once all its batches were acknowledged. Called only while online."""
        now = self.clock.up_s * 1000 + self.clock.up_ms  # network task: a big int is fine here
        if now < self.drain_at:
            return -1  # paced
        box = self.samples.box
        B = self.batch
        while self.done < self.next:
            if self.d_seg != self.done and not self._start(self.done):
                continue
            if self.d_next < self.d_end:
                k = self.d_next
                self.d_next = k + 1
                lo, hi = k * B, k * B + B
                first, end = self.d_first, self.d_first + self.d_count
                if bytes(self.hdr[4:8]) == self.boot:
                    if hi > end and k >= box.base:
                        continue  # this boot's batch not whole on flash: still the RAM ring's to send
                elif not struct.unpack_from("<I", self.hdr, 8)[0]:
                    box.dropped += (hi if hi < end else end) - (lo if lo > first else first)
                    continue  # a boot that never learned the time: its samples cannot be dated
                self.d_sent += 1
                self.drain_at = now + self.gap_ms
                return k
            if self.d_acked < self.d_sent:
                return -1  # wait for the last PUBACKs of this segment
            # Done. This boot's open segment too: its unfinished last batch is still in the RAM
            # ring, and the next outage writes a new file.
            self._finish(self.done)
        return -1

    def _start(self, n):
        """Reads segment n's header and counts its valid entries; False if it cannot be read.
        Appends tear only at the end, so the last valid entry is looked for from there, a batch's
        worth at a time: checking a whole segment (11 KB) would hold the control loop up."""
        count = -1
        path = _path(n)
        try:
            with open(path, "rb") as f:
                f.readinto(self.hdr)
                count = (os.stat(path)[6] - HDR_SIZE) // ENTRY
                buf = self.buf
                per = len(buf) // ENTRY
                while count > 0:
                    at = count - per if count > per else 0
                    f.seek(HDR_SIZE + at * ENTRY)
                    f.readinto(buf)
                    m = count - at
                    while m and buf[m * ENTRY - 1] != _check(buf, (m - 1) * ENTRY):
                        m -= 1  # a torn or never written entry
                    count = at + m
                    if m:
                        break
        except OSError:
            count = -1
        if count < 0 or bytes(self.hdr[:4]) != _MAGIC:
            self._finish(n)  # unreadable: nothing in it can be sent
            return False
        first = struct.unpack_from("<I", self.hdr, 12)[0]
        self.d_seg, self.d_count, self.d_first = n, count, first
        self.d_next = first // self.batch
        self.d_end = (first + count + self.batch - 1) // self.batch
        self.d_sent = self.d_acked = 0
        return True

    def _finish(self, n):
        """Segment n needs nothing more but deleting."""
        self.done = n + 1
        if n == self.w_seg:
            self.w_seg = -1
        self.rewind()

    def sent(self, k):
        pass  # next_batch() moved the cursor already

    def ack(self, k):
        self.d_acked += 1

    def pieces(self, k, head_fn, clock):
        """The telemetry message of batch k of the segment being drained: head_fn(boot id bytes,
        uptime s) gives the head; samples are read from the file at each (re)send."""
        from motorguard import telemetry

        if self.d_seg < 0:
            raise telemetry.Overwritten(k)
        hdr = self.hdr
        epoch = struct.unpack_from("<I", hdr, 8)[0]
        if bytes(hdr[4:8]) == self.boot or not epoch:
            epoch = clock.epoch_at_boot
        base, dropped = struct.unpack_from("<II", hdr, 16)
        lo = k * self.batch
        hi = lo + self.batch
        first, end = self.d_first, self.d_first + self.d_count
        lo, hi = (lo if lo > first else first), (hi if hi < end else end)
        buf = self.buf
        with open(_path(self.d_seg), "rb") as f:
            f.seek(HDR_SIZE + (lo - first) * ENTRY)
            f.readinto(buf)
        yield head_fn(b"%08x" % int.from_bytes(hdr[4:8], "big"), base + struct.unpack_from("<H", buf, (hi - lo - 1) * ENTRY)[0])
        yield b',"seq":%d,"dropped":%d,"samples":[' % (k, dropped)
        for m in range(hi - lo):
            dt, ms, temp, cur, ps, speed = struct.unpack_from(_ENT, buf, m * ENTRY)
            yield telemetry.sample_json(m, epoch + base + dt, ms, temp, cur, ps, speed)
        yield b"]}"
