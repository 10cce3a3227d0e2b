"""The policy evaluator, one behaviour per test, each beside the AWS IoT Core doc section it comes from
(provisioning/policy_eval.py names them), and the device policy held to what the board must and must not do."""

import pytest

import contract
from provisioning import policy
from provisioning.policy_eval import (Context, PolicyError, connect_attributes, connect_requests, evaluate,
                                      evaluate_all, publish_requests)

ARN = "arn:aws:iot:us-east-1:123456789012:"
ME = Context(thing="motor-1", client_id="motor-1")


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource, **extra):
    return dict({"Effect": "Allow", "Action": action, "Resource": resource}, **extra)


# ------------------------------------------------------------------ "AWS IoT Core policy actions"

def test_each_action_names_its_resource_type():
    d = doc(allow("iot:Connect", ARN + "client/c1"), allow("iot:Publish", ARN + "topic/a/b"),
            allow("iot:Subscribe", ARN + "topicfilter/a/b"), allow("iot:Receive", ARN + "topic/a/b"))
    ctx = Context(thing=None, client_id="c1")
    assert evaluate(d, "iot:Connect", "c1", ctx)
    assert evaluate(d, "iot:Publish", "a/b", ctx)
    assert evaluate(d, "iot:Subscribe", "a/b", ctx)
    assert evaluate(d, "iot:Receive", "a/b", ctx)
    # A topic grant is not a topic-filter grant, nor the other way round.
    assert not evaluate(doc(allow("iot:Subscribe", ARN + "topic/a/b")), "iot:Subscribe", "a/b", ctx)
    assert not evaluate(doc(allow("iot:Receive", ARN + "topicfilter/a/b")), "iot:Receive", "a/b", ctx)


def test_an_unknown_action_is_an_error_not_a_denial():
    with pytest.raises(PolicyError, match="unknown action"):
        evaluate(doc(allow("iot:*", "*")), "iot:Teleport", "x", ME)


# ------------------------------------------------------------------ "Retained message policy examples"

def test_a_retained_publish_needs_publish_and_retain_publish():
    only_publish = doc(allow("iot:Publish", ARN + "topic/s"))
    both = doc(allow(["iot:Publish", "iot:RetainPublish"], ARN + "topic/s"))
    assert evaluate_all(only_publish, publish_requests("s", retain=False), ME)
    denied = evaluate_all(only_publish, publish_requests("s", retain=True), ME)
    assert not denied and "iot:RetainPublish" in denied.reason
    assert evaluate_all(both, publish_requests("s", retain=True), ME)


def test_a_retained_will_is_checked_at_connect():
    d = doc(allow("iot:Connect", ARN + "client/c1"), allow("iot:Publish", ARN + "topic/will"))
    ctx = Context(thing=None, client_id="c1")
    assert evaluate_all(d, connect_requests("c1", "will", will_retain=False), ctx)
    assert not evaluate_all(d, connect_requests("c1", "will", will_retain=True), ctx)
    assert not evaluate_all(d, connect_requests("c1", "elsewhere"), ctx)


# ------------------------------------------------------------------ evaluation logic

def test_default_deny_and_explicit_deny_wins():
    ctx = Context(thing=None, client_id="client1")
    assert not evaluate(doc(allow("iot:Publish", ARN + "topic/x")), "iot:Connect", "client1", ctx)
    d = doc({"Effect": "Deny", "Action": "iot:Connect", "Resource": ARN + "client/client1"},
            allow("iot:Connect", ARN + "client/*"))
    decision = evaluate(d, "iot:Connect", "client1", ctx)
    assert not decision and "explicitly denied" in decision.reason
    assert evaluate(d, "iot:Connect", "client2", Context(thing=None, client_id="client2"))


def test_a_deny_in_another_attached_policy_wins_too():
    granting = doc(allow("iot:*", "*"))
    denying = doc({"Effect": "Deny", "Action": "iot:Publish", "Resource": ARN + "topic/secret"})
    assert not evaluate([granting, denying], "iot:Publish", "secret", ME)
    assert evaluate([granting, denying], "iot:Publish", "open", ME)


def test_action_and_resource_wildcards():
    d = doc(allow("iot:Pub*", ARN + "topic/devices/*/telemetry"), allow("iot:Receive", ARN + "topic/a/?"))
    assert evaluate(d, "iot:Publish", "devices/x/y/telemetry", ME)  # * crosses /
    assert not evaluate(d, "iot:Publish", "devices/x/events", ME)
    assert evaluate(d, "iot:Receive", "a/b", ME)
    assert not evaluate(d, "iot:Receive", "a/bc", ME)
    assert evaluate(doc(allow("IOT:PUBLISH", ARN + "topic/t")), "iot:Publish", "t", ME)  # actions ignore case
    assert not evaluate(doc(allow("iot:Publish", ARN + "topic/T")), "iot:Publish", "t", ME)  # resources do not


# ------------------------------------------------------------------ "Using wildcard characters in MQTT and AWS IoT Core policies"

def test_mqtt_wildcards_are_plain_characters_in_a_policy():
    d = doc(allow("iot:Subscribe", ARN + "topicfilter/devices/+/cmd"))
    assert evaluate(d, "iot:Subscribe", "devices/+/cmd", ME)
    assert not evaluate(d, "iot:Subscribe", "devices/motor-1/cmd", ME)
    assert not evaluate(doc(allow("iot:Subscribe", ARN + "topicfilter/devices/#")), "iot:Subscribe", "devices/a/cmd", ME)


# ------------------------------------------------------------------ "Policy variables"

def test_thing_and_client_id_variables():
    d = doc(allow("iot:Publish", ARN + "topic/devices/${iot:Connection.Thing.ThingName}/*"),
            allow("iot:Subscribe", ARN + "topicfilter/c/${iot:ClientId}"))
    assert evaluate(d, "iot:Publish", "devices/motor-1/status", ME)
    assert not evaluate(d, "iot:Publish", "devices/motor-2/status", ME)
    assert evaluate(d, "iot:Subscribe", "c/motor-1", ME)


def test_an_unresolved_variable_leaves_its_statement_out():
    d = doc(allow("iot:Publish", ARN + "topic/devices/${iot:Connection.Thing.ThingName}/x"))
    unattached = Context(thing=None, client_id="motor-1")
    assert not evaluate(d, "iot:Publish", "devices//x", unattached)
    assert not evaluate(d, "iot:Publish", "devices/motor-1/x", unattached)


def test_a_variables_value_is_never_a_wildcard_and_escapes_are_literal():
    d = doc(allow("iot:Publish", ARN + "topic/d/${iot:ClientId}"), allow("iot:Receive", ARN + "topic/q${?}"))
    star = Context(thing=None, client_id="*")
    assert evaluate(d, "iot:Publish", "d/*", star)
    assert not evaluate(d, "iot:Publish", "d/anything", star)
    assert evaluate(d, "iot:Receive", "q?", ME)
    assert not evaluate(d, "iot:Receive", "qx", ME)


# ------------------------------------------------------------------ conditions ("Connect policy examples")

def test_is_attached_condition():
    d = doc(allow("iot:Connect", ARN + "client/${iot:Connection.Thing.ThingName}",
                  Condition={"Bool": {"iot:Connection.Thing.IsAttached": "true"}}))
    assert evaluate(d, "iot:Connect", "motor-1", ME)
    assert not evaluate(d, "iot:Connect", "motor-2", ME)  # another thing's client id
    assert not evaluate(d, "iot:Connect", "motor-1", Context(thing=None, client_id="motor-1"))


def test_connect_attributes_for_all_values():
    d = doc(allow("iot:Connect", ARN + "client/c", Condition={
        "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}))

    def ctx(clean, will):
        return Context(thing=None, client_id="c", connect_attributes=connect_attributes(clean, will))

    assert evaluate(d, "iot:Connect", "c", ctx(clean=True, will=True))
    assert evaluate(d, "iot:Connect", "c", ctx(clean=True, will=False))  # no attribute at all: vacuously true
    assert not evaluate(d, "iot:Connect", "c", ctx(clean=False, will=True))  # PersistentConnect not listed
    any_value = doc(allow("iot:Connect", ARN + "client/c", Condition={
        "ForAnyValue:StringEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}}))
    assert evaluate(any_value, "iot:Connect", "c", ctx(clean=False, will=False))
    assert not evaluate(any_value, "iot:Connect", "c", ctx(clean=True, will=True))


def test_string_conditions_and_if_exists():
    like = doc(allow("iot:Connect", "*", Condition={"StringLike": {"iot:ClientId": "motor-*"}}))
    assert evaluate(like, "iot:Connect", "motor-9", Context(thing=None, client_id="motor-9"))
    assert not evaluate(like, "iot:Connect", "pump-1", Context(thing=None, client_id="pump-1"))
    not_eq = doc(allow("iot:Connect", "*", Condition={"StringNotEquals": {"iot:ClientId": ["a", "b"]}}))
    assert not evaluate(not_eq, "iot:Connect", "a", Context(thing=None, client_id="a"))
    assert evaluate(not_eq, "iot:Connect", "c", Context(thing=None, client_id="c"))
    thing_cond = {"StringEquals": {"iot:Connection.Thing.ThingName": "motor-1"}}
    assert not evaluate(doc(allow("iot:Connect", "*", Condition=thing_cond)), "iot:Connect", "x",
                        Context(thing=None, client_id="x"))
    if_exists = {"StringEqualsIfExists": {"iot:Connection.Thing.ThingName": "motor-1"}}
    assert evaluate(doc(allow("iot:Connect", "*", Condition=if_exists)), "iot:Connect", "x",
                    Context(thing=None, client_id="x"))


@pytest.mark.parametrize("bad, message", [
    ({"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"}, "NotAction"),
    ({"Effect": "Maybe", "Action": "iot:Publish", "Resource": "*"}, "Effect"),
    ({"Effect": "Allow", "Action": 3, "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": "iot:Publish", "Resource": "*", "Condition": {"NumericLessThan": {"x": "1"}}},
     "NumericLessThan"),
    ({"Effect": "Allow", "Action": "iot:Publish", "Resource": "*", "Condition": {"StringEquals": {"aws:Whatever": "1"}}},
     "aws:Whatever"),
])
def test_what_it_cannot_decide_is_an_error_never_an_allow(bad, message):
    with pytest.raises(PolicyError, match=message):
        evaluate(doc(bad), "iot:Publish", "t", ME)


# ------------------------------------------------------------------ the device policy

DEVICE = policy.document("us-east-1", "123456789012")


def own(kind, thing="motor-1"):
    return contract.topic(thing, kind)


def test_the_device_policy_allows_what_the_board_does():
    will = connect_attributes(clean_session=True, has_will=True)
    ctx = Context(thing="motor-1", client_id="motor-1", connect_attributes=will)
    assert evaluate_all(DEVICE, connect_requests("motor-1", own(contract.STATUS), will_retain=True), ctx)
    for kind in contract.DEVICE_PUBLISHES:
        assert evaluate_all(DEVICE, publish_requests(own(kind), retain=False), ME), kind
    assert evaluate_all(DEVICE, publish_requests(own(contract.STATUS), retain=True), ME)
    assert evaluate(DEVICE, "iot:Subscribe", own(contract.CMD), ME)
    assert evaluate(DEVICE, "iot:Receive", own(contract.CMD), ME)


@pytest.mark.parametrize("action, name, retain", [
    ("iot:Publish", own(contract.TELEMETRY, "motor-2"), False),  # another device's topic
    ("iot:Publish", own(contract.CMD), False),  # its own command topic: only the cloud commands
    ("iot:Publish", own(contract.TELEMETRY), True),  # retained telemetry
    ("iot:Publish", own(contract.EVENTS), True),
    ("iot:Publish", contract.basic_ingest_topic(contract.RULE_TELEMETRY, "motor-1", contract.TELEMETRY), False),
    ("iot:Publish", "$aws/things/motor-1/shadow/update", False),
    ("iot:Subscribe", own(contract.CMD, "motor-2"), False),  # another device's commands
    ("iot:Subscribe", "devices/+/cmd", False),
    ("iot:Subscribe", "devices/#", False),
    ("iot:Subscribe", own(contract.TELEMETRY), False),
    ("iot:Receive", own(contract.CMD, "motor-2"), False),
])
def test_the_device_policy_refuses_everything_else(action, name, retain):
    reqs = publish_requests(name, retain) if action == "iot:Publish" else [(action, name)]
    assert not evaluate_all(DEVICE, reqs, ME)


def test_the_device_policy_refuses_another_client_id_and_a_persistent_session():
    assert not evaluate(DEVICE, "iot:Connect", "motor-2", ME)
    persistent = Context(thing="motor-1", client_id="motor-1",
                         connect_attributes=connect_attributes(clean_session=False, has_will=True))
    assert not evaluate(DEVICE, "iot:Connect", "motor-1", persistent)
    assert not evaluate(DEVICE, "iot:Connect", "motor-1", Context(thing=None, client_id="motor-1"))
