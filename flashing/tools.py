"""Flashing, deploying and building a factory image: the pieces `python -m flashing` puts together."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from flashing import release
from provisioning.bundle import VERIFY_SCRIPT

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"

OK, UNEXPECTED, BAD_INPUT, PORT_PROBLEM, DOWNLOAD, HASH_MISMATCH, WRONG_CHIP, TOOL_FAILED, NOT_ONLINE = range(9)
EXIT_CODES = {
    OK: "success", UNEXPECTED: "unexpected error", BAD_INPUT: "missing or invalid argument (e.g. no PORT)",
    PORT_PROBLEM: "serial port absent, busy or not permitted", DOWNLOAD: "firmware download impossible",
    HASH_MISMATCH: "firmware file does not match the pinned SHA-256 (or none is pinned)",
    WRONG_CHIP: "the board is not an ESP32", TOOL_FAILED: "esptool or mpremote failed",
    NOT_ONLINE: "deployed, but the device did not report online",
}


class FlashError(Exception):
    def __init__(self, message, hint="", code=UNEXPECTED):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def check_port(port):
    if not port:
        raise FlashError("no serial port given", "make flash PORT=/dev/ttyUSB0 (mpremote devs lists ports)", BAD_INPUT)
    if port.startswith("/"):
        if not Path(port).exists():
            raise FlashError("serial port %s does not exist" % port,
                             "is the board plugged in? try: ls /dev/ttyUSB* /dev/ttyACM*", PORT_PROBLEM)
        if not os.access(port, os.R_OK | os.W_OK):
            raise FlashError("permission denied on %s" % port,
                             "sudo usermod -aG dialout $USER, then log out and in again", PORT_PROBLEM)


def firmware(path=None, url=None, sha256=None) -> Path:
    """FIRMWARE= as given, or the pinned release downloaded into build/ and checked against its hash."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise FlashError("firmware file %s not found" % p, "check FIRMWARE=", BAD_INPUT)
        return p
    url = url or os.environ.get("MOTORGUARD_FIRMWARE_URL") or release.URL
    want = sha256 if sha256 is not None else release.SHA256
    if not want:
        raise FlashError("no verified SHA-256 is pinned for %s %s" % (release.BOARD, release.VERSION),
                         "download %s yourself, verify it, then pass FIRMWARE=path (or record its hash: "
                         "python -m flashing pin --firmware path)" % release.URL, HASH_MISMATCH)
    dest = BUILD / "firmware" / release.FILENAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp = dest.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FlashError("cannot download %s (%s)" % (url, e),
                             "download it on a machine with internet access and pass FIRMWARE=path", DOWNLOAD) from None
        tmp.rename(dest)
    got = sha256_file(dest)
    if got != want:
        dest.unlink()
        raise FlashError("downloaded firmware has SHA-256 %s, expected %s: deleted it" % (got, want),
                         "a corrupted or tampered download; try again, or pass a verified FIRMWARE=path", HASH_MISMATCH)
    return dest


def run_tool(args, what):
    p = subprocess.run(args, capture_output=True, text=True)
    out = (p.stdout or "") + (p.stderr or "")
    if p.returncode != 0:
        low = out.lower()
        if "wrong chip" in low or "this chip is" in low and "not esp32" in low or "unexpected chip id" in low:
            raise FlashError("the board on this port is not an ESP32", "check the board; this firmware is for ESP32",
                             WRONG_CHIP)
        if "permission denied" in low:
            raise FlashError("permission denied on the serial port", "sudo usermod -aG dialout $USER", PORT_PROBLEM)
        if "could not open port" in low or "busy" in low or "no such file" in low:
            raise FlashError("cannot open the serial port", "close serial monitors; check PORT", PORT_PROBLEM)
        last = [ln for ln in out.strip().splitlines() if ln.strip()]
        raise FlashError("%s failed: %s" % (what, last[-1] if last else "exit %d" % p.returncode),
                         "run the command by hand to see all of it: %s" % " ".join(args), TOOL_FAILED)
    return out


def esptool(*args):
    return [sys.executable, "-m", "esptool", *args]


def flash(port, firmware_path=None):
    check_port(port)
    fw = firmware(firmware_path)
    run_tool(esptool("--chip", "esp32", "--port", port, "erase-flash"), "erase-flash")
    run_tool(esptool("--chip", "esp32", "--port", port, "write-flash", hex(release.APP_OFFSET), str(fw)), "write-flash")
    return fw


# ------------------------------------------------------------------ the files that go onto the board


def compile_firmware(out=None) -> Path:
    out = Path(out or BUILD / "mpy")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compile_firmware.py"), "--out", str(out)], check=True,
                   capture_output=True)
    return out


BUNDLE_FILES = ("config.json", "device.crt.der", "device.key.der", "root-ca.der")


def board_files(compiled: Path, bundle=None, config=None) -> dict:
    """{path on the board: local file}: the compiled firmware and, when given, the device bundle
    (or just a config.json, e.g. the Wokwi one, which uses no keys)."""
    files = {}
    for f in sorted(compiled.rglob("*")):
        if f.is_file():
            files[f.relative_to(compiled).as_posix()] = f
    if bundle:
        b = Path(bundle)
        missing = [n for n in BUNDLE_FILES if not (b / n).is_file()]
        if missing:
            raise FlashError("bundle %s lacks %s" % (b, ", ".join(missing)),
                             "make one with: provision device THING --out DIR", BAD_INPUT)
        for n in BUNDLE_FILES:
            files[n] = b / n
    if config:
        files["config.json"] = Path(config)
    return files


def build_image(out=None, firmware_path=None, bundle=None, compiled=None, config=None) -> Path:
    """build/flash-4MB.bin: MicroPython at 0x1000 and a littlefs image of the files at the vfs offset."""
    from littlefs import LittleFS

    fw = firmware(firmware_path)
    compiled = Path(compiled) if compiled else compile_firmware()
    files = board_files(compiled, bundle, config)
    fs = LittleFS(block_size=release.BLOCK_SIZE, block_count=release.BLOCK_COUNT, prog_size=release.PROG_SIZE,
                  read_size=release.READ_SIZE)
    for name, src in files.items():
        parent = os.path.dirname(name)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(name, "wb") as f:
            f.write(src.read_bytes())
    BUILD.mkdir(exist_ok=True)
    vfs = BUILD / "vfs-littlefs.bin"
    vfs.write_bytes(fs.context.buffer)
    out = Path(out or BUILD / "flash-4MB.bin")
    run_tool(esptool("--chip", "esp32", "merge-bin", "-o", str(out), "--flash-size", "4MB", "--pad-to-size", "4MB",
                     hex(release.APP_OFFSET), str(fw), hex(release.VFS_OFFSET), str(vfs)), "merge-bin")
    return out


# ------------------------------------------------------------------ deploy with mpremote


def mpremote(*args):
    exe = shutil.which("mpremote") or str(Path(sys.executable).parent / "mpremote")
    return [exe, *args]


def verify_hashes(output: str, files: dict) -> list[str]:
    """Board paths whose hash on the board differs from the local file's."""
    from provisioning.bundle import parse_hashes

    got = parse_hashes(output)
    return [n for n, src in files.items() if got.get(n) != sha256_file(src)]


def deploy(port, bundle=None, follow_s=60.0, echo=print):
    check_port(port)
    compiled = compile_firmware()
    files = board_files(compiled, bundle)
    dirs = sorted({os.path.dirname(n) for n in files if os.path.dirname(n)})
    for d in dirs:
        subprocess.run(mpremote("connect", port, "fs", "mkdir", ":" + d), capture_output=True)
    for name, src in files.items():
        run_tool(mpremote("connect", port, "fs", "cp", str(src), ":" + name), "copying %s" % name)
    bad = verify_hashes(run_tool(mpremote("connect", port, "exec", VERIFY_SCRIPT % (list(files),)), "verify"), files)
    if bad:
        raise FlashError("the board's copy differs for %s" % ", ".join(bad), "run make deploy again", TOOL_FAILED)
    echo("deployed %d files, verified by SHA-256; soft reset, following the console" % len(files))
    return follow_console(port, follow_s, echo)


def follow_console(port, timeout_s, echo):
    import time

    import serial

    with serial.Serial(port, 115200, timeout=0.5) as s:
        s.write(b"\x03\x04")
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            buf += s.read(256)
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                if line.startswith("MG "):
                    echo(line)
                if line.startswith("MG NET online"):
                    return True
                if line.startswith("MG SAFE_MODE"):
                    raise FlashError("the device booted into safe mode: %s" % line, "fix config.json and deploy again",
                                     NOT_ONLINE)
    raise FlashError("the device did not report online within %d s" % timeout_s,
                     "look for MG NET error lines above: Wi-Fi, DNS, TLS or the certificate", NOT_ONLINE)
