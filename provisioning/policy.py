"""The least-privilege AWS IoT policy every device gets, built from the firmware's topics.

One policy for the whole fleet: policy variables make it per-device. A device may connect
only with its own thing name as client id and only while its certificate is attached to
that thing, publish only to its own devices/<thing>/ topics (and its Basic Ingest
telemetry topic), and subscribe to and receive only its own command topic.
The CDK stack (cloud/infra) deploys the same document.
"""

from __future__ import annotations

import json

from cloud import rules

POLICY_NAME = "motorguard-device"
THING = "${iot:Connection.Thing.ThingName}"
# The device's topics, as firmware/motorguard/config.py DEFAULTS["topics"] names them.
PUBLISH_TOPICS = ("telemetry", "events", "status", "ack")
COMMAND_TOPIC = "cmd"


def document(region: str = "*", account: str = "*") -> dict:
    arn = "arn:aws:iot:%s:%s:" % (region, account)
    own = "devices/%s/" % THING
    publish = [arn + "topic/" + own + t for t in PUBLISH_TOPICS]
    publish.append(arn + "topic/" + rules.basic_ingest_topic("motorguard_telemetry", own + "telemetry"))
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
                "Resource": arn + "topicfilter/" + own + COMMAND_TOPIC,
            },
            {
                "Sid": "ReceiveOwnCommands",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn + "topic/" + own + COMMAND_TOPIC,
            },
        ],
    }


def document_json(region: str = "*", account: str = "*") -> str:
    return json.dumps(document(region, account), sort_keys=True)
