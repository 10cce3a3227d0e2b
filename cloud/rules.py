"""The IoT topic rules, defined once: the CDK stack deploys them to AWS IoT Core and
the local rules engine (cloud/local) runs them against Mosquitto with AWS's semantics.

Each rule: name (AWS allows [a-zA-Z0-9_]), sql (version 2016-03-23), actions and an
error action. Action targets are logical names from cloud.resources (TARGETS). The rule names and
the topic filters the rules read are the fleet contract's (contract/__init__.py);
tests/contract/test_contract.py holds these rules, and the stack's, to it.
"""

import contract
from cloud import resources
from cloud.domain.commands import ACK_PREFIX

SQL_VERSION = "2016-03-23"

# The topic filters the rules read: devices/+/<kind> across the fleet.
TELEMETRY_FILTER = contract.topic_filter(contract.TELEMETRY)
EVENTS_FILTER = contract.topic_filter(contract.EVENTS)

ERROR_ACTION = {"sqs": {"queue": "dead_letter"}}

# What every rule sends: the payload as the device published it, and beside it the fields only the
# rule sets (the topic is the authenticated identity; the receive time is IoT's clock). With
# SELECT *, topic(2) AS thing, ... a payload's own thing, kind or received_ms would be overwritten
# without a trace, and a reject could keep only the rule's output. encode(*, 'base64') stands for the
# whole payload, JSON or not (AWS IoT SQL reference > Functions > encode(value, encodingScheme), SQL
# 2016-03-23; see also "Working with binary payloads": with only functions in the SELECT, any payload
# reaches the action, base64 inside JSON). The Lambdas decode it and
# judge the bytes as published (cloud/domain/delivery.py): a payload that sets the rule's fields
# is rejected (identity), one that is not JSON is rejected with its precise reason.
ORIGINAL_PAYLOAD = "encode(*, 'base64') AS payload_b64, topic(2) AS thing, topic(3) AS kind, timestamp() AS received_ms"

RULES = [
    {
        # Hot path: a FAULT or an emergency stop pages someone. WHERE is evaluated on the payload's
        # JSON (it cannot use the SELECT's aliases): a payload that is not a JSON object has no
        # `event` (Undefined), so it alerts no one; the events rule still sees it.
        "name": contract.RULE_ALERTS,
        "sql": "SELECT %s FROM '%s' WHERE event = 'FAULT' OR event = 'ESTOP'" % (ORIGINAL_PAYLOAD, EVENTS_FILTER),
        "actions": [{"lambda": {"function": "alert"}}],
        "error_action": ERROR_ACTION,
    },
    {
        # Every event is history (and moves the device's latest state).
        "name": contract.RULE_EVENTS,
        "sql": "SELECT %s FROM '%s'" % (ORIGINAL_PAYLOAD, EVENTS_FILTER),
        "actions": [{"lambda": {"function": "ingest"}}],
        "error_action": ERROR_ACTION,
    },
    {
        # Cold path: every telemetry batch into DynamoDB through ingest, by way of an SQS queue that
        # ingest drains in batches (cloud/resources.py EVENT_SOURCES says why). The raw archive in S3
        # (raw/<device>/<YYYY>/<MM>/<DD>/<HH>.jsonl) is written by the hourly aggregate job, one
        # object per device-hour: an S3 action here would cost one PUT per message, which alone
        # is ~$0.43 per device-month at one message every 30 s (docs/cloud-figures.md).
        "name": contract.RULE_TELEMETRY,
        "sql": "SELECT %s FROM '%s'" % (ORIGINAL_PAYLOAD, TELEMETRY_FILTER),
        "actions": [{"sqs": {"queue": "telemetry_queue"}}],
        "error_action": ERROR_ACTION,
        # Telemetry arrives on the device topic, not through Basic Ingest ($aws/rules/<rule>/...):
        # the device policy grants no Basic Ingest topic (provisioning/policy.py says why).
    },
]

# The dashboard's audit trail and presence, written by DynamoDB actions with no function in between
# (cloud/domain/commands.py says what the items hold). The device is the topic's (the authenticated
# identity), never the payload's.
RULES += [
    {
        # Each command's ack under the key its command's lookup uses; WHERE drops an ack without an id,
        # which could not be matched with a command anyway.
        "name": contract.RULE_ACKS,
        "sql": ("SELECT topic(2) AS device, concat('%s', id) AS sk, id, cmd, ok, result, state, speed, boot, "
                "timestamp() AS acked_ms FROM '%s' WHERE NOT isUndefined(id)" % (
                    ACK_PREFIX, contract.topic_filter(contract.ACK))),
        "actions": [{"dynamoDBv2": {"table": "commands"}}],
        "error_action": ERROR_ACTION,
    },
    {
        # The retained status: online on connect, offline as the Will when the connection is lost.
        "name": contract.RULE_STATUS,
        "sql": "SELECT topic(2) AS device, online, boot, fw, timestamp() AS status_ms FROM '%s'" % (
            contract.topic_filter(contract.STATUS)),
        "actions": [{"dynamoDBv2": {"table": "presence"}}],
        "error_action": ERROR_ACTION,
    },
]

TARGETS = resources.TARGETS


def target(name: str) -> str:
    """The physical resource an action names: a logical name from TARGETS, or a name used as is."""
    return TARGETS.get(name, name)


def rule(name):
    for r in RULES:
        if r["name"] == name:
            return r
    raise KeyError("no rule named %r (rules: %s)" % (name, ", ".join(r["name"] for r in RULES)))

