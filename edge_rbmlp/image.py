"""Pictures in: decoding (Pillow, with limits checked before decoding) and the digit pipeline.

:func:`preprocess_digit` turns any picture of a digit (any size; grey, RGB, RGBA,
16-bit or float) into the MNIST-like 28x28 uint8 input: the light digit on black,
fitted into a 20x20 box and centred by mass. The pipeline is defined in
:mod:`edge_rbmlp.digit_reference` and runs in C (``native/digit.c``).
"""

from __future__ import annotations

import io
import sys
from typing import Optional, Tuple

import numpy as np

from .digit_reference import DigitInfo, preprocess

MAX_IMAGE_PIXELS = 40_000_000  # decompression bombs are refused before decoding
MAX_IMAGE_SIDE = 20_000
DECODE_SIDE = 1024  # large JPEGs are decoded reduced, to a longer side of at least this
# the documented formats, and only these decoders are reachable (Pillow would otherwise try every
# plugin it has: JPEG 2000, ICO, TGA, PCX, EPS through Ghostscript, ...)
MAX_BOX = 64  # the digit's box in the output (native/digit.c's resize tables; MNIST: 20)
IMAGE_FORMATS = ("PNG", "JPEG", "PPM", "BMP", "GIF", "WEBP", "TIFF")


class ImageError(ValueError):
    pass


# Pillow keeps a frame at 1 byte per pixel in modes 1, L and P, 2 in I;16 and 4 in every other
# mode; modes the box filter cannot average are converted first (a second frame)
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_CONVERT_BEFORE_REDUCE = {"1": "L", "P": "L", "PA": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}


def _reduce_target(img) -> str:
    if img.mode == "P":
        return "RGBA" if "transparency" in img.info else "L"
    return _CONVERT_BEFORE_REDUCE.get(img.mode, img.mode)


def decode_bytes(img) -> int:
    """The bytes :func:`load_image` holds at once for ``img`` (opened, not loaded): its decoded
    frame (the reduction works in strips of at most STRIP_BYTES, outside this figure)."""
    w, h = img.size
    return w * h * _BYTES_PER_PIXEL.get(img.mode, 4)


STRIP_BYTES = 2 * 1024 * 1024


def _reduce_in_strips(img, factor: int):
    """``img.reduce(factor)`` (after the conversion the box filter needs) without a second full
    frame: Pillow's reduce of RGBA/LA premultiplies a copy of the whole frame, and a conversion
    is one too. Strips of whole factor-row blocks are cropped, converted, reduced and pasted."""
    from PIL import Image

    w, h = img.size
    target = _reduce_target(img)
    out = Image.new(target, (-(-w // factor), -(-h // factor)))
    rows_out = max(1, STRIP_BYTES // (w * 4 * factor))
    step = rows_out * factor
    for top in range(0, h, step):
        strip = img.crop((0, top, w, min(h, top + step)))
        if strip.mode != target:
            strip = strip.convert(target)
        out.paste(strip.reduce(factor), (0, top // factor))
    out.info = dict(img.info)
    if target != img.mode:
        out.info.pop("transparency", None)
    return out


def _limit_png_chunks() -> None:
    """PNG text and ICC chunks are decompressed while the file is opened (Pillow allows 1 MiB per
    chunk and 64 MiB in all): a 4 MiB body of zTXt chunks must not become 64 MiB of text."""
    from PIL import PngImagePlugin

    PngImagePlugin.MAX_TEXT_CHUNK = min(PngImagePlugin.MAX_TEXT_CHUNK, 256 * 1024)
    PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 1024 * 1024)


_PNG_LIMITED = False
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open_png(data: bytes):
    """What ``Image.open(..., formats=IMAGE_FORMATS)`` does for bytes with the PNG signature (PNG is
    the first format it tries, and no other one takes that signature), without Image.open's
    import of every other plugin (JPEG, GIF, BMP, PPM: about 0.8 MiB a service serving only PNGs
    does not hold) and its plugin loop."""
    import struct

    from PIL import Image, PngImagePlugin, UnidentifiedImageError

    try:
        img = PngImagePlugin.PngImageFile(io.BytesIO(data))
    except (SyntaxError, IndexError, TypeError, struct.error):  # Image.open goes on to the next format
        raise UnidentifiedImageError("cannot identify image file") from None
    Image._decompression_bomb_check(img.size)
    return img


def load_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, reserve=None):
    """Decode PNG/JPEG/PGM/... bytes with Pillow, refusing oversized images before decoding.

    Memory: the image is decoded once, at its size (a JPEG at 1/2, 1/4 or 1/8 of it, by the
    decoder, when larger than DECODE_SIDE), then reduced by whole factors (box filter) to a longer
    side of at most DECODE_SIDE and the full frame freed: what is returned is at most
    DECODE_SIDE x DECODE_SIDE, and the peak is :func:`decode_bytes`. ``reserve(nbytes, what)``
    (a context manager) is entered around the decoding with that peak, before a pixel is decoded
    (the service's per-worker memory budget)."""
    from PIL import Image, UnidentifiedImageError

    global _PNG_LIMITED
    if not data:
        raise ImageError("empty image")
    if not _PNG_LIMITED:
        _limit_png_chunks()
        _PNG_LIMITED = True
    try:
        img = _open_png(data) if data[:8] == PNG_SIGNATURE else Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is larger than the {max_pixels} pixel limit ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format (PNG, JPEG, PGM/PPM, BMP, GIF, WebP or TIFF "
                         "expected)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot read image: {exc}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels or w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise ImageError(f"image is {w}x{h} pixels, more than the {max_pixels} pixel limit")
    if img.format == "JPEG" and max(w, h) > DECODE_SIDE:
        # the JPEG decoder can scale by 1/2, 1/4 or 1/8 while decoding: a 4000x3000 photo is decoded at
        # 2000x1500 (4x less time and memory), still far more than the digit pipeline resolves
        img.draft(img.mode, (max(1, w * DECODE_SIDE // max(w, h)), max(1, h * DECODE_SIDE // max(w, h))))
    from contextlib import nullcontext

    held = reserve(decode_bytes(img), f"a {w}x{h} {img.mode} image") if reserve is not None else nullcontext()
    with held:
        try:
            img.load()
        except Exception as exc:  # Pillow raises many types for truncated/corrupt data
            raise ImageError(f"image data is corrupt or truncated: {exc}") from None
        w, h = img.size
        if max(w, h) > DECODE_SIDE:
            img = _reduce_in_strips(img, -(-max(w, h) // DECODE_SIDE))
            img.info["decoded_size"] = (w, h)
    return img


def _array_to_u8(arr: np.ndarray) -> np.ndarray:
    """A numeric array of any dtype -> uint8 levels (same shape): uint8 as it is, 16-bit and wider
    integers above 255 scaled from 0..65535, floats in [0, 1] (or 0..255 when larger) rounded."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ImageError(f"image array must be numeric, got {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.max() > 255:
            return ((np.clip(arr, 0, 65535).astype(np.int64) + 128) // 257).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if not np.all(np.isfinite(arr)):
        raise ImageError("image contains NaN or infinite values")
    scale = 255.0 if arr.max() <= 1.0 else 1.0
    return np.rint(np.clip(arr.astype(np.float64) * scale, 0.0, 255.0)).astype(np.uint8)


_CHANNELS_U8 = {"L": 1, "RGB": 3, "RGBA": 4}


def image_array(image) -> np.ndarray:
    """PIL image or array -> uint8 ``HxW`` (grey), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA), no copy where
    possible: the form the digit pipeline takes (colour is made grey inside it, in C)."""
    if (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.size > 0
            and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)))):
        return image  # the form already (the engine converts once, then the pipeline takes it)
    # an object is a PIL image only if Pillow is imported: no import (nor its cost) for arrays
    Image = sys.modules.get("PIL.Image")
    if Image is not None and isinstance(image, Image.Image):
        mode = image.mode
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "L")
        elif mode in ("LA", "PA", "La", "RGBa"):
            image = image.convert("RGBA")
        elif mode == "1":
            image = image.convert("L")
        elif mode not in ("L", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
            image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        channels = _CHANNELS_U8.get(image.mode)
        if channels is not None:  # the bytes numpy would take through __array_interface__, without it
            w, h = image.size
            arr = np.frombuffer(image.tobytes(), np.uint8).reshape((h, w, channels) if channels > 1 else (h, w))
        else:
            arr = np.asarray(image)
    else:
        arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha
        arr = np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:]], axis=2)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image must be 2-D (grey) or HxWx3/4 (colour), got shape {np.shape(arr)}")
    return _array_to_u8(arr)


def grey_u8(arr: np.ndarray) -> np.ndarray:
    """uint8 ``HxW`` / ``HxWx3`` / ``HxWx4`` -> uint8 grey ``HxW``: Pillow's luma
    ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``; alpha composited over white,
    ``(g a + 255 (255 - a) + 127) // 255`` (a transparent canvas with dark strokes reads like ink
    on paper). The definition the C pipeline follows."""
    if arr.ndim == 2:
        return arr
    c = arr.astype(np.int64)
    g = (19595 * c[..., 0] + 38470 * c[..., 1] + 7471 * c[..., 2] + 32768) >> 16
    if arr.shape[2] == 4:
        a = c[..., 3]
        g = (g * a + 255 * (255 - a) + 127) // 255
    return g.astype(np.uint8)


def to_grey(image) -> np.ndarray:
    """PIL image or array -> float32 HxW in [0, 1] (for display and tests)."""
    return grey_u8(image_array(image)).astype(np.float32) / 255.0


def _native_pipeline():
    try:
        from . import _native
    except ImportError:
        return None
    return getattr(_native, "preprocess_digit_into", None)


_NATIVE = _native_pipeline()


def preprocess_digit_info(image, size: Tuple[int, int] = (28, 28), box: int = 20, native: Optional[bool] = None):
    """Any picture -> (uint8 ``size`` light digit on black, :class:`DigitInfo`).

    Runs ``native/digit.c`` (GIL released) when the engine is built, else the numpy definition in
    :mod:`edge_rbmlp.digit_reference`; both give identical results (a test compares them).
    ``native=True``/``False`` forces one (``True`` without the engine is an error)."""
    arr = image_array(image)
    size = (int(size[0]), int(size[1]))
    if not (1 <= box <= min(size)) or box > MAX_BOX:
        raise ValueError(f"box {box} must fit the output {size} and be at most {MAX_BOX}")
    use_native = _NATIVE is not None if native is None else native
    if use_native:
        if _NATIVE is None:
            raise ImageError("the native digit pipeline is not built in this install (reinstall edge-rbmlp "
                             "with a C compiler)")
        out = np.empty(size, np.uint8)
        view = arr if arr.ndim == 3 else arr[:, :, None]
        fields = _NATIVE(view, out, box)
        info = DigitInfo(bool(fields[0]), bool(fields[1]), bool(fields[2]), fields[3], fields[4], fields[5],
                         fields[6], fields[7:11], fields[11])
        return out, info
    return preprocess(grey_u8(arr), size, box)


def preprocess_digit(image, size: Tuple[int, int] = (28, 28), box: int = 20) -> np.ndarray:
    """Return ``uint8 [height, width]``: a light digit on black, MNIST style (all zero: no digit)."""
    return preprocess_digit_info(image, size, box)[0]
