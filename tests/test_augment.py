"""Training augmentation (train/augment.py): deterministic for a seed, plausible changes, fit options.

The augmentation itself needs numpy, scipy and Pillow (the `train` extra); the training tests at the end
also need TensorFlow + larq and the data cache (`python -m train data fetch`, which `make test` runs)."""

import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

pytest.importorskip("scipy", reason="train/augment.py needs scipy (the train extra): pip install -e '.[train]'")

from edge_rbmlp import datasets  # noqa: E402
from train import augment as aug  # noqa: E402

_tf_missing = [m for m in ("tensorflow", "larq", "tf_keras") if importlib.util.find_spec(m) is None]
needs_tf = pytest.mark.skipif(bool(_tf_missing), reason=f"needs the train extra (missing: {', '.join(_tf_missing)})")


def _need(name):
    if datasets.verified_record(name) is None:
        pytest.skip(f"{name} is not in the data cache: run `python -m train data fetch` (make test does it)")


@pytest.fixture(scope="module")
def digits():
    _need("mnist")
    x, y = datasets.load_mnist("test")
    return x[:64], y[:64]


def _corr(a, b):
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_augment_digits_deterministic_for_a_seed(digits):
    x, _ = digits
    a = aug.augment_digits(x, 5)
    b = aug.augment_digits(x, 5)
    c = aug.augment_digits(x, 6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # a Generator continues its stream: two calls on one generator differ, two equal generators agree
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(aug.augment_digits(x, g1), aug.augment_digits(x, g2))
    assert not np.array_equal(aug.augment_digits(x, g1), aug.augment_digits(x, np.random.default_rng(3)))


def test_augment_digits_changes_images_plausibly(digits):
    x, _ = digits
    a = aug.augment_digits(x, 0)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert a.min() >= 0 and a.max() <= 255
    changed = [not np.array_equal(a[i], x[i]) for i in range(len(x))]
    assert all(changed)
    # still the same digit: strongly correlated with the original, and carrying a comparable amount of ink
    corr = np.array([_corr(a[i], x[i]) for i in range(len(x))])
    assert np.median(corr) > 0.5, corr
    ink = a.reshape(len(a), -1).sum(1) / x.reshape(len(x), -1).sum(1)
    assert 0.4 < np.median(ink) < 2.5, ink
    # but not the same pictures: the mean absolute change is clearly above zero
    assert np.mean(np.abs(a.astype(int) - x.astype(int))) > 5


def test_each_distortion_family_acts(digits):
    x, _ = digits
    none = aug.DigitAugment(rotation_deg=0, scale=(1, 1), shear=0, translate_px=0, p_elastic=0, p_thicker=0,
                            p_thinner=0, p_blur=0, p_contrast=0, p_noise=0)
    assert np.array_equal(aug.augment_digits(x, 0, none), x)  # identity when every distortion is off
    import dataclasses

    thick = aug.augment_digits(x, 0, dataclasses.replace(none, p_thicker=1.0))
    thin = aug.augment_digits(x, 0, dataclasses.replace(none, p_thinner=1.0))
    assert (thick > 127).sum() > 1.2 * (x > 127).sum()
    assert (thin > 127).sum() < 0.9 * (x > 127).sum()
    rot = aug.augment_digits(x, 0, dataclasses.replace(none, rotation_deg=30))
    assert not np.array_equal(rot, x)
    noisy = aug.augment_digits(x, 0, dataclasses.replace(none, p_noise=1.0))
    assert ((noisy > 0) & (x == 0)).sum() > 0.1 * (x == 0).sum()  # noise on the background
    blur = aug.augment_digits(x, 0, dataclasses.replace(none, p_blur=1.0))
    assert np.abs(np.diff(blur.astype(float), axis=2)).mean() < np.abs(np.diff(x.astype(float), axis=2)).mean()


def test_render_photo_is_a_dark_digit_on_lighter_paper(digits):
    x, _ = digits
    p = aug.render_photo(x[0], 1)
    assert np.array_equal(p, aug.render_photo(x[0], 1))
    assert not np.array_equal(p, aug.render_photo(x[0], 2))
    assert p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 and min(p.shape[:2]) >= 40
    grey = p.mean(axis=2)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    assert np.percentile(grey, 1) < np.median(border) - 40  # the ink is darker than the paper


def test_photo_digits_go_through_the_device_preprocessing(digits):
    x, _ = digits
    q = aug.photo_digits(x[:12], 0)
    assert q.shape == (12, 28, 28) and q.dtype == np.uint8
    assert np.array_equal(q, aug.photo_digits(x[:12], 0))
    # the preprocessed photo is the same digit again (light on dark, centred), not a copy of it
    corr = [_corr(q[i], x[i]) for i in range(12)]
    assert np.median(corr) > 0.5, corr
    assert not any(np.array_equal(q[i], x[i]) for i in range(12))


REVIEW = ("This film was a total surprise. I expected nothing! The acting is wonderful, the plot is thin "
          "but it works.<br /><br />Would I watch it again? Yes, twice. " + " ".join(f"w{i}" for i in range(80)))


def test_text_snippets_and_sentences():
    words = aug.words_of(REVIEW)
    assert "<br" not in " ".join(words)
    assert aug.first_words(REVIEW, 5) == "This film was a total"
    joined = " ".join(words)
    for seed in range(40):
        s = aug.snippet(REVIEW, seed)
        n = len(s.split())
        assert 5 <= n <= 50
        assert f" {s} " in f" {joined} "  # consecutive words of the review
        assert aug.snippet(REVIEW, seed) == s
        t = aug.sample_sentences(REVIEW, seed)
        assert 1 <= len(aug.sentences_of(t)) <= 3
        assert t.split()[0] in words
    assert aug.sentences_of("One. Two! Three?")[1] == "Two!"
    assert aug.snippet("two words", 0) == "two words"


def test_augment_texts_deterministic_and_fraction():
    texts = [REVIEW + f" r{i}" for i in range(400)]
    a = aug.augment_texts(texts, 9, fraction=0.5)
    assert a == aug.augment_texts(texts, 9, fraction=0.5)
    assert a != aug.augment_texts(texts, 10, fraction=0.5)
    changed = sum(x != y for x, y in zip(a, texts))
    assert 150 < changed < 250
    assert all(len(x.split()) < len(y.split()) for x, y in zip(a, texts) if x != y)
    assert aug.augment_texts(texts, 9, fraction=0.0) == texts


def test_parse_mode():
    assert aug.parse_mode("none", "mnist") == "none"
    assert aug.parse_mode("digits+photo", "mnist") == "digits+photo"
    assert aug.parse_mode("text", "imdb") == "text"
    with pytest.raises(ValueError, match="imdb"):
        aug.parse_mode("text", "mnist")
    with pytest.raises(ValueError, match="mnist"):
        aug.parse_mode("digits", "imdb")
    with pytest.raises(ValueError, match="one of"):
        aug.parse_mode("rotate", "mnist")


@needs_tf
def test_augmentation_off_by_default_and_in_reproduce():
    import inspect

    from train import reproduce
    from train.pipeline import FitConfig

    assert FitConfig(dataset="mnist", arch=None).augment == "none"
    src = inspect.getsource(reproduce.run_trial)
    assert "FitConfig(" in src and "augment" not in src  # the paper's grid never augments


@needs_tf
def test_augmented_epochs_mnist_deterministic():
    _need("mnist")
    from edge_rbmlp.arch import parse
    from train.pipeline import AugmentedEpochs, FitConfig, load_data

    cfg = FitConfig(dataset="mnist", arch=parse("B-D32N,16N,PN"), limit_train=200, limit_test=20,
                    augment="digits+photo", augment_fraction=0.5, photo_fraction=0.1, seed=3)
    data = load_data(cfg)
    a, b = AugmentedEpochs(cfg, data), AugmentedEpochs(cfg, data)
    assert a.n_per_epoch == 220
    q0, y0 = a.epoch(0)
    assert q0.shape == (220, 784) and q0.dtype == np.uint8 and len(y0) == 220
    assert np.array_equal(q0, b.epoch(0)[0])
    q1, _ = a.epoch(1)
    assert not np.array_equal(q0, q1)  # a fresh draw each epoch
    changed = np.mean(np.any(q0[:200] != data.q_train, axis=1))
    assert 0.3 < changed < 0.7
    assert np.array_equal(y0[:200], data.y_train)


@needs_tf
def test_augmented_epochs_text():
    _need("imdb")
    from edge_rbmlp.arch import parse
    from edge_rbmlp.text import tokenize
    from train.pipeline import AugmentedEpochs, FitConfig, encode_multi_hot, load_data

    cfg = FitConfig(dataset="imdb", arch=parse("B-32,16,4,Q"), limit_train=300, limit_test=20, vocab_size=2000,
                    augment="text", augment_fraction=0.5, seed=0)
    data = load_data(cfg)
    ep = AugmentedEpochs(cfg, data)
    q, y = ep.epoch(0)
    assert np.array_equal(q, ep.epoch(0)[0])
    assert q.shape == data.q_train.shape and np.array_equal(y, data.y_train)
    rows = np.flatnonzero(np.any(q != data.q_train, axis=1))
    assert 0.3 * 300 < len(rows) < 0.7 * 300
    # an augmented row is a snippet of its review: a subset of the review's words
    assert np.all(q[rows] <= data.q_train[rows])
    assert np.array_equal(encode_multi_hot([tokenize(data.train_texts[0])], data.vocab)[0], data.q_train[0])


@needs_tf
def test_fit_with_augmentation_trains_and_records_it(tmp_path):
    _need("mnist")
    from edge_rbmlp.arch import parse
    from train.pipeline import FitConfig, load_data, train_model

    cfg = FitConfig(dataset="mnist", arch=parse("B-D32N,16N,PN"), epochs=2, limit_train=300, limit_test=50,
                    augment="digits+photo", photo_fraction=0.05, seed=1, verbose=0, lr_schedule="cosine")
    data = load_data(cfg)
    _, _, history = train_model(cfg, data)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
