"""Packaging facts a Pi install depends on: the build needs no numpy (PyPI has no armv7 numpy
wheel, so an isolated build on a 32-bit Pi would compile numpy), and model files are written
world-readable (the systemd service runs as a DynamicUser and must read them)."""

import re
import stat
import tomllib
from pathlib import Path

from edge_rbmlp.arch import parse
from edge_rbmlp.random_model import random_packed_model

ROOT = Path(__file__).resolve().parent.parent


def test_build_requires_no_numpy_and_the_extension_uses_no_numpy_headers():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    names = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() for r in requires}
    assert "numpy" not in names, requires
    assert {"setuptools", "cython"} <= names
    pyx = (ROOT / "edge_rbmlp" / "_native.pyx").read_text()
    assert not re.search(r"^\s*cimport\s+numpy|^\s*from\s+numpy\s+cimport", pyx, re.M)
    assert "numpy" not in (ROOT / "setup.py").read_text().replace("numpy array", "")


def test_saved_model_is_world_readable(tmp_path):
    path = tmp_path / "m.rbm"
    random_packed_model(parse("B-16,Q"), 20, 2, seed=0, input_kind="vector").save(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o644, oct(mode)
