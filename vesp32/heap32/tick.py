# The firmware's control tick on a 32-bit MicroPython, as vesp32/heap32 runs it (python -m
# vesp32.heap32 --tick, and tests/vesp32/test_heap32.py): the App built on the stand-in machine
# (stubs/machine.py), the motor started with the start button, then ticks counted with the
# collector off. Small ints are 31-bit here as on the ESP32, so arithmetic past 2**30 shows up as
# allocated bytes. The last chunk prints one JSON line with the figures.
import gc, sys, os, json
import asyncio, machine, network, socket, errno, array, math, time
try:
    os.urandom
except AttributeError:  # the WebAssembly port has none; the App draws 4 bytes of boot id from it
    os.urandom = lambda n: bytes(n)
_name = "base"
#STEP
from motorguard import config, controller, start

cfg = config.parse('{"thing": "tick-1", "mqtt": {"host": "broker.invalid"}}')
PINS = cfg["pins"]  # build() drops the section
board = start.build(cfg)
start.boot(board)


def ticks(n):
    # A while loop: a for over range() allocates its iterator.
    i = 0
    while i < n:
        board.tick(5)
        i += 1


ticks(20)  # the buttons seen released
machine.levels[PINS["start_button"]] = 0
ticks(10)
machine.levels[PINS["start_button"]] = 1
ticks(10)
_name = "running"
#STEP
def steady(n):
    # Locals only: a new global name would grow the module's dict and count as the tick's bytes.
    low = high = board.duty
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    i = 0
    while i < n:
        board.tick(5)
        d = board.duty
        if d < low:
            low = d
        if d > high:
            high = d
        i += 1
    used = gc.mem_alloc() - before
    gc.enable()
    return used, low, high


def changes():
    # Stop held (STOPPED), released, start again (RUNNING), then an over-current (FAULT).
    levels, adc = machine.levels, machine.adc_uv
    stop, start, current = PINS["stop_button"], PINS["start_button"], PINS["current_adc"]
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    levels[stop] = 0
    ticks(10)
    levels[stop] = 1
    ticks(10)
    levels[start] = 0
    ticks(10)
    levels[start] = 1
    ticks(10)
    adc[current] = 2200000  # ~4.3 A: past the hard limit
    ticks(5)
    used = gc.mem_alloc() - before
    gc.enable()
    return used


def old_formula():
    # The pulse as servo.py computed it before: (max - min) in ns times the position passes 2**30.
    sweep = board.sweep
    lo, span = sweep.min_ns, sweep.span_us * 1000
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    i = 0
    while i < 10:
        lo + span * 170000 // 180000
        i += 1
    used = gc.mem_alloc() - before
    gc.enable()
    return used


steady_bytes, low, high = steady(600)  # 3 s of the sweep: its direction turns at least once
running = board.ctl.state
changes_bytes = changes()
print(json.dumps({"tick_steady_bytes": steady_bytes, "ticks": 600, "state": controller.STATE_NAMES[running],
                  "pulse_low": low, "pulse_high": high, "tick_changes_bytes": changes_bytes,
                  "final_state": controller.STATE_NAMES[board.ctl.state], "old_formula_bytes": old_formula(),
                  "small_int_max": sys.maxsize}))
_name = "ticks"
