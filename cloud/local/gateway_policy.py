"""The device policy document the gateway (cloud/local/gateway.py) enforces, as AWS IoT Core would:
read from the file provisioning writes, checked at load so a document the evaluator cannot decide is
refused then rather than at a client's first packet, and re-read on the gateway's SIGHUP."""

from __future__ import annotations

import json
from pathlib import Path

from provisioning import policy_eval


class Policy:
    """The device policy document the gateway enforces, from a file (re-read on SIGHUP)."""

    def __init__(self, path: Path):
        self.path = path
        self.doc = None
        self.version = 0  # sessions remember decisions until it changes
        self.load()

    def load(self):
        doc = json.loads(self.path.read_text())
        policy_eval.check_document(doc)  # refuse a document the evaluator cannot decide, at load time
        self.doc = doc
        self.version += 1

    def decide(self, requests, ctx) -> policy_eval.Decision:
        return policy_eval.evaluate_all(self.doc, requests, ctx)
