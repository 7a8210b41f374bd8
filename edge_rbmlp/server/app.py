"""The Flask application factory: ``create_app(config)``.

Everything an app needs lives on the app (``app.extensions["edge_rbmlp"]``,
``app.config``): two apps in one process share nothing.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Optional

from flask import Flask, request, send_from_directory

from .config import ServerConfig
from .errors import ApiError, register_error_handlers
from .metrics import Metrics, label_model
from .state import EXTENSION, AppState, load_served_models

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# reachable without the API token: probes and the page itself (it asks for the token)
OPEN_ENDPOINTS = {"ops.healthz", "v2.live", "v2.ready", "index", "web_asset"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

log = logging.getLogger("edge_rbmlp.server")


def create_app(config: Optional[ServerConfig] = None, served=None) -> Flask:
    """Build the service for ``config`` (models loaded now; errors surface here, not per request).

    ``served`` (name -> ServedModel) replaces loading, for tests and embedding.
    """
    config = config or ServerConfig()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.limits.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.limits.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.config["EDGE_RBMLP"] = config
    models = served if served is not None else load_served_models(config)
    state = AppState(config=config, models=models, metrics=None)
    state.metrics = Metrics(lambda: state)
    app.extensions[EXTENSION] = state

    from werkzeug.routing import BaseConverter

    class NameConverter(BaseConverter):
        """A model name or version: no '/' and no ':' (so ``/v1/models/m:predict`` is not model ``m:predict``)."""
        regex = r"[^/:]+"

    app.url_map.converters["name"] = NameConverter

    from . import api_classify, api_ops, api_tfserving, api_v2

    for bp in (api_classify.bp, api_v2.bp, api_tfserving.bp, api_ops.bp):
        app.register_blueprint(bp)

    @app.get("/")
    def index():
        resp = send_from_directory(WEB_DIR, "index.html", max_age=0)
        return resp

    @app.get("/web/<path:filename>")
    def web_asset(filename):
        return send_from_directory(WEB_DIR, filename, max_age=0)

    register_error_handlers(app)

    @app.before_request
    def _authorize():
        if not config.token or request.endpoint in OPEN_ENDPOINTS:
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

    @app.after_request
    def _account(resp):
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        model = label_model(request.view_args, state.models)
        state.metrics.requests.labels(rule, model, request.method).inc()
        if resp.status_code >= 400:
            state.metrics.errors.labels(rule, model, str(resp.status_code)).inc()
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    return app
