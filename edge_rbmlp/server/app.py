"""The Flask application factory: ``create_app(config)``.

Everything an app needs lives on the app (``app.extensions["edge_rbmlp"]``,
``app.config``): two apps in one process share nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Optional

from flask import Flask, request, send_from_directory
from flask.json.provider import DefaultJSONProvider

from .config import ServerConfig
from .errors import ApiError, register_error_handlers
from .guard import RELEASE, Activity, CappedInput, Deadline, MemoryBudget, release_request_memory
from .metrics import Metrics, label_model
from .state import EXTENSION, AppState, load_served_models

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# reachable without the API token: probes and the page itself (it asks for the token)
OPEN_ENDPOINTS = {"ops.healthz", "v2.live", "v2.ready", "index", "web_asset"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", CSP),
                    ("Referrer-Policy", "no-referrer"))


def _orjson():
    try:
        import orjson
    except ImportError:  # a platform without its wheel: the standard library's encoder, same values
        return None
    return orjson


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON (compact, keys in insertion order, non-ASCII kept), encoded by orjson where it
    is installed (a dependency on Linux x86_64, aarch64 and armv7l), else by the standard library's
    encoder built once instead of per response.

    orjson prints a float's shortest round-trip digits like ``repr`` (``json.loads`` gives the same
    number; only the exponent's form differs: ``7.9e-7`` for ``7.9e-07``), and about 9x cheaper: the
    ten probabilities and five timings of a digit answer cost the standard encoder about as much as
    decoding the PNG (176k against 19k instructions per answer, callgrind). What orjson does not take
    the standard encoder answers, the same way: integers beyond 64 bits and the types Flask's
    ``default`` handles (dates, dataclasses, UUIDs; numpy goes as lists and numbers either way).
    NaN and infinities, which no answer of the service carries, are ``null`` with orjson (valid
    JSON) and ``NaN``/``Infinity`` with the standard encoder."""

    sort_keys = False
    ensure_ascii = False
    compact = True

    def __init__(self, app):
        super().__init__(app)
        self._std_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=self._default).encode
        orjson = _orjson()
        self.encoder = "orjson" if orjson is not None else "json"
        if orjson is not None:
            options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            dumps, failed = orjson.dumps, orjson.JSONEncodeError

            def to_bytes(obj) -> bytes:
                try:
                    return dumps(obj, default=self._orjson_default, option=options)
                except failed:  # a big integer or a type only Flask's default knows
                    return self._std_encode(obj).encode("utf-8")

            self.dumps_bytes = to_bytes
        else:
            self.dumps_bytes = lambda obj: self._std_encode(obj).encode("utf-8")

    def _default(self, o):
        """numpy arrays and scalars as lists and numbers (engines answer in numpy); else Flask's."""
        if type(o).__module__ == "numpy" and hasattr(o, "tolist"):
            return o.tolist()
        return self.default(o)

    def _orjson_default(self, o):
        if type(o).__module__ == "numpy" and hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError  # the standard encoder takes the whole object (Flask's default, same output)

    def dumps(self, obj, **kwargs) -> str:
        return super().dumps(obj, **kwargs) if kwargs else self.dumps_bytes(obj).decode("utf-8")

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self.dumps_bytes(obj) + b"\n", mimetype=self.mimetype)


STATE_CHANGING = frozenset(("POST", "PUT", "DELETE", "PATCH"))
LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1", "localhost."))


def _split_host(value: str) -> str:
    """``Host``/``Origin`` authority -> the host name, lower case, without the port and brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def close_after(environ, headers) -> None:
    """Close the connection after this answer: waitress's own hook (PEP 3333 forbids an app the
    Connection header; serve.py's channel gives one), else the header (granian passes it to hyper)."""
    close = environ.get("edge_rbmlp.close")
    if close is not None:
        close()
    else:
        headers.append(("Connection", "close"))


def _answer(environ, start_response, status: str, message: str, close: bool = False):
    body = json.dumps({"error": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *SECURITY_HEADERS]
    if close:
        close_after(environ, headers)
    start_response(status, headers)
    return [body]


def front(wsgi_app, limit: int, config: Optional[ServerConfig] = None, activity=None):
    """What every request meets before Flask, whatever the HTTP server:

    * requests a proxy could read differently are refused with the connection closed: both
      ``Content-Length`` and ``Transfer-Encoding`` (request smuggling), HTTP/1.1 without ``Host``;
    * a body declared larger than ``limit`` is refused (413, connection closed) before a byte of
      it is read;
    * bound to loopback without a token, a ``Host`` other than a loopback name or the configured
      host is refused (403): a page on another site must not reach the service through a DNS name
      it rebinds to 127.0.0.1;
    * state-changing methods from another site (``Sec-Fetch-Site: cross-site``/``same-site``, or an
      ``Origin`` that is not this host) are refused (403): a form on a page the user visits must
      not classify or publish;
    * a ``Content-Encoding`` other than identity is refused (415): bodies are read as sent;
    * every answer gets the security headers (in the WSGI header list: cheaper than werkzeug's).
    """
    too_large = json.dumps({"error": f"request body is larger than the {limit} byte limit"}).encode()
    too_large_headers = [("Content-Type", "application/json"), ("Content-Length", str(len(too_large))),
                         *SECURITY_HEADERS]
    names = [(name.lower(), name, value) for name, value in SECURITY_HEADERS]
    check_host = config is not None and config.is_loopback and not config.token
    allowed_hosts = set(LOOPBACK_NAMES)
    if config is not None:
        allowed_hosts.add(_split_host(config.host))
    timeout = config.limits.request_timeout_s if config is not None else None

    def app(environ, start_response):
        length = environ.get("CONTENT_LENGTH")
        if environ.get("HTTP_TRANSFER_ENCODING") and length:
            return _answer(environ, start_response, "400 Bad Request", "a request must not have both Content-Length and "
                           "Transfer-Encoding", close=True)
        host = environ.get("HTTP_HOST")
        if not host and environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
            return _answer(environ, start_response, "400 Bad Request", "an HTTP/1.1 request needs a Host header", close=True)
        if length and len(length) >= len(str(limit)) and length.isdigit() and int(length) > limit:
            headers = list(too_large_headers)
            close_after(environ, headers)
            start_response("413 Request Entity Too Large", headers)
            return [too_large]
        if check_host and host and _split_host(host) not in allowed_hosts:
            return _answer(environ, start_response, "403 Forbidden", f"Host {host[:100]!r} is not this service: without an "
                           f"API token it answers loopback names only (DNS rebinding); use http://127.0.0.1/ or "
                           f"set a token")
        if environ.get("REQUEST_METHOD") in STATE_CHANGING:
            site = environ.get("HTTP_SEC_FETCH_SITE", "").lower()
            origin = environ.get("HTTP_ORIGIN")
            if site in ("cross-site", "same-site") or (
                    origin is not None and (origin == "null" or origin.split("//", 1)[-1].lower() != (host or "").lower())):
                return _answer(environ, start_response, "403 Forbidden", "cross-origin requests may not change or classify "
                               "anything here (Origin/Sec-Fetch-Site of another site)")
        encoding = environ.get("HTTP_CONTENT_ENCODING")
        if encoding and encoding.strip().lower() != "identity":
            return _answer(environ, start_response, "415 Unsupported Media Type",
                           f"Content-Encoding {encoding[:40]!r} is not supported; send the body uncompressed",
                           close=bool(length or environ.get("HTTP_TRANSFER_ENCODING")))
        if not length and "wsgi.input" in environ:
            environ["wsgi.input"] = CappedInput(environ["wsgi.input"], limit)

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            for lower, name, value in names:
                if lower not in present:
                    headers.append((name, value))
            if status[:3] == "413":  # while reading a chunked body: the rest of it is not read
                close_after(environ, headers)
            return start_response(status, headers, exc_info)

        if activity is None:
            try:
                return wsgi_app(environ, start)
            finally:
                if RELEASE in environ:
                    release_request_memory(environ)
        key = object()
        started = activity.begin(key)
        if timeout:
            environ["edge_rbmlp.deadline"] = Deadline(timeout, started)
        try:
            return wsgi_app(environ, start)
        finally:
            if RELEASE in environ:  # what its JSON held of the memory budget (the answer is made)
                release_request_memory(environ)
            activity.end(key)

    return app

log = logging.getLogger("edge_rbmlp.server")


def create_app(config: Optional[ServerConfig] = None, served=None, activity: Optional[Activity] = None,
               fast_path: bool = True) -> Flask:
    """Build the service for ``config`` (models loaded now; errors surface here, not per request).

    ``served`` (name -> ServedModel) replaces loading, for tests and embedding; ``activity`` is
    what the workers' supervisor watches (a private one when None); ``fast_path``: the two hot
    routes' plain requests answered without Flask's request context (fastpath.py; False: every
    request through Flask, the same answers).
    """
    config = config or ServerConfig()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.limits.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.limits.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.json = FastJSONProvider(app)
    app.config["EDGE_RBMLP"] = config
    models = served if served is not None else load_served_models(config)
    state = AppState(config=config, models=models, metrics=None)
    state.budget = MemoryBudget(config.limits.max_decode_bytes)
    state.activity = activity if activity is not None else Activity()
    state.metrics = Metrics(lambda: state)
    app.extensions[EXTENSION] = state

    from werkzeug.routing import BaseConverter

    class NameConverter(BaseConverter):
        """A model name or version: no '/' and no ':' (so ``/v1/models/m:predict`` is not model ``m:predict``)."""
        regex = r"[^/:]+"

    app.url_map.converters["name"] = NameConverter

    from . import api_classify, api_ops, api_readers, api_tfserving, api_v2

    for bp in (api_classify.bp, api_v2.bp, api_tfserving.bp, api_ops.bp, api_readers.bp):
        app.register_blueprint(bp)

    @app.get("/")
    def index():
        resp = send_from_directory(WEB_DIR, "index.html", max_age=0)
        return resp

    @app.get("/web/<path:filename>")
    def web_asset(filename):
        return send_from_directory(WEB_DIR, filename, max_age=0)

    register_error_handlers(app)

    def _authorize():
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        given = ""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif "X-API-Token" in request.headers:
            given = request.headers["X-API-Token"].strip()
        if not hmac.compare_digest(given.encode("utf-8"), config.token.encode("utf-8")):
            raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <token>')",
                           {"WWW-Authenticate": 'Bearer realm="edge-rbmlp"'})
        return None

    if config.token:  # no token: nothing to check, no hook to call
        app.before_request(_authorize)

    account = state.metrics.request_accounting(lambda: state.models)

    @app.after_request
    def _account(resp):
        req = request._get_current_object()
        url_rule = req.url_rule
        account(url_rule.rule if url_rule is not None else "unmatched", req.view_args, req.method, resp.status_code)
        return resp

    if fast_path:
        from .fastpath import hot_routes

        app.wsgi_app = hot_routes(app.wsgi_app, state, account, app.json.dumps_bytes)
    app.wsgi_app = front(app.wsgi_app, config.limits.max_body_bytes, config, state.activity)
    if config.access_log:
        app.wsgi_app = access_log(app.wsgi_app)
    return app


ACCESS_LOGGER = "edge_rbmlp.access"


def access_log(wsgi_app, logger: Optional[logging.Logger] = None):
    """One INFO line per request on ``edge_rbmlp.access``: client, method and path (escaped and cut
    at 200 characters: the log is not a channel for a client), status, answer bytes, milliseconds.
    Outermost, so refusals of :func:`front` are logged too. Gets a stderr handler of its own when
    nothing configured logging (``serve`` with one worker)."""
    import time

    log = logger or logging.getLogger(ACCESS_LOGGER)
    if logger is None:
        log.setLevel(logging.INFO)  # asked for: shown whatever the root logger's level
        if not log.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
            log.propagate = False

    def show(text: str) -> str:  # no spaces, quotes or control characters of the client's in a line
        return text[:200].encode("unicode_escape").decode("ascii").replace(" ", "\\x20").replace('"', "\\x22")

    def app(environ, start_response):
        t0 = time.perf_counter()
        status = ["-"]

        def recording_start_response(s, headers, exc_info=None):
            status[0] = s.split(" ", 1)[0]
            return start_response(s, headers, exc_info)

        body = wsgi_app(environ, recording_start_response)
        try:  # every answer of this service is small: joined here, so the line has its size and time
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        query = environ.get("QUERY_STRING")
        path = environ.get("PATH_INFO", "") + ("?" + query if query else "")
        log.info('%s "%s %s" %s %d %.2f ms', environ.get("REMOTE_ADDR", "-"), show(environ.get("REQUEST_METHOD", "-")),
                 show(path), status[0], len(data), (time.perf_counter() - t0) * 1e3)
        return [data]

    return app
