"""Keras model -> packed ``.rbm`` (through :mod:`edge_rbmlp.fold`) and TFLite files.

* ``.rbm``: hidden layers before the last become integer thresholds, the last one
  ``scale * acc + shift``; the shortcut is folded onto the uint8 input ``q``
  (input scale / zero point, its bias and its batch norm); binary weights are the
  signs of the latent kernels (``sign(0) = +1`` as larq's ``ste_sign``).
* ``model.tflite``: the Keras model as float TFLite.
* ``model_int8.tflite``: post-training full-integer quantization (representative
  data from the train split); float32 input/output with QUANTIZE/DEQUANTIZE at the edges.
* ``model_lce.tflite``: Larq Compute Engine flatbuffer of the 1x1-``QuantConv2D`` twin.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from edge_rbmlp.arch import Architecture
from edge_rbmlp.bits import pack_signs
from edge_rbmlp.fold import (BatchNorm, fold_batchnorm_into_dense, fold_batchnorm_to_affine,
                             fold_batchnorm_to_thresholds, fold_input_quantization_into_binary_layer,
                             fold_input_quantization_into_dense, fold_quantized_shortcut)
from edge_rbmlp.inputs import InputSpec
from edge_rbmlp.model_file import PackedModel

from .models import build_lce_twin, planes_acc_scale, symmetric_quantize_int
from .tf_setup import import_tf

tf, lq = import_tf()


def _batchnorm(model, name: str) -> Optional[BatchNorm]:
    try:
        layer = model.get_layer(name)
    except ValueError:
        return None
    n = layer.moving_mean.shape[0]
    gamma = layer.gamma.numpy() if layer.gamma is not None else np.ones(n, np.float32)
    beta = layer.beta.numpy() if layer.beta is not None else np.zeros(n, np.float32)
    return BatchNorm(gamma=gamma, beta=beta, mean=layer.moving_mean.numpy(),
                     variance=layer.moving_variance.numpy(), epsilon=float(layer.epsilon))


def _bias(layer, units: int) -> np.ndarray:
    return layer.bias.numpy().astype(np.float64) if getattr(layer, "bias", None) is not None \
        else np.zeros(units, np.float64)


def binary_layer_affine(model, arch: Architecture, spec: InputSpec, i: int):
    """``(pm1_weight [out, in] int8, acc_scale, offset, batchnorm)`` of binary layer ``i``."""
    layer = model.get_layer(f"binary_{i}")
    kernel = layer.kernel.numpy()
    w_pm1 = np.where(kernel.T >= 0, 1, -1).astype(np.int8)
    width = kernel.shape[1]
    bias = _bias(layer, width)
    bn = _batchnorm(model, f"bn_{i}")
    if i == 0 and arch.input_mode == "int8":
        acc_scale, offset = fold_input_quantization_into_binary_layer(w_pm1, bias, spec.scale, spec.zero_point)
    elif i == 0 and arch.input_mode == "planes":
        # the layer saw v / (2^bits - 1) with v = q >> (8 - bits); the engine accumulates sum v_i w_i
        acc_scale, offset = planes_acc_scale(arch.input_bits), bias
    else:
        acc_scale = 1.0
        offset = bias
    return w_pm1, acc_scale, offset, bn


def export_packed(model, arch: Architecture, spec: InputSpec, labels: List[str], output_activation: str,
                  vocab: Optional[List[str]] = None, name: Optional[str] = None,
                  description: Optional[str] = None, accuracy: Optional[dict] = None,
                  provenance: Optional[dict] = None) -> PackedModel:
    if not arch.is_binary:
        raise ValueError(f"{arch} is a float model: it has no packed form (use the TFLite exports)")
    tensors: Dict[str, np.ndarray] = {}
    last = len(arch.blocks) - 1
    for i, block in enumerate(arch.blocks):
        layer = model.get_layer(f"binary_{i}")
        kernel = layer.kernel.numpy()
        tensors[f"layer.{i}.weight"] = pack_signs(kernel.T)
        _, acc_scale, offset, bn = binary_layer_affine(model, arch, spec, i)
        if i < last:
            threshold, flip = fold_batchnorm_to_thresholds(acc_scale, offset, bn, block.width)
            tensors[f"layer.{i}.threshold"] = threshold
            tensors[f"layer.{i}.flip"] = flip
        else:
            scale, shift = fold_batchnorm_to_affine(acc_scale, offset, bn, block.width)
            tensors[f"layer.{i}.scale"] = scale
            tensors[f"layer.{i}.shift"] = shift
    if arch.shortcut is not None:
        layer = model.get_layer("shortcut")
        kernel = layer.kernel.numpy()
        width = kernel.shape[1]
        bias = _bias(layer, width)
        bn = _batchnorm(model, "shortcut_bn")
        if arch.shortcut.kind == "Q":
            q, w_scale = symmetric_quantize_int(tf.constant(kernel), arch.quant_bits)
            q = q.numpy().T.astype(np.int64)            # [out, in]
            scale, b = fold_quantized_shortcut(q, w_scale.numpy(), bias, bn, spec.scale, spec.zero_point)
            tensors["shortcut.weight"] = q.astype(np.int8)
            tensors["shortcut.scale"] = scale
            tensors["shortcut.bias"] = b
        else:
            # F on q, P on max-pooled q (max-pool commutes with x = scale*(q-zp), scale > 0)
            w, b = fold_input_quantization_into_dense(kernel.T, bias, spec.scale, spec.zero_point)
            w, b = fold_batchnorm_into_dense(w, b, bn)
            tensors["shortcut.weight"] = w
            tensors["shortcut.bias"] = b
    out = model.get_layer("output")
    tensors["output.weight"] = np.ascontiguousarray(out.kernel.numpy().T.astype(np.float32))
    tensors["output.bias"] = out.bias.numpy().astype(np.float32)
    return PackedModel(arch=arch, input_spec=spec, labels=list(labels), output_activation=output_activation,
                       tensors=tensors, vocab=list(vocab) if vocab is not None else None, accuracy=accuracy,
                       provenance=provenance, name=name, description=description)


# -- TFLite ------------------------------------------------------------------
def to_tflite_float(model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()


def to_tflite_int8(model, representative: np.ndarray) -> (bytes, dict):
    """Full-integer post-training quantization; returns ``(flatbuffer, info)``.

    ``representative``: float32 inputs from the train split. Falls back to allowing
    float builtins only if an op cannot be quantized (``info["full_integer"]`` says which)."""
    def gen():
        for i in range(len(representative)):
            yield [representative[i:i + 1].astype(np.float32)]

    info = {"representative_samples": int(len(representative))}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        data = converter.convert()
        info["full_integer"] = True
    except Exception as exc:  # an op without an int8 kernel
        info["full_integer"] = False
        info["fallback_reason"] = str(exc).splitlines()[0][:300]
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        data = converter.convert()
    return data, info


def to_lce(model, arch: Architecture, spec: InputSpec, n_outputs: int, output_activation: str):
    """``(flatbuffer, twin)``: the LCE conversion of the 1x1-convolution twin."""
    import larq_compute_engine as lce

    twin = build_lce_twin(model, arch, spec, n_outputs, output_activation)
    return lce.convert_keras_model(twin), twin


def tflite_ops(flatbuffer: bytes) -> List[str]:
    """Operator names used in a TFLite flatbuffer (builtin and custom)."""
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover
        return []
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    names = []
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for code in m.operatorCodes:
        if code.customCode:
            names.append(code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode)
        else:
            names.append(builtin.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode)))
    return sorted(set(names))


# -- running the exports -------------------------------------------------------
def _litert_interpreter(flatbuffer: bytes):
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=flatbuffer, num_threads=2), "ai-edge-litert"
    except ImportError:
        return tf.lite.Interpreter(model_content=flatbuffer, num_threads=2), "tf.lite"


def run_tflite(flatbuffer: bytes, x: np.ndarray, batch: int = 256) -> (np.ndarray, str):
    """Outputs of a plain TFLite model on float inputs ``x`` (in batches)."""
    interp, runtime = _litert_interpreter(flatbuffer)
    inp = interp.get_input_details()[0]
    n = len(x)
    batch = min(batch, n)
    interp.resize_tensor_input(inp["index"], [batch, x.shape[1]])
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    results = []
    for start in range(0, n, batch):
        chunk = x[start:start + batch]
        m = len(chunk)
        if m < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - m, x.shape[1]), chunk.dtype)])
        data = chunk.astype(np.float32)
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            data = np.clip(np.round(data / s + z), np.iinfo(inp["dtype"]).min,
                           np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], data)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            y = (y.astype(np.float32) - z) * s
        results.append(np.array(y[:m]))
    return np.concatenate(results), runtime


def run_lce(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    import larq_compute_engine as lce

    interp = lce.testing.Interpreter(flatbuffer, num_threads=2)
    outs = interp.predict(x.astype(np.float32))
    return np.asarray(outs).reshape(len(x), -1)
