# The flash backlog (motorguard/backlog.py): what goes on to flash comes back as recorded, with
# its boot id and sequence numbers after a reboot; a write torn at any byte loses only what it
# was writing; a full backlog drops its oldest segment and says exactly how much.
# Runs under CPython and MicroPython (the unix port's filesystem standing in for littlefs).
import gc
import json
import os

from motorguard import backlog as bl
from motorguard import controller
from motorguard.telemetry import Clock, Samples

BOOT, LATER = "0a0b0c0d", "1f2e3d4c"
EPOCH = 1795370000


class Owner:
    """What the backlog reads of the App: its RAM ring, boot id and settings (no pacing here)."""

    def __init__(self, samples, boot_id, limit):
        self.samples, self.boot_id, self.backlog_samples, self.drain_gap_ms = samples, boot_id, limit, 0
        self.clock = Clock()


def Backlog(samples, boot_id, limit):
    return bl.Backlog(Owner(samples, boot_id, limit))


def head(boot, up):
    return b'{"v":1,"device":"m1","boot":"%s","fw":"0.1.0","uptime_s":%d,"heap_free":1000,"rssi":-50' % (boot, up)


def fresh_dir(tag):
    """A private working directory: the backlog lives in ./backlog, as on the board's flash."""
    base = "/tmp/mg-backlog-%s-%d" % (tag, int.from_bytes(os.urandom(3), "big"))
    os.mkdir(base)
    os.chdir(base)
    return base


def clock(synced=True):
    c = Clock()
    c.advance(5000)
    if synced:
        c.sync(EPOCH)
    return c


def record(samples, c, n, start=0):
    for i in range(start, start + n):
        samples.record(c, 200 + i % 50, 100 + i, (i * 7) % 1800, i % 181, controller.RUNNING if i % 2 else controller.STOPPED)
        c.advance(1000)


def expected(i):
    return (200 + i % 50, 100 + i, (i * 7) % 1800, i % 181)


class Msg:
    """What a test needs of one drained message (the whole dicts would not fit MicroPython's heap)."""

    def __init__(self, m):
        self.seq, self.boot, self.n = m["seq"], m["boot"], len(m["samples"])
        self.times = [x["time"] for x in m["samples"]]
        self.values = [(round(x["temperature_c"] * 10), round(x["current_a"] * 1000), round(x["position"] * 10),
                        x["speed"]) for x in m["samples"]]


def drain(b, c):
    """Every message the backlog gives, acknowledging each."""
    out = []
    while True:
        k = b.next_batch()
        if k < 0:
            return out
        gc.collect()  # a 3.4 KB message in one piece: the test's join, not the board's way
        out.append(Msg(json.loads(b"".join(b.pieces(k, head, c)))))
        b.ack(k)


def check_samples(msgs, first_index=0):
    i = first_index
    for m in msgs:
        for t, v in zip(m.times, m.values):
            assert v == expected(i), (i, v)
            assert t == (EPOCH + i) * 1000, (i, t)
            i += 1
    return i - first_index


def test_a_reboot_drains_what_the_last_boot_stored_with_its_boot_id_and_seq():
    fresh_dir("reboot")
    c = clock()
    s = Samples(600, 30)
    record(s, c, 95)
    b = Backlog(s, BOOT, 86400)
    b.spill(c)
    assert b.stored == 95
    assert s.box.base == 3  # three whole batches left the RAM ring; the fourth is still there
    assert s.box.next_batch() == -1  # the fourth is not whole yet
    # Power cut: a new boot, an empty ring, the same flash.
    c2 = clock()
    s2 = Samples(600, 30)
    b2 = Backlog(s2, LATER, 86400)
    assert b2.stored == 95
    msgs = drain(b2, c2)
    assert [m.seq for m in msgs] == [0, 1, 2, 3]
    assert {m.boot for m in msgs} == {BOOT}
    assert [m.n for m in msgs] == [30, 30, 30, 5]  # the last boot's unfinished batch too
    assert check_samples(msgs) == 95
    assert not b2.pending() and b2.stored == 95  # all acknowledged; deleting waits for the keeper
    b2.collect()  # (the motor is stopped)
    assert b2.stored == 0 and os.listdir(bl.DIR) == []


def test_this_boot_s_unfinished_batch_is_left_to_the_ram_ring():
    fresh_dir("same")
    c = clock()
    s = Samples(600, 30)
    record(s, c, 40)
    b = Backlog(s, BOOT, 86400)
    b.spill(c)
    msgs = drain(b, c)
    assert [m.seq for m in msgs] == [0]
    assert check_samples(msgs) == 30
    assert s.box.next_batch() == -1  # batch 1 is not whole yet: the ring sends it when it is
    record(s, c, 20, 40)
    assert s.box.next_batch() == 1


def test_no_ack_no_delete_and_a_reconnect_sends_again():
    fresh_dir("noack")
    c = clock()
    s = Samples(600, 30)
    record(s, c, 60)
    b = Backlog(s, BOOT, 86400)
    b.spill(c)
    s2 = Samples(600, 30)
    b2 = Backlog(s2, LATER, 86400)
    assert b2.next_batch() == 0 and b2.next_batch() == 1
    assert b2.next_batch() == -1  # waits for the PUBACKs
    b2.rewind()  # the link dropped
    assert [m.seq for m in drain(b2, c)] == [0, 1]
    b2.collect()
    assert b2.stored == 0


def test_a_write_torn_at_any_byte_keeps_everything_before_it():
    fresh_dir("torn")
    c = clock()
    s = Samples(600, 30)
    record(s, c, 7)
    b = Backlog(s, BOOT, 86400)
    b.spill(c)
    path = bl.DIR + "/" + os.listdir(bl.DIR)[0]
    with open(path, "rb") as f:
        whole = f.read()
    assert len(whole) == bl.HDR_SIZE + 7 * bl.ENTRY
    for cut in range(len(whole) + 1):
        with open(path, "wb") as f:
            f.write(whole[:cut])
        b2 = Backlog(Samples(600, 30), LATER, 86400)
        msgs = drain(b2, clock())
        got = sum(m.n for m in msgs)
        want = max(0, (cut - bl.HDR_SIZE) // bl.ENTRY)
        assert got == want, (cut, got, want)
        check_samples(msgs)
        if os.listdir(bl.DIR):
            os.remove(path)


def test_an_unwritten_block_is_not_read_as_samples():
    fresh_dir("zeros")
    c = clock()
    s = Samples(600, 30)
    record(s, c, 4)
    b = Backlog(s, BOOT, 86400)
    b.spill(c)
    path = bl.DIR + "/" + os.listdir(bl.DIR)[0]
    with open(path, "ab") as f:
        f.write(bytes(bl.ENTRY * 3))  # the filesystem extended the file but the data never came
    msgs = drain(Backlog(Samples(600, 30), LATER, 86400), clock())
    assert check_samples(msgs) == 4


def test_a_full_backlog_drops_its_oldest_segment_and_counts_exactly():
    fresh_dir("full")
    c = clock()
    s = Samples(200, 2)  # 2 samples a message: a segment is 64 samples
    limit = bl.SEG_BATCHES * 2  # one segment
    b = Backlog(s, BOOT, limit)
    total = 0
    for _ in range(3):
        record(s, c, 60, total)
        total += 60
        b.spill(c)
    # 180 samples in segments of 64 under a 64-sample bound: each time a new segment starts, the
    # full one before it goes; the two that went held 128 samples, all counted.
    assert b.drops == 128 and s.box.dropped == 128
    assert b.stored == 52
    msgs = drain(b, c)
    assert check_samples(msgs, 128) == 52  # the rest, from sample 128 on, all of it
    assert msgs[0].seq == 64


def test_a_gap_while_the_motor_ran_starts_a_new_segment_on_a_batch_boundary():
    fresh_dir("gap")
    c = clock()
    s = Samples(60, 30)
    b = Backlog(s, BOOT, 86400)
    record(s, c, 10)
    b.spill(c)  # 10 samples of batch 0 on flash
    record(s, c, 110, 10)  # running: the ring wraps, batches 0-1 are overwritten (and counted)
    b.spill(c)
    msgs = drain(Backlog(Samples(60, 30), LATER, 86400), c)
    seqs = [m.seq for m in msgs]
    assert seqs == sorted(set(seqs)), "a batch was sent twice under one seq"
    assert seqs[0] == 0 and msgs[0].n == 10
    assert seqs[1] == 2 and check_samples(msgs[1:], 60) == 60


def test_a_boot_that_never_learned_the_time_cannot_date_its_samples():
    fresh_dir("undated")
    c = clock(synced=False)
    s = Samples(600, 30)
    record(s, c, 30)
    Backlog(s, BOOT, 86400).spill(c)
    s2 = Samples(600, 30)
    b2 = Backlog(s2, LATER, 86400)
    assert drain(b2, clock()) == []
    b2.collect()
    assert s2.box.dropped == 30 and b2.stored == 0
