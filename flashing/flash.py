"""make flash: erase the ESP32 and write MicroPython at 0x1000 with esptool (v5, dashed commands)."""

from __future__ import annotations

from flashing import firmware, release, tools


def commands(port: str, fw) -> list[list[str]]:
    base = ("--chip", release.CHIP, "--port", port)
    return [tools.esptool(*base, "erase-flash"),
            tools.esptool(*base, "write-flash", hex(release.APP_OFFSET), str(fw))]


def flash(port, firmware_path=None, echo=print):
    """Checks the port, gets a verified .bin, then erases and writes; returns the .bin written."""
    tools.check_port(port, "flash")
    fw = firmware.obtain(firmware_path, echo=echo)
    erase, write = commands(port, fw)
    echo("erasing the flash on %s" % port)
    tools.run_tool(erase, "esptool erase-flash", timeout=180)
    echo("writing %s at %#x" % (fw.name, release.APP_OFFSET))
    tools.run_tool(write, "esptool write-flash", timeout=600)
    return fw
