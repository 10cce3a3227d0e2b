"""The local SNS refuses what SNS refuses (cloud/local/actions.py install_sns_limits): a Subject of
100 characters or more, with a line break, a control character or non-ASCII; an empty message; a
message over 256 KiB counted in bytes with its attributes. The client raises SNS's own
InvalidParameterException, as it does for AWS's answer; what SNS takes still goes through."""

from __future__ import annotations

import boto3
import pytest

from cloud import resources
from cloud.local import actions


@pytest.fixture
def sns(aws):
    actions.install_sns_limits()
    client = boto3.client("sns")
    client.topic = client.create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"]
    return client


def refusal(client, **params):
    with pytest.raises(client.exceptions.InvalidParameterException) as caught:
        client.publish(TopicArn=client.topic, **params)
    err = caught.value.response
    assert err["Error"]["Code"] == "InvalidParameter" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Error"]["Message"]


@pytest.mark.parametrize("subject, why", [
    ("x" * 100, "100 characters"),
    ("x" * 250, "250 characters"),
    ("", "0 characters"),
    ("FAULT\non m1", "character 5 is '\\n'"),
    ("FAULT\ron m1", "character 5 is '\\r'"),
    ("FAULT\ton m1", "character 5 is '\\t'"),
    ("FAULT on caf\u00e9", "non-ASCII"),
    (" FAULT on m1", "begins with a space"),
])
def test_a_subject_sns_refuses_is_refused_with_snss_error(sns, subject, why):
    message = refusal(sns, Subject=subject, Message="body")
    assert message.startswith("Invalid parameter: Subject") and why in message


def test_what_sns_takes_goes_through(sns):
    for subject in ("x" * 99, "MotorGuard FAULT on m1: motor too hot", "!?#$%&'()*+,-./:;<=>@[]^_`{|}~ 0 a Z"):
        assert sns.publish(TopicArn=sns.topic, Subject=subject, Message="body")["MessageId"]
    assert sns.publish(TopicArn=sns.topic, Message="x" * actions.SNS_MESSAGE_MAX_BYTES)["MessageId"]


def test_a_message_is_measured_in_bytes_with_its_attributes(sns):
    assert "Message too long" in refusal(sns, Message="x" * (actions.SNS_MESSAGE_MAX_BYTES + 1))
    # 140,000 characters, 280,000 bytes of UTF-8: within moto's count of characters, over SNS's of bytes.
    assert "280000 bytes" in refusal(sns, Message="\u00e9" * 140_000)
    near = "x" * (actions.SNS_MESSAGE_MAX_BYTES - 20)
    assert sns.publish(TopicArn=sns.topic, Message=near)["MessageId"]
    assert "Message too long" in refusal(sns, Message=near, MessageAttributes={
        "origin": {"DataType": "String", "StringValue": "a-long-enough-value"}})
    assert refusal(sns, Message="") == "Invalid parameter: Empty message"


def test_targets_hold_the_engines_sns_action_and_any_session_to_the_limits(aws):
    session = boto3.Session()
    targets = actions.Targets(session)
    with pytest.raises(session.client("sns").exceptions.InvalidParameterException):
        targets.run("sns", {"topic": "alerts"}, "\u00e9" * 140_000, lambda key: None)
    assert targets.run("sns", {"topic": "alerts"}, '{"ok": true}', lambda key: None) is None
    assert actions.install_sns_limits(session) is False, "installed once"


def test_the_check_names_each_problem():
    assert actions.sns_publish_problem({"Subject": "fine", "Message": "fine"}) is None
    assert actions.sns_publish_problem({"Message": "no subject is fine too"}) is None
    assert "character 3 is '\\x00'" in actions.sns_publish_problem({"Subject": "abc\x00", "Message": "m"})
