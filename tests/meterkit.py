"""Meter-like camera frames for the reader tests and benchmarks/reader_accuracy.py: real MNIST test
digits composed into a multi-digit number at fixed positions (a counter's wheels), on a noisy,
unevenly lit background, with a little camera shake from frame to frame."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CELL = 56  # a digit's 28x28 MNIST cell, in frame pixels
GAP = 14
PAD = 6  # the ROI is the cell plus this much on every side
FRAME = (160, 320)  # h, w


def layout(n_digits: int = 4, frame=FRAME, cell: int = CELL, gap: int = GAP) -> List[Tuple[int, int, int, int]]:
    """The cells' [x, y, w, h] (where the digits are drawn), centred in the frame."""
    h, w = frame
    width = n_digits * cell + (n_digits - 1) * gap
    x0, y0 = (w - width) // 2, (h - cell) // 2
    return [(x0 + i * (cell + gap), y0, cell, cell) for i in range(n_digits)]


def rois(n_digits: int = 4, frame=FRAME, pad: int = PAD) -> List[List[int]]:
    """The reader's ROIs for :func:`layout`: every cell with ``pad`` pixels around it."""
    return [[x - pad, y - pad, w + 2 * pad, h + 2 * pad] for x, y, w, h in layout(n_digits, frame)]


class DigitBank:
    """MNIST test digits by class, drawn without repeats (in a fixed random order per seed)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.x = x
        self.by_class: Dict[int, List[int]] = {d: list(rng.permutation(np.nonzero(y == d)[0])) for d in range(10)}
        self.next = {d: 0 for d in range(10)}

    def take(self, digit: int) -> np.ndarray:
        pool = self.by_class[digit]
        i = pool[self.next[digit] % len(pool)]
        self.next[digit] += 1
        return self.x[i]


def compose(glyphs: Sequence[np.ndarray], rng: np.random.Generator, dark: bool = False, frame=FRAME,
            shake: int = 3) -> np.ndarray:
    """One RGB uint8 frame: the 28x28 ``glyphs`` (MNIST: ink coverage) in the cells of :func:`layout`,
    shifted together by up to ``shake`` pixels, on paper (or a dark display when ``dark``) under a
    light gradient and vignette, tinted, blurred and noisy (:func:`photograph`)."""
    from PIL import Image

    h, w = frame
    alpha = np.zeros((h, w), np.float32)
    dx, dy = (int(v) for v in rng.integers(-shake, shake + 1, 2))
    for (x, y, cw, ch), glyph in zip(layout(len(glyphs), frame), glyphs):
        cell = np.asarray(Image.fromarray(glyph).resize((cw, ch), Image.BILINEAR), np.float32) / 255.0
        alpha[y + dy: y + dy + ch, x + dx: x + dx + cw] = np.maximum(alpha[y + dy: y + dy + ch, x + dx: x + dx + cw], cell)
    if dark:
        return photograph(alpha, rng, gradient=0.6, paper=(0.08, 0.25), ink=(0.7, 0.95))
    return photograph(alpha, rng, gradient=0.6, paper=(0.6, 0.95), ink=(0.05, 0.3))


def photograph(alpha: np.ndarray, rng: np.random.Generator, gradient: float, paper: Tuple[float, float],
               ink: Tuple[float, float]) -> np.ndarray:
    """Ink coverage ``alpha`` ``[h, w]`` (0..1) -> a camera-like RGB uint8 frame: a paper level and
    an ink level drawn from their ``(lo, hi)`` ranges, lit by a linear gradient of strength up to
    ``gradient`` in a random direction and a vignette, tinted, slightly blurred and noisy."""
    from PIL import Image, ImageFilter

    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / max(h, w)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    vignette = 1 - rng.uniform(0.0, 0.35) * (((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2)
    light = np.clip((1 + rng.uniform(0.1, gradient) * ramp) * vignette * rng.uniform(0.7, 1.1), 0.2, 1.3)
    paper_level, ink_level = rng.uniform(*paper), rng.uniform(*ink)
    grey = light * (paper_level * (1 - alpha) + ink_level * alpha)
    tint = rng.uniform(0.85, 1.0, 3).astype(np.float32)
    img = Image.fromarray((np.clip(grey[..., None] * tint, 0, 1) * 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    arr = np.asarray(img, np.float32) / 255.0 + rng.normal(0, rng.uniform(0.01, 0.05), (h, w, 3))
    return (np.clip(arr, 0, 1) * 255).astype(np.uint8)


def counter_sequence(bank: DigitBank, rng: np.random.Generator, start: int, values: int, hold: int,
                     n_digits: int = 4, new_glyphs_every_frame: bool = False, dark: Optional[bool] = None):
    """Frames of a counter from ``start``, each value shown for ``hold`` frames: [(frame, "0427"), ...].

    The glyphs of a value stay the same over its frames (a meter's digits do not change shape; the
    light, noise and shake do), unless ``new_glyphs_every_frame`` (a new handwriting every frame)."""
    out = []
    for k in range(values):
        text = str(start + k).zfill(n_digits)[-n_digits:]
        glyphs = [bank.take(int(c)) for c in text]
        is_dark = bool(rng.random() < 0.25) if dark is None else dark
        for _ in range(hold):
            if new_glyphs_every_frame:
                glyphs = [bank.take(int(c)) for c in text]
            out.append((compose(glyphs, rng, dark=is_dark), text))
    return out


def write_frames(directory, frames, fmt: str = "png") -> list:
    """Write frames as frame_00000.png, ... (the order of a dir: source); returns the paths."""
    from pathlib import Path

    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(frames):
        arr = item[0] if isinstance(item, tuple) else item
        path = directory / f"frame_{i:05d}.{fmt}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def clear_glyphs(x: np.ndarray, y: np.ndarray, engine, text: str, min_prob: float = 0.99) -> List[np.ndarray]:
    """For each character of ``text`` the first MNIST digit of that class that ``engine`` reads right with
    at least ``min_prob`` on its own (the MQTT tests check the plumbing, not the accuracy)."""
    picks = []
    for c in text:
        for i in np.nonzero(y == int(c))[0][:200]:
            p = engine.predict(x[i].reshape(1, -1))[0]
            if int(p.argmax()) == int(c) and p.max() >= min_prob:
                picks.append(x[i])
                break
        else:
            raise ValueError(f"no clear MNIST {c} among the first 200")
    return picks


def still_frames(glyphs: Sequence[np.ndarray], n: int, seed: int = 0, dark: bool = False) -> List[np.ndarray]:
    """``n`` frames of the same number: new light, noise and shake every frame."""
    rng = np.random.default_rng(seed)
    return [compose(glyphs, rng, dark=dark) for _ in range(n)]
