"""The OpenAPI 3.0 description of every route (served at ``/openapi.json``)."""

from __future__ import annotations

from .. import __version__

ERROR = {"$ref": "#/components/responses/Error"}


def _errors(*codes):
    return {str(c): ERROR for c in codes}


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def openapi_spec(state) -> dict:
    names = state.model_names()
    model_param = {"name": "model", "in": "path", "required": True, "description": "a served model",
                   "schema": {"type": "string", "enum": names} if names else {"type": "string"}}
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 4},
        "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                                "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]},
        "data": {"type": "array", "items": {}},
        "parameters": {"type": "object"}}}
    prediction = {"type": "object", "required": ["label", "class_index", "probabilities"], "properties": {
        "label": {"type": "string"}, "class_index": {"type": "integer"},
        "probabilities": {"type": "array", "items": {"type": "number"}}}}
    # latency_us = total_us: decode + preprocess + inference (the split a user sees on the page)
    timing = {k: {"type": "number"} for k in ("latency_us", "decode_us", "preprocess_us", "inference_us", "total_us")}
    classify_result = {"type": "object", "required": ["model", "label", "class_index", "probabilities",
                                                      *timing, "backend", "kernel"],
                       "properties": {"model": {"type": "string"}, "label": {"type": "string"},
                                      "class_index": {"type": "integer"},
                                      "probabilities": {"type": "array", "items": {"type": "number"}},
                                      **timing, "backend": {"type": "string"},
                                      "kernel": {"type": "string"}}}
    binary = {"schema": {"type": "string", "format": "binary"}}
    ok_json = lambda desc, schema=None: {"description": desc, **_json(schema or {"type": "object"})}  # noqa: E731
    paths = {
        "/classify/{model}": {"post": {
            "summary": "Classify one image (image models) or one text (text models)",
            "description": "Image models take PNG/JPEG/PGM/BMP bytes (any size, colour or grey; the digit is found, "
                           "cropped and centred like MNIST) or a multipart upload. Text models take text/plain, "
                           "JSON {\"text\": ...} or a multipart 'text' field. `curl --data-binary @seven.png "
                           "URL/classify/mnist` works.",
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {
                "image/png": binary, "image/jpeg": binary, "image/x-portable-graymap": binary, "image/bmp": binary,
                "application/octet-stream": binary,
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object", "required": ["text"],
                                                "properties": {"text": {"type": "string"}}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}, "text": {"type": "string"}}}}}},
            "responses": {"200": ok_json("the prediction", classify_result), **_errors(400, 401, 404, 413, 415, 422)}}},
        "/v2": {"get": {"summary": "Open Inference Protocol: server metadata",
                        "responses": {"200": ok_json("server metadata"), **_errors(401)}}},
        "/v2/health/live": {"get": {"summary": "Open Inference Protocol: liveness",
                                    "responses": {"200": ok_json("live")}}},
        "/v2/health/ready": {"get": {"summary": "Open Inference Protocol: readiness",
                                     "responses": {"200": ok_json("ready"), "503": ok_json("not ready")}}},
        "/v2/models/{model}": {"get": {"summary": "Open Inference Protocol: model metadata",
                                       "parameters": [model_param],
                                       "responses": {"200": ok_json("model metadata"), **_errors(401, 404)}}},
        "/v2/models/{model}/ready": {"get": {"summary": "Open Inference Protocol: model readiness",
                                             "parameters": [model_param],
                                             "responses": {"200": ok_json("ready"), **_errors(401, 404)}}},
        "/v2/models/{model}/infer": {"post": {
            "summary": "Open Inference Protocol: inference (JSON tensors or the binary tensor data extension)",
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
                    "id": {"type": "string"}, "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
                    "outputs": {"type": "array", "maxItems": 3, "uniqueItems": True, "items": {
                        "type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "enum": ["probabilities", "class_index", "label"]},
                        "parameters": {"type": "object"}}}}}}},
                "application/octet-stream": binary}},
            "responses": {"200": ok_json("outputs probabilities (FP32), class_index (INT64), label (BYTES)", {
                "type": "object", "required": ["model_name", "outputs"], "properties": {
                    "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                    "outputs": {"type": "array", "items": tensor}}}), **_errors(400, 401, 404, 413, 415)}}},
        "/v1/models/{model}": {"get": {"summary": "TensorFlow Serving: model status", "parameters": [model_param],
                                       "responses": {"200": ok_json("status"), **_errors(401, 404)}}},
        "/v1/models/{model}/metadata": {"get": {"summary": "TensorFlow Serving: model metadata",
                                                "parameters": [model_param],
                                                "responses": {"200": ok_json("metadata"), **_errors(401, 404)}}},
        "/v1/models/{model}:predict": {"post": {
            "summary": "TensorFlow Serving: predict",
            "description": "Row format {\"instances\": [...]} or columnar {\"inputs\": ...}. Instances are strings "
                           "(text models), {\"b64\": base64 image} or pixel lists (image models).",
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "signature_name": {"type": "string"}, "instances": {"type": "array", "items": {}, "minItems": 1},
                "inputs": {}}}}}},
            "responses": {"200": ok_json("predictions", {"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "array", "items": prediction}}}), **_errors(400, 401, 404, 413)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(401)}}},
        "/openapi.json": {"get": {"summary": "This description", "responses": {"200": ok_json("OpenAPI 3.0"),
                                                                             **_errors(401)}}},
        "/healthz": {"get": {"summary": "Liveness for process supervisors", "responses": {"200": ok_json("ok")}}},
        "/api/status": {"get": {"summary": "Models, recent latencies, memory, camera (the page's live panel)",
                                "responses": {"200": ok_json("status"), **_errors(401)}}},
        "/api/camera": {"get": {"summary": "The camera's state and latest prediction",
                                "responses": {"200": ok_json("camera"), **_errors(401)}}},
        "/api/camera/frame.png": {"get": {"summary": "The latest camera frame (downscaled)", "responses": {
            "200": {"description": "PNG", "content": {"image/png": binary}}, **_errors(401, 404)}}},
        "/api/camera/input.png": {"get": {"summary": "What the model saw of the latest frame (28x28)", "responses": {
            "200": {"description": "PNG", "content": {"image/png": binary}}, **_errors(401, 404)}}},
        "/api/readers": {"get": {"summary": "The latest reading of every [[readers]] entry (value, digits, "
                                            "confidence, valid/reason), the frame size and the MQTT status",
                                 "responses": {"200": ok_json("readers"), **_errors(401)}}},
        "/api/readers/frame.png": {"get": {
            "summary": "The latest reader frame, full size, with the ROI boxes drawn (boxes=0: without)",
            "parameters": [{"name": "boxes", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}}],
            "responses": {"200": {"description": "PNG", "content": {"image/png": binary}}, **_errors(400, 401, 404)}}},
        "/api/camera/publish/{model}": {"post": {
            "summary": "Publish a camera frame (from `edge-rbmlp camera --publish`); kept in memory only",
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {"image/png": binary, "image/jpeg": binary,
                                                          "application/octet-stream": binary}},
            "responses": {"200": ok_json("the frame's prediction"), **_errors(400, 401, 404, 413)}}},
        "/": {"get": {"summary": "The web page", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "edge-rbmlp", "version": __version__,
                 "description": "Residual binary MLP classifiers on small devices: a simple classify API, the Open "
                                "Inference Protocol (KServe v2) and TensorFlow Serving's REST API."},
        "paths": paths,
        "components": {"responses": {"Error": {"description": "what was wrong", **_json({
            "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}})}}},
    }
    # the bearer scheme is always declared; it is required when the service has a token ({} = none)
    spec["components"]["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "Authorization: Bearer <token> (or X-API-Token); required when the service has a token"}}
    spec["security"] = [{"bearer": []}] if state.config.token else [{}, {"bearer": []}]
    for path in ("/healthz", "/v2/health/live", "/v2/health/ready", "/"):
        spec["paths"][path]["get"]["security"] = []
    return spec
