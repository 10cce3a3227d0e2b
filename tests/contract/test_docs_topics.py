"""The MQTT topics the docs name are the contract's: every devices/<thing>/<kind> and devices/+/<kind>
in README.md and docs/*.md has a kind the contract defines, and every kind a device publishes or
receives is documented somewhere. (devices/{thing}/... are the HTTP API's paths, not topics.)"""

from __future__ import annotations

import re
from pathlib import Path

import contract

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A topic as the docs write one: a thing placeholder, a wildcard or a literal thing name, then a kind.
TOPIC = re.compile(r"\bdevices/(<thing>|\+|[A-Za-z0-9:_-]+)/([A-Za-z_]+)\b(?!/)")


def documented_topics():
    found = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in TOPIC.finditer(line):
                found.append(("%s:%d" % (doc.relative_to(ROOT), n), m.group(1), m.group(2)))
    return found


def test_every_documented_topic_has_a_kind_of_the_contract():
    wrong = ["%s devices/%s/%s" % t for t in documented_topics() if t[2] not in contract.TOPIC_KINDS]
    assert not wrong, "topics in the docs with a kind the contract lacks: %s" % wrong


def test_every_kind_of_the_contract_is_documented_as_a_topic():
    kinds = {kind for _, _, kind in documented_topics()}
    assert set(contract.TOPIC_KINDS) <= kinds, "undocumented topic kinds: %s" % sorted(set(contract.TOPIC_KINDS) - kinds)


def test_the_pattern_reads_topics_and_not_api_paths():
    # The check above is only as good as what it reads.
    line = "publish to devices/<thing>/telemetry, read devices/+/events; GET /devices/{thing}/telemetry"
    assert [m.groups() for m in TOPIC.finditer(line)] == [("<thing>", "telemetry"), ("+", "events")]
