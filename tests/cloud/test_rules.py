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
    for spec in rule_defs.RULES:
        rule = Rule(spec["sql"])
        out = rule.apply({"event": "FAULT"}, topic="devices/m1/events", now_ms=5, payload=b'{"event":"FAULT"}')
        assert not rule.reads_json and out == {"payload_b64": "eyJldmVudCI6IkZBVUxUIn0=", "thing": "m1",
                                               "kind": "events", "received_ms": 5}, spec["name"]
