"""python -m flashing: put MotorGuard onto a real ESP32.

  flash   --port P [--firmware FILE]   erase, then write MicroPython at 0x1000 (pinned release, hash-checked)
  deploy  --port P [--bundle DIR]      compile the firmware, copy it and the device bundle, verify, soft-reset,
                                       follow the console until the device is online
  image   [--bundle DIR] [--firmware FILE] [--out FILE]   one factory image: write-flash 0x0 build/flash-4MB.bin
  console --port P                     the serial REPL and log (mpremote)
  pin     --firmware FILE              record FILE's SHA-256 as the pinned release's (after you verified it)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from flashing import release, tools
from flashing.tools import FlashError


def main(argv=None) -> int:
    codes = "\n".join("  %d  %s" % kv for kv in sorted(tools.EXIT_CODES.items()))
    ap = argparse.ArgumentParser(prog="python -m flashing", description=__doc__,
                                 epilog="exit codes:\n" + codes, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flash", help="erase and write MicroPython %s" % release.VERSION)
    f.add_argument("--port", default=os.environ.get("PORT"))
    f.add_argument("--firmware", default=os.environ.get("FIRMWARE") or None, help="a .bin you verified (offline route)")
    d = sub.add_parser("deploy", help="copy the firmware and a bundle onto the board and wait for it to come online")
    d.add_argument("--port", default=os.environ.get("PORT"))
    d.add_argument("--bundle", default=os.environ.get("BUNDLE") or None)
    d.add_argument("--timeout", type=float, default=60)
    i = sub.add_parser("image", help="build build/flash-4MB.bin")
    i.add_argument("--bundle", default=os.environ.get("BUNDLE") or None)
    i.add_argument("--firmware", default=os.environ.get("FIRMWARE") or None)
    i.add_argument("--config", default=os.environ.get("CONFIG") or None, help="a config.json to include (e.g. wokwi/config.json)")
    i.add_argument("--out")
    c = sub.add_parser("console", help="open the serial REPL/log")
    c.add_argument("--port", default=os.environ.get("PORT"))
    p = sub.add_parser("pin", help="record a verified firmware file's SHA-256 in flashing/release.py")
    p.add_argument("--firmware", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "flash":
            fw = tools.flash(a.port, a.firmware)
            print("flashed %s to %s; next: make deploy PORT=%s BUNDLE=..." % (fw.name, a.port, a.port))
        elif a.cmd == "deploy":
            tools.deploy(a.port, a.bundle, a.timeout)
            print("the device is online")
        elif a.cmd == "image":
            out = tools.build_image(a.out, a.firmware, a.bundle, config=a.config)
            print("%s (%d bytes): esptool --chip esp32 --port PORT write-flash 0x0 %s" % (out, out.stat().st_size, out))
        elif a.cmd == "console":
            tools.check_port(a.port)
            return subprocess.call(tools.mpremote("connect", a.port, "repl"))
        elif a.cmd == "pin":
            digest = tools.sha256_file(a.firmware)
            path = os.path.join(os.path.dirname(release.__file__), "release.py")
            text = open(path).read()
            text = re.sub(r"^SHA256 = .*$", "SHA256 = %r" % digest, text, flags=re.M)
            open(path, "w").write(text)
            print("pinned SHA-256 %s for %s" % (digest, release.FILENAME))
    except FlashError as e:
        print("error: %s" % e.message, file=sys.stderr)
        if e.hint:
            print("hint: %s" % e.hint, file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
