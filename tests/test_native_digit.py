"""The digit pipeline in C (native/digit.c) against its definition (edge_rbmlp/digit_reference.py),
bit for bit: random pictures of odd sizes, 1-pixel digits, blank and uniform frames, RGB, RGBA,
16-bit and float inputs, strided regions of a frame; plus what the pipeline must find."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_rbmlp import _native  # a missing extension is an error here, never a skip
from edge_rbmlp.digit_reference import preprocess
from edge_rbmlp.image import grey_u8, image_array, preprocess_digit_info

assert _native.preprocess_digit_into is not None


def both(picture, size=(28, 28), box=20):
    native, ninfo = preprocess_digit_info(picture, size, box, native=True)
    ref, rinfo = preprocess(grey_u8(image_array(picture)), size, box)
    return native, ninfo, ref, rinfo


def assert_same(picture, size=(28, 28), box=20):
    native, ninfo, ref, rinfo = both(picture, size, box)
    np.testing.assert_array_equal(native, ref)
    assert ninfo.as_tuple() == rinfo.as_tuple()
    return native, ninfo


def digit_frame(rng, h, w, dark_on_light=True, noise=8.0, light=True):
    """A stroke figure on an unevenly lit background with sensor noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 170 + (40 * (xx / max(w, 1)) if light else 0) + rng.normal(0, noise, (h, w))
    img = bg.copy()
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    r = max(1, min(h, w) // rng.integers(3, 8))
    ring = np.abs(np.hypot(yy - cy, xx - cx) - r) < max(1, r // 4)
    img[ring] = 40 + rng.normal(0, noise, ring.sum())
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img if dark_on_light else 255 - img


@pytest.mark.parametrize("seed", range(40))
def test_random_frames_of_odd_sizes(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 700)), int(rng.integers(1, 700))
    frame = digit_frame(rng, h, w, dark_on_light=bool(seed % 2), noise=float(rng.uniform(0, 20)))
    assert_same(frame)


@settings(max_examples=120, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 90), st.integers(1, 90))))
def test_any_grey_array(arr):
    assert_same(arr)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 60), st.integers(1, 60), st.sampled_from([3, 4]))))
def test_any_colour_array(arr):
    assert_same(arr)


def test_one_pixel_digits_and_tiny_pictures():
    for h, w in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 40), (40, 3), (15, 15), (16, 16), (17, 200)]:
        for v in (0, 128, 255):
            assert_same(np.full((h, w), v, np.uint8))
        img = np.zeros((h, w), np.uint8)
        img[h // 2, w // 2] = 255
        assert_same(img)
        assert_same(255 - img)
    big = np.full((300, 400), 230, np.uint8)
    big[150, 200] = 0  # a 1-pixel digit in a large frame
    assert_same(big)


def test_blank_and_uniform_frames_are_blank():
    for frame in (np.zeros((480, 640), np.uint8), np.full((480, 640), 255, np.uint8),
                  np.full((480, 640, 3), 200, np.uint8)):
        out, info = assert_same(frame)
        assert info.blank and not out.any()


def test_gradient_without_a_digit_is_refused():
    from edge_rbmlp.reject import picture_reason

    frame = np.tile(np.linspace(60, 220, 640).astype(np.uint8), (480, 1))
    out, info = assert_same(frame)
    assert info.blank or picture_reason(info, frame.shape).startswith("no digit")


def test_rgb_rgba_16bit_and_float_inputs():
    rng = np.random.default_rng(7)
    grey = digit_frame(rng, 120, 90)
    rgb = np.stack([grey, np.roll(grey, 1, 0), grey // 2 + 60], axis=-1)
    assert_same(rgb)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (120, 90, 1), dtype=np.uint8)], axis=-1)
    assert_same(rgba)
    # 16-bit and float pictures are brought to 8 bits first, identically for both
    assert_same(grey.astype(np.uint16) * 257)
    assert_same(grey.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(image_array(grey.astype(np.uint16) * 257), grey)


def test_strided_region_of_a_frame_needs_no_copy_and_matches():
    rng = np.random.default_rng(3)
    frame = np.stack([digit_frame(rng, 240, 320)] * 3, axis=-1)
    region = frame[40:200:1, 30:250]  # a view: row stride of the whole frame
    assert not region.flags["C_CONTIGUOUS"]
    a, _ = assert_same(region)
    b, _ = assert_same(np.ascontiguousarray(region))
    np.testing.assert_array_equal(a, b)


def test_other_output_sizes():
    rng = np.random.default_rng(11)
    frame = digit_frame(rng, 200, 150)
    for size, box in [((28, 28), 20), ((16, 16), 12), ((32, 20), 20), ((28, 28), 1)]:
        out, _ = assert_same(frame, size, box)
        assert out.shape == size


def test_pictures_smaller_than_the_box_fill_the_box_within_their_scratch():
    """digit.c sizes its crop buffers from the picture (max(picture side, box)^2, so a 28x28 picture
    needs no 520 KiB block): pictures thinner or smaller than the box, whose digit is blown up to
    the box (the largest result, box x box, in buffers sized for a tiny crop), match the reference
    (and run under make test-asan)."""
    rng = np.random.default_rng(5)
    shapes = [(1, 5), (5, 1), (2, 3), (3, 64), (64, 3), (6, 6), (11, 19), (19, 11), (28, 28), (63, 2)]
    for h, w in shapes:
        for size, box in [((28, 28), 20), ((64, 64), 64), ((70, 66), 64), ((28, 28), 1), ((9, 30), 9)]:
            img = np.zeros((h, w), np.uint8)
            img[rng.random((h, w)) < 0.5] = 255
            img[h // 2, :] = 255  # at least one stroke across
            out, info = assert_same(img, size, box)
            assert out.shape == size
            assert_same(255 - img, size, box)


def test_bad_arguments_are_refused_before_c():
    with pytest.raises(ValueError):
        preprocess_digit_info(np.zeros((10, 10), np.uint8), (28, 28), 40)
    with pytest.raises(ValueError):
        _native.preprocess_digit_into(np.zeros((4, 4, 2), np.uint8), np.zeros((28, 28), np.uint8), 20)
    with pytest.raises(ValueError):
        _native.preprocess_digit_into(np.zeros((0, 4, 1), np.uint8), np.zeros((28, 28), np.uint8), 20)
    with pytest.raises(ValueError):
        _native.preprocess_digit_into(np.zeros((4, 4, 1), np.uint8)[::-1], np.zeros((28, 28), np.uint8), 20)


def test_two_digits_side_by_side_are_counted_as_far_components():
    frame = np.full((100, 200), 230, np.uint8)
    frame[20:80, 30:36] = 20   # a "1"
    frame[20:80, 150:156] = 20  # another "1", far away
    out, info = assert_same(frame)
    assert info.components == 2 and info.kept == 1 and info.far == 1


def test_segmented_digits_and_pairs_match_the_reference():
    """Seven-segment and dot-matrix digits (pieces with gaps between them), alone and side by side."""
    from displaykit import dot_matrix, seven_segment

    rng = np.random.default_rng(21)
    for i in range(24):
        digits = [int(d) for d in rng.integers(0, 10, 1 + i % 2)]
        light = bool(i % 3)
        seg = seven_segment(digits, height=int(rng.integers(20, 200)), aspect=rng.uniform(0.4, 0.65),
                            thickness=rng.uniform(0.05, 0.15), gap=rng.uniform(0.0, 0.08),
                            spacing=rng.uniform(0.1, 0.5), slant=rng.uniform(0, 0.25), dark_on_light=light)
        assert_same(seg)
        dots = dot_matrix(digits, height=int(rng.integers(21, 200)), fill=rng.uniform(0.3, 0.95),
                          spacing=rng.uniform(0.5, 2), dark_on_light=light, round_dots=bool(i % 2))
        assert_same(dots)
        # an odd-sized frame with sensor noise around it
        frame = np.full((int(rng.integers(seg.shape[0], 500)), int(rng.integers(seg.shape[1], 600))), seg[0, 0],
                        np.float32)
        y, x = int(rng.integers(0, frame.shape[0] - seg.shape[0] + 1)), int(rng.integers(0, frame.shape[1] - seg.shape[1] + 1))
        frame[y:y + seg.shape[0], x:x + seg.shape[1]] = seg
        frame += rng.normal(0, rng.uniform(0, 15), frame.shape)
        assert_same(np.clip(frame, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", range(30))
def test_random_scattered_marks_match_the_reference(seed):
    """Many marks of random sizes and distances (specks, dots, bars, blobs) on frames of odd sizes: the
    grouping of components into marks takes the same components, and counts the same far marks."""
    rng = np.random.default_rng(1000 + seed)
    h, w = int(rng.integers(16, 400)), int(rng.integers(16, 400))
    frame = np.full((h, w), int(rng.integers(150, 256)), np.float32)
    for _ in range(int(rng.integers(1, 60))):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        bh = int(rng.integers(1, max(2, h // int(rng.integers(2, 30)))))
        bw = int(rng.integers(1, max(2, w // int(rng.integers(2, 30)))))
        frame[y:y + bh, x:x + bw] = rng.integers(0, 120)
    frame += rng.normal(0, rng.uniform(0, 12), frame.shape)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    _, info = assert_same(frame)
    assert_same(255 - frame)
    assert info.kept <= info.components


def test_a_field_of_specks_is_grouped_the_same_and_stays_bounded():
    """The most components a work image can hold (isolated pixels two apart), and a grid of dots."""
    frame = np.full((95, 95), 240, np.uint8)
    frame[::2, ::2] = 0
    assert_same(frame)
    grid = np.full((96, 96), 240, np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            grid[1 + dy::4, 1 + dx::4] = 0  # 24 x 24 dots
    _, info = assert_same(grid)
    assert info.components == 576 and info.kept == 576 and info.far == 0  # one grid, one mark
    rng = np.random.default_rng(5)
    found = []
    for p in (0.3, 0.5, 0.7, 0.9):  # dots of random size and ink on a sparse lattice
        specks = np.full((96, 97), 240, np.uint8)
        for y, x in zip(*np.nonzero(rng.random((16, 16)) < p)):
            s = int(rng.integers(1, 4))
            specks[6 * y + 1:6 * y + 1 + s, 6 * x + 1:6 * x + 1 + s] = int(rng.integers(0, 100))
        found.append(assert_same(specks)[1].components)
    assert max(found) >= 30, found


def test_segmented_digits_are_kept_as_one_digit():
    """The segments of a seven-segment 8, 1 and 7 and the dots of a dot-matrix digit make one mark:
    every component is kept, and nothing counts as a second mark."""
    from displaykit import dot_matrix, seven_segment

    for d, pieces in ((8, 7), (1, 2), (7, 3)):
        for height in (40, 90, 150):
            for light in (True, False):
                _, info = assert_same(seven_segment([d], height=height, gap=0.05, thickness=0.1, dark_on_light=light))
                assert info.components == pieces and info.kept == pieces and info.far == 0, (d, height, info)
    for d in (4, 0, 7):
        _, info = assert_same(dot_matrix([d], height=84, fill=0.5))
        assert info.components >= 10 and info.far == 0 and info.kept == info.components, (d, info)


def test_two_seven_segment_digits_side_by_side_are_two_marks():
    from displaykit import dot_matrix, seven_segment

    _, info = assert_same(seven_segment([8, 8], height=90, gap=0.04, spacing=0.3))
    assert info.far >= 1, info
    _, info = assert_same(dot_matrix([2, 5], height=84, fill=0.5))
    assert info.far >= 1, info
