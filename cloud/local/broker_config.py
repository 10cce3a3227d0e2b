"""What the local broker is told: the Mosquitto config and ACL behind the gateway that make the pair
AWS IoT Core's stand-in.

Clients never reach Mosquitto directly: it listens only on a unix socket in a private directory,
and the gateway (cloud/local/gateway.py) in front of it terminates mutual TLS, enforces the device
policy document as AWS IoT Core does (a denied CONNECT gets no CONNACK; a denied PUBLISH or SUBSCRIBE
closes the connection; a retained publish needs iot:RetainPublish), and forwards each CONNECT with the
certificate's CN as the user name. Mosquitto then:
- takes that user name as the client id too (use_username_as_clientid), so all the clients of one
  identity share one client id, and a second connection takes the first one's session over: each
  local service client has an identity of its own, or they would disconnect each other (and the rules
  engine's persistent session would be taken over by a passing client);
- applies this ACL, the device patterns (the device policy's topics once more, as a second fence) and
  each service identity's grants (contract.SERVICE_IDENTITIES: the engine and the observer read every
  device's topics and write their cmd topics, the API's publisher only writes cmd topics, provision
  check and rotation read only telemetry or status and the lifecycle events);
- does not deliver a payload over 128 KB (AWS IoT's limit): it acknowledges and drops it.
"""

from __future__ import annotations

import os

import contract
from provisioning import policy

THING_VARIABLE = policy.THING  # ${iot:Connection.Thing.ThingName}

# Per-client queue limits. Mosquitto silently drops QoS 1 messages for a
# subscriber once max_queued_messages are waiting (default 1000: a slow bridge
# lost 976 of a 2,000-message burst). The service subscriber must never be the
# bottleneck of a test or a bench, so its queue is deep; a device's queue only
# ever holds a few commands, so the shared limit costs nothing there.
MAX_QUEUED_MESSAGES = 100000
# Outgoing QoS 1 messages in flight per client before Mosquitto queues the
# rest. The rules engine acknowledges a telemetry message only once its
# batch is stored (cloud/local/esm.py), so this window must hold several
# 100-message batches (and it bounds what the engine's queue holds); devices
# only ever receive a few commands, so the shared limit costs nothing there.
MAX_INFLIGHT_MESSAGES = 1000
# AWS IoT Core refuses a payload over 128 KB; Mosquitto then acknowledges and drops it.
MESSAGE_SIZE_LIMIT = contract.MAX_PAYLOAD_BYTES

_EVERY_DEVICE = contract.topic_filter()  # devices/#
_EVERY_RULE = contract.BASIC_INGEST_PREFIX + "#"  # $aws/rules/#
_EVERY_COMMAND = contract.topic_filter(contract.CMD)  # devices/+/cmd
_LIFECYCLE = contract.LIFECYCLE_PREFIX + "#"  # $aws/events/presence/#, the gateway's lifecycle events
# What each service identity may do (Mosquitto ACL "topic" lines), and no more.
SERVICE_GRANTS = {
    contract.SERVICE_IDENTITY: ("read " + _EVERY_DEVICE, "read " + _EVERY_RULE, "write " + _EVERY_COMMAND,
                                "read " + _LIFECYCLE),
    # every rule's topics; republish actions
    contract.ENGINE_IDENTITY: ("read " + _EVERY_DEVICE, "read " + _EVERY_RULE, "write " + _EVERY_COMMAND),
    contract.API_IDENTITY: ("write " + _EVERY_COMMAND,),
    contract.CHECK_IDENTITY: ("read " + contract.topic_filter(contract.TELEMETRY),
                              "write " + contract.topic(contract.CHECK_PROBE_THING, contract.CMD),
                              "read " + _LIFECYCLE),
    contract.ROTATION_IDENTITY: ("read " + contract.topic_filter(contract.STATUS), "read " + _LIFECYCLE),
    contract.GATEWAY_IDENTITY: ("write " + _LIFECYCLE,),  # the gateway's lifecycle events
}


def grants(service_identity: str = contract.SERVICE_IDENTITY) -> dict:
    """SERVICE_GRANTS, and the observer's grants for a service identity named otherwise (a broker
    whose service_identity is not one of the contract's)."""
    return dict(SERVICE_GRANTS, **{service_identity: SERVICE_GRANTS.get(
        service_identity, SERVICE_GRANTS[contract.SERVICE_IDENTITY])})


def device_patterns(policy_doc) -> list:
    """The ACL's device lines, read from the device policy document itself: each topic resource of an
    Allow for iot:Publish becomes a `pattern write`, of iot:Receive a `pattern read`, with the thing
    variable as %u (the user name: the certificate's CN, the thing name). Resources with policy
    wildcards are left to the gateway, which evaluates the whole document anyway."""
    out = []
    for access, action in (("write", "iot:Publish"), ("read", "iot:Receive")):
        for st in policy_doc["Statement"]:
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            if st["Effect"] != "Allow" or action not in actions:
                continue
            for r in [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]:
                name = r.split(":topic/", 1)[1] if ":topic/" in r else None
                if name is not None:
                    name = name.replace(THING_VARIABLE, "%u")
                    if "${" not in name and "*" not in name and "?" not in name:
                        out.append("pattern %s %s" % (access, name))
    return out


def acl_text(grants=SERVICE_GRANTS, policy_doc=None) -> str:
    """The ACL file: the device patterns of the device policy (policy_doc; default: provisioning's),
    then each service identity (grants: {name: lines}) with only its own grants."""
    doc = policy_doc if policy_doc is not None else policy.document()
    return (
        "# Generated by cloud.local.broker: the AWS IoT least-privilege policy for Mosquitto.\n"
        "# %u is the user name: the certificate's CN (= thing name), which the gateway sends.\n"
        "# Devices: what the device policy lets them publish and receive (a second fence: the gateway\n"
        "# has already evaluated the whole policy document, device-policy.json).\n"
        + "".join(line + "\n" for line in device_patterns(doc))
        + "\n"
        "# The cloud's service identities, each with what it needs (cloud/local/broker_config.py SERVICE_GRANTS).\n"
        + "".join("user %s\n" % name + "".join("topic %s\n" % line for line in lines) for name, lines in grants.items())
    )


def config_text(broker) -> str:
    """mosquitto.conf for broker (a LocalBroker: its state dir's paths and its socket)."""
    return "\n".join([
        "# Generated by cloud.local.broker: a local AWS IoT Core stand-in behind its gateway. Do not edit; regenerate.",
        "per_listener_settings false",
        # Only the gateway reaches the socket (a private directory); it has authenticated the client's
        # certificate and sends its CN as the user name, which the ACL and the client id key on.
        "allow_anonymous true",
        # Persistent sessions (the rules engine's) and retained status survive a restart, as
        # in AWS IoT Core, where the rules never stop listening. Devices use clean sessions.
        "persistence true",
        f"persistence_location {broker.state_dir}/",
        "autosave_interval 10",
        f"log_dest file {broker.log_path}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        # See MAX_QUEUED_MESSAGES / MAX_INFLIGHT_MESSAGES above: set on purpose,
        # because the defaults silently drop a slow subscriber's QoS 1 backlog.
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        f"acl_file {broker.acl_path}",
        # Started as root, Mosquitto would switch to the 'mosquitto' user and
        # lose access to our state dir: stay the user who started it.
        f"user {_user_name()}",
        "",
        f"listener 0 {broker.socket_path}",
        "protocol mqtt",
        # The client id becomes the identity (the certificate's CN, which the gateway sends as the user
        # name); for a device the gateway has already refused any other client id, as AWS does.
        "use_username_as_clientid true",
    ]) + "\n"


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "mosquitto"
