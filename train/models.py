"""Keras/larq models of every variant the notation expresses (see :mod:`edge_rbmlp.arch`).

Binary (``B-``) models: blocks of Dropout -> ``QuantDense`` (``ste_sign`` input and
kernel quantizers, ``weight_clip``) -> BatchNormalization; the first binary layer

* in ``sign`` input mode centres the Keras input ``x = scale * (q - zero_point)``
  by ``c = scale * (binarize_threshold - 0.5 - zero_point)`` and binarizes it with
  ``ste_sign``, so it is +1 exactly where ``q >= binarize_threshold``;
* in ``int8`` mode has no input quantizer and sees ``x`` as it is;
* in ``planes`` mode sees the ``input_bits``-bit value ``v = q >> (8 - input_bits)`` of the
  uint8 input ``q`` (layer ``input_planes``), scaled to ``v / (2^input_bits - 1)``, with no
  further input quantizer: the engine computes ``sum_i v_i w_i`` as ``input_bits``
  AND-popcount passes over the bit planes of ``v``.

Float (``F-``) models: Dense -> [BN] -> ReLU with the same block options.

Shortcut from the input, added to the last hidden layer's output (after its BN):
F float Dense, Q Dense with a symmetric per-output-channel ``quant_bits`` fake-quantized
kernel (STE), P MaxPooling1D(pool, pool, valid) + float Dense; ``N`` on the
shortcut is a BatchNormalization on the branch before the add. A final ``D`` is
Dropout before the output layer (softmax over classes, or one sigmoid unit).

Layer names are fixed so export can find them: ``center``, ``binary_{i}`` /
``dense_{i}``, ``bn_{i}``, ``shortcut``, ``shortcut_bn``, ``output``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_rbmlp.arch import Architecture
from edge_rbmlp.inputs import InputSpec

from .tf_setup import import_tf

tf, lq = import_tf()
keras = tf.keras


@keras.utils.register_keras_serializable(package="edge_rbmlp")
class Center(keras.layers.Layer):
    """``x - c`` (a constant): puts the binarization threshold of the first layer at 0."""

    def __init__(self, c: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.c = float(c)

    def call(self, x):
        return x - tf.constant(self.c, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "c": self.c}


def symmetric_quantize_int(kernel, bits: int):
    """Per-output-channel symmetric quantization of ``kernel [in, out]``.

    Returns ``(q, scale)``: integer-valued ``q`` in ``[-(2^(bits-1)-1), 2^(bits-1)-1]``
    (same dtype as ``kernel``) and ``scale [out]`` with ``kernel ~ q * scale``.
    """
    qmax = float(2 ** (bits - 1) - 1)
    max_abs = tf.reduce_max(tf.abs(kernel), axis=0)
    scale = tf.where(max_abs > 0, max_abs / qmax, tf.ones_like(max_abs))
    q = tf.clip_by_value(tf.round(kernel / scale), -qmax, qmax)
    return q, scale


@keras.utils.register_keras_serializable(package="edge_rbmlp")
class SymmetricQuantizer(keras.layers.Layer):
    """Fake-quantizes a kernel to ``bits`` (symmetric, per output channel) with a straight-through
    gradient. The forward value is exactly ``q * scale`` so it exports to int8 without error."""

    def __init__(self, bits: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        self.precision = self.bits

    def call(self, kernel):
        bits = self.bits

        @tf.custom_gradient
        def fake_quant(w):
            q, scale = symmetric_quantize_int(w, bits)

            def grad(dy):
                return dy

            return q * scale, grad

        return fake_quant(kernel)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@keras.utils.register_keras_serializable(package="edge_rbmlp")
class InputPlanes(keras.layers.Layer):
    """``x = scale * (q - zero_point)`` -> ``(q >> (8 - bits)) / (2^bits - 1)``: the ``bits``-bit input
    of the ``planes`` mode (``q`` recovered exactly from ``x``, then its top ``bits`` bits)."""

    def __init__(self, bits: int = 2, scale: float = 1.0 / 255.0, zero_point: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        self.scale = float(scale)
        self.zero_point = int(zero_point)

    def call(self, x):
        q = tf.clip_by_value(tf.round(x / self.scale) + float(self.zero_point), 0.0, 255.0)
        v = tf.floor(q / float(2 ** (8 - self.bits)))
        return v / float(2 ** self.bits - 1)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "scale": self.scale, "zero_point": self.zero_point}


def planes_acc_scale(bits: int) -> float:
    """The factor from the engine's integer ``sum v_i w_i`` to what the layer saw (``v / (2^bits - 1)``)."""
    return 1.0 / float(2 ** int(bits) - 1)


def center_constant(spec: InputSpec) -> float:
    return float(spec.scale * (spec.binarize_threshold - 0.5 - spec.zero_point))


def first_binary_input(h, arch: Architecture, spec: InputSpec):
    """(what the first binary layer takes, its input quantizer), by ``arch.input_mode``: ``sign``
    centres the input on the binarization threshold and binarizes it (``ste_sign``); ``int8``
    takes the real-valued input as it is (no quantizer); ``planes`` takes its ``input_bits`` bit
    planes, each +-1 (:class:`InputPlanes`, no further quantizer)."""
    if arch.input_mode == "sign":
        return Center(center_constant(spec), name="center")(h), "ste_sign"
    if arch.input_mode == "planes":
        h = InputPlanes(arch.input_bits, spec.scale, spec.zero_point, name="input_planes")(h)
    return h, None


def max_pooled(inp, arch: Architecture, n: int):
    """The P shortcut's input: the ``n`` inputs max-pooled in windows of ``arch.pool_size`` (stride
    the same, the remainder dropped): ``n // pool_size`` values."""
    s = keras.layers.Reshape((n, 1), name="shortcut_reshape")(inp)
    s = keras.layers.MaxPooling1D(pool_size=arch.pool_size, strides=arch.pool_size, padding="valid",
                                  name="shortcut_pool")(s)
    return keras.layers.Flatten(name="shortcut_flatten")(s)


def build_model(arch: Architecture, spec: InputSpec, n_outputs: int, dropout: float = 0.05,
                output_activation: str = "softmax"):
    """The Keras model of ``arch`` on inputs ``x = scale * (q - zero_point)`` of ``spec.size`` values."""
    n = spec.size
    inp = keras.Input(shape=(n,), name="x", dtype="float32")
    h = inp
    last = len(arch.blocks) - 1
    for i, block in enumerate(arch.blocks):
        if block.dropout and dropout > 0:
            h = keras.layers.Dropout(dropout, name=f"dropout_{i}")(h)
        if arch.is_binary:
            input_quantizer = "ste_sign"
            if i == 0:
                h, input_quantizer = first_binary_input(h, arch, spec)
            h = lq.layers.QuantDense(block.width, input_quantizer=input_quantizer, kernel_quantizer="ste_sign",
                                     kernel_constraint="weight_clip", use_bias=not block.batchnorm,
                                     name=f"binary_{i}")(h)
            if block.batchnorm:
                h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        else:
            h = keras.layers.Dense(block.width, use_bias=not block.batchnorm, name=f"dense_{i}")(h)
            if block.batchnorm:
                h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
            h = keras.layers.ReLU(name=f"relu_{i}")(h)
    if arch.shortcut is not None:
        width = arch.last_width
        kind = arch.shortcut.kind
        use_bias = not arch.shortcut.batchnorm
        if kind == "F":
            s = keras.layers.Dense(width, use_bias=use_bias, name="shortcut")(inp)
        elif kind == "Q":
            s = lq.layers.QuantDense(width, input_quantizer=None, kernel_quantizer=SymmetricQuantizer(arch.quant_bits),
                                     use_bias=use_bias, name="shortcut")(inp)
        else:
            if n // arch.pool_size < 1:
                raise ValueError(f"pool size {arch.pool_size} is larger than the {n} inputs")
            s = keras.layers.Dense(width, use_bias=use_bias, name="shortcut")(max_pooled(inp, arch, n))
        if arch.shortcut.batchnorm:
            s = keras.layers.BatchNormalization(name="shortcut_bn")(s)
        h = keras.layers.Add(name="residual")([h, s])
    if arch.output_dropout and dropout > 0:
        h = keras.layers.Dropout(dropout, name="dropout_out")(h)
    out = keras.layers.Dense(n_outputs, activation=output_activation, name="output")(h)
    return keras.Model(inp, out, name=f"rbmlp_{arch.notation().replace('-', '_').replace(',', '_')}")


def compile_model(model, lr: float, output_activation: str):
    loss = "binary_crossentropy" if output_activation == "sigmoid" else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, metrics=["accuracy"])
    return model


def build_lce_twin(model, arch: Architecture, spec: InputSpec, n_outputs: int, output_activation: str):
    """An inference copy of a binary model where every binary Dense is Reshape(1,1,n) + 1x1
    ``QuantConv2D`` with the same weights, so Larq Compute Engine turns it into ``LceBconv2d``.
    Dropout is left out (inference); the Q shortcut's fake-quantized kernel is materialized."""
    if not arch.is_binary:
        raise ValueError("only binary models have an LCE twin")
    n = spec.size
    inp = keras.Input(shape=(n,), name="x", dtype="float32")
    h = inp
    last = len(arch.blocks) - 1
    copies = []
    for i, block in enumerate(arch.blocks):
        input_quantizer = "ste_sign"
        if i == 0:
            h, input_quantizer = first_binary_input(h, arch, spec)
            h = keras.layers.Reshape((1, 1, n), name="to_image")(h)
        conv = lq.layers.QuantConv2D(block.width, (1, 1), input_quantizer=input_quantizer,
                                     kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                     use_bias=not block.batchnorm, name=f"bconv_{i}")
        h = conv(h)
        dense = model.get_layer(f"binary_{i}")
        copies.append((conv, [w.reshape((1, 1) + w.shape) if w.ndim == 2 else w for w in dense.get_weights()]))
        if block.batchnorm:
            bn = keras.layers.BatchNormalization(name=f"bn_{i}")
            h = bn(h)
            copies.append((bn, model.get_layer(f"bn_{i}").get_weights()))
    h = keras.layers.Reshape((arch.last_width,), name="to_vector")(h)
    if arch.shortcut is not None:
        kind = arch.shortcut.kind
        src = model.get_layer("shortcut")
        use_bias = not arch.shortcut.batchnorm
        weights = src.get_weights()
        if kind == "Q":
            q, scale = symmetric_quantize_int(tf.constant(weights[0]), arch.quant_bits)
            weights[0] = (q * scale).numpy()
        s = max_pooled(inp, arch, n) if kind == "P" else inp
        dense = keras.layers.Dense(arch.last_width, use_bias=use_bias, name="shortcut")
        s = dense(s)
        copies.append((dense, weights))
        if arch.shortcut.batchnorm:
            bn = keras.layers.BatchNormalization(name="shortcut_bn")
            s = bn(s)
            copies.append((bn, model.get_layer("shortcut_bn").get_weights()))
        h = keras.layers.Add(name="residual")([h, s])
    out_layer = keras.layers.Dense(n_outputs, activation=output_activation, name="output")
    out = out_layer(h)
    copies.append((out_layer, model.get_layer("output").get_weights()))
    twin = keras.Model(inp, out, name=model.name + "_lce")
    for layer, weights in copies:
        layer.set_weights(weights)
    return twin


def count_params(model) -> int:
    return int(np.sum([np.prod(w.shape) for w in model.weights]))
