"""provision's command line: the argument parser, with the --help text that teaches each command, and
the option types that refuse a bad value before any command runs.

Each command's parser names the function that runs it (provisioning/cli_commands.py) as its `run`
default; provisioning/cli.py parses, calls it and reports a failure.
"""

from __future__ import annotations

import argparse
import os

import contract
from contract import exit_codes
from provisioning import backends, cli_commands, errors, local, policy_admin, rotation

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

KEY_TYPES = ("ec", "rsa")


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
                "identities (once; a second run reports what exists)", run=cli_commands.cmd_ca_init)
    p.add_argument("--port", type=int, default=local.DEFAULT_PORT,
                   help="the local broker's TLS port (default %(default)s)")
    json_flag(p)

    br = command(sub, "broker", "the local broker: mutual TLS and the device policy enforced as AWS IoT Core does "
                 "(a gateway in front of Mosquitto)")
    br_sub = br.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    p = command(br_sub, "start", "start it (creating the CA first if needed)", run=cli_commands.cmd_broker_start)
    p.add_argument("--port", type=int, default=None, help="TLS port (default: the last one used, else 8883)")
    command(br_sub, "stop", "stop it", run=cli_commands.cmd_broker_stop)
    p = command(br_sub, "status", "is it running and accepting TLS? exit 0 if so, %d if not" % errors.SERVICE_ERROR,
                run=cli_commands.cmd_broker_status)
    json_flag(p)

    p = command(sub, "device", "provision one device (key, certificate, policy, bundle; --port: onto the board)",
                DEVICE_HELP, run=cli_commands.cmd_device)
    p.add_argument("thing", metavar="THING", help="the thing name: %s" % contract.THING_NAME_RULE)
    p.add_argument("--backend", choices=backends.NAMES, default="local",
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
                run=cli_commands.cmd_check)
    p.add_argument("thing", metavar="THING")
    json_flag(p)

    p = command(sub, "list", "devices provisioned from this host (add --aws for the things in the account)",
                run=cli_commands.cmd_list)
    json_flag(p)
    p.add_argument("--aws", action="store_true", help="list the account's MotorGuard things instead")

    p = command(sub, "revoke", "revoke the device's certificate (aws: REVOKED and detached; local: CRL updated, "
                "broker reloaded)", run=cli_commands.cmd_revoke)
    p.add_argument("thing", metavar="THING")
    json_flag(p)

    p = command(sub, "rotate", "give the device a new certificate; the old one is revoked once it is confirmed",
                ROTATE_HELP, run=cli_commands.cmd_rotate)
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
                "(old versions pruned; --dry-run shows what it would do)", POLICY_UPDATE_HELP,
                run=cli_commands.cmd_policy_update)
    p.add_argument("--dry-run", action="store_true", help="print the difference and the plan; change nothing")
    json_flag(p)

    p = command(sub, "batch", "provision many devices PREFIX-001..PREFIX-N (for fleets and load tests), with a "
                "progress bar", run=cli_commands.cmd_batch)
    p.add_argument("--count", type=int, required=True, help="how many")
    p.add_argument("--prefix", required=True, help="thing name prefix; names are PREFIX-001, PREFIX-002, ...")
    p.add_argument("--backend", choices=backends.NAMES, default="local", help="as for device (default %(default)s)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec", help="as for device (default %(default)s)")
    json_flag(p)
    return ap
