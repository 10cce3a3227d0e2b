"""provision: give a MotorGuard device its identity, in AWS IoT Core or on the local broker.

The command line only: each subcommand parses its options and calls the library (provisioning.local,
provisioning.aws, provisioning.rotation, provisioning.check, provisioning.bundle), then prints one
result, as text or, with --json, as JSON. Exit codes: contract/exit_codes.py (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import contract
from contract import exit_codes
from provisioning import backends, bundle, errors, identity, local, policy, policy_admin, rotation
from provisioning.errors import BAD_INPUT, ProvisionError
from provisioning.registry import Registry, home_dir, registered

DESCRIPTION = """Give each MotorGuard device its identity: a private key made on this host (it never goes
to any service), a certificate for it, the least-privilege policy, and a bundle for the board.

Typical use, locally (the local broker stands in for AWS IoT Core):
  provision ca init                       # once: the fleet CA and the broker's identity
  provision broker start                  # Mosquitto with mutual TLS on localhost:8883
  provision device motor-001              # bundle in ~/.motorguard/devices/motor-001
  provision check motor-001               # prove the certificate and the policy work
  make sim BROKER=127.0.0.1:8883 DEVICE=~/.motorguard/devices/motor-001

In AWS (credentials and region as for the AWS CLI):
  provision device motor-001 --backend aws --port /dev/ttyUSB0 --wifi-ssid lab --wifi-password ...
  provision policy update --dry-run       # a fleet in the field: what a newer policy document changes

`provision COMMAND --help` explains a command. Every MotorGuard command line: docs/cli.md"""

DEVICE_HELP = """Provision one device: key and CSR on this host, certificate (signed by AWS IoT or by the
local fleet CA), the fleet policy, the bundle (config.json, device.crt.der, device.key.der [0600],
root-ca.der) and, with --port, the bundle copied onto the board and read back.

Running it again changes nothing unless --force; a failure part-way removes what the run created."""

CHECK_HELP = """Connect with the device's bundle (awsiotsdk) and its own client id, with a retained Last Will
on its status topic as the board sets it; publish to its telemetry topic and a retained status to its
status topic; confirm that another device's topics are refused. A closed connection is judged by the
thing's lifecycle events (in AWS read with your IAM credentials over a signed WebSocket): a refusal
(AUTH_ERROR) is what a forbidden step must get; a takeover (DUPLICATE_CLIENTID) means the device is
online, and the check must run while it is offline. Exit 0 when every step passes, %d otherwise.""" % (
    errors.CHECK_FAILED)

ROTATE_HELP = """Rotate the device's certificate: a new key and certificate, valid next to the old one,
checked from the host (as `provision check`), then delivered and confirmed. The old certificate is
revoked only once the device is confirmed on the new one, or with --force.

Confirmation (the firmware loads its certificate once per boot): the device comes online on the new
certificate and then stays connected for %g s, judged by its lifecycle events (no end of its session,
no refusal; in AWS read with your IAM credentials over a signed WebSocket):
  --port P           copy the new bundle onto the board (mpremote, read back), soft-reset it and
                     wait for `MG NET online` on its console
  --wait-online S    local backend: put the new files into the bundle dir (a virtual ESP32's flash)
                     and wait up to S seconds for the device to come online from a new boot;
                     restart the device once the files are in place
  (neither)          the new bundle is staged in <bundle>.next; install it, restart the device,
                     then `provision rotate THING --force` commits that same certificate
--abort drops a staged rotation (old files back, the new certificate revoked or deleted).""" % rotation.SETTLE_S

POLICY_UPDATE_HELP = """Bring the device policy in AWS IoT Core (motorguard-device) to this provisioning's document
(provisioning/policy.py), for a fleet already in the field: when its default version differs, a new
version is created and made the default, so every certificate it is attached to gets it at once.
AWS keeps at most 5 versions of a policy: the oldest versions that are not the default are deleted
first, only as many as make room. A missing policy is created; an equal one is left alone.

--dry-run prints the statements that differ and the versions it would delete, and changes nothing.
Credentials and region as for the AWS CLI; the caller needs %s.""" % policy_admin.NEEDS

BACKENDS = ("local", "aws")
KEY_TYPES = ("ec", "rsa")
INTERRUPTED = exit_codes.INTERRUPTED  # Ctrl-C (130), outside the table


# ------------------------------------------------------------------ option types


def _directory(text: str) -> str:
    """A directory, existing or not, but not a file."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError("directory %r is a file" % text)
    return text


def _existing_file(text: str) -> str:
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError("file %r does not exist" % text)
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError("file %r is a directory" % text)
    return text


def _seconds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 3600:
        raise argparse.ArgumentTypeError("%r is not a number of seconds in 1-3600" % text)
    return n


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


# ------------------------------------------------------------------ the parser


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="provision", description=DESCRIPTION, formatter_class=raw,
                                 epilog=exit_codes.epilog(errors.CODES))
    ap.add_argument("--home", type=_directory, default=os.environ.get("MOTORGUARD_HOME"), metavar="DIR",
                    help="state dir: fleet CA, local broker, device registry and bundles "
                         "(env MOTORGUARD_HOME; default ~/.motorguard)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent, name, help, description=None, run=None):
        p = parent.add_parser(name, help=help, description=description or help, formatter_class=raw)
        if run:
            p.set_defaults(run=run)
        return p

    def json_flag(p):
        p.add_argument("--json", action="store_true", help="machine-readable output")

    ca = command(sub, "ca", "the local fleet CA")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    p = command(ca_sub, "init", "create the local fleet CA, the broker's TLS certificate and the service "
                "identities (once; a second run reports what exists)", run=cmd_ca_init)
    p.add_argument("--port", type=int, default=local.DEFAULT_PORT,
                   help="the local broker's TLS port (default %(default)s)")
    json_flag(p)

    br = command(sub, "broker", "the local broker: mutual TLS and the device policy enforced as AWS IoT Core does "
                 "(a gateway in front of Mosquitto)")
    br_sub = br.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    p = command(br_sub, "start", "start it (creating the CA first if needed)", run=cmd_broker_start)
    p.add_argument("--port", type=int, default=None, help="TLS port (default: the last one used, else 8883)")
    command(br_sub, "stop", "stop it", run=cmd_broker_stop)
    p = command(br_sub, "status", "is it running and accepting TLS? exit 0 if so, %d if not" % errors.SERVICE_ERROR,
                run=cmd_broker_status)
    json_flag(p)

    p = command(sub, "device", "provision one device (key, certificate, policy, bundle; --port: onto the board)",
                DEVICE_HELP, run=cmd_device)
    p.add_argument("thing", metavar="THING", help="the thing name: %s" % contract.THING_NAME_RULE)
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="who signs the certificate and enforces the policy: the local fleet CA and broker, "
                        "or AWS IoT Core (default %(default)s)")
    p.add_argument("--port", help="copy the bundle onto the board on this serial port (mpremote), "
                                  "e.g. /dev/ttyUSB0")
    p.add_argument("--out", type=_directory, metavar="DIR", help="bundle dir (default: <home>/devices/THING)")
    p.add_argument("--wifi-ssid", metavar="SSID", help="the Wi-Fi network the board joins")
    p.add_argument("--wifi-password", metavar="PASSWORD",
                   help="its WPA2 passphrase (stored only in the bundle's config.json)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec",
                   help="EC P-256 (small, fast on the ESP32) or RSA 2048 (default %(default)s)")
    p.add_argument("--attribute", action="append", default=[], metavar="KEY=VALUE",
                   help="thing attribute (aws; repeatable)")
    p.add_argument("--root-ca", type=_existing_file, metavar="FILE",
                   help="aws: Amazon Root CA 1 PEM (default: downloaded from amazontrust.com)")
    p.add_argument("--force", action="store_true", help="replace an existing identity (the old certificate is revoked)")
    p.add_argument("--remote-start", action="store_true",
                   help="let the cloud start the motor (off by default: remote stop always works, remote start "
                        "only with this flag; see docs/commands.md)")
    json_flag(p)

    p = command(sub, "check", "prove from this host that the device's certificate and policy work", CHECK_HELP,
                run=cmd_check)
    p.add_argument("thing", metavar="THING")
    json_flag(p)

    p = command(sub, "list", "devices provisioned from this host (add --aws for the things in the account)",
                run=cmd_list)
    json_flag(p)
    p.add_argument("--aws", action="store_true", help="list the account's MotorGuard things instead")

    p = command(sub, "revoke", "revoke the device's certificate (aws: REVOKED and detached; local: CRL updated, "
                "broker reloaded)", run=cmd_revoke)
    p.add_argument("thing", metavar="THING")
    json_flag(p)

    p = command(sub, "rotate", "give the device a new certificate; the old one is revoked once it is confirmed",
                ROTATE_HELP, run=cmd_rotate)
    p.add_argument("thing", metavar="THING")
    p.add_argument("--port", help="push the new bundle to the board and wait for it to come online")
    p.add_argument("--wait-online", type=_seconds, metavar="SECONDS",
                   help="local: install the new files in the bundle dir and wait for the device to come online")
    p.add_argument("--key-type", choices=KEY_TYPES, default=None,
                   help="key type of the new certificate (default: as the current one)")
    p.add_argument("--force", action="store_true", help="revoke the old certificate without confirming the device")
    p.add_argument("--abort", action="store_true", help="drop the staged rotation instead")
    json_flag(p)

    pol = command(sub, "policy", "the device policy in AWS IoT Core (provisioning owns it)")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    p = command(pol_sub, "update", "make this provisioning's policy document the default version in AWS "
                "(old versions pruned; --dry-run shows what it would do)", POLICY_UPDATE_HELP, run=cmd_policy_update)
    p.add_argument("--dry-run", action="store_true", help="print the difference and the plan; change nothing")
    json_flag(p)

    p = command(sub, "batch", "provision many devices PREFIX-001..PREFIX-N (for fleets and load tests), with a "
                "progress bar", run=cmd_batch)
    p.add_argument("--count", type=int, required=True, help="how many")
    p.add_argument("--prefix", required=True, help="thing name prefix; names are PREFIX-001, PREFIX-002, ...")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="as for device (default %(default)s)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec", help="as for device (default %(default)s)")
    json_flag(p)
    return ap


def main(argv=None) -> int:
    """`provision`: one line and a hint on stderr for every failure, and its exit code; a traceback
    only with --debug. A malformed command line exits BAD_INPUT (argparse's 2)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(home_dir(args.home), args)
    except ProvisionError as e:
        if args.debug:
            traceback.print_exc()
        return exit_codes.fail(identity.redact(e.message), e.hint, e.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - anything else: still one line
        if args.debug:
            traceback.print_exc()
        return exit_codes.fail("%s: %s" % (type(e).__name__, identity.redact(str(e))[:300]),
                               "run again with --debug for the details", errors.UNEXPECTED)


if __name__ == "__main__":
    sys.exit(main())
