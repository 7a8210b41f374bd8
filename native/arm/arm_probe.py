"""Run under qemu-aarch64 by native/arm/test-arm.sh: which engine and kernel does this CPU get?

As a script it prints one JSON line; the pytest plugin (qemu_pytest_plugin.py) calls probe() after
the tests, in the same interpreter. Status: 0 a NativeEngine was built and ran one prediction;
3 constructing NativeEngine raised (message in "error": the expected outcome when
EDGE_RBMLP_KERNEL forces a kernel the CPU cannot run); 4 the native extension or the engine module
is missing; 5 the engine was built but running it raised. A crash (e.g. SIGILL) is a signal exit.
"""
import json
import os
import platform
import sys


def _err(exc):
    return f"{type(exc).__name__}: {exc}"


def probe():
    """Returns (status, facts): see the module docstring."""
    out = {"machine": platform.machine(), "python": sys.version.split()[0],
           "forced": os.environ.get("EDGE_RBMLP_KERNEL")}
    try:
        import numpy as np

        import edge_rbmlp
        out["package"] = os.path.dirname(edge_rbmlp.__file__)
        from edge_rbmlp import _native
        out["native"] = _native.__file__
        from edge_rbmlp.arch import parse
        from edge_rbmlp.engines.native import NativeEngine
        from edge_rbmlp.random_model import random_packed_model
        from edge_rbmlp.engines.reference import ReferenceEngine
    except Exception as exc:
        out["error"] = _err(exc)
        return 4, out
    # widths not multiples of 64 and a P shortcut: every kernel family runs once
    model = random_packed_model(parse("B-D100N,D70N,PN"), 784, 10, seed=7, input_kind="image")
    try:
        engine = NativeEngine(model)
    except Exception as exc:
        out["error"] = _err(exc)
        return 3, out
    try:
        out["kernel"] = engine.kernel
        try:
            from edge_rbmlp.engines.native import available_kernels
            out["available"] = available_kernels()
        except Exception:  # informational only
            pass
        q = np.random.default_rng(0).integers(0, 256, size=(3, 784), dtype=np.uint8)
        logits = np.asarray(engine.logits_uint8(q))
        ref = np.asarray(ReferenceEngine(model).logits_uint8(q))
        out["matches_reference"] = bool(logits.shape == ref.shape and np.allclose(logits, ref, rtol=1e-4, atol=1e-4))
    except Exception as exc:
        out["error"] = _err(exc)
        return 5, out
    return 0, out


def main():
    status, out = probe()
    print(json.dumps(out))
    return status


if __name__ == "__main__":
    sys.exit(main())
