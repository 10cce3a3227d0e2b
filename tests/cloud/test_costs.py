"""The cost model's arithmetic, checked against hand-worked AWS billing rules."""

import pytest

from cloud import costs


def test_metering_steps():
    assert costs.message_units(1) == 1
    assert costs.message_units(5 * 1024) == 1
    assert costs.message_units(5 * 1024 + 1) == 2  # IoT Core: 5 KB steps
    assert costs.write_units(1024) == 1 and costs.write_units(1025) == 2  # DynamoDB: 1 KB writes
    assert costs.read_units(4096) == 1 and costs.read_units(4097) == 2  # 4 KB reads
    # 20.2 ms at 256 MB bills as 21 ms: 0.021 s * 0.25 GB
    assert costs.lambda_gb_seconds(20.2, 256) == pytest.approx(0.021 * 0.25)


def test_monthly_cost_scales_a_run_to_one_device_month():
    counts = costs.new_counts()
    # One hour of two devices, each sending one 2 KB message a minute.
    counts["iot_rule_triggered"] = 120
    counts["lambda_request"] = 120
    counts["dynamodb_wru"] = 120
    out = costs.monthly_cost(counts, devices=2, run_seconds=3600)
    per_device_month = 60 * 24 * 30  # one a minute
    assert out["lines"]["iot_rule_triggered"] == pytest.approx(per_device_month * 0.15e-6)
    assert out["lines"]["lambda_request"] == pytest.approx(per_device_month * 0.20e-6)
    assert out["lines"]["dynamodb_wru"] == pytest.approx(per_device_month * 0.625e-6)
    assert out["usd_per_device_month"] == pytest.approx(sum(out["lines"].values()))


def test_bad_run_parameters_are_refused():
    with pytest.raises(ValueError):
        costs.monthly_cost(costs.new_counts(), devices=0, run_seconds=10)


def test_an_item_weighs_the_same_as_python_values_and_as_attribute_values():
    """The meter sees a resource-layer call's item as Python values and a low-level client's as
    attribute values ({"S": ...}): both must cost the same write units."""
    from decimal import Decimal

    from boto3.dynamodb.types import Binary, TypeSerializer

    from cloud.local.meter import item_size

    item = {"device": "m1", "sk": "0001700000000000#0badc0de#0000000007", "payload": Binary(b"\x1f\x8b" * 400),
            "expires_at": 1_800_000_000, "reading": Decimal("30.25"), "ok": True,
            "tags": {"a": "x", "n": [1, 2]}, "names": {"p", "q"}}
    wire = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    assert wire["device"] == {"S": "m1"}
    assert item_size(wire) == item_size(item)
    assert costs.write_units(item_size(wire)) == 1
    big = dict(item, payload=Binary(b"x" * 1500))
    assert costs.write_units(item_size({k: TypeSerializer().serialize(v) for k, v in big.items()})) == 2
