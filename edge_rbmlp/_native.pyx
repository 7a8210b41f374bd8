# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled engine: thin Cython bindings over native/ (see native/rbm_kernels.h).

``Model`` holds a packed model's arrays (kept alive here) in a C ``rbm_model``
and runs a whole batch in one call with the GIL released. Every shape passed in
from Python is checked here before C sees a pointer; ``rbm_model_check``
checks the model's sizes once more in C.

The ``kernel_*`` functions expose single kernels of any variant this CPU runs,
so the tests can compare the optimized variants with the portable C kernels
directly.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdint cimport uintptr_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE

import numpy as np

cdef extern from "rbm_kernels.h" nogil:
    ctypedef struct rbm_kernels:
        const char *name
        void (*pack_ge_u8)(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits) noexcept nogil
        void (*bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n, int32_t *acc) noexcept nogil
        void (*threshold_pack)(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows,
                               uint64_t *bits) noexcept nogil
        void (*u8_bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n, int32_t *acc) noexcept nogil
        void (*s8u8_mv)(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q,
                        void *tmp, int32_t *acc) noexcept nogil
        void (*f32_mv)(const float *W, int32_t rows, int32_t n, const float *x, const float *bias, float *out) noexcept nogil
        void (*f32u8_mv)(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias,
                         float *out) noexcept nogil
        void (*maxpool_u8)(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out) noexcept nogil
        void (*sparse_bitcount)(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx,
                                int32_t k, int32_t *cnt) noexcept nogil
        void (*sparse_s8sum)(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc) noexcept nogil
        void (*f32_mm)(const float *W, int32_t rows, int32_t n, const float *X, int32_t T, const float *bias,
                       float *out) noexcept nogil
        void (*u8_pm1_mv)(const int8_t *Wpm1, int32_t rows, int32_t stride, const uint8_t *q, int64_t q_stride,
                          int32_t T, int32_t n, int32_t *acc) noexcept nogil
        void (*pack_planes_u8)(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes) noexcept nogil
        void (*planes_bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k,
                           int32_t *acc) noexcept nogil

    const char *const rbm_variant_names[]
    int rbm_variant_lookup(const char *name, const rbm_kernels **out)
    const rbm_kernels *rbm_best_kernels()
    const char *rbm_variant_requirement(const char *name)
    int RBM_VARIANT_OK, RBM_VARIANT_UNKNOWN, RBM_VARIANT_OTHER_ARCH, RBM_VARIANT_NO_CPU

    int RBM_MAX_LAYERS
    int RBM_SHORTCUT_NONE, RBM_SHORTCUT_F, RBM_SHORTCUT_Q, RBM_SHORTCUT_P
    int RBM_INPUT_SIGN, RBM_INPUT_INT8, RBM_INPUT_PLANES
    int RBM_OUT_LOGITS, RBM_OUT_SOFTMAX, RBM_OUT_SIGMOID
    int RBM_OK, RBM_EINVAL, RBM_ENOMEM, RBM_EINDEX, RBM_ENOSPARSE

    ctypedef struct rbm_layer:
        const uint64_t *weight
        int32_t rows, n, words
        const int32_t *threshold
        const uint8_t *flip
        const float *scale
        const float *shift

    ctypedef struct rbm_model:
        int32_t n_inputs, input_mode, binarize_threshold, input_bits, n_layers
        rbm_layer layers[64]
        int32_t shortcut
        const void *sc_weight
        const float *sc_scale
        const float *sc_bias
        const int32_t *sc_rowsum
        int32_t sc_rows, sc_cols, pool
        const float *out_weight
        const float *out_bias
        int32_t n_out
        const uint64_t *w0t
        int32_t w0t_words
        const int32_t *w0_rowpop
        const int8_t *sct
        const int8_t *w0_pm1
        int32_t w0_pm1_stride
        size_t scratch_bytes

    int RBM_ENONASCII
    ctypedef struct rbm_vocab:
        int32_t n
    int rbm_vocab_init(rbm_vocab *v, const char *blob, const int64_t *offsets, int32_t n, int32_t *table,
                       int64_t capacity)
    int32_t rbm_text_indices_ascii(const rbm_vocab *v, const char *text, int64_t len, uint64_t *bitmap,
                                   int32_t *idx, int32_t idx_capacity)
    int rbm_predict_text_ascii(const rbm_model *m, const rbm_kernels *K, const rbm_vocab *v, const char *text,
                               int64_t len, float *out, int32_t kind, int32_t *n_active)

    ctypedef struct rbm_picture:
        const uint8_t *data
        int64_t rows, cols
        int32_t channels
        int64_t row_stride, col_stride, chan_stride
    ctypedef struct rbm_digit_info:
        int32_t blank, inverted, passthrough, components, kept, far, frames
        int32_t box[4]
        int32_t peak
    int rbm_digit_pipeline(const rbm_picture *p, int out_h, int out_w, int box, uint8_t *out,
                           rbm_digit_info *info)

    int rbm_model_check(rbm_model *m, char *err, size_t errlen)
    int32_t rbm_output_width(const rbm_model *m, int32_t kind)
    int rbm_forward(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, int64_t batch,
                    int64_t row_stride, float *out, int32_t kind)
    int rbm_forward_sparse(const rbm_model *m, const rbm_kernels *K, const int32_t *idx,
                           const int64_t *offsets, int64_t batch, float *out, int32_t kind)


OUT_LOGITS = RBM_OUT_LOGITS
OUT_SOFTMAX = RBM_OUT_SOFTMAX
OUT_SIGMOID = RBM_OUT_SIGMOID


class KernelUnavailable(RuntimeError):
    """A kernel variant that does not exist or that this CPU cannot run."""


def variant_names():
    """Every kernel variant name this build knows (whether or not this CPU runs it)."""
    cdef int i = 0
    names = []
    while rbm_variant_names[i] != NULL:
        names.append(rbm_variant_names[i].decode())
        i += 1
    return names


def variant_status(str name):
    """``(ok, reason)``: whether this machine runs variant ``name``, and why not."""
    cdef const rbm_kernels *k = NULL
    cdef bytes b = name.encode()
    cdef int st = rbm_variant_lookup(b, &k)
    if st == RBM_VARIANT_OK:
        return True, ""
    need = rbm_variant_requirement(b).decode()
    if st == RBM_VARIANT_UNKNOWN:
        return False, f"unknown kernel {name!r} (known: {', '.join(variant_names())})"
    if st == RBM_VARIANT_OTHER_ARCH:
        return False, f"kernel {name!r} needs {need}; this build is for another CPU architecture"
    return False, f"kernel {name!r} needs {need}; this CPU does not report those instructions"


def available_variants():
    """The variants this machine runs, best last."""
    return [n for n in variant_names() if variant_status(n)[0]]


def best_variant():
    return rbm_best_kernels().name.decode()


cdef const rbm_kernels *_lookup(str name) except NULL:
    cdef const rbm_kernels *k = NULL
    cdef bytes b = name.encode()
    if rbm_variant_lookup(b, &k) != RBM_VARIANT_OK:
        raise KernelUnavailable(variant_status(name)[1])
    return k


def _c(arr, dtype):
    """A C-contiguous array of exactly ``dtype`` (a copy only when needed)."""
    return np.ascontiguousarray(arr, dtype=dtype)


cdef object _ndarray = np.ndarray
cdef dict _DTYPES = {b"B": np.dtype(np.uint8), b"f": np.dtype(np.float32), b"il": np.dtype(np.int32),
                     b"lq": np.dtype(np.int64)}


cdef int _get_buffer(object a, Py_buffer *view, bytes codes, Py_ssize_t itemsize, int64_t width, int64_t *rows,
                     bint writable, str what) except -1:
    """Acquire a C-contiguous, aligned numpy array of the dtype named by ``codes``: shape
    ``[rows, width]`` (or ``[width]`` = one row) when ``width >= 0``, any 1-D length (in rows)
    when ``width < 0``. The caller releases it. The dtype is checked by identity with numpy's
    builtin dtype object, the rest through the buffer protocol: no numpy headers, no numpy ABI."""
    cdef int flags = PyBUF_C_CONTIGUOUS
    expected = _DTYPES[codes]
    if type(a) is not _ndarray:
        raise TypeError(f"{what} must be a numpy array, got {type(a).__name__}")
    if (<object>a).dtype is not expected:
        raise TypeError(f"{what} must have dtype {expected}, got {(<object>a).dtype}")
    if writable:
        flags |= PyBUF_WRITABLE
    try:
        PyObject_GetBuffer(a, view, flags)
    except (BufferError, TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a C-contiguous{' writable' if writable else ''} array: {exc}") from None
    try:
        if view.itemsize != itemsize:
            raise TypeError(f"{what} has {view.itemsize}-byte elements; {itemsize} are needed")
        if (<uintptr_t>view.buf) % itemsize:
            raise ValueError(f"{what} is not aligned")
        if width < 0:
            if view.ndim != 1:
                raise ValueError(f"{what} must be 1-D, got {view.ndim} dimensions")
            rows[0] = view.shape[0]
        elif view.ndim == 2 and view.shape[1] == width:
            rows[0] = view.shape[0]
        elif view.ndim == 1 and view.shape[0] == width:
            rows[0] = 1
        else:
            shape = tuple(view.shape[i] for i in range(view.ndim))
            raise ValueError(f"{what} must have shape (batch, {width}) or ({width},), got {shape}")
    except BaseException:
        PyBuffer_Release(view)
        raise
    return 0


cdef class Model:
    """A packed model prepared for the C engine (see ``edge_rbmlp.engines.native``).

    ``arrays`` maps names to numpy arrays: ``layer.{i}.*``, ``shortcut.*``,
    ``output.*`` as in the packed file, plus ``shortcut.rowsum`` (Q) and the
    optional sparse tables ``sparse.w0t``, ``sparse.w0_rowpop``, ``sparse.sct``.
    """

    cdef rbm_model m
    cdef const rbm_kernels *K
    cdef rbm_vocab vocab
    cdef object _keep
    cdef object _vocab_keep
    cdef readonly bint has_vocab
    cdef readonly int n_inputs
    cdef readonly int n_out
    cdef readonly int out_kind
    cdef readonly int out_width
    cdef readonly bint has_sparse
    cdef readonly size_t scratch_bytes

    def __init__(self, dict arrays, int n_inputs, list widths, str input_mode, int binarize_threshold,
                 shortcut, int pool_size, str output_activation, str kernel, int input_bits=8):
        cdef int i, T = len(widths)
        cdef char err[256]
        if T < 1 or T > RBM_MAX_LAYERS:
            raise ValueError(f"{T} hidden layers; 1..{RBM_MAX_LAYERS} are supported")
        modes = {"sign": RBM_INPUT_SIGN, "int8": RBM_INPUT_INT8, "planes": RBM_INPUT_PLANES}
        if input_mode not in modes:
            raise ValueError(f"unknown input mode {input_mode!r}")
        if input_mode == "planes" and not 1 <= input_bits <= 8:
            raise ValueError(f"planes input mode with {input_bits} bits (1..8)")
        self._keep = []
        self.K = _lookup(kernel)
        self.m.n_inputs = n_inputs
        self.m.input_mode = modes[input_mode]
        self.m.input_bits = input_bits
        self.m.binarize_threshold = binarize_threshold
        self.m.n_layers = T
        n = n_inputs
        for i in range(T):
            rows = int(widths[i])
            words = (n + 63) // 64
            w = self._arr(arrays[f"layer.{i}.weight"], np.uint64, (rows, words))
            self.m.layers[i].weight = <const uint64_t *><size_t>w.ctypes.data
            self.m.layers[i].rows = rows
            self.m.layers[i].n = n
            self.m.layers[i].words = words
            if i < T - 1:
                self.m.layers[i].threshold = <const int32_t *><size_t>self._arr(
                    arrays[f"layer.{i}.threshold"], np.int32, (rows,)).ctypes.data
                self.m.layers[i].flip = <const uint8_t *><size_t>self._arr(
                    arrays[f"layer.{i}.flip"], np.uint8, (rows,)).ctypes.data
            else:
                self.m.layers[i].scale = <const float *><size_t>self._arr(
                    arrays[f"layer.{i}.scale"], np.float32, (rows,)).ctypes.data
                self.m.layers[i].shift = <const float *><size_t>self._arr(
                    arrays[f"layer.{i}.shift"], np.float32, (rows,)).ctypes.data
            n = rows
        last = n
        self.m.shortcut = RBM_SHORTCUT_NONE
        if shortcut is not None:
            kinds = {"F": RBM_SHORTCUT_F, "Q": RBM_SHORTCUT_Q, "P": RBM_SHORTCUT_P}
            if shortcut not in kinds:
                raise ValueError(f"unknown shortcut {shortcut!r}")
            self.m.shortcut = kinds[shortcut]
            cols = n_inputs // pool_size if shortcut == "P" else n_inputs
            self.m.sc_rows = last
            self.m.sc_cols = cols
            self.m.pool = pool_size
            if shortcut == "Q":
                self.m.sc_weight = <const void *><size_t>self._arr(arrays["shortcut.weight"], np.int8,
                                                                  (last, cols)).ctypes.data
                self.m.sc_scale = <const float *><size_t>self._arr(arrays["shortcut.scale"], np.float32,
                                                                  (last,)).ctypes.data
                self.m.sc_rowsum = <const int32_t *><size_t>self._arr(arrays["shortcut.rowsum"], np.int32,
                                                                     (last,)).ctypes.data
            else:
                self.m.sc_weight = <const void *><size_t>self._arr(arrays["shortcut.weight"], np.float32,
                                                                  (last, cols)).ctypes.data
            self.m.sc_bias = <const float *><size_t>self._arr(arrays["shortcut.bias"], np.float32,
                                                             (last,)).ctypes.data
        n_out = arrays["output.bias"].shape[0] if np.ndim(arrays["output.bias"]) == 1 else -1
        if n_out < 1:
            raise ValueError("output.bias must be a non-empty vector")
        self.m.out_weight = <const float *><size_t>self._arr(arrays["output.weight"], np.float32,
                                                            (n_out, last)).ctypes.data
        self.m.out_bias = <const float *><size_t>self._arr(arrays["output.bias"], np.float32, (n_out,)).ctypes.data
        self.m.n_out = n_out
        if "sparse.w0t" in arrays:
            r0 = int(widths[0])
            tw = (r0 + 63) // 64
            self.m.w0t = <const uint64_t *><size_t>self._arr(arrays["sparse.w0t"], np.uint64,
                                                            (n_inputs, tw)).ctypes.data
            self.m.w0t_words = tw
            self.m.w0_rowpop = <const int32_t *><size_t>self._arr(arrays["sparse.w0_rowpop"], np.int32,
                                                                 (r0,)).ctypes.data
            if shortcut == "Q":
                self.m.sct = <const int8_t *><size_t>self._arr(arrays["sparse.sct"], np.int8,
                                                              (n_inputs, last)).ctypes.data
        if "layer0.pm1" in arrays:
            pm1 = np.asarray(arrays["layer0.pm1"])
            if pm1.ndim != 2 or pm1.shape[1] < n_inputs:
                raise ValueError("layer0.pm1 must be int8 [rows, >= n_inputs]")
            self.m.w0_pm1 = <const int8_t *><size_t>self._arr(pm1, np.int8, (int(widths[0]), pm1.shape[1])).ctypes.data
            self.m.w0_pm1_stride = pm1.shape[1]
        if output_activation == "sigmoid":
            if n_out != 1:
                raise ValueError("a sigmoid output has exactly one unit")
            self.out_kind = RBM_OUT_SIGMOID
        elif output_activation == "softmax":
            self.out_kind = RBM_OUT_SOFTMAX
        else:
            raise ValueError(f"unknown output activation {output_activation!r}")
        if rbm_model_check(&self.m, err, sizeof(err)) != RBM_OK:
            raise ValueError("native engine rejects the model: " + err.decode(errors="replace"))
        self.n_inputs = n_inputs
        self.n_out = n_out
        self.out_width = rbm_output_width(&self.m, self.out_kind)
        self.has_sparse = self.m.w0t != NULL
        self.scratch_bytes = self.m.scratch_bytes

    def _arr(self, a, dtype, shape):
        a = np.asarray(a)
        if a.dtype != np.dtype(dtype) or tuple(a.shape) != tuple(shape):
            raise ValueError(f"expected {np.dtype(dtype)} {tuple(shape)}, got {a.dtype} {tuple(a.shape)}")
        a = np.ascontiguousarray(a)
        self._keep.append(a)
        return a

    @property
    def kernel(self):
        return self.K.name.decode()

    def set_kernel(self, str name):
        self.K = _lookup(name)

    cdef int _run(self, object q, object out, int kind) except -1:
        # the hot path: two buffer acquisitions, shape checks, one C call without the GIL
        cdef int64_t batch, out_batch, width = rbm_output_width(&self.m, kind)
        cdef int rc = RBM_OK
        cdef Py_buffer qv, ov
        _get_buffer(q, &qv, b"B", 1, self.n_inputs, &batch, False, "input")
        try:
            _get_buffer(out, &ov, b"f", 4, width, &out_batch, True, "output")
            try:
                if out_batch != batch:
                    raise ValueError(f"output has {out_batch} rows for {batch} inputs")
                if batch > 0:
                    with nogil:
                        rc = rbm_forward(&self.m, self.K, <const uint8_t *>qv.buf, batch, self.n_inputs,
                                         <float *>ov.buf, kind)
            finally:
                PyBuffer_Release(&ov)
        finally:
            PyBuffer_Release(&qv)
        if rc != RBM_OK:
            raise RuntimeError(f"native forward failed (code {rc})")
        return 0

    def logits_into(self, q, out):
        """Logits of ``q uint8 [batch, n_inputs]`` into ``out float32 [batch, n_out]``."""
        self._run(q, out, RBM_OUT_LOGITS)
        return out

    def predict_into(self, q, out):
        """Class probabilities of ``q`` into ``out float32 [batch, classes]`` (softmax, or ``[1-p, p]``)."""
        self._run(q, out, self.out_kind)
        return out


    cdef int _run_sparse(self, object idx, object offsets, object out, int kind) except -1:
        cdef int64_t n_idx, n_off, out_batch, batch
        cdef int rc = RBM_OK
        cdef int32_t dummy = 0
        cdef const int32_t *ip
        cdef const int64_t *opp
        cdef Py_buffer iv, fv, ov
        if not self.has_sparse:
            raise ValueError("this model has no sparse input tables (only text models have them)")
        _get_buffer(idx, &iv, b"il", 4, -1, &n_idx, False, "indices")
        try:
            _get_buffer(offsets, &fv, b"lq", 8, -1, &n_off, False, "offsets")
            try:
                _get_buffer(out, &ov, b"f", 4, rbm_output_width(&self.m, kind), &out_batch, True, "output")
                try:
                    ip = <const int32_t *>iv.buf if n_idx > 0 else &dummy
                    opp = <const int64_t *>fv.buf
                    batch = n_off - 1
                    if batch < 0:
                        raise ValueError("offsets must have batch + 1 entries")
                    if opp[0] != 0 or opp[batch] > n_idx:
                        raise ValueError(f"offsets must start at 0 and end at most at len(indices) = {n_idx}")
                    if out_batch != batch:
                        raise ValueError(f"output has {out_batch} rows for {batch} samples")
                    if batch > 0:
                        with nogil:
                            rc = rbm_forward_sparse(&self.m, self.K, ip, opp, batch, <float *>ov.buf, kind)
                finally:
                    PyBuffer_Release(&ov)
            finally:
                PyBuffer_Release(&fv)
        finally:
            PyBuffer_Release(&iv)
        if rc == RBM_EINDEX:
            raise ValueError(f"indices must be strictly increasing within a sample and in [0, {self.n_inputs}); "
                             "offsets must not decrease")
        if rc != RBM_OK:
            raise RuntimeError(f"native sparse forward failed (code {rc})")
        return 0

    def sparse_logits_into(self, idx, offsets, out):
        """Logits of multi-hot inputs given as active indices (sample b: idx[offsets[b]:offsets[b+1]])."""
        self._run_sparse(idx, offsets, out, RBM_OUT_LOGITS)
        return out

    def sparse_predict_into(self, idx, offsets, out):
        self._run_sparse(idx, offsets, out, self.out_kind)
        return out


    def set_vocab(self, list words):
        """Build the C vocabulary hash table (word i = input i) for :meth:`predict_text_into`."""
        cdef int64_t cap = 2
        cdef int rc
        if len(words) != self.n_inputs:
            raise ValueError(f"{len(words)} words for {self.n_inputs} inputs")
        encoded = [w.encode("utf-8") for w in words]
        blob = b"".join(encoded)
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e) for e in encoded])
        while cap < 2 * len(encoded):
            cap *= 2
        table = np.empty(cap, dtype=np.int32)
        cdef const char *bp = blob
        cdef int64_t[::1] ov = offsets
        cdef int32_t[::1] tv = table
        rc = rbm_vocab_init(&self.vocab, bp, &ov[0], len(encoded), &tv[0], cap)
        if rc != RBM_OK:
            raise ValueError("cannot build the vocabulary table")
        self._vocab_keep = (blob, offsets, table)
        self.has_vocab = True

    def text_indices(self, bytes text):
        """Sorted unique vocabulary indices of ASCII ``text`` (int32), or None for non-ASCII text."""
        cdef int32_t k
        if not self.has_vocab:
            raise ValueError("no vocabulary (set_vocab)")
        cdef Py_ssize_t n = len(text)
        cdef const char *tp = text
        idx = np.empty(min(n // 2 + 1, self.n_inputs), dtype=np.int32)
        bitmap = np.empty((self.n_inputs + 63) // 64, dtype=np.uint64)
        cdef int32_t[::1] iv = idx
        cdef uint64_t[::1] bv = bitmap
        with nogil:
            k = rbm_text_indices_ascii(&self.vocab, tp, n, &bv[0], &iv[0], iv.shape[0])
        if k == RBM_ENONASCII:
            return None
        if k < 0:
            raise RuntimeError(f"text tokenizer failed (code {k})")
        return idx[:k].copy()

    def predict_text_into(self, bytes text, out):
        """Tokenize ASCII ``text`` and write its probabilities into ``out`` (one call, GIL released).
        Returns the number of active vocabulary words, or -1 when the text is not ASCII (nothing written)."""
        cdef int rc
        cdef int32_t k = 0
        cdef int64_t rows
        cdef Py_buffer ov
        if not self.has_vocab:
            raise ValueError("no vocabulary (set_vocab)")
        cdef Py_ssize_t n = len(text)
        cdef const char *tp = text
        _get_buffer(out, &ov, b"f", 4, self.out_width, &rows, True, "output")
        try:
            if rows != 1:
                raise ValueError("output must hold exactly one row")
            with nogil:
                rc = rbm_predict_text_ascii(&self.m, self.K, &self.vocab, tp, n, <float *>ov.buf, self.out_kind, &k)
        finally:
            PyBuffer_Release(&ov)
        if rc == RBM_ENONASCII:
            return -1
        if rc != RBM_OK:
            raise RuntimeError(f"native text prediction failed (code {rc})")
        return k


# -- single kernels, for tests and microbenchmarks ----------------------------------------------

def kernel_pack_ge_u8(str variant, const uint8_t[::1] q, int t):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t n = q.shape[0]
    if n < 1 or t < 0 or t > 256:
        raise ValueError("need n >= 1 and t in [0, 256]")
    out = np.empty((n + 63) // 64, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    with nogil:
        K.pack_ge_u8(&q[0], n, t, &o[0])
    return out


def kernel_bmv(str variant, const uint64_t[:, ::1] W, const uint64_t[::1] x, int n, int repeat=1):
    """``acc[o] = n - 2 popcount(x ^ W[o])``; ``repeat`` runs it several times (microbenchmarks)."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], words = W.shape[1], r
    if words != (n + 63) // 64 or x.shape[0] != words or rows < 1 or n < 1 or repeat < 1:
        raise ValueError("shape mismatch")
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        for r in range(repeat):
            K.bmv(&W[0, 0], rows, words, &x[0], n, &o[0])
    return out


def kernel_threshold_pack(str variant, const int32_t[::1] acc, const int32_t[::1] thr, const uint8_t[::1] flip):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = acc.shape[0]
    if rows < 1 or thr.shape[0] != rows or flip.shape[0] != rows:
        raise ValueError("shape mismatch")
    out = np.empty((rows + 63) // 64, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    with nogil:
        K.threshold_pack(&acc[0], &thr[0], &flip[0], rows, &o[0])
    return out


def kernel_u8_bmv(str variant, const uint64_t[:, ::1] W, const uint8_t[::1] q):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], words = W.shape[1], n = q.shape[0]
    if n < 1 or rows < 1 or words != (n + 63) // 64:
        raise ValueError("shape mismatch")
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        K.u8_bmv(&W[0, 0], rows, words, &q[0], n, &o[0])
    return out


def kernel_pack_planes_u8(str variant, const uint8_t[::1] q, int k):
    """``planes [k, words]``: plane ``b`` holds bit ``8 - k + b`` of every ``q[i]``."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t n = q.shape[0]
    if n < 1 or not 1 <= k <= 8:
        raise ValueError("need n >= 1 and k in [1, 8]")
    out = np.empty((k, (n + 63) // 64), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    with nogil:
        K.pack_planes_u8(&q[0], n, k, &o[0, 0])
    return out


def kernel_planes_bmv(str variant, const uint64_t[:, ::1] W, const uint64_t[:, ::1] planes, int repeat=1):
    """``acc[o] = sum_b 2^b (2 popcount(planes[b] & W[o]) - popcount(planes[b]))``."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], words = W.shape[1], k = planes.shape[0], r
    if rows < 1 or words < 1 or not 1 <= k <= 8 or planes.shape[1] != words or repeat < 1:
        raise ValueError("shape mismatch")
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        for r in range(repeat):
            K.planes_bmv(&W[0, 0], rows, words, &planes[0, 0], k, &o[0])
    return out


def kernel_s8u8_mv(str variant, const int8_t[:, ::1] W, const uint8_t[::1] q):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], n = W.shape[1]
    if n < 1 or rows < 1 or q.shape[0] != n:
        raise ValueError("shape mismatch")
    rowsum = np.asarray(W, dtype=np.int64).sum(axis=1).astype(np.int32)
    cdef int32_t[::1] rs = rowsum
    tmp = np.empty(2 * n + 64, dtype=np.uint8)
    cdef uint8_t[::1] t = tmp
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        K.s8u8_mv(&W[0, 0], &rs[0], rows, n, &q[0], &t[0], &o[0])
    return out


ctypedef fused mv_input:
    float
    uint8_t


cdef _float_mv(str variant, const float[:, ::1] W, const mv_input[::1] x, const float[::1] bias):
    """``out = bias + W @ x``: f32_mv for float x, f32u8_mv for uint8 x."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], n = W.shape[1]
    if n < 1 or rows < 1 or x.shape[0] != n or bias.shape[0] != rows:
        raise ValueError("shape mismatch")
    out = np.empty(rows, dtype=np.float32)
    cdef float[::1] o = out
    with nogil:
        if mv_input is float:
            K.f32_mv(&W[0, 0], rows, n, &x[0], &bias[0], &o[0])
        else:
            K.f32u8_mv(&W[0, 0], rows, n, &x[0], &bias[0], &o[0])
    return out


def kernel_f32_mv(str variant, const float[:, ::1] W, const float[::1] x, const float[::1] bias):
    return _float_mv(variant, W, x, bias)


def kernel_f32u8_mv(str variant, const float[:, ::1] W, const uint8_t[::1] q, const float[::1] bias):
    return _float_mv(variant, W, q, bias)


def kernel_maxpool_u8(str variant, const uint8_t[::1] q, int pool):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t m = q.shape[0] // pool if pool >= 1 else 0
    if pool < 1 or m < 1:
        raise ValueError("need pool >= 1 and at least one window")
    out = np.empty(m, dtype=np.uint8)
    cdef uint8_t[::1] o = out
    with nogil:
        K.maxpool_u8(&q[0], m, pool, &o[0])
    return out


cdef int _check_indices(const int32_t[::1] idx, int32_t n) except -1:
    """Every idx[j] in [0, n): ValueError otherwise."""
    cdef Py_ssize_t j
    for j in range(idx.shape[0]):
        if idx[j] < 0 or idx[j] >= n:
            raise ValueError("index out of range")
    return 0


def kernel_sparse_bitcount(str variant, const uint64_t[:, ::1] WT, int rows, const int32_t[::1] idx):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t n = WT.shape[0], tw = WT.shape[1], k = idx.shape[0]
    cdef int32_t dummy = 0
    if rows < 1 or tw != (rows + 63) // 64:
        raise ValueError("shape mismatch")
    _check_indices(idx, n)
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    cdef const int32_t *ip = &idx[0] if k > 0 else &dummy
    with nogil:
        K.sparse_bitcount(&WT[0, 0], tw, rows, ip, k, &o[0])
    return out


def kernel_sparse_s8sum(str variant, const int8_t[:, ::1] WTq, const int32_t[::1] idx):
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t n = WTq.shape[0], rows = WTq.shape[1], k = idx.shape[0]
    cdef int32_t dummy = 0
    if rows < 1:
        raise ValueError("shape mismatch")
    _check_indices(idx, n)
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    cdef const int32_t *ip = &idx[0] if k > 0 else &dummy
    with nogil:
        K.sparse_s8sum(&WTq[0, 0], rows, ip, k, &o[0])
    return out


def kernel_f32_mm(str variant, const float[:, ::1] W, const float[:, ::1] X, const float[::1] bias):
    """``out[t] = W @ X[t] + bias`` for every row ``t`` of ``X`` (one tile)."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = W.shape[0], n = W.shape[1], T = X.shape[0]
    if n < 1 or rows < 1 or T < 1 or X.shape[1] != n or bias.shape[0] != rows:
        raise ValueError("shape mismatch")
    out = np.empty((T, rows), dtype=np.float32)
    cdef float[:, ::1] o = out
    with nogil:
        K.f32_mm(&W[0, 0], rows, n, &X[0, 0], T, &bias[0], &o[0, 0])
    return out


def kernel_u8_pm1_mv(str variant, const int8_t[:, ::1] Wpm1, const uint8_t[::1] q):
    """``acc[o] = sum_i Wpm1[o, i] * q[i]`` over ``i < len(q)`` (variants without this kernel: KernelUnavailable)."""
    cdef const rbm_kernels *K = _lookup(variant)
    cdef int32_t rows = Wpm1.shape[0], stride = Wpm1.shape[1], n = q.shape[0]
    if K.u8_pm1_mv == NULL:
        raise KernelUnavailable(f"kernel {variant!r} has no expanded int8 input layer")
    if n < 1 or rows < 1 or stride < n:
        raise ValueError("shape mismatch")
    out = np.empty(rows, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        K.u8_pm1_mv(&Wpm1[0, 0], rows, stride, &q[0], n, 1, n, &o[0])
    return out


def preprocess_digit_into(const uint8_t[:, :, :] picture, uint8_t[:, ::1] out, int box):
    """The digit pipeline (native/digit.c) of a uint8 ``H x W x C`` picture (C = 1, 3 or 4; any
    strides, so a region of a frame needs no copy) into ``out`` (``out_h x out_w``), GIL released.
    Returns ``(blank, inverted, passthrough, components, kept, far, frames, x, y, w, h, peak)``."""
    cdef rbm_picture p
    cdef rbm_digit_info info
    cdef int rc
    if picture.shape[0] < 1 or picture.shape[1] < 1 or picture.shape[2] not in (1, 3, 4):
        raise ValueError(f"picture must be H x W x 1/3/4 with H, W >= 1, got "
                         f"{picture.shape[0]}x{picture.shape[1]}x{picture.shape[2]}")
    if picture.strides[0] < 0 or picture.strides[1] < 0 or picture.strides[2] < 0:
        raise ValueError("picture strides must be positive (no reversed views)")
    if out.shape[0] < 1 or out.shape[1] < 1 or box < 1 or box > out.shape[0] or box > out.shape[1]:
        raise ValueError(f"box {box} must fit the output {out.shape[0]}x{out.shape[1]}")
    p.data = &picture[0, 0, 0]
    p.rows = picture.shape[0]
    p.cols = picture.shape[1]
    p.channels = <int32_t>picture.shape[2]
    p.row_stride = picture.strides[0]
    p.col_stride = picture.strides[1]
    p.chan_stride = picture.strides[2]
    with nogil:
        rc = rbm_digit_pipeline(&p, <int>out.shape[0], <int>out.shape[1], box, &out[0, 0], &info)
    if rc == -2:
        raise MemoryError("the digit pipeline could not allocate its work buffers")
    if rc != 0:
        raise ValueError(f"the digit pipeline refused the picture (code {rc})")
    return (info.blank, info.inverted, info.passthrough, info.components, info.kept, info.far, info.frames,
            info.box[0], info.box[1], info.box[2], info.box[3], info.peak)
