"""Out-of-distribution evaluation sets and float baselines (issue 11), for ``python -m train ood-eval``.

Every set is built deterministically at run time, from a fixed seed and a fixed size, out of things
installed from package registries (nothing is downloaded):

digits (images as a user would hand them to ``engine.predict_image``; every model, and the float
baseline, sees them through the device preprocessing ``edge_rbmlp.image.preprocess_digit``):

* ``mnist-test``            MNIST test digits (an even 2,000 of the 10,000), the in-distribution reference
* ``mnist-affine``          MNIST test digits rotated (+-30 deg), sheared, scaled, shifted (28x28)
* ``mnist-elastic-stroke``  ... elastically distorted, strokes thickened or thinned (28x28)
* ``mnist-blur-noise``      ... blurred, low contrast, noisy (28x28)
* ``mnist-light``           ... under a light gradient and a perspective warp, JPEG-compressed (28x28)
* ``uci-digits``            real handwriting of 43 other writers: scikit-learn's bundled UCI optical
                            digits (``load_digits``, all 1,797, 8x8, 17 grey levels), upscaled to 32x32 and
                            framed dark on white as a scan would give them
* ``uci-8x8``               the same digits as the 8x8 arrays themselves
* ``fonts-mpl``             digits rendered from matplotlib's own fonts (DejaVu, STIX, Computer Modern)
* ``fonts-print``           ... from Debian's printed faces (Liberation, FreeFont, URW base35)
* ``fonts-hand``            ... from Debian's handwriting-like faces (Comic Neue, Humor Sans, dkg, Breip, ...)
* ``strokes``               synthetic pen strokes: digit skeletons as jittered, slanted polylines of random width
* ``photo-mnist``           synthetic photos (uneven light, shadow, blur, noise, perspective, JPEG) of MNIST test digits
* ``photo-fonts``           ... of digits rendered from all the fonts above
* ``photo-uci``             ... of the UCI handwritten digits
* ``display``               display digits (meters, clocks): DSEG's Modern seven/fourteen-segment faces (the
                            training renders only its Classic ones) as LCD and LED, and procedural
                            seven-segment (round-ended) and 5x7 dot-matrix drawings in styles the training's
                            renderer never uses

text (strings, given to ``engine.predict_text``):

* ``imdb-test``             IMDB test reviews (an even 5,000 of the 25,000)
* ``imdb-first-N``          the same reviews cut to their first N = 5, 10, 20, 50 words
* ``imdb-sentence``         one random sentence of each

The Debian fonts come from ``make ood-fonts``; when they are missing those sets are skipped with that
reason (they are never silently replaced). Baselines trained on the same data (cached under
``build/ood-baselines``): a float MLP 128-88 (Keras, 10 epochs) on MNIST, and a logistic regression on
the same 10,000-word bag of words (multi-hot, the train-split vocabulary) for IMDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .augment import (DigitAugment, DisplayStyle, PhotoStyle, augment_digits, first_words, render_dot_matrix,
                      render_photo, render_seven_segment, rng_of, sentences_of)

DEFAULT_BASELINE_DIR = Path("build") / "ood-baselines"


class SetUnavailable(RuntimeError):
    """A set cannot be built here (with the reason and what to install)."""


@dataclass
class EvalSet:
    name: str
    kind: str  # "image" or "text"
    inputs: list  # uint8 arrays (any size, grey or RGB) or strings
    labels: np.ndarray
    description: str
    seed: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """sha256 over the inputs and labels (two builds of a set are equal iff this is)."""
        h = hashlib.sha256()
        for x in self.inputs:
            if isinstance(x, str):
                h.update(x.encode("utf-8"))
            else:
                a = np.ascontiguousarray(x)
                h.update(str(a.shape).encode())
                h.update(a.tobytes())
        h.update(np.asarray(self.labels, np.int64).tobytes())
        return h.hexdigest()


# -- fonts -------------------------------------------------------------------
def _mpl_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


MPL_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
             "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
             "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
             "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf",
             "cmti10.ttf"]

_TT = "/usr/share/fonts/truetype"
_OT = "/usr/share/fonts/opentype"
PRINT_FONTS = {  # Debian package -> font files
    "fonts-liberation": [f"{_TT}/liberation/Liberation{f}-{s}.ttf" for f in ("Sans", "Serif", "Mono", "SansNarrow")
                         for s in ("Regular", "Bold", "Italic")],
    "fonts-freefont-ttf": [f"{_TT}/freefont/Free{f}{s}.ttf" for f in ("Sans", "Serif", "Mono")
                           for s in ("", "Bold", "Oblique" if f != "Serif" else "Italic")],
    "fonts-urw-base35": [f"{_OT}/urw-base35/{f}.otf" for f in (
        "NimbusSans-Regular", "NimbusSans-Bold", "NimbusRoman-Regular", "NimbusRoman-Italic", "NimbusMonoPS-Regular",
        "URWGothic-Book", "URWGothic-Demi", "URWBookman-Light", "URWBookman-DemiItalic", "C059-Roman", "C059-Italic",
        "P052-Roman", "P052-Bold", "NimbusSansNarrow-Regular")],
    "fonts-dejavu-extra": [f"{_TT}/dejavu/DejaVuSansCondensed.ttf", f"{_TT}/dejavu/DejaVuSerifCondensed-Bold.ttf",
                           f"{_TT}/dejavu/DejaVuSans-ExtraLight.ttf"],
}
HAND_FONTS = {
    "fonts-comic-neue": [f"{_OT}/comic-neue/ComicNeue-{s}.otf" for s in ("Regular", "Bold", "Italic", "Light")],
    "fonts-humor-sans": [f"{_TT}/humor-sans/Humor-Sans.ttf"],
    "fonts-dkg-handwriting": [f"{_TT}/fifthhorseman/dkg.ttf", f"{_TT}/fifthhorseman/dkgBd.ttf"],
    "fonts-breip": [f"{_TT}/breip/Breip.ttf"],
    "fonts-femkeklaver": [f"{_TT}/femkeklaver/femkeklaver.ttf"],
    "fonts-rufscript": [f"{_TT}/rufscript/Rufscript010.ttf"],
    "fonts-kaushanscript": [f"{_OT}/kaushanscript/KaushanScript-Regular.otf"],
    "fonts-bwht": [f"{_OT}/bwht/BecauseWe{n}-Regular.otf" for n in ("Build", "Connect", "Create", "Learn", "Mentor",
                                                                    "Organize")],
    "fonts-urw-base35": [f"{_OT}/urw-base35/Z003-MediumItalic.otf"],
}


# display faces held out from training (train/augment.py trains on DSEG's Classic styles only)
DISPLAY_FONTS = {
    "fonts-dseg": [f"{_TT}/dseg/DSEG{n}Modern{m}-{s}.ttf" for n in ("7", "14") for m in ("", "Mini")
                   for s in ("Regular", "Bold", "Light", "Italic", "BoldItalic", "LightItalic")]
    + [f"{_TT}/dseg/DSEG7SEGGCHAN-Regular.ttf"],
}
# procedural display digits in styles the training's DisplayStyle() never draws: round-ended, thicker,
# wider-spaced segments; sparser dots
EVAL_SEVEN_SEGMENT = DisplayStyle(height_px=(30, 120), aspect=(0.5, 0.72), thickness=(0.16, 0.3), gap=(0.02, 0.07),
                                  shapes=("round",), slant=(0.05, 0.25), p_ghost=0.5, ghost=(0.08, 0.25),
                                  p_light_on_dark=0.5, p_variant=0.5, margin=(1.2, 2.2), contrast=(0.3, 0.9),
                                  p_blur=0.6, blur_px=(0.4, 2.0), noise=(0.0, 0.06))
EVAL_DOT_MATRIX = DisplayStyle(height_px=(30, 120), dot_fill=(0.45, 0.65), dot_shapes=("round",), slant=(0.0, 0.15),
                               p_ghost=0.5, ghost=(0.08, 0.25), p_light_on_dark=0.5, p_variant=0.5, margin=(1.2, 2.2),
                               contrast=(0.3, 0.9), p_blur=0.6, blur_px=(0.4, 2.0), noise=(0.0, 0.06))


def font_files(group: str) -> List[str]:
    """The fixed font list of a group; raises :class:`SetUnavailable` naming what to install."""
    if group == "mpl":
        d = _mpl_font_dir()
        files = [str(d / f) for f in MPL_FONTS]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise SetUnavailable(f"matplotlib's fonts are missing ({missing[0]}): pip install matplotlib")
        return files
    table = {"print": PRINT_FONTS, "hand": HAND_FONTS, "display": DISPLAY_FONTS}[group]
    files = [f for fs in table.values() for f in fs]
    missing = sorted({pkg for pkg, fs in table.items() for f in fs if not os.path.exists(f)})
    if missing:
        raise SetUnavailable(f"Debian fonts missing ({', '.join(missing)}): run `make ood-fonts`")
    return files


def render_font_digit(font_path: str, digit: int, rng: np.random.Generator, canvas: int = 96) -> np.ndarray:
    """``uint8 [canvas, canvas]``: one digit printed dark on white, random size, position and slight tilt."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(36, 72))
    font = ImageFont.truetype(font_path, size)
    text = str(digit)
    l, t, r, b = font.getbbox(text)
    glyph = Image.new("L", (r - l + 8, b - t + 8), 0)
    ImageDraw.Draw(glyph).text((4 - l, 4 - t), text, fill=255, font=font)
    glyph = glyph.rotate(float(rng.uniform(-8, 8)), Image.BICUBIC, expand=True)
    w, h = glyph.size
    if max(w, h) > canvas - 8:
        f = (canvas - 8) / max(w, h)
        glyph = glyph.resize((max(1, int(w * f)), max(1, int(h * f))), Image.BICUBIC)
        w, h = glyph.size
    img = Image.new("L", (canvas, canvas), 0)
    img.paste(glyph, (int(rng.integers(2, canvas - w - 1)), int(rng.integers(2, canvas - h - 1))))
    return 255 - np.asarray(img, np.uint8)  # dark print on white paper


def _font_set(name: str, files: List[str], n: int, seed: int, description: str) -> EvalSet:
    rng = np.random.default_rng(seed)
    images, labels, fonts = [], [], []
    for i in range(n):
        digit = i % 10
        f = files[(i // 10) % len(files)]
        images.append(render_font_digit(f, digit, rng))
        labels.append(digit)
        fonts.append(os.path.basename(f))
    return EvalSet(name, "image", images, np.asarray(labels, np.int64), description, seed,
                   {"fonts": sorted(set(fonts))})


# -- pen strokes ---------------------------------------------------------------
# Skeletons in a unit box (x right, y down): each digit has styles, each style a list of strokes,
# each stroke a polyline that is smoothed (Catmull-Rom) on its own, so corners between strokes stay sharp.
def _ellipse(cx=0.5, cy=0.5, rx=0.3, ry=0.45, k=14, start=-1.4, extra=0.35):
    t = np.linspace(start, start + 2 * np.pi + extra, k)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]


SKELETONS = {
    0: [[_ellipse()], [_ellipse(rx=0.24, ry=0.45, extra=0.0)]],
    1: [[[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.3, 0.25), (0.55, 0.05)], [(0.55, 0.05), (0.52, 0.95)]],
        [[(0.32, 0.22), (0.55, 0.05)], [(0.55, 0.05), (0.55, 0.95)], [(0.3, 0.95), (0.8, 0.95)]]],
    2: [[[(0.2, 0.25), (0.35, 0.08), (0.62, 0.06), (0.78, 0.26), (0.62, 0.55), (0.2, 0.93)], [(0.2, 0.93), (0.85, 0.92)]],
        [[(0.18, 0.3), (0.4, 0.06), (0.7, 0.1), (0.72, 0.38), (0.2, 0.9)], [(0.2, 0.9), (0.45, 0.8), (0.85, 0.9)]]],
    3: [[[(0.2, 0.15), (0.5, 0.04), (0.78, 0.2), (0.7, 0.4), (0.45, 0.5)],
         [(0.45, 0.5), (0.75, 0.6), (0.8, 0.8), (0.5, 0.96), (0.2, 0.85)]],
        [[(0.2, 0.06), (0.8, 0.06)], [(0.8, 0.06), (0.45, 0.42)], [(0.45, 0.42), (0.78, 0.58), (0.75, 0.88), (0.45, 0.96), (0.2, 0.86)]]],
    4: [[[(0.62, 0.05), (0.15, 0.65)], [(0.15, 0.65), (0.85, 0.65)], [(0.65, 0.3), (0.65, 0.95)]],
        [[(0.22, 0.05), (0.16, 0.55)], [(0.16, 0.55), (0.85, 0.55)], [(0.7, 0.05), (0.7, 0.95)]]],
    5: [[[(0.78, 0.07), (0.3, 0.07)], [(0.3, 0.07), (0.25, 0.45)],
         [(0.25, 0.45), (0.55, 0.38), (0.8, 0.55), (0.78, 0.8), (0.5, 0.95), (0.2, 0.85)]],
        [[(0.3, 0.07), (0.25, 0.45)], [(0.25, 0.45), (0.6, 0.4), (0.78, 0.65), (0.6, 0.92), (0.22, 0.88)],
         [(0.3, 0.07), (0.8, 0.05)]]],
    6: [[[(0.72, 0.06), (0.42, 0.25), (0.22, 0.6), (0.3, 0.88), (0.55, 0.96), (0.78, 0.78), (0.7, 0.55), (0.45, 0.5), (0.24, 0.66)]],
        [[(0.65, 0.05), (0.3, 0.45), (0.25, 0.75), (0.5, 0.95), (0.75, 0.75), (0.55, 0.55), (0.28, 0.7)]]],
    7: [[[(0.15, 0.07), (0.85, 0.07)], [(0.85, 0.07), (0.4, 0.95)]],
        [[(0.15, 0.07), (0.85, 0.07)], [(0.85, 0.07), (0.45, 0.95)], [(0.35, 0.5), (0.78, 0.5)]],
        [[(0.18, 0.18), (0.2, 0.07), (0.82, 0.07)], [(0.82, 0.07), (0.6, 0.45), (0.5, 0.95)]]],
    8: [[[(0.5, 0.5), (0.75, 0.32), (0.7, 0.1), (0.5, 0.04), (0.3, 0.1), (0.27, 0.32), (0.5, 0.5), (0.78, 0.7),
          (0.7, 0.92), (0.5, 0.96), (0.28, 0.9), (0.23, 0.7), (0.5, 0.5)]],
        [_ellipse(0.5, 0.27, 0.2, 0.22, 12, extra=0.2), _ellipse(0.5, 0.73, 0.26, 0.24, 12, extra=0.2)]],
    9: [[[(0.75, 0.3), (0.6, 0.07), (0.35, 0.07), (0.22, 0.28), (0.35, 0.47), (0.6, 0.45), (0.75, 0.3)],
         [(0.75, 0.3), (0.72, 0.95)]],
        [[(0.75, 0.3), (0.6, 0.07), (0.35, 0.07), (0.22, 0.28), (0.35, 0.47), (0.6, 0.45), (0.75, 0.3)],
         [(0.75, 0.3), (0.7, 0.72), (0.45, 0.96)]]],
}


def _catmull_rom(points: np.ndarray, per_segment: int = 10) -> np.ndarray:
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        t = np.linspace(0, 1, per_segment + 1)[:, None]
        return p[0] + t * (p[-1] - p[0]) if len(p) == 2 else p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(p[-1:])
    return np.vstack(out)


def render_strokes(digit: int, rng: np.random.Generator, canvas: int = 96) -> np.ndarray:
    """``uint8 [canvas, canvas]``: a pen-drawn digit, dark on white (drawn at 2x and downsampled)."""
    from PIL import Image, ImageDraw

    styles = SKELETONS[digit]
    strokes = styles[int(rng.integers(len(styles)))]
    # one random affine per digit: slant, rotation, aspect, size, position
    slant = rng.uniform(-0.35, 0.25)
    rot = np.deg2rad(rng.uniform(-10, 10))
    aspect = rng.uniform(0.55, 1.05)
    height = rng.uniform(0.45, 0.8) * canvas * 2
    c, s = np.cos(rot), np.sin(rot)
    S = 2 * canvas
    cx, cy = S / 2 + rng.uniform(-0.08, 0.08) * S, S / 2 + rng.uniform(-0.08, 0.08) * S
    width0 = rng.uniform(0.025, 0.11) * height  # pen width relative to the digit's height
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    jitter = rng.uniform(0.01, 0.045)
    for stroke in strokes:
        pts = np.asarray(stroke, np.float64) + rng.normal(0, jitter, (len(stroke), 2))
        curve = _catmull_rom(pts)
        x = (curve[:, 0] - 0.5) * aspect
        y = curve[:, 1] - 0.5
        x = x - slant * y
        xr, yr = c * x - s * y, s * x + c * y
        px, py = cx + xr * height, cy + yr * height
        # the pen's width drifts along the stroke
        wv = width0 * np.exp(np.cumsum(rng.normal(0, 0.06, len(px))))
        wv = np.clip(wv, 0.5 * width0, 1.8 * width0)
        for i in range(len(px) - 1):
            w = float(wv[i])
            draw.line([(px[i], py[i]), (px[i + 1], py[i + 1])], fill=255, width=max(1, int(round(w))))
            r = w / 2
            draw.ellipse([px[i] - r, py[i] - r, px[i] + r, py[i] + r], fill=255)
        r = float(wv[-1]) / 2
        draw.ellipse([px[-1] - r, py[-1] - r, px[-1] + r, py[-1] + r], fill=255)
    img = img.resize((canvas, canvas), Image.LANCZOS)
    ink = np.asarray(img, np.float32) / 255.0 * rng.uniform(0.7, 1.0)
    return np.rint(255 * (1.0 - ink)).astype(np.uint8)


# -- builders --------------------------------------------------------------------
def _mnist_test(n: int):
    from edge_rbmlp import datasets

    x, y = datasets.load_mnist("test")
    return datasets.even_subset(x, y, n)


def _uci():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SetUnavailable("scikit-learn is missing (its wheel bundles the UCI optical digits): "
                             "pip install -e '.[train]'") from exc
    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)  # light on dark, 8x8
    return images, d.target.astype(np.int64)


def _upscale_dark_on_white(img8: np.ndarray, side: int = 64) -> np.ndarray:
    from PIL import Image

    up = Image.fromarray(img8, "L").resize((side, side), Image.BICUBIC)
    return np.asarray(up, np.uint8)


EVAL_AFFINE = DigitAugment(rotation_deg=30.0, scale=(0.7, 1.2), shear=0.4, translate_px=4.0, p_elastic=0.0,
                           p_thicker=0.0, p_thinner=0.0, p_blur=0.0, p_contrast=0.0, p_noise=0.0)
EVAL_ELASTIC = DigitAugment(rotation_deg=0.0, scale=(1.0, 1.0), shear=0.0, translate_px=0.0, p_elastic=1.0,
                            elastic_alpha=(30.0, 45.0), elastic_sigma=4.0, p_thicker=0.4, p_thinner=0.4,
                            p_blur=0.0, p_contrast=0.0, p_noise=0.0)
EVAL_BLUR_NOISE = DigitAugment(rotation_deg=0.0, scale=(1.0, 1.0), shear=0.0, translate_px=0.0, p_elastic=0.0,
                               p_thicker=0.0, p_thinner=0.0, p_blur=0.7, blur_sigma=(0.6, 1.4), p_contrast=1.0,
                               peak=(0.3, 0.8), gamma=(0.6, 1.6), p_noise=1.0, noise_sigma=(0.05, 0.2))
# the photo sets use a style of their own (grey or colour, stronger light and blur) rather than the
# training default, so that a model trained with --augment digits+photo is not scored on its own renderer
EVAL_PHOTO = PhotoStyle(digit_px=(36, 120), margin=(1.25, 2.5), paper=(0.4, 0.95), light_gradient=(0.1, 0.6),
                        vignette=(0.0, 0.5), ink=(0.02, 0.45), p_shadow=0.5, perspective=0.12, rotation_deg=15.0,
                        blur_px=(0.3, 2.4), noise=(0.01, 0.06), jpeg_quality=(15, 85), colour=True)


def _light_perspective(images: np.ndarray, seed: int) -> List[np.ndarray]:
    """28x28 digits under a light gradient and a perspective warp, JPEG-compressed."""
    from PIL import Image
    import io

    from .augment import _perspective_coeffs

    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32) / 27.0
    for img in images:
        ang = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5) + 0.5
        bg = rng.uniform(0.05, 0.4) * ramp + rng.uniform(0.0, 0.15)
        x = np.clip(bg + (img.astype(np.float32) / 255.0) * rng.uniform(0.6, 1.0), 0, 1)
        pil = Image.fromarray(np.rint(x * 255).astype(np.uint8), "L")
        corners = np.array([[0, 0], [28, 0], [28, 28], [0, 28]], np.float64)
        dst = corners + rng.uniform(-3.5, 3.5, (4, 2))
        pil = pil.transform((28, 28), Image.PERSPECTIVE, tuple(_perspective_coeffs(corners, dst)), Image.BILINEAR)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(20, 80)))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("L"), np.uint8))
    return out


def _photos(digits_light: Sequence[np.ndarray], seed: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_photo(d, rng, EVAL_PHOTO) for d in digits_light]


def build_digit_set(name: str, n: Optional[int] = None) -> EvalSet:
    """Build one digit set; ``n`` overrides its size (tests)."""
    if name == "mnist-test":
        x, y = _mnist_test(n or 2000)
        return EvalSet(name, "image", list(x), y, "MNIST test digits, an even subset (in-distribution)", 0)
    if name in ("mnist-affine", "mnist-elastic-stroke", "mnist-blur-noise"):
        seed = {"mnist-affine": 101, "mnist-elastic-stroke": 102, "mnist-blur-noise": 103}[name]
        cfg = {"mnist-affine": EVAL_AFFINE, "mnist-elastic-stroke": EVAL_ELASTIC, "mnist-blur-noise": EVAL_BLUR_NOISE}[name]
        x, y = _mnist_test(n or 1000)
        desc = {"mnist-affine": "MNIST test digits, rotation +-30 deg, shear +-0.4, scale 0.7-1.2, shift +-4 px",
                "mnist-elastic-stroke": "MNIST test digits, elastic (alpha 30-45, sigma 4), strokes thicker/thinner",
                "mnist-blur-noise": "MNIST test digits, blur (p 0.7), contrast 0.3-0.8 + gamma, noise 0.05-0.2"}[name]
        return EvalSet(name, "image", list(augment_digits(x, seed, cfg)), y, desc, seed)
    if name == "mnist-light":
        x, y = _mnist_test(n or 1000)
        return EvalSet(name, "image", _light_perspective(x, 104), y,
                       "MNIST test digits, light gradient, perspective, JPEG (28x28)", 104)
    if name in ("uci-digits", "uci-8x8"):
        images, labels = _uci()
        if n:
            images, labels = images[:n], labels[:n]
        if name == "uci-8x8":
            return EvalSet(name, "image", list(images), labels,
                           "UCI optical digits (scikit-learn load_digits), 43 writers, the 8x8 arrays as they are", 0)
        scans = [np.pad(_upscale_dark_on_white(255 - im, 32), 8, constant_values=255) for im in images]
        return EvalSet(name, "image", scans, labels,
                       "UCI optical digits, 43 writers: 8x8 upscaled to 32x32 (bicubic), dark on white, 8 px margin", 0)
    if name.startswith("fonts-"):
        group = name.split("-", 1)[1]
        seed = {"mpl": 201, "print": 202, "hand": 203}[group]
        files = font_files(group)
        return _font_set(name, files, n or 1000, seed, f"digits printed from {len(files)} {group} fonts, dark on white")
    if name == "strokes":
        rng = np.random.default_rng(301)
        k = n or 1000
        return EvalSet(name, "image", [render_strokes(i % 10, rng) for i in range(k)],
                       np.arange(k, dtype=np.int64) % 10, "synthetic pen strokes, dark on white", 301)
    if name == "photo-mnist":
        x, y = _mnist_test(n or 1000)
        return EvalSet(name, "image", _photos(x, 401), y, "synthetic photos of MNIST test digits", 401)
    if name == "photo-fonts":
        files = []
        groups = []
        for g in ("mpl", "print", "hand"):
            try:
                files += font_files(g)
                groups.append(g)
            except SetUnavailable:
                if g == "mpl":
                    raise
        if groups != ["mpl", "print", "hand"]:
            raise SetUnavailable("Debian fonts missing: run `make ood-fonts`")
        fs = _font_set(name, files, n or 1000, 402, "")
        light = [255 - im for im in fs.inputs]
        return EvalSet(name, "image", _photos(light, 403), fs.labels,
                       f"synthetic photos of digits printed from {len(files)} fonts", 402, fs.meta)
    if name == "display":
        files = font_files("display")
        rng = np.random.default_rng(205)
        k = n or 1000
        images, kinds = [], []
        for i in range(k):
            digit, kind = i % 10, (i // 10) % 4
            if kind < 2:  # a held-out DSEG face, as an LCD (dark on light) or, for kind 1, an LED (light on dark)
                img = render_font_digit(files[(i // 40) % len(files)], digit, rng)
                images.append(255 - img if kind == 1 else img)
            elif kind == 2:
                images.append(render_seven_segment(digit, rng, EVAL_SEVEN_SEGMENT))
            else:
                images.append(render_dot_matrix(digit, rng, EVAL_DOT_MATRIX))
            kinds.append(("dseg-lcd", "dseg-led", "seven-segment", "dot-matrix")[kind])
        return EvalSet(name, "image", images, np.arange(k, dtype=np.int64) % 10,
                       f"display digits: {len(files)} held-out DSEG faces (Modern, SEGGCHAN) as LCD and LED, "
                       "round-ended seven-segment and sparse 5x7 dot-matrix drawings", 205,
                       {"fonts": sorted({os.path.basename(f) for f in files}), "kinds": kinds})
    if name == "photo-uci":
        images, labels = _uci()
        idx = np.linspace(0, len(labels) - 1, n or 1000).round().astype(np.int64)
        light = [255 - _upscale_dark_on_white(255 - images[i]) for i in idx]
        return EvalSet(name, "image", _photos(light, 404), labels[idx], "synthetic photos of the UCI handwritten digits",
                       404)
    raise KeyError(name)


DIGIT_SETS = ["mnist-test", "mnist-affine", "mnist-elastic-stroke", "mnist-blur-noise", "mnist-light", "uci-digits", "uci-8x8",
              "fonts-mpl", "fonts-print", "fonts-hand", "strokes", "photo-mnist", "photo-fonts", "photo-uci", "display"]
TEXT_CUTS = (5, 10, 20, 50)
TEXT_SETS = ["imdb-test"] + [f"imdb-first-{k}" for k in TEXT_CUTS] + ["imdb-sentence"]


def build_text_set(name: str, n: Optional[int] = None) -> EvalSet:
    from edge_rbmlp import datasets

    texts, labels = datasets.load_imdb_reviews("test")
    texts, labels = datasets.even_subset(texts, np.asarray(labels), n or 5000)
    labels = np.asarray(labels, np.int64)
    if name == "imdb-test":
        return EvalSet(name, "text", list(texts), labels, "IMDB test reviews, an even subset", 0)
    if name.startswith("imdb-first-"):
        k = int(name.rsplit("-", 1)[1])
        return EvalSet(name, "text", [first_words(t, k) for t in texts], labels,
                       f"IMDB test reviews cut to their first {k} words", 0)
    if name == "imdb-sentence":
        rng = np.random.default_rng(501)
        out = []
        for t in texts:
            s = sentences_of(t) or [t]
            out.append(s[int(rng.integers(len(s)))])
        return EvalSet(name, "text", out, labels, "one random sentence of each IMDB test review", 501)
    raise KeyError(name)


def build_set(name: str, n: Optional[int] = None) -> EvalSet:
    return build_text_set(name, n) if name.startswith("imdb") else build_digit_set(name, n)


def _code_tag() -> str:
    """A hash of the code that builds the sets (a cached set is used only by the same code)."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for f in ("ood.py", "augment.py"):
        h.update((here / f).read_bytes())
    return h.hexdigest()[:12]


def cached_set(name: str, n: Optional[int] = None, cache_dir: Optional[Path] = None) -> EvalSet:
    """:func:`build_set`, kept as ``.npz`` under ``cache_dir`` (keyed by the set, its size, the data
    set's verified files and the hash of this code): rendering the photo sets takes most of an evaluation."""
    if cache_dir is None or name.startswith("imdb"):
        return build_set(name, n)
    path = Path(cache_dir) / f"{name}_n{n or 'full'}_{_code_tag()}_{_data_tag('mnist')}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        k = int(z["count"])
        meta = json.loads(str(z["meta"]))
        return EvalSet(name, "image", [z[f"x{i}"] for i in range(k)], z["labels"], meta["description"],
                       meta["seed"], meta["meta"])
    es = build_set(name, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, count=len(es.inputs), labels=es.labels,
             meta=json.dumps({"description": es.description, "seed": es.seed, "meta": es.meta}),
             **{f"x{i}": x for i, x in enumerate(es.inputs)})
    os.replace(tmp, path)
    return es


# -- baselines -------------------------------------------------------------------
def _data_tag(dataset: str) -> str:
    from edge_rbmlp import datasets

    rec = datasets.verified_record(dataset) or {}
    return hashlib.sha256(json.dumps(rec.get("files", rec), sort_keys=True).encode()).hexdigest()[:12]


class MLPBaseline:
    """Float MLP 128-88 (ReLU) -> softmax on MNIST pixels / 255, trained with Keras; inference in numpy."""

    name = "float MLP 128-88"

    def __init__(self, weights: List[np.ndarray], meta: dict):
        self.weights = weights
        self.meta = meta

    def predict_q(self, q: np.ndarray) -> np.ndarray:
        h = np.asarray(q, np.float32).reshape(len(q), -1) / 255.0
        w = self.weights
        for i in range(0, len(w) - 2, 2):
            h = np.maximum(h @ w[i] + w[i + 1], 0.0)
        return (h @ w[-2] + w[-1]).argmax(axis=1)

    @classmethod
    def load_or_train(cls, cache_dir: Path, epochs: int = 10, seed: int = 0, limit_train: Optional[int] = None,
                      echo: Callable[[str], None] = print, augment: Optional[dict] = None) -> "MLPBaseline":
        """``augment``: train on the same augmented epochs as a candidate (the keys of its report's
        ``provenance.hyperparameters``: augment, augment_fraction, photo_fraction, printed_fraction,
        display_share; and its seed) instead of plain MNIST: epoch ``e`` of the baseline sees exactly the
        arrays of the candidate's epoch ``e`` (``train.pipeline.AugmentedEpochs``)."""
        aug = _augment_key(augment) if augment else None
        tag = (f"mnist_mlp128-88_e{epochs}_s{seed}" + (f"_n{limit_train}" if limit_train else "")
               + (f"_aug{hashlib.sha256(json.dumps(aug, sort_keys=True).encode()).hexdigest()[:10]}" if aug else "")
               + f"_{_data_tag('mnist')}")
        path = Path(cache_dir) / f"{tag}.npz"
        if path.exists():
            z = np.load(path, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
            return cls([z[f"w{i}"] for i in range(int(z["n"]))], meta)
        echo(f"training the float MLP baseline ({epochs} epochs{', augmented: ' + str(aug) if aug else ''}) -> {path}")
        from edge_rbmlp import datasets

        from .tf_setup import import_tf, set_seed

        tf, _ = import_tf()
        xi, yi = datasets.load_mnist("train")
        xt, yt = datasets.load_mnist("test")
        if limit_train:
            xi, yi = datasets.even_subset(xi, yi, limit_train)
        set_seed(seed)
        model = tf.keras.Sequential([tf.keras.layers.Input((784,)), tf.keras.layers.Dense(128, activation="relu"),
                                     tf.keras.layers.Dense(88, activation="relu"), tf.keras.layers.Dense(10)])
        model.compile(tf.keras.optimizers.Adam(0.001),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        t0 = time.time()
        if aug is None:
            model.fit(xi.reshape(len(xi), -1).astype(np.float32) / 255.0, yi, batch_size=32, epochs=epochs, verbose=0,
                      shuffle=True)
            n_train = len(yi)
        else:
            epochs_of = _augmented_epochs(aug, xi, yi)
            n_train = 0
            for e in range(epochs):
                q, y = epochs_of.epoch(e)
                n_train = len(y)
                model.fit(q.reshape(len(q), -1).astype(np.float32) / 255.0, y, batch_size=32, initial_epoch=e,
                          epochs=e + 1, verbose=0, shuffle=True)
        weights = [w.astype(np.float32) for w in model.get_weights()]
        base = cls(weights, {})
        acc = float(np.mean(base.predict_q(xt.reshape(len(xt), -1)) == yt))
        base.meta = {"model": "Dense 128 ReLU, Dense 88 ReLU, Dense 10 (softmax), Adam 0.001, batch 32",
                     "epochs": epochs, "seed": seed, "n_train": int(n_train), "mnist_test_accuracy": acc,
                     "training_seconds": round(time.time() - t0, 1), **({"augment": aug} if aug else {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, n=len(weights), meta=json.dumps(base.meta), **{f"w{i}": w for i, w in enumerate(weights)})
        echo(f"float MLP baseline: MNIST test accuracy {acc:.4f} ({base.meta['training_seconds']} s)")
        return base


AUGMENT_KEYS = ("augment", "augment_fraction", "photo_fraction", "printed_fraction", "display_share", "printed_redraw",
                "seed")


def _augment_key(hp: dict) -> dict:
    """The augmentation settings that define a candidate's training data (defaults as ``FitConfig``'s)."""
    out = {"augment": hp.get("augment", "none"), "augment_fraction": float(hp.get("augment_fraction", 0.5)),
           "photo_fraction": float(hp.get("photo_fraction", 0.1)),
           "printed_fraction": float(hp.get("printed_fraction", 0.0)),
           "display_share": float(hp.get("display_share", 0.3)), "printed_redraw": int(hp.get("printed_redraw", 0)),
           "seed": int(hp.get("seed", 0))}
    if out["augment"] != "none" and "photo" not in out["augment"]:
        out.pop("photo_fraction")  # not used
    if out["printed_fraction"] == 0:
        out.pop("display_share")
    if not out["printed_redraw"]:
        out.pop("printed_redraw")  # as before the option (so the cached baselines keep their names)
    return out


def _augmented_epochs(aug: dict, xi: np.ndarray, yi: np.ndarray):
    """``train.pipeline.AugmentedEpochs`` over these MNIST arrays with a candidate's settings."""
    from edge_rbmlp.inputs import InputSpec

    from .pipeline import AugmentedEpochs, Data, FitConfig

    cfg = FitConfig(dataset="mnist", arch=None, seed=aug["seed"], augment=aug["augment"],
                    augment_fraction=aug["augment_fraction"], photo_fraction=aug.get("photo_fraction", 0.1),
                    printed_fraction=aug["printed_fraction"], display_share=aug.get("display_share", 0.3),
                    printed_redraw=aug.get("printed_redraw", 0))
    import contextlib
    import sys

    q = xi.reshape(len(xi), -1)
    data = Data("mnist", InputSpec.image(28, 28), [str(i) for i in range(10)], "softmax", q, yi, q[:0], yi[:0])
    with contextlib.redirect_stdout(sys.stderr):  # its progress lines must not mix with ood-eval --json
        return AugmentedEpochs(cfg, data)


def model_augmentation(model: str) -> Optional[dict]:
    """The augmentation settings recorded in a model's provenance (``None``: trained on plain data)."""
    from edge_rbmlp import load_packed_model

    prov = load_packed_model(model).provenance or {}
    hp = dict(prov.get("hyperparameters") or {})
    if hp.get("augment", "none") == "none" and not hp.get("printed_fraction"):
        return None
    hp.setdefault("seed", prov.get("seed", 0))
    return _augment_key(hp)


class LogRegBaseline:
    """Logistic regression (scikit-learn, L2, C=1) on the 10,000-word multi-hot bag of words of the train split."""

    name = "logistic regression"

    def __init__(self, vocab: List[str], coef: np.ndarray, intercept: float, meta: dict):
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.coef = np.asarray(coef, np.float64)
        self.intercept = float(intercept)
        self.meta = meta

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        from edge_rbmlp.text import tokenize

        out = np.empty(len(texts), np.int64)
        for i, t in enumerate(texts):
            idx = {self.index[w] for w in tokenize(t) if w in self.index}
            z = self.intercept + float(self.coef[list(idx)].sum()) if idx else self.intercept
            out[i] = int(z > 0)
        return out

    @classmethod
    def load_or_train(cls, cache_dir: Path, vocab_size: int = 10000, C: float = 1.0, limit_train: Optional[int] = None,
                      echo: Callable[[str], None] = print) -> "LogRegBaseline":
        tag = f"imdb_logreg_v{vocab_size}_C{C:g}" + (f"_n{limit_train}" if limit_train else "") + f"_{_data_tag('imdb')}"
        path = Path(cache_dir) / f"{tag}.npz"
        if path.exists():
            z = np.load(path, allow_pickle=False)
            return cls(list(z["vocab"]), z["coef"], float(z["intercept"]), json.loads(str(z["meta"])))
        echo(f"training the logistic-regression baseline -> {path}")
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        from edge_rbmlp import datasets
        from edge_rbmlp.text import build_vocabulary, tokenize

        texts, y = datasets.load_imdb_reviews("train")
        y = np.asarray(y)
        if limit_train:
            texts, y = datasets.even_subset(texts, y, limit_train)
        t0 = time.time()
        vocab = build_vocabulary(texts, vocab_size)
        index = {w: i for i, w in enumerate(vocab)}
        rows, cols = [], []
        for r, t in enumerate(texts):
            idx = sorted({index[w] for w in tokenize(t) if w in index})
            rows.extend([r] * len(idx))
            cols.extend(idx)
        x = sparse.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(len(texts), len(vocab)))
        clf = LogisticRegression(C=C, max_iter=2000, solver="liblinear")
        clf.fit(x, y)
        base = cls(vocab, clf.coef_[0], float(clf.intercept_[0]), {})
        tt, yt = datasets.load_imdb_reviews("test")
        acc = float(np.mean(base.predict_texts(tt) == np.asarray(yt)))
        base.meta = {"model": f"LogisticRegression(C={C:g}, liblinear) on the multi-hot {len(vocab)}-word bag of words "
                              "(train-split vocabulary, edge_rbmlp.text tokenizer)",
                     "n_train": int(len(y)), "imdb_test_accuracy": acc, "training_seconds": round(time.time() - t0, 1)}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vocab=np.asarray(vocab), coef=base.coef, intercept=base.intercept, meta=json.dumps(base.meta))
        echo(f"logistic-regression baseline: IMDB test accuracy {acc:.4f} ({base.meta['training_seconds']} s)")
        return base


# -- evaluation --------------------------------------------------------------------
def _model_kind(model: str) -> str:
    """"image" or "text": the bundled names directly, a path from its packed file's input spec."""
    if model in ("mnist", "imdb"):
        return "image" if model == "mnist" else "text"
    from edge_rbmlp import load_packed_model

    return load_packed_model(model).input_spec.kind


def evaluate_model_on_set(engine, es: EvalSet) -> dict:
    """Accuracy of an engine through its public API (``predict_image`` / ``predict_text``).

    ``accuracy``: a prediction without a label (a refused input) counts as wrong; ``rejected`` counts
    them, by reason. ``accuracy_forced``: the class of highest probability is taken for every answer
    that has probabilities, refused or not (the classifier without the reject rule)."""
    correct = rejected = forced = 0
    reasons: Dict[str, int] = {}
    t0 = time.time()
    for x, y in zip(es.inputs, es.labels):
        p = engine.predict_image(x) if es.kind == "image" else engine.predict_text(x)
        probs = list(getattr(p, "probabilities", None) or [])
        if probs and int(np.argmax(probs)) == int(y):
            forced += 1
        if getattr(p, "label", None) is None or getattr(p, "class_index", None) is None:
            rejected += 1
            why = str(getattr(p, "reason", None) or "refused").split(":")[0]
            reasons[why] = reasons.get(why, 0) + 1
        elif int(p.class_index) == int(y):
            correct += 1
    n = len(es)
    return {"accuracy": correct / n if n else None, "accuracy_forced": forced / n if n else None, "n": n,
            "rejected": rejected, "rejected_reasons": reasons, "seconds": round(time.time() - t0, 2)}


def evaluate_baseline_on_set(baseline, es: EvalSet) -> dict:
    t0 = time.time()
    if es.kind == "image":
        from edge_rbmlp.image import preprocess_digit

        q = np.stack([preprocess_digit(x) for x in es.inputs]).reshape(len(es), -1)
        pred = baseline.predict_q(q)
    else:
        pred = baseline.predict_texts(es.inputs)
    return {"accuracy": float(np.mean(pred == es.labels)) if len(es) else None, "n": len(es),
            "seconds": round(time.time() - t0, 2)}


def ood_eval(model: str = "mnist", sets: Optional[Sequence[str]] = None, limit: Optional[int] = None,
             baseline: bool = True, baseline_dir: Path = DEFAULT_BASELINE_DIR, baseline_epochs: int = 10,
             baseline_limit_train: Optional[int] = None, backend: str = "auto",
             set_cache: Optional[Path] = None, echo: Callable[[str], None] = print,
             augmented_baseline: bool = False) -> dict:
    """Evaluate a bundled model name or ``.rbm`` path on every set of its kind, beside the baseline.

    ``augmented_baseline`` (digits): also a float MLP 128-88 trained on the same augmented data as the
    model (its provenance's augmentation settings), for ``baseline_epochs``."""
    import edge_rbmlp

    kind = _model_kind(model)
    names = list(sets) if sets else (DIGIT_SETS if kind == "image" else TEXT_SETS)
    wrong = [s for s in names if (s in TEXT_SETS) != (kind == "text") or s not in DIGIT_SETS + TEXT_SETS]
    if wrong:
        raise ValueError(f"sets {wrong} do not fit a {kind} model (sets: {DIGIT_SETS if kind == 'image' else TEXT_SETS})")
    engine = edge_rbmlp.load(model, backend) if backend != "auto" else edge_rbmlp.load(model)
    base = None
    if baseline:
        if kind == "image":
            base = MLPBaseline.load_or_train(baseline_dir, epochs=baseline_epochs, limit_train=baseline_limit_train,
                                             echo=echo)
        else:
            base = LogRegBaseline.load_or_train(baseline_dir, limit_train=baseline_limit_train, echo=echo)
    base_aug = None
    if augmented_baseline:
        if kind != "image":
            raise ValueError("the augmented baseline is for digit models")
        import edge_rbmlp.models as bundled

        path = str(Path(bundled.__file__).parent / f"{model}.rbm") if model == "mnist" else model
        aug = model_augmentation(path)
        if aug is None:
            raise ValueError(f"{model} was trained without augmentation: its baseline is the plain float MLP")
        base_aug = MLPBaseline.load_or_train(baseline_dir, epochs=baseline_epochs, limit_train=baseline_limit_train,
                                             echo=echo, augment=aug)
    rows = []
    for name in names:
        try:
            es = cached_set(name, limit, set_cache)
        except SetUnavailable as exc:
            rows.append({"set": name, "skipped": str(exc)})
            echo(f"{name}: skipped ({exc})")
            continue
        row = {"set": name, "description": es.description, "n": len(es), "seed": es.seed,
               "fingerprint": es.fingerprint()[:16], "model": evaluate_model_on_set(engine, es)}
        if base is not None:
            row["baseline"] = evaluate_baseline_on_set(base, es)
        if base_aug is not None:
            row["baseline_augmented"] = evaluate_baseline_on_set(base_aug, es)
        rows.append(row)
    return {"model": model, "kind": kind, "backend": getattr(engine, "name", None),
            "baseline": None if base is None else {"name": base.name, **base.meta},
            "baseline_augmented": None if base_aug is None else {"name": base_aug.name + ", same augmented data",
                                                                 **base_aug.meta},
            "limit": limit, "sets": rows}


def format_table(result: dict) -> str:
    has_base = result.get("baseline") is not None
    has_aug = result.get("baseline_augmented") is not None
    head = ("| set | n | model | " + ("baseline | model - baseline | " if has_base else "")
            + ("augmented baseline | " if has_aug else "") + "refused | model, argmax |")
    sep = "|---|---:|---:|" + ("---:|---:|" if has_base else "") + ("---:|" if has_aug else "") + "---:|---:|"
    lines = [head, sep]
    for r in result["sets"]:
        if "skipped" in r:
            lines.append(f"| {r['set']} | - | skipped: {r['skipped']} |" + (" | |" if has_base else "")
                         + (" |" if has_aug else "") + " | |")
            continue
        m = r["model"]["accuracy"]
        cells = [r["set"], str(r["n"]), f"{m:.4f}"]
        if has_base:
            b = r["baseline"]["accuracy"]
            cells += [f"{b:.4f}", f"{m - b:+.4f}"]
        if has_aug:
            cells.append(f"{r['baseline_augmented']['accuracy']:.4f}")
        cells.append(str(r["model"]["rejected"]))
        f = r["model"].get("accuracy_forced")
        cells.append("-" if f is None else f"{f:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
