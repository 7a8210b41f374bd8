"""The hot routes' plain requests without Flask's request context.

``POST /classify/<model>`` with an image body (an image model) or a text body (``text/plain``
or a sniffed type, a text model) is what a device answers all day. Flask's request and
application contexts, URL adapter, signals and response object cost about as much per request as
the whole classification of a digit, so these requests are answered here, inside
:func:`~.app.front` (every limit, host and cross-site check, the deadline and the security
headers apply as before), with the same functions the Flask view calls and the same answer:
status, headers, JSON body and metrics. Everything else goes to Flask, before a byte is read:
another method or route, an unknown model, a body without Content-Length, multipart or JSON
bodies, a wrong or missing API token (Flask answers the 401), a content type the model does not
take (Flask answers the 415). An unexpected exception is left to Flask too (it logs it and
answers 500; the body read here is the one it reads). ``create_app(..., fast_path=False)``
sends every request through Flask (tests compare the two).
"""

from __future__ import annotations

import hmac

from werkzeug.http import HTTP_STATUS_CODES

from ..image import ImageError
from ..inputs import InputSpecError
from ..text import TextError
from .api_classify import answer, charset_ok
from .errors import ApiError
from .infer import BODY, IMAGE_TYPES, NFKC_CHARS, SNIFFED_TYPES, classify_image, classify_text, content_type, decode_text

PREFIX = "/classify/"
RULE = "/classify/<model>"  # the Flask rule these requests belong to (the metrics' route label)
IMAGE_BODIES = frozenset(IMAGE_TYPES) | frozenset(SNIFFED_TYPES)
TEXT_BODIES = frozenset(SNIFFED_TYPES)  # and text/plain in a charset the service reads
STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}  # werkzeug's


def authorized(environ, token: bytes) -> bool:
    """The Flask app's token check (app._authorize) on the WSGI environ."""
    given = ""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    elif "HTTP_X_API_TOKEN" in environ:
        given = environ["HTTP_X_API_TOKEN"].strip()
    return hmac.compare_digest(given.encode("utf-8"), token)


def hot_routes(flask_app, state, account, encode):
    """WSGI app: the hot routes' plain requests answered here, the rest by ``flask_app``.
    ``account(rule, view_args, method, status)`` counts an answer as Flask's after-request hook
    does; ``encode``: the app's JSON encoder to bytes (its provider's ``dumps_bytes``)."""
    token = state.config.token.encode("utf-8") if state.config.token else None

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(PREFIX):
            return flask_app(environ, start_response)
        name = path[len(PREFIX):]
        served = state.models.get(name)
        length = environ.get("CONTENT_LENGTH")
        if served is None or not length or not length.isdigit():
            return flask_app(environ, start_response)
        if token is not None and not authorized(environ, token):
            return flask_app(environ, start_response)
        mtype, params = content_type(environ.get("CONTENT_TYPE", ""))
        kind = served.kind
        if kind == "image":
            if mtype not in IMAGE_BODIES:
                return flask_app(environ, start_response)
        elif kind != "text" or not (mtype in TEXT_BODIES or (mtype == "text/plain" and charset_ok(params))):
            return flask_app(environ, start_response)
        body = environ[BODY] = environ["wsgi.input"].read(int(length))
        extra_headers = ()
        try:
            if kind == "image":
                pred = classify_image(served, body, state, environ)
            else:
                pred = classify_text(served, decode_text(body, "text", state, environ), state)
            status, payload = 200, answer(served, pred)
        except ApiError as exc:
            status, payload, extra_headers = exc.status, {"error": exc.message, **exc.extra}, exc.headers.items()
        except (ImageError, TextError, InputSpecError) as exc:
            status, payload = 400, {"error": str(exc)}
        except Exception:  # a bug: Flask's handler logs it with its traceback and answers 500
            environ.pop(NFKC_CHARS, None)
            return flask_app(environ, start_response)
        data = encode(payload) + b"\n"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *extra_headers]
        account(RULE, {"model": name}, "POST", status)
        start_response(STATUS_LINES.get(status) or f"{status} UNKNOWN", headers)
        return [data]

    return app
