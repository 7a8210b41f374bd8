"""The digit pipeline's definition: any grey picture -> an MNIST-like 28x28 input, in integers.

This numpy module is the definition of correct; ``native/digit.c`` computes the same
thing in C (bit for bit: every step is integer arithmetic, so both agree exactly, and a
test compares them on random frames of odd sizes). :func:`edge_rbmlp.image.preprocess_digit`
runs the C version when the engine is built and this one otherwise.

MNIST digits are light on a dark background, fitted into a 20x20 box that keeps their
aspect ratio and centred by centre of mass in a 28x28 frame. A photo or a drawing
(``G``: uint8 grey, ``H x W``) is brought to the same form:

1. **Work image.** ``f = ceil(max(H, W) / 96)``; the work image ``A`` is the rounded mean
   of each ``f x f`` block of ``G`` (partial blocks at the edges: the mean of what is
   there). Everything up to the crop (step 6) runs on ``A`` (at most 96 a side), so a
   large frame costs one pass.
2. **Polarity.** ``b`` = the median of ``A``'s border. The paper's level is modelled as ``b``
   tilted by a linear gradient (the differences of the right and left column medians and of
   the bottom and top row medians, in 1/256 steps), so that light falling across the page
   does not look like ink; of ``A`` minus that plane, smoothed by ``[1 2 1]``, the larger
   extreme is the ink: if its most negative value is deeper than its most positive value is
   high, the picture is dark on light, and ``A`` (and later ``G``) is inverted
   (``255 - v``). Medians are order statistics read from a 256-bin histogram,
   ``median = sorted[(n - 1) // 2]``.
3. **Pass-through.** A picture already of the output size whose (polarity-corrected)
   border median is below 26 is returned as it is: the MNIST test set is classified
   exactly as the model saw it.
4. **Background** (uneven light), when both sides of ``A`` are >= 16: ``S`` = ``A``
   reduced the same way to at most 64 a side; a grey opening of ``S`` (a ``k x k`` min
   filter, then a ``k x k`` max filter, windows clipped at the edges, ``k`` odd, 3..31,
   about 30 % of ``S``'s longer side) removes strokes but keeps the light; two box blurs
   of radius ``r = max(1, k // 6)`` smooth it. ``bg(y, x)`` is ``S`` bilinearly
   interpolated (8-bit fixed point) at the centre of any pixel of ``A`` or ``G``.
   Foreground ``F = max(A - bg, 0)``. Smaller pictures: ``F = max(A - b, 0)``; one under 16 on
   both sides is the digit as a whole (step 5 is skipped: a digit fills such a picture).
5. **Digit region.** ``M`` = ``F`` smoothed by a 3x3 ``[1 2 1]`` kernel. Pixels count as
   ink where ``M > max(peak // 4, med + round(8.8956 * mad))`` (``med``/``mad``: median
   and median absolute deviation of ``M``, i.e. 6 robust sigmas of sensor noise). The
   8-connected components of the ink are gathered into marks (:func:`group_marks`): from the
   heaviest free component, a mark takes the nearest free component that lies within 1/3 of the
   longer side of their union box and has at least 8 % of the first component's mass (or lies
   inside the mark's box), until none does; so the segments
   of a seven-segment digit, the dots of a dot matrix, the detached bar of a 5 make one mark. The
   heaviest mark is the digit. A frame drawn around the digit (a hollow component, at most 30 % of
   its box inked, whose box strictly encloses components with at least 20 % of its mass) is left out
   first.
   No ink, or a kept peak below 13, is a blank picture: the output is all zero.
   The counts (components, kept, far: other marks of at least 25 % of the digit's mass, plus one
   when the digit's mark of several components is wider than tall) are returned for the reject decision.
6. **Crop**, at the resolution of the frame (not of ``A``): the kept region (grown by one
   work pixel) mapped to frame pixels, reduced by ``fc = max(1, L // 80)`` (``L`` its
   longer side) so that the crop is at most about 160 pixels; each crop pixel is
   ``max(mean(G) - bg, 0)`` inside the grown mask, 0 outside; a crop of at least twice the
   box (reduced later anyway) is smoothed by the 3x3 ``[1 2 1]`` kernel against sensor noise.
7. **Normalize.** Scaled so that its peak is 255; values below 51 (20 %) set to 0; cropped
   to the bounding box of what is left.
8. **Resize** so that the longer side is 20 (``round`` half up), with a separable
   triangle filter whose support grows with the reduction (antialiased; all weights are
   integers: ``w = max(0, max(2m, 2n) - |(2i + 1) m - (2j + 1) n|)`` for input ``i`` of ``n``
   and output ``j`` of ``m``), each pass rounded to an integer; then scaled to a peak of 255.
9. **Centre** of mass at the centre of the 28x28 frame (rounded half up, clamped inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

WORK_SIDE = 96
BACKGROUND_SIDE = 64
CROP_SIDE_PER_BOX = 4  # the crop keeps at least 4x the output box's resolution
PASSTHROUGH_BORDER = 26
BLANK_PEAK = 13
MIN_BACKGROUND_SIDE = 16
MAX_BOX = 64  # the digit's box (native/digit.c sizes its resize tables for it)
GROUP_GAP = (1, 3)  # step 5: a component joins a mark within 1/3 of the longer side of their union
GROUP_MIN_MASS = 8  # ... when it has at least 8 % of the mark's first component's mass (%)


@dataclass
class DigitInfo:
    """What the pipeline found (for the reject decision and for drawing)."""

    blank: bool = True
    inverted: bool = False
    passthrough: bool = False
    components: int = 0
    kept: int = 0
    far: int = 0  # other marks with >= 25 % of the digit's mass (+1: several pieces wider than tall)
    frames: int = 0  # hollow components drawn around others (a box around the digit), left out
    box: Tuple[int, int, int, int] = (0, 0, 0, 0)  # kept region in frame pixels: x, y, w, h
    peak: int = 0

    def as_tuple(self):
        return (int(self.blank), int(self.inverted), int(self.passthrough), self.components, self.kept, self.far,
                self.frames, *self.box, self.peak)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def block_mean(g: np.ndarray, f: int) -> np.ndarray:
    """Rounded mean of each ``f x f`` block (partial blocks: the mean of the pixels present)."""
    h, w = g.shape
    hh, ww = _ceil_div(h, f), _ceil_div(w, f)
    pad = np.zeros((hh * f, ww * f), np.int64)
    pad[:h, :w] = g
    sums = pad.reshape(hh, f, ww, f).sum(axis=(1, 3))
    rows = np.minimum(f, h - np.arange(hh) * f)
    cols = np.minimum(f, w - np.arange(ww) * f)
    count = rows[:, None] * cols[None, :]
    return ((sums + count // 2) // count).astype(np.int64)


def order_stat(values: np.ndarray, rank: int) -> int:
    return int(np.sort(values.ravel(), kind="stable")[rank])


def median(values: np.ndarray) -> int:
    return order_stat(values, (values.size - 1) // 2)


def border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    if h <= 2 or w <= 2:
        return a.ravel()
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def smooth121(a: np.ndarray) -> np.ndarray:
    """3x3 ``[1 2 1] x [1 2 1] / 16`` with edge replication, rounded."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    k = (1, 2, 1)
    s = sum(k[dy] * k[dx] * p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return (s + 8) >> 4


def _window_filter(a: np.ndarray, k: int, fn) -> np.ndarray:
    """``fn`` (np.minimum / np.maximum) over a k x k window clipped at the edges (separable)."""
    r = k // 2
    out = a.copy()
    for axis in (1, 0):
        src = out
        res = src.copy()
        n = src.shape[axis]
        for d in range(1, r + 1):
            if d >= n:
                break
            if axis == 1:
                res[:, :-d] = fn(res[:, :-d], src[:, d:])
                res[:, d:] = fn(res[:, d:], src[:, :-d])
            else:
                res[:-d, :] = fn(res[:-d, :], src[d:, :])
                res[d:, :] = fn(res[d:, :], src[:-d, :])
        out = res
    return out


def box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1) window clipped at the edges, rounded; rows then columns."""
    out = a
    for axis in (1, 0):
        n = out.shape[axis]
        c = np.cumsum(np.pad(out, [(1, 0) if ax == axis else (0, 0) for ax in range(2)]), axis=axis)
        idx = np.arange(n)
        lo = np.maximum(idx - r, 0)
        hi = np.minimum(idx + r, n - 1) + 1
        cnt = hi - lo
        if axis == 1:
            s = c[:, hi] - c[:, lo]
            out = (s + cnt[None, :] // 2) // cnt[None, :]
        else:
            s = c[hi, :] - c[lo, :]
            out = (s + cnt[:, None] // 2) // cnt[:, None]
    return out


def side_medians(a: np.ndarray) -> Tuple[int, int, int, int]:
    """Medians of the top row, bottom row, left column and right column."""
    return median(a[0]), median(a[-1]), median(a[:, 0]), median(a[:, -1])


def is_dark_on_light(a: np.ndarray) -> bool:
    """Is the ink darker than the paper? The border's level, tilted by the left/right and top/bottom
    differences of its side medians (a linear gradient of the light), is subtracted; of what is left
    (smoothed), the larger extreme is the ink: below the border's level (dark ink) or above it."""
    h, w = a.shape
    top, bottom, left, right = side_medians(a)
    b = median(border(a))
    xs, ys = np.arange(w, dtype=np.int64), np.arange(h, dtype=np.int64)
    tx = (right - left) * (2 * xs - (w - 1)) * 128 // (w - 1) if w > 1 else np.zeros(w, np.int64)
    ty = (bottom - top) * (2 * ys - (h - 1)) * 128 // (h - 1) if h > 1 else np.zeros(h, np.int64)
    r = a * 256 - (b * 256 + tx[None, :] + ty[:, None])
    r = smooth121(r)
    return int(-r.min()) > int(r.max())


def opening_size(bh: int, bw: int) -> int:
    """The opening's window: 30 % of the background map's longer side (odd, 3..31). Wide enough to
    remove the thick strokes of a large, clean digit (a scan, an upscaled 8x8 digit), which a 15 %
    window left partly in the background (UCI handwriting 0.47 -> 0.84 correct with the bundled model)."""
    radius = max(3, (30 * max(bh, bw)) // 100 | 1)
    return min(radius, 31) | 1


def background_map(a: np.ndarray) -> np.ndarray:
    """The smooth background estimate ``S`` (at most 64 a side) of work image ``a``."""
    h, w = a.shape
    f2 = max(1, _ceil_div(max(h, w), BACKGROUND_SIDE))
    s = block_mean(a, f2)
    k = opening_size(*s.shape)
    s = _window_filter(_window_filter(s, k, np.minimum), k, np.maximum)
    r = max(1, k // 6)
    return box_blur(box_blur(s, r), r)


def _bilinear_axis(centres2: np.ndarray, size: int, bsize: int):
    """Fixed-point (1/256) source coordinates in ``S`` of pixel centres given as twice the
    frame coordinate (``centres2``) of a frame axis of ``size`` pixels."""
    num = (centres2.astype(np.int64) * bsize * 128) // size - 128
    num = np.clip(num, 0, (bsize - 1) * 256)
    i0 = num >> 8
    frac = num & 255
    i1 = np.minimum(i0 + 1, bsize - 1)
    return i0, i1, frac


def bilinear(s: np.ndarray, ys2: np.ndarray, xs2: np.ndarray, H: int, W: int) -> np.ndarray:
    """``S`` at frame pixel centres (``ys2``/``xs2``: twice the frame coordinates) of an H x W frame."""
    bh, bw = s.shape
    y0, y1, fy = _bilinear_axis(ys2, H, bh)
    x0, x1, fx = _bilinear_axis(xs2, W, bw)
    fy, fx = fy[:, None], fx[None, :]
    top = s[y0][:, x0] * (256 - fx) + s[y0][:, x1] * fx
    bot = s[y1][:, x0] * (256 - fx) + s[y1][:, x1] * fx
    return (top * (256 - fy) + bot * fy + 32768) >> 16


def block_centres2(start: int, count: int, step: int) -> np.ndarray:
    """Twice the frame coordinate of the centres of ``count`` blocks of ``step`` pixels from ``start``."""
    return 2 * (start + np.arange(count) * step) + step


def components(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """Labels (1..n in raster order of each component's first pixel, 0 = background), 8-connected."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    n = 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        stack = [(y0, x0)]
        while stack:
            y, x = stack.pop()
            for yy in (y - 1, y, y + 1):
                if 0 <= yy < h:
                    for xx in (x - 1, x, x + 1):
                        if 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                            labels[yy, xx] = n
                            stack.append((yy, xx))
    return labels, n


def group_marks(mass: np.ndarray, boxes: dict, frames: set, n: int):
    """The components that make the digit, and how many other marks of its size there are.

    Components (``1..n``: ``mass``, ``boxes[k] = (y0, y1, x0, x1)``, ``frames`` left out) are gathered
    into marks. A mark starts from the heaviest component not yet taken (ties: the lowest label) and
    takes, one at a time, the nearest other free component ``k`` (the gap between ``k``'s box and the
    mark's box: the larger of the vertical and horizontal distances between them, 0 when they overlap;
    ties: the lowest label) that

    * lies within a gap of :data:`GROUP_GAP` (1/3) of the longer side of the union of the two boxes,
      i.e. within about half the extent of the two (the gaps of a seven-segment digit are a few per
      cent of its height, a dot matrix's about half its pitch; two handwritten digits side by side
      lie farther apart), and
    * has at least :data:`GROUP_MIN_MASS` (8 %) of the starting component's mass (specks stay out);
      a component whose box lies inside the mark's box is taken whatever its mass,

    until none does. The heaviest mark is the digit (ties: the first). ``far`` counts the other marks
    with at least 25 % of its mass, plus one when the digit's mark is made of several components and
    is wider than tall (digits are at most about as wide as tall: two close digits, or a digit and a
    word, gathered into one mark). Returns (the digit's labels, far).

    The thresholds were measured (2026-12-01, docs/digits.md) on the ``display`` set of ``train/ood.py``,
    on seven-segment and dot-matrix digits alone and in pairs, MNIST digits side by side, a digit beside
    a word, camera frames and the other out-of-distribution sets: a gap of 1/4, 1/3 or 1/2 changed the
    refusals by a few in 1,000; a mark of several pieces allowed up to 1.25x or 1.1x as wide as tall
    took 38 % or 14 % of 300 seven-segment pairs (spacing 0.12-0.4 of the height) for one digit, 1.0x 7 %,
    at a cost of 2 of the 1,000 display digits.
    """
    box = np.array([(0, -1, 0, -1)] + [boxes[k] for k in range(1, n + 1)], np.int64)
    y0s, y1s, x0s, x1s = box[:, 0], box[:, 1], box[:, 2], box[:, 3]
    taken = np.zeros(n + 1, bool)
    taken[0] = True
    taken[list(frames)] = True
    marks = []  # (mass, labels, box)
    while not taken.all():
        seed = int(np.argmax(np.where(taken, -1, mass)))  # the heaviest free one (the first of equals)
        taken[seed] = True
        labels = [seed]
        y0, y1, x0, x1 = boxes[seed]
        while True:
            uh = np.maximum(y1s, y1) - np.minimum(y0s, y0) + 1
            uw = np.maximum(x1s, x1) - np.minimum(x0s, x0) + 1
            gap = np.maximum.reduce([y0s - y1 - 1, y0 - y1s - 1, x0s - x1 - 1, x0 - x1s - 1, np.zeros_like(uh)])
            inside = (y0s >= y0) & (y1s <= y1) & (x0s >= x0) & (x1s <= x1)
            near = (gap * GROUP_GAP[1] <= GROUP_GAP[0] * np.maximum(uh, uw)) & (mass * 100 >= GROUP_MIN_MASS * mass[seed])
            free = np.flatnonzero(~taken & (near | inside))
            if free.size == 0:
                break
            k = int(free[np.argmin(gap[free])])  # the first of the nearest
            taken[k] = True
            labels.append(k)
            y0, y1, x0, x1 = min(y0, boxes[k][0]), max(y1, boxes[k][1]), min(x0, boxes[k][2]), max(x1, boxes[k][3])
        marks.append((int(mass[labels].sum()), labels, (y0, y1, x0, x1)))
    digit = max(range(len(marks)), key=lambda i: (marks[i][0], -i))
    dmass, labels, (y0, y1, x0, x1) = marks[digit]
    far = sum(1 for i, m in enumerate(marks) if i != digit and m[0] * 4 >= dmass)
    if len(labels) > 1 and x1 - x0 > y1 - y0:
        far += 1
    return set(labels), far


def digit_region(fg: np.ndarray, info: DigitInfo) -> np.ndarray:
    """The grown mask (bool, work size) of the digit in foreground ``fg``; all False when blank."""
    m = smooth121(fg)
    peak = int(m.max())
    med = median(m)
    mad = median(np.abs(m - med))
    thr = max(peak // 4, med + (mad * 8896 + 500) // 1000)
    mask = m > thr
    if not mask.any():
        return mask
    labels, n = components(mask)
    info.components = n
    mass = np.zeros(n + 1, np.int64)
    np.add.at(mass, labels.ravel(), m.ravel())
    mass[0] = 0
    count = np.bincount(labels.ravel(), minlength=n + 1)
    boxes = {}
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        boxes[k] = (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max()))
    # a frame drawn around the digit (a box, a meter's window): a hollow component (at most 30 % of
    # its bounding box inked) whose box strictly encloses others holding at least 20 % of its mass
    frames = set()
    for k in range(1, n + 1):
        y0, y1, x0, x1 = boxes[k]
        if count[k] * 100 > 30 * (y1 - y0 + 1) * (x1 - x0 + 1):
            continue
        inside = sum(int(mass[j]) for j in range(1, n + 1) if j != k and boxes[j][0] > y0 and boxes[j][1] < y1
                     and boxes[j][2] > x0 and boxes[j][3] < x1)
        if inside * 100 >= 20 * mass[k]:
            frames.add(k)
    info.frames = len(frames)
    keep, far = group_marks(mass, boxes, frames, n)
    info.kept = len(keep)
    info.far = far
    kept = np.isin(labels, sorted(keep))
    # grown by one pixel (3x3 max), so that the strokes' soft edges are kept
    p = np.pad(kept, 1)
    h, w = kept.shape
    grown = np.zeros_like(kept)
    for dy in range(3):
        for dx in range(3):
            grown |= p[dy:dy + h, dx:dx + w]
    return grown


def resize_weights(n: int, m: int) -> np.ndarray:
    """Integer triangle-filter weights ``[m, n]`` from ``n`` inputs to ``m`` outputs."""
    i = np.arange(n)[None, :]
    j = np.arange(m)[:, None]
    support = max(2 * m, 2 * n)
    return np.maximum(0, support - np.abs((2 * i + 1) * m - (2 * j + 1) * n)).astype(np.int64)


def resize(a: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """Separable triangle resize (columns first, then rows), each pass rounded."""
    wx = resize_weights(a.shape[1], nw)
    sx = wx.sum(axis=1)
    t = (a.astype(np.int64) @ wx.T + sx[None, :] // 2) // sx[None, :]
    wy = resize_weights(a.shape[0], nh)
    sy = wy.sum(axis=1)
    return (wy @ t + sy[:, None] // 2) // sy[:, None]


def preprocess(g: np.ndarray, size: Tuple[int, int] = (28, 28), box: int = 20) -> Tuple[np.ndarray, DigitInfo]:
    """uint8 grey ``H x W`` -> (uint8 ``size`` digit, :class:`DigitInfo`); see the module docstring."""
    g = np.asarray(g)
    if g.dtype != np.uint8 or g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"expected a uint8 H x W picture, got {g.dtype} {g.shape}")
    if not (1 <= box <= min(size)) or box > MAX_BOX:
        raise ValueError(f"box {box} must fit the output {size} and be at most {MAX_BOX}")
    out_h, out_w = size
    H, W = g.shape
    info = DigitInfo()
    f = max(1, _ceil_div(max(H, W), WORK_SIDE))
    a = block_mean(g, f)
    h, w = a.shape
    # 2. polarity
    b = median(border(a))
    invert = is_dark_on_light(a)
    info.inverted = bool(invert)
    if invert:
        a = 255 - a
        b = 255 - b
    # 3. pass-through
    if (H, W) == (out_h, out_w) and b < PASSTHROUGH_BORDER:
        info.passthrough = True
        out = (255 - g.astype(np.int64)) if invert else g.astype(np.int64)
        info.blank = not out.any()
        info.peak = int(out.max())
        info.box = (0, 0, W, H)
        return out.astype(np.uint8), info
    # 4. background
    if min(h, w) >= MIN_BACKGROUND_SIDE:
        s = background_map(a)
        bg_work = bilinear(s, block_centres2(0, h, f), block_centres2(0, w, f), H, W)
    else:
        s = None
        bg_work = np.full((h, w), b, np.int64)
    fg = np.maximum(a - bg_work, 0)
    # 5. region (a picture under 16 on both sides is taken whole: a digit fills it, and the noise
    # model's median would be the digit itself)
    if max(h, w) >= MIN_BACKGROUND_SIDE:
        grown = digit_region(fg, info)
    else:
        grown = fg > 0
        info.components = info.kept = int(grown.any())
    blank = np.zeros(size, np.uint8)
    if not grown.any():
        return blank, info
    ys, xs = np.nonzero(grown)
    Y0, Y1 = int(ys.min()) * f, min(H, (int(ys.max()) + 1) * f)
    X0, X1 = int(xs.min()) * f, min(W, (int(xs.max()) + 1) * f)
    info.box = (X0, Y0, X1 - X0, Y1 - Y0)
    # 6. crop at frame resolution
    L = max(Y1 - Y0, X1 - X0)
    fc = max(1, L // (CROP_SIDE_PER_BOX * box))
    region = g[Y0:Y1, X0:X1]
    crop = block_mean(region, fc)
    if invert:
        crop = 255 - crop
    ch, cw = crop.shape
    if s is not None:
        bg = bilinear(s, block_centres2(Y0, ch, fc), block_centres2(X0, cw, fc), H, W)
    else:
        bg = np.full((ch, cw), b, np.int64)
    # the grown mask at the centre of each crop pixel
    my = np.minimum((Y0 + np.arange(ch) * fc + fc // 2) // f, h - 1)
    mx = np.minimum((X0 + np.arange(cw) * fc + fc // 2) // f, w - 1)
    inside = grown[my][:, mx]
    crop = np.where(inside, np.maximum(crop - bg, 0), 0)
    if max(ch, cw) >= 2 * box:
        # reduced at least 2x later: a 3x3 smoothing costs no shape and keeps sensor noise from
        # surviving the 20 % threshold as specks that stretch the tight box
        crop = smooth121(crop)
    peak = int(crop.max())
    info.peak = peak
    if peak < BLANK_PEAK:
        return blank, info
    info.blank = False
    # 7. normalize
    crop = (crop * 255 + peak // 2) // peak
    crop[crop < 51] = 0
    rows = np.flatnonzero(crop.max(axis=1) > 0)
    cols = np.flatnonzero(crop.max(axis=0) > 0)
    crop = crop[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    # 8. resize into the box
    ch, cw = crop.shape
    L = max(ch, cw)
    nh = max(1, (2 * ch * box + L) // (2 * L))
    nw = max(1, (2 * cw * box + L) // (2 * L))
    digit = resize(crop, nh, nw)
    dmax = int(digit.max())
    if dmax > 0:
        digit = (digit * 255 + dmax // 2) // dmax
    # 9. centre of mass
    total = int(digit.sum())
    if total > 0:
        sy = int((np.arange(nh)[:, None] * digit).sum())
        sx = int((np.arange(nw)[None, :] * digit).sum())
        top = (out_h * total - 2 * sy + total) // (2 * total)
        left = (out_w * total - 2 * sx + total) // (2 * total)
    else:
        top, left = (out_h - nh + 1) // 2, (out_w - nw + 1) // 2
    top = min(max(top, 0), out_h - nh)
    left = min(max(left, 0), out_w - nw)
    out = np.zeros(size, np.int64)
    out[top: top + nh, left: left + nw] = digit
    return out.astype(np.uint8), info
