# The broker's address, looked up once per boot.
#
# A DNS lookup blocks the whole VM on the ESP32 (no task, no soft IRQ runs during it), so
# the answer is kept and reused by every (re)connect. After FORGET_AFTER failed TCP/TLS
# connects in a row the name is looked up again, in case the endpoint moved.
#
# The cache is a dict the caller keeps (MQTTClient.dns; the firmware hands every session
# the network task's one), not this module's: the module is connect-time code that the
# board drops while a session is up (net.py), and the answer must outlive it.

import socket

FORGET_AFTER = 3


def resolve(cache, host, port):
    """(ip, port) for host: from the cache (host -> [ip, port, failed connects in a row]),
    or looked up (blocking) and cached."""
    entry = cache.get(host)
    if entry is None:
        # IPv4, as the ESP32's network stack uses, so host runs connect the same way.
        sa = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][-1]
        if isinstance(sa, tuple):  # CPython and the ESP32 port: (ip, port, ...)
            entry = [sa[0], sa[1], 0]
        else:  # MicroPython's unix port returns a raw sockaddr
            fam, raw, sa_port = socket.sockaddr(sa)
            entry = [socket.inet_ntop(fam, raw), sa_port, 0]
        cache[host] = entry
    return entry[0], entry[1]


def connected(cache, host):
    entry = cache.get(host)
    if entry is not None:
        entry[2] = 0


def failed(cache, host):
    """A transport failure on the cached address; forgets it after FORGET_AFTER in a row."""
    entry = cache.get(host)
    if entry is not None:
        entry[2] += 1
        if entry[2] >= FORGET_AFTER:
            del cache[host]
