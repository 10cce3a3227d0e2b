# Config overlay and validation (runs under CPython and MicroPython).
from motorguard import config

GOOD = '{"thing": "motor-1", "mqtt": {"host": "example.com"}}'


def raises(text, fragment):
    try:
        config.parse(text)
    except config.ConfigError as e:
        assert fragment in str(e), str(e)
        return
    raise AssertionError("no ConfigError for " + text)


def test_defaults_overlay():
    cfg = config.parse('{"thing": "motor-1", "mqtt": {"host": "h", "port": 1883}, "limits": {"hard_temp_c": 55}}')
    assert cfg["mqtt"]["port"] == 1883
    assert cfg["mqtt"]["keepalive_s"] == config.DEFAULTS["mqtt"]["keepalive_s"]
    assert cfg["limits"]["hard_temp_c"] == 55.0 and isinstance(cfg["limits"]["hard_temp_c"], float)
    assert config.DEFAULTS["mqtt"]["port"] == 8883  # defaults untouched


def test_topics_are_not_a_setting():
    # Fixed by the fleet contract (devices/<thing>/<kind>): a config.json of older firmware that
    # still names them is refused with the fix, not as an unknown key.
    raises('{"thing": "m", "mqtt": {"host": "h"}, "topics": {}}', "fixed by the fleet contract")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "topics": {}}', "remove 'topics'")
    assert "topics" not in config.DEFAULTS


def test_thing_name_rule():
    name = "a" * 128
    assert config.parse('{"thing": "%s", "mqtt": {"host": "h"}}' % name)["thing"] == name
    raises('{"thing": "%s", "mqtt": {"host": "h"}}' % (name + "a"), "1-128 characters")
    raises('{"thing": 7, "mqtt": {"host": "h"}}', "1-128 characters")
    raises('{"thing": "motor/1", "mqtt": {"host": "h"}}', "[a-zA-Z0-9:_-]")


def test_corrupt_and_wrong_configs_are_refused():
    raises("{not json", "not valid JSON")
    raises("[]", "JSON object")
    raises('{"mqtt": {"host": "h"}}', "'thing' is required")
    raises('{"thing": "a b", "mqtt": {"host": "h"}}', "[a-zA-Z0-9:_-]")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "limts": {}}', "unknown key 'limts'")
    raises('{"thing": "m", "mqtt": {"host": "h", "port": "x"}}', "'mqtt.port' must be int")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "servo": {"sweep_min_deg": 170, "sweep_max_deg": 10}}', "sweep")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "control": {"wdt_timeout_ms": 500}}', "wdt_timeout_ms")


def test_missing_file_names_the_fix():
    try:
        config.load("/nonexistent/config.json")
    except config.ConfigError as e:
        assert "provision" in str(e)
        return
    raise AssertionError("no ConfigError")


def test_values_the_sample_ring_cannot_hold_exactly_are_refused():
    # The ring's record has a field of fixed width per value (telemetry.REC): a setting that could
    # produce a value outside it would give a wrong sample, so it is refused with the rule.
    base = '{"thing": "m", "mqtt": {"host": "h"}, %s}'
    raises(base % '"telemetry": {"sample_period_ms": 64000}', "with control.wdt_timeout_ms at most 65535 ms")
    raises(base % '"telemetry": {"sample_period_ms": 60000}, "control": {"wdt_timeout_ms": 6000}', "at most 65535")
    raises(base % '"telemetry": {"sample_period_ms": 0}', "sample_period_ms must be >= 1")
    raises(base % '"ntc": {"max_c": 310.0}', "ntc.min_c and max_c must satisfy -99 <= min_c < max_c <= 300")
    raises(base % '"ntc": {"min_c": -100.0}', "sample ring's range")
    raises(base % '"current": {"max_a": 16.5}', "current.min_a and max_a must satisfy -16 <= min_a < max_a <= 16")
    raises(base % '"current": {"min_a": -17.0}', "sample ring's range")
    ok = config.parse(base % '"telemetry": {"sample_period_ms": 63000}, "ntc": {"min_c": -99.0, "max_c": 300.0}, '
                              '"current": {"min_a": -16.0, "max_a": 16.0}')
    assert ok["telemetry"]["sample_period_ms"] == 63000
    # The ring holds any number of samples: its record keeps no uptime that wraps.
    assert config.parse(base % '"telemetry": {"buffer_samples": 86400}')["telemetry"]["buffer_samples"] == 86400


def test_sensor_windows_must_fit_the_esp32_adc():
    # At 11 dB the ADC reads a grounded input as ~150 mV and saturates below 3.3 V: a window that
    # reaches past 200 mV..2.4 V would take a short or an open wire for a reading.
    raises('{"thing": "m", "mqtt": {"host": "h"}, "ntc": {"min_uv": 100000}}', "ntc.min_uv and max_uv must satisfy 200000")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "current": {"max_uv": 3150000}}', "ESP32 ADC's usable range")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "current": {"min_uv": 900000, "max_uv": 800000}}', "min_uv < max_uv")
    ok = config.parse('{"thing": "m", "mqtt": {"host": "h"}, "ntc": {"min_uv": 250000, "max_uv": 2300000}}')
    assert ok["ntc"]["min_uv"] == 250000


def test_servo_pulses_stay_small_int_arithmetic():
    # The sweep multiplies the span in whole microseconds by the position (servo.py): a span in
    # part-microseconds or over 5 ms is refused rather than computed with big ints on the chip.
    raises('{"thing": "m", "mqtt": {"host": "h"}, "servo": {"max_pulse_ns": 2000500}}', "whole microseconds")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "servo": {"min_pulse_ns": 500000, "max_pulse_ns": 5600000}}',
           "at most 5000000 ns apart")
    raises('{"thing": "m", "mqtt": {"host": "h"}, "servo": {"min_pulse_ns": 2000000, "max_pulse_ns": 1000000}}',
           "min_pulse_ns < max_pulse_ns")
    ok = config.parse('{"thing": "m", "mqtt": {"host": "h"}, "servo": {"min_pulse_ns": 500000, "max_pulse_ns": 2500000}}')
    assert ok["servo"]["max_pulse_ns"] == 2500000
