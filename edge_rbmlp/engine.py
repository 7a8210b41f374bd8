"""What every inference backend offers, on top of one method: uint8 inputs -> logits.

A backend implements :meth:`Engine.logits_uint8`; this base class turns raw
inputs (real or uint8 arrays, text, images) into the model's uint8 input with
the model's own preprocessing, and logits into probabilities and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from .model_file import PackedModel


class InputKindError(ValueError):
    """Text given to an image model, or an image to a text model."""


@dataclass
class Prediction:
    label: str
    class_index: int
    probabilities: List[float]

    def to_dict(self) -> dict:
        return {"label": self.label, "class_index": self.class_index, "probabilities": self.probabilities}


def logits_to_probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    """softmax over classes, or for one sigmoid unit ``[1 - p, p]``."""
    logits = np.asarray(logits, np.float64)
    if activation == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Engine:
    """Base of every backend. Subclasses set ``name`` and implement ``logits_uint8``."""

    name = "base"

    def __init__(self, model: PackedModel):
        self.model = model
        self._text_encoder = None

    # -- what a backend implements ----------------------------------------
    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        """``uint8 [batch, n_inputs]`` -> ``float32 [batch, n_outputs]``."""
        raise NotImplementedError

    @property
    def kernel(self) -> str:
        """Which kernel variant runs (for backends that have several)."""
        return self.name

    # -- shared API --------------------------------------------------------
    def logits(self, x) -> np.ndarray:
        q = self.model.input_spec.as_uint8_batch(x)
        return self.logits_uint8(q)

    def predict(self, x) -> np.ndarray:
        """Class probabilities for one sample (``[classes]``) or a batch (``[batch, classes]``).

        ``uint8`` arrays are the model's input as it is (pixels, multi-hot);
        other numeric arrays are real values, quantized by the input spec.
        """
        single = np.ndim(x) == 1 or (self.model.input_spec.kind == "image" and np.ndim(x) == 2
                                     and np.shape(x) == (self.model.input_spec.height, self.model.input_spec.width))
        probs = logits_to_probabilities(self.logits(x), self.model.output_activation)
        return probs[0] if single else probs

    def predict_class(self, x) -> np.ndarray:
        probs = logits_to_probabilities(self.logits(x), self.model.output_activation)
        return probs.argmax(axis=1)

    def _prediction(self, q: np.ndarray) -> Prediction:
        probs = logits_to_probabilities(self.logits_uint8(q), self.model.output_activation)[0]
        index = int(np.argmax(probs))
        return Prediction(label=self.model.labels[index], class_index=index,
                          probabilities=[float(p) for p in probs])

    def predict_text(self, text: str) -> Prediction:
        """Tokenize with the model's own vocabulary and classify."""
        if self.model.input_spec.kind != "text":
            raise InputKindError(f"model takes {self.model.input_spec.kind} input, not text")
        if self._text_encoder is None:
            from .text import TextEncoder

            self._text_encoder = TextEncoder.for_model(self.model)
        return self._prediction(self._text_encoder.multi_hot(text)[None, :])

    def predict_image(self, image) -> Prediction:
        """Preprocess an image (array or PIL image; any size, colour or grey) and classify."""
        if self.model.input_spec.kind != "image":
            raise InputKindError(f"model takes {self.model.input_spec.kind} input, not images")
        from .image import preprocess_digit

        spec = self.model.input_spec
        q = preprocess_digit(image, size=(spec.height, spec.width))
        return self._prediction(q.reshape(1, -1))

    def describe(self) -> dict:
        return {"backend": self.name, "kernel": self.kernel}


def make_engine(model: PackedModel, backend: str = "auto") -> Engine:
    """Build the engine for ``backend`` (``auto``, ``native``, ``reference``, ...).

    A backend that is not available raises :class:`BackendUnavailable` naming what
    to install; nothing falls back silently.
    """
    from .backends import create

    return create(model, backend)


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here (with the reason and what to install)."""

