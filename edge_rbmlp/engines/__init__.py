"""The inference engines, and the one place that maps a backend name to an engine.

* ``reference``: plain numpy (always there; the definition of correct);
* ``native``: the compiled XNOR-popcount engine (``edge_rbmlp._native``);
* ``tflite`` / ``lce``: the model's TFLite / Larq Compute Engine siblings, when
  their runtimes are installed;
* ``auto``: ``native``; if the compiled engine is missing from this install,
  ``reference`` with a warning on stderr naming the reason (never silently).

A backend that cannot run raises :class:`BackendUnavailable` with what to install.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict

from .base import BackendUnavailable, Engine, InputKindError, Prediction
from ..model_file import PackedModel

# name -> "module:factory"; factories take (model, **options) and return an Engine
_REGISTRY: Dict[str, str] = {
    "reference": "edge_rbmlp.engines.reference:ReferenceEngine",
    "native": "edge_rbmlp.engines.native:NativeEngine",
    "tflite": "edge_rbmlp.engines.tflite:TFLiteEngine",
    "lce": "edge_rbmlp.engines.tflite:LCEEngine",
}

BACKENDS = ("auto",) + tuple(_REGISTRY)


def _factory(name: str) -> Callable[..., Engine]:
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, attr = _REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not available in this install: {exc}") from None
    return getattr(module, attr)


def create(model: PackedModel, backend: str = "auto", **options) -> Engine:
    if backend == "auto":
        try:
            return _factory("native")(model, **options)
        except BackendUnavailable as exc:
            print(f"edge-rbmlp: warning: {exc}; using the numpy reference engine (slow). "
                  "Reinstall edge-rbmlp with a C compiler to build the native engine.", file=sys.stderr)
            return _factory("reference")(model, **options)
    return _factory(backend)(model, **options)
