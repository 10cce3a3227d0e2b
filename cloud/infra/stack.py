"""The MotorGuard cloud as an AWS CDK v2 stack, built from the same definitions the local IoT Core runs:
cloud/resources.py (tables, bucket, topic, queue, functions) and cloud/rules.py (topic rules).
cfn-lint and checkov check the synthesized template (tests/cloud/infra/test_cfn_lint.py); what they flag
that does not apply here is suppressed on the resource, with the reason (CHECKOV_SKIPS, CFN_LINT_IGNORES)."""

from __future__ import annotations

import json

from aws_cdk import (CfnOutput, CfnResource, Duration, RemovalPolicy, Stack, aws_apigateway as apigw,
                     aws_cloudwatch as cw, aws_cloudwatch_actions as cw_actions, aws_dynamodb as ddb,
                     aws_events as events, aws_events_targets as targets, aws_iam as iam, aws_iot as iot,
                     aws_kms as kms, aws_lambda as lambda_, aws_lambda_destinations as destinations,
                     aws_lambda_event_sources as lambda_sources, aws_logs as logs, aws_s3 as s3, aws_sns as sns,
                     aws_sqs as sqs)
from constructs import Construct

import contract
from cloud import resources, rules
from provisioning import policy

POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:27"
TIMEOUT_S = {"ingest": 10, "alert": 10, "api": 15, "aggregate": 300}
# Reserved concurrency: a ceiling on each function, so that a runaway fleet (a firmware bug
# publishing in a loop, a reconnect storm) is throttled instead of billed, and cannot starve the
# others. Ingest drains the telemetry queue (its event source mapping stays below it,
# INGEST_QUEUE_CONCURRENCY) and stores events; 1,000 devices need about one instance. Together they
# leave 1,000 - 31 of an account's default concurrency unreserved (AWS keeps at least 100 so).
RESERVED_CONCURRENCY = {"ingest": 20, "alert": 5, "api": 5, "aggregate": 1}
INGEST_QUEUE_CONCURRENCY = 10  # the queue's pollers invoke at most this many at once
API_ACCESS_LOG_DAYS = logs.RetentionDays.ONE_YEAR  # who sent which command: an audit record
# What the api may publish to: every device's command topic (an IAM resource wildcard, not MQTT's +).
COMMAND_TOPICS = contract.topic("*", contract.CMD)

# The linters' findings that do not apply to this product, by resource type, each with the reason.
# They land in the resource's Metadata, where cfn-lint and checkov read them; the rest were fixed.
CHECKOV_SKIPS = {
    "AWS::DynamoDB::Table": [("CKV_AWS_119", "encrypted at rest with AWS-owned keys (DynamoDB's default); a customer "
                                             "key adds KMS charges per request for readings that name no person")],
    "AWS::SQS::Queue": [("CKV_AWS_27", "encrypted at rest with SSE-SQS (SqsManagedSseEnabled); the check knows only "
                                       "KMS")],
    "AWS::S3::Bucket": [("CKV_AWS_18", "written by the aggregate function alone, read through IAM; CloudTrail data "
                                       "events are the audit, not a second bucket of access logs")],
    "AWS::Lambda::Function": [
        ("CKV_AWS_116", "asynchronous failures go to the on-failure destination (the event and its error, more "
                        "than a DLQ keeps); the api is invoked synchronously, where a DLQ never applies"),
        ("CKV_AWS_117", "the functions call only AWS APIs and the alert webhooks; a VPC would need NAT gateways "
                        "(about $32 a month each) and isolates nothing here"),
        ("CKV_AWS_173", "the variables hold resource names only, encrypted at rest with Lambda's key; no secret "
                        "is set by this stack")],
    "AWS::Logs::LogGroup": [("CKV_AWS_158", "CloudWatch Logs encrypts at rest by default; the access log holds "
                                            "request metadata, no payloads")],
    "AWS::ApiGateway::Stage": [
        ("CKV_AWS_73", "one Lambda proxy behind it: the access log and the function's logs trace a request"),
        ("CKV_AWS_120", "it serves live device state and takes commands: a cache would answer stale")],
}
CFN_LINT_IGNORES = {
    # CDK writes DependsOn on the role next to the GetAtt of it; redundant, harmless.
    "AWS::Lambda::Function": ["W3005"],
}


class MotorGuardStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, code_dir: str, **kw):
        super().__init__(scope, construct_id, **kw)
        self.tables = {}
        for logical, (name, pk, sk, ttl) in resources.TABLES.items():
            self.tables[logical] = ddb.Table(
                self, "Table-" + logical, table_name=name,
                partition_key=ddb.Attribute(name=pk, type=ddb.AttributeType.STRING),
                sort_key=ddb.Attribute(name=sk, type=ddb.AttributeType.STRING) if sk else None,
                billing_mode=ddb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute=ttl,
                point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                removal_policy=RemovalPolicy.RETAIN)
        # Versioned: an overwritten or deleted archive object (the hourly job reruns an hour in
        # place) can be recovered for 30 days.
        self.bucket = s3.Bucket(
            self, "Archive", bucket_name=None, encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, removal_policy=RemovalPolicy.RETAIN,
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(id="glacier-after-90-days", transitions=[
                s3.Transition(storage_class=s3.StorageClass.GLACIER, transition_after=Duration.days(90))],
                noncurrent_version_expiration=Duration.days(30))])
        # The alerts say which machine is faulty, and when: encrypted with a key of our own, because
        # CloudWatch alarms cannot publish to a topic under the AWS-managed SNS key. SNS keeps
        # nothing under it once delivered, so the key goes with the stack.
        self.alerts_key = kms.Key(self, "AlertsKey", description="MotorGuard alerts topic", enable_key_rotation=True,
                                  removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
        self.alerts_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Alerts", topic_name=resources.ALERTS_TOPIC, master_key=self.alerts_key,
                               enforce_ssl=True)
        self.dlq = sqs.Queue(self, "RulesDeadLetter", queue_name=resources.DEAD_LETTER_QUEUE,
                             retention_period=Duration.days(14), enforce_ssl=True,
                             encryption=sqs.QueueEncryption.SQS_MANAGED)
        # Queues a Lambda drains in batches; what fails max_receive_count times moves to the DLQ.
        self.queues = {resources.DEAD_LETTER_QUEUE: self.dlq}
        for logical, src in resources.EVENT_SOURCES.items():
            self.queues[src["queue"]] = sqs.Queue(
                self, "Queue-" + logical, queue_name=src["queue"], enforce_ssl=True,
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                visibility_timeout=Duration.seconds(src["visibility_timeout_s"]),
                retention_period=Duration.days(src["retention_days"]),
                dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=src["max_receive_count"]))

        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", POWERTOOLS_LAYER.format(region=self.region))
        # Names of resources with a CDK-made name (the bucket) or a construct (the tables) come from
        # the constructs; the rest are cloud/resources.py's, as the local runtime uses them.
        constructs = {("table", t): self.tables[t].table_name for t in self.tables}
        constructs[("target", "archive")] = self.bucket.bucket_name

        def name_of(kind, logical):
            return constructs.get((kind, logical)) or resources.physical_name(kind, logical)

        code = lambda_.Code.from_asset(code_dir)
        self.functions = {}
        for logical, handler in resources.FUNCTIONS.items():
            self.functions[logical] = lambda_.Function(
                self, "Fn-" + logical, function_name=resources.function_name(logical),
                runtime=lambda_.Runtime.PYTHON_3_12, architecture=lambda_.Architecture.X86_64, handler=handler,
                code=code, layers=[layer], memory_size=resources.MEMORY_MB[logical], timeout=Duration.seconds(TIMEOUT_S[logical]),
                environment=resources.lambda_environment(logical, name_of),
                reserved_concurrent_executions=RESERVED_CONCURRENCY[logical],
                **self._async_options(logical))
        f = self.functions
        for logical, src in resources.EVENT_SOURCES.items():
            assert src["visibility_timeout_s"] >= 6 * TIMEOUT_S[src["function"]], "AWS: visibility >= 6 x timeout"
            f[src["function"]].add_event_source(lambda_sources.SqsEventSource(
                self.queues[src["queue"]], batch_size=src["batch_size"],
                max_batching_window=Duration.seconds(src["window_s"]), report_batch_item_failures=True,
                max_concurrency=INGEST_QUEUE_CONCURRENCY))
        # Least privilege, function by function.
        self.tables["telemetry"].grant_write_data(f["ingest"])
        self.tables["events"].grant_write_data(f["ingest"])
        self.tables["devices"].grant_read_write_data(f["ingest"])
        self.dlq.grant_send_messages(f["ingest"])
        self.dlq.grant_send_messages(f["alert"])  # its rejects
        self.tables["state"].grant_read_write_data(f["alert"])
        self.topic.grant_publish(f["alert"])
        f["alert"].add_to_role_policy(iam.PolicyStatement(actions=["sns:CreateTopic"], resources=[self.topic.topic_arn]))
        for t in ("devices", "telemetry", "events"):
            self.tables[t].grant_read_data(f["api"])
        f["api"].add_to_role_policy(iam.PolicyStatement(
            actions=["iot:Publish"], resources=[self.format_arn(service="iot", resource="topic",
                                                                resource_name=COMMAND_TOPICS)]))
        for t in ("devices", "telemetry"):
            self.tables[t].grant_read_data(f["aggregate"])
        self.tables["aggregates"].grant_write_data(f["aggregate"])
        self.bucket.grant_put(f["aggregate"])

        # The device policy: the same document provisioning attaches to each certificate.
        iot.CfnPolicy(self, "DevicePolicy", policy_name=policy.POLICY_NAME,
                      policy_document=policy.document(self.region, self.account))

        # Topic rules, generically from cloud/rules.py.
        self.rule_role = iam.Role(self, "RuleActions", assumed_by=iam.ServicePrincipal("iot.amazonaws.com"))
        self.dlq.grant_send_messages(self.rule_role)
        self.rules = {}
        for spec in rules.RULES:
            self.rules[spec["name"]] = self._topic_rule(spec)

        # REST API with IAM authentication (SigV4): operators call it with their AWS credentials,
        # nothing to leak or rotate; an API key alone would authenticate no one. Its access log
        # says who (the caller's IAM ARN) sent which request, commands included.
        self.api_log = logs.LogGroup(self, "ApiAccessLog", retention=API_ACCESS_LOG_DAYS,
                                     removal_policy=RemovalPolicy.RETAIN)
        self.api = apigw.LambdaRestApi(
            self, "Api", handler=f["api"], proxy=True, rest_api_name="motorguard-api",
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            cloud_watch_role=True, cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name="prod", throttling_rate_limit=50, throttling_burst_limit=100,
                access_log_destination=apigw.LogGroupLogDestination(self.api_log),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))))

        events.Rule(self, "Hourly", schedule=events.Schedule.cron(minute="5"),
                    targets=[targets.LambdaFunction(f["aggregate"])])

        alarm_action = cw_actions.SnsAction(self.topic)
        for logical, fn in f.items():
            a = cw.Alarm(self, "Errors-" + logical, metric=fn.metric_errors(period=Duration.minutes(5)), threshold=1,
                         evaluation_periods=1, alarm_description="%s Lambda errors" % logical,
                         treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            a.add_alarm_action(alarm_action)
        depth = cw.Alarm(self, "DeadLetterDepth", metric=self.dlq.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5)), threshold=1, evaluation_periods=1,
            alarm_description="messages rejected or failed by the rules", treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        depth.add_alarm_action(alarm_action)
        for logical, src in resources.EVENT_SOURCES.items():
            # Ingest falling behind (or failing) shows as age before anything reaches the DLQ.
            lag = cw.Alarm(self, "QueueAge-" + logical, metric=self.queues[src["queue"]].metric_approximate_age_of_oldest_message(
                period=Duration.minutes(5)), threshold=300, evaluation_periods=1,
                alarm_description="%s queue: a message waited over 5 minutes" % logical,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            lag.add_alarm_action(alarm_action)
        for name in self.rules:
            a = cw.Alarm(self, "RuleFailures-" + name, metric=cw.Metric(
                namespace="AWS/IoT", metric_name="Failure", dimensions_map={"RuleName": name},
                statistic="Sum", period=Duration.minutes(5)), threshold=1, evaluation_periods=1,
                alarm_description="rule %s failed actions" % name, treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            a.add_alarm_action(alarm_action)

        self._suppress_findings()

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "ArchiveBucket", value=self.bucket.bucket_name)
        CfnOutput(self, "AlertsTopic", value=self.topic.topic_arn)
        CfnOutput(self, "DeviceEndpoint", value="aws iot describe-endpoint --endpoint-type iot:Data-ATS")

    def _suppress_findings(self):
        """Puts CHECKOV_SKIPS and CFN_LINT_IGNORES into the Metadata of each resource they concern."""
        for c in self.node.find_all():
            if not isinstance(c, CfnResource):
                continue
            skips = CHECKOV_SKIPS.get(c.cfn_resource_type)
            if skips:
                c.add_metadata("checkov", {"skip": [{"id": i, "comment": why} for i, why in skips]})
            ignores = CFN_LINT_IGNORES.get(c.cfn_resource_type)
            if ignores:
                c.add_metadata("cfn-lint", {"config": {"ignore_checks": ignores}})

    def _async_options(self, logical: str) -> dict:
        """What Lambda does with an asynchronous invocation that fails (an IoT rule's action, the
        hourly schedule): two more attempts, then the dead-letter queue gets the event and the
        error. Without it the event is dropped, and the rule's error action never hears of it."""
        if logical not in resources.ASYNC_FUNCTIONS:
            return {}
        assert rules.target("dead_letter") == resources.ASYNC_FAILURE_QUEUE
        return {"on_failure": destinations.SqsDestination(self.dlq), "retry_attempts": resources.ASYNC_RETRY_ATTEMPTS,
                "max_event_age": Duration.seconds(resources.ASYNC_MAX_EVENT_AGE_S)}

    def _action(self, action: dict) -> dict:
        kind, params = next(iter(action.items()))
        if kind == "lambda":
            return {"lambda": {"functionArn": self.functions[params["function"]].function_arn}}
        if kind == "sqs":
            queue = self.queues[rules.target(params["queue"])]
            queue.grant_send_messages(self.rule_role)
            return {"sqs": {"queueUrl": queue.queue_url, "roleArn": self.rule_role.role_arn, "useBase64": False}}
        if kind == "s3":
            self.bucket.grant_put(self.rule_role)
            return {"s3": {"bucketName": self.bucket.bucket_name, "key": params["key"], "roleArn": self.rule_role.role_arn}}
        if kind == "sns":
            self.topic.grant_publish(self.rule_role)
            return {"sns": {"targetArn": self.topic.topic_arn, "roleArn": self.rule_role.role_arn,
                            "messageFormat": "RAW"}}
        raise ValueError("rule action %r has no CDK translation yet" % kind)

    def _topic_rule(self, spec: dict):
        rule = iot.CfnTopicRule(self, "Rule-" + spec["name"], rule_name=spec["name"], topic_rule_payload={
            "sql": spec["sql"], "awsIotSqlVersion": rules.SQL_VERSION, "ruleDisabled": False,
            "actions": [self._action(a) for a in spec["actions"]],
            "errorAction": self._action(spec["error_action"]),
        })
        for a in spec["actions"]:
            if "lambda" in a:
                self.functions[a["lambda"]["function"]].add_permission(
                    "Invoke-" + spec["name"], principal=iam.ServicePrincipal("iot.amazonaws.com"),
                    source_arn=rule.attr_arn, source_account=self.account)
        return rule


# One JSON line per request: who called (SigV4 caller and IAM ARN), from where, what, and the answer.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId", "time": "$context.requestTimeEpoch", "caller": "$context.identity.caller",
    "user": "$context.identity.user", "userArn": "$context.identity.userArn",
    "accountId": "$context.identity.accountId",
    "sourceIp": "$context.identity.sourceIp", "userAgent": "$context.identity.userAgent",
    "method": "$context.httpMethod", "path": "$context.path", "resourcePath": "$context.resourcePath",
    "status": "$context.status", "responseLength": "$context.responseLength",
    "integrationError": "$context.integration.error",
}


def policy_json(stack) -> str:
    return json.dumps(policy.document(stack.region, stack.account))
