"""The CDK stack, synthesized once, checked with aws_cdk.assertions against cloud/rules.py,
cloud/resources.py and the device policy."""

from __future__ import annotations

import json

import pytest

from cloud import resources, rules
from provisioning import policy

cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")
from aws_cdk.assertions import Match, Template  # noqa: E402


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    from cloud.infra.package import stage

    return stage(tmp_path_factory.mktemp("lambda"))


@pytest.fixture(scope="module")
def template(code):
    from cloud.infra.stack import MotorGuardStack

    app = cdk.App()
    stack = MotorGuardStack(app, "Test", code_dir=str(code),
                            env=cdk.Environment(account="123456789012", region="us-east-1"))
    return Template.from_stack(stack)


def test_the_lambda_asset_bundles_the_tested_versions_built_for_the_functions_platform(code):
    from importlib.metadata import version

    from cloud.infra.package import bundled_requirements

    assert (code / "cloud" / "lambdas" / "ingest.py").is_file() and (code / "schemas" / "v1").is_dir()
    for req in bundled_requirements():
        name, pinned = req.split("==")
        assert version(name) == pinned, "the tests ran %s %s, the asset ships %s" % (name, version(name), pinned)
        module = name.replace("-", "_")
        wheel = (code / ("%s-%s.dist-info" % (module, pinned)) / "WHEEL").read_text()
        tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
        assert tags and all("manylinux" in t and t.endswith("_x86_64") for t in tags), (req, tags)
        assert any(t.startswith(("cp312-", "cp310-abi3", "cp38-abi3", "cp39-abi3", "cp311-abi3")) for t in tags), tags
        assert list((code / module).glob("*.so")), "no compiled module for " + req
    assert not list(code.rglob("__pycache__"))


def test_each_rule_from_the_single_definition(template):
    found = template.find_resources("AWS::IoT::TopicRule")
    by_name = {r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"] for r in found.values()}
    assert set(by_name) == {r["name"] for r in rules.RULES}
    for spec in rules.RULES:
        payload = by_name[spec["name"]]
        assert payload["Sql"] == spec["sql"]
        assert payload["AwsIotSqlVersion"] == "2016-03-23"
        assert "Sqs" in payload["ErrorAction"]
        assert len(payload["Actions"]) == len(spec["actions"])


def test_lambda_invoke_permissions_for_iot(template):
    perms = template.find_resources("AWS::Lambda::Permission", {"Properties": {"Principal": "iot.amazonaws.com"}})
    wanted = sum(1 for r in rules.RULES for a in r["actions"] if "lambda" in a)
    assert len(perms) == wanted
    for p in perms.values():
        assert "SourceArn" in p["Properties"]


def test_tables(template):
    for name, pk, sk, ttl in resources.TABLES.values():
        props = {"TableName": name, "BillingMode": "PAY_PER_REQUEST",
                 "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                 "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}] + (
                     [{"AttributeName": sk, "KeyType": "RANGE"}] if sk else [])}
        if ttl:
            props["TimeToLiveSpecification"] = {"AttributeName": ttl, "Enabled": True}
        template.has_resource_properties("AWS::DynamoDB::Table", props)


def test_bucket_is_private_encrypted_and_ages_to_glacier(template):
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "Status": "Enabled", "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}]})]},
    })
    policy_doc = json.dumps(template.find_resources("AWS::S3::BucketPolicy"))
    assert "aws:SecureTransport" in policy_doc


def test_api_requires_iam_auth(template):
    methods = template.find_resources("AWS::ApiGateway::Method")
    real = [m for m in methods.values() if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert real and all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in real)


def test_hourly_schedule_targets_aggregate(template):
    template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "cron(5 * * * ? *)"})


def test_alarms(template):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    metrics = sorted((a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms.values())
    assert metrics.count(("AWS/Lambda", "Errors")) == len(resources.FUNCTIONS)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert metrics.count(("AWS/IoT", "Failure")) == len(rules.RULES)
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())


def test_functions(template):
    for logical, handler in resources.FUNCTIONS.items():
        template.has_resource_properties("AWS::Lambda::Function", {
            "FunctionName": resources.function_name(logical), "Handler": handler, "Runtime": "python3.12",
            "Layers": [Match.string_like_regexp("AWSLambdaPowertoolsPythonV3-python312-x86_64")]})


def test_device_policy_statement_by_statement(template):
    found = template.find_resources("AWS::IoT::Policy")
    (doc,) = [r["Properties"]["PolicyDocument"] for r in found.values()]
    assert doc == policy.document("us-east-1", "123456789012")
    actions = [s["Action"] for s in doc["Statement"]]
    assert "iot:*" not in actions and sorted(actions) == ["iot:Connect", "iot:Publish", "iot:Receive", "iot:Subscribe"]


def test_no_wildcard_iam_actions(template):
    text = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert '"iot:*"' not in text and '"dynamodb:*"' not in text and '"s3:*"' not in text


def test_each_sqs_action_sends_to_the_queue_its_rule_names(template):
    queues = template.find_resources("AWS::SQS::Queue")
    logical_of = {q["Properties"]["QueueName"]: lid for lid, q in queues.items()}
    found = template.find_resources("AWS::IoT::TopicRule")
    by_name = {r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"] for r in found.values()}
    for spec in rules.RULES:
        sent = [a["Sqs"]["QueueUrl"]["Ref"] for a in by_name[spec["name"]]["Actions"] if "Sqs" in a]
        wanted = [logical_of[rules.TARGETS[a["sqs"]["queue"]]] for a in spec["actions"] if "sqs" in a]
        assert sent == wanted
        assert by_name[spec["name"]]["ErrorAction"]["Sqs"]["QueueUrl"]["Ref"] == logical_of[resources.DEAD_LETTER_QUEUE]


def test_queue_fed_lambdas_drain_their_queue_in_batches(template):
    queues = template.find_resources("AWS::SQS::Queue")
    logical_of = {q["Properties"]["QueueName"]: lid for lid, q in queues.items()}
    for src in resources.EVENT_SOURCES.values():
        q = queues[logical_of[src["queue"]]]["Properties"]
        assert q["VisibilityTimeout"] == src["visibility_timeout_s"]
        assert q["MessageRetentionPeriod"] == src["retention_days"] * 86400
        assert q["SqsManagedSseEnabled"] is True
        assert q["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [logical_of[resources.DEAD_LETTER_QUEUE], "Arn"]},
                                      "maxReceiveCount": src["max_receive_count"]}
        template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
            "EventSourceArn": {"Fn::GetAtt": [logical_of[src["queue"]], "Arn"]},
            "BatchSize": src["batch_size"], "MaximumBatchingWindowInSeconds": src["window_s"],
            "FunctionResponseTypes": ["ReportBatchItemFailures"]})
    ages = [a for a in template.find_resources("AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"]
    assert len(ages) == len(resources.EVENT_SOURCES)
