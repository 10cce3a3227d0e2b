# The firmware's boot, step by step, as the heap measurement of vesp32/heap32 runs it: each
# chunk between "#STEP" lines runs, then the runner collects and reads gc.mem_alloc(). Built-in
# modules and the stand-ins are loaded in the first chunk, before the counting starts.
import gc, sys, os
import json, asyncio, machine, network, socket, errno, array, math, time
try:
    os.urandom
except AttributeError:  # the WebAssembly port has none; the App draws 4 bytes of boot id from it
    os.urandom = lambda n: bytes(n)
_name = "base"
#STEP
from motorguard import start
from motorguard.base import forget
_name = "code_to_start_main"
#STEP
from motorguard import config
cfg = config.merge(config.DEFAULTS, {"thing": "heap-1", "mqtt": {"host": "broker.invalid"}})
del config
forget("motorguard.config")  # as start.load_config() does once the config is loaded
_name = "config"
#STEP
board = start.build(cfg)
_name = "app_rings_objects"
#STEP
from motorguard import net
topics = net.device_topics(cfg["thing"])
forget("motorguard.contract")  # as net.network_task() does once it has the topics
_name = "network_code"
#STEP
forget("motorguard.start")  # as start.main() does before the tasks start: boot-only code
start = None
_name = "boot_code_dropped"
