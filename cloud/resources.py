"""The cloud's resources, named once.

The CDK stack creates these, the local IoT Core creates them in moto, and the
Lambdas find them through the environment variables below, so the same handler
code runs in AWS and on a laptop.
"""

PREFIX = "motorguard"

# DynamoDB tables: logical name -> (physical name, partition key, sort key or None, TTL attribute or None).
# Every key attribute is a string.
TABLES = {
    # One item per telemetry message (its samples gzip-compressed): device, sk = "<first sample ms>#<boot>#<seq>".
    "telemetry": (PREFIX + "-telemetry", "device", "sk", "expires_at"),
    # Latest state per device.
    "devices": (PREFIX + "-devices", "device", None, None),
    # One item per event: device, sk = "<time ms, 13 digits>#<boot>#<seq>".
    "events": (PREFIX + "-events", "device", "sk", "expires_at"),
    # Hourly aggregates: device, sk = "<YYYY-MM-DDTHH>".
    "aggregates": (PREFIX + "-aggregates", "device", "sk", None),
    # Alert de-duplication and Powertools idempotency records.
    "state": (PREFIX + "-state", "id", None, "expiration"),
    # What was sent to each device and what it answered (the dashboard's audit trail): device,
    # sk = "cmd#<issued_at ms, 13 digits>#<id>" for a command (who sent it), "ack#<id>" for its ack
    # (cloud/domain/commands.py).
    "commands": (PREFIX + "-commands", "device", "sk", "expires_at"),
    # Each device's last retained status message (online/offline, from its connect and its Will).
    "presence": (PREFIX + "-presence", "device", None, None),
}

ARCHIVE_BUCKET = PREFIX + "-archive"  # raw payloads: raw/<device>/<YYYY>/<MM>/<DD>/<HH>/...; aggregates/...
ALERTS_TOPIC = PREFIX + "-alerts"  # SNS
DASHBOARD_USER_POOL = PREFIX + "-dashboard"  # Cognito: the dashboard's users (the stack's, and the local one)
DASHBOARD_WEB_CLIENT = PREFIX + "-dashboard-web"  # its app client, the page's
DEAD_LETTER_QUEUE = PREFIX + "-rules-dlq"  # SQS: rule error actions and rejected messages
TELEMETRY_QUEUE = PREFIX + "-telemetry-queue"  # SQS: the telemetry rule's messages, waiting for ingest

# SQS queues that a Lambda consumes in batches (event source mappings). The telemetry rule sends to
# its queue rather than invoking ingest once per message: the queue keeps what ingest cannot store
# yet (4 days, retried; then the dead-letter queue), where IoT's asynchronous invoke would give up
# after two retries; and ingest writes a whole batch with BatchWriteItem. docs/cloud-figures.md has figures.
EVENT_SOURCES = {
    "telemetry": {
        "queue": TELEMETRY_QUEUE,
        "function": "ingest",
        "batch_size": 100,  # above 10 SQS requires a batching window
        "window_s": 1,  # the longest a message waits for its batch to fill
        "max_receive_count": 5,  # deliveries before a message moves to the dead-letter queue
        "visibility_timeout_s": 60,  # at least 6 x ingest's timeout, as AWS advises for Lambda consumers
        "retention_days": 4,
    },
}

# Functions AWS invokes asynchronously: the rules' Lambda actions (alert; ingest for events) and the
# hourly schedule (aggregate). When such an invocation fails, Lambda tries twice more (1 and 2 minutes
# later) and then drops the event: the rule's error action never sees a function error. Their
# on-failure destination is the dead-letter queue, where the event arrives with the error
# (docs/cloud.md, "Asynchronous invokes and failure destinations"); the local engine does the same.
ASYNC_FUNCTIONS = ("alert", "ingest", "aggregate")
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE_S = 6 * 3600  # AWS's default and maximum: an event throttled that long is failed
ASYNC_FAILURE_QUEUE = DEAD_LETTER_QUEUE

# What the rules' actions and the functions' settings name by a logical name: the physical resource.
TARGETS = {
    "dead_letter": DEAD_LETTER_QUEUE,
    "telemetry_queue": TELEMETRY_QUEUE,
    "archive": ARCHIVE_BUCKET,
    "alerts": ALERTS_TOPIC,
}

METRICS_NAMESPACE = "MotorGuard"  # the Lambdas' CloudWatch metrics (Powertools' EMF)

# The environment variables each Lambda reads, and what each names: a table of TABLES or a target of
# TARGETS. lambda_environment() builds the whole environment from it: the CDK stack with its
# constructs' names, the local runtime with the physical names (ENV, which cloud/lambdas/common.py
# falls back on when a variable is not set, as it is not locally).
ENV_RESOURCES = {
    "TELEMETRY_TABLE": ("table", "telemetry"),
    "DEVICES_TABLE": ("table", "devices"),
    "EVENTS_TABLE": ("table", "events"),
    "AGGREGATES_TABLE": ("table", "aggregates"),
    "STATE_TABLE": ("table", "state"),
    "COMMANDS_TABLE": ("table", "commands"),
    "PRESENCE_TABLE": ("table", "presence"),
    "ARCHIVE_BUCKET": ("target", "archive"),
    "ALERTS_TOPIC_NAME": ("target", "alerts"),
    "DEAD_LETTER_QUEUE_NAME": ("target", "dead_letter"),
}


def physical_name(kind: str, logical: str) -> str:
    """The name of a table ("table") or a target ("target") of this module."""
    return TABLES[logical][0] if kind == "table" else TARGETS[logical]


def lambda_environment(function: str, name_of=physical_name) -> dict:
    """The environment of one function: ENV_RESOURCES' variables, each the name name_of(kind, logical)
    gives (the CDK stack passes its constructs' names), and the Powertools settings."""
    env = {var: name_of(kind, logical) for var, (kind, logical) in ENV_RESOURCES.items()}
    env["POWERTOOLS_METRICS_NAMESPACE"] = METRICS_NAMESPACE
    env["POWERTOOLS_SERVICE_NAME"] = function_name(function)
    return env


ENV = {var: physical_name(kind, logical) for var, (kind, logical) in ENV_RESOURCES.items()}

# Every Lambda function's settings, once: the CDK stack (cloud/infra/stack.py) creates each function
# from its row, and the local runtime (cloud/local) gives each invocation a context with the same
# name, memory and timeout, and bills it by that memory.
#   handler       "module.function" under cloud/lambdas
#   memory_mb     what it gets, and is billed by (GB-seconds)
#   timeout_s     the longest one invocation may run
#   reserved      reserved concurrency: a ceiling on the function, so that a runaway fleet (a firmware
#                 bug publishing in a loop, a reconnect storm) is throttled instead of billed, and cannot
#                 starve the others. Ingest drains the telemetry queue (its event source mapping stays
#                 below it, cloud/infra/stack.py INGEST_QUEUE_CONCURRENCY) and stores events; 1,000
#                 devices need about one instance. Together they leave 1,000 - 31 of an account's
#                 default concurrency unreserved (AWS keeps at least 100 so); `cdk deploy -c
#                 reserved_concurrency=off` deploys without them (cloud/infra/preflight.py says when).
FUNCTION_SETTINGS = {
    "ingest": {"handler": "cloud.lambdas.ingest.handler", "memory_mb": 256, "timeout_s": 10, "reserved": 20},
    "alert": {"handler": "cloud.lambdas.alert.handler", "memory_mb": 256, "timeout_s": 10, "reserved": 5},
    "api": {"handler": "cloud.lambdas.api.handler", "memory_mb": 256, "timeout_s": 15, "reserved": 5},
    "aggregate": {"handler": "cloud.lambdas.aggregate.handler", "memory_mb": 512, "timeout_s": 300, "reserved": 1},
}
# Its columns, for the callers that read one.
FUNCTIONS = {logical: row["handler"] for logical, row in FUNCTION_SETTINGS.items()}
MEMORY_MB = {logical: row["memory_mb"] for logical, row in FUNCTION_SETTINGS.items()}
TIMEOUT_S = {logical: row["timeout_s"] for logical, row in FUNCTION_SETTINGS.items()}
RESERVED_CONCURRENCY = {logical: row["reserved"] for logical, row in FUNCTION_SETTINGS.items()}


def function_name(logical):
    return "%s-%s" % (PREFIX, logical)


def logical_name(function_name):
    """The logical name of one of our functions' physical names, or None."""
    head, _, logical = function_name.partition("-")
    return logical if head == PREFIX and logical in FUNCTION_SETTINGS else None
