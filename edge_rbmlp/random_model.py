"""Packed models with zero or random parameters, for sizes, tests and benchmarks.

A random model is a valid model of its architecture whose thresholds sit in
the range its accumulators reach, so every hidden unit switches on some inputs
(a test on it exercises real bits, not constant outputs).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .arch import Architecture
from .bits import pack_signs
from .inputs import InputSpec
from .model_file import PackedModel, expected_tensors
from .text import TOKENIZER


def _input_spec(kind: str, n_inputs: int) -> InputSpec:
    if kind == "image":
        side = int(round(n_inputs ** 0.5))
        if side * side == n_inputs:
            return InputSpec.image(side, side)
        return InputSpec.vector(n_inputs)
    if kind == "text":
        return InputSpec.text(n_inputs, TOKENIZER)
    return InputSpec.vector(n_inputs)


def _labels(n_classes: int):
    if n_classes == 1:
        return "sigmoid", ["negative", "positive"]
    return "softmax", [str(i) for i in range(n_classes)]


def _vocab(kind: str, n_inputs: int):
    return [f"w{i}" for i in range(n_inputs)] if kind == "text" else None


def zero_packed_model(arch: Architecture, n_inputs: int, n_classes: int, input_kind: str = "vector") -> PackedModel:
    """A model whose every tensor is zero (``n_classes == 1``: one sigmoid unit)."""
    activation, labels = _labels(n_classes)
    n_outputs = 1 if activation == "sigmoid" else n_classes
    tensors = {name: np.zeros(shape, dtype=dtype)
               for name, (dtype, shape) in expected_tensors(arch, n_inputs, n_outputs).items()}
    return PackedModel(arch=arch, input_spec=_input_spec(input_kind, n_inputs), labels=labels,
                       output_activation=activation, tensors=tensors, vocab=_vocab(input_kind, n_inputs))


def random_packed_model(arch: Architecture, n_inputs: int, n_classes: int, seed: Optional[int] = 0,
                        input_kind: str = "vector", input_spec: Optional[InputSpec] = None) -> PackedModel:
    """A random model of ``arch``: random ±1 weights, thresholds near the accumulators' median."""
    rng = np.random.default_rng(seed)
    model = zero_packed_model(arch, n_inputs, n_classes, input_kind)
    if input_spec is not None:
        model.input_spec = input_spec
        if input_spec.kind != "text":
            model.vocab = None
    t = model.tensors
    inputs = model.layer_inputs()
    last = len(arch.blocks) - 1
    for i, (n_in, width) in enumerate(zip(inputs, arch.widths)):
        t[f"layer.{i}.weight"] = pack_signs(rng.standard_normal((width, n_in)))
        # spread of a ±1 dot product of length n is ~sqrt(n); int8 inputs reach ~128*sqrt(n)
        # planes inputs v = q >> (8 - k) reach ~2^(k-1)*sqrt(n)
        first = {"int8": 128.0, "planes": float(2 ** (arch.input_bits - 1))}.get(arch.input_mode, 1.0)
        spread = np.sqrt(n_in) * (first if i == 0 else 1.0)
        if i < last:
            t[f"layer.{i}.threshold"] = np.rint(rng.normal(0.0, 0.5 * spread, width)).astype(np.int32)
            t[f"layer.{i}.flip"] = rng.integers(0, 2, width).astype(np.uint8)
        else:
            t[f"layer.{i}.scale"] = (rng.standard_normal(width) / spread).astype(np.float32)
            t[f"layer.{i}.shift"] = rng.standard_normal(width).astype(np.float32)
    if arch.shortcut is not None:
        kind = arch.shortcut.kind
        shape = t["shortcut.weight"].shape
        if kind == "Q":
            t["shortcut.weight"] = rng.integers(-127, 128, shape).astype(np.int8)
            t["shortcut.scale"] = (rng.uniform(0.5, 1.5, shape[0]) / (127.0 * 255.0 * np.sqrt(shape[1]))).astype(
                np.float32)
        else:
            t["shortcut.weight"] = (rng.standard_normal(shape) / (255.0 * np.sqrt(shape[1]))).astype(np.float32)
        t["shortcut.bias"] = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
    t["output.weight"] = rng.standard_normal(t["output.weight"].shape).astype(np.float32)
    t["output.bias"] = (0.1 * rng.standard_normal(t["output.bias"].shape)).astype(np.float32)
    return model
