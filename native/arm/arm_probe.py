"""Run under qemu-aarch64 by native/arm/test-arm.sh: which engine and kernel does this CPU get?

Prints one JSON line on stdout. Exit status 0 if a native engine was built and ran one prediction,
3 if importing or constructing the native engine raised (the message is in "error"; this is the
expected outcome when EDGE_RBMLP_KERNEL forces a kernel the CPU cannot run), 4 if the native
extension is missing altogether. A crash (e.g. SIGILL) shows up as a signal exit status.
"""
import json
import os
import platform
import sys


def probe():
    """Returns (exit status, facts): see the module docstring."""
    out = {"machine": platform.machine(), "python": sys.version.split()[0],
           "forced": os.environ.get("EDGE_RBMLP_KERNEL")}
    import edge_rbmlp
    out["package"] = os.path.dirname(edge_rbmlp.__file__)
    try:
        from edge_rbmlp import _native
    except ImportError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return 4, out
    out["native"] = _native.__file__
    try:
        import numpy as np

        from edge_rbmlp.arch import parse
        from edge_rbmlp.native_engine import NativeEngine
        from edge_rbmlp.random_model import random_packed_model

        # widths not multiples of 64, a P shortcut: enough to run every kernel family once
        model = random_packed_model(parse("B-D100N,D70N,PN"), 784, 10, seed=7, input_kind="image")
        engine = NativeEngine(model)
        out["kernel"] = engine.kernel
        x = np.random.default_rng(0).integers(0, 256, size=(3, 784), dtype=np.uint8)
        logits = np.asarray(engine.predict_logits(x) if hasattr(engine, "predict_logits")
                            else engine.predict(x))
        out["output_shape"] = list(logits.shape)
        try:
            from edge_rbmlp.reference import ReferenceEngine
            ref = ReferenceEngine(model)
            ref_logits = np.asarray(ref.predict_logits(x) if hasattr(ref, "predict_logits")
                                    else ref.predict(x))
            out["matches_reference"] = bool(np.allclose(logits, ref_logits, rtol=1e-4, atol=1e-4))
        except Exception as exc:  # comparison is a bonus; the test suite does it properly
            out["reference_error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return 3, out
    return 0, out


def main():
    status, out = probe()
    print(json.dumps(out))
    return status


if __name__ == "__main__":
    sys.exit(main())
