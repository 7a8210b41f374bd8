"""Run under qemu-aarch64 / qemu-arm by benchmarks/pi_projection.py (not part of the package).

    python pi_projection_guest.py ENGINE MODEL N
      ENGINE  native | native-sparse | tflite | litert
      MODEL   a .rbm (native) or .tflite file
      N       inferences of one input after three warm-up ones

Prints one JSON line: the executable mappings of the engine's own shared objects (from
/proc/self/maps, which qemu-user emulates for the guest), the kernel, and N. The host counts the
instructions executed inside those mappings for two values of N; the difference divided by the
difference of N is the engine's instructions per inference (everything before the loop, imports,
loading, warm-up, cancels out).
"""
import json
import os
import sys

import numpy as np


def exec_maps(needles):
    out = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and "x" in parts[1] and any(n in parts[5] for n in needles):
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                out.append([lo, hi, parts[5]])
    return out


def main():
    engine_kind, model_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    facts = {"engine": engine_kind, "model": os.path.basename(model_path), "n": n}
    if engine_kind.startswith("native"):
        from edge_rbmlp.engines.native import NativeEngine
        from edge_rbmlp.model_file import load_packed_model

        model = load_packed_model(model_path)
        eng = NativeEngine(model)
        facts["kernel"] = eng.kernel
        if model.input_spec.kind == "text":
            q = (rng.random((1, model.n_inputs)) < 0.02).astype(np.uint8)
        else:
            q = rng.integers(0, 256, (1, model.n_inputs)).astype(np.uint8)
        out = np.empty((1, eng.predict_uint8(q).shape[1]), np.float32)
        if engine_kind == "native-sparse":
            idx = np.flatnonzero(q[0]).astype(np.int32)
            offs = np.array([0, len(idx)], np.int64)
            step = lambda: eng.predict_indices_into(idx, offs, out)  # noqa: E731
        else:
            step = lambda: eng.predict_into(q, out)  # noqa: E731
        needles = ["edge_rbmlp/_native"]
    else:
        if engine_kind == "tflite":
            from tflite_runtime.interpreter import Interpreter
            needles = ["tflite_runtime/"]
        else:
            from ai_edge_litert.interpreter import Interpreter
            needles = ["ai_edge_litert/"]
        interp = Interpreter(model_path=model_path, num_threads=1)
        interp.allocate_tensors()
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        shape = tuple(inp["shape"])
        if inp["dtype"] == np.float32:
            x = rng.random(shape).astype(np.float32)
        else:
            info = np.iinfo(inp["dtype"])
            x = rng.integers(info.min, info.max + 1, shape).astype(inp["dtype"])
        facts["kernel"] = f"{np.dtype(inp['dtype']).name} input"

        def step():
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(outp["index"])
    for _ in range(3):
        step()
    for _ in range(n):
        step()
    facts["maps"] = exec_maps(needles)
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
