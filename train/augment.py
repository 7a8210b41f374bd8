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
