"""The AWS backend: thing, certificate from our CSR, the fleet policy, attachments, endpoint.

The fleet policy is provisioning's alone (provisioning/policy_admin.py; the CDK stack does not make
it): a run creates it when the account has none, and stops before it creates anything when its
default version differs from provisioning/policy.py's document, rather than attach an outdated
policy (`provision policy update`, update_policy() here, makes the document the default version).

Every step that creates something records how to undo it; if a later step fails, the
undo steps run in reverse order, so a failed run leaves nothing behind in the account
(the fleet policy too, if this run created it). The thing type is the one exception: it is
kept, because AWS deletes a thing type only five minutes after deprecating it, and it grants
nothing (no identity, no permission) by itself.

boto3 finds region and credentials the usual way (AWS_PROFILE, AWS_REGION, ~/.aws, the
instance role) and honours AWS_ENDPOINT_URL. Pass `session` to use a specific one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from provisioning import bundle, current, identity, policy, policy_admin
from provisioning.errors import (ACCESS_DENIED, CONFLICT, NO_CREDENTIALS, NOT_FOUND, SERVICE_ERROR,
                                 ProvisionError)
from provisioning.registry import Registry, now_iso

THING_TYPE = "motorguard-motor"
# What `provision device`, `revoke` and `rotate` ask of the caller's IAM identity (docs/provisioning.md).
DEVICE_NEEDS = ("iot:CreateThing, iot:CreateCertificateFromCsr, iot:GetPolicy, iot:CreatePolicy, iot:AttachPolicy, "
                "iot:AttachThingPrincipal, iot:DescribeEndpoint")
AMAZON_ROOT_CA1_URL = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"


def _client(session, service):
    import boto3

    s = session or boto3.Session()
    return s.client(service)


def translate(e: Exception, doing: str, needs: str = DEVICE_NEEDS) -> ProvisionError:
    """AWS errors as one line and a hint; needs: the IAM actions an access-denied hint names."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(e, ProvisionError):
        return e
    if isinstance(e, NoCredentialsError):
        return ProvisionError("no AWS credentials found while %s" % doing,
                              "run `aws configure`, or set AWS_PROFILE / AWS_ACCESS_KEY_ID", NO_CREDENTIALS)
    if isinstance(e, NoRegionError):
        return ProvisionError("no AWS region configured", "set AWS_REGION (e.g. us-east-1) or `aws configure`",
                              NO_CREDENTIALS)
    if isinstance(e, EndpointConnectionError):
        return ProvisionError("cannot reach AWS while %s" % doing, "check the network and AWS_REGION", SERVICE_ERROR)
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        msg = e.response.get("Error", {}).get("Message", "")
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedException", "UnrecognizedClientException",
                    "InvalidClientTokenId", "ExpiredTokenException"):
            return ProvisionError("access denied while %s (%s)" % (doing, code),
                                  "the caller needs %s" % needs, ACCESS_DENIED)
        if code == "ResourceAlreadyExistsException":
            return ProvisionError("already exists while %s: %s" % (doing, msg), "use --force to replace it", CONFLICT)
        if code == "ResourceNotFoundException":
            return ProvisionError("not found while %s: %s" % (doing, msg), "provision list shows the devices",
                                  NOT_FOUND)
        return ProvisionError("AWS refused %s: %s %s" % (doing, code, msg), "see the message; nothing was kept",
                              SERVICE_ERROR)
    return ProvisionError("%s failed: %s" % (doing, e), "run with --debug for details", SERVICE_ERROR)


class Journal:
    """Undo steps of one run, run in reverse on failure."""

    def __init__(self):
        self.undo = []
        self.done = []

    def did(self, what, undo):
        self.done.append(what)
        self.undo.append((what, undo))

    def rollback(self) -> list[str]:
        failed = []
        for what, undo in reversed(self.undo):
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - keep undoing the rest, report what stuck
                failed.append("%s (%s)" % (what, e))
        self.undo.clear()
        return failed


def principals(iot, thing) -> list[str]:
    return iot.list_thing_principals(thingName=thing).get("principals", [])


def _thing_exists(iot, thing) -> bool:
    from botocore.exceptions import ClientError

    try:
        iot.describe_thing(thingName=thing)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise


def _ensure_thing_type(iot):
    from botocore.exceptions import ClientError

    try:
        iot.describe_thing_type(thingTypeName=THING_TYPE)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        iot.create_thing_type(thingTypeName=THING_TYPE, thingTypeProperties={
            "thingTypeDescription": "MotorGuard ESP32 motor controller",
            "searchableAttributes": ["model", "firmware"]})


def amazon_root_ca() -> bytes:
    """Amazon Root CA 1, which signs the ATS endpoints' certificates."""
    import urllib.request

    try:
        with urllib.request.urlopen(AMAZON_ROOT_CA1_URL, timeout=15) as r:
            return r.read()
    except OSError as e:
        raise ProvisionError("cannot download Amazon Root CA 1 (%s)" % e,
                             "download %s and pass it with --root-ca FILE" % AMAZON_ROOT_CA1_URL, SERVICE_ERROR) from None


class Run:
    """One provisioning run: the current step (for the error message) and the undo journal."""

    def __init__(self):
        self.journal = Journal()
        self.step = "starting"

    def failed(self, e: Exception) -> ProvisionError:
        err = translate(e, self.step)
        stuck = self.journal.rollback()
        err.message += "; rolled back (%s)" % (", ".join(self.journal.done) or "nothing had been created")
        if stuck:
            err.message += "; COULD NOT REMOVE: %s" % "; ".join(stuck)
        return err


# The thing attribute the API reads to know whether a device accepts a remote start (the dashboard
# offers Start only then; the board itself enforces its own config whatever the page offers).
REMOTE_START_ATTRIBUTE = "remote_start"


def _certify(iot, run: Run, thing: str, key_type: str):
    """Key and CSR here, certificate from AWS (checked to carry our key), policy and thing attached."""
    run.step = "getting a certificate for the CSR"
    key, csr = identity.new_key_and_csr(thing, key_type)
    resp = iot.create_certificate_from_csr(certificateSigningRequest=identity.csr_pem(csr), setAsActive=True)
    arn, cert_id = resp["certificateArn"], resp["certificateId"]

    def drop_cert():
        iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
        iot.delete_certificate(certificateId=cert_id, forceDelete=True)

    run.journal.did("certificate %s" % cert_id, drop_cert)
    run.step = "checking the certificate"
    cert = identity.certificate_for_key(resp["certificatePem"], key)
    run.step = "attaching the policy"
    iot.attach_policy(policyName=policy.POLICY_NAME, target=arn)
    run.journal.did("policy attachment", lambda: iot.detach_policy(policyName=policy.POLICY_NAME, target=arn))
    run.step = "attaching the certificate to the thing"
    iot.attach_thing_principal(thingName=thing, principal=arn)
    run.journal.did("thing attachment", lambda: iot.detach_thing_principal(thingName=thing, principal=arn))
    return key, cert, arn, cert_id


def provision_device(home, thing: str, out=None, wifi_ssid=None, wifi_password=None, key_type: str = "ec",
                     force: bool = False, attributes=None, root_ca_pem: bytes | None = None, session=None,
                     remote_start: bool = False) -> dict:
    identity.check_thing(thing)
    identity.check_wifi(wifi_ssid, wifi_password)
    identity.check_key_type(key_type)
    reg = Registry(home)
    out = Path(out).resolve() if out else reg.device_dir(thing)
    iot = _client(session, "iot")
    run = Run()
    run.step = "checking the thing"
    try:
        entry = reg.get(thing)
        if entry and entry.get("backend") != "aws" and not force:
            raise ProvisionError("%s is registered with the %s backend" % (thing, entry.get("backend")),
                                 "use --backend %s, or --force to replace it" % entry.get("backend"), CONFLICT)
        exists = _thing_exists(iot, thing)
        if exists:
            attached = principals(iot, thing)
            ours = entry and entry.get("backend") == "aws" and entry.get("certificate_arn") in attached
            if ours and bundle.complete(entry["bundle"]) and not force:
                return {"thing": thing, "backend": "aws", "changed": False, "bundle": entry["bundle"],
                        "certificate": entry["certificate_id"], "message": "already provisioned (use --force to replace)"}
            if attached and not ours and not force:
                raise ProvisionError(
                    "thing %s exists with another certificate attached (%d principal(s))" % (thing, len(attached)),
                    "pick another name, or --force to add a new certificate (then revoke the old one)", CONFLICT)
        if force and entry and entry.get("pending"):
            rotate_abort(home, thing, entry["pending"], session=session)
        # Before anything is made: an outdated policy would be attached to this device as it stands.
        run.step = "checking the device policy"
        policy_admin.ensure_current(iot, run.journal)
        run.step = "creating the thing type"
        _ensure_thing_type(iot)
        if not exists:
            run.step = "creating the thing"
            attrs = {"model": "esp32-servo", "firmware": "motorguard", REMOTE_START_ATTRIBUTE: str(remote_start).lower()}
            attrs.update(attributes or {})
            iot.create_thing(thingName=thing, thingTypeName=THING_TYPE, attributePayload={"attributes": attrs})
            run.journal.did("thing %s" % thing, lambda: iot.delete_thing(thingName=thing))
        else:  # the registry says what the bundle now says: the dashboard offers Start from it
            iot.update_thing(thingName=thing, attributePayload={
                "attributes": {REMOTE_START_ATTRIBUTE: str(remote_start).lower()}, "merge": True})
        key, cert, arn, cert_id = _certify(iot, run, thing, key_type)
        run.step = "reading the data endpoint"
        endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        run.step = "writing the bundle"
        ca = root_ca_pem if root_ca_pem is not None else amazon_root_ca()
        cfg = bundle.device_config(thing, endpoint, 8883, wifi_ssid, wifi_password, remote_start)
        bundle.write(out, cfg, cert, key, ca)
        run.journal.did("bundle %s" % out, lambda: shutil.rmtree(out, ignore_errors=True))
        reg.put(thing, {"backend": "aws", "certificate_arn": arn, "certificate_id": cert_id,
                        "fingerprint": identity.fingerprint(cert), "bundle": str(out), "endpoint": endpoint,
                        "created": now_iso(), "status": "ACTIVE"})
    except Exception as e:  # noqa: BLE001 - every failure rolls back, then is reported as one line
        raise run.failed(e) from None
    result = {"thing": thing, "backend": "aws", "changed": True, "bundle": str(out), "certificate": cert_id,
              "endpoint": endpoint}
    old = entry.get("certificate_id") if entry and entry.get("backend") == "aws" else None
    if old and old != cert_id and entry.get("status") != "REVOKED":
        # --force replaced our own identity: the old certificate must not stay usable.
        revoke(home, thing, session=session, certificate_id=old)
        result["revoked"] = old
    return result


def revoke(home, thing: str, session=None, certificate_id=None) -> dict:
    identity.check_thing(thing)
    reg = Registry(home)
    entry = reg.get(thing)
    if not entry or entry.get("backend") != "aws":
        raise ProvisionError("no AWS-provisioned device %r in the registry" % thing, "provision list shows them",
                             NOT_FOUND)
    if certificate_id is None:
        if entry.get("pending"):  # a staged rotation's certificate goes too
            rotate_abort(home, thing, entry["pending"], session=session)
        if entry.get("status") == "REVOKED":
            return {"thing": thing, "changed": False, "message": "already revoked"}
    iot = _client(session, "iot")
    cert_id = certificate_id or entry["certificate_id"]
    arn = entry["certificate_arn"] if cert_id == entry["certificate_id"] else None
    try:
        desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
        arn = arn or desc["certificateArn"]
        iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
        if arn in principals(iot, thing):
            iot.detach_thing_principal(thingName=thing, principal=arn)
        iot.detach_policy(policyName=policy.POLICY_NAME, target=arn)
    except Exception as e:  # noqa: BLE001
        raise translate(e, "revoking %s" % cert_id) from None
    if cert_id == entry["certificate_id"]:
        entry["status"] = "REVOKED"
        reg.put(thing, entry)
    return {"thing": thing, "changed": True, "certificate": cert_id}


def list_things(session=None) -> list[dict]:
    iot = _client(session, "iot")
    out = []
    try:
        for page in iot.get_paginator("list_things").paginate(thingTypeName=THING_TYPE):
            for t in page.get("things", []):
                out.append({"thing": t["thingName"], "attributes": t.get("attributes", {})})
    except Exception as e:  # noqa: BLE001
        raise translate(e, "listing things") from None
    return out


def policy_json() -> str:
    return json.dumps(policy.document(), indent=2)


def update_policy(dry_run: bool = False, session=None) -> tuple:
    """`provision policy update`: (the plan, what was done, or None for a dry run or nothing to do).
    The policy in the account becomes policy.document(): created when missing, else a new default
    version (the oldest others pruned within AWS's limit); unchanged when it is that document already."""
    iot = _client(session, "iot")
    doing = "reading the policy %s" % policy.POLICY_NAME
    deleted = []
    try:
        p = policy_admin.plan(iot)
        if dry_run or p.action == "none":
            return p, None
        doing = "updating the policy %s" % policy.POLICY_NAME
        return p, policy_admin.apply(iot, p, deleted)
    except Exception as e:  # noqa: BLE001 - one line and a hint, whatever failed
        err = translate(e, doing, policy_admin.NEEDS)
        if not isinstance(e, ProvisionError) and err.code not in (NO_CREDENTIALS, ACCESS_DENIED):
            err.hint = "provision policy update --dry-run shows where the policy stands; then run this again"
        if deleted:  # the default in force was never among them
            err.message += "; deleted before the failure: version(s) %s" % ", ".join(deleted)
        raise err from None


def rotate_begin(home, thing: str, key_type: str = "ec", session=None, root_ca_pem: bytes | None = None) -> dict:
    """A new certificate attached next to the current one, its bundle in <bundle>.next."""
    reg = Registry(home)
    entry = reg.get(thing)
    if not entry or entry.get("backend") != "aws":
        raise ProvisionError("no AWS-provisioned device %r in the registry" % thing, "provision list shows them",
                             NOT_FOUND)
    iot = _client(session, "iot")
    run = Run()
    current = Path(entry["bundle"])
    nxt = current.with_name(current.name + ".next")
    try:
        run.step = "checking the device policy"
        policy_admin.ensure_current(iot, run.journal)
        key, cert, arn, cert_id = _certify(iot, run, thing, key_type)
        run.step = "writing the bundle"
        cfg = json.loads((current / "config.json").read_text())
        ca = root_ca_pem if root_ca_pem is not None else (current / "root-ca.pem").read_bytes()
        bundle.write(nxt, cfg, cert, key, ca)
    except Exception as e:  # noqa: BLE001
        raise run.failed(e) from None
    return {"thing": thing, "backend": "aws", "next_bundle": str(nxt), "certificate_id": cert_id,
            "certificate_arn": arn,
            "fingerprint": identity.fingerprint(cert), "old_certificate_id": entry["certificate_id"]}


def rotate_abort(home, thing: str, pending: dict, session=None) -> dict:
    """Drops a staged rotation: the old files back in place, the new certificate detached and deleted."""
    iot = _client(session, "iot")
    arn, cert_id = pending["certificate_arn"], pending["certificate_id"]
    reg = Registry(home)
    entry = reg.get(thing)
    if entry:
        bundle.restore(entry["bundle"])
    stuck = []
    for what, undo in (("thing attachment", lambda: iot.detach_thing_principal(thingName=thing, principal=arn)),
                       ("policy attachment", lambda: iot.detach_policy(policyName=policy.POLICY_NAME, target=arn)),
                       ("deactivation", lambda: iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")),
                       ("deletion", lambda: iot.delete_certificate(certificateId=cert_id, forceDelete=True))):
        try:
            undo()
        except Exception as e:  # noqa: BLE001 - the rest still runs; what stuck is reported
            stuck.append("%s (%s)" % (what, translate(e, what).message))
    shutil.rmtree(pending["next_bundle"], ignore_errors=True)
    if entry:
        entry.pop("pending", None)
        reg.put(thing, entry)
    if stuck:
        raise ProvisionError("could not fully remove the staged certificate %s: %s" % (cert_id, "; ".join(stuck)),
                             "remove it in the console (IoT > Security > Certificates)", SERVICE_ERROR)
    return {"thing": thing, "changed": True, "removed": cert_id}


def rotate_commit(home, thing: str, pending: dict, session=None) -> dict:
    """The device runs on the new certificate: make it current, and the old one REVOKED and detached."""
    current.make_current(home, thing, pending,
                          {"certificate_id": pending["certificate_id"], "certificate_arn": pending["certificate_arn"]},
                          lambda: revoke(home, thing, session=session, certificate_id=pending["old_certificate_id"]))
    return {"thing": thing, "changed": True, "certificate": pending["certificate_id"],
            "revoked": pending["old_certificate_id"]}
