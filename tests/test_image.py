"""Digit preprocessing: any picture to an MNIST-like 28x28 input; bad images refused clearly."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from edge_rbmlp.image import ImageError, load_image, preprocess_digit, to_grey
from edge_rbmlp.samples import SAMPLES_DIR


def _png(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _mnist_sample():
    path = next(SAMPLES_DIR.glob("mnist_test_0_label_7.png"))
    return np.asarray(Image.open(path))


def test_mnist_frame_passes_through_unchanged():
    digit = _mnist_sample()
    np.testing.assert_array_equal(preprocess_digit(digit), digit)


def test_scan_of_a_digit_comes_back_like_the_original():
    scan = load_image(next(SAMPLES_DIR.glob("scan_of_mnist_test_4_label_4.png")).read_bytes())
    original = load_image(next(SAMPLES_DIR.glob("scan_of_mnist_test_4_label_4.png")).read_bytes())
    out = preprocess_digit(scan)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    # light digit on black, centred by mass, fitted to a 20x20 box
    ys, xs = np.nonzero(out > 30)
    assert out[0].max() == 0 and out[:, 0].max() == 0
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) in range(17, 22)
    mass = out.astype(float)
    cy = (np.arange(28)[:, None] * mass).sum() / mass.sum()
    cx = (np.arange(28)[None, :] * mass).sum() / mass.sum()
    assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5
    assert original.size == (320, 300)


def test_dark_on_light_is_inverted_and_matches_light_on_dark():
    digit = _mnist_sample()
    big = np.asarray(Image.fromarray(digit).resize((112, 112)))
    a = preprocess_digit(big).astype(float)
    b = preprocess_digit(255 - big).astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    assert np.corrcoef(a.ravel(), digit.ravel().astype(float))[0, 1] > 0.8


def test_colour_and_alpha_inputs():
    digit = _mnist_sample()
    rgb = np.stack([255 - digit] * 3, axis=-1)  # black ink on white, colour image
    out_rgb = preprocess_digit(rgb)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # dark strokes on a transparent canvas
    out_rgba = preprocess_digit(load_image(_png(rgba, "RGBA")))
    assert np.corrcoef(out_rgb.ravel().astype(float), out_rgba.ravel().astype(float))[0, 1] > 0.95


def test_blank_picture_gives_a_blank_input():
    assert preprocess_digit(np.full((50, 40), 200, np.uint8)).max() == 0


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"not an image at all", "not a recognised image"),
    (_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:-200], "corrupt or truncated"),
])
def test_bad_image_bytes(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    # a 20000x20000 PNG compresses to a few hundred KB; the header alone must be enough to refuse it
    img = Image.new("1", (20000, 20000))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(buf.getvalue())


def test_one_pixel_image():
    out = preprocess_digit(load_image(_png(np.array([[255]], np.uint8))))
    assert out.shape == (28, 28)


def test_pgm_and_jpeg_decode():
    digit = _mnist_sample()
    for fmt in ("PPM", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(digit).save(buf, format=fmt)
        assert preprocess_digit(load_image(buf.getvalue())).shape == (28, 28)
    pgm = b"P5\n28 28\n255\n" + digit.tobytes()
    np.testing.assert_array_equal(preprocess_digit(load_image(pgm)), digit)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 5)), np.array([["a", "b"]]), np.zeros((0, 4))])
def test_bad_arrays(bad):
    with pytest.raises(ImageError):
        to_grey(bad)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80))))
def test_any_grey_array_gives_a_valid_input(arr):
    out = preprocess_digit(arr)
    assert out.shape == (28, 28) and out.dtype == np.uint8


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([3, 4])),
                  elements=st.floats(0, 1)))
def test_any_colour_float_array_gives_a_valid_input(arr):
    out = preprocess_digit(arr)
    assert out.shape == (28, 28) and out.dtype == np.uint8


def test_large_jpeg_is_decoded_reduced():
    img = Image.new("L", (4000, 3000), 230)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    decoded = load_image(buf.getvalue())
    # decoded at 1/2 by the JPEG decoder, then reduced by 2 to a longer side of at most DECODE_SIDE
    assert decoded.info["decoded_size"] == (2000, 1500) and decoded.size == (1000, 750)
    small = Image.new("L", (640, 480), 230)
    buf = io.BytesIO()
    small.save(buf, format="JPEG")
    assert load_image(buf.getvalue()).size == (640, 480)


def test_large_images_are_reduced_in_strips_like_one_reduce():
    """Every mode the decoders give comes back at most DECODE_SIDE on its longer side, with the
    pixels of Pillow's own reduce (after the same conversion), and the decode's reservation is the
    frame's bytes (the strips are outside it)."""
    from edge_rbmlp.image import DECODE_SIDE, decode_bytes

    rng = np.random.default_rng(0)
    for mode, arr in (("L", rng.integers(0, 256, (1500, 2100), dtype=np.uint8)),
                      ("RGBA", rng.integers(0, 256, (1100, 2050, 4), dtype=np.uint8)),
                      ("I;16", rng.integers(0, 65536, (1030, 1100), dtype=np.uint16))):
        buf = io.BytesIO()
        Image.fromarray(arr, mode=mode if mode != "I;16" else None).save(buf, format="PNG")
        reserved = []

        class Hold:
            def __init__(self, n, what):
                reserved.append(n)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        decoded = load_image(buf.getvalue(), reserve=Hold)
        full = Image.open(io.BytesIO(buf.getvalue()))
        assert reserved == [decode_bytes(full)]
        full.load()
        factor = -(-max(full.size) // DECODE_SIDE)
        target = {"I;16": "I"}.get(full.mode, full.mode)
        expect = full.convert(target).reduce(factor)
        assert max(decoded.size) <= DECODE_SIDE and decoded.size == expect.size and decoded.mode == expect.mode
        assert np.array_equal(np.asarray(decoded), np.asarray(expect)), mode
