"""The vesp32 command line: help, and a scripted session on the fixture firmware."""

import json
import subprocess
import sys

from vesp32_support import BASE_CONFIG, FIXTURE_FW, ROOT

from vesp32 import cli


def test_help_teaches_the_commands():
    out = subprocess.run([sys.executable, "-m", "vesp32.cli", "run", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0
    for word in ("--device-dir", "--config", "--broker", "--firmware-dir", "press start|stop", "net pass|drop|blackhole", "sensor temp|current"):
        assert word in out.stdout


def test_scripted_session(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(BASE_CONFIG))
    script = "\n".join(
        [
            "wait MG STATE STOPPED",
            "press start",
            "wait MG STATE RUNNING",
            "sensor temp open",
            "bogus",
            "status",
            "press stop",
            "wait MG IRQ 1",
            "quit",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-m", "vesp32.cli", "run", "--config", str(cfg), "--firmware-dir", str(FIXTURE_FW), "--path", str(ROOT / "firmware"), "--duration", "30"],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "MG BOOT cause=1" in text and "MG STATE RUNNING" in text and "MG IRQ 1" in text
    assert "# ok sensor temp open" in text
    assert "# unknown command 'bogus'" in text
    assert "# state=RUNNING" in text
    assert "# powered off; boots: power_on" in text


def test_generated_device_dir_for_a_broker(tmp_path):
    dev = cli.make_device_dir(None, "10.0.0.5:1884", tmp_path)
    cfg = json.loads((dev / "config.json").read_text())
    assert cfg["mqtt"] == {"host": "10.0.0.5", "port": 1884, "tls": False}
    assert cfg["wifi"]["ssid"]


def test_device_dir_and_config_exclude_each_other(tmp_path, capsys):
    assert cli.main(["run", "--device-dir", str(tmp_path), "--config", "x.json"]) == 2
