"""Virtual ESP32: the unchanged MotorGuard firmware under the real MicroPython unix
interpreter, with a simulated board (machine, network, ntptime), a plant model and a
CPython harness. See docs/virtual-esp32.md.

    from vesp32 import VirtualESP32, NetProxy
"""

from vesp32.harness import VirtualESP32  # noqa: F401
from vesp32.netproxy import NetProxy  # noqa: F401

__all__ = ["VirtualESP32", "NetProxy"]
