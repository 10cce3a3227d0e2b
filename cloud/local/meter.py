"""Counting what AWS would bill, during a local run: every AWS API call the Lambdas and the engine make
(through botocore's event hooks on the default boto3 session), sized the way AWS meters it."""

from __future__ import annotations

import threading

from boto3.dynamodb.types import TypeDeserializer

from cloud import costs


def _size(value) -> int:
    """Approximate DynamoDB attribute value size (the way DynamoDB counts item size)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (bytes, bytearray)):
        return len(value.value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return len(str(value)) // 2 + 1
    if isinstance(value, dict):
        return 3 + sum(len(k) + _size(v) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return sum(_size(v) for v in value)  # a set, unlike a list, has no overhead of its own
    if isinstance(value, (list, tuple)):
        return 3 + sum(_size(v) + 1 for v in value)
    return len(str(value))


# A low-level client's item holds attribute values ({"S": "..."}), the resource layer's Python values;
# attribute values are sized as the Python values boto3 reads them as.
_AV_TYPES = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}
_deserialize = TypeDeserializer().deserialize


def _value_size(value) -> int:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _AV_TYPES:
        return _size(_deserialize(value))
    return _size(value)


def item_size(item: dict) -> int:
    return sum(len(k) + _value_size(v) for k, v in item.items())


class Meter:
    def __init__(self):
        self.counts = costs.new_counts()
        self.calls = {}
        self._lock = threading.Lock()

    def install(self, session=None):
        import boto3

        if session is None:
            boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        session.events.register("provide-client-params", self._on_params)
        session.events.register("after-call", self._on_response)
        return self

    def _add(self, key, n=1):
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def _on_params(self, params, model, **kw):
        service = model.service_model.service_name
        op = model.name
        with self._lock:
            self.calls["%s.%s" % (service, op)] = self.calls.get("%s.%s" % (service, op), 0) + 1
        if service == "dynamodb":
            if op == "PutItem":
                size = item_size(params.get("Item", {}))
                self._add("dynamodb_wru", costs.write_units(size))
                self._add("dynamodb_bytes_stored", size)
            elif op in ("UpdateItem", "DeleteItem"):
                self._add("dynamodb_wru", 1)
            elif op == "BatchWriteItem":
                for reqs in params.get("RequestItems", {}).values():
                    for r in reqs:
                        item = r.get("PutRequest", {}).get("Item", {})
                        size = item_size(item)
                        self._add("dynamodb_wru", costs.write_units(size) if item else 1)
                        self._add("dynamodb_bytes_stored", size)
        elif service == "s3":
            if op in ("PutObject", "CopyObject", "ListObjectsV2"):
                self._add("s3_put")
                body = params.get("Body")
                if op == "PutObject" and isinstance(body, (bytes, bytearray)):
                    self._add("s3_bytes_stored", len(body))
            elif op == "GetObject":
                self._add("s3_get")
        elif service == "sns" and op == "Publish":
            self._add("sns_publish")
        elif service == "sqs" and op in ("SendMessage", "ReceiveMessage", "DeleteMessage", "SendMessageBatch"):
            self._add("sqs_request")

    def _on_response(self, http_response, parsed, model, **kw):
        if model.service_model.service_name != "dynamodb" or model.name not in ("Query", "Scan", "GetItem"):
            return
        items = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
        size = sum(len(str(i)) for i in items)  # wire size: close enough for read units
        self._add("dynamodb_rru", max(1, costs.read_units(size)))

    def add_counts(self, counts: dict) -> None:
        """Operations counted elsewhere: a Lambda worker process, the local queue of cloud/local/esm.py."""
        with self._lock:
            for key, n in counts.items():
                self.counts[key] = self.counts.get(key, 0) + n

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.counts)
