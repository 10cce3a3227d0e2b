"""provision's subcommands: each takes the state dir and the parsed options, calls the library
(provisioning.local, provisioning.aws, provisioning.rotation, provisioning.check, provisioning.bundle),
prints one result, as text or, with --json, as JSON, and returns its exit code (contract/exit_codes.py).

The parser that reaches them is provisioning/cli_parser.py, the entry point provisioning/cli.py.
Nothing here imports either: a command can be called, and tested, without a command line.
"""

from __future__ import annotations

import json
import sys

from contract import exit_codes
from provisioning import backends, bundle, errors, identity, local, policy, policy_admin, rotation
from provisioning.errors import BAD_INPUT, ProvisionError
from provisioning.registry import Registry, registered

# ------------------------------------------------------------------ output


def emit(data, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text)


def progress(items, label: str):
    """The items, with a progress bar on stderr when it is a terminal (else the label, once)."""
    out, total = sys.stderr, len(items)
    if not out.isatty():
        print(label, file=out)
        yield from items
        return
    for i, item in enumerate(items):
        out.write("\r%s  [%-32s] %d/%d" % (label, "#" * (32 * i // total), i, total))
        out.flush()
        yield item
    out.write("\r%s  [%s] %d/%d\n" % (label, "#" * 32, total, total))


# ------------------------------------------------------------------ library calls shared by commands


def _read_root_ca(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _parse_attributes(pairs) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ProvisionError("attribute %r is not KEY=VALUE" % p, "e.g. --attribute site=hall-3", BAD_INPUT)
        k, v = p.split("=", 1)
        out[k] = v
    return out


def provision_one(home, thing, backend="local", out=None, wifi_ssid=None, wifi_password=None, key_type="ec",
                  force=False, attributes=(), root_ca=None, remote_start=False) -> dict:
    # The backend's module comes from backends.get, the one place a name picks it.
    return backends.get(backend).provision_device(home, thing, out, wifi_ssid, wifi_password, key_type, force,
                                                  attributes=_parse_attributes(attributes),
                                                  root_ca_pem=_read_root_ca(root_ca), remote_start=remote_start)


# ------------------------------------------------------------------ commands: each returns an exit code


def cmd_ca_init(home, args) -> int:
    r = local.ca_init(home, args.port)
    emit(r, args.json, ("created fleet CA %s" if r["created"] else "fleet CA exists: %s") % r["ca"])
    return exit_codes.OK


def cmd_broker_start(home, args) -> int:
    b = local.broker_start(home, args.port)
    print("local broker on mqtts://%s:%d (pid %s); log %s" % (b.host, b.port, b.pid(), b.log_path))
    return exit_codes.OK


def cmd_broker_stop(home, args) -> int:
    b = local.broker(home)
    was = b.running()
    b.stop()
    print("stopped" if was else "not running")
    return exit_codes.OK


def cmd_broker_status(home, args) -> int:
    st = local.broker(home).status()
    emit(st, args.json, "\n".join("%s: %s" % kv for kv in st.items()))
    return exit_codes.OK if st.get("running") and st.get("tls_ok") else errors.SERVICE_ERROR


def cmd_device(home, args) -> int:
    identity.check_thing(args.thing)
    identity.check_wifi(args.wifi_ssid, args.wifi_password)
    if args.port:
        bundle.mpremote_cmd()
        bundle.check_port(args.port)
    r = provision_one(home, args.thing, args.backend, args.out, args.wifi_ssid, args.wifi_password, args.key_type,
                      args.force, args.attribute, args.root_ca, args.remote_start)
    if args.port:
        try:
            r["board"] = bundle.push(r["bundle"], args.port)
        except ProvisionError as e:
            e.hint += " (%s is provisioned and its bundle is in %s: run this again to retry the copy)" % (
                args.thing, r["bundle"])
            raise
    if r["changed"]:
        text = "provisioned %s (%s): certificate %s\nbundle: %s" % (args.thing, args.backend, r["certificate"][:16],
                                                                     r["bundle"])
    else:
        text = "%s: %s\nbundle: %s" % (args.thing, r["message"], r["bundle"])
    if args.port:
        text += "\ncopied to the board on %s and verified (%d files)" % (args.port, len(r["board"]))
    emit(r, args.json, text)
    return exit_codes.OK


def cmd_check(home, args) -> int:
    from provisioning import check

    steps = check.check_device(home, registered(home, args.thing))
    ok = all(s["ok"] for s in steps)
    live = any(s.get("verdict") == check.TAKEOVER for s in steps)
    emit({"thing": args.thing, "ok": ok, "device_online": live, "steps": steps}, args.json,
         "\n".join("%s %s  %s" % ("ok  " if s["ok"] else "FAIL", s["step"], s["detail"]) for s in steps))
    if live:  # not a verdict on the policy: the check could not finish
        return exit_codes.fail("%s is online: its own connection (same client id) took the check's over, so "
                               "the check stopped before it could prove the policy" % args.thing,
                               check.TAKEOVER_HINT, errors.CHECK_FAILED)
    return exit_codes.OK if ok else errors.CHECK_FAILED


def cmd_list(home, args) -> int:
    if args.aws:
        from provisioning import aws

        things = aws.list_things()
        emit(things, args.json, "\n".join(t["thing"] for t in things) or "(none)")
        return exit_codes.OK
    rows = [{"thing": k, **v} for k, v in sorted(Registry(home).all().items())]
    if args.json:
        emit(rows, True, "")
    elif not rows:
        print("(no devices; provision device THING adds one)")
    else:
        print("%-24s %-7s %-11s %-20s %s" % ("THING", "BACKEND", "STATUS", "CREATED", "BUNDLE"))
        for r in rows:
            status = r["status"] + ("+NEXT" if r.get("pending") else "")  # a rotation is staged
            print("%-24s %-7s %-11s %-20s %s" % (r["thing"], r["backend"], status, r["created"][:19], r["bundle"]))
    return exit_codes.OK


def cmd_revoke(home, args) -> int:
    entry = registered(home, args.thing)
    r = backends.get(entry["backend"]).revoke(home, args.thing)
    emit(r, args.json, "revoked %s" % args.thing if r["changed"] else "%s: %s" % (args.thing, r.get("message")))
    return exit_codes.OK


def cmd_rotate(home, args) -> int:
    entry = registered(home, args.thing)
    if args.abort:
        if args.port or args.wait_online or args.force:
            raise ProvisionError("--abort cannot be combined with --port, --wait-online or --force",
                                 "run provision rotate %s --abort alone" % args.thing, BAD_INPUT)
        r = rotation.abort(home, args.thing)
        emit(r, args.json, "dropped the staged rotation of %s" % args.thing if r["changed"]
             else "%s: %s" % (args.thing, r["message"]))
        return exit_codes.OK

    def say_installed():
        print("new files are in %s: restart the device; waiting up to %d s for it to come online"
              % (entry["bundle"], args.wait_online), file=sys.stderr)

    r = rotation.rotate(home, args.thing, args.port, args.wait_online, args.key_type, args.force,
                        on_installed=say_installed)
    if r["committed"]:
        text = "rotated %s: on the new certificate (%s); the old one is revoked" % (args.thing, r["confirmed"])
    else:
        text = ("new certificate %s and checked; staged in %s (the old one stays valid).\n"
                "Put it on the device, restart it, then: provision rotate %s --force"
                % ("reused" if r["reused"] else "made", r["next_bundle"], args.thing))
    if r.get("check_cut_short"):
        text += ("\nnote: the device was online during the check and took its client id back, so the check "
                 "stopped early (what ran passed)%s" % ("; the confirmation held the device itself to the policy"
                                                        if r["committed"] and r["confirmed"] != "--force" else ""))
    emit(r, args.json, text)
    return exit_codes.OK


def cmd_policy_update(home, args) -> int:
    from provisioning import aws

    plan, done = aws.update_policy(dry_run=args.dry_run)
    data = {"policy": policy.POLICY_NAME, "action": plan.action, "dry_run": args.dry_run,
            "default_version": plan.default_version, "changes": plan.changes, "prune": plan.prune,
            "changed": done is not None, "done": done}
    emit(data, args.json, policy_admin.describe(plan, None if args.dry_run else done))
    return exit_codes.OK


def cmd_batch(home, args) -> int:
    identity.check_prefix(args.prefix, args.count)
    names = [identity.batch_name(args.prefix, i, args.count) for i in range(args.count)]
    results = [provision_one(home, name, args.backend, key_type=args.key_type)
               for name in progress(names, "provisioning")]
    changed = sum(1 for r in results if r["changed"])
    emit(results, args.json, "%d devices: %d new, %d already provisioned; bundles in %s" % (
        args.count, changed, args.count - changed, Registry(home).home / "devices"))
    return exit_codes.OK
