"""The CDK stack, synthesized once, checked with aws_cdk.assertions against what it must deploy: the
contract's rules and device topics (contract/__init__.py), the resources of cloud/resources.py, and
least privilege. (tests/contract/test_contract.py holds its IoT resources to the contract too.)"""

from __future__ import annotations

import json
import re

import pytest

import contract
from cloud import resources, rules

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


IMPORT_FROM_THE_ASSET = """
import importlib, json, sys
for handler in sys.argv[2:]:
    importlib.import_module(handler.rsplit(".", 1)[0])
from cloud.domain import messages
try:
    import cloud.local
    reached = True
except ImportError:
    reached = False
print(json.dumps({"cloud": sys.modules["cloud"].__file__, "schemas": str(messages.schema_dir()),
                  "reached_local": reached, "modules": sorted(sys.modules)}))
"""


LOCAL_ONLY = ("provisioning", "vesp32", "flashing", "hil_tests", "tests")  # and cloud.local


def test_the_handlers_import_from_the_asset_alone_and_never_local_only_code(code):
    """Production Lambdas import nothing local: each handler module imports from the staged asset with
    the repository out of reach (python -S: no editable install), cloud.local is not even there, and no
    module of the local IoT Core, the provisioning tool or the simulator was loaded."""
    import ast
    import subprocess
    import sys
    import sysconfig

    site = sysconfig.get_paths()["purelib"]  # boto3 and Powertools (the runtime and its layer in AWS)
    boot = "import sys; sys.path[:0] = [%r, %r]; sys.argv[1:1] = []; exec(%r)" % (site, str(code), IMPORT_FROM_THE_ASSET)
    r = subprocess.run([sys.executable, "-S", "-c", boot, "-", *resources.FUNCTIONS.values()], capture_output=True,
                       text=True, timeout=120, cwd=str(code), env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["cloud"].startswith(str(code)) and got["schemas"] == str(code / "schemas" / "v1")
    assert not got["reached_local"], "cloud/local is not in the asset"
    local_only = [m for m in got["modules"] if m.split(".")[0] in LOCAL_ONLY or m.startswith("cloud.local")]
    assert local_only == []
    # And no import anywhere in the asset's code, not even one a function makes only in some runtime.
    for path in code.glob("c*/**/*.py"):  # cloud/ and contract/
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in LOCAL_ONLY and not name.startswith("cloud.local"), (path, name)


def test_every_variable_a_handler_reads_is_set_on_every_function(template):
    """What the handlers read (env("..."), table("...") in cloud/lambdas), against what the stack sets,
    each naming the resource its name says."""
    import ast
    import pathlib

    read = set()
    for path in (pathlib.Path(resources.__file__).parent / "lambdas").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("env", "table") and node.args \
                    and isinstance(node.args[0], ast.Constant):
                read.add(node.args[0].value)
    assert {"TELEMETRY_TABLE", "DEVICES_TABLE", "EVENTS_TABLE", "STATE_TABLE", "DEAD_LETTER_QUEUE_NAME"} <= read
    tables = {t["Properties"]["TableName"]: lid for lid, t in template.find_resources("AWS::DynamoDB::Table").items()}
    (bucket,) = template.find_resources("AWS::S3::Bucket")
    functions = template.find_resources("AWS::Lambda::Function")
    assert len(functions) == len(resources.FUNCTIONS)
    for fn in functions.values():
        variables = fn["Properties"]["Environment"]["Variables"]
        assert read <= set(variables), sorted(read - set(variables))
        for var, value in variables.items():
            if var.endswith("_TABLE"):
                assert value == {"Ref": tables["motorguard-" + var[:-len("_TABLE")].lower()]}, var
        assert variables["ARCHIVE_BUCKET"] == {"Ref": bucket}
        assert variables["DEAD_LETTER_QUEUE_NAME"] == resources.DEAD_LETTER_QUEUE
        assert variables["ALERTS_TOPIC_NAME"] == resources.ALERTS_TOPIC
        assert variables["POWERTOOLS_SERVICE_NAME"] == fn["Properties"]["FunctionName"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "MotorGuard"


# What each rule must be, written from docs/cloud.md: what it reads, whether it filters, where it sends.
SELECT_ORIGINAL = "SELECT encode(*, 'base64') AS payload_b64, topic(2) AS thing, topic(3) AS kind, timestamp() AS received_ms"
DEPLOYED_RULES = {
    contract.RULE_ALERTS: (contract.EVENTS, " WHERE event = 'FAULT' OR event = 'ESTOP'", ("Lambda", "alert")),
    contract.RULE_EVENTS: (contract.EVENTS, "", ("Lambda", "ingest")),
    contract.RULE_TELEMETRY: (contract.TELEMETRY, "", ("Sqs", resources.TELEMETRY_QUEUE)),
}


def test_each_topic_rule_reads_the_contracts_topic_and_sends_the_payload_as_published(template):
    found = template.find_resources("AWS::IoT::TopicRule")
    by_name = {r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"] for r in found.values()}
    assert sorted(by_name) == sorted(contract.RULE_NAMES) == sorted(DEPLOYED_RULES)
    queues = {q["Properties"]["QueueName"]: lid for lid, q in template.find_resources("AWS::SQS::Queue").items()}
    functions = {f["Properties"]["FunctionName"]: lid for lid, f in template.find_resources("AWS::Lambda::Function").items()}
    for name, (kind, where, (action, target)) in DEPLOYED_RULES.items():
        payload = by_name[name]
        assert payload["Sql"] == "%s FROM '%s'%s" % (SELECT_ORIGINAL, contract.topic_filter(kind), where), name
        assert payload["AwsIotSqlVersion"] == "2016-03-23" and payload["RuleDisabled"] is False
        (sent,) = payload["Actions"]
        if action == "Lambda":
            assert sent == {"Lambda": {"FunctionArn": {"Fn::GetAtt": [functions[resources.function_name(target)], "Arn"]}}}
        else:
            assert sent["Sqs"]["QueueUrl"] == {"Ref": queues[target]} and sent["Sqs"]["UseBase64"] is False
        assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": queues[resources.DEAD_LETTER_QUEUE]}


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


def test_bucket_is_private_encrypted_versioned_and_ages_to_glacier(template):
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "VersioningConfiguration": {"Status": "Enabled"},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "Status": "Enabled", "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}],
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30}})]},
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


def test_the_device_policy_lets_a_thing_use_only_its_own_topics(template):
    """Least privilege, statement by statement: the connected thing's own client id while its
    certificate is attached, publish to its own topics (and its Basic Ingest telemetry topic),
    subscribe to and receive only its own command topic; no wildcard anywhere."""
    found = template.find_resources("AWS::IoT::Policy")
    (doc,) = [r["Properties"]["PolicyDocument"] for r in found.values()]
    thing = "${iot:Connection.Thing.ThingName}"
    arn = "arn:aws:iot:us-east-1:123456789012:"
    own = "devices/%s/" % thing
    want = {
        ("ConnectAsItself", "iot:Connect"): [arn + "client/" + thing],
        ("PublishOwnTopics", "iot:Publish"): [arn + "topic/" + own + k for k in ("telemetry", "events", "status", "ack")]
        + [arn + "topic/$aws/rules/%s/%stelemetry" % (contract.RULE_TELEMETRY, own)],
        ("SubscribeOwnCommands", "iot:Subscribe"): [arn + "topicfilter/" + own + "cmd"],
        ("ReceiveOwnCommands", "iot:Receive"): [arn + "topic/" + own + "cmd"],
    }
    got = {(st["Sid"], st["Action"]): st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
           for st in doc["Statement"]}
    assert doc["Version"] == "2012-10-17" and all(st["Effect"] == "Allow" for st in doc["Statement"])
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
    (connect,) = [st for st in doc["Statement"] if st["Action"] == "iot:Connect"]
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    resources_named = [r for rs in got.values() for r in rs]
    assert all(thing in r and not re.search(r"[*+#]", r.replace(thing, "")) for r in resources_named), resources_named
    kinds = {r.rsplit("/", 1)[1] for r in resources_named if "/devices/" in r}
    assert kinds == set(contract.TOPIC_KINDS), "the policy's topics are the contract's"


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


def logical_id(template, kind, **props):
    found = template.find_resources(kind, {"Properties": props})
    assert len(found) == 1, (kind, props, list(found))
    return next(iter(found))


def test_asynchronously_invoked_functions_keep_their_failures_in_the_dead_letter_queue(template):
    dlq = logical_id(template, "AWS::SQS::Queue", QueueName=resources.DEAD_LETTER_QUEUE)
    configs = template.find_resources("AWS::Lambda::EventInvokeConfig")
    assert len(configs) == len(resources.ASYNC_FUNCTIONS)
    for logical in resources.ASYNC_FUNCTIONS:
        fn = logical_id(template, "AWS::Lambda::Function", FunctionName=resources.function_name(logical))
        template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
            "FunctionName": {"Ref": fn}, "Qualifier": "$LATEST", "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": resources.ASYNC_MAX_EVENT_AGE_S,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq, "Arn"]}}}})
    # Every function a rule invokes (asynchronously) is one of them, and so is the hourly job.
    invoked = {a["lambda"]["function"] for r in rules.RULES for a in r["actions"] if "lambda" in a}
    assert invoked | {"aggregate"} <= set(resources.ASYNC_FUNCTIONS)
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert policies.count('"sqs:SendMessage"') >= len(resources.ASYNC_FUNCTIONS)
    template.has_resource_properties("AWS::SQS::Queue", {"QueueName": resources.DEAD_LETTER_QUEUE,
                                                         "SqsManagedSseEnabled": True})


def test_every_function_has_a_reserved_concurrency_ceiling(template):
    from cloud.infra.stack import INGEST_QUEUE_CONCURRENCY, RESERVED_CONCURRENCY

    assert set(RESERVED_CONCURRENCY) == set(resources.FUNCTIONS)
    for logical, limit in RESERVED_CONCURRENCY.items():
        template.has_resource_properties("AWS::Lambda::Function", {
            "FunctionName": resources.function_name(logical), "ReservedConcurrentExecutions": limit})
    assert 1000 - sum(RESERVED_CONCURRENCY.values()) >= 100, "AWS keeps 100 of an account's 1,000 unreserved"
    assert INGEST_QUEUE_CONCURRENCY < RESERVED_CONCURRENCY["ingest"], "the queue must leave room for events"
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "ScalingConfig": {"MaximumConcurrency": INGEST_QUEUE_CONCURRENCY}})


def test_api_access_log_names_the_caller_of_each_request(template):
    log = logical_id(template, "AWS::Logs::LogGroup", RetentionInDays=365)
    stages = template.find_resources("AWS::ApiGateway::Stage")
    (stage,) = stages.values()
    setting = stage["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": [log, "Arn"]}
    fields = json.loads(setting["Format"])
    for key in ("userArn", "caller", "sourceIp", "httpMethod", "path", "status", "requestId"):
        assert key in fields or "$context.%s" % key in fields.values(), key
    assert fields["userArn"] == "$context.identity.userArn"
    assert template.find_resources("AWS::ApiGateway::Account"), "API Gateway needs its role to write logs"


def test_alerts_topic_is_encrypted_with_a_key_alarms_and_the_alert_function_may_use(template):
    key = logical_id(template, "AWS::KMS::Key", EnableKeyRotation=True)
    template.has_resource_properties("AWS::SNS::Topic", {"TopicName": resources.ALERTS_TOPIC,
                                                         "KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}})
    statements = template.find_resources("AWS::KMS::Key")[key]["Properties"]["KeyPolicy"]["Statement"]
    assert any(st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} and "kms:GenerateDataKey*" in st["Action"]
               for st in statements), "CloudWatch alarms publish to the topic: they need the key"
    alert_policy = [p for lid, p in template.find_resources("AWS::IAM::Policy").items() if lid.startswith("Fnalert")]
    assert '"kms:GenerateDataKey*"' in json.dumps(alert_policy)


def test_lint_suppressions_give_a_reason_each(template):
    from cloud.infra.stack import CFN_LINT_IGNORES, CHECKOV_SKIPS

    skipped = 0
    for res in template.to_json()["Resources"].values():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_") and len(skip["comment"]) > 20, skip
            skipped += 1
    assert skipped >= sum(len(v) for v in CHECKOV_SKIPS.values())
    ignored = [i for ids in CFN_LINT_IGNORES.values() for i in ids]
    assert all(i.startswith(("W", "I")) for i in ignored), "errors are fixed, not ignored"
