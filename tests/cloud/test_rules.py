"""The product's IoT rules (cloud/rules.py) as the local engine's SQL reads them: the alert rule fires
only on a FAULT or an ESTOP, and every rule hands on the payload as published. (Their names and topic
filters are held to the contract by tests/contract/test_contract.py.)"""

from __future__ import annotations

import contract
from cloud import rules as rule_defs
from cloud.local.sql import Rule


def test_the_alert_rule_fires_only_on_fault_and_estop():
    rule = Rule(rule_defs.rule(contract.RULE_ALERTS)["sql"])
    for event, fires in (("FAULT", True), ("ESTOP", True), ("STARTED", False), ("BOOT", False)):
        out = rule.apply({"event": event, "device": "m1"}, topic="devices/m1/events")
        assert (out is not None) is fires
    assert rule.apply({"device": "m1"}, topic="devices/m1/events") is None  # no event: Undefined
    on_text = rule.apply({}, topic="devices/m1/events", payload=b"FAULT")  # a payload that is not JSON
    assert on_text is None, "WHERE on a JSON name: Undefined for a payload with no attributes"


def test_the_product_rules_keep_the_payload_as_published():
    """The rules that feed the Lambdas; the audit trail's two (acks, status) store selected fields."""
    stored = (contract.RULE_ACKS, contract.RULE_STATUS)
    for spec in [r for r in rule_defs.RULES if r["name"] not in stored]:
        rule = Rule(spec["sql"])
        out = rule.apply({"event": "FAULT"}, topic="devices/m1/events", now_ms=5, payload=b'{"event":"FAULT"}')
        assert not rule.reads_json and out == {"payload_b64": "eyJldmVudCI6IkZBVUxUIn0=", "thing": "m1",
                                               "kind": "events", "received_ms": 5}, spec["name"]


def test_the_audit_rules_store_the_topics_thing_not_the_payloads():
    acks = Rule(rule_defs.rule(contract.RULE_ACKS)["sql"])
    out = acks.apply({"id": "c-1", "cmd": "stop", "ok": True, "device": "someone-else"}, topic="devices/m1/ack",
                     now_ms=7)
    assert out["device"] == "m1" and out["sk"] == "ack#c-1" and out["acked_ms"] == 7 and out["ok"] is True
    assert acks.apply({"cmd": "stop", "ok": True}, topic="devices/m1/ack") is None  # no id: nothing to match
    status = Rule(rule_defs.rule(contract.RULE_STATUS)["sql"])
    out = status.apply({"online": False, "boot": "b1", "device": "m2"}, topic="devices/m1/status", now_ms=9)
    assert out == {"device": "m1", "online": False, "boot": "b1", "status_ms": 9}
