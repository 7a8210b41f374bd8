"""Operations: ``/healthz``, ``/metrics``, ``/openapi.json``, the page's status and camera feeds."""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response, jsonify

from .errors import ApiError
from .infer import decode_image, read_body
from .metrics import memory_bytes
from .state import app_state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    state = app_state()
    return jsonify({"status": "ok", "models": state.model_names(), "uptime_s": round(time.time() - state.started, 1)})


@bp.get("/metrics")
def metrics():
    data, content_type = app_state().metrics.exposition()
    return Response(data, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    from .openapi import openapi_spec

    return jsonify(openapi_spec(app_state()))


@bp.get("/api/status")
def status():
    state = app_state()
    rss, peak = memory_bytes()
    models = []
    for name in state.model_names():
        served = state.models[name]
        models.append({"name": name, "kind": served.kind, "arch": served.summary["arch"],
                       "labels": list(served.model.labels), "file_bytes": served.summary["file_bytes"],
                       "paper_kib": served.summary["paper_kib"], "backend": served.engine.name,
                       "kernel": served.engine.kernel, "accuracy": served.summary["accuracy"],
                       "recent_latency_us": [round(x, 1) for x in served.recent_us]})
    bound = state.activity.recycle_rss_bytes if state.activity is not None else None
    return jsonify({"models": models, "rss_bytes": rss, "peak_rss_bytes": peak, "memory_bound_bytes": bound,
                    "memory_budget_peak_bytes": state.budget.peak_reserved if state.budget is not None else None,
                    "pid": os.getpid(),
                    "worker": state.worker, "uptime_s": round(time.time() - state.started, 1), "camera": state.camera.snapshot()})


@bp.get("/api/camera")
def camera():
    return jsonify(app_state().camera.snapshot())


def _png(attr: str):
    cam = app_state().camera
    with cam.lock:
        data = getattr(cam, attr)
    if data is None:
        raise ApiError(404, "no camera frame yet (start the camera: edge-rbmlp serve --camera)")
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/api/camera/frame.png")
def camera_frame():
    return _png("frame_png")


@bp.get("/api/camera/input.png")
def camera_input():
    return _png("input_png")


@bp.post("/api/camera/publish/<model>")
def camera_publish(model):
    """A camera running in another process (``edge-rbmlp camera --publish URL``) posts frames here;
    they are classified by the service and kept in memory as the latest camera frame."""
    from .camera import publish_frame

    state = app_state()
    served = state.get(model)
    if served.kind != "image":
        raise ApiError(400, f"model {served.name!r} does not take images")
    image = decode_image(read_body())
    result = publish_frame(state, served, image)
    return jsonify(result)
