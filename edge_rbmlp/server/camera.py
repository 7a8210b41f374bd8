"""The camera: capture a frame, make it MNIST-like, classify, publish and log.

On a Raspberry Pi the frames come from ``picamera2`` (imported only here, only
when the camera is used). Anything with a ``capture()`` method returning an
``HxW`` or ``HxWx3`` uint8 array can stand in for it (the tests use frames made
from real MNIST test digits).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Callable, Optional

import numpy as np

from ..engines.base import Prediction

log = logging.getLogger("edge_rbmlp.camera")

PICAMERA_HINT = ("picamera2 is not installed. On Raspberry Pi OS: `sudo apt install python3-picamera2`, and "
                 "create the venv with `python3 -m venv --system-site-packages` so that it can see it "
                 "(device/install.sh does both)")
FRAME_PREVIEW_SIDE = 320


class CameraUnavailable(RuntimeError):
    """No camera can be opened here (the message says what to install or check)."""


class PiCameraSource:
    """Frames from the Raspberry Pi camera through picamera2."""

    def __init__(self, width: int = 640, height: int = 480):
        try:
            from picamera2 import Picamera2  # noqa: F401  (only on Raspberry Pi OS)
        except ImportError as exc:
            raise CameraUnavailable(f"{PICAMERA_HINT} ({exc})") from None
        try:
            self._cam = Picamera2()
            config = self._cam.create_still_configuration(main={"size": (width, height), "format": "RGB888"})
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:  # libcamera raises many kinds when no camera is connected
            raise CameraUnavailable(f"cannot open the camera: {exc} (is it connected and enabled?)") from None

    def capture(self) -> np.ndarray:
        return self._cam.capture_array("main")

    def close(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception:  # pragma: no cover - best effort on shutdown
            pass


def open_camera(width: int = 640, height: int = 480):
    return PiCameraSource(width, height)


def _png(arr: np.ndarray, max_side: Optional[int] = None) -> bytes:
    from PIL import Image

    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def classify_frame(engine, frame) -> Prediction:
    """One frame -> Prediction through the engine's image path (``.input`` is the 28x28 the model
    saw, ``.timing_us`` the split; ``label`` is None when no digit is in view)."""
    return engine.predict_image(frame)


def publish_frame(state, served, frame, prediction: Optional[Prediction] = None) -> dict:
    """Keep ``frame`` and its prediction as the service's latest camera result."""
    from .infer import record

    if prediction is None:
        prediction = classify_frame(served.engine, frame)
    record(served, [prediction])
    q = prediction.input.reshape(served.model.input_spec.height, served.model.input_spec.width)
    result = {"model": served.name, **prediction.to_dict(timing=True),
              "latency_us": round(prediction.timing_us["total_us"], 1),
              "time": time.time(), "blank": prediction.refused}
    frame_arr = np.asarray(frame.convert("RGB")) if hasattr(frame, "convert") else np.asarray(frame)
    frame_png, input_png = _png(frame_arr, FRAME_PREVIEW_SIDE), _png(q)
    cam = state.camera
    with cam.lock:
        cam.model = served.name
        cam.frames += 1
        cam.last = result
        cam.frame_png = frame_png
        cam.input_png = input_png
    return result


class CameraLoop:
    """Capture -> classify -> ``on_result`` -> log, every ``interval`` seconds, until stopped.

    A capture that fails or returns garbage is counted, logged and retried after a
    back-off (up to 10 s); the loop never takes the service down with it.
    """

    def __init__(self, source, engine, interval: float = 1.0, on_result: Optional[Callable] = None,
                 max_frames: Optional[int] = None, stop_event: Optional[threading.Event] = None, echo=None,
                 on_error: Optional[Callable] = None):
        self.source = source
        self.engine = engine
        self.interval = interval
        self.on_result = on_result
        self.on_error = on_error
        self.max_frames = max_frames
        self.stop_event = stop_event or threading.Event()
        self.echo = echo
        self.frames = 0
        self.errors = 0

    def stop(self) -> None:
        self.stop_event.set()

    def step(self) -> Optional[dict]:
        frame = self.source.capture()
        if frame is None:
            raise ValueError("the camera returned no frame")
        frame = np.asarray(frame)
        if frame.ndim not in (2, 3) or frame.size == 0 or frame.dtype == object:
            raise ValueError(f"the camera returned a frame of shape {frame.shape} and dtype {frame.dtype}")
        pred = classify_frame(self.engine, frame)
        self.frames += 1
        record = {"frame": self.frames, "label": pred.label, "class_index": pred.class_index,
                  "confidence": round(pred.confidence, 4), "reason": pred.reason,
                  **{k: round(v, 1) for k, v in pred.timing_us.items()},
                  "latency_us": round(pred.timing_us["total_us"], 1), "blank": pred.refused}
        if self.on_result is not None:
            self.on_result(frame, pred)
        log.info("camera %s", json.dumps(record))
        if self.echo is not None:
            self.echo(record)
        return record

    def run(self) -> None:
        backoff = self.interval
        while not self.stop_event.is_set():
            if self.max_frames is not None and self.frames >= self.max_frames:
                break
            try:
                self.step()
                backoff = self.interval
            except Exception as exc:  # a camera that disconnects or returns garbage is reported and retried
                self.errors += 1
                log.warning("camera frame failed (%s: %s); retrying", type(exc).__name__, exc)
                if self.on_error is not None:
                    self.on_error(exc)
                backoff = min(max(backoff * 2, 0.5), 10.0)
                self.stop_event.wait(backoff)
                continue
            self.stop_event.wait(self.interval)


def start_in_service(app, source, model_name: Optional[str], interval: float) -> CameraLoop:
    """Run the camera on a daemon thread inside the service, publishing to ``app``'s state."""
    from .state import app_state

    state = app_state(app)
    if model_name is None:
        images = [n for n in state.model_names() if state.models[n].kind == "image"]
        if not images:
            raise CameraUnavailable("the camera needs an image model, and none is served")
        model_name = images[0]
    served = state.models.get(model_name)
    if served is None or served.kind != "image":
        raise CameraUnavailable(f"camera model {model_name!r} is not a served image model")

    def on_result(frame, pred):
        with app.app_context():
            publish_frame(state, served, frame, pred)

    def on_error(exc):
        with state.camera.lock:
            state.camera.errors += 1
            state.camera.last_error = f"{type(exc).__name__}: {exc}"

    loop = CameraLoop(source, served.engine, interval=interval, on_result=on_result, on_error=on_error)
    with state.camera.lock:
        state.camera.running = True
        state.camera.model = served.name
    thread = threading.Thread(target=loop.run, name="edge-rbmlp-camera", daemon=True)
    thread.start()
    loop.thread = thread
    state.camera_loop = loop
    return loop
