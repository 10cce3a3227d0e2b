"""The least-privilege AWS IoT policy every device gets, built from the fleet contract's topics.

One policy for the whole fleet: policy variables make it per-device. A device may connect
only with its own thing name as client id and only while its certificate is attached to
that thing, publish only to its own devices/<thing>/ topics (and its Basic Ingest
telemetry topic), and subscribe to and receive only its own command topic.
The CDK stack (cloud/infra) deploys the same document; the local broker's ACL
(cloud/local/broker_config.py) grants a device the same topics.
"""

from __future__ import annotations

import json

import contract

POLICY_NAME = "motorguard-device"
THING = "${iot:Connection.Thing.ThingName}"
# The device's topics (contract/__init__.py; the firmware's copy names the same).
PUBLISH_TOPICS = contract.DEVICE_PUBLISHES
COMMAND_TOPIC = contract.CMD


def document(region: str = "*", account: str = "*") -> dict:
    arn = "arn:aws:iot:%s:%s:" % (region, account)
    publish = [arn + "topic/" + contract.topic(THING, t) for t in PUBLISH_TOPICS]
    publish.append(arn + "topic/" + contract.basic_ingest_topic(contract.RULE_TELEMETRY, THING, contract.TELEMETRY))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsItself",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": arn + "client/" + THING,
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {"Sid": "PublishOwnTopics", "Effect": "Allow", "Action": "iot:Publish", "Resource": publish},
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
