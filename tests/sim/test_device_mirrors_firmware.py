"""The simulated device (sim/device.py) copies the firmware's defaults it behaves by, since a load
test must load the cloud as the shipped boards do; each copy is held to firmware/motorguard/config.py
here, so a change of a default on either side alone fails."""

import pathlib
import sys

from sim import device

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "firmware"))
from motorguard.config import DEFAULTS  # noqa: E402


def test_the_simulated_device_uses_the_firmware_s_defaults():
    tel, mq, ctl = DEFAULTS["telemetry"], DEFAULTS["mqtt"], DEFAULTS["control"]
    assert device.SAMPLES_PER_MESSAGE == tel["samples_per_message"]
    assert device.SAMPLE_PERIOD_MS == tel["sample_period_ms"]
    assert device.BUFFER_MESSAGES == tel["buffer_samples"] // tel["samples_per_message"]
    assert device.EVENT_BUFFER == tel["event_queue"]
    assert device.MAX_INFLIGHT == mq["max_inflight"]
    assert device.ACK_TIMEOUT_S * 1000 == mq["ack_timeout_ms"]
    assert device.COMMAND_MAX_AGE_MS == ctl["command_max_age_s"] * 1000
    assert device.CLOCK_TOLERANCE_MS == ctl["clock_tolerance_ms"]
