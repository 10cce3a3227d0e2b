"""vesp32: run one Virtual ESP32 (the unchanged firmware under MicroPython unix) from a shell.

    python -m vesp32.cli run --device-dir devices/motor-001 --broker 127.0.0.1:8883
    python -m vesp32.cli run --config my-config.json          # temporary device dir
    python -m vesp32.cli run --broker 127.0.0.1:1883          # generated config, plain MQTT

The serial console streams to stdout. Type commands on stdin (one per line); `help`
lists them. Lines this tool prints itself start with "# ".
Every MotorGuard command line and the one exit-code table: docs/cli.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import threading
import time

from contract import exit_codes
from vesp32.harness import CAUSE_NAMES, VirtualESP32

CODES = (exit_codes.OK, exit_codes.BAD_INPUT)  # what `run` exits with (a malformed command line: BAD_INPUT too)

COMMANDS = """\
commands (stdin, one per line):
  press start|stop [MS]        press and release a button (default 80 ms)
  hold start|stop              hold a button down; release start|stop lets it go
  load F                       mechanical load factor (1.0 normal, ~3.4 = 2.2 A overload)
  current A|off                force the motor current (amps) / back to the model
  temp C|off                   force the motor temperature / back to the model
  ambient C                    ambient temperature
  sensor temp|current open|short|ok
  wifi up|down                 the access point comes back / goes away
  rssi DBM                     signal strength the board reports
  net pass|drop|blackhole      the path to the broker (needs the proxy: --broker)
  pin N 0|1|float              drive any input GPIO
  adc N UV|off                 hold an ADC input at UV microvolts
  serial TEXT                  type TEXT + newline on the serial console
  reboot | reset               power cycle | press the EN (reset) button
  status                       state, PWM, LEDs, plant, boots, heap
  wait TEXT                    block until a console line contains TEXT (10 s)
  sleep S                      pause the command stream (scripts)
  help | quit"""


def _say(msg):
    print("# " + msg, flush=True)


def make_device_dir(config_path, broker, workdir) -> pathlib.Path:
    """A temporary device dir: --config (plus the certificates it names, found next to
    it), or a generated plain-MQTT config for --broker."""
    dev = pathlib.Path(workdir) / "device"
    dev.mkdir(parents=True)
    if config_path:
        src = pathlib.Path(config_path)
        cfg = json.loads(src.read_text())
        shutil.copyfile(src, dev / "config.json")
        mq = cfg.get("mqtt") or {}
        for key, default in (("cert", "device.crt.der"), ("key", "device.key.der"), ("ca", "root-ca.der")):
            name = mq.get(key, default)
            if (src.parent / name).is_file():
                shutil.copyfile(src.parent / name, dev / name)
        return dev
    host, port = "127.0.0.1", 1883
    if broker:
        host, _, p = broker.rpartition(":")
        port = int(p)
    cfg = {
        "thing": "vesp32-sim",
        "wifi": {"ssid": "vesp32", "password": "vesp32"},
        "mqtt": {"host": host, "port": port, "tls": False},
    }
    (dev / "config.json").write_text(json.dumps(cfg, indent=2))
    return dev


def status(vm: VirtualESP32) -> str:
    p = vm.plant
    plant = "temp=%.2fC current=%.3fA pos=%.1fdeg" % (p["temp_c"], p["amps"], p["pos_deg"]) if p else "-"
    boots = ", ".join(CAUSE_NAMES.get(c, str(c)) for _, c in vm.boots)
    net = vm.proxy.mode if vm.proxy else "direct"
    return "state=%s pwm=%dns leds=%s plant[%s] boots[%s] net=%s heap=%s%s" % (
        vm.state,
        vm.pwm_duty,
        vm.leds,
        plant,
        boots,
        net,
        vm.heap_info.get("mem_free", "?"),
        " HALTED(%s)" % vm.halted if vm.halted else "",
    )


def _onoff(arg):
    return None if arg in ("off", "none", "model") else float(arg)


def run_command(vm: VirtualESP32, line: str) -> bool:
    """Execute one typed command; False means quit."""
    line = line.strip()
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        return True
    cmd, args = parts[0].lower(), parts[1:]
    try:
        if cmd in ("quit", "exit", "q"):
            return False
        elif cmd == "help":
            print(COMMANDS, flush=True)
        elif cmd == "press":
            vm.press(args[0], int(args[1]) if len(args) > 1 else 80)
        elif cmd == "hold":
            vm.button(args[0], True)
        elif cmd == "release":
            vm.button(args[0], False)
        elif cmd == "load":
            vm.set_load(float(args[0]))
        elif cmd == "current":
            vm.force_current(_onoff(args[0]))
        elif cmd == "temp":
            vm.force_temperature(_onoff(args[0]))
        elif cmd == "ambient":
            vm.set_ambient(float(args[0]))
        elif cmd == "sensor":
            vm.sensor(args[0], args[1])
        elif cmd == "wifi":
            vm.wifi(args[0] in ("up", "on", "1"))
        elif cmd == "rssi":
            vm.set_rssi(int(args[0]))
        elif cmd == "net":
            vm.network(args[0])
        elif cmd == "pin":
            vm.drive_pin(int(args[0]), None if args[1] == "float" else int(args[1]))
        elif cmd == "adc":
            vm.set_adc(int(args[0]), None if args[1] == "off" else int(args[1]))
        elif cmd == "serial":
            vm.serial_write((line.split(None, 1)[1] if len(parts) > 1 else "") + "\n")
        elif cmd == "reboot":
            vm.reboot()
        elif cmd == "reset":
            vm.reset_button()
        elif cmd == "status":
            _say(status(vm))
        elif cmd == "wait":
            text = line.split(None, 1)[1]
            vm.wait_for_line(text, 10, since=0)
        elif cmd == "sleep":
            time.sleep(float(args[0]))
        else:
            _say("unknown command %r (help lists them)" % cmd)
            return True
        if cmd not in ("help", "status", "wait", "sleep"):
            _say("ok " + line)
    except TimeoutError:
        _say("error: timed out (%s)" % line)
    except (IndexError, ValueError, RuntimeError) as e:
        _say("error: %s (%s)" % (e or type(e).__name__, line))
    return True


def cmd_run(args) -> int:
    if args.device_dir and args.config:
        _say("--device-dir and --config exclude each other (--config builds a temporary device dir)")
        return exit_codes.BAD_INPUT
    tmp = None
    if args.device_dir:
        device_dir = pathlib.Path(args.device_dir)
        if not device_dir.is_dir():
            _say("no such device dir: %s" % device_dir)
            return exit_codes.BAD_INPUT
    else:
        tmp = tempfile.mkdtemp(prefix="vesp32-")
        device_dir = make_device_dir(args.config, args.broker, tmp)
        _say("temporary device dir %s" % device_dir)

    stamp = args.timestamps

    def echo(line):
        if stamp:
            print("%.3f %s" % (line.t_ns / 1e9, line.text), flush=True)
        else:
            print(line.text, flush=True)

    vm = VirtualESP32(
        device_dir,
        firmware_dir=args.firmware_dir,
        heap=args.heap,
        micropython=args.micropython,
        broker=args.broker,
        proxy=False if (args.no_proxy and not args.broker) else None,
        time_scale=args.time_scale,
        heap_mode=args.heap_mode,
        extra_path=args.path,
        on_line=echo,
    )
    if vm.config_error:
        _say("config: %s -> the firmware will boot into safe mode" % vm.config_error)
    if args.no_proxy and args.broker:
        _say("--broker needs the proxy; dropping --no-proxy")
    try:
        vm.start()
        _say("up: %s (pid %d); heap for the firmware %s bytes; type 'help'" % (" ".join(vm.command), vm.pid, vm.heap_info.get("mem_free")))
        if vm.proxy:
            _say("MQTT path: %s" % vm.route)
        deadline = time.time() + args.duration if args.duration else None
        done = threading.Event()

        def reader():
            for line in sys.stdin:
                if not run_command(vm, line):
                    break
            done.set()

        if not args.no_stdin:
            threading.Thread(target=reader, name="vesp32-stdin", daemon=True).start()
        while not done.is_set():
            if deadline and time.time() >= deadline:
                break
            done.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        vm.stop()
        _say("powered off; boots: %s" % ", ".join(CAUSE_NAMES.get(c, str(c)) for _, c in vm.boots))
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_codes.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vesp32",
        description=__doc__,
        epilog=exit_codes.epilog(CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run one virtual device, stream its console, take commands on stdin",
        description="Run the firmware on a Virtual ESP32 against a broker. The serial console "
        "streams to stdout; type commands on stdin.",
        epilog=COMMANDS
        + "\n\nexamples:\n"
        + "  vesp32 run --device-dir devices/motor-001 --broker 127.0.0.1:8883\n"
        + "  vesp32 run --config cfg.json --firmware-dir build/mpy      # the flashed .mpy files\n"
        + "  printf 'wait MG STATE STOPPED\\npress start\\nsleep 2\\nstatus\\nquit\\n' | vesp32 run --broker 127.0.0.1:1883"
        + "\n\n"
        + exit_codes.epilog(CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--device-dir", help="the device's flash: config.json and certificates (the process runs there)")
    run.add_argument("--config", help="a config.json to run with, in a temporary device dir (certificates it names are copied from its folder)")
    run.add_argument("--broker", metavar="HOST:PORT", help="reach this broker instead of the configured mqtt host, through the fault proxy")
    run.add_argument("--firmware-dir", default="firmware", help="dir with main.py (default: firmware; build/mpy runs the compiled files)")
    run.add_argument("--heap", default="110K", help="Python heap the firmware gets (default 110K, an ESP32 without PSRAM)")
    run.add_argument("--heap-mode", choices=("firmware", "total"), default="firmware", help="firmware: the simulator's own footprint is extra (default); total: -X heapsize=HEAP as is")
    run.add_argument("--time-scale", type=float, default=None, help="speed up the motor's thermal model (e.g. 10)")
    run.add_argument("--micropython", help="the micropython executable (default: next to this Python)")
    run.add_argument("--path", action="append", default=[], help="extra dir on the board's sys.path (repeatable)")
    run.add_argument("--no-proxy", action="store_true", help="connect the device straight to its configured broker")
    run.add_argument("--timestamps", action="store_true", help="prefix console lines with host time (s)")
    run.add_argument("--duration", type=float, help="power off after this many seconds")
    run.add_argument("--no-stdin", action="store_true", help="do not read commands from stdin")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
