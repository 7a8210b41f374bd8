"""Every error the service answers is JSON ``{"error": "..."}`` with a 4xx status
saying what was wrong (the shape both KServe v2 and TF Serving use)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..image import ImageError
from ..inputs import InputSpecError
from ..text import TextError

log = logging.getLogger("edge_rbmlp.server")


class ApiError(Exception):
    """An answer with ``status`` and ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, headers=None, extra=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def error_response(status: int, message: str, headers=None, extra=None):
    resp = jsonify({"error": message, **(extra or {})})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


_HTTP_MESSAGES = {
    404: "no such route (see /openapi.json for the API)",
    405: "method not allowed on this route",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers, exc.extra)

    @app.errorhandler(ImageError)
    @app.errorhandler(TextError)
    @app.errorhandler(InputSpecError)
    def _input_error(exc):
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = exc.code or 500
        if code == 413:
            if exc.description and exc.description != RequestEntityTooLarge.description:
                message = exc.description  # ours: guard.CappedInput's body limit
            else:  # werkzeug's multipart parser (Content-Length over the limit never reaches Flask)
                parts = app.config.get("MAX_FORM_PARTS") or 1000
                message = (f"the multipart form has more than {parts} parts, or a field larger than "
                           f"{app.config.get('MAX_FORM_MEMORY_SIZE')} bytes")
        else:
            message = _HTTP_MESSAGES.get(code) or exc.description or exc.name
        headers = {}
        if code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(code, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # a bug: logged with its traceback, answered without details
        log.exception("internal error")
        return error_response(500, "internal error (logged on the server)")
