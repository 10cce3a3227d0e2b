# Runs the dual-runtime logic tests under MicroPython: each test_* function of
# the named modules, one line per result and a closing "N passed, N failed".
# Usage: micropython mp_run.py FIRMWARE_DIR module [module ...]
import sys

here = sys.argv[0].rsplit("/", 1)[0]
firmware = sys.argv[1]
for p in (here + "/logic", firmware, here + "/fakehw"):
    sys.path.insert(0, p)
sys.path.append(firmware + "/../vesp32/board")  # the ADC model fakehw reads through (last: no machine.py shadowing)

passed = failed = 0
for name in sys.argv[2:]:
    mod = __import__(name)
    for attr in sorted(dir(mod)):
        if not attr.startswith("test_"):
            continue
        fn = getattr(mod, attr)
        if not callable(fn) or attr == "test_config":
            continue
        try:
            fn()
            passed += 1
            print("PASS", name, attr)
        except Exception as e:
            failed += 1
            print("FAIL", name, attr, repr(e))
            sys.print_exception(e)
print("mp: %d passed, %d failed" % (passed, failed))
