"""Folding batch norm + sign into one integer threshold per unit, and affine folds."""

import numpy as np
import pytest

from edge_rbmlp.fold import (INT32_MIN, BatchNorm, apply_thresholds, fold_batchnorm_into_dense,
                             fold_batchnorm_to_affine, fold_batchnorm_to_thresholds,
                             fold_input_quantization_into_dense)


def _bn(rng, units, gamma=None):
    return BatchNorm(gamma=rng.standard_normal(units) if gamma is None else gamma,
                     beta=rng.standard_normal(units), mean=rng.standard_normal(units) * 5,
                     variance=rng.uniform(0.1, 3, units), epsilon=1e-3)


@pytest.mark.parametrize("acc_scale", [1.0, 1 / 255.0])
def test_thresholds_equal_sign_of_batchnorm(rng, acc_scale):
    units = 200
    bn = _bn(rng, units)
    bn.gamma[:10] = 0.0  # constant units
    bias = rng.standard_normal(units) * 3
    threshold, flip = fold_batchnorm_to_thresholds(acc_scale, bias, bn, units)
    assert threshold.dtype == np.int32 and flip.dtype == np.uint8
    assert set(np.unique(flip)) <= {0, 1}
    acc = np.arange(-300, 301)[:, None]
    s, t = bn.scale_shift()
    expected = s * (acc_scale * acc + bias) + t >= 0
    np.testing.assert_array_equal(apply_thresholds(acc, threshold, flip), expected)
    # negative gamma flips the comparison
    assert np.all(flip[(bn.gamma < 0)] == 1)


def test_threshold_at_exact_boundary_is_plus_one():
    # pre = acc - 5, no BN: sign(0) = +1, so acc = 5 is on
    threshold, flip = fold_batchnorm_to_thresholds(1.0, np.array([-5.0]), None, 1)
    assert threshold[0] == 5 and flip[0] == 0
    assert apply_thresholds(np.array([4, 5, 6]), threshold, flip).tolist() == [False, True, True]


def test_constant_units():
    bn = BatchNorm(gamma=np.zeros(2), beta=np.array([0.5, -0.5]), mean=np.zeros(2), variance=np.ones(2))
    threshold, flip = fold_batchnorm_to_thresholds(1.0, np.zeros(2), bn, 2)
    acc = np.array([[-10**6, -10**6], [0, 0], [10**6, 10**6]])
    out = apply_thresholds(acc, threshold, flip)
    assert out[:, 0].all() and not out[:, 1].any()
    assert threshold.tolist() == [INT32_MIN, INT32_MIN]


def test_huge_thresholds_clip_to_int32():
    bn = BatchNorm(gamma=np.array([1e-30, -1e-30]), beta=np.array([1.0, 1.0]), mean=np.zeros(2),
                   variance=np.ones(2))
    threshold, flip = fold_batchnorm_to_thresholds(1.0, np.zeros(2), bn, 2)
    acc = np.array([[-(2**30)], [0], [2**30]]).repeat(2, axis=1)
    np.testing.assert_array_equal(apply_thresholds(acc, threshold, flip), np.ones((3, 2), bool))


def test_affine_fold(rng):
    units = 16
    bn = _bn(rng, units)
    bias = rng.standard_normal(units)
    scale, shift = fold_batchnorm_to_affine(0.5, bias, bn, units)
    acc = rng.integers(-100, 100, (5, units))
    s, t = bn.scale_shift()
    np.testing.assert_allclose(scale * acc + shift, s * (0.5 * acc + bias) + t, rtol=1e-5, atol=1e-4)
    scale, shift = fold_batchnorm_to_affine(1.0, bias, None, units)
    np.testing.assert_allclose(scale, 1.0) and np.testing.assert_allclose(shift, bias.astype(np.float32))


def test_dense_folds(rng):
    w = rng.standard_normal((4, 10))
    b = rng.standard_normal(4)
    bn = _bn(rng, 4)
    q = rng.integers(0, 256, (3, 10))
    x = (q - 3) / 255.0
    w1, b1 = fold_input_quantization_into_dense(w, b, 1 / 255.0, 3)
    np.testing.assert_allclose(q @ w1.T + b1, x @ w.T + b, rtol=1e-4, atol=1e-4)
    w2, b2 = fold_batchnorm_into_dense(w1, b1, bn)
    s, t = bn.scale_shift()
    np.testing.assert_allclose(q @ w2.T + b2, s * (x @ w.T + b) + t, rtol=1e-4, atol=1e-3)


def test_input_quantization_into_binary_layer(rng):
    """The int8-mode first binary layer on q equals the float layer on x = scale * (q - zp)."""
    from edge_rbmlp.fold import fold_input_quantization_into_binary_layer

    for n_in, n_out in [(1, 1), (784, 128), (65, 3)]:
        w = rng.choice([-1, 1], size=(n_out, n_in)).astype(np.int8)
        b = rng.normal(size=n_out)
        scale, zp = 1 / 255, int(rng.integers(0, 256))
        q = rng.integers(0, 256, size=(5, n_in)).astype(np.uint8)
        x = scale * (q.astype(np.float64) - zp)
        acc_scale, offset = fold_input_quantization_into_binary_layer(w, b, scale, zp)
        acc = q.astype(np.int64) @ w.T.astype(np.int64)
        np.testing.assert_allclose(acc_scale * acc + offset, x @ w.T.astype(np.float64) + b, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("with_bn", [False, True])
def test_quantized_shortcut_fold(rng, with_bn):
    from edge_rbmlp.fold import fold_quantized_shortcut

    n_in, n_out = 100, 7
    wq = rng.integers(-127, 128, size=(n_out, n_in))
    w_scale = rng.uniform(0.001, 0.01, size=n_out)
    b = rng.normal(size=n_out)
    bn = BatchNorm(gamma=rng.normal(size=n_out), beta=rng.normal(size=n_out), mean=rng.normal(size=n_out),
                   variance=rng.uniform(0.1, 2, size=n_out)) if with_bn else None
    scale, zp = 0.02, 3
    q = rng.integers(0, 256, size=(4, n_in))
    x = scale * (q - zp)
    y = x @ (wq * w_scale[:, None]).T + b
    if bn is not None:
        s, t = bn.scale_shift()
        y = s * y + t
    fs, fb = fold_quantized_shortcut(wq, w_scale, b, bn, scale, zp)
    assert fs.dtype == np.float32 and fb.dtype == np.float32
    np.testing.assert_allclose(fs * (q @ wq.T) + fb, y, rtol=1e-4, atol=1e-3)
