"""Display digits for the pipeline tests: seven-segment and 5x7 dot-matrix digits drawn with PIL (one digit,
or several side by side as a display shows them), with gaps between their segments and dots."""

from __future__ import annotations
import numpy as np
from PIL import Image, ImageDraw

# The segment and dot tables repeat train/augment.py's SEVEN_SEGMENTS and DOT_MATRIX on purpose: the
# qemu ARM run (native/arm/test-arm.sh) copies tests/ alone, without the train package, and the
# digit pipeline's tests run there too.

SEG = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg",
       9: "abcdfg"}
DOTS = {0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
        1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
        2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
        3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
        4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
        5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
        6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
        7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
        8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
        9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100")}


def _canvas(width, height, margin, paper):
    return Image.new("L", (int(width + 2 * margin), int(height + 2 * margin)), paper)


def seven_segment(digits, height=80, aspect=0.5, thickness=0.12, gap=0.04, spacing=0.3, slant=0.0,
                  dark_on_light=True, margin=None):
    """Seven-segment digits ``height`` pixels tall; ``thickness``, ``gap`` (the empty space between two
    segments) and ``spacing`` (between digits) relative to the height."""
    H, W, t, g = height, aspect * height, thickness * height, gap * height
    margin = H * 0.4 if margin is None else margin
    total = len(digits) * W + (len(digits) - 1) * spacing * H + slant * H
    paper, ink = (235, 25) if dark_on_light else (20, 230)
    img = _canvas(total, H, margin, paper)
    draw = ImageDraw.Draw(img)
    for n, d in enumerate(digits):
        ox = margin + n * (W + spacing * H)
        x0, x1, y0, ym, y1 = t / 2, W - t / 2, t / 2, H / 2, H - t / 2
        e = g + t / 2  # the segments end this far from the corners: a gap of g between them
        seg = {"a": ((x0 + e, y0), (x1 - e, y0)), "g": ((x0 + e, ym), (x1 - e, ym)), "d": ((x0 + e, y1), (x1 - e, y1)),
               "f": ((x0, y0 + e), (x0, ym - e)), "b": ((x1, y0 + e), (x1, ym - e)),
               "e": ((x0, ym + e), (x0, y1 - e)), "c": ((x1, ym + e), (x1, y1 - e))}
        for name in SEG[d]:
            (ax, ay), (bx, by) = seg[name]
            if ay == by:
                box = [(ax, ay - t / 2), (bx, ay - t / 2), (bx, ay + t / 2), (ax, ay + t / 2)]
            else:
                box = [(ax - t / 2, ay), (ax + t / 2, ay), (ax + t / 2, by), (ax - t / 2, by)]
            draw.polygon([(ox + x + slant * (H - y), margin + y) for x, y in box], fill=ink)
    return np.asarray(img)


def dot_matrix(digits, height=70, fill=0.5, spacing=1.0, dark_on_light=True, round_dots=True, margin=None):
    """5x7 dot-matrix digits ``height`` pixels tall; ``fill``: dot diameter / pitch; ``spacing``: empty
    columns between digits."""
    p = height / 7
    margin = height * 0.4 if margin is None else margin
    total = len(digits) * 5 * p + (len(digits) - 1) * spacing * p
    paper, ink = (235, 25) if dark_on_light else (20, 230)
    img = _canvas(total, height, margin, paper)
    draw = ImageDraw.Draw(img)
    r = fill * p / 2
    for n, d in enumerate(digits):
        ox = margin + n * (5 + spacing) * p
        for j, row in enumerate(DOTS[d]):
            for i, bit in enumerate(row):
                if bit == "1":
                    cx, cy = ox + (i + 0.5) * p, margin + (j + 0.5) * p
                    (draw.ellipse if round_dots else draw.rectangle)([cx - r, cy - r, cx + r, cy + r], fill=ink)
    return np.asarray(img)
