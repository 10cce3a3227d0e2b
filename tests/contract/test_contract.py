"""What must agree with the fleet contract (contract/__init__.py), held to it: the JSON schemas
(schemas/v1), the IoT rules (cloud/rules.py) and the IoT resources of the synthesized CDK stack
(topic rules, the device policy, the api's right to publish commands).

The expectations are written from the contract and from what each part is for, never read from the
code under test: a schema, a rule or a stack resource that drifts from the contract fails here."""

from __future__ import annotations

import json
import pathlib
import re

import jsonschema_rs
import pytest

import contract
from tests.cloud.infra.cfn_text import text_of

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "v1"
THING_VAR = "${iot:Connection.Thing.ThingName}"  # AWS IoT's policy variable for the connected thing
# What each rule is for (docs/cloud.md): the alert and events rules read events, the telemetry rule telemetry.
RULE_READS = {contract.RULE_ALERTS: contract.EVENTS, contract.RULE_EVENTS: contract.EVENTS,
              contract.RULE_TELEMETRY: contract.TELEMETRY, contract.RULE_ACKS: contract.ACK,
              contract.RULE_STATUS: contract.STATUS}
NAMES = ["m1", "motor-001", "a:_-" * 32, "A" * 128, "", "x" * 129, "bad name", "caf\u00e9", "m1\n", "a/b", "+", "#"]


def schema(kind: str) -> dict:
    return json.loads((SCHEMAS / (kind + ".schema.json")).read_text())


def from_filter(sql: str) -> str:
    """The topic filter of an IoT SQL statement's FROM clause."""
    (found,) = re.findall(r"\bFROM '([^']*)'", sql)
    return found


# ------------------------------------------------------------------ the contract itself
def test_every_topic_kind_carries_one_message_kind_and_each_has_a_version():
    assert set(contract.MESSAGE_OF_TOPIC) == set(contract.TOPIC_KINDS)
    assert sorted(contract.MESSAGE_OF_TOPIC.values()) == sorted(contract.MESSAGE_KINDS)
    assert all(isinstance(v, int) and v >= 1 for v in contract.MESSAGE_VERSIONS.values())
    assert set(contract.INGESTED_KINDS) <= set(contract.DEVICE_PUBLISHES)
    assert not set(contract.DEVICE_PUBLISHES) & set(contract.DEVICE_SUBSCRIBES)
    assert contract.parse_topic(contract.topic("m1", contract.CMD)) == ("m1", contract.CMD)
    assert contract.parse_topic("devices/bad name/telemetry") is None


# ------------------------------------------------------------------ schemas/v1
def test_there_is_one_schema_per_message_kind():
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(k + ".schema.json"
                                                                         for k in contract.MESSAGE_KINDS)


@pytest.mark.parametrize("topic_kind", contract.TOPIC_KINDS)
def test_each_schema_holds_the_contracts_version_and_topic(topic_kind):
    kind = contract.MESSAGE_OF_TOPIC[topic_kind]
    doc = schema(kind)
    assert doc["properties"]["v"]["const"] == contract.MESSAGE_VERSIONS[kind] and "v" in doc["required"]
    assert "(%s" % contract.topic("<thing>", topic_kind) in doc["title"], doc["title"]


@pytest.mark.parametrize("topic_kind", contract.TOPIC_KINDS)
def test_a_message_a_device_publishes_names_its_device_by_the_contracts_thing_rule(topic_kind):
    doc = schema(contract.MESSAGE_OF_TOPIC[topic_kind])
    if topic_kind in contract.DEVICE_SUBSCRIBES:
        assert "device" not in doc["properties"], "a command is addressed by its topic"
        return
    device = doc["properties"]["device"]
    assert "device" in doc["required"] and device["pattern"] == "^%s$" % contract.THING_NAME_PATTERN
    accepts = jsonschema_rs.validator_for(device)
    for name in NAMES:  # ECMA-262 regex semantics, as every JSON Schema validator applies them
        assert accepts.is_valid(name) is contract.is_thing_name(name), name


def test_the_command_schema_is_the_version_the_api_sends():
    from cloud.lambdas import api

    assert schema("command")["properties"]["v"]["const"] == contract.MESSAGE_VERSIONS["command"] == 2
    assert api.COMMAND_VERSION == 2 and api.COMMAND == "command"


# ------------------------------------------------------------------ cloud/rules.py
def test_the_rules_are_the_contracts_and_read_its_topic_filters():
    from cloud import rules

    assert [r["name"] for r in rules.RULES] == list(contract.RULE_NAMES)
    for r in rules.RULES:
        assert re.fullmatch("[a-zA-Z0-9_]+", r["name"]), "AWS IoT's rule for rule names"
        assert from_filter(r["sql"]) == contract.topic_filter(RULE_READS[r["name"]]), r["name"]
    assert set(contract.INGESTED_KINDS) <= set(RULE_READS.values()), "every kind ingest stores has a rule"
    assert [r["name"] for r in rules.RULES if r.get("basic_ingest")] == []  # one telemetry path: the device topic


# ------------------------------------------------------------------ the CDK stack
@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The stack synthesized with a stand-in code asset: its IoT resources do not depend on the code."""
    cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")
    from aws_cdk.assertions import Template

    from cloud.infra.stack import MotorGuardStack

    code = tmp_path_factory.mktemp("asset")
    (code / "placeholder.txt").write_text("the IoT resources do not read the code")
    stack = MotorGuardStack(cdk.App(), "Contract", code_dir=str(code),
                            env=cdk.Environment(account="123456789012", region="us-east-1"))
    return Template.from_stack(stack).to_json()


def resources_of(template, kind):
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_the_stacks_topic_rules_are_the_contracts(template):
    deployed = {p["RuleName"]: p["TopicRulePayload"]["Sql"] for p in resources_of(template, "AWS::IoT::TopicRule")}
    assert sorted(deployed) == sorted(contract.RULE_NAMES)
    for name, sql in deployed.items():
        assert from_filter(sql) == contract.topic_filter(RULE_READS[name]), name


def test_the_stack_leaves_the_device_policy_to_provisioning(template):
    assert resources_of(template, "AWS::IoT::Policy") == []  # one owner: provision device / policy update


def test_the_device_policy_names_only_the_things_own_topics_of_the_contract():
    from provisioning import policy

    arn = "arn:aws:iot:us-east-1:123456789012:"
    by_action = {}
    for st in policy.document("us-east-1", "123456789012")["Statement"]:
        assert st["Effect"] == "Allow"
        found = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        by_action.setdefault(st["Action"], []).extend(found)
    assert sorted(by_action) == ["iot:Connect", "iot:Publish", "iot:Receive", "iot:RetainPublish", "iot:Subscribe"]
    assert by_action["iot:Connect"] == [arn + "client/" + THING_VAR]
    publish = {arn + "topic/" + contract.topic(THING_VAR, k) for k in contract.DEVICE_PUBLISHES}
    assert sorted(by_action["iot:Publish"]) == sorted(publish)
    assert by_action["iot:RetainPublish"] == [arn + "topic/" + contract.topic(THING_VAR, contract.STATUS)]
    assert by_action["iot:Subscribe"] == [arn + "topicfilter/" + contract.topic(THING_VAR, k)
                                          for k in contract.DEVICE_SUBSCRIBES]
    assert by_action["iot:Receive"] == [arn + "topic/" + contract.topic(THING_VAR, k) for k in contract.DEVICE_SUBSCRIBES]


def test_the_api_alone_may_publish_and_only_to_the_contracts_command_topics(template):
    from cloud import resources

    res = template["Resources"]
    (api_role,) = [r["Properties"]["Role"]["Fn::GetAtt"][0] for r in res.values() if r["Type"] == "AWS::Lambda::Function"
                   and r["Properties"].get("FunctionName") == resources.function_name("api")]
    granted = []
    for p in res.values():
        if p["Type"] != "AWS::IAM::Policy":
            continue
        for st in p["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith("iot:") for a in actions) and actions != ["iot:DescribeThing"]:
                granted.append((p["Properties"]["Roles"], actions, text_of(st["Resource"])))
    assert granted == [([{"Ref": api_role}], ["iot:Publish"],
                        "arn:aws:iot:us-east-1:123456789012:topic/" + contract.topic("*", contract.CMD))]
