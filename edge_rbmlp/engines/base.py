"""What every inference backend offers, on top of one method: uint8 inputs -> logits.

A backend implements :meth:`Engine.logits_uint8`. This base class owns the one
path from what a user has to an answer, shared by the CLI, the Python API, the
HTTP routes and the camera loop:

* ``predict_image(image)`` / ``predict_images(images)``: PNG/JPEG bytes, a PIL
  image or an array of any size -> the model's own digit preprocessing -> one
  batched inference -> :class:`Prediction`;
* ``predict_text(text)`` / ``predict_texts(texts)``: raw text -> the model's
  vocabulary -> :class:`Prediction`;
* ``predictions(q)``: the model's uint8 input as it is (pixels, multi-hot).

Nothing else builds a :class:`Prediction`. Every prediction carries the time
split (``decode_us``, ``preprocess_us``, ``inference_us``, ``total_us``) so that
whoever shows a latency shows where it went, and an input that holds nothing to
classify (a blank picture) is answered with ``label = None`` and a ``reason``
by every caller alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..model_file import PackedModel
from ..reject import (DEFAULT_MIN_CONFIDENCE, NO_DIGIT, confidence_reason, picture_reason,  # noqa: F401
                      text_is_low_confidence)


class InputKindError(ValueError):
    """Text given to an image model, or an image to a text model."""


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here (with the reason and what to install)."""




@dataclass
class Prediction:
    """One answer. ``label``/``class_index`` are ``None`` when the input was refused (``reason``)."""

    label: Optional[str]
    class_index: Optional[int]
    probabilities: List[float]
    reason: Optional[str] = None
    timing_us: Dict[str, float] = field(default_factory=dict)
    # text: how many of its words the model knows, and whether that (or the class's probability)
    # is too little to trust the label (edge_rbmlp.reject.text_is_low_confidence)
    known_words: Optional[int] = None
    low_confidence: bool = False
    # the uint8 model input that was classified (the 28x28 digit, the multi-hot row); not serialized
    input: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def confidence(self) -> float:
        return max(self.probabilities) if self.probabilities and self.label is not None else 0.0

    @property
    def refused(self) -> bool:
        return self.label is None

    def to_dict(self, timing: bool = False) -> dict:
        out = {"label": self.label, "class_index": self.class_index, "probabilities": self.probabilities}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.known_words is not None:
            out["known_words"] = self.known_words
            out["low_confidence"] = self.low_confidence
        if timing:
            out.update({k: round(v, 1) for k, v in self.timing_us.items()})
        return out


def logits_to_probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    """softmax over classes, or for one sigmoid unit ``[1 - p, p]``."""
    logits = np.asarray(logits, np.float64)
    if activation == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _us(seconds: float) -> float:
    return seconds * 1e6


def _timing(decode_us: float, preprocess_us: float, inference_us: float) -> Dict[str, float]:
    """One prediction's time split, as every front end reports it."""
    return {"decode_us": decode_us, "preprocess_us": preprocess_us, "inference_us": inference_us,
            "total_us": decode_us + preprocess_us + inference_us}


class Engine:
    """Base of every backend. Subclasses set ``name`` and implement ``logits_uint8``."""

    name = "base"

    def __init__(self, model: PackedModel):
        self.model = model
        self._text_encoder = None
        # pictures whose best class is less likely than this are answered "unsure" (edge_rbmlp.reject)
        self.min_confidence = DEFAULT_MIN_CONFIDENCE

    # -- what a backend implements ----------------------------------------
    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        """``uint8 [batch, n_inputs]`` -> ``float32 [batch, n_outputs]``."""
        raise NotImplementedError

    def probabilities_uint8(self, q: np.ndarray) -> np.ndarray:
        """``uint8 [batch, n_inputs]`` -> probabilities ``[batch, classes]`` (backends may do it in C)."""
        return logits_to_probabilities(self.logits_uint8(q), self.model.output_activation)

    def text_probabilities(self, texts: Sequence[str], known: Optional[list] = None) -> np.ndarray:
        """Raw texts -> probabilities ``[batch, classes]`` (the native engine tokenizes in C);
        ``known``, when given, receives each text's number of vocabulary words."""
        q = self.text_encoder.multi_hot_batch(texts)
        if known is not None:
            known.extend(int(v) for v in q.sum(axis=1))
        return self.probabilities_uint8(q)

    @property
    def kernel(self) -> str:
        """Which kernel variant runs (for backends that have several)."""
        return self.name

    # -- inputs -------------------------------------------------------------
    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from ..text import TextEncoder

            self._text_encoder = TextEncoder.for_model(self.model)
        return self._text_encoder

    def _require(self, kind: str) -> None:
        have = self.model.input_spec.kind
        if have != kind:
            what = "images" if kind == "image" else kind
            raise InputKindError(f"model takes {have} input, not {what}")

    def preprocess_image_info(self, image):
        """Any picture -> (the model's uint8 input ``[n_inputs]``, why it holds no single digit or None)."""
        from ..image import image_array, preprocess_digit_info

        spec = self.model.input_spec
        arr = image_array(image)
        q, info = preprocess_digit_info(arr, size=(spec.height, spec.width))
        return q.reshape(-1), picture_reason(info, arr.shape[:2])

    # -- the one path to a Prediction ------------------------------------------
    def _answers(self, probs: np.ndarray, inputs, timings: List[Dict[str, float]],
                 refused: Sequence[Optional[str]] = ()) -> List[Prediction]:
        """Probabilities ``[batch, classes]`` -> Predictions (``refused[i]``: the reason sample i has no label)."""
        labels = self.model.labels
        out = []
        for i, p in enumerate(probs.tolist() if isinstance(probs, np.ndarray) else probs):
            reason = refused[i] if refused else None
            if reason is None:
                index = p.index(max(p))
                out.append(Prediction(labels[index], index, p, timing_us=timings[i], input=inputs[i]))
            else:
                out.append(Prediction(None, None, p, reason=reason, timing_us=timings[i], input=inputs[i]))
        return out

    def predictions(self, q: np.ndarray) -> List[Prediction]:
        """The model's own uint8 input ``[batch, n_inputs]`` (or one ``[n_inputs]`` row) -> Predictions."""
        q = np.ascontiguousarray(q, dtype=np.uint8)
        if q.ndim == 1:
            q = q[None, :]
        t0 = time.perf_counter()
        probs = self.probabilities_uint8(q)
        inference = _us(time.perf_counter() - t0) / max(1, q.shape[0])
        return self._answers(probs, list(q), [_timing(0.0, 0.0, inference) for _ in range(q.shape[0])])

    def predict_images(self, images: Sequence, decode_us: Optional[Sequence[float]] = None) -> List[Prediction]:
        """Pictures (encoded bytes, PIL images or arrays; any size, colour or grey) -> Predictions.

        Every picture is preprocessed, then all go through the engine in one batch. A picture that
        holds no single digit, or whose best class is below ``min_confidence``, is answered with
        ``label=None`` and the ``reason`` (:mod:`edge_rbmlp.reject`); undecodable bytes raise
        :class:`edge_rbmlp.image.ImageError`.
        """
        self._require("image")
        from ..image import load_image

        images = list(images)
        decode = list(decode_us) if decode_us is not None else [0.0] * len(images)
        rows, prep, refused = [], [], []
        clock = time.perf_counter
        for i, image in enumerate(images):
            if isinstance(image, (bytes, bytearray, memoryview)):
                t0 = clock()
                image = load_image(bytes(image))
                decode[i] += (clock() - t0) * 1e6
            t0 = clock()
            q_row, reason = self.preprocess_image_info(image)
            prep.append((clock() - t0) * 1e6)
            rows.append(q_row)
            refused.append(reason)
        if not rows:
            return []
        q = rows[0][None, :] if len(rows) == 1 else np.stack(rows)
        t0 = clock()
        probs = self.probabilities_uint8(q)
        inference = (clock() - t0) * 1e6 / len(rows)
        probs = probs.tolist()  # once: Python's max over a list, not over numpy scalars
        for i, row in enumerate(probs):
            if refused[i] is None:
                refused[i] = confidence_reason(row, self.min_confidence)
        timings = [_timing(decode[i], prep[i], inference) for i in range(len(rows))]
        return self._answers(probs, rows, timings, refused if any(refused) else ())

    def predict_image(self, image) -> Prediction:
        """One picture (bytes, PIL image or array) -> :class:`Prediction` (see :meth:`predict_images`)."""
        return self.predict_images([image])[0]

    def predict_texts(self, texts: Sequence) -> List[Prediction]:
        """Raw texts (str or UTF-8 bytes) -> Predictions, with the model's own vocabulary."""
        self._require("text")
        from ..text import as_text

        texts = [t if isinstance(t, str) else as_text(t) for t in texts]
        for t in texts:
            if not t.strip():
                from ..text import TextError

                raise TextError("text is empty")
        if not texts:
            return []
        t0 = time.perf_counter()
        known: List[int] = []
        probs = self.text_probabilities(texts, known)
        total = _us(time.perf_counter() - t0) / len(texts)
        # tokenizing and inference are one C call on the native engine: reported as inference
        preds = self._answers(probs, [None] * len(texts), [_timing(0.0, 0.0, total) for _ in texts])
        for pred, k in zip(preds, known):
            pred.known_words = k
            pred.low_confidence = text_is_low_confidence(k, pred.confidence)
        return preds

    def predict_text(self, text) -> Prediction:
        """Tokenize with the model's own vocabulary and classify."""
        return self.predict_texts([text])[0]

    # -- arrays ---------------------------------------------------------------
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

    def describe(self) -> dict:
        return {"backend": self.name, "kernel": self.kernel}
