"""The one bit order: element j -> word j//64, bit j%64, LSB first; padding bits 0."""

import numpy as np
import pytest

from edge_rbmlp.bits import pack_bits, pack_signs, padding_is_zero, unpack_bits, unpack_signs, words_for


def test_documented_bit_positions():
    bits = np.zeros(130, dtype=bool)
    bits[[0, 63, 64, 129]] = True
    words = pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (3,)
    assert int(words[0]) == (1 << 0) | (1 << 63)
    assert int(words[1]) == 1
    assert int(words[2]) == 1 << 1


@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 128, 130, 784, 10000])
def test_round_trip_and_zero_padding(n, rng):
    values = rng.standard_normal((5, n))
    words = pack_signs(values)
    assert words.shape == (5, words_for(n))
    assert padding_is_zero(words, n)
    np.testing.assert_array_equal(unpack_signs(words, n), np.where(values >= 0, 1, -1))


def test_sign_of_zero_is_plus_one():
    assert unpack_signs(pack_signs(np.array([0.0, -0.0, -1e-9])), 3).tolist() == [1, 1, -1]


@pytest.mark.parametrize("n", [1, 63, 65, 100, 200])
def test_xnor_popcount_identity(n, rng):
    # sum x*w over ±1 == n - 2*popcount(x XOR w), with zero padding never counting
    x = rng.choice([-1, 1], size=n)
    w = rng.choice([-1, 1], size=n)
    xor = pack_signs(x) ^ pack_signs(w)
    popcount = int(np.unpackbits(xor.view(np.uint8)).sum())
    assert int(x @ w) == n - 2 * popcount


def test_padding_detection():
    words = pack_bits(np.ones(65, dtype=bool))
    assert padding_is_zero(words, 65)
    words[-1] |= np.uint64(1 << 5)
    assert not padding_is_zero(words, 65)
    assert padding_is_zero(words, 128)


def test_unpack_bits_empty_rows():
    assert unpack_bits(np.zeros((0, 2), np.uint64), 100).shape == (0, 100)
