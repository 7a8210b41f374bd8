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


# -- printed and display digits (--printed-fraction) ------------------------------------------
def _ood_font_table():
    """Every font file the out-of-distribution sets render from, by group."""
    pytest.importorskip("matplotlib", reason="the fonts-mpl set's fonts come with matplotlib (the train extra)")
    from train import ood

    return {"mpl": [str(ood._mpl_font_dir() / f) for f in ood.MPL_FONTS],
            "print": [f for fs in ood.PRINT_FONTS.values() for f in fs],
            "hand": [f for fs in ood.HAND_FONTS.values() for f in fs],
            "display": [f for fs in ood.DISPLAY_FONTS.values() for f in fs]}


def test_training_fonts_are_disjoint_from_every_ood_font():
    """No file, file name or font family the training renders from is one an ood-eval set uses (fonts-mpl,
    fonts-print, fonts-hand, photo-fonts, display), and no package derived from those faces is used."""
    from PIL import ImageFont

    train_files = aug.training_font_files(aug.TRAIN_PRINT_FONTS) + aug.training_font_files(aug.TRAIN_DISPLAY_FONTS)
    ood_files = [f for fs in _ood_font_table().values() for f in fs]
    assert len(train_files) >= 80 and len(set(train_files)) == len(train_files)
    assert not set(train_files) & set(ood_files)
    assert not {os.path.basename(f) for f in train_files} & {os.path.basename(f) for f in ood_files}

    def family(f):
        return ImageFont.truetype(f, 20).getname()[0].lower()

    train_families = {family(f) for f in train_files}
    ood_families = {family(f) for f in ood_files if os.path.exists(f)}
    assert len(ood_families) >= 20, "the ood fonts are missing: run `make ood-fonts`"
    assert not train_families & ood_families, train_families & ood_families
    # faces derived from the ood ones (Liberation = Arimo/Tinos/Cousine, TeX Gyre = URW base35,
    # Hack = DejaVu Sans Mono, FreeFont) and the ood packages themselves stay out of training
    from train import ood

    banned = {"fonts-croscore", "fonts-texgyre", "fonts-hack", "fonts-freefont-otf", "fonts-dejavu-core"}
    banned |= set(ood.PRINT_FONTS) | set(ood.HAND_FONTS)
    assert not banned & set(aug.TRAIN_FONT_PACKAGES)


def test_font_overlap_check_can_fail(monkeypatch):
    """The disjointness test above fails when a training table takes an ood font."""
    from train import ood

    leaked = ood.PRINT_FONTS["fonts-liberation"][0]
    monkeypatch.setitem(aug.TRAIN_PRINT_FONTS, "fonts-liberation", [leaked])
    with pytest.raises(AssertionError):
        test_training_fonts_are_disjoint_from_every_ood_font()


def test_makefile_installs_the_training_fonts():
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("Makefile").read_text()
    m = re.search(r"^TRAIN_FONTS = ((?:.*\\\n)*.*)$", text, re.M)
    assert m, "Makefile has no TRAIN_FONTS"
    assert sorted(m.group(1).replace("\\\n", " ").split()) == aug.TRAIN_FONT_PACKAGES
    assert re.search(r"^models: .*train-fonts", text, re.M) and re.search(r"^test: .*train-fonts", text, re.M)


def test_missing_training_fonts_name_the_make_target(monkeypatch):
    monkeypatch.setitem(aug.TRAIN_PRINT_FONTS, "fonts-not-there", ["/nonexistent/font.ttf"])
    with pytest.raises(FileNotFoundError, match="make train-fonts"):
        aug.printed_digits(5, 0)


def test_printed_digits_deterministic_for_a_seed():
    a, ya = aug.printed_digits(60, 7, display_share=0.5)
    b, yb = aug.printed_digits(60, 7, display_share=0.5)
    c, _ = aug.printed_digits(60, 8, display_share=0.5)
    assert a.shape == (60, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and np.array_equal(ya, np.arange(60) % 10)
    assert np.mean([not np.array_equal(x, z) for x, z in zip(a, c)]) > 0.9
    # through the device preprocessing: MNIST style (light digit on a black border), rarely blank
    assert np.mean(a.reshape(60, -1).max(axis=1) > 100) > 0.9
    assert a[:, 0, :].mean() < 5 and a[:, :, 0].mean() < 5


def test_display_renderers_draw_the_digits():
    """Seven-segment and dot-matrix digits: both polarities; each digit's ink follows its number of lit
    segments / dots, and the ten digits stay distinct after the device preprocessing."""
    from edge_rbmlp.image import preprocess_digit

    clean = aug.DisplayStyle(p_blur=0.0, noise=(0.0, 0.0), p_ghost=0.0, p_variant=0.0, slant=(0.0, 0.0),
                             contrast=(1.0, 1.0), height_px=(80, 80), aspect=(0.5, 0.5), thickness=(0.15, 0.15),
                             gap=(0.02, 0.02), shapes=("rect",), dot_fill=(0.8, 0.8), p_light_on_dark=0.0,
                             margin=(1.5, 1.5))
    lit = {aug.render_seven_segment: [len(aug.SEVEN_SEGMENTS[d]) for d in range(10)],
           aug.render_dot_matrix: [sum(r.count("1") for r in aug.DOT_MATRIX[d]) for d in range(10)]}
    for render, count in lit.items():
        raw = [render(d, np.random.default_rng(0), clean) for d in range(10)]
        ink = [int((255 - r.astype(np.int32)).sum()) for r in raw]
        assert np.corrcoef(ink, count)[0, 1] > 0.95, (render.__name__, ink, count)
        q = [preprocess_digit(r) for r in raw]
        assert len({x.tobytes() for x in q}) == 10
        assert all(x.max() > 100 for x in q)
    levels = [np.median(aug.render_seven_segment(3, np.random.default_rng(s))) for s in range(40)]
    assert min(levels) < 100 < max(levels)  # LED (dark background) and LCD (light background) both occur


@needs_tf
def test_augmented_epochs_with_printed_digits():
    _need("mnist")
    from edge_rbmlp.arch import parse
    from train.pipeline import AugmentedEpochs, FitConfig, load_data

    base = dict(dataset="mnist", arch=parse("B-D32N,16N,PN"), limit_train=200, limit_test=20, augment="digits",
                augment_fraction=0.5, seed=3)
    cfg = FitConfig(**base, printed_fraction=0.25)
    data = load_data(cfg)
    a, b = AugmentedEpochs(cfg, data), AugmentedEpochs(cfg, data)
    assert a.n_per_epoch == 250
    q0, y0 = a.epoch(0)
    assert q0.shape == (250, 784) and np.array_equal(q0, b.epoch(0)[0])
    assert np.array_equal(y0[:200], data.y_train) and np.array_equal(y0[200:], np.arange(50) % 10)
    assert np.array_equal(a.printed_q, aug.printed_digits(50, np.random.default_rng([3, 1103]), 0.3)[0].reshape(50, -1))
    # without printed digits the epochs are exactly those of before (the bundled recipe is unchanged)
    plain = AugmentedEpochs(FitConfig(**base), data)
    assert plain.printed_q is None and plain.n_per_epoch == 200
    rng = np.random.default_rng([3, 1102, 0])
    sel = rng.random(200) < 0.5
    expect = data.q_train.copy()
    expect[sel] = aug.augment_digits(expect[sel].reshape(-1, 28, 28), rng).reshape(int(sel.sum()), -1)
    assert np.array_equal(plain.epoch(0)[0], expect)
    # printed digits alone (no other augmentation) are a valid setting too
    only = AugmentedEpochs(FitConfig(**dict(base, augment="none"), printed_fraction=0.1), data)
    q, _ = only.epoch(0)
    assert np.array_equal(q[:200], data.q_train) and len(q) == 220


def test_printed_digits_redraw_what_the_device_refuses(monkeypatch):
    """--printed-redraw: a picture the device refuses before classifying is drawn anew (up to N times)."""
    import edge_rbmlp.image as image
    import edge_rbmlp.reject as reject

    calls = []
    real = image.preprocess_digit_info

    def counting(img, *a, **k):
        calls.append(img.shape)
        return real(img, *a, **k)

    monkeypatch.setattr(image, "preprocess_digit_info", counting)
    a, _ = aug.printed_digits(30, 4, display_share=1.0, redraw_refused=3)
    assert 30 <= len(calls) < 120
    assert np.array_equal(a, aug.printed_digits(30, 4, display_share=1.0, redraw_refused=3)[0])
    calls.clear()
    monkeypatch.setattr(reject, "picture_reason", lambda info, shape: "not one digit: always")
    aug.printed_digits(10, 4, display_share=1.0, redraw_refused=3)
    assert len(calls) == 40  # every sample drawn 1 + 3 times, the last kept
    calls.clear()
    aug.printed_digits(10, 4, display_share=1.0)  # 0: every first picture kept, as before the option
    assert len(calls) == 10
