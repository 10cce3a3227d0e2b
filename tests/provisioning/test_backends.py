"""Both provisioning backends offer the operations provisioning/backends.py lists, with the same
leading parameters, and a name picks its module in that one place."""

import inspect

import pytest

from provisioning import backends
from provisioning.errors import BAD_INPUT, ProvisionError


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_offers_every_operation_with_the_same_leading_parameters(name):
    module = backends.get(name)
    for operation, leading in backends.OPERATIONS.items():
        fn = getattr(module, operation, None)
        assert callable(fn), "%s has no %s()" % (name, operation)
        params = list(inspect.signature(fn).parameters)
        assert tuple(params[:len(leading)]) == leading, (name, operation, params)


def test_an_unknown_backend_is_refused_with_the_names_there_are():
    with pytest.raises(ProvisionError) as e:
        backends.get("azure")
    assert e.value.code == BAD_INPUT and "local, aws" in str(e.value.hint)
