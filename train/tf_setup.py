"""Import TensorFlow the way larq needs it (Keras 2 through tf-keras)."""

from __future__ import annotations

import os
import sys


def import_tf():
    """Return ``(tf, larq)``; sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first imported."""
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set: larq needs Keras 2 "
                           "(tf-keras). Import train.* before tensorflow or set the variable in the environment.")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import larq

    return tf, larq


def versions() -> dict:
    import platform

    import numpy

    tf, lq = import_tf()
    out = {"tensorflow": tf.__version__, "larq": lq.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    try:
        import tf_keras

        out["tf_keras"] = tf_keras.__version__
    except ImportError:
        pass
    try:
        import larq_compute_engine as lce

        out["larq_compute_engine"] = lce.__version__
    except ImportError:
        pass
    return out


def set_seed(seed: int) -> None:
    """Everything Keras needs to be deterministic given ``seed``."""
    tf, _ = import_tf()
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
