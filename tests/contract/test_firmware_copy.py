"""The firmware's copy of the fleet contract (firmware/motorguard/contract.py) equals contract/.

A board cannot import the host package, so the firmware carries its own copy; every value in it is
held to contract/ here, so a change on either side without the other fails this test.
"""

import pathlib
import sys

import pytest

import contract

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "firmware"))
from motorguard import config as fw_config  # noqa: E402
from motorguard import contract as fw  # noqa: E402

THINGS = ("motor-001", "a", "Line_2:motor-07", "x" * 128)


def test_topic_prefix_and_every_kind():
    assert fw.TOPIC_PREFIX == contract.TOPIC_PREFIX
    kinds = (fw.TELEMETRY, fw.EVENTS, fw.STATUS, fw.ACK, fw.CMD)
    assert kinds == (contract.TELEMETRY, contract.EVENTS, contract.STATUS, contract.ACK, contract.CMD)
    # Every kind the contract knows is in the copy: the firmware publishes to all but cmd, and subscribes to cmd.
    assert set(kinds) == set(contract.TOPIC_KINDS)


@pytest.mark.parametrize("thing", THINGS)
def test_topics_for_a_thing(thing):
    for kind in contract.TOPIC_KINDS:
        assert fw.topic(thing, kind) == contract.topic(thing, kind)
        assert contract.parse_topic(fw.topic(thing, kind)) == (thing, kind)


ACCEPTED = ("a", "motor-001", "A:b_c-D", "0", "-", ":", "_", "a" * 127, "a" * 128,
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-")
REFUSED = ("", "a" * 129, "a" * 500, "a b", " a", "a\n", "é", "motoré", "a/b", "a+b", "a#", "a.b", "a$", "ü" * 3,
           "\u0661", "\uff41", None, 7, b"motor", ["motor"])


@pytest.mark.parametrize("name", ACCEPTED + REFUSED, ids=repr)
def test_thing_name_rule_on_accepted_and_refused_names(name):
    assert contract.is_thing_name(name) is (name in ACCEPTED)
    assert fw.is_thing_name(name) is contract.is_thing_name(name)


def test_thing_name_characters_and_bounds():
    # Character by character over ASCII, Latin-1 and more: the copy allows exactly the contract's set.
    allowed = {chr(c) for c in range(0x3000) if contract.is_thing_name(chr(c))}
    assert set(fw.THING_CHARS) == allowed and len(fw.THING_CHARS) == len(allowed)
    for n in (fw.THING_MIN_LEN - 1, fw.THING_MIN_LEN, fw.THING_MAX_LEN, fw.THING_MAX_LEN + 1):
        assert fw.is_thing_name("a" * n) is contract.is_thing_name("a" * n)
    assert (fw.THING_MIN_LEN, fw.THING_MAX_LEN) == (1, 128)
    assert contract.THING_NAME_PATTERN == "[a-zA-Z0-9:_-]{%d,%d}" % (fw.THING_MIN_LEN, fw.THING_MAX_LEN)
    assert fw.THING_NAME_RULE == contract.THING_NAME_RULE


def test_message_versions():
    for kind, version in contract.MESSAGE_VERSIONS.items():
        assert (fw.COMMAND_VERSION if kind == "command" else fw.MESSAGE_VERSION) == version, kind


def test_bundle_file_names():
    assert (fw.CONFIG_FILE, fw.DEVICE_CERT, fw.DEVICE_KEY, fw.ROOT_CA) == contract.BOARD_FILES
    assert (contract.CONFIG_FILE, contract.DEVICE_CERT, contract.DEVICE_KEY, contract.ROOT_CA) == contract.BOARD_FILES
    mqtt = fw_config.DEFAULTS["mqtt"]
    assert (mqtt["cert"], mqtt["key"], mqtt["ca"]) == (contract.DEVICE_CERT, contract.DEVICE_KEY, contract.ROOT_CA)


def test_reset_causes():
    assert fw.RESET_CAUSES == contract.RESET_CAUSES
    assert fw.UNKNOWN_RESET_CAUSE == contract.UNKNOWN_RESET_CAUSE


def test_topics_are_not_a_device_setting():
    assert "topics" not in fw_config.DEFAULTS
    with pytest.raises(fw_config.ConfigError, match="fixed by the fleet contract"):
        fw_config.parse('{"thing": "m", "mqtt": {"host": "h"}, "topics": {"telemetry": "x/{thing}"}}')
