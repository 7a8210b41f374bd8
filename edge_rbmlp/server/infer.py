"""Turning request bodies into model inputs, and timed inference (shared by every API)."""

from __future__ import annotations

import json
import time
import unicodedata
from functools import lru_cache
from typing import List, Optional

import numpy as np
from flask import request
from werkzeug.http import parse_options_header

from ..engines.base import Prediction
from ..image import ImageError, load_image
from ..text import TextError, as_text
from .errors import ApiError
from .guard import HELD, RELEASE, CappedInput, Deadline, check_json
from .state import ServedModel, app_state

IMAGE_TYPES = ("image/png", "image/jpeg", "image/pjpeg", "image/x-portable-graymap", "image/x-portable-anymap",
               "image/x-portable-pixmap", "image/bmp", "image/x-ms-bmp", "image/gif", "image/webp", "image/tiff")
# content types whose body is taken as it is and recognised by its bytes (curl --data-binary sends
# application/x-www-form-urlencoded)
SNIFFED_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")


# environ keys of one request (beside guard.HELD and guard.RELEASE): its body once read, the
# characters NFKC normalization made for it
BODY = "edge_rbmlp.body"
NFKC_CHARS = "edge_rbmlp.nfkc_chars"


def read_body() -> bytes:
    """The raw body. app.front refused a Content-Length over the limit before the request got
    here, and a body without one (chunked) reads through its CappedInput (413 past the limit),
    so the body is read from ``wsgi.input`` at once (no werkzeug stream wrapper per request)."""
    environ = request.environ
    data = environ.get(BODY)
    if data is None:
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit():
            data = environ["wsgi.input"].read(int(length))
        elif not length and isinstance(environ.get("wsgi.input"), CappedInput):
            data = environ["wsgi.input"].read()
        else:  # anything else as werkzeug reads it (bounded by MAX_CONTENT_LENGTH)
            data = request.get_data(cache=True, parse_form_data=False)
        environ[BODY] = data
    return data


@lru_cache(maxsize=256)
def content_type(value: str):
    """``Content-Type`` -> (media type in lower case, its parameters): parsed once per distinct
    header (a bounded cache: a client inventing types only evicts)."""
    mtype, params = parse_options_header(value)
    return mtype.lower(), params


def media_type() -> str:
    return content_type(request.environ.get("CONTENT_TYPE", ""))[0]


def media_params() -> dict:
    """The Content-Type's parameters (``charset``...); a copy, the parsed ones are shared."""
    return dict(content_type(request.environ.get("CONTENT_TYPE", ""))[1])


DEADLINE = "edge_rbmlp.deadline"  # set by app.front


def deadline() -> Optional[Deadline]:
    """This request's deadline (set by app.front), or None outside a request the front saw."""
    return request.environ.get(DEADLINE)


def check_time(stage: str) -> None:
    limit = deadline()
    if limit is not None:
        limit.check(stage)


def parse_json(body: bytes, what: str = "request"):
    """``json.loads`` of a body, bounded: depth and container count checked first (400), then what
    the parsed objects can cost reserved from the worker's memory budget until the request ends
    (413 when more than the budget, 503 when it stays busy past the request's deadline)."""
    cost = check_json(body, f"{what} JSON")
    state = app_state()
    environ = request.environ
    held = environ.get(HELD, 0)
    cm = state.budget.reserve(cost, f"{what} JSON of {len(body)} bytes", environ.get("edge_rbmlp.deadline"), held)
    cm.__enter__()
    environ[HELD] = held + cost
    environ.setdefault(RELEASE, []).append(cm)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc}") from None


NFKC_WINDOW = 4096


def _joins(text: str, i: int) -> bool:
    """Whether NFKC may join ``text[i]`` to what comes before it (a combining mark, or a character
    that composes with the few before it, like a Hangul vowel or final after a syllable)."""
    if unicodedata.combining(text[i]):
        return True
    before = unicodedata.normalize("NFKC", text[max(0, i - 4):i])
    return unicodedata.normalize("NFKC", text[max(0, i - 4):i + 1]) != before + unicodedata.normalize("NFKC", text[i])


def _nfkc_bounded(text: str, limit: int, request_left: int, what: str):
    """(NFKC of ``text``, the characters normalized) in windows of about NFKC_WINDOW characters,
    stopping (413) as soon as the result passes ``limit`` characters or the request's normalization
    budget ``request_left``: NFKC expands a character up to 18x (U+FDFA), and its cost follows the
    output. Windows end before a space or an ASCII character (NFKC never joins or reorders across
    one: the result is exact); only a run of 2 windows with neither is split before a character
    that is not combining and does not compose with the few before it (:func:`_joins`)."""
    out, made, start, n = [], 0, 0, len(text)
    while start < n:
        end = min(n, start + NFKC_WINDOW)
        if end < n:
            space = text.rfind(" ", start + 1, end)
            if space > start:
                end = space
            else:  # before an ASCII character (nothing composes with one, nor reorders across it)
                ascii_at = next((i for i in range(end, min(n, start + 2 * NFKC_WINDOW)) if text[i] < "\x80"), None)
                if ascii_at is not None:
                    end = ascii_at
                else:
                    while end < n and end - start < 2 * NFKC_WINDOW and _joins(text, end):
                        end += 1
        piece = unicodedata.normalize("NFKC", text[start:end])
        made += len(piece)
        if made > limit:
            raise ApiError(413, f"{what} is more than {limit} characters after NFKC normalization (the limit)")
        if made > request_left:
            raise ApiError(413, f"the texts of this request expand to more than {2 * limit} characters under NFKC "
                                f"normalization (the limit of one request)")
        out.append(piece)
        start = end
    return "".join(out), made


def decode_text(data, what: str = "text", state=None, environ=None) -> str:
    """Bytes or str -> the NFKC-normalized text (what the tokenizer reads). At most ``max_text_chars``
    characters before and after normalizing, and what normalizing makes in one request at most
    twice that (:func:`_nfkc_bounded`; ASCII and already normalized texts cost nothing there).
    ``state``/``environ``: the app's and the request's, outside Flask's request context (fastpath.py)."""
    limits = (state or app_state()).config.limits
    if environ is None:
        environ = request.environ
    if isinstance(data, (bytes, bytearray)) and len(data) > 4 * limits.max_text_chars:
        raise ApiError(413, f"{what} is {len(data)} bytes, more than the {limits.max_text_chars} character limit")
    try:
        text = as_text(data)
    except TextError as exc:
        raise ApiError(400, f"{what}: {exc}") from None
    if len(text) > limits.max_text_chars:
        raise ApiError(413, f"{what} is {len(text)} characters, more than the {limits.max_text_chars} limit")
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        spent = environ.get(NFKC_CHARS, 0)
        text, made = _nfkc_bounded(text, limits.max_text_chars, 2 * limits.max_text_chars - spent, what)
        environ[NFKC_CHARS] = spent + made
    if not text.strip():
        raise ApiError(400, f"{what} is empty")
    limit = environ.get(DEADLINE)
    if limit is not None:
        limit.check("text")
    return text


def decode_image(data: bytes, state=None, environ=None):
    """Image bytes -> a decoded PIL image, its decoding held in the worker's memory budget
    (``state``/``environ`` as in :func:`decode_text`)."""
    state = state or app_state()
    if environ is None:
        environ = request.environ
    limits = state.config.limits
    if not data:
        raise ApiError(400, "the request body is empty: send an image (PNG, JPEG, PGM, BMP)")
    limit = environ.get(DEADLINE)
    held = environ.get(HELD, 0)
    img = load_image(bytes(data), max_pixels=limits.max_image_pixels,
                     reserve=lambda nbytes, what: state.budget.reserve(nbytes, what, limit, held))
    w, h = img.info.get("decoded_size", img.size)
    if min(w, h) < limits.min_image_side:
        raise ApiError(400, f"image is {w}x{h} pixels; at least {limits.min_image_side}x{limits.min_image_side} "
                            f"is needed to show a digit")
    if limit is not None:
        limit.check("image decoding")
    return img


def image_input(served: ServedModel, image) -> np.ndarray:
    """Any picture -> the model's uint8 input ``[1, n]`` (the engine's digit preprocessing); 422 when
    it holds no single digit (the reason every other caller gives too)."""
    try:
        q, reason = served.engine.preprocess_image_info(image)
    except ImageError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot preprocess image: {exc}") from None
    if reason is not None:
        raise ApiError(422, reason, extra={"label": None, "reason": reason})
    return q.reshape(1, -1)


def text_inputs(served: ServedModel, texts: List[str]) -> np.ndarray:
    """Texts -> the model's dense multi-hot input ``[batch, n]`` (the raw-tensor APIs take it so)."""
    return served.engine.text_encoder.multi_hot_batch(texts)


def record(served: ServedModel, preds: List[Prediction], state=None) -> List[Prediction]:
    """Account predictions in the metrics and the recent-latency window (the page's sparkline)."""
    metrics = (state or app_state()).metrics
    for pred in preds:
        metrics.observe_prediction(served.name, served.engine.name, pred.timing_us)
        served.recent_us.append(pred.timing_us.get("total_us", 0.0))
    return preds


def infer_batch(served: ServedModel, q: np.ndarray) -> List[Prediction]:
    """``uint8 [batch, n]`` model inputs -> Predictions (the raw-tensor APIs)."""
    return record(served, served.engine.predictions(q))


def classify_image(served: ServedModel, data: bytes, state=None, environ=None) -> Prediction:
    """Image bytes -> Prediction, through the engine's one image path; 422 when there is no digit."""
    t0 = time.perf_counter()
    image = decode_image(data, state, environ)
    decode_us = (time.perf_counter() - t0) * 1e6
    pred = record(served, served.engine.predict_images([image], decode_us=[decode_us]), state)[0]
    if pred.refused:  # the same refusal as the CLI's and the Python API's, with what was measured
        raise ApiError(422, pred.reason, extra={"label": None, "class_index": None, "reason": pred.reason,
                                                "probabilities": pred.probabilities})
    return pred


def classify_text(served: ServedModel, text: str, state=None) -> Prediction:
    """Text -> Prediction, through the engine's one text path (the C tokenizer on the native engine)."""
    return record(served, served.engine.predict_texts([text]), state)[0]


def numeric_array(values, irregular: str, not_numbers: str) -> np.ndarray:
    """JSON values -> a numeric numpy array; 400 ``"{irregular}: {why}"`` when they are not a
    regular array, 400 ``not_numbers`` when they are not numbers (the raw-tensor APIs)."""
    try:
        arr = np.asarray(values)
    except ValueError as exc:
        raise ApiError(400, f"{irregular}: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ApiError(400, not_numbers)
    return arr


def check_batch(n: int) -> None:
    limit = app_state().config.limits.max_batch
    if n < 1:
        raise ApiError(400, "the batch is empty")
    if n > limit:
        raise ApiError(413, f"batch of {n} is larger than the {limit} limit")
