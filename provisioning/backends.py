"""The provisioning backends, and the one place a backend's name picks its module.

    local   provisioning/local.py: the fleet CA and broker on this machine (make demo, the tests)
    aws     provisioning/aws.py: AWS IoT Core, with the operator's credentials (boto3)

Both offer the same operations (OPERATIONS), with the same leading parameters; a backend adds
options of its own as keywords after them (aws: session, thing attributes, a root CA).
tests/provisioning/test_backends.py holds both modules to this list.
"""

from __future__ import annotations

from provisioning.errors import BAD_INPUT, ProvisionError

NAMES = ("local", "aws")

# operation -> its leading parameters, the same in every backend
OPERATIONS = {
    "provision_device": ("home", "thing", "out", "wifi_ssid", "wifi_password", "key_type", "force"),
    "revoke": ("home", "thing"),
    "rotate_begin": ("home", "thing", "key_type"),
    "rotate_commit": ("home", "thing", "pending"),
    "rotate_abort": ("home", "thing", "pending"),
}


def get(name: str):
    """The backend module called name. aws is imported only when asked for: it brings boto3."""
    if name == "local":
        from provisioning import local

        return local
    if name == "aws":
        from provisioning import aws

        return aws
    raise ProvisionError("unknown backend %r" % name, "use one of: %s" % ", ".join(NAMES), BAD_INPUT)
