# Outbox: which records of a fixed ring have been published and acknowledged.
#
# The ring (telemetry samples or events) is the offline buffer. Records are
# grouped into fixed batches of `batch` records; batch k holds records
# k*batch .. k*batch+batch-1 and becomes message sequence number k. A batch
# leaves the outbox only when its QoS 1 PUBACK arrives, so anything unacknowledged
# is replayed in order after a reconnect. When the ring is full, the oldest
# unacknowledged batch is overwritten and counted in `dropped` (records).
#
# push() runs in the control loop: it only does integer arithmetic and writes
# into a preallocated bytearray (no allocation).


class Outbox:
    def __init__(self, capacity, batch):
        batches = (capacity + batch - 1) // batch
        self.batch = batch
        self.batches = batches
        self.capacity = batches * batch
        self.head = 0  # records written since boot
        self.base = 0  # oldest batch not yet acknowledged
        self.cursor = 0  # next batch to send on this connection
        self.dropped = 0  # records overwritten before they were acknowledged
        self._acked = bytearray(batches)

    def push(self):
        """Reserve the next record; returns its slot index in the ring."""
        h = self.head
        if h >= self.capacity:
            lost = (h - self.capacity) // self.batch
            if h % self.batch == 0 and lost >= self.base:
                # The oldest unacknowledged batch is about to be overwritten.
                self.base = lost + 1
                self.dropped += self.batch
                if self.cursor < self.base:
                    self.cursor = self.base
        if h % self.batch == 0:
            self._acked[(h // self.batch) % self.batches] = 0
        self.head = h + 1
        return h % self.capacity

    def slot(self, index):
        return index % self.capacity

    def complete(self):
        """Number of whole batches written."""
        return self.head // self.batch

    def next_batch(self):
        """The next whole batch to send on this connection, or -1."""
        if self.cursor < self.base:
            self.cursor = self.base
        if self.cursor < self.complete():
            return self.cursor
        return -1

    def sent(self, k):
        self.cursor = k + 1

    def ack(self, k):
        if k < self.base or k >= self.complete():
            return  # already acknowledged, or overwritten while in flight
        self._acked[k % self.batches] = 1
        while self.base < self.cursor and self._acked[self.base % self.batches]:
            self.base += 1

    def spill(self, index):
        """Records before index are stored elsewhere (the flash backlog): the whole batches among
        them leave the ring as if acknowledged, so their room is free and never counted dropped."""
        k = index // self.batch
        if k > self.base:
            self.base = k
            if self.cursor < k:
                self.cursor = k

    def rewind(self):
        """After a reconnect: send every unacknowledged batch again, oldest first."""
        self.cursor = self.base
