"""Training-time augmentation for the inputs users give (issue 11): digits and review snippets.

Everything is numpy + scipy.ndimage + Pillow and deterministic for a seed: every function takes a
``numpy.random.Generator`` (or a seed) and draws all its randomness from it, in a fixed order.

Digits (``uint8 [n, 28, 28]``, light on dark, MNIST style):

* :func:`augment_digits` -- random affine (rotation, anisotropic scale, shear, translation) and
  elastic distortion in one vectorized resampling (``scipy.ndimage.map_coordinates``), then stroke
  thickness (grey dilation / erosion), Gaussian blur, contrast / gamma and sensor noise, each applied
  to a random part of the batch.
* :func:`render_photo` -- a *synthetic photo* of a digit: dark ink on unevenly lit paper, with a
  shadow, perspective, blur, noise and JPEG compression (an RGB picture of any size, as a camera
  gives it). :func:`photo_digits` renders such photos and passes them through the device's own
  preprocessing (``edge_rbmlp.image.preprocess_digit``), so training sees exactly what the device
  feeds the model for a photo. It costs a few milliseconds per sample: it is precomputed once for a
  fraction of the training set.

Text (raw review strings; the model input is the multi-hot vector of the text's words, so the
augmentation works on the text before tokenization, ``train.pipeline.encode_multi_hot``):

* :func:`snippet` -- 5 to 50 consecutive words, from the start of the review or from a random place;
* :func:`sample_sentences` -- one to three consecutive sentences;
* :func:`augment_texts` -- a random part of a batch of reviews replaced by either.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

SeedLike = Union[int, np.random.Generator]

AUGMENT_MODES = ("none", "digits", "digits+photo", "photo", "text")


def rng_of(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _ndimage():
    try:
        from scipy import ndimage
    except ImportError as exc:  # pragma: no cover - scipy is in the train extra
        raise ImportError("train.augment needs scipy: pip install -e '.[train]'") from exc
    return ndimage


# -- digits ------------------------------------------------------------------
@dataclass(frozen=True)
class DigitAugment:
    """Ranges of the random digit distortions (uniform draws; probabilities per sample)."""

    rotation_deg: float = 15.0       # +-
    scale: tuple = (0.85, 1.15)      # per axis
    shear: float = 0.25              # +- (x shift per unit of y)
    translate_px: float = 2.0        # +-
    p_elastic: float = 0.5
    elastic_alpha: tuple = (10.0, 34.0)
    elastic_sigma: float = 4.0
    p_thicker: float = 0.25
    p_thinner: float = 0.15
    p_blur: float = 0.25
    blur_sigma: tuple = (0.4, 1.0)
    p_contrast: float = 0.3
    peak: tuple = (0.55, 1.0)        # ink peak after contrast
    gamma: tuple = (0.7, 1.4)
    p_noise: float = 0.3
    noise_sigma: tuple = (0.02, 0.12)


def augment_digits(images: np.ndarray, seed: SeedLike, cfg: DigitAugment = DigitAugment()) -> np.ndarray:
    """Randomly distorted copies of ``uint8 [n, h, w]`` light-on-dark digits (same shape and dtype)."""
    ndi = _ndimage()
    rng = rng_of(seed)
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [n, h, w], got shape {images.shape}")
    n, h, w = images.shape
    x = images.astype(np.float32) / 255.0
    if n == 0:
        return images.copy()

    # affine + elastic: output pixel p samples the source at  c + M (p - c) - t + d(p)
    theta = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, n))
    sy, sx = rng.uniform(*cfg.scale, n), rng.uniform(*cfg.scale, n)
    shear = rng.uniform(-cfg.shear, cfg.shear, n)
    ty, tx = rng.uniform(-cfg.translate_px, cfg.translate_px, (2, n))
    cos, sin = np.cos(theta), np.sin(theta)
    # forward map F = R(theta) @ Shear @ diag(sy, sx) in (y, x) coordinates; the sampler uses its inverse
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    shr = np.zeros((n, 2, 2))
    shr[:, 0, 0] = shr[:, 1, 1] = 1.0
    shr[:, 1, 0] = shear  # x' = x + shear * y
    scl = np.zeros((n, 2, 2))
    scl[:, 0, 0], scl[:, 1, 1] = sy, sx
    fwd = rot @ shr @ scl
    inv = np.linalg.inv(fwd)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    py, px = gy - cy, gx - cx
    src_y = cy + inv[:, 0, 0, None, None] * (py - ty[:, None, None]) + inv[:, 0, 1, None, None] * (px - tx[:, None, None])
    src_x = cx + inv[:, 1, 0, None, None] * (py - ty[:, None, None]) + inv[:, 1, 1, None, None] * (px - tx[:, None, None])
    elastic = rng.random(n) < cfg.p_elastic
    field = rng.uniform(-1.0, 1.0, (2, n, h, w))
    alpha = rng.uniform(*cfg.elastic_alpha, n) * elastic
    if elastic.any():
        sm = ndi.gaussian_filter(field, sigma=(0, 0, cfg.elastic_sigma, cfg.elastic_sigma), mode="constant")
        src_y = src_y + alpha[:, None, None] * sm[0]
        src_x = src_x + alpha[:, None, None] * sm[1]
    idx = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], (n, h, w))
    x = ndi.map_coordinates(x, [idx, src_y, src_x], order=1, mode="constant", cval=0.0).astype(np.float32)

    # stroke thickness
    u = rng.random(n)
    thick = u < cfg.p_thicker
    thin = (u >= cfg.p_thicker) & (u < cfg.p_thicker + cfg.p_thinner)
    size = rng.integers(2, 4, n)  # 2 or 3 px structuring element
    for s in (2, 3):
        sel = thick & (size == s)
        if sel.any():
            x[sel] = ndi.grey_dilation(x[sel], size=(1, s, s))
    if thin.any():
        x[thin] = ndi.grey_erosion(x[thin], size=(1, 2, 2))

    # blur
    blur = rng.random(n) < cfg.p_blur
    sig = rng.uniform(*cfg.blur_sigma, n)
    for i in np.flatnonzero(blur):
        x[i] = ndi.gaussian_filter(x[i], sig[i])

    # contrast and gamma (normalized to the sample's own peak first, so the draw sets the peak)
    con = rng.random(n) < cfg.p_contrast
    peak = rng.uniform(*cfg.peak, n)
    gam = rng.uniform(*cfg.gamma, n)
    if con.any():
        m = x[con].reshape(int(con.sum()), -1).max(axis=1)
        m = np.where(m > 0, m, 1.0)
        y = np.clip(x[con] / m[:, None, None], 0, 1) ** gam[con, None, None]
        x[con] = y * peak[con, None, None]

    # sensor noise
    noisy = rng.random(n) < cfg.p_noise
    nsig = rng.uniform(*cfg.noise_sigma, n)
    noise = rng.standard_normal((n, h, w)).astype(np.float32)
    x = x + (noisy * nsig)[:, None, None].astype(np.float32) * noise
    return np.clip(np.rint(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


# -- synthetic photos ----------------------------------------------------------
@dataclass(frozen=True)
class PhotoStyle:
    """Ranges of the synthetic camera picture."""

    digit_px: tuple = (40, 110)          # height of the digit's 28x28 frame on the picture
    margin: tuple = (1.3, 2.2)           # picture side / digit frame side
    paper: tuple = (0.5, 0.95)           # paper brightness under the strongest light
    light_gradient: tuple = (0.0, 0.45)  # brightness drop across the picture
    vignette: tuple = (0.0, 0.35)
    ink: tuple = (0.03, 0.35)            # ink reflectance relative to the paper
    p_shadow: float = 0.35
    perspective: float = 0.10           # corner jitter, fraction of the side
    rotation_deg: float = 12.0
    blur_px: tuple = (0.0, 1.8)          # relative to a 100 px digit
    noise: tuple = (0.005, 0.05)
    jpeg_quality: tuple = (25, 92)
    colour: bool = True


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 8 coefficients PIL's PERSPECTIVE transform wants (maps output points ``dst`` to input ``src``)."""
    a = []
    b = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.extend([u, v])
    return np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64))


def render_photo(digit: np.ndarray, seed: SeedLike, style: PhotoStyle = PhotoStyle()) -> np.ndarray:
    """A synthetic camera picture of a light-on-dark digit image (any size): ``uint8 [H, W, 3]`` (or
    ``[H, W]`` when ``style.colour`` is False), dark ink on uneven-lit paper."""
    from PIL import Image, ImageFilter

    ndi = _ndimage()
    rng = rng_of(seed)
    d = np.asarray(digit, np.float32)
    if d.ndim != 2:
        raise ValueError(f"digit must be a 2-D grey image, got shape {d.shape}")
    if d.max() > 1.0:
        d = d / 255.0
    frame = int(rng.integers(style.digit_px[0], style.digit_px[1] + 1))
    inner = int(round(frame * rng.uniform(*style.margin)))
    m = int(np.ceil(2 * style.perspective * inner)) + 1  # cropped off again after the perspective warp
    side = inner + 2 * m
    scale = frame / max(d.shape)
    dh, dw = max(1, round(d.shape[0] * scale)), max(1, round(d.shape[1] * scale))
    ink_img = Image.fromarray(np.rint(np.clip(d, 0, 1) * 255).astype(np.uint8), "L").resize((dw, dh), Image.BICUBIC)
    ink_img = ink_img.rotate(float(rng.uniform(-style.rotation_deg, style.rotation_deg)), Image.BILINEAR, expand=True)
    ink = np.zeros((side, side), np.float32)
    ih, iw = ink_img.size[1], ink_img.size[0]
    if ih > inner or iw > inner:
        f = inner / max(ih, iw)
        ink_img = ink_img.resize((max(1, int(iw * f)), max(1, int(ih * f))), Image.BILINEAR)
        ih, iw = ink_img.size[1], ink_img.size[0]
    oy = m + int(rng.integers(0, inner - ih + 1))
    ox = m + int(rng.integers(0, inner - iw + 1))
    ink[oy:oy + ih, ox:ox + iw] = np.asarray(ink_img, np.float32) / 255.0

    # light: paper level, a linear gradient in a random direction, a vignette, maybe a soft shadow
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) + 0.5
    light = 1.0 - rng.uniform(*style.light_gradient) * ramp
    cy, cx = rng.uniform(0.3, 0.7, 2)
    light *= 1.0 - rng.uniform(*style.vignette) * ((yy - cy) ** 2 + (xx - cx) ** 2) * 2
    if rng.random() < style.p_shadow:
        sy, sx = rng.uniform(-0.2, 1.2, 2)
        r = rng.uniform(0.25, 0.6)
        blob = np.exp(-(((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * r * r)))
        light *= 1.0 - rng.uniform(0.2, 0.5) * blob
    paper = rng.uniform(*style.paper)
    ink_level = rng.uniform(*style.ink)
    refl = paper * (1.0 - ink * (1.0 - ink_level))  # ink darkens the paper where it lies
    # paper texture: low-amplitude smooth noise
    tex = ndi.gaussian_filter(rng.standard_normal((side, side)).astype(np.float32), 1.5)
    refl = refl * (1.0 + 0.03 * tex / max(float(np.abs(tex).max()), 1e-6))
    grey = np.clip(refl * light, 0, 1)
    if style.colour:
        tint = 1.0 + rng.uniform(-0.06, 0.06, 3)
        ink_tint = 1.0 + rng.uniform(-0.15, 0.15, 3) * ink[..., None]
        rgb = np.clip(grey[..., None] * tint[None, None, :] * ink_tint, 0, 1)
        img = Image.fromarray(np.rint(rgb * 255).astype(np.uint8), "RGB")
    else:
        img = Image.fromarray(np.rint(grey * 255).astype(np.uint8), "L")

    # perspective: the paper seen from a tilted camera; the picture is warped with a margin and
    # cropped back, so that it shows paper only (no paper edge or fill colour in the frame)
    j = style.perspective * inner
    corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float64)
    dst = corners + rng.uniform(-j, j, (4, 2))
    coeffs = _perspective_coeffs(corners, dst)
    img = img.transform((side, side), Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR)
    img = img.crop((m, m, side - m, side - m))
    blur = rng.uniform(*style.blur_px) * frame / 100.0
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, np.float32) / 255.0
    arr = arr + rng.uniform(*style.noise) * rng.standard_normal(arr.shape).astype(np.float32)
    img = Image.fromarray(np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8), img.mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1)))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return np.asarray(out)


def photo_digits(images: np.ndarray, seed: SeedLike, style: PhotoStyle = PhotoStyle()) -> np.ndarray:
    """``uint8 [n, 28, 28]``: each digit rendered as a synthetic photo, then preprocessed exactly as
    the device does (``edge_rbmlp.image.preprocess_digit``)."""
    from edge_rbmlp.image import preprocess_digit

    rng = rng_of(seed)
    images = np.asarray(images)
    out = np.empty((len(images), 28, 28), np.uint8)
    for i, img in enumerate(images):
        out[i] = preprocess_digit(render_photo(img, rng, style))
    return out


# -- text --------------------------------------------------------------------
_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
_BR = re.compile(r"<br\s*/?>", re.I)


def words_of(text: str) -> List[str]:
    """Whitespace-separated words of a review (HTML line breaks removed)."""
    return _WORD.findall(_BR.sub(" ", text))


def first_words(text: str, n: int) -> str:
    """The review cut to its first ``n`` words (as a user would type a short review)."""
    return " ".join(words_of(text)[:n])


def snippet(text: str, seed: SeedLike, min_words: int = 5, max_words: int = 50) -> str:
    """``min_words..max_words`` consecutive words: from the start of the review half of the time,
    else from a random place in it."""
    rng = rng_of(seed)
    words = words_of(text)
    n = int(rng.integers(min_words, max_words + 1))
    if len(words) <= n:
        return " ".join(words)
    start = 0 if rng.random() < 0.5 else int(rng.integers(0, len(words) - n + 1))
    return " ".join(words[start:start + n])


def sentences_of(text: str) -> List[str]:
    return [s.strip() for s in _SENTENCE.findall(_BR.sub(" ", text)) if s.strip()]


def sample_sentences(text: str, seed: SeedLike, max_sentences: int = 3) -> str:
    """One to ``max_sentences`` consecutive sentences of the review."""
    rng = rng_of(seed)
    sents = sentences_of(text)
    if not sents:
        return text
    k = int(rng.integers(1, max_sentences + 1))
    start = int(rng.integers(0, max(1, len(sents) - k + 1)))
    return " ".join(sents[start:start + k])


def augment_texts(texts: Sequence[str], seed: SeedLike, fraction: float = 0.5,
                  p_sentences: float = 0.5) -> List[str]:
    """A copy of ``texts`` in which a random ``fraction`` of the reviews is replaced by a snippet
    (:func:`snippet`) or, with probability ``p_sentences``, by sampled sentences."""
    rng = rng_of(seed)
    pick = rng.random(len(texts)) < fraction
    kind = rng.random(len(texts)) < p_sentences
    seeds = rng.integers(0, 2**63 - 1, len(texts))
    out = list(texts)
    for i in np.flatnonzero(pick):
        r = np.random.default_rng(int(seeds[i]))
        out[i] = sample_sentences(texts[i], r) if kind[i] else snippet(texts[i], r)
    return out


def parse_mode(mode: str, dataset: str) -> str:
    """Validate an ``--augment`` value against the data set."""
    if mode not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_MODES)}, got {mode!r}")
    if mode == "text" and dataset != "imdb":
        raise ValueError("--augment text is for the imdb data set")
    if mode in ("digits", "digits+photo", "photo") and dataset != "mnist":
        raise ValueError(f"--augment {mode} is for the mnist data set")
    return mode


# -- printed and display digits ---------------------------------------------------
# Fonts the *training* renders from (``make train-fonts``). They must stay disjoint from every font the
# out-of-distribution sets use (train/ood.py: MPL_FONTS, PRINT_FONTS, HAND_FONTS, DISPLAY_FONTS), and
# from faces derived from those (tests/test_augment.py checks files, packages and family names):
# not fonts-croscore (Arimo/Tinos/Cousine are Liberation's designs), fonts-texgyre (URW base35's),
# fonts-hack (DejaVu Sans Mono's), fonts-freefont-otf (FreeFont).
_TT = "/usr/share/fonts/truetype"
_OT = "/usr/share/fonts/opentype"
TRAIN_PRINT_FONTS = {  # Debian package -> font files
    "fonts-roboto-unhinted": [f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-{s}.ttf" for s in (
        "Regular", "Bold", "Light", "Medium", "Black", "Italic", "BoldItalic", "Thin")]
    + [f"{_TT}/roboto/unhinted/RobotoCondensed-{s}.ttf" for s in ("Regular", "Bold", "Light", "Italic")],
    "fonts-open-sans": [f"{_TT}/open-sans/OpenSans-{s}.ttf" for s in (
        "Regular", "Bold", "Light", "Semibold", "ExtraBold", "Italic", "CondBold", "CondLight")],
    "fonts-lato": [f"{_TT}/lato/Lato-{s}.ttf" for s in ("Regular", "Bold", "Black", "Light", "Hairline", "Italic",
                                                          "Heavy", "Medium")],
    "fonts-crosextra-carlito": [f"{_TT}/crosextra/Carlito-{s}.ttf" for s in ("Regular", "Bold", "Italic")],
    "fonts-crosextra-caladea": [f"{_TT}/crosextra/Caladea-{s}.ttf" for s in ("Regular", "Bold", "Italic")],
    "fonts-linuxlibertine": [f"{_OT}/linux-libertine/{f}.otf" for f in (
        "LinLibertine_R", "LinLibertine_RB", "LinLibertine_RI", "LinLibertine_DR", "LinBiolinum_R", "LinBiolinum_RB",
        "LinBiolinum_RI")],
    "fonts-inconsolata": [f"{_TT}/inconsolata/Inconsolata.otf"],
    "fonts-firacode": [f"{_TT}/firacode/FiraCode-{s}.ttf" for s in ("Regular", "Bold", "Light")],
    "fonts-cantarell": [f"{_OT}/cantarell/Cantarell-{s}.otf" for s in ("Regular", "Bold", "Light", "ExtraBold")],
    "fonts-jetbrains-mono": [f"{_TT}/jetbrains-mono/JetBrainsMono-{s}.ttf" for s in (
        "Regular", "Bold", "Light", "Italic", "ExtraBold", "Thin")],
    "fonts-sil-gentium": [f"{_TT}/gentium/{f}.ttf" for f in ("Gentium-R", "Gentium-I", "GentiumAlt-R")],
    "fonts-oxygen": [f"{_TT}/oxygen/{f}.ttf" for f in ("Oxygen-Sans", "Oxygen-Sans-Bold", "OxygenMono-Regular")],
    "fonts-league-spartan": [f"{_OT}/league-spartan/LeagueSpartan-{s}.otf" for s in ("Regular", "Bold", "Light",
                                                                                     "Black")],
    "fonts-quicksand": [f"{_TT}/quicksand/Quicksand-{s}.ttf" for s in ("Regular", "Bold", "Light")],
    "fonts-anonymous-pro": [f"{_TT}/anonymous-pro/Anonymous Pro{s}.ttf" for s in ("", " B", " I")],
    "fonts-b612": [f"{_OT}/b612/B612{f}.otf" for f in ("-Regular", "-Bold", "-Italic", "Mono-Regular")],
    "fonts-adf-accanthis": [f"{_TT}/adf/AccanthisADFStd{f}.otf" for f in ("-Regular", "-Bold", "No2-Regular",
                                                                          "No3-Italic")],
}
# seven- and fourteen-segment faces: the Classic styles train; the Modern ones are held out (ood.py)
TRAIN_DISPLAY_FONTS = {
    "fonts-dseg": [f"{_TT}/dseg/DSEG{n}Classic{m}-{s}.ttf" for n in ("7", "14") for m in ("", "Mini")
                   for s in ("Regular", "Bold", "Light", "Italic", "BoldItalic")],
}
TRAIN_FONT_PACKAGES = sorted(set(TRAIN_PRINT_FONTS) | set(TRAIN_DISPLAY_FONTS))


def training_font_files(table: dict) -> List[str]:
    """The files of a font table; a missing one is an error naming ``make train-fonts`` (never skipped)."""
    import os

    missing = sorted({pkg for pkg, fs in table.items() for f in fs if not os.path.exists(f)})
    if missing:
        raise FileNotFoundError(f"training fonts missing (Debian {', '.join(missing)}): run `make train-fonts`")
    return [f for fs in table.values() for f in fs]


@dataclass(frozen=True)
class PrintStyle:
    """Ranges of a printed digit as a camera or scanner sees it (a grey picture of any size)."""

    font_px: tuple = (24, 96)
    aspect: tuple = (0.75, 1.3)        # width stretch of the glyph
    italic: tuple = (-0.12, 0.28)      # x shift per unit of height (synthetic oblique)
    rotation_deg: float = 7.0
    p_bold: float = 0.25               # extra stroke (PIL stroke_width) of 1-3 % of the size
    margin: tuple = (1.15, 2.4)        # canvas side / glyph's larger side
    p_light_on_dark: float = 0.25      # LED / backlit display polarity
    contrast: tuple = (0.35, 1.0)
    p_blur: float = 0.35
    blur_px: tuple = (0.3, 1.6)        # relative to a 64 px glyph
    noise: tuple = (0.0, 0.05)


@dataclass(frozen=True)
class DisplayStyle:
    """Ranges of a procedurally drawn seven-segment or dot-matrix display digit."""

    height_px: tuple = (28, 110)
    aspect: tuple = (0.42, 0.62)        # digit width / height
    thickness: tuple = (0.10, 0.22)     # segment thickness relative to half the height
    gap: tuple = (0.005, 0.05)          # between segments, relative to the height
    shapes: tuple = ("hex", "rect")     # segment ends: pointed (hexagon), square or "round"
    slant: tuple = (0.0, 0.2)           # italic displays lean right
    p_ghost: float = 0.3                # unlit segments faintly visible (LCD)
    ghost: tuple = (0.06, 0.22)         # their contrast relative to a lit segment
    p_light_on_dark: float = 0.5        # LED / backlit vs reflective LCD
    p_variant: float = 0.35             # 6 without its top bar, 7 with a left bar, 9 without its bottom bar
    dot_fill: tuple = (0.6, 0.95)       # dot diameter / dot pitch (dot matrix)
    dot_shapes: tuple = ("round", "square")
    margin: tuple = (1.15, 2.0)
    contrast: tuple = (0.35, 1.0)
    p_blur: float = 0.5
    blur_px: tuple = (0.3, 1.8)         # relative to a 64 px digit
    noise: tuple = (0.0, 0.05)


SEVEN_SEGMENTS = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg", 6: "acdefg", 7: "abc",
                  8: "abcdefg", 9: "abcdfg"}
SEVEN_VARIANTS = {6: "cdefg", 7: "abcf", 9: "abcfg"}
# 5x7 dot-matrix digits (the common HD44780 character generator's), rows top to bottom
DOT_MATRIX = {
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}
DOT_MATRIX_VARIANTS = {0: ("01110", "10001", "10001", "10001", "10001", "10001", "01110")}


def _finish(ink: np.ndarray, rng: np.random.Generator, margin: tuple, p_lod: float, contrast: tuple,
            p_blur: float, blur_px: tuple, noise: tuple, size_px: float) -> np.ndarray:
    """Ink coverage ``[h, w]`` in 0..1 -> a grey picture: margins, polarity, contrast, blur, noise."""
    ndi = _ndimage()
    h, w = ink.shape
    side = int(round(max(h, w) * rng.uniform(*margin)))
    ch, cw = max(side, h + 2), max(int(round(side * rng.uniform(0.9, 1.4))), w + 2)
    canvas = np.zeros((ch, cw), np.float32)
    oy, ox = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
    canvas[oy:oy + h, ox:ox + w] = ink
    c = rng.uniform(*contrast)
    if rng.random() < p_lod:  # light digit on a dark display
        bg = rng.uniform(0.0, 1.0 - c)
        img = bg + c * canvas
    else:
        bg = rng.uniform(c, 1.0)
        img = bg - c * canvas
    if rng.random() < p_blur:
        img = ndi.gaussian_filter(img, rng.uniform(*blur_px) * size_px / 64.0)
    img = img + rng.uniform(*noise) * rng.standard_normal(img.shape).astype(np.float32)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def render_printed(font_path: str, digit: int, seed: SeedLike, style: PrintStyle = PrintStyle()) -> np.ndarray:
    """``uint8 [H, W]``: one digit printed from a font (dark on light or, sometimes, light on dark)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = rng_of(seed)
    size = int(rng.integers(style.font_px[0], style.font_px[1] + 1))
    font = ImageFont.truetype(font_path, size)
    stroke = int(round(size * rng.uniform(0.01, 0.03))) if rng.random() < style.p_bold else 0
    text = str(digit)
    l, t, r, b = font.getbbox(text, stroke_width=stroke)
    pad = 4 + stroke
    glyph = Image.new("L", (r - l + 2 * pad, b - t + 2 * pad), 0)
    ImageDraw.Draw(glyph).text((pad - l, pad - t), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    w, h = glyph.size
    k = rng.uniform(*style.italic)
    a = rng.uniform(*style.aspect)
    nw = max(1, int(round(w * a + abs(k) * h)))
    # x_out = a x_in + k (h - y) + off: stretched, leaning right for k > 0 (off keeps x_out >= 0)
    off = max(0.0, -k * h)
    glyph = glyph.transform((nw, h), Image.AFFINE, (1.0 / a, k / a, (-k * h - off) / a, 0.0, 1.0, 0.0), Image.BICUBIC)
    glyph = glyph.rotate(float(rng.uniform(-style.rotation_deg, style.rotation_deg)), Image.BICUBIC, expand=True)
    ink = np.asarray(glyph, np.float32) / 255.0
    return _finish(ink, rng, style.margin, style.p_light_on_dark, style.contrast, style.p_blur, style.blur_px,
                   style.noise, float(max(ink.shape)))


def _segment_polygon(p0, p1, t: float, shape: str) -> List[tuple]:
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    d = p1 - p0
    d = d / max(np.hypot(*d), 1e-9)
    nrm = np.array([-d[1], d[0]]) * t / 2
    if shape == "hex":
        q0, q1 = p0 + d * t / 2, p1 - d * t / 2
        pts = [p0, q0 + nrm, q1 + nrm, p1, q1 - nrm, q0 - nrm]
    elif shape == "round":  # a stadium: half circles at both ends
        q0, q1 = p0 + d * t / 2, p1 - d * t / 2
        ang = np.linspace(-np.pi / 2, np.pi / 2, 9)
        u = nrm / max(np.hypot(*nrm), 1e-9)
        arc = [np.cos(a) * d + np.sin(a) * u for a in ang]
        pts = [q1 + (t / 2) * v for v in arc] + [q0 - (t / 2) * v for v in arc]
    else:
        q0, q1 = p0 + d * t * 0.1, p1 - d * t * 0.1
        pts = [q0 + nrm, q1 + nrm, q1 - nrm, q0 - nrm]
    return [tuple(p) for p in pts]


def render_seven_segment(digit: int, seed: SeedLike, style: DisplayStyle = DisplayStyle()) -> np.ndarray:
    """``uint8 [H, W]``: a seven-segment display digit (LED or LCD, maybe with faint unlit segments)."""
    from PIL import Image, ImageDraw

    rng = rng_of(seed)
    H = float(rng.integers(style.height_px[0], style.height_px[1] + 1)) * 2  # drawn at 2x
    W = H * rng.uniform(*style.aspect)
    t = H / 2 * rng.uniform(*style.thickness)
    g = H * rng.uniform(*style.gap)
    shape = style.shapes[int(rng.integers(len(style.shapes)))]
    slant = rng.uniform(*style.slant)
    on = SEVEN_SEGMENTS[digit]
    if digit in SEVEN_VARIANTS and rng.random() < style.p_variant:
        on = SEVEN_VARIANTS[digit]
    ghost = rng.uniform(*style.ghost) if rng.random() < style.p_ghost else 0.0
    x0, x1, y0, ym, y1 = t / 2, W - t / 2, t / 2, H / 2, H - t / 2
    seg = {"a": ((x0 + g, y0), (x1 - g, y0)), "g": ((x0 + g, ym), (x1 - g, ym)), "d": ((x0 + g, y1), (x1 - g, y1)),
           "f": ((x0, y0 + g), (x0, ym - g)), "b": ((x1, y0 + g), (x1, ym - g)),
           "e": ((x0, ym + g), (x0, y1 - g)), "c": ((x1, ym + g), (x1, y1 - g))}
    pad = int(np.ceil(t + slant * H)) + 4
    img = Image.new("L", (int(np.ceil(W)) + 2 * pad, int(np.ceil(H)) + 2 * pad), 0)
    draw = ImageDraw.Draw(img)
    for name, (p0, p1) in seg.items():
        level = 255 if name in on else int(round(255 * ghost))
        if level == 0:
            continue
        poly = [(pad + x + slant * (H - y), pad + y) for x, y in _segment_polygon(p0, p1, t, shape)]
        draw.polygon(poly, fill=level)
    img = img.resize((max(1, img.size[0] // 2), max(1, img.size[1] // 2)), Image.BILINEAR)
    ink = np.asarray(img, np.float32) / 255.0
    return _finish(ink, rng, style.margin, style.p_light_on_dark, style.contrast, style.p_blur, style.blur_px,
                   style.noise, H / 2)


def render_dot_matrix(digit: int, seed: SeedLike, style: DisplayStyle = DisplayStyle()) -> np.ndarray:
    """``uint8 [H, W]``: a 5x7 dot-matrix display digit."""
    from PIL import Image, ImageDraw

    rng = rng_of(seed)
    rows = DOT_MATRIX[digit]
    if digit in DOT_MATRIX_VARIANTS and rng.random() < style.p_variant:
        rows = DOT_MATRIX_VARIANTS[digit]
    H = float(rng.integers(style.height_px[0], style.height_px[1] + 1)) * 2
    pitch_y = H / 7
    pitch_x = pitch_y * rng.uniform(0.85, 1.15)
    fill = rng.uniform(*style.dot_fill)
    shape = style.dot_shapes[int(rng.integers(len(style.dot_shapes)))]
    slant = rng.uniform(*style.slant)
    ghost = rng.uniform(*style.ghost) if rng.random() < style.p_ghost else 0.0
    pad = int(np.ceil(pitch_x + slant * H)) + 4
    img = Image.new("L", (int(np.ceil(5 * pitch_x)) + 2 * pad, int(np.ceil(H)) + 2 * pad), 0)
    draw = ImageDraw.Draw(img)
    r = fill * min(pitch_x, pitch_y) / 2
    for j, row in enumerate(rows):
        for i, bit in enumerate(row):
            level = 255 if bit == "1" else int(round(255 * ghost))
            if level == 0:
                continue
            cy = pad + (j + 0.5) * pitch_y
            cx = pad + (i + 0.5) * pitch_x + slant * (H - (j + 0.5) * pitch_y)
            box = [cx - r, cy - r, cx + r, cy + r]
            (draw.ellipse if shape == "round" else draw.rectangle)(box, fill=level)
    img = img.resize((max(1, img.size[0] // 2), max(1, img.size[1] // 2)), Image.BILINEAR)
    ink = np.asarray(img, np.float32) / 255.0
    return _finish(ink, rng, style.margin, style.p_light_on_dark, style.contrast, style.p_blur, style.blur_px,
                   style.noise, H / 2)


def printed_digits(n: int, seed: SeedLike, display_share: float = 0.3, print_style: PrintStyle = PrintStyle(),
                   display_style: DisplayStyle = DisplayStyle(), redraw_refused: int = 0):
    """``(uint8 [n, 28, 28], int64 [n])``: digits printed from the training fonts (``1 - display_share``)
    and display digits (``display_share``: a third each DSEG Classic faces, procedural seven-segment,
    procedural 5x7 dot matrix), each passed through the device's ``edge_rbmlp.image.preprocess_digit``.
    Labels cycle 0..9; fonts and kinds are drawn from the generator (deterministic for the seed).

    ``redraw_refused``: a picture the device refuses before classifying it (``edge_rbmlp.reject.picture_reason``:
    e.g. "not one digit" when the pipeline keeps one segment of a widely spaced display digit) is drawn
    anew, up to this many times (the model never sees such crops on the device; as training samples they
    are label noise); 0 keeps every picture (``--printed-fraction`` runs before that option)."""
    from edge_rbmlp.image import preprocess_digit_info
    from edge_rbmlp.reject import picture_reason

    rng = rng_of(seed)
    prints = training_font_files(TRAIN_PRINT_FONTS)
    displays = training_font_files(TRAIN_DISPLAY_FONTS)
    out = np.empty((n, 28, 28), np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    for i in range(n):
        d = int(labels[i])
        for attempt in range(redraw_refused + 1):
            if rng.random() >= display_share:
                img = render_printed(prints[int(rng.integers(len(prints)))], d, rng, print_style)
            else:
                kind = int(rng.integers(3))
                if kind == 0:
                    img = render_printed(displays[int(rng.integers(len(displays)))], d, rng, print_style)
                elif kind == 1:
                    img = render_seven_segment(d, rng, display_style)
                else:
                    img = render_dot_matrix(d, rng, display_style)
            out[i], info = preprocess_digit_info(img)
            if attempt == redraw_refused or picture_reason(info, img.shape[:2]) is None:
                break
    return out, labels
