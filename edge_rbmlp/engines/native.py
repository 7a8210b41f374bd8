"""The ``native`` backend: the compiled XNOR-popcount engine (``edge_rbmlp._native``).

The kernel variant (``portable``, ``avx2``, ``neon``, ``neon_dotprod``) is the
best one this CPU runs, unless the ``kernel`` argument or the environment
variable ``EDGE_RBMLP_KERNEL`` names one; naming a variant this machine cannot
run is an error (:class:`KernelUnavailable`), never a silent substitute.

One Python->C call per batch, with the GIL released, and no allocation in C
for the paper's model sizes (the scratch lives on the C stack), so a threaded
server runs requests in parallel on one shared engine. Text models also get a
sparse path: the first binary layer and the Q shortcut run from the active
word indices (transposed copies of those weights are built at load time).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..bits import pack_bits, unpack_bits, unpack_signs
from .base import BackendUnavailable, Engine
from ..model_file import PackedModel
from ..text import MAX_TEXT_CHARS, TOKENIZER, TextError, as_text

try:
    from .. import _native
except ImportError as exc:  # the extension was not built in this install
    _native = None
    _IMPORT_ERROR = exc
else:
    _IMPORT_ERROR = None

KERNEL_ENV = "EDGE_RBMLP_KERNEL"


class KernelUnavailable(BackendUnavailable):
    """A kernel variant that does not exist here or that this CPU cannot run."""


def _require_native():
    if _native is None:
        raise BackendUnavailable(
            f"the native engine (edge_rbmlp._native) is not built in this install ({_IMPORT_ERROR}); "
            "reinstall edge-rbmlp with a C compiler (pip install --force-reinstall --no-binary edge-rbmlp "
            "edge-rbmlp, or pip install -e . in a checkout)")
    return _native


def variant_names():
    return list(_require_native().variant_names())


def available_kernels():
    """The kernel variants this machine runs."""
    return list(_require_native().available_variants())


def kernel_status(name: str):
    """``(ok, reason)`` for one variant name."""
    return _require_native().variant_status(name)


def best_kernel() -> str:
    return _require_native().best_variant()


def choose_kernel(kernel: Optional[str] = None) -> str:
    """The variant to run: ``kernel``, else ``$EDGE_RBMLP_KERNEL``, else the best for this CPU."""
    native = _require_native()
    name = kernel if kernel else os.environ.get(KERNEL_ENV, "").strip()
    if not name or name == "auto":
        return native.best_variant()
    ok, reason = native.variant_status(name)
    if not ok:
        source = "" if kernel else f" (from {KERNEL_ENV})"
        raise KernelUnavailable(f"{reason}{source}; this machine runs: {', '.join(native.available_variants())}")
    return name


# the expanded int8 copy of layer 0 (int8 input mode) is built up to this size
PM1_MAX_BYTES = 4 << 20


def native_arrays(model: PackedModel, sparse: Optional[bool] = None, kernel: Optional[str] = None) -> dict:
    """The arrays the C engine takes: the packed tensors plus the tables derived at load time."""
    t = model.tensors
    arrays = {k: v for k, v in t.items()}
    arch = model.arch
    rows0, n = arch.widths[0], model.n_inputs
    stride = (n + 31) // 32 * 32
    if arch.input_mode == "int8" and kernel == "avx2" and model.input_spec.kind != "text" \
            and rows0 * stride <= PM1_MAX_BYTES:
        # vpmaddubsw runs the int8 x (+-1) input layer ~2x faster from bytes than from bits;
        # the copy costs rows * n bytes (8x the packed layer)
        pm1 = np.zeros((rows0, stride), dtype=np.int8)
        pm1[:, :n] = unpack_signs(t["layer.0.weight"], n)
        arrays["layer0.pm1"] = pm1
    if arch.shortcut is not None and arch.shortcut.kind == "Q":
        arrays["shortcut.rowsum"] = t["shortcut.weight"].astype(np.int64).sum(axis=1).astype(np.int32)
    if sparse is None:
        sparse = model.input_spec.kind == "text"
    if sparse and arch.input_mode == "planes":
        raise ValueError("the sparse (multi-hot) path needs the sign or int8 input mode; this model takes its "
                         f"input as {arch.input_bits} bit planes")
    if sparse:
        n = model.n_inputs
        bits = unpack_bits(t["layer.0.weight"], n)  # bool [rows, n]
        arrays["sparse.w0t"] = pack_bits(np.ascontiguousarray(bits.T))  # [n, words(rows)]
        arrays["sparse.w0_rowpop"] = bits.sum(axis=1).astype(np.int32)
        if arch.shortcut is not None and arch.shortcut.kind == "Q":
            arrays["sparse.sct"] = np.ascontiguousarray(t["shortcut.weight"].T)
    return arrays


class NativeEngine(Engine):
    name = "native"

    def __init__(self, model: PackedModel, kernel: Optional[str] = None, sparse: Optional[bool] = None):
        native = _require_native()
        super().__init__(model)
        chosen = choose_kernel(kernel)
        arch = model.arch
        spec = model.input_spec
        self._native = native.Model(
            native_arrays(model, sparse, chosen),
            int(model.n_inputs),
            [int(w) for w in arch.widths],
            arch.input_mode,
            int(spec.binarize_threshold),
            arch.shortcut.kind if arch.shortcut is not None else None,
            int(arch.pool_size),
            model.output_activation,
            chosen,
            int(arch.input_bits) if arch.input_mode == "planes" else 8,
        )
        # the sparse path assumes multi-hot inputs (active = 1, else 0)
        self._sparse_ok = self._native.has_sparse
        self._n_out = self._native.n_out
        self._out_width = self._native.out_width
        # raw ASCII text is tokenized in C (the same rules as edge_rbmlp.text for ASCII input)
        self._c_tokenizer = False
        if self._sparse_ok and model.vocab is not None:
            if model.input_spec.tokenizer == TOKENIZER:
                self._native.set_vocab(list(model.vocab))
                self._c_tokenizer = True
        # the batch-1 fast paths are the compiled methods themselves (no Python frame in between)
        self.logits_into = self._native.logits_into
        self.predict_into = self._native.predict_into
        self.predict_indices_into = self._native.sparse_predict_into

    # -- what a backend implements ------------------------------------------------
    @property
    def kernel(self) -> str:
        return self._native.kernel

    @property
    def scratch_bytes(self) -> int:
        """C scratch per call (on the stack unless it exceeds 48 KiB)."""
        return int(self._native.scratch_bytes)

    def logits_uint8(self, q: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(q, dtype=np.uint8)
        if q.ndim != 2:
            raise ValueError(f"expected uint8 [batch, {self.model.n_inputs}], got shape {q.shape}")
        out = np.empty((q.shape[0], self._n_out), dtype=np.float32)
        self._native.logits_into(q, out)
        return out

    # -- fast paths ------------------------------------------------------------------
    def logits_into(self, q: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Logits of uint8 ``q [batch, n]`` into a caller-owned ``float32 [batch, n_out]`` (no allocation)."""
        return self._native.logits_into(q, out)

    def predict_into(self, q: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Probabilities of uint8 ``q [batch, n]`` into a caller-owned ``float32 [batch, classes]``
        (softmax, or ``[1 - p, p]`` for one sigmoid unit), computed in C."""
        return self._native.predict_into(q, out)

    def predict_uint8(self, q: np.ndarray) -> np.ndarray:
        """Probabilities ``float32 [batch, classes]`` of uint8 ``q [batch, n]``."""
        out = np.empty((q.shape[0], self._out_width), dtype=np.float32)
        return self._native.predict_into(q, out)

    def logits_indices(self, indices: np.ndarray, offsets: Optional[np.ndarray] = None) -> np.ndarray:
        """Logits of multi-hot inputs given as sorted unique active indices (int32).

        One sample: ``indices`` alone; a batch: ``offsets`` (int64, batch + 1
        entries, starting at 0) delimits sample ``b`` as
        ``indices[offsets[b]:offsets[b+1]]``.
        """
        self._check_sparse()
        idx = np.ascontiguousarray(indices, dtype=np.int32)
        if offsets is None:
            offsets = np.array([0, idx.shape[0]], dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        out = np.empty((offsets.shape[0] - 1, self._n_out), dtype=np.float32)
        return self._native.sparse_logits_into(idx, offsets, out)

    def predict_indices_into(self, indices: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Probabilities of multi-hot inputs given as active indices (int32, with int64 ``offsets``)
        into a caller-owned ``float32 [batch, classes]``. (Replaced per instance by the compiled method.)"""
        return self._native.sparse_predict_into(indices, offsets, out)

    def _check_sparse(self):
        if not self._sparse_ok:
            raise ValueError("the sparse (indices) path is built for text models only")

    def probabilities_uint8(self, q: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(q, dtype=np.uint8)
        out = np.empty((q.shape[0], self._out_width), dtype=np.float32)
        return self._native.predict_into(q, out)

    def text_probabilities(self, texts, known=None) -> np.ndarray:
        """Tokenize and classify from the active word indices (no 10,000-wide dense vector).

        ASCII text goes to C in one call per text (tokenizer, vocabulary lookup and inference, GIL
        released); other text is tokenized by :mod:`edge_rbmlp.text` and runs the same sparse C path."""
        if self.model.input_spec.kind != "text" or not self._sparse_ok:
            return super().text_probabilities(texts, known)
        probs = np.empty((len(texts), self._out_width), dtype=np.float32)
        for i, text in enumerate(texts):
            raw = text.encode("ascii") if self._c_tokenizer and text.isascii() else None
            row = probs[i:i + 1]
            if raw is not None:
                if len(raw) > MAX_TEXT_CHARS:
                    raise TextError(f"text is {len(raw)} characters, more than the {MAX_TEXT_CHARS} limit")
                k = self._native.predict_text_into(raw, row)
                if k < 0:  # pragma: no cover - ASCII checked above
                    raise RuntimeError("the C tokenizer rejected ASCII text")
            else:
                idx = self.text_encoder.indices(as_text(text))
                self._native.sparse_predict_into(idx, np.array([0, idx.shape[0]], dtype=np.int64), row)
                k = int(idx.shape[0])
            if known is not None:
                known.append(int(k))
        return probs

    def text_indices(self, text) -> np.ndarray:
        """Sorted unique active vocabulary indices of ``text`` (C tokenizer for ASCII text)."""
        if self._c_tokenizer:
            raw = text.encode("ascii") if isinstance(text, str) and text.isascii() else None
            if raw is not None:
                return self._native.text_indices(raw)
        return self.text_encoder.indices(as_text(text))

    def describe(self) -> dict:
        return {"backend": self.name, "kernel": self.kernel, "available_kernels": available_kernels(),
                "sparse_text_path": bool(self._sparse_ok), "scratch_bytes": self.scratch_bytes}
