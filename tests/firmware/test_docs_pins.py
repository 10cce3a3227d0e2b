"""The README's wiring table agrees with the one pin map in firmware/motorguard/config.py."""

import pathlib
import re

from motorguard import config

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROWS = {
    "servo": "servo signal",
    "temp_adc": "temperature",
    "current_adc": "motor current",
    "start_button": "start button",
    "stop_button": "stop / emergency-stop button",
    "led_green": "green LED",
    "led_red": "red LED",
}


def test_readme_pin_table_matches_config():
    text = (ROOT / "README.md").read_text()
    for key, label in ROWS.items():
        m = re.search(r"^\| %s[^|]*\| (\d+) \|" % re.escape(label), text, re.M)
        assert m, "README wiring table has no row for %s" % label
        assert int(m.group(1)) == config.DEFAULTS["pins"][key], key
    assert set(ROWS) == set(config.DEFAULTS["pins"])


def test_sensor_pins_are_adc1():
    # ADC2 fails while Wi-Fi is on: both sensors must be on ADC1 (GPIO 32-39).
    for key in ("temp_adc", "current_adc"):
        assert 32 <= config.DEFAULTS["pins"][key] <= 39
