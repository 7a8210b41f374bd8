"""Out-of-distribution sets, baselines and `python -m train ood-eval` (train/ood.py).

Needs the `train` extra (scipy, scikit-learn, matplotlib; TensorFlow for the MLP baseline) and the data
cache (`python -m train data fetch`); the Debian font sets need `make ood-fonts` (both run by `make test`)."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_missing = [m for m in ("scipy", "sklearn", "matplotlib") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"needs the train extra (missing: {', '.join(_missing)}): "
                                                        "pip install -e '.[train]'")

from edge_rbmlp import datasets  # noqa: E402

_tf_missing = [m for m in ("tensorflow", "tf_keras") if importlib.util.find_spec(m) is None]
needs_tf = pytest.mark.skipif(bool(_tf_missing), reason=f"needs TensorFlow (missing: {', '.join(_tf_missing)})")


def _need(name):
    if datasets.verified_record(name) is None:
        pytest.skip(f"{name} is not in the data cache: run `python -m train data fetch` (make test does it)")


def _need_fonts():
    from train import ood

    try:
        ood.font_files("print")
        ood.font_files("hand")
    except ood.SetUnavailable as exc:
        pytest.skip(str(exc))


# sets that are cheap to build at their full, fixed size (the photo sets are checked on a prefix)
FULL_SIZES = {"mnist-test": 2000, "mnist-affine": 1000, "mnist-elastic-stroke": 1000, "mnist-blur-noise": 1000,
              "mnist-light": 1000, "uci-digits": 1797, "uci-8x8": 1797, "fonts-mpl": 1000, "strokes": 1000}


@pytest.mark.parametrize("name", sorted(FULL_SIZES))
def test_digit_sets_have_fixed_size_labels_and_content(name):
    _need("mnist")
    from train import ood

    es = ood.build_set(name)
    assert len(es) == FULL_SIZES[name] == len(es.inputs)
    assert es.kind == "image" and es.labels.dtype == np.int64
    assert set(np.unique(es.labels)) == set(range(10))
    counts = np.bincount(es.labels, minlength=10)
    assert counts.min() >= 0.06 * len(es)  # every class present in quantity
    if name.startswith("mnist-"):
        x, y = datasets.even_subset(*datasets.load_mnist("test"), FULL_SIZES[name])
        assert np.array_equal(es.labels, y)
        if name != "mnist-test":  # distorted: same digits, different pixels
            assert np.mean([not np.array_equal(a, b) for a, b in zip(es.inputs[:50], x[:50])]) > 0.9
    if name in ("fonts-mpl", "strokes"):
        assert np.array_equal(es.labels, np.arange(len(es)) % 10)
    for img in es.inputs[:20]:
        a = np.asarray(img)
        assert a.dtype == np.uint8 and a.ndim in (2, 3) and a.max() > a.min()


def test_sets_are_deterministic():
    _need("mnist")
    from train import ood

    for name in ("mnist-affine", "mnist-light", "fonts-mpl", "strokes", "photo-mnist", "uci-digits"):
        assert ood.build_set(name, 30).fingerprint() == ood.build_set(name, 30).fingerprint(), name
    assert ood.build_set("strokes", 30).fingerprint() != ood.build_set("fonts-mpl", 30).fingerprint()


def test_photo_and_debian_font_sets():
    _need("mnist")
    _need_fonts()
    from train import ood

    for name in ("fonts-print", "fonts-hand", "photo-mnist", "photo-fonts", "photo-uci"):
        es = ood.build_set(name, 20)
        assert len(es) == 20 and es.kind == "image"
        if name.startswith("photo"):
            img = es.inputs[0]
            assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 40
    assert len(ood.font_files("print")) >= 30 and len(ood.font_files("hand")) >= 15
    assert ood.build_set("photo-fonts", 20).meta["fonts"]


def test_set_cache_gives_the_same_set(tmp_path):
    _need("mnist")
    from train import ood

    a = ood.cached_set("photo-mnist", 15, tmp_path)
    files = list(tmp_path.glob("photo-mnist_n15_*.npz"))
    assert len(files) == 1
    b = ood.cached_set("photo-mnist", 15, tmp_path)  # read back
    assert a.fingerprint() == b.fingerprint() == ood.build_set("photo-mnist", 15).fingerprint()
    assert b.description == a.description and b.seed == a.seed


def test_preprocessed_sets_look_like_digits():
    """Through the device preprocessing, rendered digits land where MNIST digits do: mostly centred,
    light on dark (a set rendered upside down or inverted would fail this)."""
    _need("mnist")
    from edge_rbmlp.image import preprocess_digit
    from train import ood

    mnist_mean = datasets.load_mnist("test")[0][:500].astype(np.float64).mean(0)
    for name in ("fonts-mpl", "strokes", "photo-mnist", "uci-digits"):
        q = np.stack([preprocess_digit(x) for x in ood.build_set(name, 60).inputs]).astype(np.float64)
        assert q[:, 0, :].mean() < 5 and q[:, :, 0].mean() < 5, name  # dark border
        m = q.mean(0)
        c = np.corrcoef(m.ravel(), mnist_mean.ravel())[0, 1]
        assert c > 0.6, (name, c)


def test_text_sets():
    _need("imdb")
    from train import ood

    full = ood.build_set("imdb-test", 200)
    assert len(full) == 200 and set(np.unique(full.labels)) == {0, 1} and abs(full.labels.mean() - 0.5) < 0.05
    for k in ood.TEXT_CUTS:
        es = ood.build_set(f"imdb-first-{k}", 200)
        assert np.array_equal(es.labels, full.labels)
        assert all(len(t.split()) <= k for t in es.inputs)
        assert np.mean([len(t.split()) == k for t in es.inputs]) > 0.95
        assert all(f.replace("<br />", " ").split()[:3] == t.split()[:3] for f, t in zip(full.inputs[:20], es.inputs[:20]))
    sent = ood.build_set("imdb-sentence", 200)
    assert np.mean([len(s) < len(f) for s, f in zip(sent.inputs, full.inputs)]) > 0.95
    assert len(ood.build_set("imdb-test").labels) == 5000


def test_missing_fonts_are_a_skip_with_the_reason(monkeypatch):
    from train import ood

    monkeypatch.setitem(ood.HAND_FONTS, "fonts-not-there", ["/nonexistent/font.ttf"])
    with pytest.raises(ood.SetUnavailable, match="make ood-fonts"):
        ood.build_set("fonts-hand", 10)
    result_rows = []

    class _Echo(list):
        def __call__(self, m):
            self.append(m)

    echo = _Echo()
    _need("mnist")
    r = ood.ood_eval("mnist", ["fonts-hand", "strokes"], limit=10, baseline=False, echo=echo)
    result_rows = {row["set"]: row for row in r["sets"]}
    assert "make ood-fonts" in result_rows["fonts-hand"]["skipped"]
    assert result_rows["strokes"]["n"] == 10
    assert "skipped" in ood.format_table(r)


class _FakePrediction:
    def __init__(self, label, index, probabilities=None, reason=None):
        self.label, self.class_index, self.probabilities, self.reason = label, index, probabilities, reason


class _FakeEngine:
    """Answers the true digit, except for every third sample, which it refuses (label None); half of the
    refusals still carry probabilities that favour the true digit."""

    def __init__(self, labels):
        self.labels = list(labels)
        self.i = 0

    def predict_image(self, x):
        y = self.labels[self.i]
        self.i += 1
        if self.i % 3:
            return _FakePrediction(str(y), int(y), list(np.eye(10)[y]))
        if self.i % 2:
            return _FakePrediction(None, None, list(0.05 + 0.4 * np.eye(10)[y]), "unsure: class below 0.6")
        return _FakePrediction(None, None, [], "no digit found: the image is blank")


def test_evaluate_counts_correct_and_refused():
    from train import ood

    labels = np.arange(30) % 10
    es = ood.EvalSet("t", "image", [np.zeros((28, 28), np.uint8)] * 30, labels, "", 0)
    r = ood.evaluate_model_on_set(_FakeEngine(labels), es)
    assert r["n"] == 30 and r["rejected"] == 10 and r["accuracy"] == pytest.approx(20 / 30)
    assert r["accuracy_forced"] == pytest.approx(25 / 30)
    assert r["rejected_reasons"] == {"unsure": 5, "no digit found": 5}


def test_logreg_baseline_trains_once_and_is_cached(tmp_path):
    _need("imdb")
    from train import ood

    msgs = []
    b = ood.LogRegBaseline.load_or_train(tmp_path, vocab_size=2000, limit_train=2000, echo=msgs.append)
    assert any("training" in m for m in msgs)
    assert 0.7 < b.meta["imdb_test_accuracy"] < 0.95
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    msgs.clear()
    b2 = ood.LogRegBaseline.load_or_train(tmp_path, vocab_size=2000, limit_train=2000, echo=msgs.append)
    assert msgs == [] and b2.vocab == b.vocab and np.array_equal(b2.coef, b.coef)
    texts = ["a wonderful, moving film, great acting", "terrible, boring, the worst movie ever, awful"]
    assert list(b2.predict_texts(texts)) == [1, 0]


@needs_tf
def test_ood_eval_cli_end_to_end(tmp_path):
    """The command on the bundled models, tiny sets and a tiny cached baseline, as JSON and as a table."""
    _need("mnist")
    _need("imdb")
    from click.testing import CliRunner

    from train.cli import main

    args = ["ood-eval", "--limit", "12", "--baseline-dir", str(tmp_path), "--baseline-limit-train", "1500",
            "--baseline-epochs", "1", "--set-cache", str(tmp_path / "sets")]
    r = CliRunner().invoke(main, args + ["--model", "mnist", "--sets", "mnist-test,strokes,photo-mnist", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [s["set"] for s in out["sets"]] == ["mnist-test", "strokes", "photo-mnist"]
    for s in out["sets"]:
        assert s["n"] == 12 and 0 <= s["model"]["accuracy"] <= 1 and 0 <= s["baseline"]["accuracy"] <= 1
    assert out["baseline"]["n_train"] == 1500 and out["command"].startswith("python -m train ood-eval")
    assert len(list(tmp_path.glob("mnist_mlp*.npz"))) == 1
    r = CliRunner().invoke(main, args + ["--model", "imdb", "--sets", "imdb-first-10"])
    assert r.exit_code == 0, r.output
    assert "| imdb-first-10 | 12 |" in r.output and "logistic regression" in r.output
    r = CliRunner().invoke(main, args + ["--model", "mnist", "--sets", "imdb-first-10"])
    assert r.exit_code != 0 and "do not fit" in r.output


def test_bundled_mnist_model_scores_on_its_own_test_digits():
    """A check the evaluation can fail: the bundled model on 300 MNIST test digits through the API."""
    _need("mnist")
    import edge_rbmlp
    from train import ood

    r = ood.evaluate_model_on_set(edge_rbmlp.load("mnist"), ood.build_set("mnist-test", 300))
    assert r["accuracy"] > 0.95 and r["n"] == 300


# fingerprints (sha256 of inputs and labels, first 16 hex digits) of the first 10 samples of every set as
# built before the display set was added: adding sets must leave the others as they were
PINNED_FINGERPRINTS_N10 = {
    "mnist-test": "5e420b29fb8141c6", "mnist-affine": "4a28f87b1d6a6937", "mnist-elastic-stroke": "f83ab675f084a094",
    "mnist-blur-noise": "7def88ec8262c211", "mnist-light": "fa59cac4a8247138", "uci-digits": "c26820579aae4a01",
    "uci-8x8": "1f64c1872bde2930", "fonts-mpl": "8aa804650d40cb2e", "fonts-print": "21041fe96c39f0c1",
    "fonts-hand": "ecc68ae8e861c1ea", "strokes": "e49138e2b8f62e25", "photo-mnist": "0ad2477224137e21",
    "photo-fonts": "bf7f869299a60e60", "photo-uci": "f988f879aab40bb4",
}


def test_existing_sets_keep_their_fingerprints():
    _need("mnist")
    _need_fonts()
    from train import ood

    assert set(PINNED_FINGERPRINTS_N10) | {"display"} == set(ood.DIGIT_SETS)
    for name, fp in PINNED_FINGERPRINTS_N10.items():
        assert ood.build_set(name, 10).fingerprint()[:16] == fp, (
            f"{name} changed (a renderer, a seed or a font list; or Pillow/scipy/matplotlib rendering differently)")


def test_display_set_is_deterministic_and_held_out():
    from train import augment, ood

    try:
        files = ood.font_files("display")
    except ood.SetUnavailable as exc:
        pytest.skip(str(exc))
    a, b = ood.build_set("display", 80), ood.build_set("display", 80)
    assert a.fingerprint() == b.fingerprint() and len(a) == 80
    assert np.array_equal(a.labels, np.arange(80) % 10)
    assert set(a.meta["kinds"]) == {"dseg-lcd", "dseg-led", "seven-segment", "dot-matrix"}
    train_display = {f for fs in augment.TRAIN_DISPLAY_FONTS.values() for f in fs}
    assert len(files) >= 20 and not set(files) & train_display
    assert all("Modern" in f or "SEGGCHAN" in f for f in files)
    # the procedural styles differ from the training's: segment ends the training never draws, sparser dots
    assert not set(ood.EVAL_SEVEN_SEGMENT.shapes) & set(augment.DisplayStyle().shapes)
    assert ood.EVAL_DOT_MATRIX.dot_fill[1] < augment.DisplayStyle().dot_fill[0] + 0.1
    assert ood.build_set("display", 1000).labels.shape == (1000,)


@needs_tf
def test_augmented_baseline_trains_on_the_models_augmented_data(tmp_path, capfd):
    """--augmented-baseline: a float MLP on the same augmented epochs as the model, cached beside the plain one."""
    _need("mnist")
    from train import ood

    aug = ood.model_augmentation(str(Path(ood.__file__).resolve().parents[1] / "edge_rbmlp" / "models" / "mnist.rbm"))
    assert aug["augment"] == "digits" and aug["seed"] == 0
    msgs = []
    plain = ood.MLPBaseline.load_or_train(tmp_path, epochs=1, limit_train=600, echo=msgs.append)
    wide = dict(aug, printed_fraction=0.2)
    capfd.readouterr()
    a = ood.MLPBaseline.load_or_train(tmp_path, epochs=1, limit_train=600, echo=msgs.append, augment=wide)
    assert "printed/display digits" not in capfd.readouterr().out  # stdout stays clean for ood-eval --json
    assert a.meta["augment"]["printed_fraction"] == 0.2 and a.meta["n_train"] == 720
    assert plain.meta["n_train"] == 600 and "augment" not in plain.meta
    assert len(list(tmp_path.glob("mnist_mlp*.npz"))) == 2
    assert not all(np.array_equal(x, y) for x, y in zip(a.weights, plain.weights))
    msgs.clear()
    again = ood.MLPBaseline.load_or_train(tmp_path, epochs=1, limit_train=600, echo=msgs.append, augment=wide)
    assert msgs == [] and all(np.array_equal(x, y) for x, y in zip(a.weights, again.weights))
    r = ood.ood_eval("mnist", ["strokes"], limit=10, baseline_dir=tmp_path, baseline_epochs=1,
                     baseline_limit_train=600, augmented_baseline=True, echo=msgs.append)
    assert r["baseline_augmented"]["augment"] == aug and 0 <= r["sets"][0]["baseline_augmented"]["accuracy"] <= 1
    assert "augmented baseline" in ood.format_table(r)
