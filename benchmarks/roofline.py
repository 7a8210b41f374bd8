"""Roofline of the binary layers: the native kernel's binary MACs/s against this machine's
XNOR-popcount peak (benchmarks/xnor_peak.c, compiled and run here with the system C compiler).

    .venv-test/bin/python benchmarks/roofline.py [--kernel avx2] [--model PATH.rbm] [--json]

Reports, for each shape, the best-of-many time of ``bmv`` (one XNOR-popcount matrix-vector
product, one sample), its G binary MACs/s and the fraction of the peak; then the whole model
at batch 256 (its binary MACs per second including every non-binary layer, a lower bound).
A binary MAC is one bit of one weight row against one bit of the input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure_peak() -> dict:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SystemExit("no C compiler found (set CC) to build benchmarks/xnor_peak.c")
    flags = ["-O3"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags += ["-mavx2", "-mpopcnt"]
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "xnor_peak"
        subprocess.run([cc, *flags, str(HERE / "xnor_peak.c"), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def time_bmv(kernel: str, rows: int, n: int, rng, target_s: float = 0.002, tries: int = 60) -> float:
    """Best seconds per bmv call of shape [rows, n]."""
    from edge_rbmlp import _native
    from edge_rbmlp.bits import pack_bits

    W = pack_bits(rng.integers(0, 2, (rows, n)).astype(bool))
    x = pack_bits(rng.integers(0, 2, n).astype(bool))
    _native.kernel_bmv(kernel, W, x, n, repeat=10)
    t0 = time.perf_counter()
    _native.kernel_bmv(kernel, W, x, n, repeat=100)
    per = (time.perf_counter() - t0) / 100
    repeat = max(10, int(target_s / max(per, 1e-9)))
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        _native.kernel_bmv(kernel, W, x, n, repeat=repeat)
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def model_rate(model_path, kernel: str, batch: int = 256, tries: int = 40) -> dict:
    from edge_rbmlp.model_file import load_packed_model
    from edge_rbmlp.engines.native import NativeEngine

    model = load_packed_model(model_path)
    eng = NativeEngine(model, kernel=kernel)
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (batch, model.n_inputs)).astype(np.uint8)
    out = np.empty((batch, eng.predict_uint8(q[:1]).shape[1]), np.float32)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        eng.predict_into(q, out)
        best = min(best, time.perf_counter() - t0)
    inputs = model.layer_inputs()
    macs = sum(n * w for n, w in zip(inputs, model.arch.widths))
    return {"model": str(model_path), "arch": model.arch.notation(), "binary_macs_per_sample": macs,
            "samples_per_s": batch / best, "binary_gmacs": macs * batch / best / 1e9}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", default=None, help="native kernel variant (default: the best for this CPU)")
    p.add_argument("--model", default=None, help="also measure this .rbm at batch 256")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from edge_rbmlp.engines.native import choose_kernel

    kernel = choose_kernel(args.kernel)
    peak = measure_peak()
    peak_name = max(peak, key=peak.get)
    peak_g = peak[peak_name]
    rng = np.random.default_rng(0)
    shapes = [("MNIST layer 0 (128 x 784)", 128, 784), ("MNIST layer 1 (88 x 128)", 88, 128),
              ("IMDB layer 0 dense (32 x 10000)", 32, 10000), ("512 x 4096 (256 KiB)", 512, 4096),
              ("256 x 1024", 256, 1024)]
    rows = []
    for label, r, n in shapes:
        sec = time_bmv(kernel, r, n, rng)
        g = r * n / sec / 1e9
        rows.append({"shape": label, "rows": r, "n": n, "ns_per_call": sec * 1e9, "binary_gmacs": g,
                     "fraction_of_peak": g / peak_g})
    result = {"kernel": kernel, "peak_gmacs": peak, "peak_method": peak_name, "bmv": rows}
    if args.model:
        m = model_rate(args.model, kernel)
        m["fraction_of_peak_lower_bound"] = m["binary_gmacs"] / peak_g
        result["model"] = m
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"XNOR-popcount peak, one core: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
          + f" G binary MACs/s (peak = {peak_name})")
    print(f"native kernel {kernel}, bmv (one sample):")
    for r in rows:
        print(f"  {r['shape']:34s} {r['ns_per_call']:10.1f} ns  {r['binary_gmacs']:7.1f} G/s  "
              f"{100 * r['fraction_of_peak']:5.1f}% of peak")
    if args.model:
        m = result["model"]
        print(f"whole model {m['arch']} at batch 256: {m['samples_per_s']:.0f} samples/s, "
              f"{m['binary_gmacs']:.1f} G binary MACs/s incl. all float layers = "
              f"{100 * m['fraction_of_peak_lower_bound']:.1f}% of peak (lower bound)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
