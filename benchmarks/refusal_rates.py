"""How often the bundled (or a given) MNIST model refuses real digits: all 10,000 MNIST test digits
as 28x28 pictures, and 1,000 of them drawn into synthetic 640x480 camera frames
(``edge_rbmlp.bench.camera_frame``, seed 0), through ``Engine.predict_images`` (the reject rule
of :mod:`edge_rbmlp.reject`). The figures quoted in docs/digits.md and train/README.md.

    .venv-test/bin/python benchmarks/refusal_rates.py [MODEL ...]
"""

from __future__ import annotations

import sys

import numpy as np

import edge_rbmlp
from edge_rbmlp.bench import camera_frame
from edge_rbmlp.datasets import load_mnist


def rates(preds, labels) -> str:
    refused = np.array([p.label is None for p in preds])
    guess = np.array([int(np.argmax(p.probabilities)) for p in preds])
    wrong = guess != labels
    return (f"refused {refused.mean():.4f} ({wrong[refused].mean() if refused.any() else 0:.2f} of them wrong), "
            f"answered right {(~wrong[~refused]).mean():.4f}")


def main(argv) -> int:
    x, y = load_mnist("test")
    idx = np.random.default_rng(0).choice(len(x), 1000, replace=False)
    for model in argv or ["mnist"]:
        engine = edge_rbmlp.load(model)
        digits = [p for i in range(0, len(x), 500) for p in engine.predict_images(list(x[i:i + 500]))]
        rng = np.random.default_rng(0)
        frames = [engine.predict_image(camera_frame(x[i], rng)) for i in idx]
        print(f"{model} (min_confidence {engine.min_confidence}): MNIST test digits: {rates(digits, y)}; "
              f"camera frames: {rates(frames, y[idx])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
