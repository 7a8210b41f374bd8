"""The reference engine: the packed model's forward pass in plain numpy.

This is the definition of correct: every other backend is tested against it.
It favours the math over speed: binary layers unpack their weights to ±1 and
take an integer dot product, which equals ``n - 2 * popcount(x XOR w)``.

Forward pass for a uint8 input ``q [batch, n]``:

1. layer 0: ``x = sign(q - binarize_threshold)`` (``sign`` mode) and
   ``acc = x @ W0.T``; or ``acc = q @ W0.T`` (``int8`` mode); or ``acc = v @ W0.T`` with
   ``v = q >> (8 - input_bits)`` (``planes`` mode), with ``W0`` in ±1;
2. layers ``1 .. T-1``: ``acc = x @ Wi.T`` on the ±1 output of the layer before;
3. layers before the last: ``x = +1`` where ``acc >= threshold`` (``flip == 0``) or
   ``acc <= threshold`` (``flip == 1``), else ``-1`` (:func:`edge_rbmlp.fold.apply_thresholds`);
4. last layer: ``h = scale * acc + shift`` (float32);
5. shortcut: F ``h += Wf @ q + b``; Q ``h += scale * (Wq @ q) + b`` (int32
   accumulate); P ``h += Wp @ maxpool(q) + b``;
6. ``logits = Wout @ h + bout``.
"""

from __future__ import annotations

import numpy as np

from ..bits import unpack_signs
from .base import Engine
from ..fold import apply_thresholds
from ..model_file import PackedModel


def binary_accumulate(x_pm1: np.ndarray, weight_words: np.ndarray, n: int) -> np.ndarray:
    """``int32 [batch, out]`` = ±1 inputs ``[batch, n]`` dot ±1 weights (packed ``[out, words]``)."""
    w = unpack_signs(weight_words, n).astype(np.int32)
    return x_pm1.astype(np.int32) @ w.T


def max_pool_1d(q: np.ndarray, pool: int) -> np.ndarray:
    """Max over non-overlapping windows of ``pool`` values; a tail shorter than ``pool`` is dropped."""
    batch, n = q.shape
    m = n // pool
    return q[:, : m * pool].reshape(batch, m, pool).max(axis=2)


class ReferenceEngine(Engine):
    name = "reference"

    def __init__(self, model: PackedModel):
        super().__init__(model)

    def hidden_accumulators(self, q: np.ndarray):
        """Yield ``(layer_index, acc)`` for every hidden layer (for tests and debugging)."""
        model, arch, t = self.model, self.model.arch, self.model.tensors
        q = np.asarray(q, dtype=np.uint8)
        inputs = model.layer_inputs()
        w0 = unpack_signs(t["layer.0.weight"], inputs[0]).astype(np.int32)
        if arch.input_mode == "sign":
            x = np.where(q >= model.input_spec.binarize_threshold, 1, -1).astype(np.int32)
            acc = x @ w0.T
        elif arch.input_mode == "planes":
            # the top input_bits bits of each input: v = q >> (8 - bits), acc = sum v_i w_i
            v = (q >> (8 - arch.input_bits)).astype(np.int32)
            acc = v @ w0.T
        else:
            acc = q.astype(np.int32) @ w0.T
        last = len(arch.blocks) - 1
        for i in range(last + 1):
            if i > 0:
                acc = binary_accumulate(x, t[f"layer.{i}.weight"], inputs[i])
            yield i, acc
            if i < last:
                bits = apply_thresholds(acc, t[f"layer.{i}.threshold"], t[f"layer.{i}.flip"])
                x = np.where(bits, 1, -1).astype(np.int32)

    def last_hidden(self, q: np.ndarray) -> np.ndarray:
        """The float input of the output layer: last hidden affine plus the shortcut."""
        t = self.model.tensors
        last = len(self.model.arch.blocks) - 1
        acc = None
        for i, acc in self.hidden_accumulators(q):
            pass
        h = acc.astype(np.float32) * t[f"layer.{last}.scale"] + t[f"layer.{last}.shift"]
        shortcut = self.model.arch.shortcut
        if shortcut is not None:
            if shortcut.kind == "F":
                s = q.astype(np.float32) @ t["shortcut.weight"].T + t["shortcut.bias"]
            elif shortcut.kind == "Q":
                # int64: 255 * 127 * inputs overflows int32 past ~66k inputs (the loader allows 2**20)
                acc_q = q.astype(np.int64) @ t["shortcut.weight"].astype(np.int64).T
                s = acc_q.astype(np.float32) * t["shortcut.scale"] + t["shortcut.bias"]
            else:
                pooled = max_pool_1d(q, self.model.arch.pool_size).astype(np.float32)
                s = pooled @ t["shortcut.weight"].T + t["shortcut.bias"]
            h = h + s
        return h.astype(np.float32)

    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        t = self.model.tensors
        h = self.last_hidden(q)
        return (h @ t["output.weight"].T + t["output.bias"]).astype(np.float32)
