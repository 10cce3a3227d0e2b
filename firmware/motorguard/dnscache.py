# The broker's address, looked up once per boot.
#
# A DNS lookup blocks the whole VM on the ESP32 (no task, no soft IRQ runs during it), so
# the answer is kept and reused by every (re)connect. After FORGET_AFTER failed TCP/TLS
# connects in a row the name is looked up again, in case the endpoint moved.

import socket

FORGET_AFTER = 3
_addresses = {}  # host -> (ip literal, port)
_failures = {}  # host -> failed connects in a row


def cached(host):
    return host in _addresses


def resolve(host, port):
    """(ip, port) for host: from the cache, or looked up (blocking) and cached."""
    addr = _addresses.get(host)
    if addr is None:
        # IPv4, as the ESP32's network stack uses, so host runs connect the same way.
        sa = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][-1]
        if isinstance(sa, tuple):  # CPython and the ESP32 port: (ip, port, ...)
            addr = (sa[0], sa[1])
        else:  # MicroPython's unix port returns a raw sockaddr
            fam, raw, sa_port = socket.sockaddr(sa)
            addr = (socket.inet_ntop(fam, raw), sa_port)
        _addresses[host] = addr
    return addr


def connected(host):
    _failures[host] = 0


def failed(host):
    """A transport failure on the cached address; forgets it after FORGET_AFTER in a row."""
    n = _failures.get(host, 0) + 1
    _failures[host] = n
    if n >= FORGET_AFTER:
        _addresses.pop(host, None)
        _failures[host] = 0


def clear():
    _addresses.clear()
    _failures.clear()
