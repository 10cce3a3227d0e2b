"""The local event source mapping can wait as AWS may on a quiet queue: with a batching window, a
partial batch may be held up to 20 s (SQS's long poll), which low_traffic_wait_s models for latency
figures; a full batch still goes at once, and by default only the window counts."""

from __future__ import annotations

import time

import pytest

from cloud import resources
from cloud.local.esm import AWS_LOW_TRAFFIC_WAIT_S, EventSourceMapping, partial_batch_wait

from waiting import wait_for


@pytest.mark.parametrize("window_s, low_traffic_wait_s, waits", [
    (1, None, 1), (1, 20, 20), (30, 20, 30), (0, 20, 0), (0, None, 0)])
def test_a_partial_batch_waits_the_window_or_the_low_traffic_worst_case(window_s, low_traffic_wait_s, waits):
    assert partial_batch_wait(window_s, low_traffic_wait_s) == waits


def test_the_worst_case_is_twenty_seconds_more_than_the_telemetry_windows_second():
    assert AWS_LOW_TRAFFIC_WAIT_S == 20.0
    window = resources.EVENT_SOURCES["telemetry"]["window_s"]
    assert partial_batch_wait(window, AWS_LOW_TRAFFIC_WAIT_S) - window == 19.0


def mapping(batches, **kw):
    return EventSourceMapping("quiet-queue", lambda ev: batches.append((time.monotonic(), ev["Records"])),
                              batch_size=10, concurrency=1, **kw).start()


def test_a_partial_batch_is_held_for_the_low_traffic_wait_and_a_full_one_is_not():
    batches = []
    esm = mapping(batches, window_s=0.1, low_traffic_wait_s=0.8)
    try:
        t0 = time.monotonic()
        esm.add("alone")
        time.sleep(0.5)
        assert batches == [], "held past its 0.1 s window"
        wait_for(lambda: batches, what="the partial batch")
        assert batches[0][0] - t0 >= 0.75
        t1 = time.monotonic()
        for i in range(10):
            esm.add("m%d" % i)
        wait_for(lambda: len(batches) == 2, what="the full batch")
        assert batches[1][0] - t1 < 0.5 and len(batches[1][1]) == 10
    finally:
        esm.stop()


def test_aws_worst_case_can_be_switched_on_and_off_on_a_running_mapping():
    batches = []
    esm = mapping(batches, window_s=0.1)
    try:
        assert esm.aws_worst_case() is esm and esm.low_traffic_wait_s == AWS_LOW_TRAFFIC_WAIT_S
        esm.add("quiet")
        time.sleep(0.4)
        assert batches == [], "the 20 s worst case holds it"
        t0 = time.monotonic()
        esm.aws_worst_case(False)
        wait_for(lambda: batches, what="the batch once only the window counts")
        assert time.monotonic() - t0 < 0.5 and esm.low_traffic_wait_s is None
    finally:
        esm.stop()
