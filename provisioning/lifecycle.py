"""AWS IoT lifecycle events of one client id, and what they say about how a connection ended.

AWS IoT Core publishes $aws/events/presence/connected/<clientId> when a client connects and
$aws/events/presence/disconnected/<clientId> when its connection ends, each naming the session
(sessionIdentifier) and, for an end, why (disconnectReason): AUTH_ERROR when the policy refused
something the client did, DUPLICATE_CLIENTID when another connection with the same client id took
over, CLIENT_INITIATED_DISCONNECT, CONNECTION_LOST, MQTT_KEEP_ALIVE_TIMEOUT and others. The local IoT
Core's gateway (cloud/local/gateway.py) publishes the same. AWS says these events may arrive out of
order or twice, so a connection is recognised by its session id, never by arrival order alone.

`provision check` reads them to tell a refusal from a takeover (ending()); `provision rotate` to see
that a device stayed connected on its new certificate (stayed_connected()). The listeners:
- locally, the check's or the rotation's paho client with its service identity (check.py, rotation.py)
  subscribes to topics() and feeds add();
- in AWS, aws_listener(): the operator's IAM credentials (found as boto3 finds them) over MQTT over
  WebSocket, signed with SigV4 (awsiotsdk), on the account's data endpoint, port 443.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import contract
from provisioning.errors import ACCESS_DENIED, NO_CREDENTIALS, SERVICE_ERROR, ProvisionError

REFUSED = ("AUTH_ERROR", "FORBIDDEN_ACCESS")  # the broker's authorization ended the connection
TAKEOVER = "DUPLICATE_CLIENTID"  # another connection with this client id (the live device) took over
BROKER_CLOSED = REFUSED + ("CLIENT_ERROR",)  # ended by the broker for what the client did
WAIT_S = 5.0  # how long an event may take to reach the listener
CONNECTED, DISCONNECTED = "connected", "disconnected"
# What the operator's IAM identity needs for the AWS listener (docs/provisioning.md).
LISTENER_NEEDS = ("iot:Connect on client/%s-*, iot:Subscribe on topicfilter/$aws/events/presence/*/<thing>, "
                  "iot:Receive on topic/$aws/events/presence/*/<thing>")


@dataclass(frozen=True)
class Event:
    kind: str  # CONNECTED or DISCONNECTED
    session: str  # sessionIdentifier
    reason: str | None  # disconnectReason (a disconnect only)
    arrived: float  # time.monotonic() when it reached this host
    payload: dict = field(compare=False, repr=False)


def topics(client_id: str) -> tuple:
    return contract.lifecycle_topic(CONNECTED, client_id), contract.lifecycle_topic(DISCONNECTED, client_id)


def parse(payload, arrived: float) -> Event | None:
    """One lifecycle message as an Event, or None for anything that is not one (it is ignored)."""
    try:
        doc = json.loads(payload)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("eventType") not in (CONNECTED, DISCONNECTED):
        return None
    session = doc.get("sessionIdentifier")
    if not isinstance(session, str) or not session:
        return None
    reason = doc.get("disconnectReason") if doc["eventType"] == DISCONNECTED else None
    return Event(doc["eventType"], session, reason if isinstance(reason, str) else None, arrived, doc)


class Events:
    """The lifecycle events of one client id as they arrive (thread-safe; add() is a client's callback)."""

    def __init__(self, client_id: str):
        self.client_id = client_id
        self.topics = topics(client_id)
        self._events = []
        self._cond = threading.Condition()

    def add(self, topic: str, payload) -> None:
        if topic not in self.topics:
            return
        e = parse(payload, time.monotonic())
        if e is None or e.payload.get("clientId") not in (None, self.client_id):
            return
        with self._cond:
            self._events.append(e)
            self._cond.notify_all()

    def snapshot(self) -> list:
        with self._cond:
            return list(self._events)

    def wait_for(self, judge, timeout_s: float):
        """judge(snapshot) until it returns something other than None, or timeout_s passed (None)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                verdict = judge(list(self._events))
                left = deadline - time.monotonic()
                if verdict is not None or left <= 0:
                    return verdict
                self._cond.wait(left)


# ------------------------------------------------------------------ how one connection ended (check)


@dataclass(frozen=True)
class Ending:
    kind: str  # "refused", "takeover", "other" or "unknown"
    reason: str | None
    detail: str
    session: str | None = None


def own_session(events: list, began: float, earlier=()) -> str | None:
    """The session of the connection this host opened at `began` (monotonic): the first connected event
    to arrive after it, not one of the `earlier` sessions (this host's previous connections, whose
    events may come late). A live device that was pushed off reconnects later, so its event comes after."""
    for e in events:
        if e.kind == CONNECTED and e.arrived >= began and e.session not in earlier:
            return e.session
    return None


def ending(events: list, began: float, earlier=()) -> Ending | None:
    """How the connection opened at `began` ended, by its own session's disconnected event; None
    while that event (or the connected one naming the session) has not arrived."""
    session = own_session(events, began, earlier)
    for e in events:
        if session is not None and e.kind == DISCONNECTED and e.session == session:
            if e.reason in REFUSED:
                return Ending("refused", e.reason, "the broker closed the connection: %s (the policy refused it)"
                              % e.reason, session)
            if e.reason == TAKEOVER:
                return Ending("takeover", e.reason, "another connection with the same client id took this one "
                              "over (%s): the device is online" % e.reason, session)
            return Ending("other", e.reason, "the connection ended for another reason: %s" % e.reason, session)
    return None


def wait_ending(events: Events, began: float, earlier=(), timeout_s: float | None = None) -> Ending:
    """ending(), waited for (timeout_s, default WAIT_S); an honest "unknown" when the events do not come."""
    timeout_s = WAIT_S if timeout_s is None else timeout_s
    found = events.wait_for(lambda evs: ending(evs, began, earlier), timeout_s)
    if found is not None:
        return found
    session = own_session(events.snapshot(), began, earlier)
    if session is None:
        why = "no connected lifecycle event for this connection arrived within %g s" % timeout_s
    else:
        why = "no disconnected lifecycle event for its session arrived within %g s" % timeout_s
    return Ending("unknown", None, "the connection closed, but %s: a refusal cannot be told from a takeover by "
                  "the live device" % why, session)


# ------------------------------------------------------------------ whether a device stayed on (rotation)


def stayed_connected(events: list, delivered: float, online_at: float, settle_s: float,
                     grace_s: float = 1.0) -> tuple:
    """Whether the device that came online at `online_at` (monotonic; its console line or status) stayed
    connected for settle_s after it: (True, detail), (False, detail), or (None, detail) when the events
    cannot tell (no connected event of a new session arrived). `delivered`: when the new files went
    out; sessions that connected before it are the device's old ones (their ends are expected).

    Its session is the last to connect between `delivered` and online_at + grace_s (the event and the
    online line race). It did not stay on if that session's disconnected event arrived, or another
    session connected after it (it reconnected: the first was lost), or the broker closed any session
    for what it did (AUTH_ERROR, FORBIDDEN_ACCESS, CLIENT_ERROR: the device repeats that on every try)."""
    end = online_at + settle_s
    fresh = [e for e in events if delivered <= e.arrived <= end]
    connected = [e for e in fresh if e.kind == CONNECTED and e.arrived <= online_at + grace_s]
    for e in fresh:
        if e.kind == DISCONNECTED and e.reason in BROKER_CLOSED:
            return False, "the broker closed the device's connection: %s (the policy refused something it does)" % (
                e.reason)
    if not connected:
        return None, "no lifecycle event showed the device connecting after the new files went out"
    mine = connected[-1].session
    for e in fresh:
        if e.kind == DISCONNECTED and e.session == mine:
            return False, "its connection ended %.1f s after it came online: %s" % (
                max(0.0, e.arrived - online_at), e.reason)
        if e.kind == CONNECTED and e.session != mine and e.arrived > connected[-1].arrived:
            return False, "it connected again %.1f s after it came online (the first connection was lost)" % (
                max(0.0, e.arrived - online_at))
    return True, "stayed connected for %g s after it came online (no disconnect of its session)" % settle_s


# ------------------------------------------------------------------ the listener in AWS


def region_of(endpoint: str) -> str | None:
    """us-east-1 from <prefix>-ats.iot.us-east-1.amazonaws.com; None for any other host."""
    parts = endpoint.split(".")
    if "iot" in parts and parts.index("iot") + 1 < len(parts) and parts[-2:] == ["amazonaws", "com"]:
        return parts[parts.index("iot") + 1]
    return None


def _crt_credentials(boto_session):
    """The boto3 session's current credentials for awscrt (a delegate: refreshed ones are picked up)."""
    from awscrt.auth import AwsCredentials

    creds = boto_session.get_credentials()
    if creds is None:
        raise RuntimeError("no AWS credentials")
    frozen = creds.get_frozen_credentials()
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)


def aws_connection(endpoint: str, client_id: str, boto_session=None, port: int = 443, **callbacks):
    """An MQTT-over-WebSocket connection to the data endpoint, signed with SigV4 from the boto3
    session's credentials (not yet connected); callbacks: the builder's on_connection_* ones."""
    import boto3
    from awscrt import auth
    from awsiot import mqtt_connection_builder

    s = boto_session or boto3.Session()
    if s.get_credentials() is None:
        raise ProvisionError("no AWS credentials for the lifecycle listener",
                             "run `aws configure`, or set AWS_PROFILE / AWS_ACCESS_KEY_ID", NO_CREDENTIALS)
    region = s.region_name or region_of(endpoint)
    if not region:
        raise ProvisionError("no AWS region for the lifecycle listener (%s names none)" % endpoint,
                             "set AWS_REGION (e.g. us-east-1) or `aws configure`", NO_CREDENTIALS)
    provider = auth.AwsCredentialsProvider.new_delegate(lambda: _crt_credentials(s))
    return mqtt_connection_builder.websockets_with_default_aws_signing(
        region=region, credentials_provider=provider, endpoint=endpoint, port=port, client_id=client_id,
        clean_session=True, keep_alive_secs=30, reconnect_min_timeout_secs=60, reconnect_max_timeout_secs=120,
        **callbacks)


class AwsListener:
    """The lifecycle events of one thing in AWS, read with the operator's IAM credentials."""

    def __init__(self, endpoint: str, thing: str, prefix: str, boto_session=None, timeout_s: float = 10.0,
                 port: int = 443):
        from awscrt import mqtt

        self.events = Events(thing)
        self.client_id = "%s-%s" % (prefix, secrets.token_hex(4))  # its own: never the device's
        # A listener that loses its connection stops (events then stop, and the caller says so) rather
        # than reconnect late: disconnecting from this callback ends it at once.
        self.conn = aws_connection(endpoint, self.client_id, boto_session, port,
                                   on_connection_interrupted=lambda connection, error, **kw: connection.disconnect())
        needs = "your IAM identity needs " + LISTENER_NEEDS % prefix
        try:
            self.conn.connect().result(timeout_s)
        except Exception as e:  # noqa: BLE001 - the SDK raises its own error types
            text = str(e)
            # A refused signature or identity fails the WebSocket upgrade (HTTP 403).
            denied = "UPGRADE" in text.upper() or "403" in text
            raise ProvisionError("the lifecycle listener could not connect to %s:%d with your AWS credentials (%s)"
                                 % (endpoint, port, text[:120]), needs if denied else
                                 "check the network and AWS_REGION; " + needs,
                                 ACCESS_DENIED if denied else SERVICE_ERROR) from None
        try:
            for t in self.events.topics:
                fut, _ = self.conn.subscribe(t, mqtt.QoS.AT_LEAST_ONCE,
                                             callback=lambda topic, payload, **kw: self.events.add(topic, payload))
                fut.result(timeout_s)
        except Exception as e:  # noqa: BLE001 - AWS refuses (or closes the connection on) a denied SUBSCRIBE
            self.close()
            raise ProvisionError("the lifecycle listener may not subscribe to %s (%s)" % (
                " and ".join(self.events.topics), str(e)[:120]), needs, ACCESS_DENIED) from None

    def close(self):
        try:
            self.conn.disconnect().result(5)
        except Exception:  # noqa: BLE001 - closing what may already be closed
            pass
