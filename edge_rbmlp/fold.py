"""Folding trained layers into the integer/float form the packed file stores.

Every binary layer computes an integer accumulator ``acc`` (a ±1 dot product, or
for the first layer in ``int8`` input mode ``sum_i q_i * w_i`` with ``q`` the
uint8 input, in ``planes`` mode ``sum_i v_i * w_i`` with ``v = q >> (8 - input_bits)``,
whose ``acc_scale`` is ``1 / (2^input_bits - 1)``: training saw ``v / (2^input_bits - 1)``). Training sees the pre-activation ``pre = acc_scale * acc + offset``
(``offset`` holds the dense bias and any input zero-point correction), then an
optional batch normalization ``BN(y) = s * y + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - s * mean``.

* A layer feeding another binary layer only needs ``sign(BN(pre)) >= 0``. With
  ``A = s * acc_scale`` and ``C = s * offset + t`` that is ``A * acc + C >= 0``:

  - ``A > 0``: ``acc >= ceil(-C / A)``   -> ``threshold = ceil(-C/A)``, ``flip = 0``
  - ``A < 0``: ``acc <= floor(-C / A)``  -> ``threshold = floor(-C/A)``, ``flip = 1``
  - ``A = 0``: constant; always +1 when ``C >= 0`` (``threshold = INT32_MIN,
    flip = 0``), never otherwise (``threshold = INT32_MIN, flip = 1``).

  The output bit is ``acc >= threshold`` when ``flip == 0`` and
  ``acc <= threshold`` when ``flip == 1`` (see :func:`apply_thresholds`).
* The last hidden layer keeps its real value: ``h = scale * acc + shift`` with
  ``scale = A`` and ``shift = C`` (:func:`fold_batchnorm_to_affine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

INT32_MIN = np.iinfo(np.int32).min
INT32_MAX = np.iinfo(np.int32).max


@dataclass
class BatchNorm:
    """Inference-time batch normalization parameters of one layer (per unit)."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    epsilon: float = 1e-3

    def scale_shift(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(s, t)`` in float64 such that ``BN(y) = s * y + t``."""
        s = np.asarray(self.gamma, np.float64) / np.sqrt(np.asarray(self.variance, np.float64) + self.epsilon)
        t = np.asarray(self.beta, np.float64) - s * np.asarray(self.mean, np.float64)
        return s, t


def _affine(acc_scale, offset, batchnorm: Optional[BatchNorm], units: int) -> Tuple[np.ndarray, np.ndarray]:
    acc_scale = np.broadcast_to(np.asarray(acc_scale, np.float64), (units,))
    offset = np.broadcast_to(np.asarray(offset, np.float64), (units,))
    if batchnorm is None:
        return acc_scale.copy(), offset.copy()
    s, t = batchnorm.scale_shift()
    return s * acc_scale, s * offset + t


def fold_batchnorm_to_thresholds(
    acc_scale, offset, batchnorm: Optional[BatchNorm], units: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Fold ``sign(BN(acc_scale * acc + offset))`` into ``(threshold int32, flip uint8)``."""
    a, c = _affine(acc_scale, offset, batchnorm, units)
    threshold = np.full(units, INT32_MIN, dtype=np.int64)
    flip = np.zeros(units, dtype=np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = -c / a
    pos = a > 0
    neg = a < 0
    zero = ~(pos | neg)
    lo, hi = float(INT32_MIN), float(INT32_MAX)
    threshold[pos] = np.clip(np.ceil(tau[pos]), lo, hi).astype(np.int64)
    threshold[neg] = np.clip(np.floor(tau[neg]), lo, hi).astype(np.int64)
    flip[neg] = 1
    # constant units: A = 0 (e.g. gamma = 0) -> output is sign(C)
    flip[zero & (c < 0)] = 1
    threshold[zero] = INT32_MIN
    return threshold.astype(np.int32), flip


def fold_batchnorm_to_affine(
    acc_scale, offset, batchnorm: Optional[BatchNorm], units: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Fold ``BN(acc_scale * acc + offset)`` into ``scale * acc + shift`` (float32)."""
    a, c = _affine(acc_scale, offset, batchnorm, units)
    return a.astype(np.float32), c.astype(np.float32)


def apply_thresholds(acc: np.ndarray, threshold: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """The binary activation of a folded layer: ``bool`` (True = +1)."""
    acc = np.asarray(acc, np.int64)
    threshold = np.asarray(threshold, np.int64)
    return np.where(np.asarray(flip) != 0, acc <= threshold, acc >= threshold)


def fold_batchnorm_into_dense(
    weight: np.ndarray, bias: np.ndarray, batchnorm: Optional[BatchNorm]
) -> Tuple[np.ndarray, np.ndarray]:
    """``BN(W x + b)`` -> ``W' x + b'`` for a float dense ``W [out, in]`` (float32)."""
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64)
    if batchnorm is not None:
        s, t = batchnorm.scale_shift()
        weight = weight * s[:, None]
        bias = bias * s + t
    return weight.astype(np.float32), bias.astype(np.float32)


def fold_input_quantization_into_dense(
    weight: np.ndarray, bias: np.ndarray, input_scale: float, zero_point: int
) -> Tuple[np.ndarray, np.ndarray]:
    """A dense on ``x = input_scale * (q - zero_point)`` as a dense on the uint8 ``q``."""
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64)
    new_weight = weight * input_scale
    new_bias = bias - input_scale * zero_point * weight.sum(axis=1)
    return new_weight.astype(np.float32), new_bias.astype(np.float32)


def fold_input_quantization_into_binary_layer(
    weight_pm1: np.ndarray, bias: np.ndarray, input_scale: float, zero_point: int
) -> Tuple[float, np.ndarray]:
    """The first binary layer in ``int8`` input mode, on the uint8 ``q`` instead of ``x``.

    With ``x = input_scale * (q - zero_point)`` and ±1 weights ``w [out, in]``::

        w . x + b = input_scale * (w . q) + (b - input_scale * zero_point * sum_j w_j)

    so the engine accumulates ``acc = w . q`` (integers) and the layer's pre-activation is
    ``acc_scale * acc + offset``; returns ``(acc_scale, offset [out] float64)``.
    """
    w = np.asarray(weight_pm1, np.int64)
    bias = np.asarray(bias, np.float64)
    offset = bias - float(input_scale) * int(zero_point) * w.sum(axis=1)
    return float(input_scale), offset


def fold_quantized_shortcut(
    weight_q: np.ndarray, weight_scale: np.ndarray, bias: np.ndarray, batchnorm: Optional[BatchNorm],
    input_scale: float, zero_point: int
) -> Tuple[np.ndarray, np.ndarray]:
    """The Q shortcut ``BN(diag(weight_scale) Wq x + b)`` with integer ``Wq [out, in]``, on the uint8 ``q``.

    With ``x = input_scale * (q - zero_point)`` and ``BN(y) = s * y + t``::

        BN(...) = (s * weight_scale * input_scale) * (Wq . q)
                  + s * (b - weight_scale * input_scale * zero_point * sum_j Wq_j) + t

    so the engine accumulates ``Wq . q`` in integers and applies ``scale * acc + bias``;
    returns ``(scale [out] float32, bias [out] float32)``.
    """
    wq = np.asarray(weight_q, np.int64)
    units = wq.shape[0]
    w_scale = np.broadcast_to(np.asarray(weight_scale, np.float64), (units,))
    b = np.asarray(bias, np.float64) - w_scale * float(input_scale) * int(zero_point) * wq.sum(axis=1)
    s, t = batchnorm.scale_shift() if batchnorm is not None else (np.ones(units), np.zeros(units))
    return (s * w_scale * float(input_scale)).astype(np.float32), (s * b + t).astype(np.float32)
