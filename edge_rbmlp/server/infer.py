"""Turning request bodies into model inputs, and timed inference (shared by every API)."""

from __future__ import annotations

import time
from typing import List, Tuple

import numpy as np
from flask import request

from ..engine import Prediction, logits_to_probabilities
from ..image import ImageError, load_image, preprocess_digit
from ..text import TextError, as_text
from .errors import ApiError
from .state import ServedModel, app_state

IMAGE_TYPES = ("image/png", "image/jpeg", "image/pjpeg", "image/x-portable-graymap", "image/x-portable-anymap",
               "image/x-portable-pixmap", "image/bmp", "image/x-ms-bmp", "image/gif", "image/webp", "image/tiff")
# content types whose body is taken as it is and recognised by its bytes (curl --data-binary sends
# application/x-www-form-urlencoded)
SNIFFED_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")


def read_body() -> bytes:
    """The raw body, limited by ``MAX_CONTENT_LENGTH`` (from Content-Length and while reading)."""
    return request.get_data(cache=True, parse_form_data=False)


def media_type() -> str:
    return (request.mimetype or "").lower()


def decode_text(data, what: str = "text") -> str:
    limits = app_state().config.limits
    if isinstance(data, (bytes, bytearray)) and len(data) > 4 * limits.max_text_chars:
        raise ApiError(413, f"{what} is {len(data)} bytes, more than the {limits.max_text_chars} character limit")
    try:
        text = as_text(data)
    except TextError as exc:
        raise ApiError(400, f"{what}: {exc}") from None
    if len(text) > limits.max_text_chars:
        raise ApiError(413, f"{what} is {len(text)} characters, more than the {limits.max_text_chars} limit")
    if not text.strip():
        raise ApiError(400, f"{what} is empty")
    return text


def decode_image(data: bytes):
    limits = app_state().config.limits
    if not data:
        raise ApiError(400, "the request body is empty: send an image (PNG, JPEG, PGM, BMP)")
    img = load_image(bytes(data), max_pixels=limits.max_image_pixels)
    w, h = img.size
    if min(w, h) < limits.min_image_side:
        raise ApiError(400, f"image is {w}x{h} pixels; at least {limits.min_image_side}x{limits.min_image_side} "
                            f"is needed to show a digit")
    return img


def image_input(served: ServedModel, image) -> np.ndarray:
    """Any picture -> the model's uint8 input (digit preprocessing); 422 when there is no digit."""
    spec = served.model.input_spec
    try:
        q = preprocess_digit(image, size=(spec.height, spec.width))
    except ImageError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot preprocess image: {exc}") from None
    if not q.any():
        raise ApiError(422, "no digit found: the image is blank or uniform")
    return q.reshape(1, -1)


def timed_probabilities(served: ServedModel, q: np.ndarray) -> Tuple[np.ndarray, float]:
    """``uint8 [batch, n]`` -> (probabilities ``[batch, classes]``, seconds); recorded in the metrics."""
    t0 = time.perf_counter()
    logits = served.engine.logits_uint8(np.ascontiguousarray(q, dtype=np.uint8))
    probs = logits_to_probabilities(logits, served.model.output_activation)
    seconds = time.perf_counter() - t0
    record_latency(served, seconds)
    return probs, seconds


def record_latency(served: ServedModel, seconds: float) -> None:
    state = app_state()
    state.metrics.observe_inference(served.name, served.engine.name, seconds)
    served.recent_us.append(seconds * 1e6)


def predictions(served: ServedModel, probs: np.ndarray) -> List[Prediction]:
    out = []
    for row in probs:
        index = int(np.argmax(row))
        out.append(Prediction(label=served.model.labels[index], class_index=index,
                              probabilities=[float(p) for p in row]))
    return out


def classify_image(served: ServedModel, image) -> Tuple[Prediction, float]:
    t0 = time.perf_counter()
    q = image_input(served, image)
    logits = served.engine.logits_uint8(q)
    probs = logits_to_probabilities(logits, served.model.output_activation)
    seconds = time.perf_counter() - t0
    record_latency(served, seconds)
    return predictions(served, probs)[0], seconds


def text_inputs(served: ServedModel, texts: List[str]) -> np.ndarray:
    from ..text import TextEncoder

    encoder = getattr(served, "_encoder", None)
    if encoder is None:
        encoder = TextEncoder.for_model(served.model)
        served._encoder = encoder
    return np.stack([encoder.multi_hot(t) for t in texts]).astype(np.uint8)


def classify_text(served: ServedModel, text: str) -> Tuple[Prediction, float]:
    t0 = time.perf_counter()
    q = text_inputs(served, [text])
    logits = served.engine.logits_uint8(q)
    probs = logits_to_probabilities(logits, served.model.output_activation)
    seconds = time.perf_counter() - t0
    record_latency(served, seconds)
    return predictions(served, probs)[0], seconds


def check_batch(n: int) -> None:
    limit = app_state().config.limits.max_batch
    if n < 1:
        raise ApiError(400, "the batch is empty")
    if n > limit:
        raise ApiError(413, f"batch of {n} is larger than the {limit} limit")
