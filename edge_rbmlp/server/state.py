"""Per-app state: the served models with their engines, recent latencies, the
camera's latest frame. Lives in ``app.extensions["edge_rbmlp"]`` (no globals)."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, List, Optional

from flask import Flask, current_app

from .config import ServerConfig
from .errors import ApiError

EXTENSION = "edge_rbmlp"


@dataclass
class ServedModel:
    name: str
    path: Path
    model: object  # PackedModel
    engine: object  # Engine
    summary: dict
    file_sha256: str = ""  # of the bytes it was loaded from: SIGHUP reloads a file whose bytes changed
    recent_us: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=240))

    @property
    def kind(self) -> str:
        return self.model.input_spec.kind


@dataclass
class CameraState:
    running: bool = False
    model: Optional[str] = None
    frames: int = 0
    errors: int = 0
    last_error: Optional[str] = None
    last: Optional[dict] = None  # prediction + time
    frame_png: Optional[bytes] = None  # the latest frame (downscaled)
    input_png: Optional[bytes] = None  # what the model saw (28x28)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict:
        with self.lock:
            return {"running": self.running, "model": self.model, "frames": self.frames, "errors": self.errors,
                    "last_error": self.last_error, "last": self.last, "has_frame": self.frame_png is not None}


@dataclass
class AppState:
    config: ServerConfig
    models: Dict[str, ServedModel]
    metrics: object
    camera: CameraState = field(default_factory=CameraState)
    started: float = field(default_factory=time.time)
    ready: bool = True
    worker: Optional[int] = None  # index of this worker process under `serve --workers N`
    budget: object = None  # guard.MemoryBudget of this process
    activity: object = None  # guard.Activity: requests in flight, heartbeat, recycling

    def get(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"unknown model {name!r}; served models: {known}")
        return served

    def model_names(self) -> List[str]:
        return sorted(self.models)


def app_state(app: Optional[Flask] = None) -> AppState:
    return (app or current_app).extensions[EXTENSION]


def _read_model_file(path: Path):
    """(the file's bytes, their sha256), from one read of the file."""
    import hashlib

    from ..model_file import read_model_bytes

    data = read_model_bytes(path)
    return data, hashlib.sha256(data).hexdigest()


def _parse_model(data: bytes, path: Path):
    from ..model_file import PackedModel

    return PackedModel.from_bytes(data, str(path))


def load_served_models(config: ServerConfig, engines: Optional[dict] = None) -> Dict[str, ServedModel]:
    """Load every model of the config (all bundled ones when none is named)."""
    from ..engines import create
    from ..models import model_summary
    from ..models import bundled_models, resolve_model_path

    names = list(config.models) or list(bundled_models())
    if not names:
        raise FileNotFoundError("no models to serve: name .rbm files or install the bundled models")
    served: Dict[str, ServedModel] = {}
    for arg in names:
        path = resolve_model_path(arg)
        data, digest = _read_model_file(path)
        model = _parse_model(data, path)
        bundled = bundled_models()
        name = arg if arg in bundled else (model.name or path.stem)
        name = "".join(c if (c.isalnum() or c in "-_.") else "-" for c in name) or path.stem
        if name in served:
            raise ValueError(f"two models are both named {name!r}; rename one of the files")
        engine = (engines or {}).get(name) or create(model, config.backend)
        served[name] = ServedModel(name=name, path=path, model=model, engine=engine,
                                   summary=model_summary(model, path), file_sha256=digest)
    return served


def reload_models(state: AppState) -> List[str]:
    """Reload every model whose file changed (SIGHUP). All or nothing: if any file is
    corrupt, nothing is swapped and the old models keep serving (the error is raised)."""
    from ..engines import create
    from ..models import model_summary

    fresh = dict(state.models)
    changed = []
    for name, served in state.models.items():
        data, digest = _read_model_file(served.path)
        if digest == served.file_sha256:
            continue  # unchanged: not even parsed
        model = _parse_model(data, served.path)
        engine = create(model, state.config.backend)
        fresh[name] = ServedModel(name=name, path=served.path, model=model, engine=engine,
                                  summary=model_summary(model, served.path), file_sha256=digest)
        changed.append(name)
    state.models = fresh  # one reference swap: in-flight requests keep the engine they started with
    return changed
