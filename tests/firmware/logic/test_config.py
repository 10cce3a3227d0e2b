# Config overlay and validation (runs under CPython and MicroPython).
from motorguard import config as cfgmod

GOOD = '{"thing": "motor-1", "mqtt": {"host": "example.com"}}'


def raises(text, fragment):
    try:
        cfgmod.parse(text)
    except cfgmod.ConfigError as e:
        assert fragment in str(e), str(e)
        return
    raise AssertionError("no ConfigError for " + text)


def test_defaults_overlay():
    cfg = cfgmod.parse('{"thing": "motor-1", "mqtt": {"host": "h", "port": 1883}, "limits": {"hard_temp_c": 55}}')
    assert cfg["mqtt"]["port"] == 1883
    assert cfg["mqtt"]["keepalive_s"] == cfgmod.DEFAULTS["mqtt"]["keepalive_s"]
    assert cfg["limits"]["hard_temp_c"] == 55.0 and isinstance(cfg["limits"]["hard_temp_c"], float)
    assert cfgmod.DEFAULTS["mqtt"]["port"] == 8883  # defaults untouched


def test_topics_use_thing():
    cfg = cfgmod.parse(GOOD)
    assert cfgmod.topic(cfg, "telemetry") == "devices/motor-1/telemetry"
    assert cfgmod.topic(cfg, "cmd") == "devices/motor-1/cmd"


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
        cfgmod.load("/nonexistent/config.json")
    except cfgmod.ConfigError as e:
        assert "provision" in str(e)
        return
    raise AssertionError("no ConfigError")
