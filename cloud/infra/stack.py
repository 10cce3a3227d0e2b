"""The MotorGuard cloud as an AWS CDK v2 stack, built from the same definitions the local IoT Core runs:
cloud/resources.py (tables, bucket, topic, queue, functions) and cloud/rules.py (topic rules), and the
web dashboard (docs/dashboard.md), whose resources cloud/infra/dashboard.py adds to this stack.
cfn-lint and checkov check the synthesized template (tests/cloud/infra/test_cfn_lint.py); what they flag
that does not apply here is suppressed on the resource, with the reason (CHECKOV_SKIPS, CFN_LINT_IGNORES)."""

from __future__ import annotations

import json

from aws_cdk import (ArnFormat, CfnOutput, CfnResource, Duration, RemovalPolicy, Stack, aws_apigateway as apigw,
                     aws_cloudwatch as cw, aws_cloudwatch_actions as cw_actions, aws_dynamodb as ddb,
                     aws_events as events, aws_events_targets as targets, aws_iam as iam, aws_iot as iot,
                     aws_kms as kms, aws_lambda as lambda_, aws_lambda_destinations as destinations,
                     aws_lambda_event_sources as lambda_sources, aws_logs as logs, aws_s3 as s3, aws_sns as sns,
                     aws_sqs as sqs)
from constructs import Construct

import contract
from cloud import resources, rules
from cloud.infra.dashboard import add_dashboard, skip_dashboard_findings

POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:27"
# Each function's memory, timeout and reserved concurrency: cloud/resources.py FUNCTION_SETTINGS (the
# local runtime reads the same table). An account whose quota is still a new account's 10 cannot
# reserve anything: `cdk deploy -c reserved_concurrency=off` deploys without the reservations.
RESERVED_CONCURRENCY = resources.RESERVED_CONCURRENCY
RESERVED_CONCURRENCY_CONTEXT = "reserved_concurrency"  # the context key: "on" (the default) or "off"
INGEST_QUEUE_CONCURRENCY = 10  # the queue's pollers invoke at most this many at once
API_ACCESS_LOG_DAYS = logs.RetentionDays.ONE_YEAR  # who sent which command: an audit record
# What the api may publish to: every device's command topic (an IAM resource wildcard, not MQTT's +).
COMMAND_TOPICS = contract.topic("*", contract.CMD)
# Data a failed first deploy must not leave behind, and a later update or delete must not lose:
# CloudFormation's DeletionPolicy RetainExceptOnCreate. A plain Retain keeps the named tables of a
# create that rolled back, and every retry then fails on names already taken.
KEEP_DATA = RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
# The AWS IoT metrics of a rule's actions (namespace AWS/IoT): Failure counts failed action
# invocations, ErrorActionFailure failed error actions (the message is then lost). AWS publishes
# both with two dimensions, RuleName and ActionType; a metric named by RuleName alone does not
# exist. The alarms sum over every ActionType with a Metrics Insights query, so an action a rule
# gains later is watched too, whatever AWS calls its type.
RULE_ACTION_METRICS = {"RuleFailures": ("Failure", "rule %s: actions failed (the error action has each message)"),
                       "RuleErrorActionFailures": ("ErrorActionFailure", "rule %s: its error action failed, messages "
                                                                         "were lost")}

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
        reserve = reserves_concurrency(self.node.try_get_context(RESERVED_CONCURRENCY_CONTEXT))
        self.tables = {}
        for logical, (name, pk, sk, ttl) in resources.TABLES.items():
            self.tables[logical] = ddb.Table(
                self, "Table-" + logical, table_name=name,
                partition_key=ddb.Attribute(name=pk, type=ddb.AttributeType.STRING),
                sort_key=ddb.Attribute(name=sk, type=ddb.AttributeType.STRING) if sk else None,
                billing_mode=ddb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute=ttl,
                point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                removal_policy=KEEP_DATA)
        # Versioned: an overwritten or deleted archive object (the hourly job reruns an hour in
        # place) can be recovered for 30 days.
        self.bucket = s3.Bucket(
            self, "Archive", bucket_name=None, encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, removal_policy=KEEP_DATA,
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
        self._let_alarms_publish()
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
                code=code, layers=[layer], memory_size=resources.MEMORY_MB[logical], timeout=Duration.seconds(resources.TIMEOUT_S[logical]),
                environment=resources.lambda_environment(logical, name_of),
                reserved_concurrent_executions=RESERVED_CONCURRENCY[logical] if reserve else None,
                **self._async_options(logical))
        f = self.functions
        for logical, src in resources.EVENT_SOURCES.items():
            assert src["visibility_timeout_s"] >= 6 * resources.TIMEOUT_S[src["function"]], "AWS: visibility >= 6 x timeout"
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
        for t in ("devices", "telemetry", "events", "aggregates", "commands", "presence"):
            self.tables[t].grant_read_data(f["api"])
        self.tables["commands"].grant_write_data(f["api"])  # the audit trail of commands sent
        # /rejects reads the dead-letter queue without taking anything (a visibility timeout of 0).
        f["api"].add_to_role_policy(iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"], resources=[self.dlq.queue_arn]))
        # Whether a device accepts a remote start: its registry attribute (the dashboard's Start).
        f["api"].add_to_role_policy(iam.PolicyStatement(
            actions=["iot:DescribeThing"], resources=[self.format_arn(service="iot", resource="thing",
                                                                     resource_name="*")]))
        f["api"].add_to_role_policy(iam.PolicyStatement(
            actions=["iot:Publish"], resources=[self.format_arn(service="iot", resource="topic",
                                                                resource_name=COMMAND_TOPICS)]))
        for t in ("devices", "telemetry"):
            self.tables[t].grant_read_data(f["aggregate"])
        self.tables["aggregates"].grant_write_data(f["aggregate"])
        self.bucket.grant_put(f["aggregate"])

        # No device policy here: provisioning creates it and pushes its new versions (provision
        # device); a stack-owned policy of the same name would make whichever came second fail.

        # Topic rules, generically from cloud/rules.py.
        self.rule_role = iam.Role(self, "RuleActions", assumed_by=iam.ServicePrincipal("iot.amazonaws.com"))
        self.dlq.grant_send_messages(self.rule_role)
        self.rules = {}
        for spec in rules.RULES:
            self.rules[spec["name"]] = self._topic_rule(spec)

        # REST API with IAM authentication (SigV4): operators call it with their AWS credentials,
        # nothing to leak or rotate; an API key alone would authenticate no one. Its access log
        # says who (the caller's IAM ARN) sent which request, commands included.
        self.api_log = logs.LogGroup(self, "ApiAccessLog", retention=API_ACCESS_LOG_DAYS, removal_policy=KEEP_DATA)
        self.api = apigw.LambdaRestApi(
            self, "Api", handler=f["api"], proxy=True, rest_api_name="motorguard-api",
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            cloud_watch_role=True, cloud_watch_role_removal_policy=KEEP_DATA,
            deploy_options=apigw.StageOptions(
                stage_name="prod", throttling_rate_limit=50, throttling_burst_limit=100,
                access_log_destination=apigw.LogGroupLogDestination(self.api_log),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))))

        add_dashboard(self, f["api"], keep_data=KEEP_DATA)

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
            for prefix, (metric, description) in RULE_ACTION_METRICS.items():
                a = cw.Alarm(self, "%s-%s" % (prefix, name), metric=rule_action_metric(metric, name),
                             threshold=1, evaluation_periods=1, alarm_description=description % name,
                             treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
                a.add_alarm_action(alarm_action)

        self._suppress_findings()
        skip_dashboard_findings(self)  # after: it replaces what _suppress_findings gave the dashboard's bucket

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "ArchiveBucket", value=self.bucket.bucket_name)
        CfnOutput(self, "AlertsTopic", value=self.topic.topic_arn)
        CfnOutput(self, "DeviceEndpoint", value="aws iot describe-endpoint --endpoint-type iot:Data-ATS")
        CfnOutput(self, "DashboardUrl", value="https://" + self.dashboard.distribution_domain_name)
        CfnOutput(self, "DashboardBucket", value=self.web_bucket.bucket_name)
        CfnOutput(self, "DashboardDistributionId", value=self.dashboard.distribution_id)
        CfnOutput(self, "DashboardUserPoolId", value=self.user_pool.user_pool_id)
        CfnOutput(self, "DashboardUserPoolClientId", value=self.web_client.user_pool_client_id)
        CfnOutput(self, "DashboardCreateUser", value=(
            "aws cognito-idp admin-create-user --user-pool-id %s --username NAME --message-action SUPPRESS "
            "--temporary-password PASSWORD && aws cognito-idp admin-set-user-password --user-pool-id %s "
            "--username NAME --password PASSWORD --permanent") % (self.user_pool.user_pool_id, self.user_pool.user_pool_id))

    def _let_alarms_publish(self):
        """The topic's policy: enforce_ssl gives it a policy of one Deny, and a topic policy replaces
        SNS's default one, so without this Allow no alarm could publish. CloudWatch may publish on
        behalf of this account's alarms in this region only (aws:SourceAccount, aws:SourceArn: no
        other account's alarm can use it as a confused deputy); it uses the topic's key under the
        key's policy (above). The alert function publishes through its role (grant_publish)."""
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowThisAccountsAlarmsToPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": self.account},
                        "ArnLike": {"aws:SourceArn": self.format_arn(service="cloudwatch", resource="alarm",
                                                                     resource_name="*",
                                                                     arn_format=ArnFormat.COLON_RESOURCE_NAME)}}))

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
        if kind == "dynamoDBv2":
            table = self.tables[params["table"]]
            table.grant_write_data(self.rule_role)
            return {"dynamoDBv2": {"putItem": {"tableName": table.table_name}, "roleArn": self.rule_role.role_arn}}
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


def reserves_concurrency(setting) -> bool:
    """The reserved_concurrency context value: absent or "on" keeps the reservations, "off" drops them."""
    if setting is None or str(setting).lower() in ("on", "true"):
        return True
    if str(setting).lower() in ("off", "false"):
        return False
    raise ValueError("context %s=%r: use on or off (off deploys the functions without reserved concurrency, for "
                     "an account whose Lambda quota cannot spare %d)" % (RESERVED_CONCURRENCY_CONTEXT, setting,
                                                                        sum(RESERVED_CONCURRENCY.values())))


def rule_action_metric(metric: str, rule: str) -> cw.MathExpression:
    """The sum of one rule-action metric of one rule over every action type, as a Metrics Insights query
    (which an alarm may watch): SCHEMA names the metric's two dimensions, so it matches what AWS publishes."""
    query = "SELECT SUM(%s) FROM SCHEMA(\"AWS/IoT\", ActionType, RuleName) WHERE RuleName = '%s'" % (metric, rule)
    return cw.MathExpression(expression=query, using_metrics={}, period=Duration.minutes(5),
                             label="%s %s" % (rule, metric))
