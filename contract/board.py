"""The board's hardware surface: the part of MicroPython's esp32 port (v1.26.1) that the firmware
calls, in its modules `machine`, `network` and `ntptime`. It is defined here once because three
stand-ins provide it and must not drift apart:

    tests/firmware/fakehw/machine.py   the logic tests' in-process fake
    vesp32/board/                      the virtual ESP32 (machine.py, network.py, ntptime.py)
    vesp32/heap32/stubs/               the heap measurement's stubs (machine.py, network.py)

tests/vesp32/test_board_surface.py holds the firmware to this list (it calls nothing else) and
every stand-in to it (each provides every name here that its module stands in for). A new hardware
call goes here first, and then into each stand-in.

module -> name -> (the members the firmware uses on it: a class's methods and constants; the
keywords it passes to its constructor). A function or a constant has neither.
"""

SURFACE = {
    "machine": {
        "Pin": (("IN", "OUT", "PULL_UP", "IRQ_FALLING", "value", "irq"), ("value",)),
        "PWM": (("duty_ns",), ("freq", "duty_u16")),
        "ADC": (("ATTN_11DB", "read_uv"), ("atten",)),
        "WDT": (("feed",), ("timeout",)),
        "reset": ((), ()),
        "reset_cause": ((), ()),
    },
    "network": {
        "WLAN": (("active", "connect", "isconnected", "status"), ()),
        "STA_IF": ((), ()),
    },
    "ntptime": {
        "settime": ((), ()),
        "host": ((), ()),
    },
}
