"""Helpers of the native engine tests: the kernel variants this machine runs, as pytest params."""

import pytest

from edge_rbmlp import _native  # a missing extension is an error here, never a skip


def variant_params(include_portable: bool = True):
    """Every kernel variant of the build: runnable ones as plain params, the others skipped with the reason."""
    params = []
    for name in _native.variant_names():
        if name == "portable" and not include_portable:
            continue
        ok, reason = _native.variant_status(name)
        params.append(pytest.param(name, id=name) if ok else
                      pytest.param(name, id=name, marks=pytest.mark.skip(reason=reason)))
    return params
