# The fleet contract, as much of it as the firmware needs: topics, the thing-name rule,
# message versions, the device bundle's file names and the reset causes.
#
# contract/ (a host package) defines these once for the whole system; a board cannot import
# it, so this is its copy, and tests/contract/test_firmware_copy.py holds the two equal.
# Plain constants and two small functions, no `re`; runs under CPython too.

# Topics: devices/<thing>/<kind>. Fixed for the fleet (the device policy allows no others),
# so they are not a config setting.
TOPIC_PREFIX = "devices"
TELEMETRY = "telemetry"
EVENTS = "events"
STATUS = "status"
ACK = "ack"
CMD = "cmd"


def topic(thing, kind):
    return "%s/%s/%s" % (TOPIC_PREFIX, thing, kind)


# Thing names (AWS IoT's rule): the client id and the second topic level.
THING_NAME_RULE = "1-128 characters of [a-zA-Z0-9:_-]"
THING_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-"
THING_MIN_LEN = 1
THING_MAX_LEN = 128


def is_thing_name(name):
    if type(name) is not str or not THING_MIN_LEN <= len(name) <= THING_MAX_LEN:
        return False
    for ch in name:
        if ch not in THING_CHARS:
            return False
    return True


# The "v" of what the board sends (telemetry, event, status, ack) and of the commands it takes.
MESSAGE_VERSION = 1
COMMAND_VERSION = 2

# The device bundle: config.json and the DER files the config's mqtt section names by default.
CONFIG_FILE = "config.json"
DEVICE_CERT = "device.crt.der"
DEVICE_KEY = "device.key.der"
ROOT_CA = "root-ca.der"

# machine.reset_cause() -> the name the BOOT event's detail gives.
RESET_CAUSES = {1: "power_on", 2: "hard_reset", 3: "watchdog", 4: "deep_sleep", 5: "soft_reset"}
UNKNOWN_RESET_CAUSE = "unknown"
