"""TensorFlow Serving's REST API: ``GET /v1/models/<name>`` and ``POST /v1/models/<name>:predict``.

Instances (row format, ``{"instances": [...]}``) or columns (``{"inputs": ...}``):

* text models: each instance a string (or ``{"text": "..."}``);
* image models: each instance ``{"b64": "<base64 PNG/JPEG/...>"}`` (TF Serving's
  convention for binary values), or the pixels as a flat list of ``n`` or a
  ``height x width`` nested list. JSON integers are the model's raw uint8 input
  (pixels 0-255); any non-integer number makes the instance real values
  (pixels in [0, 1]), quantized by the model's input scale.

Answers ``{"predictions": [{"probabilities": [...], "class_index": i, "label": "..."}]}``;
errors ``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from flask import Blueprint, jsonify

from ..image import ImageError
from .errors import ApiError
from .infer import (check_batch, check_time, decode_image, decode_text, image_input, infer_batch, numeric_array,
                    parse_json, read_body, text_inputs)
from .state import ServedModel, app_state

bp = Blueprint("v1", __name__)
VERSION = "1"


def _status(served: ServedModel) -> dict:
    return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


@bp.get("/v1/models/<name:model>")
@bp.get("/v1/models/<name:model>/versions/<name:version>")
def status(model, version=None):
    served = app_state().get(model)
    if version is not None and version != VERSION:
        raise ApiError(404, f"unknown version {version!r} of model {model!r}; this server has version {VERSION}")
    return jsonify(_status(served))


@bp.get("/v1/models/<name:model>/metadata")
def metadata(model):
    served = app_state().get(model)
    spec = served.model.input_spec
    inputs = {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}} if served.kind == "text" \
        else {"input": {"dtype": "DT_UINT8", "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(spec.size)}]}}}
    outputs = {"probabilities": {"dtype": "DT_FLOAT", "tensor_shape": {
        "dim": [{"size": "-1"}, {"size": str(served.model.n_classes)}]}},
        "class_index": {"dtype": "DT_INT64", "tensor_shape": {"dim": [{"size": "-1"}]}},
        "label": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}}
    return jsonify({"model_spec": {"name": served.name, "signature_name": "", "version": VERSION},
                    "metadata": {"signature_def": {"signature_def": {"serving_default": {
                        "inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}}}}})


def _instance_row(served: ServedModel, inst, i: int) -> np.ndarray:
    where = f"instance {i}"
    spec = served.model.input_spec
    if isinstance(inst, dict):
        if set(inst) == {"b64"} and isinstance(inst["b64"], str):
            if served.kind != "image":
                raise ApiError(400, f"{where}: {{\"b64\": ...}} images are for image models; "
                                    f"model {served.name!r} takes {served.kind}")
            try:
                data = base64.b64decode(inst["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, f"{where}: 'b64' is not valid base64") from None
            try:
                return image_input(served, decode_image(data))[0]
            except ImageError as exc:
                raise ApiError(400, f"{where}: {exc}") from None
        if len(inst) == 1:
            (inst,) = inst.values()
            if isinstance(inst, dict):
                raise ApiError(400, f"{where}: nested objects are not an input")
        else:
            raise ApiError(400, f"{where}: an object instance must have one key (the input), got {sorted(inst)}")
    if isinstance(inst, str):
        if served.kind != "text":
            raise ApiError(400, f"{where}: a string instance is text; model {served.name!r} takes "
                                f"{served.kind} (use {{\"b64\": ...}} for an encoded image)")
        return text_inputs(served, [decode_text(inst, what=where)])[0]
    if not isinstance(inst, list):
        raise ApiError(400, f"{where}: expected a list of numbers, a string or {{\"b64\": ...}}, "
                            f"got {type(inst).__name__}")
    arr = numeric_array(inst, f"{where}: not a regular array", f"{where}: values must be numbers")
    if arr.size != spec.size or not (arr.ndim == 1 or (spec.kind == "image" and arr.shape == (spec.height, spec.width))):
        shapes = f"{spec.size} values" + (f" or {spec.height}x{spec.width} rows" if spec.kind == "image" else "")
        raise ApiError(400, f"{where}: shape {list(arr.shape)}, expected {shapes}")
    arr = arr.reshape(-1)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ApiError(400, f"{where}: contains NaN or infinite values")
        return spec.quantize(arr)
    if arr.min() < 0 or arr.max() > 255:
        raise ApiError(400, f"{where}: integer values must be in [0, 255] (use floats for real values)")
    return arr.astype(np.uint8)


@bp.post("/v1/models/<name:model>:predict")
@bp.post("/v1/models/<name:model>/versions/<name:version>:predict")
def predict(model, version=None):
    served = app_state().get(model)
    if version is not None and version != VERSION:
        raise ApiError(404, f"unknown version {version!r} of model {model!r}; this server has version {VERSION}")
    body = read_body()
    if not body:
        raise ApiError(400, 'the request body is empty: send {"instances": [...]}')
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(400, 'request must be a JSON object {"instances": [...]}')
    sig = payload.get("signature_name", "serving_default")
    if sig not in ("serving_default", "", None):
        raise ApiError(400, f"unknown signature_name {sig!r}; only serving_default")
    unknown = set(payload) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise ApiError(400, f"unknown request keys {sorted(unknown)}; send 'instances' or 'inputs'")
    if ("instances" in payload) == ("inputs" in payload):
        raise ApiError(400, "send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    rows = payload.get("instances", payload.get("inputs"))
    if isinstance(rows, dict) and len(rows) == 1:
        (rows,) = rows.values()
    if not isinstance(rows, list):
        raise ApiError(400, "'instances' must be a list")
    if rows and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rows):
        rows = [rows]  # one flat vector given as the columnar input
    check_batch(len(rows))
    out = []
    for i, inst in enumerate(rows):
        out.append(_instance_row(served, inst, i))
        check_time(f"instance {i}")
    q = np.stack(out)
    return jsonify({"predictions": [p.to_dict() for p in infer_batch(served, q)]})
