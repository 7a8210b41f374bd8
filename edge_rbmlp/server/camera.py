"""The camera: capture a frame, make it MNIST-like, classify, publish and log.

Frames come from ``[camera] source`` (:mod:`edge_rbmlp.camera_sources`: the Pi camera through
``picamera2``, a V4L2 webcam, a folder of images or a video file; each library is imported only when
used). Anything with a ``capture()`` method returning an ``HxW`` or ``HxWx3`` uint8 array can stand in
for a source (the tests use frames made from real MNIST test digits).

Without ``[[readers]]`` every frame is one digit (``classify_frame``). With readers, every frame gives
every reader a reading of its digit regions (:mod:`edge_rbmlp.readers`), kept for ``GET /api/readers``
and handed to the MQTT publisher (``[mqtt]``, :mod:`.mqtt`).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Callable, Optional

import numpy as np

from ..camera_sources import PICAMERA_HINT, CameraUnavailable, PiCameraSource, open_source  # noqa: F401
from ..engines.base import Prediction

log = logging.getLogger("edge_rbmlp.camera")

FRAME_PREVIEW_SIDE = 320


def open_camera(width: int = 640, height: int = 480, source: str = "picamera2"):
    """Open ``source`` (``picamera2``, ``v4l2:/dev/videoN``, ``dir:FOLDER``, ``file:VIDEO``)."""
    return open_source(source, width, height)


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
    # the preview is downscaled: its real size lets the page's ROI editor work in frame pixels
    result["frame_width"], result["frame_height"] = int(frame_arr.shape[1]), int(frame_arr.shape[0])
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

    With ``readers`` (a :class:`edge_rbmlp.readers.ReaderSet`) a frame is read by every reader instead
    and ``on_readings(frame, readings, forced)`` gets the result; :meth:`trigger` takes a frame at once
    (MQTT ``cmd/read``) with ``forced`` true.

    A capture that fails or returns garbage is counted, logged and retried after a
    back-off (up to 10 s); the loop never takes the service down with it.
    """

    def __init__(self, source, engine, interval: float = 1.0, on_result: Optional[Callable] = None,
                 max_frames: Optional[int] = None, stop_event: Optional[threading.Event] = None, echo=None,
                 on_error: Optional[Callable] = None, readers=None, on_readings: Optional[Callable] = None):
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
        self.readers = readers
        self.on_readings = on_readings
        self.on_stop: list = []  # called by stop() (the MQTT publisher says offline)
        self._wake = threading.Event()
        self._forced = False

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
        hooks, self.on_stop = self.on_stop, []
        for hook in hooks:
            try:
                hook()
            except Exception as exc:  # pragma: no cover - best effort on shutdown
                log.warning("camera: stopping %s failed: %s", hook, exc)

    def trigger(self) -> None:
        """Take the next frame now (from any thread); its readings are published even if unchanged."""
        self._forced = True
        self._wake.set()

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def step(self) -> Optional[dict]:
        forced, self._forced = self._forced, False
        try:
            frame = self.source.capture()
            if frame is None:
                raise ValueError("the camera returned no frame")
            frame = np.asarray(frame)
            if frame.ndim not in (2, 3) or frame.size == 0 or frame.dtype == object:
                raise ValueError(f"the camera returned a frame of shape {frame.shape} and dtype {frame.dtype}")
        except Exception as exc:
            if forced and self.readers is not None and self.on_readings is not None:
                self.on_readings(None, self.readers.failed(f"camera: {type(exc).__name__}: {exc}"), True)
            raise
        if self.readers is not None:
            return self._read(frame, forced)
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

    def _read(self, frame, forced: bool) -> dict:
        readings = self.readers.read(frame)
        self.frames += 1
        record = {"frame": self.frames, "readings": [
            {"reader": r.reader, "value": r.value, "valid": r.valid, "confidence": round(r.confidence, 4),
             "raw_value": r.raw_value, "latency_us": round(r.latency_us, 1),
             **({"reason": r.reason} if r.reason else {})} for r in readings]}
        if self.on_readings is not None:
            self.on_readings(frame, readings, forced)
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
                self._sleep(backoff)
                continue
            self._sleep(self.interval)


def start_in_service(app, source, model_name: Optional[str], interval: float, readers=None, mqtt=None,
                     hostname: Optional[str] = None) -> CameraLoop:
    """Run the camera on a daemon thread inside the service, publishing to ``app``'s state.

    ``readers`` (``ReaderConfig``s) and ``mqtt`` (an ``MqttConfig``) default to the app's config
    (``[[readers]]``, ``[mqtt]``). With readers, frames are read by them (``GET /api/readers``) and,
    with ``[mqtt]``, published to the broker; ``loop.stop()`` also stops the publisher."""
    from .state import app_state

    state = app_state(app)
    readers = tuple(state.config.readers if readers is None else readers)
    mqtt = state.config.mqtt if mqtt is None else mqtt
    if readers:
        return _start_readers(app, state, source, readers, interval, mqtt, hostname)
    if mqtt is not None:
        raise CameraUnavailable("[mqtt] publishes the readings of [[readers]]: configure at least one reader")
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
    return _run_loop(state, loop)


def _run_loop(state, loop: CameraLoop) -> CameraLoop:
    thread = threading.Thread(target=loop.run, name="edge-rbmlp-camera", daemon=True)
    thread.start()
    loop.thread = thread
    state.camera_loop = loop
    return loop


def _start_readers(app, state, source, readers, interval: float, mqtt, hostname) -> CameraLoop:
    from ..readers import ReaderSet
    from .api_readers import ReadersState, attach
    from .infer import record

    for reader in readers:
        served = state.models.get(reader.model)
        if served is None or served.kind != "image":
            raise CameraUnavailable(f"reader {reader.name!r}: model {reader.model!r} is not a served image model "
                                    f"(served: {', '.join(state.model_names())})")

    def engine_for(model):  # looked up per frame: a model reloaded by SIGHUP is used from the next frame
        return state.models[model].engine

    def on_predictions(model, preds):
        with app.app_context():
            record(state.models[model], preds)

    reader_set = ReaderSet(readers, engine_for, on_predictions)
    shown = ReadersState(readers)
    attach(app, shown)
    publisher = None
    loop = CameraLoop(source, None, interval=interval, readers=reader_set)
    if mqtt is not None:
        from .mqtt import MqttPublisher

        publisher = MqttPublisher(mqtt, readers, on_command=loop.trigger, hostname=hostname)
        shown.publisher = publisher

    def on_readings(frame, readings, forced):
        if frame is not None:
            shown.update(frame, readings)
            with state.camera.lock:
                state.camera.frames += 1
        if publisher is not None:
            publisher.submit(readings, forced)

    def on_error(exc):
        shown.error(exc)
        with state.camera.lock:
            state.camera.errors += 1
            state.camera.last_error = f"{type(exc).__name__}: {exc}"

    loop.on_readings, loop.on_error = on_readings, on_error
    with state.camera.lock:
        state.camera.running = True
        state.camera.model = ", ".join(sorted({r.model for r in readers}))
    if publisher is not None:
        publisher.start()
        loop.on_stop.append(publisher.stop)
    shown.running = True
    loop.on_stop.append(lambda: setattr(shown, "running", False))
    return _run_loop(state, loop)
