"""Any picture of a digit to an MNIST-like 28x28 uint8 input.

MNIST digits are light on a dark background, fitted into a 20x20 box that keeps
their aspect ratio and centred by centre of mass in a 28x28 frame. A photo or a
drawing is brought to the same form:

1. grey levels in [0, 1] (alpha composited over white: a transparent canvas
   with dark strokes reads like ink on paper);
2. if the border is brighter than the middle of the range, the image is a dark
   digit on a light background: invert it;
3. subtract a smooth background estimate (uneven light), keep what stands out;
4. crop to the digit's bounding box, scale its longer side to 20 pixels,
   paste into 28x28 so that its centre of mass lies at the centre.

An input that already is a 28x28 light-on-dark image is passed through as it
is, so the real MNIST test set is classified exactly as the model saw it.
"""

from __future__ import annotations

import io
from typing import Tuple

import numpy as np

MAX_IMAGE_PIXELS = 40_000_000  # decompression bombs are refused before decoding
MAX_IMAGE_SIDE = 20_000


class ImageError(ValueError):
    pass


def load_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS):
    """Decode PNG/JPEG/PGM/... bytes with Pillow, refusing oversized images before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("empty image")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is larger than the {max_pixels} pixel limit ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format (PNG, JPEG, PGM, BMP, ... expected)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot read image: {exc}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels or w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise ImageError(f"image is {w}x{h} pixels, more than the {max_pixels} pixel limit")
    try:
        img.load()
    except Exception as exc:  # Pillow raises many types for truncated/corrupt data
        raise ImageError(f"image data is corrupt or truncated: {exc}") from None
    return img


def to_grey(image) -> np.ndarray:
    """PIL image or array (HxW, HxWx3, HxWx4) -> float32 HxW in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        arr = np.asarray(image.convert("F"), dtype=np.float32) / 255.0
        return arr
    arr = np.asarray(image)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ImageError(f"image array must be numeric, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        if arr.shape[2] == 4:
            alpha = arr[..., 3].astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
            full = 255.0 if arr.dtype == np.uint8 else 1.0
            grey = grey * alpha + full * (1 - alpha)
        arr = grey
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image must be 2-D (grey) or HxWx3/4 (colour), got shape {np.shape(image)}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ImageError("image contains NaN or infinite values")
    if np.issubdtype(np.asarray(image).dtype, np.integer) or arr.max() > 1.0:
        arr = arr / 255.0
    return np.clip(arr, 0.0, 1.0)


def _resize(arr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), mode="L")
    img = img.resize((w, h), Image.BILINEAR if min(arr.shape) < max(h, w) else Image.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def _background(arr: np.ndarray) -> np.ndarray:
    """A smooth estimate of the background (the digit removed by a wide median-ish blur)."""
    from PIL import Image, ImageFilter

    h, w = arr.shape
    small_side = 64
    scale = max(h, w) / small_side
    if scale > 1:
        sw, sh = max(1, round(w / scale)), max(1, round(h / scale))
        small = _resize(arr, (sh, sw))
    else:
        small = arr
    img = Image.fromarray((small * 255).astype(np.uint8), mode="L")
    radius = max(3, int(0.15 * max(small.shape)) | 1)
    size = min(radius, 15) | 1
    # an opening (erode, then dilate) removes strokes narrower than the filter but keeps the shape of
    # the light; a min filter alone followed by a wide blur underestimates bright patches, which then
    # survive the subtraction as blotches around the digit
    img = img.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size))
    img = img.filter(ImageFilter.GaussianBlur(radius / 3))
    bg = np.asarray(img, dtype=np.float32) / 255.0
    if bg.shape != arr.shape:
        bg = _resize(bg, arr.shape)
    return bg


def _dark_on_light(grey: np.ndarray, border: float) -> bool:
    """Is the digit darker than its background? The extreme of the (lightly smoothed) picture that
    lies farther from the border's level is the ink. (A fixed "border brighter than 0.5" rule fails
    on dimly lit paper, which a camera often sees as mid-grey.)"""
    from PIL import Image, ImageFilter

    smooth = grey
    if min(grey.shape) >= 8:
        img = Image.fromarray((grey * 255).astype(np.uint8), mode="L").filter(ImageFilter.BoxBlur(1))
        smooth = np.asarray(img, np.float32) / 255.0
    low, high = np.percentile(smooth, [0.5, 99.5])
    return (border - low) > (high - border)


def _components(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """Labels (1..n, 0 = background) of the 8-connected components of a small boolean mask."""
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


def _digit_region(fg: np.ndarray, side: int = 96) -> np.ndarray:
    """Keep only the digit of a background-subtracted picture (light on black).

    Sensor noise is thresholded against a robust noise estimate (median + 6 MAD of a lightly
    blurred copy, and at least a quarter of the peak); of what remains, the region with the most
    ink is the digit, joined by any other region with at least 8% of its ink that lies within half
    the digit's size of it (the detached bar of a 5, a broken stroke). Specks, smudges and shadows
    elsewhere are dropped, so that they do not stretch the crop. Works on a copy of at most
    ``side`` pixels a side; returns ``fg`` with everything else set to 0.
    """
    from PIL import Image, ImageFilter

    h, w = fg.shape
    scale = max(h, w) / side
    small = _resize(fg, (max(1, round(h / scale)), max(1, round(w / scale)))) if scale > 1 else fg
    img = Image.fromarray((np.clip(small, 0, 1) * 255).astype(np.uint8), mode="L")
    smooth = np.asarray(img.filter(ImageFilter.GaussianBlur(1)), np.float32) / 255.0
    med = float(np.median(smooth))
    sigma = 1.4826 * float(np.median(np.abs(smooth - med)))
    mask = smooth > max(0.25 * float(smooth.max()), med + 6 * sigma)
    if not mask.any():
        return fg
    labels, n = _components(mask)
    if n > 1:
        mass = np.bincount(labels.ravel(), weights=smooth.ravel(), minlength=n + 1)
        mass[0] = 0
        best = int(mass.argmax())
        boxes = {}
        for k in range(1, n + 1):
            ys, xs = np.nonzero(labels == k)
            boxes[k] = (ys.min(), ys.max(), xs.min(), xs.max())
        keep = {best}
        y0, y1, x0, x1 = boxes[best]
        changed = True
        while changed:
            changed = False
            pad = 0.5 * max(y1 - y0 + 1, x1 - x0 + 1)
            for k in range(1, n + 1):
                if k in keep or mass[k] < 0.08 * mass[best]:
                    continue
                ky0, ky1, kx0, kx1 = boxes[k]
                if ky0 >= y0 - pad and ky1 <= y1 + pad and kx0 >= x0 - pad and kx1 <= x1 + pad:
                    keep.add(k)
                    y0, y1, x0, x1 = min(y0, ky0), max(y1, ky1), min(x0, kx0), max(x1, kx1)
                    changed = True
        mask = np.isin(labels, sorted(keep))
    # back to full size, grown by a pixel so that the strokes' soft edges are kept
    grown = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").filter(ImageFilter.MaxFilter(3))
    if grown.size != (w, h):
        grown = grown.resize((w, h), Image.NEAREST)
    return np.where(np.asarray(grown) > 0, fg, 0.0).astype(np.float32)


def preprocess_digit(image, size: Tuple[int, int] = (28, 28), box: int = 20) -> np.ndarray:
    """Return ``uint8 [height, width]``: a light digit on black, MNIST style."""
    grey = to_grey(image)
    h, w = grey.shape
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if _dark_on_light(grey, float(np.median(border))):
        grey = 1.0 - grey
        border = 1.0 - border
    if grey.shape == tuple(size) and np.median(border) < 0.1:
        return np.rint(grey * 255).astype(np.uint8)
    if min(h, w) >= 16:
        grey = _digit_region(np.clip(grey - _background(grey), 0.0, 1.0))
    else:
        grey = np.clip(grey - np.median(border), 0.0, 1.0)
    peak = float(grey.max())
    out = np.zeros(size, dtype=np.float32)
    if peak < 0.05:
        return out.astype(np.uint8)  # a blank picture: nothing to centre
    grey = grey / peak
    grey[grey < 0.2] = 0.0
    rows = np.flatnonzero(grey.max(axis=1) > 0)
    cols = np.flatnonzero(grey.max(axis=0) > 0)
    crop = grey[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    ch, cw = crop.shape
    scale = box / max(ch, cw)
    nh, nw = max(1, round(ch * scale)), max(1, round(cw * scale))
    digit = _resize(crop, (nh, nw))
    if digit.max() > 0:
        digit = digit / digit.max()
    total = digit.sum()
    ys, xs = np.mgrid[0:nh, 0:nw]
    cy = (ys * digit).sum() / total if total > 0 else nh / 2
    cx = (xs * digit).sum() / total if total > 0 else nw / 2
    top = int(round(size[0] / 2 - cy))
    left = int(round(size[1] / 2 - cx))
    top = min(max(top, 0), size[0] - nh)
    left = min(max(left, 0), size[1] - nw)
    out[top: top + nh, left: left + nw] = digit
    return np.rint(out * 255).astype(np.uint8)
