"""What a model takes as input, and how raw values become its uint8 input vector.

Every engine runs on one input form: a ``uint8`` vector ``q`` of ``size``
values, with the real value the model was trained on being
``x = scale * (q - zero_point)``:

* ``image``: a ``height x width`` grey image, ``q`` = pixel (0 = black), ``x = q / 255``;
* ``text``: a multi-hot vector over a vocabulary, ``q`` = 1 where a word occurs;
* ``vector``: any real vector, quantized to 8 bits by ``scale`` and ``zero_point``.

In ``sign`` input mode the first binary layer sees ``+1`` where
``q >= binarize_threshold`` and ``-1`` elsewhere (the paper's sign of the
centred input: for images ``x - 0.5 >= 0``, i.e. ``q >= 128``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

INPUT_KINDS = ("image", "text", "vector")
MAX_INPUTS = 1 << 20


class InputSpecError(ValueError):
    pass


@dataclass(frozen=True)
class InputSpec:
    kind: str
    size: int
    scale: float = 1.0
    zero_point: int = 0
    binarize_threshold: int = 1
    height: Optional[int] = None
    width: Optional[int] = None
    vocab_size: Optional[int] = None
    tokenizer: Optional[dict] = field(default=None, hash=False, compare=True)

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise InputSpecError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        for name in ("size", "zero_point", "binarize_threshold"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputSpecError(f"input {name} must be an integer, got {value!r}")
        if not 1 <= self.size <= MAX_INPUTS:
            raise InputSpecError(f"input size must be between 1 and {MAX_INPUTS}, got {self.size}")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) or self.scale <= 0:
            raise InputSpecError(f"input scale must be a positive finite number, got {self.scale!r}")
        if not 0 <= self.zero_point <= 255:
            raise InputSpecError(f"input zero_point must be in [0, 255], got {self.zero_point}")
        if not 0 <= self.binarize_threshold <= 256:
            raise InputSpecError(f"input binarize_threshold must be in [0, 256], got {self.binarize_threshold}")
        if self.kind == "image":
            for name in ("height", "width"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise InputSpecError(f"image input needs a positive integer {name}, got {value!r}")
            if self.height * self.width != self.size:
                raise InputSpecError(f"image input: height*width = {self.height * self.width} != size {self.size}")
        if self.kind == "text":
            if self.vocab_size != self.size:
                raise InputSpecError(f"text input: vocab_size {self.vocab_size!r} must equal size {self.size}")
            if not isinstance(self.tokenizer, dict):
                raise InputSpecError("text input needs a tokenizer description")

    # -- constructors for the common cases ---------------------------------
    @classmethod
    def image(cls, height: int = 28, width: int = 28) -> "InputSpec":
        return cls(kind="image", size=height * width, scale=1.0 / 255.0, zero_point=0,
                   binarize_threshold=128, height=height, width=width)

    @classmethod
    def text(cls, vocab_size: int, tokenizer: dict) -> "InputSpec":
        return cls(kind="text", size=vocab_size, scale=1.0, zero_point=0, binarize_threshold=1,
                   vocab_size=vocab_size, tokenizer=dict(tokenizer))

    @classmethod
    def vector(cls, size: int, scale: float = 1.0 / 255.0, zero_point: int = 0,
               binarize_threshold: Optional[int] = None) -> "InputSpec":
        if binarize_threshold is None:
            binarize_threshold = zero_point if zero_point > 0 else 1
        return cls(kind="vector", size=size, scale=scale, zero_point=zero_point,
                   binarize_threshold=binarize_threshold)

    # -- (de)serialization ---------------------------------------------------
    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        if not isinstance(data, dict):
            raise InputSpecError("input spec must be an object")
        known = {"kind", "size", "scale", "zero_point", "binarize_threshold", "height", "width",
                 "vocab_size", "tokenizer"}
        unknown = set(data) - known
        if unknown:
            raise InputSpecError(f"unknown input spec keys: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputSpecError(str(exc)) from None

    # -- conversions -----------------------------------------------------------
    def quantize(self, x) -> np.ndarray:
        """Real values ``x [..., size]`` -> uint8 ``q`` with ``x ~ scale * (q - zero_point)``."""
        x = np.asarray(x, dtype=np.float64)
        q = np.rint(x / self.scale) + self.zero_point
        return np.clip(q, 0, 255).astype(np.uint8)

    def dequantize(self, q) -> np.ndarray:
        return (self.scale * (np.asarray(q, np.float32) - self.zero_point)).astype(np.float32)

    def as_uint8_batch(self, x) -> np.ndarray:
        """Accept one sample or a batch; uint8 arrays are taken as ``q`` as they are,
        any other numeric array as real values to quantize. Returns ``uint8 [batch, size]``."""
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputSpecError(f"input must be a numeric array, got dtype {arr.dtype}")
        if arr.ndim >= 1 and arr.shape[-1] != self.size and self.kind == "image" and arr.ndim >= 2 \
                and arr.shape[-2:] == (self.height, self.width):
            arr = arr.reshape(arr.shape[:-2] + (self.size,))
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.size:
            raise InputSpecError(f"input must have shape ({self.size},) or (batch, {self.size}), got {np.shape(x)}")
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if arr.dtype == bool:
            return np.ascontiguousarray(arr.astype(np.uint8))
        if not np.all(np.isfinite(arr)):
            raise InputSpecError("input contains NaN or infinite values")
        return np.ascontiguousarray(self.quantize(arr))
