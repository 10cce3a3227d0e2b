"""The CDK stack, synthesized once, checked with aws_cdk.assertions against what it must deploy: the
contract's rules and device topics (contract/__init__.py), the resources of cloud/resources.py, and
least privilege. (tests/contract/test_contract.py holds its IoT resources to the contract too.)"""

from __future__ import annotations

import json
import re

import pytest

import contract
from cloud import resources, rules
from tests.cloud.infra.cfn_text import text_of

cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")
from aws_cdk.assertions import Match, Template  # noqa: E402


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    from cloud.infra.package import stage

    return stage(tmp_path_factory.mktemp("lambda"))


def synthesize(code, **context) -> Template:
    from cloud.infra.stack import MotorGuardStack

    app = cdk.App(context=context)
    stack = MotorGuardStack(app, "Test", code_dir=str(code),
                            env=cdk.Environment(account="123456789012", region="us-east-1"))
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(code):
    return synthesize(code)


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
    (bucket,) = [lid for lid in template.find_resources("AWS::S3::Bucket") if lid.startswith("Archive")]
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
    contract.RULE_ACKS: (contract.ACK, None, ("DynamoDBv2", resources.TABLES["commands"][0])),
    contract.RULE_STATUS: (contract.STATUS, None, ("DynamoDBv2", resources.TABLES["presence"][0])),
}


def test_each_topic_rule_reads_the_contracts_topic_and_sends_the_payload_as_published(template):
    found = template.find_resources("AWS::IoT::TopicRule")
    by_name = {r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"] for r in found.values()}
    assert sorted(by_name) == sorted(contract.RULE_NAMES) == sorted(DEPLOYED_RULES)
    queues = {q["Properties"]["QueueName"]: lid for lid, q in template.find_resources("AWS::SQS::Queue").items()}
    functions = {f["Properties"]["FunctionName"]: lid for lid, f in template.find_resources("AWS::Lambda::Function").items()}
    tables = {t["Properties"]["TableName"]: lid for lid, t in template.find_resources("AWS::DynamoDB::Table").items()}
    for name, (kind, where, (action, target)) in DEPLOYED_RULES.items():
        payload = by_name[name]
        if action == "DynamoDBv2":  # the audit trail's rules select fields, not the original payload
            assert " FROM '%s'" % contract.topic_filter(kind) in payload["Sql"] and "topic(2) AS device" in payload["Sql"]
            (sent,) = payload["Actions"]
            assert sent["DynamoDBv2"]["PutItem"]["TableName"] == {"Ref": tables[target]}, name
            assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": queues[resources.DEAD_LETTER_QUEUE]}
            continue
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


def test_no_api_route_is_open(template):
    """Every method of every resource, OPTIONS included, is authenticated: AWS_IAM (SigV4), or an
    authorizer it names. A method with AuthorizationType NONE (or none set) would serve anyone."""
    methods = template.find_resources("AWS::ApiGateway::Method")
    resources_ = template.find_resources("AWS::ApiGateway::Resource")
    # the SigV4 routes ({proxy+}) and the dashboard's Cognito routes (api/{proxy+})
    assert {r["Properties"]["PathPart"] for r in resources_.values()} == {"{proxy+}", "api"}
    on = {m["Properties"].get("ResourceId", {}).get("Ref") for m in methods.values()}
    bare = {lid for lid, r in resources_.items() if r["Properties"]["PathPart"] == "api"}  # a path part, no method
    assert not bare & on and set(resources_) - bare <= on and any("Fn::GetAtt" in m["Properties"]["ResourceId"] for m in methods.values()), \
        "the root and the proxy resource both carry methods, so both are checked"
    for lid, m in methods.items():
        props = m["Properties"]
        kind = props.get("AuthorizationType", "NONE")
        assert kind == "AWS_IAM" or (kind in ("CUSTOM", "COGNITO_USER_POOLS") and props.get("AuthorizerId")), (lid, kind)


def test_hourly_schedule_targets_aggregate(template):
    template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "cron(5 * * * ? *)"})


def test_alarms(template):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    metrics = [(a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms.values()]
    assert metrics.count(("AWS/Lambda", "Errors")) == len(resources.FUNCTIONS)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    topic = logical_id(template, "AWS::SNS::Topic", TopicName=resources.ALERTS_TOPIC)
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic}] for a in alarms.values())


# AWS IoT publishes its rule-action metrics (namespace AWS/IoT) with exactly two dimensions, RuleName
# and ActionType (developer guide, "AWS IoT metrics and dimensions", Rule action metrics). A query over
# that schema, filtered on the rule, sums every action type; RuleName alone names no metric.
RULE_ACTION_QUERY = re.compile(r"""SELECT SUM\((\w+)\) FROM SCHEMA\("AWS/IoT", ActionType, RuleName\) WHERE RuleName = '(\w+)'""")


def test_rule_alarms_watch_the_metrics_aws_iot_publishes(template):
    watched = {}
    for a in template.find_resources("AWS::CloudWatch::Alarm").values():
        props = a["Properties"]
        if props.get("Namespace") == "AWS/IoT":
            raise AssertionError("an AWS/IoT metric named by dimensions (%s) misses the ActionType dimension unless "
                                 "it names it" % props.get("Dimensions"))
        for q in props.get("Metrics", []):
            m = RULE_ACTION_QUERY.fullmatch(q.get("Expression", ""))
            if m:
                assert q["Period"] == 300 and q["ReturnData"] is True and props["Threshold"] == 1
                assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
                assert props["TreatMissingData"] == "notBreaching"
                watched[m.groups()] = props["AlarmDescription"]
    names = [r["name"] for r in rules.RULES]
    assert sorted(watched) == sorted((metric, rule) for metric in ("Failure", "ErrorActionFailure") for rule in names)
    assert all(rule in description for (_, rule), description in watched.items())


def test_every_alarm_can_notify_through_the_alerts_topic(template):
    """The topic's policy replaces SNS's default one: it must allow CloudWatch, for this account's alarms
    only, beside the SSL-only Deny; the topic's key must let CloudWatch encrypt what it publishes."""
    topic = logical_id(template, "AWS::SNS::Topic", TopicName=resources.ALERTS_TOPIC)
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [st for st in statements if st["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Principal"] == "*"
    (allow,) = [st for st in statements if st["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish" and allow["Resource"] == {"Ref": topic}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    (source,) = allow["Condition"]["ArnLike"].values()
    assert list(allow["Condition"]["ArnLike"]) == ["aws:SourceArn"]
    assert text_of(source) == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"

    (key,) = template.find_resources("AWS::KMS::Key").values()
    (cloudwatch,) = [st for st in key["Properties"]["KeyPolicy"]["Statement"]
                     if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow" and sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_the_alert_function_may_publish_to_the_alerts_topic(template):
    topic = logical_id(template, "AWS::SNS::Topic", TopicName=resources.ALERTS_TOPIC)
    key = logical_id(template, "AWS::KMS::Key", EnableKeyRotation=True)
    fn = logical_id(template, "AWS::Lambda::Function", FunctionName=resources.function_name("alert"))
    role = template.find_resources("AWS::Lambda::Function")[fn]["Properties"]["Role"]["Fn::GetAtt"][0]
    granted = [st for p in template.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
               for st in p["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert any(st["Action"] == "sns:Publish" and st["Resource"] == {"Ref": topic} for st in granted)
    assert any("kms:GenerateDataKey*" in st["Action"] and st["Resource"] == {"Fn::GetAtt": [key, "Arn"]}
               for st in granted), "the topic is encrypted: publishing needs its key"


def test_functions(template):
    for logical, handler in resources.FUNCTIONS.items():
        template.has_resource_properties("AWS::Lambda::Function", {
            "FunctionName": resources.function_name(logical), "Handler": handler, "Runtime": "python3.12",
            "Layers": [Match.string_like_regexp("AWSLambdaPowertoolsPythonV3-python312-x86_64")]})


def test_the_stack_makes_no_iot_policy_provisioning_owns_the_device_policy(template):
    """provision creates the device policy (provisioning/policy.py) and pushes its new versions; a
    stack-made policy of the same name would make whichever came second fail."""
    assert template.find_resources("AWS::IoT::Policy") == {}
    assert "iot:CreatePolicy" not in json.dumps(template.to_json())


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


def test_every_function_is_deployed_with_its_row_of_the_settings_table(template):
    # cloud/resources.py FUNCTION_SETTINGS, the table the local runtime reads too.
    for logical, row in resources.FUNCTION_SETTINGS.items():
        template.has_resource_properties("AWS::Lambda::Function", {
            "FunctionName": resources.function_name(logical), "Handler": row["handler"],
            "MemorySize": row["memory_mb"], "Timeout": row["timeout_s"], "ReservedConcurrentExecutions": row["reserved"]})


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


def test_reserved_concurrency_off_drops_every_reservation_and_nothing_else(code, template):
    off = synthesize(code, reserved_concurrency="off")
    functions = off.find_resources("AWS::Lambda::Function")
    assert len(functions) == len(resources.FUNCTIONS)
    assert all("ReservedConcurrentExecutions" not in f["Properties"] for f in functions.values())

    def without_reservations(t):
        res = json.loads(json.dumps(t.to_json()["Resources"]))
        for r in res.values():
            r.get("Properties", {}).pop("ReservedConcurrentExecutions", None)
        return res

    assert without_reservations(off) == without_reservations(template)


@pytest.mark.parametrize("value", ["maybe", "0", ""])
def test_a_reserved_concurrency_value_other_than_on_or_off_is_refused(value):
    from cloud.infra.stack import reserves_concurrency

    with pytest.raises(ValueError, match="reserved_concurrency=.*use on or off"):
        reserves_concurrency(value)
    assert reserves_concurrency(None) and reserves_concurrency("on") and not reserves_concurrency("OFF")


def test_what_a_failed_first_create_leaves_behind_is_nothing(template):
    """Every resource kept on delete is RetainExceptOnCreate: kept when the stack is updated or deleted,
    deleted when the create that made it rolls back, so a retry finds the fixed names free."""
    res = template.to_json()["Resources"]
    kept = {lid: r for lid, r in res.items() if r.get("DeletionPolicy", "Delete") != "Delete"}
    assert all(r["DeletionPolicy"] == "RetainExceptOnCreate" for r in kept.values()), \
        {lid: r["DeletionPolicy"] for lid, r in kept.items()}
    assert all(r.get("UpdateReplacePolicy") == "Retain" for r in kept.values())
    kinds = sorted(r["Type"] for r in kept.values())
    assert kinds.count("AWS::DynamoDB::Table") == len(resources.TABLES)
    assert {"AWS::S3::Bucket", "AWS::Logs::LogGroup"} <= set(kinds)
    assert not any("Retain" in r.get("DeletionPolicy", "") for r in res.values() if r not in kept.values())


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


def test_alerts_topic_is_encrypted_with_a_key_of_its_own(template):
    key = logical_id(template, "AWS::KMS::Key", EnableKeyRotation=True)
    template.has_resource_properties("AWS::SNS::Topic", {"TopicName": resources.ALERTS_TOPIC,
                                                         "KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}})


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
