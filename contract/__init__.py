"""The fleet contract: what every part of MotorGuard must agree on, defined once.

Topic templates, the thing-name rule, message kinds and their schema versions, the IoT rule names,
the files of a device bundle and the ESP32 reset causes. Cloud code, provisioning, the broker ACL,
the CDK stack, the tools and the tests import these names; the firmware cannot import host
packages, so it carries its own copy (firmware/motorguard/contract.py) and
tests/contract/test_contract.py holds the copy, the JSON schemas and the docs to this module.

This module imports nothing of MotorGuard: every other folder may depend on it.
"""

import re

# ------------------------------------------------------------------ things
# AWS IoT's rule for thing names. The device's certificate is bound to its thing, and its policy
# lets it use only devices/<thing>/..., so the name is the identity the whole system trusts.
THING_NAME_PATTERN = "[a-zA-Z0-9:_-]{1,128}"
THING_NAME_RULE = "1-128 characters of [a-zA-Z0-9:_-]"
_THING_NAME = re.compile(THING_NAME_PATTERN)


def is_thing_name(name) -> bool:
    return isinstance(name, str) and _THING_NAME.fullmatch(name) is not None


# ------------------------------------------------------------------ topics
# A fleet contract, not a device setting: a board cannot choose its topics (its policy would refuse
# any other anyway). The kind is the third topic level: devices/<thing>/<kind>.
TOPIC_PREFIX = "devices"
TELEMETRY = "telemetry"
EVENTS = "events"
STATUS = "status"
ACK = "ack"
CMD = "cmd"
DEVICE_PUBLISHES = (TELEMETRY, EVENTS, STATUS, ACK)  # what a device may publish to (its own thing only)
DEVICE_SUBSCRIBES = (CMD,)  # what a device may subscribe to and receive
TOPIC_KINDS = DEVICE_PUBLISHES + DEVICE_SUBSCRIBES
INGESTED_KINDS = (TELEMETRY, EVENTS)  # the kinds the cloud stores


def topic(thing: str, kind: str) -> str:
    """devices/<thing>/<kind>, for one thing (no wildcards)."""
    if kind not in TOPIC_KINDS:
        raise ValueError("unknown topic kind %r (one of %s)" % (kind, ", ".join(TOPIC_KINDS)))
    return "%s/%s/%s" % (TOPIC_PREFIX, thing, kind)


def topic_filter(kind: str = "#") -> str:
    """The MQTT filter for one kind across the fleet (devices/+/<kind>), or every topic (devices/#)."""
    if kind == "#":
        return TOPIC_PREFIX + "/#"
    if kind not in TOPIC_KINDS:
        raise ValueError("unknown topic kind %r (one of %s)" % (kind, ", ".join(TOPIC_KINDS)))
    return "%s/+/%s" % (TOPIC_PREFIX, kind)


def thing_filter(thing: str) -> str:
    """Every topic of one thing: devices/<thing>/#."""
    return "%s/%s/#" % (TOPIC_PREFIX, thing)


def parse_topic(name: str):
    """(thing, kind) of devices/<thing>/<kind>, or None for any other topic."""
    parts = name.split("/") if isinstance(name, str) else ()
    if len(parts) != 3 or parts[0] != TOPIC_PREFIX or parts[2] not in TOPIC_KINDS or not is_thing_name(parts[1]):
        return None
    return parts[1], parts[2]


# ------------------------------------------------------------------ messages
MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core's limit on one MQTT payload; the local broker enforces it too
# The message each topic kind carries: schemas/v1/<name>.schema.json, and the version its "v" holds.
MESSAGE_OF_TOPIC = {TELEMETRY: "telemetry", EVENTS: "event", STATUS: "status", ACK: "ack", CMD: "command"}
MESSAGE_VERSIONS = {"telemetry": 1, "event": 1, "status": 1, "ack": 1, "command": 2}
MESSAGE_KINDS = tuple(MESSAGE_VERSIONS)

# ------------------------------------------------------------------ IoT rules
RULE_ALERTS = "motorguard_alerts"
RULE_EVENTS = "motorguard_events"
RULE_TELEMETRY = "motorguard_telemetry"
RULE_ACKS = "motorguard_acks"  # each command's ack, for the audit trail (the dashboard)
RULE_STATUS = "motorguard_status"  # each device's retained online/offline status
RULE_NAMES = (RULE_ALERTS, RULE_EVENTS, RULE_TELEMETRY, RULE_ACKS, RULE_STATUS)
BASIC_INGEST_PREFIX = "$aws/rules/"  # + <rule>/<topic>: a rule's own topic, no messaging charge


def basic_ingest_topic(rule: str, thing: str, kind: str) -> str:
    return "%s%s/%s" % (BASIC_INGEST_PREFIX, rule, topic(thing, kind))


# ------------------------------------------------------------------ device bundle
# What `provision device` writes and `make deploy` copies onto the board: the config and the
# DER files the firmware loads (their names are also the firmware config's defaults).
CONFIG_FILE = "config.json"
DEVICE_CERT = "device.crt.der"
DEVICE_KEY = "device.key.der"
ROOT_CA = "root-ca.der"
BOARD_FILES = (CONFIG_FILE, DEVICE_CERT, DEVICE_KEY, ROOT_CA)

# ------------------------------------------------------------------ reset causes
# machine.reset_cause() on the ESP32, as the BOOT event's detail names it.
RESET_CAUSES = {1: "power_on", 2: "hard_reset", 3: "watchdog", 4: "deep_sleep", 5: "soft_reset"}
UNKNOWN_RESET_CAUSE = "unknown"

# ------------------------------------------------------------------ local service identities
# (Appended for issue 14, rooms with one-way doors.) The local IoT Core's broker makes a client's
# certificate name its identity and its client id (cloud/local/broker_config.py), so each local
# service client has a name of its own, with only the grants it needs there. Provisioning issues
# their certificates with the fleet CA and uses two of them; no device may be named like one
# (provisioning/identity.py check_thing): a device certificate by such a name would carry its grants.
SERVICE_IDENTITY = "motorguard-service"  # the cloud's observer: tests, tools, the HIL rig
ENGINE_IDENTITY = "motorguard-rules-engine"  # the local rules engine (cloud/local/engine.py)
API_IDENTITY = "motorguard-api"  # the API's commands (cloud/local/publish.py; iot-data publish in AWS)
CHECK_IDENTITY = "motorguard-provision-check"  # provision check's listener (provisioning/check.py)
ROTATION_IDENTITY = "motorguard-provision-rotation"  # provision rotate --wait-online (provisioning/rotation.py)
SERVICE_IDENTITIES = (SERVICE_IDENTITY, ENGINE_IDENTITY, API_IDENTITY, CHECK_IDENTITY, ROTATION_IDENTITY)
CHECK_PROBE_THING = "motorguard-check-other"  # the other device provision check must not reach
# The local IoT Core's gateway (cloud/local/gateway.py) publishes AWS's lifecycle events under this name
# on the broker's private socket; it has no certificate, but no device may take its grants either.
GATEWAY_IDENTITY = "motorguard-gateway"
RESERVED_THING_NAMES = SERVICE_IDENTITIES + (CHECK_PROBE_THING, GATEWAY_IDENTITY)

# ------------------------------------------------------------------ lifecycle events
# AWS IoT Core publishes $aws/events/presence/connected|disconnected/<clientId> (the local gateway too).
LIFECYCLE_PREFIX = "$aws/events/presence/"


def lifecycle_topic(event: str, client_id: str) -> str:
    """$aws/events/presence/<connected|disconnected>/<clientId>; client_id may be + for every client."""
    if event not in ("connected", "disconnected"):
        raise ValueError("lifecycle event is connected or disconnected, not %r" % event)
    return LIFECYCLE_PREFIX + event + "/" + client_id
