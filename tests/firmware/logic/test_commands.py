# The command checks (motorguard/commands.py): every malformed, replayed, stale or
# out-of-bounds command is refused with its reason, and a stop is never refused.
# Runs under CPython and MicroPython.
import json

from motorguard import commands as cmds

NOW = 1795370000000


def cmd(**fields):
    base = {"v": 2, "id": "c-1", "issued_at": NOW, "cmd": "start"}
    for k in fields:
        if fields[k] is None:
            base.pop(k, None)
        else:
            base[k] = fields[k]
    return json.dumps(base).encode()


def problem(msg, retained=False):
    return cmds.parse(msg, retained)[5]


def test_a_good_command_parses():
    cid, name, code, speed, issued, why = cmds.parse(cmd(cmd="set_speed", speed=120), False)
    assert (cid, name, code, speed, issued, why) == ("c-1", "set_speed", cmds.CMD_SPEED, 120, NOW, None)


def test_bytes_that_are_no_command_are_refused_with_their_reason():
    assert problem(None) == "too_large"
    for junk in (b"", b"{", b"\xff\xfe", b"start", b"[" * 300):
        assert problem(junk) == "not_json", junk
    # NaN is no JSON: MicroPython refuses to parse it, CPython parses it, and then the field is wrong.
    for nan in (b'{"cmd": NaN}', cmd(cmd="set_speed").replace(b'"v": 2', b'"v": NaN'), b"NaN"):
        assert problem(nan) is not None, nan
    for not_object in (b"[]", b"1", b'"start"', b"null", b"true"):
        assert problem(not_object) == "not_object", not_object


def test_every_field_is_checked_against_the_schema_bounds():
    cases = (
        (cmd(v=None), "unsupported_version"),
        (cmd(v=1), "unsupported_version"),
        (cmd(v="2"), "unsupported_version"),
        (cmd(v=True), "unsupported_version"),
        (cmd(id=None), "bad_id"),
        (cmd(id=""), "bad_id"),
        (cmd(id="x" * 65), "bad_id"),
        (cmd(id=7), "bad_id"),
        (cmd(id='a"b'), "bad_id"),
        (cmd(cmd="warp"), "unknown_cmd"),
        (cmd(cmd=None), "unknown_cmd"),
        (cmd(cmd=["start"]), "unknown_cmd"),
        (cmd(extra=1), "unknown_field"),
        (cmd(speed=10), "unknown_field"),  # speed belongs to set_speed only
        (cmd(issued_at=None), "bad_issued_at"),
        (cmd(issued_at="now"), "bad_issued_at"),
        (cmd(issued_at=1.7e12), "bad_issued_at"),
        (cmd(issued_at=123), "bad_issued_at"),
        (cmd(issued_at=10**20), "bad_issued_at"),
        (cmd(cmd="set_speed"), "bad_speed"),
        (cmd(cmd="set_speed", speed=0), "bad_speed"),
        (cmd(cmd="set_speed", speed=181), "bad_speed"),
        (cmd(cmd="set_speed", speed=-1), "bad_speed"),
        (cmd(cmd="set_speed", speed=60.5), "bad_speed"),
        (cmd(cmd="set_speed", speed=True), "bad_speed"),
        (cmd(cmd="set_speed", speed="60"), "bad_speed"),
        (cmd(cmd="set_speed", speed=10**30), "bad_speed"),
        (b'{"v":2,"id":"c-1","issued_at":1795370000000,"cmd":"set_speed","speed":1e400}', "bad_speed"),
    )
    for msg, reason in cases:
        why = problem(msg)
        assert why is not None and why.split(":")[0] == reason, (msg, why)


def test_the_id_is_kept_for_the_ack_even_when_refused():
    cid, name, code, _, _, why = cmds.parse(cmd(cmd="warp", id="q-9"), False)
    assert (cid, name, code) == ("q-9", "invalid", cmds.CMD_NONE) and why.startswith("unknown_cmd")
    cid, name, _, _, _, why = cmds.parse(cmd(v=1, id="q-8"), False)
    assert (cid, name) == ("q-8", "start") and why.startswith("unsupported_version")


def test_a_retained_delivery_is_refused():
    assert problem(cmd(), retained=True) == "retained"


def test_a_stop_is_a_stop_whatever_else_is_wrong_with_it():
    for msg, retained in ((cmd(cmd="stop"), False), (cmd(cmd="stop", v=None, id=None), False),
                          (cmd(cmd="stop", issued_at=1), True), (b'{"cmd":"stop"}', False)):
        assert cmds.parse(msg, retained)[2] == cmds.CMD_STOP, msg


def test_freshness():
    age, tol = 10000, 2000
    assert cmds.freshness(NOW, NOW, age, tol) is None
    assert cmds.freshness(NOW - age, NOW, age, tol) is None
    assert cmds.freshness(NOW - age - 1, NOW, age, tol) == "stale"
    assert cmds.freshness(NOW + tol, NOW, age, tol) is None
    assert cmds.freshness(NOW + tol + 1, NOW, age, tol) == "from_future"
    assert cmds.freshness(NOW + 10**9, NOW, age, tol) == "from_future"


def test_recent_ids_are_bounded_and_remembered():
    r = cmds.RecentIds(4)
    assert not r.seen("a") and r.seen("a")
    for x in ("b", "c", "d"):
        assert not r.seen(x)
    assert r.seen("a") and r.seen("d")
    assert not r.seen("e")  # pushes "a" out: memory stays at 4 ids
    assert len(r.prints) == 8 and not r.seen("a")


def test_recent_ids_tell_long_and_similar_ids_apart():
    r = cmds.RecentIds(16)
    ids = ["x" * 63 + c for c in "abcdefghijklmnop"]
    assert not any(r.seen(i) for i in ids)
    assert all(r.seen(i) for i in ids)
    assert not r.seen("x" * 64) and not r.seen("a")


def test_a_parsed_name_is_the_modules_own_string():
    # Queued commands and acks hold the name: the parsed copy would cost a heap block each.
    assert all(cmds.NAMES[code] == name for name, code in cmds.CODES.items())
    assert cmds.NAMES[cmds.CMD_NONE] == "invalid"
    for name in cmds.CODES:
        assert cmds.parse(cmd(cmd=name, speed=5 if name == "set_speed" else None), False)[1] is cmds.NAMES[cmds.CODES[name]]


def test_mailbox_post_and_done():
    mb = cmds.Mailbox()
    mb.post(cmds.CMD_START, 0, 7)
    assert (mb.code, mb.result, mb.stop_gen) == (cmds.CMD_START, -1, 7)
    mb.done(0)
    assert (mb.code, mb.result) == (cmds.CMD_NONE, 0)
