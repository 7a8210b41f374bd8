"""edge-rbmlp: residual binary multilayer perceptrons, packed for small devices.

The device side: the paper's notation (:mod:`.arch`), its size model
(:mod:`.size`), the packed model file (:mod:`.model_file`), the reference
engine (:mod:`.reference`) and the native engine, with the model's own text and
image preprocessing. Nothing here imports TensorFlow.
"""

from .arch import Architecture, ArchError, parse
from .engine import BackendUnavailable, Engine, Prediction
from .model_file import ModelFormatError, PackedModel, load_packed_model

__version__ = "0.1.0"

__all__ = [
    "Architecture", "ArchError", "parse", "Engine", "Prediction", "BackendUnavailable",
    "ModelFormatError", "PackedModel", "load_packed_model", "load", "__version__",
]


def load(model: str, backend: str = "auto") -> Engine:
    """Load a bundled model name or ``.rbm`` path into an engine: ``load("mnist").predict_image(img)``."""
    from .backends import create
    from .models import load_model

    return create(load_model(model), backend)
