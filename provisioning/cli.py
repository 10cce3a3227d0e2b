"""provision: give a MotorGuard device its identity, in AWS IoT Core or on the local broker."""

from __future__ import annotations

import functools
import json
import sys
import traceback

import click

from provisioning import bundle, errors, identity
from provisioning import local as localb
from provisioning.errors import BAD_INPUT, ProvisionError
from provisioning.registry import Registry, home_dir

EXIT_HELP = "\n".join("  %2d  %s" % (code, text) for code, text in sorted(errors.EXIT_CODES.items()))

MAIN_HELP = """Give each MotorGuard device its identity: a private key made on this host (it never goes
to any service), a certificate for it, the least-privilege policy, and a bundle for the board.

\b
Typical use, locally (the local broker stands in for AWS IoT Core):
  provision ca init                       # once: the fleet CA and the broker's identity
  provision broker start                  # Mosquitto with mutual TLS on localhost:8883
  provision device motor-001              # bundle in ~/.motorguard/devices/motor-001
  provision check motor-001               # prove the certificate and the policy work
  make sim BROKER=127.0.0.1:8883 DEVICE=~/.motorguard/devices/motor-001

\b
In AWS (credentials and region as for the AWS CLI):
  provision device motor-001 --backend aws --port /dev/ttyUSB0 --wifi-ssid lab --wifi-password ...

\b
Exit codes:
""" + EXIT_HELP


class Ctx:
    def __init__(self, home, debug):
        self.home = home_dir(home)
        self.debug = debug


def handled(f):
    """One line and a hint on stderr, and a distinct exit code; a traceback only with --debug."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool(ctx.find_object(Ctx) and ctx.find_object(Ctx).debug)
        try:
            return f(*args, **kwargs)
        except ProvisionError as e:
            if debug:
                traceback.print_exc()
            click.echo("error: %s" % identity.redact(e.message), err=True)
            if e.hint:
                click.echo("hint: %s" % e.hint, err=True)
            ctx.exit(e.code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - anything else: still one line
            if debug:
                traceback.print_exc()
            click.echo("error: %s: %s" % (type(e).__name__, identity.redact(str(e))[:300]), err=True)
            click.echo("hint: run again with --debug for the details", err=True)
            ctx.exit(errors.UNEXPECTED)

    return wrapper


def emit(data, as_json, text):
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


@click.group(help=MAIN_HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--home", envvar="MOTORGUARD_HOME", type=click.Path(file_okay=False),
              help="state dir: fleet CA, local broker, device registry and bundles [env MOTORGUARD_HOME; "
                   "default ~/.motorguard]")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.pass_context
def main(ctx, home, debug):
    ctx.obj = Ctx(home, debug)


# ------------------------------------------------------------------ ca / broker


@main.group(help="The local fleet CA.")
def ca():
    pass


@ca.command("init", help="Create the local fleet CA, the broker's TLS certificate and the service identity "
                         "(once; a second run reports what exists).")
@click.option("--port", default=localb.DEFAULT_PORT, show_default=True, help="the local broker's TLS port")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
@handled
def ca_init(obj, port, as_json):
    r = localb.ca_init(obj.home, port)
    emit(r, as_json, ("created fleet CA %s" if r["created"] else "fleet CA exists: %s") % r["ca"])


@main.group(help="The local broker: Mosquitto with mutual TLS and an ACL that mirrors the AWS policy.")
def broker():
    pass


@broker.command("start", help="Start it (creating the CA first if needed).")
@click.option("--port", type=int, default=None, help="TLS port (default: the last one used, else 8883)")
@click.pass_obj
@handled
def broker_start(obj, port):
    b = localb.broker_start(obj.home, port)
    click.echo("local broker on mqtts://%s:%d (pid %s); log %s" % (b.host, b.port, b.pid(), b.log_path))


@broker.command("stop", help="Stop it.")
@click.pass_obj
@handled
def broker_stop(obj):
    b = localb.broker(obj.home)
    was = b.running()
    b.stop()
    click.echo("stopped" if was else "not running")


@broker.command("status", help="Is it running and accepting TLS? Exit 0 if so, 9 if not.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def broker_status(obj, as_json):
    st = localb.broker(obj.home).status()
    emit(st, as_json, "\n".join("%s: %s" % kv for kv in st.items()))
    if not (st.get("running") and st.get("tls_ok")):
        raise click.exceptions.Exit(errors.SERVICE_ERROR)


# ------------------------------------------------------------------ devices


def _read_root_ca(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _parse_attributes(pairs):
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ProvisionError("attribute %r is not KEY=VALUE" % p, "e.g. --attribute site=hall-3", BAD_INPUT)
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _provision_one(obj, thing, backend, out, wifi_ssid, wifi_password, key_type, force, attributes=(), root_ca=None,
                   remote_start=False):
    if backend == "local":
        return localb.provision_device(obj.home, thing, out, wifi_ssid, wifi_password, key_type, force, remote_start)
    from provisioning import aws

    return aws.provision_device(obj.home, thing, out, wifi_ssid, wifi_password, key_type, force,
                                _parse_attributes(attributes), _read_root_ca(root_ca), remote_start=remote_start)


@main.command(help="""Provision one device: key and CSR on this host, certificate (signed by AWS IoT or by the
local fleet CA), the fleet policy, the bundle (config.json, device.crt.der, device.key.der [0600],
root-ca.der) and, with --port, the bundle copied onto the board and read back.

Running it again changes nothing unless --force; a failure part-way removes what the run created.""")
@click.argument("thing")
@click.option("--backend", type=click.Choice(["local", "aws"]), default="local", show_default=True)
@click.option("--port", "serial_port", help="copy the bundle onto the board on this serial port (mpremote)")
@click.option("--out", type=click.Path(file_okay=False), help="bundle dir [default: <home>/devices/THING]")
@click.option("--wifi-ssid", help="the Wi-Fi network the board joins")
@click.option("--wifi-password", help="its WPA2 passphrase (stored only in the bundle's config.json)")
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True,
              help="EC P-256 (small, fast on the ESP32) or RSA 2048")
@click.option("--attribute", "attributes", multiple=True, metavar="KEY=VALUE", help="thing attribute (aws; repeatable)")
@click.option("--root-ca", type=click.Path(dir_okay=False, exists=True),
              help="aws: Amazon Root CA 1 PEM [default: downloaded from amazontrust.com]")
@click.option("--force", is_flag=True, help="replace an existing identity (the old certificate is revoked)")
@click.option("--remote-start", is_flag=True,
              help="let the cloud start the motor (off by default: remote stop always works, remote start "
                   "only with this flag; see docs/commands.md)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
@handled
def device(obj, thing, backend, serial_port, out, wifi_ssid, wifi_password, key_type, attributes, root_ca, force,
           remote_start, as_json):
    identity.check_thing(thing)
    identity.check_wifi(wifi_ssid, wifi_password)
    if serial_port:
        bundle.mpremote_cmd()
        bundle.check_port(serial_port)
    r = _provision_one(obj, thing, backend, out, wifi_ssid, wifi_password, key_type, force, attributes, root_ca,
                       remote_start)
    if serial_port:
        try:
            r["board"] = bundle.push(r["bundle"], serial_port)
        except ProvisionError as e:
            e.hint += " (%s is provisioned and its bundle is in %s: run this again to retry the copy)" % (
                thing, r["bundle"])
            raise
    if r["changed"]:
        text = "provisioned %s (%s): certificate %s\nbundle: %s" % (thing, backend, r["certificate"][:16], r["bundle"])
    else:
        text = "%s: %s\nbundle: %s" % (thing, r["message"], r["bundle"])
    if serial_port:
        text += "\ncopied to the board on %s and verified (%d files)" % (serial_port, len(r["board"]))
    emit(r, as_json, text)


def _bundle_of(obj, thing):
    identity.check_thing(thing)
    entry = Registry(obj.home).get(thing)
    if not entry:
        raise ProvisionError("no device %r in %s" % (thing, obj.home), "provision list shows them", errors.NOT_FOUND)
    return entry


def _run_check(obj, entry, bundle_dir=None):
    from provisioning import check as checkmod

    observer = None
    if entry["backend"] == "local":
        observer = localb.broker(obj.home)
        if not observer.running():
            raise ProvisionError("the local broker is not running", "provision broker start", errors.SERVICE_ERROR)
    return checkmod.run(bundle_dir or entry["bundle"], observer_broker=observer)


@main.command(help="""Connect with the device's bundle (awsiotsdk), publish to its telemetry topic, and confirm
that another device's topics are refused. Exit 0 when every step passes, 8 otherwise.""")
@click.argument("thing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def check(obj, thing, as_json):
    entry = _bundle_of(obj, thing)
    steps = _run_check(obj, entry)
    ok = all(s["ok"] for s in steps)
    emit({"thing": thing, "ok": ok, "steps": steps}, as_json,
         "\n".join("%s %s  %s" % ("ok  " if s["ok"] else "FAIL", s["step"], s["detail"]) for s in steps))
    if not ok:
        raise click.exceptions.Exit(errors.CHECK_FAILED)


@main.command("list", help="Devices provisioned from this host (add --aws for the things in the account).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--aws", "from_aws", is_flag=True, help="list the account's MotorGuard things instead")
@click.pass_obj
@handled
def list_cmd(obj, as_json, from_aws):
    if from_aws:
        from provisioning import aws

        things = aws.list_things()
        emit(things, as_json, "\n".join(t["thing"] for t in things) or "(none)")
        return
    things = Registry(obj.home).all()
    rows = [{"thing": k, **v} for k, v in sorted(things.items())]
    if as_json:
        emit(rows, True, "")
        return
    if not rows:
        click.echo("(no devices; provision device THING adds one)")
        return
    click.echo("%-24s %-7s %-11s %-20s %s" % ("THING", "BACKEND", "STATUS", "CREATED", "BUNDLE"))
    for r in rows:
        status = r["status"] + ("+NEXT" if r.get("pending") else "")  # a rotation is staged
        click.echo("%-24s %-7s %-11s %-20s %s" % (r["thing"], r["backend"], status, r["created"][:19], r["bundle"]))


@main.command(help="Revoke the device's certificate (aws: REVOKED and detached; local: CRL updated, broker reloaded).")
@click.argument("thing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def revoke(obj, thing, as_json):
    entry = _bundle_of(obj, thing)
    if entry["backend"] == "local":
        r = localb.revoke(obj.home, thing)
    else:
        from provisioning import aws

        r = aws.revoke(obj.home, thing)
    emit(r, as_json, "revoked %s" % thing if r["changed"] else "%s: %s" % (thing, r.get("message")))


ROTATE_HELP = """Rotate the device's certificate: a new key and certificate, valid next to the old one,
checked from the host (as `provision check`), then delivered and confirmed. The old certificate is
revoked only once the device is confirmed on the new one, or with --force.

\b
Confirmation (the firmware loads its certificate once per boot):
  --port P           copy the new bundle onto the board (mpremote, read back), soft-reset it and
                     wait for `MG NET online` on its console
  --wait-online S    local backend: put the new files into the bundle dir (a virtual ESP32's flash)
                     and wait up to S seconds for the device to come online from a new boot;
                     restart the device once the files are in place
  (neither)          the new bundle is staged in <bundle>.next; install it, restart the device,
                     then `provision rotate THING --force` commits that same certificate
--abort drops a staged rotation (old files back, the new certificate revoked or deleted)."""


@main.command(help=ROTATE_HELP)
@click.argument("thing")
@click.option("--port", "serial_port", help="push the new bundle to the board and wait for it to come online")
@click.option("--wait-online", type=click.IntRange(1, 3600), metavar="SECONDS",
              help="local: install the new files in the bundle dir and wait for the device to come online")
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default=None,
              help="key type of the new certificate [default: as the current one]")
@click.option("--force", is_flag=True, help="revoke the old certificate without confirming the device")
@click.option("--abort", "abort_", is_flag=True, help="drop the staged rotation instead")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def rotate(obj, thing, serial_port, wait_online, key_type, force, abort_, as_json):
    from provisioning import rotation

    entry = _bundle_of(obj, thing)
    if abort_:
        if serial_port or wait_online or force:
            raise ProvisionError("--abort cannot be combined with --port, --wait-online or --force",
                                 "run provision rotate %s --abort alone" % thing, BAD_INPUT)
        r = rotation.abort(obj.home, thing)
        emit(r, as_json, "dropped the staged rotation of %s" % thing if r["changed"] else "%s: %s" % (thing, r["message"]))
        return
    if serial_port and wait_online:
        raise ProvisionError("--port and --wait-online are two ways to confirm: pick one",
                             "--port for a board on USB, --wait-online for a device on the local broker", BAD_INPUT)
    if wait_online and entry["backend"] != "local":
        raise ProvisionError("--wait-online needs the local broker's service identity; %s is on %s" % (
            thing, entry["backend"]), "use --port (the board's console confirms), or --force once you have "
                                      "seen the device online", BAD_INPUT)
    if entry.get("status") == "REVOKED":
        raise ProvisionError("%s is revoked: nothing to rotate" % thing,
                             "provision device %s --force gives it a new identity" % thing, errors.CONFLICT)
    if serial_port:
        bundle.mpremote_cmd()
        bundle.check_port(serial_port)
    if wait_online and not localb.broker(obj.home).running():
        raise ProvisionError("the local broker is not running", "provision broker start", errors.SERVICE_ERROR)

    pending, reused = rotation.stage(obj.home, thing, key_type)
    steps = _run_check(obj, entry, pending["next_bundle"])
    if not all(s["ok"] for s in steps):
        rotation.abort(obj.home, thing)
        raise ProvisionError("the new certificate failed the check: %s" % next(
            s["step"] + ": " + s["detail"] for s in steps if not s["ok"]),
            "the old certificate stays in use; the new one was dropped", errors.CHECK_FAILED)
    confirmed = None
    if serial_port:
        try:
            bundle.push(pending["next_bundle"], serial_port)
        except ProvisionError as e:
            e.hint += " (the rotation stays staged and the old certificate valid: run this again, or --abort)"
            raise
        if bundle.wait_online(serial_port):
            confirmed = "the board came online on %s after a reset" % serial_port
    elif wait_online:
        def say_installed():
            click.echo("new files are in %s: restart the device; waiting up to %d s for it to come online"
                       % (entry["bundle"], wait_online), err=True)

        seen = rotation.install_and_wait_online(localb.broker(obj.home), entry["bundle"], pending, wait_online,
                                                on_installed=say_installed)
        if seen:
            confirmed = "the device came online from boot %s" % seen.get("boot")
    if confirmed is None and force:
        confirmed = "--force"
    if confirmed is None:
        if serial_port or wait_online:
            raise ProvisionError(
                "%s did not come online on the new certificate in time" % thing,
                "both certificates stay valid; once the device is online: provision rotate %s --force "
                "(or --abort)" % thing, errors.CHECK_FAILED)
        emit({"thing": thing, "committed": False, "reused": reused, "next_bundle": pending["next_bundle"],
              "steps": steps}, as_json,
             "new certificate %s and checked; staged in %s (the old one stays valid).\n"
             "Put it on the device, restart it, then: provision rotate %s --force"
             % ("reused" if reused else "made", pending["next_bundle"], thing))
        return
    r = rotation.commit(obj.home, thing)
    r.update(confirmed=confirmed, committed=True, steps=steps)
    emit(r, as_json, "rotated %s: on the new certificate (%s); the old one is revoked" % (thing, confirmed))


@main.command(help="Provision many devices PREFIX-001..PREFIX-N (for fleets and load tests), with a progress bar.")
@click.option("--count", type=int, required=True, help="how many")
@click.option("--prefix", required=True, help="thing name prefix; names are PREFIX-001, PREFIX-002, ...")
@click.option("--backend", type=click.Choice(["local", "aws"]), default="local", show_default=True)
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def batch(obj, count, prefix, backend, key_type, as_json):
    identity.check_prefix(prefix, count)
    names = [identity.batch_name(prefix, i, count) for i in range(count)]
    results = []
    with click.progressbar(names, label="provisioning", file=sys.stderr) as bar:
        for name in bar:
            results.append(_provision_one(obj, name, backend, None, None, None, key_type, False))
    changed = sum(1 for r in results if r["changed"])
    emit(results, as_json, "%d devices: %d new, %d already provisioned; bundles in %s" % (
        count, changed, count - changed, Registry(obj.home).home / "devices"))


if __name__ == "__main__":
    main()
