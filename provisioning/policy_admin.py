"""The device policy in AWS IoT Core, kept equal to provisioning/policy.py. Provisioning is its one
owner: the CDK stack does not create it (docs/provisioning.md, "The device policy").

    p = policy_admin.plan(iot)       # what `provision policy update` would do: create, update or nothing
    policy_admin.describe(p)         # the same in words: the statements that differ, the versions to prune
    policy_admin.apply(iot, p)       # do it (dry run: just don't)
    policy_admin.ensure_current(iot, journal)   # `provision device`: create a missing policy, refuse an outdated one

A fleet in the field gets a corrected document as a new *default version* of the same policy, so every
certificate it is attached to has it at once. AWS keeps at most five versions of a policy
(CreatePolicyVersion refuses a sixth), so the oldest non-default versions are deleted first, just as
many as make room; the default in force until the switch is never deleted, and the newer ones stay
as a history to go back to (aws iot set-default-policy-version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from provisioning import policy
from provisioning.errors import CONFLICT, ProvisionError

MAX_VERSIONS = 5  # AWS IoT Core's limit of versions per policy (CreatePolicyVersion API reference)
NEEDS = ("iot:GetPolicy, iot:ListPolicyVersions, iot:CreatePolicy, iot:CreatePolicyVersion, "
         "iot:DeletePolicyVersion")  # what `provision policy update` asks of the caller's IAM identity


@dataclass
class Plan:
    """What bringing the policy in the account to policy.document() takes.

    action: "create" (no such policy), "update" (its default version differs) or "none".
    default_version: the version in force now (None when the policy is missing).
    changes: the statements that differ, as lines (statement_diff).
    prune: the version ids to delete first, oldest first, to stay within MAX_VERSIONS."""

    action: str
    default_version: str | None = None
    changes: list = field(default_factory=list)
    prune: list = field(default_factory=list)
    versions: int = 0  # how many versions the policy has now


def wanted() -> dict:
    return json.loads(policy.document_json())


def _not_found(e) -> bool:
    return getattr(e, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException"


def current(iot):
    """(default version id, its document) of the policy in the account, or (None, None) if it has none."""
    from botocore.exceptions import ClientError

    try:
        got = iot.get_policy(policyName=policy.POLICY_NAME)
    except ClientError as e:
        if _not_found(e):
            return None, None
        raise
    return got.get("defaultVersionId"), json.loads(got["policyDocument"])


def _oldest_first(versions: list) -> list:
    # Version ids are increasing integers; the date decides first in case an account ever differs.
    return sorted(versions, key=lambda v: (str(v.get("createDate", "")), int(v["versionId"])))


def plan(iot) -> Plan:
    version, doc = current(iot)
    if doc is None:
        return Plan("create", changes=statement_diff({"Statement": []}, wanted()))
    if doc == wanted():
        return Plan("none", default_version=version)
    versions = iot.list_policy_versions(policyName=policy.POLICY_NAME)["policyVersions"]
    spare = [v for v in _oldest_first(versions) if not v.get("isDefaultVersion")]
    excess = len(versions) + 1 - MAX_VERSIONS  # the new version must fit too
    return Plan("update", default_version=version, changes=statement_diff(doc, wanted()),
                prune=[v["versionId"] for v in spare[:max(0, excess)]], versions=len(versions))


def apply(iot, p: Plan, deleted: list | None = None) -> dict:
    """Carries the plan out; returns what it did ({policy, action, version, previous, deleted}).
    deleted: a list that receives each version id as it is deleted (what a failure part-way had done)."""
    from botocore.exceptions import ClientError

    deleted = [] if deleted is None else deleted
    done = {"policy": policy.POLICY_NAME, "action": p.action, "previous": p.default_version, "deleted": deleted,
            "version": p.default_version}
    if p.action == "create":
        r = iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=policy.document_json())
        done["version"] = r.get("policyVersionId", "1")
    elif p.action == "update":
        for version in p.prune:
            iot.delete_policy_version(policyName=policy.POLICY_NAME, policyVersionId=version)
            deleted.append(version)
        try:
            r = iot.create_policy_version(policyName=policy.POLICY_NAME, policyDocument=policy.document_json(),
                                          setAsDefault=True)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "VersionsLimitExceededException":
                raise ProvisionError("the policy %s has AWS's maximum of %d versions: another change came "
                                     "in while this ran" % (policy.POLICY_NAME, MAX_VERSIONS),
                                     "run provision policy update again", CONFLICT) from None
            raise
        done["version"] = r["policyVersionId"]
    return done


def ensure_current(iot, journal) -> bool:
    """For `provision device` and `rotate`: the policy in the account must be this provisioning's
    document. Creates it when missing (journal records its removal; True); refuses, before anything
    is attached, a policy whose default version differs, since every device would get that one."""
    version, doc = current(iot)
    if doc is None:
        iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=policy.document_json())
        journal.did("policy %s" % policy.POLICY_NAME, lambda: iot.delete_policy(policyName=policy.POLICY_NAME))
        return True
    if doc != wanted():
        changed = sum(1 for line in statement_diff(doc, wanted()) if line[:1] in "+-~")
        raise ProvisionError(
            "the device policy %s in this account is out of date: its default version %s differs from the one "
            "this provisioning grants (%d statement(s))" % (policy.POLICY_NAME, version, changed),
            "provision policy update --dry-run shows the difference; provision policy update makes it the "
            "default version for every device; then run this again", CONFLICT)
    return False


# ------------------------------------------------------------------ the difference, in words


def _key(st: dict, i: int) -> str:
    return st.get("Sid") or "#%d %s" % (i + 1, json.dumps(st, sort_keys=True))


def _compact(value) -> str:
    return json.dumps(value, sort_keys=True)


def statement_diff(old: dict, new: dict) -> list:
    """The statements of new that are not in old, as lines: `+ Sid: {...}` added, `- Sid: {...}` removed,
    `~ Sid.Field` followed by its `-` and `+` values for a statement that changed. Empty when equal."""
    def by_key(doc):
        statements = doc.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        return {_key(st, i): st for i, st in enumerate(statements)}

    before, after = by_key(old), by_key(new)
    lines = []
    if old.get("Version") not in (None, new.get("Version")):
        lines += ["~ Version", "    - %s" % old.get("Version"), "    + %s" % new.get("Version")]
    for k in before:
        if k not in after:
            lines.append("- %s: %s" % (k, _compact({f: v for f, v in before[k].items() if f != "Sid"})))
    for k, st in after.items():
        if k not in before:
            lines.append("+ %s: %s" % (k, _compact({f: v for f, v in st.items() if f != "Sid"})))
            continue
        for f in sorted(set(before[k]) | set(st)):
            if before[k].get(f) != st.get(f):
                lines.append("~ %s.%s" % (k, f))
                lines += _field_diff(before[k].get(f), st.get(f))
    return lines


def _field_diff(old, new) -> list:
    """A changed field: an Action or Resource list item by item (they are long lists of ARNs), any
    other value whole."""
    def items(v):
        return v if isinstance(v, list) else [v]

    if isinstance(old, (str, list)) and isinstance(new, (str, list)):
        gone = ["    - %s" % _compact(x) for x in items(old) if x not in items(new)]
        added = ["    + %s" % _compact(x) for x in items(new) if x not in items(old)]
        return gone + added or ["    (the same items in another order, or one item as a list)"]
    return ((["    - %s" % _compact(old)] if old is not None else [])
            + (["    + %s" % _compact(new)] if new is not None else []))


def describe(p: Plan, done: dict | None = None) -> str:
    """The plan as an operator reads it: what a dry run would do (done None), or what apply() did."""
    name = policy.POLICY_NAME
    if p.action == "none":
        return "policy %s: default version %s is this provisioning's document; nothing to do" % (
            name, p.default_version)
    if p.action == "create":
        out = ["policy %s did not exist in this account; %s with:" % (
            name, "would create it" if done is None else "created it (version %s)" % done["version"])]
    else:
        out = ["policy %s: default version %s differs from this provisioning's document:" % (name, p.default_version)]
    out += ["  " + line for line in p.changes]
    if p.action == "update" and done is None:
        if p.prune:
            out.append("would delete version(s) %s (the oldest that are not the default), to stay within AWS's "
                       "%d versions (it has %d)" % (", ".join(p.prune), MAX_VERSIONS, p.versions))
        out.append("would create a new version and make it the default (for every certificate it is attached to)")
    elif p.action == "update":
        if done["deleted"]:
            out.append("deleted version(s) %s to stay within AWS's %d versions" % (
                ", ".join(done["deleted"]), MAX_VERSIONS))
        out.append("created version %s and made it the default (was %s)" % (done["version"], done["previous"]))
    if done is None:
        out.append("dry run: nothing changed")
    return "\n".join(out)
