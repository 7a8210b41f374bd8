"""Build random-weight comparison models of one architecture in every format the benchmark runs.

    .venv-test/bin/python benchmarks/build_comparison_models.py --preset mnist --out benchmarks/models
    .venv-test/bin/python benchmarks/build_comparison_models.py --preset imdb --out benchmarks/models

writes, for NAME (default ``<preset>_random``):

* ``NAME.rbm``          the packed binary model (edge_rbmlp's own format, exported by train.export);
* ``NAME.tflite``       the same Keras model as float TFLite;
* ``NAME_int8.tflite``  full-integer post-training quantization (random representative inputs);
* ``NAME_lce.tflite``   Larq Compute Engine flatbuffer of the 1x1-QuantConv2D twin;
* ``NAME_F.tflite``     the float (``F-``) model of the same widths, as float TFLite.

The weights are Keras' random initialization with randomized batch-norm statistics, so every
hidden unit switches: the speed of a model does not depend on what it learned. Needs the
``train`` extra (TensorFlow, larq, larq-compute-engine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = {
    # the paper's best 2-layer MNIST variant (Table IV) and 3-layer IMDB Q variant (Table VII)
    "mnist": dict(arch="B-D128N,D88N,PN", inputs=784, classes=10, kind="image"),
    "mnist_q": dict(arch="B-D128N,D88N,Q", inputs=784, classes=10, kind="image"),
    "imdb": dict(arch="B-D32N,D16N,D8N,Q", inputs=10000, classes=1, kind="text"),
    # the architecture `make models` trains for the bundled MNIST model (int8 input mode)
    "mnist_bundled": dict(arch="B-D256N,D64N,PN", inputs=784, classes=10, kind="image", input_mode="int8"),
}


def randomize_batchnorm(model, rng):
    import tensorflow as tf  # noqa: F401  (imported through train.tf_setup first)

    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            units = gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, units).astype(np.float32),
                               rng.normal(0, 0.1, units).astype(np.float32),
                               rng.normal(0, 1.0, units).astype(np.float32),
                               rng.uniform(0.5, 2.0, units).astype(np.float32) * 10.0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="mnist")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "models"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-lce", action="store_true")
    args = p.parse_args(argv)

    from train.tf_setup import import_tf

    tf, _ = import_tf()
    from edge_rbmlp.arch import parse
    from edge_rbmlp.inputs import InputSpec
    from edge_rbmlp.text import TOKENIZER
    from train.export import export_packed, to_lce, to_tflite_float, to_tflite_int8
    from train.models import build_model

    preset = PRESETS[args.preset]
    name = args.name or f"{args.preset}_random"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch = parse(preset["arch"], input_mode=preset.get("input_mode", "sign"))
    n, classes, kind = preset["inputs"], preset["classes"], preset["kind"]
    if kind == "image":
        side = int(round(n ** 0.5))
        spec = InputSpec.image(side, side)
        vocab = None
        labels = [str(i) for i in range(classes)]
    else:
        spec = InputSpec.text(n, TOKENIZER)
        vocab = [f"w{i}" for i in range(n)]
        labels = ["negative", "positive"]
    activation = "sigmoid" if classes == 1 else "softmax"
    n_outputs = 1 if activation == "sigmoid" else classes
    rng = np.random.default_rng(args.seed)
    tf.random.set_seed(args.seed)

    model = build_model(arch, spec, n_outputs, output_activation=activation)
    randomize_batchnorm(model, rng)
    if kind == "image":
        q_rep = rng.integers(0, 256, (200, n)).astype(np.uint8)
    else:
        q_rep = (rng.random((200, n)) < 0.02).astype(np.uint8)
    x_rep = spec.dequantize(q_rep)

    packed = export_packed(model, arch, spec, labels, activation, vocab=vocab, name=name,
                           description=f"random weights, {arch} (benchmark comparison model)",
                           provenance={"builder": "benchmarks/build_comparison_models.py", "seed": args.seed})
    files = {f"{name}.rbm": None}
    packed.save(out / f"{name}.rbm")
    (out / f"{name}.tflite").write_bytes(to_tflite_float(model))
    files[f"{name}.tflite"] = None
    int8, info = to_tflite_int8(model, x_rep)
    (out / f"{name}_int8.tflite").write_bytes(int8)
    files[f"{name}_int8.tflite"] = info
    if not args.no_lce:
        flat, _ = to_lce(model, arch, spec, n_outputs, activation)
        (out / f"{name}_lce.tflite").write_bytes(flat)
        files[f"{name}_lce.tflite"] = None
    float_arch = parse("F-" + arch.notation()[2:])
    fmodel = build_model(float_arch, spec, n_outputs, output_activation=activation)
    randomize_batchnorm(fmodel, rng)
    (out / f"{name}_F.tflite").write_bytes(to_tflite_float(fmodel))
    files[f"{name}_F.tflite"] = None

    # the packed model and its float TFLite sibling must compute the same function
    from edge_rbmlp.engines.reference import ReferenceEngine
    from edge_rbmlp.engines.base import logits_to_probabilities
    from train.export import run_tflite

    probs_ref = logits_to_probabilities(ReferenceEngine(packed).logits_uint8(q_rep), activation)
    tfl, runtime = run_tflite((out / f"{name}.tflite").read_bytes(), x_rep)
    tfl = np.stack([1 - tfl[:, 0], tfl[:, 0]], axis=1) if activation == "sigmoid" else tfl
    agree = float((probs_ref.argmax(1) == tfl.argmax(1)).mean())
    for fname, info in files.items():
        size = (out / fname).stat().st_size
        print(f"{out / fname}  {size} bytes" + (f"  {info}" if info else ""))
    print(f"packed vs float TFLite ({runtime}): same class on {agree:.1%} of {len(q_rep)} random inputs, "
          f"max |dp| {np.abs(probs_ref - tfl).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
