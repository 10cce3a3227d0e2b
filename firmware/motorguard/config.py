# MotorGuard configuration: the one pin map, thresholds and periods.
#
# DEFAULTS is the single source of truth. The device reads /config.json and
# overlays it on DEFAULTS; the host tools and tests load this same module under
# CPython (vesp32/settings.py reads the pins and merges a device's config.json as
# the board would). A missing or corrupt config.json raises ConfigError, and
# main.py then boots into safe mode with the motor off. The board needs this module
# only at boot: start.load_config() drops it once the config is loaded.

import json

from motorguard import contract
from motorguard.commands import MAX_SPEED

DEFAULTS = {
    # Device identity and broker (written by the provisioning CLI).
    "thing": None,
    "wifi": {"ssid": "", "password": ""},
    "mqtt": {
        "host": None,
        "port": 8883,
        "keepalive_s": 60,
        "cert": contract.DEVICE_CERT,
        "key": contract.DEVICE_KEY,
        "ca": contract.ROOT_CA,
        "tls": True,
        "ack_timeout_ms": 5000,
        "max_inflight": 2,
        "connect_timeout_ms": 10000,
        "backoff_min_ms": 1000,
        "backoff_max_ms": 60000,
        # A TLS handshake's key exchange and signature run in C without returning to the
        # VM: no control tick and no soft IRQ for ~40 ms on a PC, hundreds of ms on an
        # ESP32. So by default a lost connection is rebuilt only while the motor is off;
        # samples wait in the offline buffer. True trades that blind spot for freshness.
        "connect_while_running": False,
    },
    "ntp_host": "pool.ntp.org",
    # The one pin map (ESP32 DevKit v1). Sensors sit on ADC1 because ADC2 fails
    # while Wi-Fi is on; 34-39 are input-only, which is all a sensor needs.
    "pins": {
        "servo": 18,
        "temp_adc": 34,
        "current_adc": 35,
        "start_button": 25,
        "stop_button": 26,
        "led_green": 22,
        "led_red": 23,
    },
    "servo": {
        "freq_hz": 50,
        "min_pulse_ns": 1000000,
        "max_pulse_ns": 2000000,
        "sweep_min_deg": 10,
        "sweep_max_deg": 170,
        "speed_deg_s": 60,
        "max_speed_deg_s": 180,
    },
    # NTC 10k B3950 from 3.3 V through a fixed resistor; NTC to ground.
    "ntc": {
        "supply_uv": 3300000,
        "fixed_ohm": 10000,
        "r0_ohm": 10000,
        "t0_c": 25.0,
        "beta": 3950,
        # The plausible window, inside the ADC's usable range (ADC_USABLE_UV): below it the NTC
        # is shorted (or hotter than ~103 C), above it open (or colder than ~5 C).
        "min_uv": 200000,
        "max_uv": 2400000,
        "min_c": -20.0,
        "max_c": 125.0,
    },
    # ACS712-style Hall sensor: output = zero_uv + uv_per_a * amps, scaled into
    # the ADC's range by a divider (5 V sensor -> 2/3 divider by default).
    "current": {
        "zero_uv": 1666667,
        "uv_per_a": 123333,
        # Inside the ADC's usable range too: the output open reads the ADC's floor, shorted to
        # the sensor's supply its saturation; above 2.4 V (~5.9 A) nothing is trusted.
        "min_uv": 200000,
        "max_uv": 2400000,
        "min_a": -1.0,
        "max_a": 10.0,
    },
    "limits": {
        "combined_temp_c": 34.0,
        "combined_current_a": 1.7,
        "hard_temp_c": 60.0,
        "hard_current_a": 3.0,
        "clear_hysteresis_c": 1.0,
        "clear_hysteresis_a": 0.2,
    },
    "control": {
        "period_ms": 5,
        "debounce_ms": 30,
        "wdt_timeout_ms": 2000,
        # Fail safe: a remote start is refused unless provisioning enabled it on purpose
        # (provision device --remote-start). A remote stop is always obeyed.
        "remote_start_enabled": False,
        # Commands older than this (by their issued_at) are refused as stale.
        "command_max_age_s": 10,
        # How far the cloud's clock and ours may disagree (NTP gives whole seconds): a
        # command up to this far in the future is accepted, and a start issued less than
        # this long after a stop is refused, since it may well have been issued before it.
        "clock_tolerance_ms": 2000,
        # A start button held this long is reported once as BUTTON_STUCK (0 = never).
        "stuck_button_ms": 5000,
        # Stop the motor after running this long with no cloud connection (0 = keep
        # running). For operators who rely on a remote stop; see docs/commands.md.
        "stop_on_cloud_loss_s": 0,
    },
    "telemetry": {
        "sample_period_ms": 1000,
        # 30 samples a message (one message per 30 s at 1 Hz): the messaging, rule and
        # write charges are per message, so this is what keeps the cloud side cheap
        # (docs/cloud-figures.md has the arithmetic); events still go out at once.
        "samples_per_message": 30,
        # 15 minutes at 1 Hz and the batch in flight when the link went (31 messages): 7.4 KB of
        # the heap (8 bytes a sample, telemetry.REC); docs/virtual-esp32.md has the heap budget.
        "buffer_samples": 930,
        # Store and forward (motorguard/backlog.py): while offline with the motor stopped, samples
        # go on to flash, at most this many (24 h at 1 Hz: 1.04 MB of flash, 12 bytes a sample;
        # 0 = no backlog); back online they drain oldest first, at most backlog_drain_per_s
        # messages a second (AWS IoT Core allows a connection 100 publishes a second).
        "backlog_samples": 86400,
        "backlog_drain_per_s": 20,
        "event_queue": 32,
    },
    # Set only by test configurations: enables the serial test hook.
    "test_hook": False,
    # No network at all: motor control only (the Wokwi simulation, a bench without Wi-Fi).
    # Samples still go into the ring and are overwritten, counted, when it is full.
    "offline": False,
}

# The ESP32's ADC at 11 dB (what the firmware sets) reads faithfully only between about 150 and
# 2,450 mV (MicroPython's esp32 quickref): a grounded input still reads ~150 mV, and everything
# from there to the 3.3 V rail comes out compressed and chip-dependent. A sensor's plausible
# window (min_uv..max_uv) must sit inside this by ADC_MARGIN_UV, or a shorted or open wire
# reads as a believable value instead of a sensor fault. docs/virtual-esp32.md has the model.
ADC_USABLE_UV = (150000, 2450000)
ADC_MARGIN_UV = 50000
# The servo's pulse span in whole microseconds times a position in milli-degrees (at most
# 180,000) must stay a small int on the chip (< 2**30): servo.py.
MAX_PULSE_SPAN_NS = 5000000

# Keys a deployed device cannot run without.
REQUIRED = (("thing",), ("mqtt", "host"))


class ConfigError(Exception):
    pass


def merge(base, override, path=""):
    """Overlay override on a copy of base; unknown keys are errors (typos must not pass silently)."""
    out = {}
    for key in base:
        # Sections without overrides are shared with DEFAULTS, not copied: on the device
        # every byte of heap counts. Nothing changes a config once it is loaded.
        out[key] = base[key]
    for key in override:
        where = path + key
        if key not in base:
            if where == "topics":  # a setting of older firmware
                raise ConfigError(
                    "topics are fixed by the fleet contract: remove 'topics' from config.json or re-provision the device"
                )
            raise ConfigError("unknown key '%s'" % where)
        value = override[key]
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError("'%s' must be an object" % where)
            out[key] = merge(default, value, where + ".")
        elif default is not None and not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int):
                out[key] = float(value)
                continue
            raise ConfigError("'%s' must be %s" % (where, type(default).__name__))
        else:
            out[key] = value
    return out


def check(cfg):
    # Here, not at the top: merge() alone (host tools, test firmware) need not load the rings'
    # module; on the board start.py has loaded it already.
    from motorguard import telemetry

    for path in REQUIRED:
        if cfg.get("offline") and path[0] == "mqtt":
            continue
        node = cfg
        for key in path:
            node = node[key]
        if not node:
            raise ConfigError("'%s' is required" % ".".join(path))
    if not contract.is_thing_name(cfg["thing"]):
        raise ConfigError("'thing' must be " + contract.THING_NAME_RULE)
    servo = cfg["servo"]
    if not 0 <= servo["sweep_min_deg"] < servo["sweep_max_deg"] <= 180:
        raise ConfigError("servo sweep limits must satisfy 0 <= sweep_min_deg < sweep_max_deg <= 180")
    span = servo["max_pulse_ns"] - servo["min_pulse_ns"]
    if not (0 < servo["min_pulse_ns"] and 0 < span <= MAX_PULSE_SPAN_NS and span % 1000 == 0):
        raise ConfigError(
            "servo pulses must satisfy 0 < min_pulse_ns < max_pulse_ns, at most %d ns apart in whole microseconds"
            % MAX_PULSE_SPAN_NS
        )
    for name in ("ntc", "current"):
        sensor = cfg[name]
        lo, hi = ADC_USABLE_UV[0] + ADC_MARGIN_UV, ADC_USABLE_UV[1] - ADC_MARGIN_UV
        if not lo <= sensor["min_uv"] < sensor["max_uv"] <= hi:
            raise ConfigError(
                "%s.min_uv and max_uv must satisfy %d <= min_uv < max_uv <= %d (the ESP32 ADC's usable range at 11 dB)"
                % (name, lo, hi)
            )
    if not 0 < servo["speed_deg_s"] <= servo["max_speed_deg_s"] <= MAX_SPEED:
        raise ConfigError("servo speeds must satisfy 0 < speed_deg_s <= max_speed_deg_s <= %d" % MAX_SPEED)
    tel = cfg["telemetry"]
    if tel["samples_per_message"] < 1 or tel["buffer_samples"] < tel["samples_per_message"] * 2:
        raise ConfigError("telemetry.buffer_samples must hold at least two messages")
    # The sample ring's record has a field of fixed width for each value (telemetry.REC).
    if not 1 <= tel["sample_period_ms"] or tel["sample_period_ms"] + cfg["control"]["wdt_timeout_ms"] > telemetry.MAX_GAP_MS:
        # Two samples are at most a period and the longest tick apart, and a tick longer than the
        # watchdog's timeout resets the chip.
        raise ConfigError("telemetry.sample_period_ms must be >= 1, and with control.wdt_timeout_ms at most %d ms"
                          % telemetry.MAX_GAP_MS)
    lo, hi = telemetry.TEMP_RANGE_C
    if not lo <= cfg["ntc"]["min_c"] < cfg["ntc"]["max_c"] <= hi:
        raise ConfigError("ntc.min_c and max_c must satisfy %d <= min_c < max_c <= %d (the sample ring's range)" % (lo, hi))
    lo, hi = telemetry.CURRENT_RANGE_A
    if not lo <= cfg["current"]["min_a"] < cfg["current"]["max_a"] <= hi:
        raise ConfigError("current.min_a and max_a must satisfy %d <= min_a < max_a <= %d (the sample ring's range)"
                          % (lo, hi))
    if tel["backlog_samples"] and tel["backlog_samples"] < 2 * tel["samples_per_message"] * 32:
        raise ConfigError("telemetry.backlog_samples must be 0 (no backlog) or hold at least two segments "
                          "(64 messages)")
    if not 1 <= tel["backlog_drain_per_s"] <= 50:
        raise ConfigError("telemetry.backlog_drain_per_s must be 1..50 (AWS IoT Core allows 100 publishes/s)")
    ctl = cfg["control"]
    if ctl["wdt_timeout_ms"] < 1000:
        raise ConfigError("control.wdt_timeout_ms must be >= 1000 (the ESP32 minimum)")
    for key in ("command_max_age_s", "clock_tolerance_ms", "stuck_button_ms", "stop_on_cloud_loss_s"):
        if ctl[key] < 0:
            raise ConfigError("control.%s must be >= 0" % key)
    if ctl["command_max_age_s"] < 1:
        raise ConfigError("control.command_max_age_s must be >= 1")
    return cfg


def parse(text):
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError("config.json is not valid JSON")
    if not isinstance(data, dict):
        raise ConfigError("config.json must hold a JSON object")
    return check(merge(DEFAULTS, data))


def load(path=contract.CONFIG_FILE):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("%s is missing: provision the device (provision device THING --port PORT)" % path)
    return parse(text)
