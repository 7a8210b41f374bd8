"""``GET /api/readers``: the latest reading of every ``[[readers]]`` entry, and the frame with the ROI
boxes drawn (``/api/readers/frame.png``; ``?boxes=0`` gives the bare frame for the page's ROI editor).
Nothing here writes a file: the editor only shows the TOML to paste into the config."""

from __future__ import annotations

import io
import threading
import time
from typing import Dict, Optional

from flask import Blueprint, Response, jsonify, request

from .errors import ApiError

bp = Blueprint("readers", __name__)
EXTENSION = "edge_rbmlp.readers"


class ReadersState:
    """What the camera loop last saw and read (shared with the request threads under ``lock``)."""

    def __init__(self, configs):
        self.configs = list(configs)
        self.lock = threading.Lock()
        self.frame = None  # the latest frame (uint8 array; encoded only when asked for)
        self.frame_ts: Optional[float] = None
        self.frames = 0
        self.errors = 0
        self.last_error: Optional[str] = None
        self.readings: Dict[str, object] = {}
        self.running = False
        self.publisher = None

    def update(self, frame, readings) -> None:
        with self.lock:
            self.frame, self.frame_ts = frame, time.time()
            self.frames += 1
            for r in readings:
                self.readings[r.reader] = r

    def error(self, exc) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def snapshot(self) -> dict:
        with self.lock:
            frame = None if self.frame is None else {"width": int(self.frame.shape[1]),
                                                     "height": int(self.frame.shape[0]),
                                                     "ts": round(self.frame_ts, 3)}
            readers = []
            for c in self.configs:
                reading = self.readings.get(c.name)
                readers.append({"name": c.name, "model": c.model, "rois": [list(r) for r in c.rois],
                                "min_confidence": c.min_confidence, "vote": c.vote, "monotonic": c.monotonic,
                                "max_rate_per_hour": c.max_rate_per_hour, "reanchor_after": c.reanchor_after,
                                "last": None if reading is None else reading.to_dict()})
            out = {"running": self.running, "frames": self.frames, "errors": self.errors,
                   "last_error": self.last_error, "frame": frame, "readers": readers}
        out["mqtt"] = None if self.publisher is None else self.publisher.status()
        return out

    def frame_png(self, boxes: bool) -> Optional[bytes]:
        with self.lock:
            frame = self.frame
            readings = dict(self.readings)
        if frame is None:
            return None
        from PIL import Image, ImageDraw

        img = Image.fromarray(frame[..., :3] if frame.ndim == 3 else frame).convert("RGB")
        if boxes:
            draw = ImageDraw.Draw(img)
            for c in self.configs:
                reading = readings.get(c.name)
                colour = (0, 200, 0) if reading is not None and reading.valid else (230, 40, 40)
                digits = reading.digits if reading is not None else []
                for i, (x, y, w, h) in enumerate(c.rois):
                    draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
                    label = digits[i]["label"] if i < len(digits) and digits[i]["label"] is not None else "?"
                    draw.text((x + 3, y + 2), label, fill=colour)
                x, y = c.rois[0][0], c.rois[0][1]
                text = f"{c.name}: {reading.value if reading is not None and reading.value else '-'}"
                draw.text((x, max(0, y - 12)), text, fill=colour)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


def attach(app, state: ReadersState) -> None:
    app.extensions[EXTENSION] = state


def readers_state(app=None) -> Optional[ReadersState]:
    from flask import current_app

    return (app or current_app).extensions.get(EXTENSION)


@bp.get("/api/readers")
def readers():
    state = readers_state()
    if state is None:
        return jsonify({"running": False, "frames": 0, "errors": 0, "last_error": None, "frame": None,
                        "readers": [], "mqtt": None})
    return jsonify(state.snapshot())


@bp.get("/api/readers/frame.png")
def readers_frame():
    boxes = request.args.get("boxes", "1").strip().lower()
    if boxes not in ("0", "1", "true", "false"):
        raise ApiError(400, f"boxes must be 0 or 1, got {boxes!r}")
    state = readers_state()
    data = None if state is None else state.frame_png(boxes in ("1", "true"))
    if data is None:
        raise ApiError(404, "no reader frame yet (configure [[readers]] and start the camera: serve --camera)")
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "no-store"
    return resp
