"""The audit trail of remote commands: what the API sent to a device, who asked for it, and what the
device answered.

One table (cloud/resources.py TABLES "commands"), keyed by device:

    sk = "cmd#<issued_at ms, 13 digits>#<id>"   a command the API published, with its sender
    sk = "ack#<id>"                              the device's ack of command <id>, as published

Commands sort by time under "cmd#"; an ack is found from its command's id with one key lookup.
The API writes the commands (cloud/lambdas/api.py). The acks, and the devices' retained
online/offline status (the "presence" table), are written by two IoT rules with a DynamoDB action
(cloud/rules.py, contract.RULE_ACKS and RULE_STATUS): no function runs for them.
"""

from __future__ import annotations

import time

import contract
from cloud import resources

COMMAND_PREFIX = "cmd#"
ACK_PREFIX = "ack#"
HISTORY_DAYS = 90  # how long the audit trail keeps a command (TTL)

def command_sk(issued_at: int, command_id: str) -> str:
    return "%s%013d#%s" % (COMMAND_PREFIX, int(issued_at), command_id)


def ack_sk(command_id: str) -> str:
    return ACK_PREFIX + command_id


def command_item(thing: str, command: dict, sender: str, auth: str, now_s: float | None = None) -> dict:
    """The record of one published command (the command as sent, plus who sent it and how they
    were authenticated: "cognito", "sigv4" or "none" on the local API's unsigned routes)."""
    now_s = time.time() if now_s is None else now_s
    item = {"device": thing, "sk": command_sk(command["issued_at"], command["id"]), "id": command["id"],
            "cmd": command["cmd"], "issued_at": command["issued_at"], "sender": sender, "auth": auth,
            "expires_at": int(now_s + HISTORY_DAYS * 86400)}
    if "speed" in command:
        item["speed"] = command["speed"]
    return item


ACK_FIELDS = ("ok", "result", "state", "speed", "acked_ms", "boot")


def view(command: dict, ack: dict | None) -> dict:
    """A command as the API shows it: its fields, and its ack's (None: no ack recorded)."""
    out = {k: command[k] for k in ("id", "cmd", "issued_at", "sender", "auth", "speed") if k in command}
    out["ack"] = None if ack is None else {k: ack[k] for k in ACK_FIELDS if k in ack}
    return out
