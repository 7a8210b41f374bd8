"""edge-rbmlp: residual binary multilayer perceptrons, packed for small devices.

The device side: the paper's notation (:mod:`.arch`), its size model
(:mod:`.size`), the packed model file (:mod:`.model_file`), the reference
engine (:mod:`.reference`) and the native engine, with the model's own text and
image preprocessing. Nothing here imports TensorFlow.
"""

from .arch import Architecture, ArchError, parse

__version__ = "0.1.0"

# imported on first use (PEP 562), so that `import edge_rbmlp.<light module>` does not pull in
# numpy: the `serve --workers N` supervisor stays small
_LAZY = {"BackendUnavailable": "engines.base", "Engine": "engines.base", "Prediction": "engines.base",
         "ModelFormatError": "model_file", "PackedModel": "model_file", "load_packed_model": "model_file"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_rbmlp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "Architecture", "ArchError", "parse", "Engine", "Prediction", "BackendUnavailable",
    "ModelFormatError", "PackedModel", "load_packed_model", "load", "__version__",
]


def load(model: str, backend: str = "auto") -> "Engine":
    """Load a bundled model name or ``.rbm`` path into an engine: ``load("mnist").predict_image(img)``."""
    from .engines import create
    from .models import load_model

    return create(load_model(model), backend)
