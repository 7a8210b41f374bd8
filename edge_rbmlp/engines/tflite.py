"""The ``tflite`` and ``lce`` comparison backends: a packed model's TFLite siblings.

A bundled or exported model ``NAME.rbm`` ships beside ``NAME.tflite`` (float),
``NAME_int8.tflite`` (full-integer post-training quantization) and
``NAME_lce.tflite`` (Larq Compute Engine); see :func:`edge_rbmlp.models.sibling_path`.
These graphs take the real-valued input ``x = scale * (q - zero_point)`` and end
in the output activation, so :meth:`logits_uint8` dequantizes ``q`` and maps the
probabilities back to logits (``log p`` for softmax, ``log(p / (1 - p))`` for a
sigmoid unit): classes and probabilities are comparable with the other backends.

Runtimes: ``ai_edge_litert.interpreter`` (pip ``ai-edge-litert``) when importable,
else ``tflite_runtime.interpreter`` (pip ``tflite-runtime``); LCE through
``larq_compute_engine`` (pip ``larq-compute-engine``, x86_64 and macOS wheels
only). A missing runtime or sibling file raises :class:`BackendUnavailable`
saying what to install or export; nothing falls back to another runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .base import BackendUnavailable, Engine
from ..model_file import PackedModel

VARIANTS = ("float", "int8")


# The TFLite runtimes in order of preference: (module to import, pip distribution).
_TFLITE_RUNTIMES = (("ai_edge_litert.interpreter", "ai-edge-litert"),
                    ("tflite_runtime.interpreter", "tflite-runtime"))


def tflite_runtime():
    """``(Interpreter class, runtime name, version)`` of the fastest installed TFLite runtime."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    for module_name, dist in _TFLITE_RUNTIMES:
        try:
            mod = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            ver = version(dist)
        except PackageNotFoundError:  # pragma: no cover - a runtime importable without its metadata
            ver = "unknown"
        return mod.Interpreter, dist, ver
    raise BackendUnavailable("backend 'tflite' needs a TFLite runtime: pip install ai-edge-litert "
                             "(or pip install tflite-runtime)")


def lce_runtime():
    try:
        import larq_compute_engine as lce  # type: ignore
    except ImportError as exc:
        raise BackendUnavailable("backend 'lce' needs the Larq Compute Engine interpreter: pip install "
                                 f"larq-compute-engine (x86_64/macOS wheels only; none for aarch64) ({exc})") from None
    return lce, "larq-compute-engine", getattr(lce, "__version__", "unknown")


def _model_path(model: PackedModel, model_path) -> Optional[Path]:
    if model_path is not None:
        return Path(model_path)
    from ..models import bundled_models

    if model.name and model.name in bundled_models():
        return bundled_models()[model.name]
    return None


def find_sibling(model: PackedModel, variant: str, model_path=None, path=None) -> Path:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise BackendUnavailable(f"no TFLite file {p}")
        return p
    from ..models import sibling_path

    base = _model_path(model, model_path)
    if base is None:
        raise BackendUnavailable("the TFLite backends need the model's file path (model_path=...) to find "
                                 "its siblings NAME.tflite / NAME_int8.tflite / NAME_lce.tflite")
    sib = sibling_path(base, variant)
    if sib is None:
        suffix = {"float": "", "int8": "_int8", "lce": "_lce"}[variant]
        raise BackendUnavailable(f"model {base.name} has no {variant} TFLite sibling "
                                 f"({base.with_name(base.stem + suffix + '.tflite').name}); export it with train")
    return sib


def _probs_to_logits(p: np.ndarray, activation: str) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-30, 1.0)
    if activation == "sigmoid":
        p = np.clip(p[:, :1], 1e-30, 1 - 1e-16)
        return np.log(p / (1.0 - p)).astype(np.float32)
    return np.log(p).astype(np.float32)


class TFLiteEngine(Engine):
    """A TFLite sibling through ai-edge-litert or tflite-runtime (single-threaded by default)."""

    name = "tflite"

    def __init__(self, model: PackedModel, variant: str = "float", model_path=None, path=None,
                 num_threads: int = 1):
        if variant not in VARIANTS:
            raise BackendUnavailable(f"tflite variant must be one of {VARIANTS}, got {variant!r}")
        Interpreter, self.runtime, self.version = tflite_runtime()
        super().__init__(model)
        self.variant = variant
        self.path = find_sibling(model, variant, model_path, path)
        self.file_bytes = self.path.stat().st_size
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = None
        self._resize(1)

    @property
    def kernel(self) -> str:
        return f"{self.runtime} {self.version} {self.variant}"

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [batch, self.model.n_inputs])
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
            self._batch = batch

    def prepare_input(self, q: np.ndarray) -> np.ndarray:
        """uint8 ``q`` -> the graph's input tensor (float x, or x quantized to the graph's int8)."""
        x = self.model.input_spec.dequantize(q)
        if self._in["dtype"] != np.float32:
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in["dtype"])
        return np.ascontiguousarray(x)

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        """One invoke on an input from :meth:`prepare_input` (the batch size must stay the same)."""
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])

    def outputs(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.uint8)
        if q.shape[0] == 0:
            return np.zeros((0, self.model.n_outputs), np.float32)
        self._resize(q.shape[0])
        y = self.run_prepared(self.prepare_input(q))
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32)

    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        y = self.outputs(q)
        if self.model.output_activation == "sigmoid":
            return _probs_to_logits(y, "sigmoid")
        return _probs_to_logits(y, "softmax")


class LCEEngine(Engine):
    """The Larq Compute Engine sibling (``NAME_lce.tflite``) through LCE's own interpreter."""

    name = "lce"

    def __init__(self, model: PackedModel, model_path=None, path=None, num_threads: int = 1):
        lce, self.runtime, self.version = lce_runtime()
        super().__init__(model)
        self.variant = "lce"
        self.path = find_sibling(model, "lce", model_path, path)
        self.file_bytes = self.path.stat().st_size
        self.interpreter = lce.testing.Interpreter(self.path.read_bytes(), num_threads=num_threads)

    @property
    def kernel(self) -> str:
        return f"{self.runtime} {self.version}"

    def prepare_input(self, q: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.model.input_spec.dequantize(q))

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        return self.interpreter.predict(x)

    def outputs(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.uint8)
        if q.shape[0] == 0:
            return np.zeros((0, self.model.n_outputs), np.float32)
        y = self.run_prepared(self.prepare_input(q))
        return np.asarray(y, np.float32).reshape(q.shape[0], -1)

    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        return _probs_to_logits(self.outputs(q), self.model.output_activation)
