"""The native backend against the reference engine (the definition of correct), on every kernel
variant this machine runs: random models of awkward shapes, both input modes, every shortcut,
dense and sparse (text) inputs, batch 0 / 1 / 7 / 1000, all-zero and all-255 inputs."""

import threading

import numpy as np
import pytest

from edge_rbmlp import _native
from edge_rbmlp.arch import parse
from edge_rbmlp.engines import create
from edge_rbmlp.bits import pack_bits, unpack_signs
from edge_rbmlp.engines.base import BackendUnavailable, logits_to_probabilities
from edge_rbmlp.fold import apply_thresholds
from edge_rbmlp.engines.native import KERNEL_ENV, KernelUnavailable, NativeEngine, available_kernels
from edge_rbmlp.random_model import random_packed_model
from edge_rbmlp.text import TextError
from edge_rbmlp.engines.reference import ReferenceEngine

from native_util import variant_params

# (notation, n_inputs, n_classes, input kind, input mode, pool size)
CASES = [
    ("B-63N,F", 65, 3, "vector", "sign", 8),
    ("B-1", 1, 2, "vector", "sign", 8),
    ("B-88N,P", 784, 10, "image", "sign", 8),
    ("B-130N,65,PN", 63, 4, "vector", "sign", 9),
    ("B-65,130N,1,88N,QN", 130, 5, "vector", "sign", 8),
    ("B-64N,64N,64N,64", 64, 2, "vector", "sign", 8),
    ("B-D128N,D88N,PN", 784, 10, "image", "sign", 8),
    ("B-D128N,D88N,Q", 784, 10, "image", "sign", 8),
    ("B-63N,88N,Q", 200, 7, "vector", "int8", 8),
    ("B-65,F", 100, 1, "vector", "int8", 8),
    ("B-130N,1,63,P", 257, 3, "vector", "int8", 4),
    ("B-88", 33, 10, "vector", "int8", 8),
    # planes input mode (input bits after the mode): awkward widths, every shortcut
    ("B-D256N,D64N,PN", 784, 10, "image", "planes", 8, 2),
    ("B-63N,88N,Q", 200, 7, "vector", "planes", 8, 3),
    ("B-65,F", 100, 1, "vector", "planes", 8, 1),
    ("B-130N,1,63,P", 257, 3, "vector", "planes", 4, 4),
    ("B-5", 3, 2, "vector", "planes", 8, 8),
]
TEXT_CASES = [
    ("B-D32N,D16N,D8N,Q", 1000, 1, "sign"),
    ("B-64,F", 300, 2, "sign"),
    ("B-65N,P", 520, 1, "sign"),
    ("B-33,Q", 700, 3, "int8"),
    ("B-130", 129, 1, "sign"),
]


def make_model(notation, n, classes, kind, mode, pool, bits=2, seed=0):
    return random_packed_model(parse(notation, input_mode=mode, pool_size=pool, input_bits=bits), n, classes,
                               seed=seed, input_kind=kind)


def inputs(rng, n, kind, batch):
    if kind == "text":
        q = (rng.random((batch, n)) < 0.03).astype(np.uint8)
    else:
        q = rng.integers(0, 256, (batch, n)).astype(np.uint8)
    if batch >= 3:
        q[0] = 0
        q[1] = 1 if kind == "text" else 255
    return q


def assert_same_outputs(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5 * scale)
    if ref.shape[1] > 1 and ref.shape[0]:
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * scale
        assert np.array_equal(got.argmax(axis=1)[clear], ref.argmax(axis=1)[clear])
    else:
        assert np.array_equal(got[:, 0] >= 0, ref[:, 0] >= 0) or np.all(np.abs(ref) < 1e-3 * scale)


@pytest.mark.parametrize("variant", variant_params())
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[4]}{c[6] if len(c) > 6 else ''}" for c in CASES])
def test_dense_inputs_match_reference(variant, case):
    model = make_model(*case)
    ref = ReferenceEngine(model)
    eng = NativeEngine(model, kernel=variant)
    assert eng.kernel == variant
    rng = np.random.default_rng(hash(case) % (1 << 32))
    for batch in (1, 7):
        q = inputs(rng, model.n_inputs, case[3], batch)
        expect = ref.logits_uint8(q)
        assert_same_outputs(eng.logits_uint8(q), expect)
        probs = eng.predict_uint8(q)
        np.testing.assert_allclose(probs, logits_to_probabilities(expect, model.output_activation),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", variant_params())
@pytest.mark.parametrize("case", [CASES[6], CASES[8], CASES[4], CASES[12], CASES[15]],
                         ids=["mnist-P", "int8-Q", "deep-QN", "planes2-P", "planes4-P"])
def test_batch_1000_and_extremes(variant, case):
    model = make_model(*case, seed=3)
    ref = ReferenceEngine(model)
    eng = NativeEngine(model, kernel=variant)
    rng = np.random.default_rng(5)
    q = inputs(rng, model.n_inputs, case[3], 1000)
    q[2:10] = np.arange(8, dtype=np.uint8)[:, None] * 32 + 127  # around the 128 binarization threshold
    assert_same_outputs(eng.logits_uint8(q), ref.logits_uint8(q))
    for value in (0, 255):
        q = np.full((3, model.n_inputs), value, np.uint8)
        assert_same_outputs(eng.logits_uint8(q), ref.logits_uint8(q))


@pytest.mark.parametrize("variant", variant_params())
def test_planes_layer0_accumulators_exact(variant):
    """The planes layer's integer accumulators through the whole engine: a one-layer model whose
    logits are the accumulators themselves (scale 1, shift 0, identity output) equals
    sum (q >> (8 - k)) * (+-1) exactly, for every k."""
    for k in range(1, 9):
        model = make_model("B-37", 200, 37, "vector", "planes", 8, bits=k, seed=k)
        t = model.tensors
        t["layer.0.scale"] = np.ones(37, np.float32)
        t["layer.0.shift"] = np.zeros(37, np.float32)
        t["output.weight"] = np.eye(37, dtype=np.float32)
        t["output.bias"] = np.zeros(37, np.float32)
        rng = np.random.default_rng(k)
        q = rng.integers(0, 256, (6, 200)).astype(np.uint8)
        q[0] = 255
        acc = next(ReferenceEngine(model).hidden_accumulators(q))[1]
        assert np.array_equal(acc, (q >> (8 - k)).astype(np.int64) @ unpack_signs(t["layer.0.weight"], 200).T)
        got = NativeEngine(model, kernel=variant).logits_uint8(q)
        assert np.array_equal(got, acc.astype(np.float32)), k


def test_planes_model_refuses_the_sparse_path():
    model = make_model("B-64,F", 100, 3, "vector", "planes", 8, bits=2)
    with pytest.raises(ValueError, match="sparse"):
        NativeEngine(model, kernel="portable", sparse=True)


@pytest.mark.parametrize("variant", variant_params())
@pytest.mark.parametrize("case", TEXT_CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in TEXT_CASES])
def test_text_sparse_and_dense_match_reference(variant, case):
    notation, n, classes, mode = case
    model = make_model(notation, n, classes, "text", mode, 8, seed=11)
    ref = ReferenceEngine(model)
    eng = NativeEngine(model, kernel=variant)
    rng = np.random.default_rng(n)
    q = inputs(rng, n, "text", 9)
    expect = ref.logits_uint8(q)
    assert_same_outputs(eng.logits_uint8(q), expect)
    # the sparse path: active indices of every row
    rows = [np.flatnonzero(r).astype(np.int32) for r in q]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    idx = np.concatenate(rows).astype(np.int32)
    assert_same_outputs(eng.logits_indices(idx, offsets), expect)
    for r, row in enumerate(rows):
        assert_same_outputs(eng.logits_indices(row), expect[r:r + 1])
    # raw text through the sparse path
    words = [f"w{i}" for i in rng.choice(n, 40, replace=False)]
    text = "<br />".join(words) + " unknownword " + words[0].upper()
    got, want = eng.predict_text(text), ref.predict_text(text)
    assert got.class_index == want.class_index or abs(want.probabilities[0] - 0.5) < 1e-4
    np.testing.assert_allclose(got.probabilities, want.probabilities, rtol=1e-4, atol=1e-5)
    # an empty text has no words: the engines agree on it, and predict_text refuses it (everywhere)
    np.testing.assert_allclose(eng.text_probabilities([""])[0], ref.text_probabilities([""])[0], rtol=1e-4, atol=1e-5)
    for e in (eng, ref):
        with pytest.raises(TextError, match="empty"):
            e.predict_text("  \n ")


@pytest.mark.parametrize("variant", variant_params())
def test_text_batch_1000_sparse(variant):
    model = make_model("B-D32N,D16N,D8N,Q", 2000, 1, "text", "sign", 8, seed=2)
    eng = NativeEngine(model, kernel=variant)
    rng = np.random.default_rng(0)
    q = inputs(rng, 2000, "text", 1000)
    rows = [np.flatnonzero(r).astype(np.int32) for r in q]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    assert_same_outputs(eng.logits_indices(np.concatenate(rows), offsets), ReferenceEngine(model).logits_uint8(q))


@pytest.mark.parametrize("variant", variant_params())
def test_hidden_bits_match_reference(variant):
    """The thresholds' bits layer by layer: the C kernels on the reference's own inputs."""
    model = make_model("B-65,130N,1,88N,QN", 130, 5, "vector", "sign", 8, seed=4)
    t = model.tensors
    q = inputs(np.random.default_rng(9), 130, "vector", 20)
    ref = ReferenceEngine(model)
    inputs_per_layer = model.layer_inputs()
    x_bits = pack_bits(q >= model.input_spec.binarize_threshold)
    for i, acc in ref.hidden_accumulators(q):
        n = inputs_per_layer[i]
        got = np.stack([_native.kernel_bmv(variant, np.ascontiguousarray(t[f"layer.{i}.weight"]), x, n)
                        for x in x_bits])
        assert np.array_equal(got, acc), i
        if f"layer.{i}.threshold" in t:
            bits = np.stack([_native.kernel_threshold_pack(variant, a.astype(np.int32),
                                                           np.ascontiguousarray(t[f"layer.{i}.threshold"]),
                                                           np.ascontiguousarray(t[f"layer.{i}.flip"]))
                             for a in got])
            assert np.array_equal(bits, pack_bits(apply_thresholds(acc, t[f"layer.{i}.threshold"],
                                                                   t[f"layer.{i}.flip"])))
            x_bits = bits


@pytest.mark.parametrize("variant", variant_params())
@pytest.mark.parametrize("notation", ["B-D128N,D88N,PN", "B-63N,F", "B-65,Q", "B-33"])
def test_batch_results_equal_single_sample_results(variant, notation):
    """Batching (tiles of the float shortcut) never changes a sample's output, bit for bit."""
    model = make_model(notation, 784, 10, "image", "sign", 8, seed=6)
    eng = NativeEngine(model, kernel=variant)
    q = inputs(np.random.default_rng(2), 784, "image", 11)
    batch = eng.logits_uint8(q)
    for i in range(len(q)):
        assert np.array_equal(eng.logits_uint8(q[i:i + 1])[0], batch[i])


def test_empty_batch(mnist_like_model):
    eng = NativeEngine(mnist_like_model)
    out = eng.logits_uint8(np.zeros((0, 784), np.uint8))
    assert out.shape == (0, 10) and out.dtype == np.float32
    assert eng.predict_uint8(np.zeros((0, 784), np.uint8)).shape == (0, 10)


def test_into_paths_write_the_callers_array(mnist_like_model):
    eng = NativeEngine(mnist_like_model)
    q = inputs(np.random.default_rng(0), 784, "image", 4)
    out = np.full((4, 10), np.nan, np.float32)
    assert eng.logits_into(q, out) is not None
    np.testing.assert_allclose(out, ReferenceEngine(mnist_like_model).logits_uint8(q), rtol=1e-4, atol=1e-4)
    probs = np.empty((4, 10), np.float32)
    eng.predict_into(q, probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_shapes_are_checked(mnist_like_model, imdb_like_model):
    eng = NativeEngine(mnist_like_model)
    with pytest.raises(ValueError):
        eng.logits_into(np.zeros((2, 783), np.uint8), np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError):
        eng.logits_into(np.zeros((2, 784), np.uint8), np.zeros((3, 10), np.float32))
    with pytest.raises(ValueError):
        eng.logits_into(np.zeros((2, 784), np.uint8), np.zeros((2, 9), np.float32))
    with pytest.raises((ValueError, TypeError)):
        eng.logits_into(np.zeros((2, 784), np.float32), np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError):
        eng.logits_indices(np.array([1, 2], np.int32))  # not a text model
    text = NativeEngine(imdb_like_model)
    for bad in ([5, 5], [7, 3], [-1], [10000]):
        with pytest.raises(ValueError):
            text.logits_indices(np.array(bad, np.int32))
    with pytest.raises(ValueError):
        text.logits_indices(np.array([1, 2, 3], np.int32), np.array([0, 2, 5], np.int64))  # past the end
    with pytest.raises(ValueError):
        text.logits_indices(np.array([1, 2, 3], np.int32), np.array([1, 3], np.int64))  # not from 0
    with pytest.raises(ValueError):
        text.logits_indices(np.array([1, 2, 3], np.int32), np.array([0, 3, 2], np.int64))  # decreasing


def test_forcing_kernels(monkeypatch, mnist_like_model):
    names = _native.variant_names()
    assert {"portable", "avx2", "neon", "neon_dotprod"} <= set(names)
    assert "portable" in available_kernels()
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    assert NativeEngine(mnist_like_model).kernel == _native.best_variant()
    for name in names:
        ok, reason = _native.variant_status(name)
        monkeypatch.setenv(KERNEL_ENV, name)
        if ok:
            assert NativeEngine(mnist_like_model).kernel == name
        else:
            with pytest.raises(KernelUnavailable, match="needs"):
                NativeEngine(mnist_like_model)
            assert reason
    monkeypatch.setenv(KERNEL_ENV, "sse9")
    with pytest.raises(KernelUnavailable, match="unknown kernel"):
        NativeEngine(mnist_like_model)
    with pytest.raises(BackendUnavailable):  # through the registry too, and never a silent fallback
        create(mnist_like_model, "native")
    monkeypatch.setenv(KERNEL_ENV, "portable")
    assert create(mnist_like_model, "native").kernel == "portable"
    assert create(mnist_like_model, "auto").kernel == "portable"


def test_best_kernel_is_an_optimized_one_where_possible():
    import platform

    machine = platform.machine().lower()
    best = _native.best_variant()
    if machine in ("x86_64", "amd64") and _native.variant_status("avx2")[0]:
        assert best == "avx2"
    if machine in ("aarch64", "arm64"):
        assert best in ("neon", "neon_dotprod")
    if machine.startswith("armv7") or machine.startswith("armv8l"):
        # 32-bit ARM: neon exactly when the kernel reports NEON in AT_HWCAP (HWCAP_NEON, bit 12), else
        # portable; neon_dotprod is AArch64 code and never available here
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        has_neon = bool(libc.getauxval(16) & (1 << 12))  # AT_HWCAP = 16
        assert best == ("neon" if has_neon else "portable")
        assert _native.variant_status("neon")[0] == has_neon
        assert not _native.variant_status("neon_dotprod")[0]


def test_threads_share_one_engine(mnist_like_model):
    eng = NativeEngine(mnist_like_model)
    q = inputs(np.random.default_rng(1), 784, "image", 64)
    expect = eng.logits_uint8(q)
    errors = []

    def work(seed):
        out = np.empty((1, 10), np.float32)
        order = np.random.default_rng(seed).permutation(64)
        for _ in range(5):
            for i in order:
                eng.logits_into(q[i:i + 1], out)
                if not np.array_equal(out[0], expect[i]):
                    errors.append((seed, i))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


TRICKY_TEXTS = [
    "", "   ", "w1", "W1 w2 W3", "don't can't w5's w6'w7 'w8' w9'' ''w10", "w11<br />w12<br/>w13",
    "w14 <b>w15</b> <a href='x'>w16</a> <<w17>> <w18 w19", "<" + "x" * 199 + ">w20", "<" + "x" * 200 + ">w21",
    "<" + "x" * 201 + ">w22 w23", "w24_w25 w26-w27 w28.w29,w30;w31", "123 w32 4w33 w34'", "w35'<i>w36",
    "tab\tw37\nw38\r\nw39", "<w40", "w41>", "<>w42<>", "w43'''w44", "a'b'c w45", "\x00w46\x7f",
]


@pytest.mark.parametrize("variant", variant_params(include_portable=False) + [pytest.param("portable")])
def test_c_tokenizer_matches_python(variant):
    from edge_rbmlp.text import TextEncoder

    model = make_model("B-D32N,D16N,D8N,Q", 300, 1, "text", "sign", 8, seed=5)
    vocab = list(model.vocab)
    vocab[3] = "don't"
    vocab[4] = "123"
    vocab[5] = "a'b'c"
    vocab[6] = "x" * 10
    vocab[7] = "br"
    vocab[8] = "caf\u00e9"  # never matches ASCII text, must not break the table
    model.vocab = vocab
    eng = NativeEngine(model, kernel=variant)
    ref = ReferenceEngine(model)
    enc = TextEncoder(vocab)
    rng = np.random.default_rng(0)
    texts = list(TRICKY_TEXTS)
    pieces = vocab[:60] + ["<br />", "'", " ", "<", ">", "X", "Don't", "W12", ",", "_", "\n", "<p>", "''"]
    for _ in range(300):
        texts.append("".join(rng.choice(pieces) + rng.choice(["", " ", "  "]) for _ in range(rng.integers(0, 40))))
    for text in texts:
        assert np.array_equal(eng.text_indices(text), enc.indices(text)), repr(text)
    for text in texts[:80]:
        got, want = eng.text_probabilities([text])[0], ref.text_probabilities([text])[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # non-ASCII text takes the Python tokenizer, with the same result as the reference
    for text in ["caf\u00e9 w1 w2", "\uff37\uff11 w3", "w4 \u00e9l\u00e8ve w5"]:
        assert np.array_equal(eng.text_indices(text), enc.indices(text))
        np.testing.assert_allclose(eng.text_probabilities([text])[0], ref.text_probabilities([text])[0],
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eng.predict_text(b"w1 w2").probabilities, ref.predict_text("w1 w2").probabilities,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", variant_params())
def test_wide_model_with_heap_scratch(variant):
    """Scratch beyond the 48 KiB stack buffer comes from one heap block per call: same results."""
    model = make_model("B-3000N,2000,PN", 100, 3, "vector", "sign", 4, seed=12)
    eng = NativeEngine(model, kernel=variant)
    assert eng.scratch_bytes > 48 * 1024
    q = inputs(np.random.default_rng(3), 100, "vector", 6)
    assert_same_outputs(eng.logits_uint8(q), ReferenceEngine(model).logits_uint8(q))
    assert_same_outputs(eng.logits_uint8(q[:1]), ReferenceEngine(model).logits_uint8(q[:1]))


def test_every_prediction_carries_its_time_split():
    import io

    from PIL import Image

    from edge_rbmlp.models import load_model

    eng = NativeEngine(load_model("mnist"))
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="PNG")
    for item, decoded in ((buf.getvalue(), True), (digit, False)):
        t = eng.predict_image(item).timing_us
        assert set(t) == {"decode_us", "preprocess_us", "inference_us", "total_us"}
        assert (t["decode_us"] > 0) == decoded and t["preprocess_us"] > 0 and t["inference_us"] > 0
        assert t["total_us"] == pytest.approx(t["decode_us"] + t["preprocess_us"] + t["inference_us"])
    blank = eng.predict_image(np.full((40, 40), 255, np.uint8))
    assert blank.label is None and blank.class_index is None and "no digit" in blank.reason
    assert blank.input is not None and not blank.input.any()
