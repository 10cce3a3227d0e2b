"""The least-privilege AWS IoT policy every device gets, built from the fleet contract's topics.

One policy for the whole fleet: policy variables make it per-device. What the board does, and so
all that the policy allows (each statement is held to the shipped firmware's packets by
tests/firmware/mqtt/test_policy_conformance.py):
- connect only with its own thing name as client id, only while its certificate is attached to that
  thing, and only with the connect attributes the board uses: a Last Will, no persistent session
  (iot:ConnectAttributes; ForAllValues also admits a connect with neither, as `provision check` makes);
- publish to its own devices/<thing>/ telemetry, events, status and ack topics;
- publish its status RETAINED (the "online" message and the retained "offline" Will): AWS IoT Core
  needs iot:RetainPublish beside iot:Publish for that, and closes the connection of a client whose
  publish its policy denies;
- subscribe to and receive only its own command topic.
Telemetry goes to the device topic, not through Basic Ingest ($aws/rules/...): observers (the HIL
rig, `provision check`, the tests) read it there, and the cost figures price that path (docs/cloud.md).

Provisioning owns this policy in AWS (docs/provisioning.md, "The device policy"): `provision device`
creates it when missing and `provision policy update` makes a changed document the default version
for a fleet in the field. The local IoT Core's gateway (cloud/local/gateway.py) enforces this very
document with provisioning/policy_eval.py.
"""

from __future__ import annotations

import json

import contract

POLICY_NAME = "motorguard-device"
THING = "${iot:Connection.Thing.ThingName}"
# The device's topics (contract/__init__.py; the firmware's copy names the same).
PUBLISH_TOPICS = contract.DEVICE_PUBLISHES
RETAINED_TOPICS = (contract.STATUS,)  # "online" on every connect; "offline" as the retained Will
COMMAND_TOPIC = contract.CMD
# What a device's CONNECT may carry (iot:ConnectAttributes): its Will. Not PersistentConnect: the
# board always asks for a clean session, and a persistent one would queue commands while it is away.
CONNECT_ATTRIBUTES = ("LastWill",)


def document(region: str = "*", account: str = "*") -> dict:
    arn = "arn:aws:iot:%s:%s:" % (region, account)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsItself",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": arn + "client/" + THING,
                "Condition": {
                    "Bool": {"iot:Connection.Thing.IsAttached": "true"},
                    "ForAllValues:StringEquals": {"iot:ConnectAttributes": list(CONNECT_ATTRIBUTES)},
                },
            },
            {
                "Sid": "PublishOwnTopics",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [arn + "topic/" + contract.topic(THING, t) for t in PUBLISH_TOPICS],
            },
            {
                "Sid": "RetainOwnStatus",
                "Effect": "Allow",
                "Action": "iot:RetainPublish",
                "Resource": [arn + "topic/" + contract.topic(THING, t) for t in RETAINED_TOPICS],
            },
            {
                "Sid": "SubscribeOwnCommands",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": arn + "topicfilter/" + contract.topic(THING, COMMAND_TOPIC),
            },
            {
                "Sid": "ReceiveOwnCommands",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn + "topic/" + contract.topic(THING, COMMAND_TOPIC),
            },
        ],
    }


def document_json(region: str = "*", account: str = "*") -> str:
    return json.dumps(document(region, account), sort_keys=True)
