"""The native engine on the bundled models over their full test sets, against the reference
engine: same classes everywhere, logits to float tolerance, every kernel variant this machine
runs. Skipped (with the reason) when the bundled models or the data cache are absent."""

import numpy as np
import pytest

from edge_rbmlp.models import bundled_models
from edge_rbmlp.model_file import load_packed_model
from edge_rbmlp.engines.native import NativeEngine
from edge_rbmlp.engines.reference import ReferenceEngine

from native_util import variant_params

CHUNK = 1000
_ENCODED = {}


def _model(name):
    path = bundled_models().get(name)
    if path is None:
        pytest.skip(f"no bundled model {name!r} in edge_rbmlp/models/ (the training helper ships it)")
    return load_packed_model(path)


def _check(native_logits, ref_logits):
    scale = max(1.0, float(np.abs(ref_logits).max()))
    np.testing.assert_allclose(native_logits, ref_logits, rtol=1e-4, atol=2e-5 * scale)
    if ref_logits.shape[1] > 1:
        top2 = np.sort(ref_logits, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * scale
        assert np.array_equal(native_logits.argmax(1)[clear], ref_logits.argmax(1)[clear])
    else:
        clear = np.abs(ref_logits[:, 0]) > 1e-3 * scale
        assert np.array_equal((native_logits[:, 0] >= 0)[clear], (ref_logits[:, 0] >= 0)[clear])


@pytest.mark.parametrize("variant", variant_params())
def test_mnist_full_test_set(variant):
    from edge_rbmlp.datasets import DatasetMissing, model_inputs

    model = _model("mnist")
    try:
        q, labels = model_inputs(model, "test", dataset="mnist")
    except DatasetMissing as exc:
        pytest.skip(f"MNIST is not in the data cache: {exc}")
    assert len(q) == 10000
    ref, eng = ReferenceEngine(model), NativeEngine(model, kernel=variant)
    for lo in range(0, len(q), CHUNK):
        _check(eng.logits_uint8(q[lo:lo + CHUNK]), ref.logits_uint8(q[lo:lo + CHUNK]))
    assert float((eng.logits_uint8(q).argmax(1) == labels).mean()) > 0.5  # a trained model, not noise


@pytest.mark.parametrize("variant", variant_params())
def test_imdb_full_test_set_sparse_and_dense(variant):
    from edge_rbmlp.datasets import DatasetMissing, load_imdb_reviews
    from edge_rbmlp.text import TextEncoder

    model = _model("imdb")
    try:
        texts, labels = load_imdb_reviews("test")
    except DatasetMissing as exc:
        pytest.skip(f"IMDB is not in the data cache: {exc}")
    assert len(texts) == 25000
    key = tuple(model.vocab)
    if key not in _ENCODED:  # tokenize once for all kernel variants
        enc = TextEncoder.for_model(model)
        _ENCODED.clear()
        _ENCODED[key] = [enc.indices(t) for t in texts]
    encoded = _ENCODED[key]
    ref, eng = ReferenceEngine(model), NativeEngine(model, kernel=variant)
    correct = 0
    for lo in range(0, len(texts), CHUNK):
        rows = encoded[lo:lo + CHUNK]
        q = np.zeros((len(rows), model.n_inputs), np.uint8)
        for r, idx in enumerate(rows):
            q[r, idx] = 1
        expect = ref.logits_uint8(q)
        _check(eng.logits_uint8(q), expect)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        sparse = eng.logits_indices(np.concatenate(rows).astype(np.int32), offsets)
        _check(sparse, expect)
        pred = sparse.argmax(1) if sparse.shape[1] > 1 else (sparse[:, 0] >= 0).astype(int)
        correct += int((pred == labels[lo:lo + CHUNK]).sum())
    assert correct / len(texts) > 0.5


def test_c_tokenizer_on_real_reviews():
    """The C tokenizer (ASCII reviews) gives the Python tokenizer's indices on real IMDB reviews."""
    from edge_rbmlp.arch import parse
    from edge_rbmlp.datasets import DatasetMissing, load_imdb_reviews
    from edge_rbmlp.random_model import random_packed_model
    from edge_rbmlp.text import TextEncoder, tokenize

    try:
        texts, _ = load_imdb_reviews("test")
    except DatasetMissing as exc:
        pytest.skip(f"IMDB is not in the data cache: {exc}")
    sample = texts[::5]  # 5000 reviews
    seen = {}
    for t in sample[:1500]:
        for w in tokenize(t):
            seen.setdefault(w, len(seen))
    vocab = list(seen)[:8000]
    model = random_packed_model(parse("B-16N,8,Q"), len(vocab), 1, seed=0, input_kind="text")
    model.vocab = vocab
    eng = NativeEngine(model)
    enc = TextEncoder(vocab)
    ascii_count = 0
    for t in sample:
        ascii_count += t.isascii()
        assert np.array_equal(eng.text_indices(t), enc.indices(t)), t[:200]
    assert ascii_count > len(sample) // 2
