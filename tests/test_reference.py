"""The reference engine against an independent XNOR-popcount reading of the format docstring."""

import numpy as np
import pytest

from edge_rbmlp.arch import parse
from edge_rbmlp.bits import pack_bits
from edge_rbmlp.inputs import InputSpecError
from edge_rbmlp.random_model import random_packed_model
from edge_rbmlp.engines.reference import ReferenceEngine
from edge_rbmlp.text import TextEncoder


def popcount_rows(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1).sum(axis=-1).astype(np.int64)


def xnor_popcount_forward(model, q):
    """Straight from the model_file docstring, one sample at a time, with XOR + popcount."""
    t, arch = model.tensors, model.arch
    inputs = model.layer_inputs()
    last = len(arch.blocks) - 1
    out = []
    for row in q.astype(np.int64):
        if arch.input_mode == "sign":
            x_words = pack_bits(row >= model.input_spec.binarize_threshold)
            acc = inputs[0] - 2 * popcount_rows(x_words[None, :] ^ t["layer.0.weight"])
        else:
            w_bits = np.unpackbits(t["layer.0.weight"].view(np.uint8), axis=1, bitorder="little")[:, :inputs[0]]
            acc = (row * np.where(w_bits == 1, 1, -1)).sum(axis=1)
        for i in range(last + 1):
            if i > 0:
                acc = inputs[i] - 2 * popcount_rows(x_words[None, :] ^ t[f"layer.{i}.weight"])
            if i < last:
                th, flip = t[f"layer.{i}.threshold"].astype(np.int64), t[f"layer.{i}.flip"]
                bits = np.where(flip == 1, acc <= th, acc >= th)
                x_words = pack_bits(bits)
        h = acc.astype(np.float64) * t[f"layer.{last}.scale"] + t[f"layer.{last}.shift"]
        if arch.shortcut is not None:
            kind = arch.shortcut.kind
            if kind == "F":
                h = h + t["shortcut.weight"].astype(np.float64) @ row + t["shortcut.bias"]
            elif kind == "Q":
                h = h + t["shortcut.scale"] * (t["shortcut.weight"].astype(np.int64) @ row) + t["shortcut.bias"]
            else:
                p = arch.pool_size
                pooled = np.array([row[j * p:(j + 1) * p].max() for j in range(len(row) // p)])
                h = h + t["shortcut.weight"].astype(np.float64) @ pooled + t["shortcut.bias"]
        out.append(t["output.weight"].astype(np.float64) @ h + t["output.bias"])
    return np.array(out)


CASES = [
    ("B-D128N,D88N,PN", 784, 10, "image"),
    ("B-D128N,D88N,D88N,PN,D", 784, 10, "image"),
    ("B-D32N,D16N,D8N,Q", 1000, 1, "text"),
    ("B-65,F", 100, 3, "vector"),
    ("B-1", 5, 2, "vector"),
    ("B-63,64,65,130,QN", 200, 4, "vector"),
    ("B-7,P", 9, 2, "vector"),
]


@pytest.mark.parametrize("mode", ["sign", "int8"])
@pytest.mark.parametrize("variant, n_in, n_out, kind", CASES)
def test_reference_equals_xnor_popcount_definition(variant, n_in, n_out, kind, mode, rng):
    model = random_packed_model(parse(variant, input_mode=mode, pool_size=3 if n_in == 9 else 8), n_in, n_out,
                                seed=11, input_kind=kind)
    q = rng.integers(0, 256, (16, n_in)).astype(np.uint8)
    if kind == "text":
        q = (q > 230).astype(np.uint8)
    q[0] = 0
    q[1] = 255 if kind != "text" else 1
    ours = ReferenceEngine(model).logits(q)
    expected = xnor_popcount_forward(model, q)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3)


def test_hidden_units_really_switch(mnist_like_model, rng):
    # a random model whose thresholds never fire would make every comparison above vacuous
    engine = ReferenceEngine(mnist_like_model)
    q = rng.integers(0, 256, (64, 784)).astype(np.uint8)
    acc0 = next(engine.hidden_accumulators(q))[1]
    t = mnist_like_model.tensors
    bits = np.where(t["layer.0.flip"] == 1, acc0 <= t["layer.0.threshold"], acc0 >= t["layer.0.threshold"])
    assert 0.05 < bits.mean() < 0.95


def test_predict_single_and_batch(mnist_like_model, rng):
    engine = ReferenceEngine(mnist_like_model)
    q = rng.integers(0, 256, (5, 784)).astype(np.uint8)
    batch = engine.predict(q)
    assert batch.shape == (5, 10)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0)
    single = engine.predict(q[2])
    assert single.shape == (10,)
    np.testing.assert_allclose(single, batch[2], rtol=1e-5, atol=1e-9)
    # a 28x28 image array is one sample too
    np.testing.assert_allclose(engine.predict(q[2].reshape(28, 28)), single)
    assert engine.predict_class(q).tolist() == batch.argmax(axis=1).tolist()


def test_float_inputs_are_quantized_by_the_input_spec(mnist_like_model, rng):
    engine = ReferenceEngine(mnist_like_model)
    q = rng.integers(0, 256, (4, 784)).astype(np.uint8)
    np.testing.assert_array_equal(engine.logits(q.astype(np.float32) / 255.0), engine.logits(q))


def test_empty_batch(mnist_like_model):
    assert ReferenceEngine(mnist_like_model).logits(np.zeros((0, 784), np.uint8)).shape == (0, 10)


@pytest.mark.parametrize("bad", [np.zeros(783), np.zeros((2, 785)), np.zeros((2, 2, 784)), np.array(["a"] * 784),
                                 np.full(784, np.nan)])
def test_wrong_inputs_are_clear_errors(mnist_like_model, bad):
    with pytest.raises(InputSpecError):
        ReferenceEngine(mnist_like_model).predict(bad)


def test_sigmoid_model_gives_two_probabilities(imdb_like_model):
    engine = ReferenceEngine(imdb_like_model)
    probs = engine.predict(np.zeros((3, 10000), np.uint8))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_predict_text_uses_the_model_vocabulary(imdb_like_model):
    engine = ReferenceEngine(imdb_like_model)
    text = "w1 w5 w5 W9999 unknownword"
    pred = engine.predict_text(text)
    multi_hot = TextEncoder(imdb_like_model.vocab).multi_hot(text)
    assert multi_hot.sum() == 3
    np.testing.assert_allclose(pred.probabilities, engine.predict(multi_hot))
    assert pred.label in ("negative", "positive")
    with pytest.raises(ValueError):
        engine.predict_image(np.zeros((28, 28)))


def test_predict_image_passes_a_real_mnist_frame_through(mnist_like_model, rng):
    engine = ReferenceEngine(mnist_like_model)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    pred = engine.predict_image(digit)
    np.testing.assert_allclose(pred.probabilities, engine.predict(digit.reshape(784)))
    with pytest.raises(ValueError):
        engine.predict_text("text for an image model")
