# The offline ring's bookkeeping (runs under CPython and MicroPython).
from motorguard.outbox import Outbox


def fill(box, n):
    for _ in range(n):
        box.push()


def test_batches_become_ready_when_full():
    box = Outbox(40, 10)
    fill(box, 9)
    assert box.next_batch() == -1
    fill(box, 1)
    assert box.next_batch() == 0


def test_ack_advances_and_out_of_order_acks():
    box = Outbox(40, 10)
    fill(box, 30)
    for k in (0, 1, 2):
        assert box.next_batch() == k
        box.sent(k)
    box.ack(1)
    assert box.base == 0
    box.ack(0)
    assert box.base == 2
    box.ack(2)
    box.rewind()
    assert box.base == 3 and box.next_batch() == -1  # nothing left to send again


def test_rewind_replays_unacked_in_order():
    box = Outbox(40, 10)
    fill(box, 30)
    for k in range(3):
        box.sent(k)
    box.ack(0)
    box.rewind()
    assert box.next_batch() == 1


def test_overflow_drops_oldest_and_counts():
    box = Outbox(40, 10)
    fill(box, 40)
    assert box.dropped == 0
    fill(box, 1)  # overwrites batch 0
    assert box.dropped == 10 and box.base == 1
    fill(box, 19)  # completes batch 4, overwrites batch 1
    assert box.dropped == 20 and box.next_batch() == 2


def test_late_ack_of_overwritten_batch_is_ignored():
    box = Outbox(20, 10)
    fill(box, 10)
    box.sent(0)
    fill(box, 20)  # batch 0 overwritten while in flight
    box.ack(0)
    assert box.base == 1 and box.dropped == 10


def test_capacity_rounds_up_to_whole_batches():
    assert Outbox(25, 10).capacity == 30
