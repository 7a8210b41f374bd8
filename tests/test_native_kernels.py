"""The C kernels one by one: portable C against the numpy definitions, and every optimized
variant this CPU runs against the portable C kernels, on random awkward shapes."""

import numpy as np
import pytest

from edge_rbmlp import _native
from edge_rbmlp.bits import pack_bits, unpack_signs, words_for
from edge_rbmlp.fold import apply_thresholds
from edge_rbmlp.engines.reference import max_pool_1d

from native_util import variant_params

SIZES = [1, 7, 31, 32, 33, 63, 64, 65, 88, 127, 130, 257, 784]
ROWS = [1, 3, 4, 5, 8, 9, 16, 31, 33, 64, 65, 88, 130]


def random_bits(rng, rows, n):
    return pack_bits(rng.integers(0, 2, (rows, n)).astype(bool))


def shapes(seed, count=12):
    rng = np.random.default_rng(seed)
    return [(int(rng.choice(SIZES)), int(rng.choice(ROWS)), int(s)) for s in rng.integers(0, 1 << 30, count)]


def q_cases(rng, n):
    yield rng.integers(0, 256, n).astype(np.uint8)
    yield np.zeros(n, np.uint8)
    yield np.full(n, 255, np.uint8)
    yield rng.integers(0, 2, n).astype(np.uint8)


@pytest.mark.parametrize("variant", variant_params())
def test_pack_ge_u8(variant):
    rng = np.random.default_rng(1)
    for n in SIZES + [1000]:
        for q in q_cases(rng, n):
            for t in (0, 1, 2, 127, 128, 255, 256):
                got = _native.kernel_pack_ge_u8(variant, q, t)
                assert np.array_equal(got, pack_bits(q.astype(np.int32) >= t)), (n, t)


@pytest.mark.parametrize("variant", variant_params())
def test_bmv_and_thresholds_match_numpy(variant):
    for n, rows, seed in shapes(2):
        rng = np.random.default_rng(seed)
        W = random_bits(rng, rows, n)
        xb = rng.integers(0, 2, n).astype(bool)
        acc = _native.kernel_bmv(variant, W, pack_bits(xb), n)
        expect = unpack_signs(W, n).astype(np.int32) @ np.where(xb, 1, -1).astype(np.int32)
        assert np.array_equal(acc, expect), (n, rows)
        thr = rng.integers(-n, n + 1, rows).astype(np.int32)
        thr[0] = acc[0]  # ties decide the direction of the comparison
        flip = rng.integers(0, 2, rows).astype(np.uint8)
        got = _native.kernel_threshold_pack(variant, acc, thr, flip)
        assert np.array_equal(got, pack_bits(apply_thresholds(acc, thr, flip))), (n, rows)


@pytest.mark.parametrize("variant", variant_params())
def test_u8_bmv_matches_numpy(variant):
    for n, rows, seed in shapes(3):
        rng = np.random.default_rng(seed)
        W = random_bits(rng, rows, n)
        signs = unpack_signs(W, n).astype(np.int64)
        for q in q_cases(rng, n):
            assert np.array_equal(_native.kernel_u8_bmv(variant, W, q), signs @ q.astype(np.int64)), (n, rows)


@pytest.mark.parametrize("variant", variant_params())
def test_pack_planes_u8_matches_numpy(variant):
    rng = np.random.default_rng(12)
    for n in SIZES + [1000, 2100]:
        for q in q_cases(rng, n):
            for k in range(1, 9):
                got = _native.kernel_pack_planes_u8(variant, q, k)
                expect = np.stack([pack_bits(((q >> (8 - k + b)) & 1).astype(bool)) for b in range(k)])
                assert got.shape == (k, words_for(n)) and np.array_equal(got, expect), (n, k)


@pytest.mark.parametrize("variant", variant_params())
def test_planes_bmv_matches_numpy(variant):
    """The bit-plane layer equals the plain integer sum of (q >> (8 - k)) * (+-1), every k, awkward shapes
    (n not a multiple of 64, rows not a multiple of any vector width)."""
    for n, rows, seed in shapes(13, count=16):
        rng = np.random.default_rng(seed)
        W = random_bits(rng, rows, n)
        signs = unpack_signs(W, n).astype(np.int64)
        for q in q_cases(rng, n):
            for k in range(1, 9):
                planes = _native.kernel_pack_planes_u8("portable", q, k)
                expect = signs @ (q >> (8 - k)).astype(np.int64)
                assert np.array_equal(_native.kernel_planes_bmv(variant, W, planes), expect), (n, rows, k)


def test_planes_kernels_refuse_bad_shapes():
    W = pack_bits(np.ones((3, 70), bool))
    with pytest.raises(ValueError):
        _native.kernel_pack_planes_u8("portable", np.zeros(70, np.uint8), 9)
    with pytest.raises(ValueError):
        _native.kernel_pack_planes_u8("portable", np.zeros(70, np.uint8), 0)
    with pytest.raises(ValueError):  # planes of another width
        _native.kernel_planes_bmv("portable", W, np.zeros((2, 1), np.uint64))
    with pytest.raises(ValueError):  # more than 8 planes
        _native.kernel_planes_bmv("portable", W, np.zeros((9, 2), np.uint64))


@pytest.mark.parametrize("variant", variant_params())
def test_u8_pm1_mv_matches_numpy(variant):
    for n, rows, seed in shapes(10):
        rng = np.random.default_rng(seed)
        signs = np.where(rng.integers(0, 2, (rows, n)) == 1, 1, -1).astype(np.int8)
        Wp = np.zeros((rows, n + 7), np.int8)
        Wp[:, :n] = signs
        for q in q_cases(rng, n):
            try:
                got = _native.kernel_u8_pm1_mv(variant, Wp, q)
            except _native.KernelUnavailable:
                pytest.skip(f"{variant} reads the int8 input layer from the packed bits")
            assert np.array_equal(got, signs.astype(np.int64) @ q.astype(np.int64)), (n, rows)


@pytest.mark.parametrize("variant", variant_params())
def test_s8u8_mv_matches_numpy(variant):
    for n, rows, seed in shapes(4):
        rng = np.random.default_rng(seed)
        W = rng.integers(-128, 128, (rows, n)).astype(np.int8)
        W[0, :] = -128  # the extreme weight with the extreme input
        for q in q_cases(rng, n):
            expect = W.astype(np.int64) @ q.astype(np.int64)
            assert np.array_equal(_native.kernel_s8u8_mv(variant, W, q), expect), (n, rows)


@pytest.mark.parametrize("variant", variant_params())
def test_float_kernels_match_numpy(variant):
    for n, rows, seed in shapes(5):
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((rows, n)).astype(np.float32)
        b = rng.standard_normal(rows).astype(np.float32)
        x = rng.standard_normal(n).astype(np.float32)
        expect = W.astype(np.float64) @ x + b
        np.testing.assert_allclose(_native.kernel_f32_mv(variant, W, x, b), expect, rtol=1e-4,
                                   atol=1e-4 * np.sqrt(n))
        for q in q_cases(rng, n):
            expect = W.astype(np.float64) @ q.astype(np.float64) + b
            np.testing.assert_allclose(_native.kernel_f32u8_mv(variant, W, q, b), expect, rtol=1e-4,
                                       atol=1e-4 * 255 * np.sqrt(n))


@pytest.mark.parametrize("variant", variant_params())
def test_f32_mm_matches_numpy_and_single_samples(variant):
    for n, rows, seed in shapes(9):
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((rows, n)).astype(np.float32)
        b = rng.standard_normal(rows).astype(np.float32)
        for T in (1, 3, 4, 5, 9):
            X = rng.standard_normal((T, n)).astype(np.float32)
            got = _native.kernel_f32_mm(variant, W, X, b)
            np.testing.assert_allclose(got, X.astype(np.float64) @ W.T.astype(np.float64) + b, rtol=1e-4,
                                       atol=1e-4 * np.sqrt(n))
            for t in range(T):  # a sample's result does not depend on its tile
                assert np.array_equal(_native.kernel_f32_mm(variant, W, X[t:t + 1], b)[0], got[t])


@pytest.mark.parametrize("variant", variant_params())
def test_maxpool_matches_numpy(variant):
    rng = np.random.default_rng(6)
    for n in SIZES + [1000]:
        for q in q_cases(rng, n):
            for pool in (1, 2, 3, 8, 9, 16):
                if n // pool < 1:
                    continue
                expect = max_pool_1d(q[None, :], pool)[0]
                assert np.array_equal(_native.kernel_maxpool_u8(variant, q, pool), expect), (n, pool)


@pytest.mark.parametrize("variant", variant_params())
def test_sparse_kernels_match_numpy(variant):
    for n, rows, seed in shapes(7):
        rng = np.random.default_rng(seed)
        bits = rng.integers(0, 2, (n, rows)).astype(bool)
        WT = pack_bits(bits)
        WTq = rng.integers(-128, 128, (n, rows)).astype(np.int8)
        for density in (0.0, 0.05, 0.5, 1.0):
            idx = np.flatnonzero(rng.random(n) < density).astype(np.int32)
            cnt = _native.kernel_sparse_bitcount(variant, WT, rows, idx)
            assert np.array_equal(cnt, bits[idx].sum(axis=0)), (n, rows, density)
            s = _native.kernel_sparse_s8sum(variant, WTq, idx)
            assert np.array_equal(s, WTq[idx].astype(np.int64).sum(axis=0)), (n, rows, density)


@pytest.mark.parametrize("variant", variant_params(include_portable=False))
def test_optimized_equals_portable_on_random_shapes(variant):
    """The optimized kernels against the portable C kernels directly (integer kernels bit-exact)."""
    rng = np.random.default_rng(8)
    for _ in range(40):
        n = int(rng.integers(1, 3000))
        rows = int(rng.integers(1, 200))
        W = random_bits(rng, rows, n)
        x = random_bits(rng, 1, n)[0]
        assert np.array_equal(_native.kernel_bmv(variant, W, x, n), _native.kernel_bmv("portable", W, x, n))
        q = rng.integers(0, 256, n).astype(np.uint8)
        assert np.array_equal(_native.kernel_u8_bmv(variant, W, q), _native.kernel_u8_bmv("portable", W, q))
        W8 = rng.integers(-128, 128, (rows, n)).astype(np.int8)
        assert np.array_equal(_native.kernel_s8u8_mv(variant, W8, q), _native.kernel_s8u8_mv("portable", W8, q))
        t = int(rng.integers(0, 257))
        assert np.array_equal(_native.kernel_pack_ge_u8(variant, q, t), _native.kernel_pack_ge_u8("portable", q, t))
        acc = rng.integers(-n, n + 1, rows).astype(np.int32)
        thr = rng.integers(-n, n + 1, rows).astype(np.int32)
        flip = rng.integers(0, 2, rows).astype(np.uint8)
        assert np.array_equal(_native.kernel_threshold_pack(variant, acc, thr, flip),
                              _native.kernel_threshold_pack("portable", acc, thr, flip))
        Wf = rng.standard_normal((rows, n)).astype(np.float32)
        b = rng.standard_normal(rows).astype(np.float32)
        np.testing.assert_allclose(_native.kernel_f32u8_mv(variant, Wf, q, b),
                                   _native.kernel_f32u8_mv("portable", Wf, q, b), rtol=1e-4,
                                   atol=1e-3 * np.sqrt(n))


def test_kernel_args_are_checked():
    W = np.zeros((3, 2), np.uint64)
    with pytest.raises(ValueError):
        _native.kernel_bmv("portable", W, np.zeros(2, np.uint64), 200)  # 200 bits need 4 words
    with pytest.raises(ValueError):
        _native.kernel_bmv("portable", W, np.zeros(1, np.uint64), 100)
    with pytest.raises(ValueError):
        _native.kernel_sparse_bitcount("portable", np.zeros((10, 1), np.uint64), 5, np.array([10], np.int32))
    with pytest.raises(_native.KernelUnavailable):
        _native.kernel_bmv("no-such-kernel", W, np.zeros(2, np.uint64), 100)


def test_words_for_agrees_with_c():
    for n in (1, 63, 64, 65, 1000):
        assert _native.kernel_pack_ge_u8("portable", np.zeros(n, np.uint8), 0).shape == (words_for(n),)
