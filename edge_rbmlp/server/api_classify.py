"""``POST /classify/<model>``: the simple API (an image or a text in, one prediction out)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .errors import ApiError
from .infer import (IMAGE_TYPES, SNIFFED_TYPES, classify_image, classify_text, decode_text, media_params,
                    media_type, parse_json, read_body)
from .state import app_state

bp = Blueprint("classify", __name__)


def answer(served, pred) -> dict:
    """The JSON of one classification (fastpath.py answers the same)."""
    t = pred.timing_us
    out = {"model": served.name, "label": pred.label, "class_index": pred.class_index,
           "probabilities": pred.probabilities, "latency_us": round(t["total_us"], 1),
           "decode_us": round(t["decode_us"], 1), "preprocess_us": round(t["preprocess_us"], 1),
           "inference_us": round(t["inference_us"], 1), "total_us": round(t["total_us"], 1),
           "backend": served.engine.name, "kernel": served.engine.kernel}
    if pred.known_words is not None:
        out["known_words"] = pred.known_words
        out["low_confidence"] = pred.low_confidence
    return out


def _answer(served, pred):
    return jsonify(answer(served, pred))


def charset_ok(params) -> bool:
    """Whether a text body's ``charset`` parameter (none: UTF-8) is one the service reads."""
    charset = params.get("charset")
    return charset is None or charset.lower().replace("_", "-") in ("utf-8", "utf8", "us-ascii", "ascii")


def _charset_ok() -> bool:
    return charset_ok(media_params())


@bp.post("/classify/<model>")
def classify(model):
    served = app_state().get(model)
    kind = served.kind
    mtype = media_type()
    if mtype == "multipart/form-data":
        files = list(request.files.values())
        if kind == "image":
            if not files:
                raise ApiError(400, "multipart upload without a file: send the image as a file field (e.g. file=@x.png)")
            return _answer(served, classify_image(served, files[0].read()))
        if kind == "text":
            if "text" in request.form:
                return _answer(served, classify_text(served, decode_text(request.form["text"])))
            if files:
                return _answer(served, classify_text(served, decode_text(files[0].read())))
            raise ApiError(400, "multipart upload without a 'text' field or a file")
    body = read_body()
    if mtype == "application/json" or mtype.endswith("+json"):
        if kind != "text":
            raise ApiError(415, f"model {served.name!r} takes images: send the image bytes "
                                f"(Content-Type image/png, image/jpeg, ...), not JSON")
        payload = parse_json(body, "body")
        if not isinstance(payload, dict) or "text" not in payload:
            raise ApiError(400, 'JSON body must be an object {"text": "..."}')
        if not isinstance(payload["text"], str):
            raise ApiError(400, f'"text" must be a string, got {type(payload["text"]).__name__}')
        return _answer(served, classify_text(served, decode_text(payload["text"])))
    if mtype == "text/plain":
        if kind != "text":
            raise ApiError(415, f"model {served.name!r} takes images, not text/plain")
        if not _charset_ok():
            raise ApiError(415, f"text must be UTF-8, not charset={media_params().get('charset')}")
        return _answer(served, classify_text(served, decode_text(body)))
    if mtype in IMAGE_TYPES:
        if kind != "image":
            raise ApiError(415, f"model {served.name!r} takes text (text/plain or JSON {{\"text\": ...}}), "
                                f"not {mtype}")
        return _answer(served, classify_image(served, body))
    if mtype in SNIFFED_TYPES:
        if kind == "image":
            return _answer(served, classify_image(served, body))
        if kind == "text":
            return _answer(served, classify_text(served, decode_text(body)))
    if kind == "image":
        raise ApiError(415, f"unsupported Content-Type {mtype!r} for an image model: send PNG, JPEG, PGM or BMP "
                            f"bytes (or multipart/form-data with a file)")
    if kind == "text":
        raise ApiError(415, f"unsupported Content-Type {mtype!r} for a text model: send text/plain or "
                            f'application/json {{"text": ...}}')
    raise ApiError(415, f"model {served.name!r} takes raw vectors: use /v2/models/{served.name}/infer")
