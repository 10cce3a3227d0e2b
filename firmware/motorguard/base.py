# The firmware's bottom module: what every other module may import, importing none of them.
# const, the console lines the host tools read, and the module unloader.
#
# Console lines: "MG <WORD> ..." on the serial console, one per fact; the host reads them
# through contract/console.py, which defines every line the firmware prints (docs/console.md).

import sys

try:
    from micropython import const
except ImportError:  # CPython (the host's tests): const is the identity, as on the board

    def const(x):
        return x


def log(*parts):
    # One console line per network step or boot-time fact. Allocates its tuple: not for the tick.
    print("MG", *parts)


def say(what, word, key, value):
    # The control tick's console line, "MG <what> [<word> ]<key>=<value>" (word "" for none):
    # a call with fixed arguments and print's sep keyword allocate nothing, unlike log().
    if word:
        print("MG ", what, " ", word, " ", key, "=", value, sep="")
    else:
        print("MG ", what, " ", key, "=", value, sep="")


def forget(name):
    """Drops a module that has done its work, so the collector can free its code.

    Boot-only code (start.py, the config loader with its defaults) and the connect-time code
    (link, mqtt_connect, dnscache, while a session is up) would otherwise hold heap for as long
    as the board runs; docs/virtual-esp32.md has the heap budget."""
    sys.modules.pop(name, None)
    package, _, leaf = name.rpartition(".")
    try:
        delattr(sys.modules[package], leaf)  # the package keeps its submodules as attributes
    except (KeyError, AttributeError, TypeError):
        pass  # not there, or a port that cannot delete it: the module then just stays loaded
