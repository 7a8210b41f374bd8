"""The Open Inference Protocol (KServe v2 / Triton) REST API, including the binary
tensor data extension that ``tritonclient[http]`` uses by default.

Inputs (exactly one tensor per request):

* image/vector models: a numeric tensor of shape ``[n]``, ``[batch, n]``, ``[h, w]`` or
  ``[batch, h, w]``. ``UINT8`` (and other integer types, values 0-255) are the
  model's input as it is (pixels); ``FP16/FP32/FP64`` are real values (pixels in
  [0, 1]) quantized by the model's input scale; ``BOOL`` is 0/1. ``BYTES``
  elements are encoded image files (PNG, JPEG, ...; base64 strings in JSON, raw
  with the binary extension), preprocessed like ``/classify``.
* text models: ``BYTES`` of shape ``[batch]`` or ``[batch, 1]``, UTF-8 reviews;
  or a numeric multi-hot tensor ``[batch, vocab]``.

Outputs: ``probabilities`` (FP32 ``[batch, classes]``), ``class_index`` (INT64
``[batch]``) and ``label`` (BYTES ``[batch]``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import List, Optional, Tuple

import numpy as np
from flask import Blueprint, Response, jsonify, request

from .. import __version__
from ..image import ImageError
from .errors import ApiError
from .infer import (check_batch, check_time, decode_image, decode_text, image_input, infer_batch, numeric_array,
                    parse_json, read_body, text_inputs)
from .state import ServedModel, app_state

bp = Blueprint("v2", __name__)

DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
OUTPUTS = ("probabilities", "class_index", "label")
HEADER_LENGTH = "Inference-Header-Content-Length"
VERSION = "1"


def _input_name(served: ServedModel) -> str:
    return "text" if served.kind == "text" else "input"


def model_metadata(served: ServedModel) -> dict:
    spec = served.model.input_spec
    if served.kind == "text":
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    elif served.kind == "image":
        inputs = [{"name": "input", "datatype": "UINT8", "shape": [-1, spec.size]}]
    else:
        inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, spec.size]}]
    n = served.model.n_classes
    return {
        "name": served.name, "versions": [VERSION], "platform": "edge-rbmlp",
        "inputs": inputs,
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, n]},
                    {"name": "class_index", "datatype": "INT64", "shape": [-1]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}],
        "parameters": {"arch": served.summary["arch"], "labels": list(served.model.labels),
                       "input_kind": served.kind, "backend": served.engine.name, "kernel": served.engine.kernel,
                       "file_bytes": served.summary["file_bytes"], "paper_kib": served.summary["paper_kib"]},
    }


def _check_version(version: Optional[str]) -> None:
    if version is not None and version != VERSION:
        raise ApiError(404, f"unknown model version {version!r}; this server has version {VERSION!r} only")


@bp.get("/v2")
def server_metadata():
    return jsonify({"name": "edge-rbmlp", "version": __version__, "extensions": ["binary_tensor_data"]})


@bp.get("/v2/health/live")
def live():
    return jsonify({"live": True})


@bp.get("/v2/health/ready")
def ready():
    state = app_state()
    ok = state.ready and bool(state.models)
    resp = jsonify({"ready": ok})
    resp.status_code = 200 if ok else 503
    return resp


@bp.get("/v2/models/<model>")
@bp.get("/v2/models/<model>/versions/<version>")
def metadata(model, version=None):
    _check_version(version)
    return jsonify(model_metadata(app_state().get(model)))


@bp.get("/v2/models/<model>/ready")
@bp.get("/v2/models/<model>/versions/<version>/ready")
def model_ready(model, version=None):
    _check_version(version)
    served = app_state().get(model)
    return jsonify({"name": served.name, "ready": True})


# -- infer ------------------------------------------------------------------------------------------
def _split_body() -> Tuple[dict, bytes]:
    body = read_body()
    header_len = request.headers.get(HEADER_LENGTH)
    if header_len is not None:
        if not header_len.strip().isdigit() or len(header_len.strip()) > 12:
            raise ApiError(400, f"{HEADER_LENGTH} must be a non-negative integer, got {header_len[:40]!r}")
        n = int(header_len)
        if not 0 <= n <= len(body):
            raise ApiError(400, f"{HEADER_LENGTH} is {n} but the body has {len(body)} bytes")
        header, binary = body[:n], body[n:]
    else:
        header, binary = body, b""
    if not header:
        raise ApiError(400, 'the request body is empty: send {"inputs": [...]}')
    payload = parse_json(header)
    if not isinstance(payload, dict):
        raise ApiError(400, 'request must be a JSON object {"inputs": [...]}')
    return payload, binary


def _shape(value, where: str) -> List[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise ApiError(400, f"{where}: 'shape' must be a list of integers")
    if not 1 <= len(value) <= 4 or any(d < 0 for d in value):
        raise ApiError(400, f"{where}: 'shape' {value} must have 1 to 4 non-negative dimensions")
    return value


def _count(shape: List[int]) -> int:
    """The number of elements of ``shape``: exact (Python integers; np.prod wraps at 2**63)."""
    return math.prod(shape)


def _bytes_elements(raw: bytes, where: str, limit: int) -> List[bytes]:
    out, i = [], 0
    while i < len(raw):
        if len(out) >= limit:
            raise ApiError(400, f"{where}: more BYTES elements than shape needs ({limit})")
        if i + 4 > len(raw):
            raise ApiError(400, f"{where}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise ApiError(400, f"{where}: BYTES element of {n} bytes runs past the end of the data")
        out.append(raw[i: i + n])
        i += n
    return out


def _take_binary(spec: dict, binary: bytes, offset: int, where: str) -> Tuple[Optional[bytes], int]:
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, f"{where}: 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is None:
        return None, offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
        raise ApiError(400, f"{where}: binary_data_size {size!r} does not fit the {len(binary) - offset} "
                            f"binary bytes left")
    return binary[offset: offset + size], offset + size


def _numeric_input(served: ServedModel, dtype_name: str, shape: List[int], data, raw: Optional[bytes],
                   where: str) -> np.ndarray:
    np_dtype = np.dtype(DTYPES[dtype_name])
    count = _count(shape)
    n = served.model.input_spec.size
    limit = app_state().config.limits.max_batch
    if count > n * limit:
        raise ApiError(413, f"{where}: shape {shape} is {count} values, more than a batch of {limit} inputs "
                            f"of {n} values (limits.max_batch)")
    if count == 0:
        raise ApiError(400, f"{where}: shape {shape} holds no values")
    if raw is not None:
        if len(raw) != count * np_dtype.itemsize:
            raise ApiError(400, f"{where}: {len(raw)} binary bytes for shape {shape} of {dtype_name} "
                                f"({count * np_dtype.itemsize} expected)")
        arr = np.frombuffer(raw, dtype=np_dtype.newbyteorder("<"))
    else:
        if data is None:
            raise ApiError(400, f"{where}: 'data' is missing")
        if isinstance(data, list) and not data:
            raise ApiError(400, f"{where}: 'data' is empty but shape {shape} needs {count} values")
        loose = numeric_array(data, f"{where}: 'data' is not a regular array",
                              f"{where}: 'data' must hold numbers for datatype {dtype_name}")
        if np_dtype.kind in "iu" and loose.dtype.kind == "f":
            raise ApiError(400, f"{where}: datatype {dtype_name} needs integers, got floating-point values")
        if np_dtype.kind == "b" and loose.dtype.kind != "b":
            raise ApiError(400, f"{where}: datatype BOOL needs true/false values")
        if loose.size != count:
            raise ApiError(400, f"{where}: 'data' has {loose.size} values but shape {shape} needs {count}")
        arr = loose.reshape(-1)
    spec = served.model.input_spec
    if count % n != 0 or count == 0:
        hint = f" or [batch, {spec.height}, {spec.width}]" if spec.kind == "image" else ""
        raise ApiError(400, f"{where}: shape {shape} does not hold whole inputs of {n} values "
                            f"(use [{n}] or [batch, {n}]{hint})")
    if len(shape) >= 2 and shape[-1] != n and not (spec.kind == "image" and shape[-2:] == [spec.height, spec.width]):
        raise ApiError(400, f"{where}: last dimension {shape[-1]} is not the model's input size {n}")
    batch = count // n
    check_batch(batch)
    arr = arr.reshape(batch, n)
    if np_dtype.kind == "f":
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ApiError(400, f"{where}: contains NaN or infinite values")
        return spec.quantize(arr)
    if np_dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ApiError(400, f"{where}: integer values must be in [0, 255] (the model's uint8 input), "
                            f"got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8)


def _flatten_strings(data: list, limit: int, where: str) -> list:
    """Nested lists of strings -> the strings in order, in linear time; stops at more than
    ``limit`` (the shape's element count, checked against the batch limit already)."""
    flat = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= 8:
                    raise ApiError(400, f"{where}: BYTES 'data' nests deeper than the shape allows")
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise ApiError(400, f"{where}: BYTES 'data' must hold strings, got {type(item).__name__}")
            flat.append(item)
            if len(flat) > limit:
                raise ApiError(400, f"{where}: more BYTES elements than shape needs ({limit})")
        else:
            stack.pop()
    return flat


def _bytes_input(served: ServedModel, shape: List[int], data, raw: Optional[bytes], where: str) -> np.ndarray:
    if len(shape) == 2 and shape[1] != 1 or len(shape) > 2:
        raise ApiError(400, f"{where}: BYTES input must have shape [batch] or [batch, 1], got {shape}")
    count = _count(shape)
    check_batch(count)
    if raw is not None:
        elements = _bytes_elements(raw, where, count)
    else:
        if not isinstance(data, list):
            raise ApiError(400, f"{where}: 'data' must be a list of strings for BYTES")
        elements = _flatten_strings(data, count, where)
    if len(elements) != count:
        raise ApiError(400, f"{where}: {len(elements)} BYTES elements but shape {shape} needs {count}")
    check_batch(len(elements))
    if served.kind == "text":
        texts = [decode_text(e, what=f"{where} element {i}") for i, e in enumerate(elements)]
        return text_inputs(served, texts)
    if served.kind == "image":
        rows = []
        for i, e in enumerate(elements):
            if isinstance(e, str):
                try:
                    e = base64.b64decode(e, validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, f"{where} element {i}: in JSON, BYTES images must be base64 strings") from None
            try:
                rows.append(image_input(served, decode_image(e))[0])
            except ImageError as exc:
                raise ApiError(400, f"{where} element {i}: {exc}") from None
            check_time(f"{where} element {i}")
        return np.stack(rows)
    raise ApiError(400, f"{where}: model {served.name!r} takes numeric vectors, not BYTES")


def _parse_inputs(served: ServedModel, payload: dict, binary: bytes) -> np.ndarray:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        raise ApiError(400, f"model {served.name!r} takes exactly one input tensor, got {len(inputs)}")
    spec = inputs[0]
    if not isinstance(spec, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in spec:
            raise ApiError(400, f"input is missing {key!r}")
    if not isinstance(spec["name"], str):
        raise ApiError(400, "input 'name' must be a string")
    where = f"input {spec['name']!r}"
    shape = _shape(spec["shape"], where)
    dtype = spec["datatype"]
    if not isinstance(dtype, str):
        raise ApiError(400, f"{where}: 'datatype' must be a string such as \"UINT8\" or \"BYTES\"")
    raw, offset = _take_binary(spec, binary, 0, where)
    if offset != len(binary):
        raise ApiError(400, f"{len(binary) - offset} binary bytes after the tensors are not claimed by any input")
    if raw is not None and "data" in spec:
        raise ApiError(400, f"{where}: give either 'data' or binary_data_size, not both")
    if dtype == "BYTES":
        return _bytes_input(served, shape, spec.get("data"), raw, where)
    if dtype not in DTYPES:
        raise ApiError(400, f"{where}: datatype {dtype!r} is not supported; use one of "
                            f"{', '.join(list(DTYPES) + ['BYTES'])}")
    return _numeric_input(served, dtype, shape, spec.get("data"), raw, where)


def _requested_outputs(payload: dict) -> List[Tuple[str, bool]]:
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be an object")
    default_binary = bool(params.get("binary_data_output", False))
    outputs = payload.get("outputs")
    if outputs is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(outputs, list):
        raise ApiError(400, "'outputs' must be a list of {\"name\": ...} objects")
    if len(outputs) > len(OUTPUTS):
        raise ApiError(400, f"'outputs' names {len(outputs)} outputs; there are {len(OUTPUTS)}: {', '.join(OUTPUTS)}")
    chosen = []
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise ApiError(400, "each requested output must be an object with a 'name'")
        if out["name"] not in OUTPUTS:
            raise ApiError(400, f"unknown output {out['name']!r}; outputs: {', '.join(OUTPUTS)}")
        oparams = out.get("parameters") or {}
        if not isinstance(oparams, dict):
            raise ApiError(400, f"output {out['name']!r}: 'parameters' must be an object")
        if any(out["name"] == name for name, _ in chosen):
            raise ApiError(400, f"output {out['name']!r} is requested twice")
        chosen.append((out["name"], bool(oparams.get("binary_data", default_binary))))
    return chosen


def _encode_bytes(items: List[str]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (s.encode("utf-8") for s in items))


@bp.post("/v2/models/<model>/infer")
@bp.post("/v2/models/<model>/versions/<version>/infer")
def infer(model, version=None):
    _check_version(version)
    served = app_state().get(model)
    payload, binary = _split_body()
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ApiError(400, "'id' must be a string")
    wanted = _requested_outputs(payload)
    q = _parse_inputs(served, payload, binary)
    preds = infer_batch(served, q)
    probs = np.array([p.probabilities for p in preds], dtype=np.float32)
    batch = len(preds)
    tensors = {
        "probabilities": ("FP32", [batch, probs.shape[1]], probs.astype(np.float32)),
        "class_index": ("INT64", [batch], np.array([p.class_index for p in preds], dtype=np.int64)),
        "label": ("BYTES", [batch], [p.label for p in preds]),
    }
    outputs, blobs = [], []
    for name, as_binary in wanted:
        dtype, shape, value = tensors[name]
        entry = {"name": name, "datatype": dtype, "shape": shape}
        if as_binary:
            blob = _encode_bytes(value) if dtype == "BYTES" else np.ascontiguousarray(value).astype(
                value.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = value if dtype == "BYTES" else value.reshape(-1).tolist()
        outputs.append(entry)
    body = {"model_name": served.name, "model_version": VERSION, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    header = json.dumps(body, separators=(",", ":")).encode("utf-8")
    if not blobs:
        return Response(header, mimetype="application/json")
    resp = Response(header + b"".join(blobs), mimetype="application/octet-stream")
    resp.headers[HEADER_LENGTH] = str(len(header))
    return resp
