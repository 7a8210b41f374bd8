"""The bundled default models (``mnist``, ``imdb``) and resolving a MODEL argument.

A MODEL is either a path to a ``.rbm`` file or the name of a bundled model.
Bundled models ship beside this file with their TFLite siblings
(``NAME.tflite``, ``NAME_int8.tflite``, ``NAME_lce.tflite``) for comparisons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from ..model_file import PackedModel, load_packed_model

MODELS_DIR = Path(__file__).resolve().parent


def bundled_models() -> Dict[str, Path]:
    """Name -> path of every bundled ``.rbm``."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.rbm"))}


def resolve_model_path(name_or_path: str) -> Path:
    """A bundled model's name, or an existing file path; a clear error otherwise."""
    bundled = bundled_models()
    if name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = ", ".join(bundled) or "none are installed"
    raise FileNotFoundError(f"no model file {name_or_path!r} and no bundled model of that name "
                            f"(bundled: {known})")


def sibling_path(model_path: Path, variant: str) -> Optional[Path]:
    """The TFLite sibling of a model file: variant ``float``, ``int8``, ``lce`` or ``F-float`` (the
    float network of the same topology that benchmarks/build_comparison_models.py writes)."""
    suffix = {"float": "", "int8": "_int8", "lce": "_lce", "F-float": "_F"}[variant]
    path = model_path.with_name(f"{model_path.stem}{suffix}.tflite")
    return path if path.is_file() else None


def load_model(name_or_path: str) -> PackedModel:
    return load_packed_model(resolve_model_path(name_or_path))


def model_summary(model: PackedModel, path: Path) -> dict:
    """What ``edge-rbmlp info`` and the service's ``/api/status`` show of a model."""
    from ..size import paper_size_kib

    n_classes_paper = 1 if model.output_activation == "sigmoid" else model.n_classes
    return {
        "name": model.name,
        "path": str(path),
        "arch": model.arch.notation(),
        "options": model.arch.options(),
        "file_bytes": model.file_bytes,
        "paper_kib": round(paper_size_kib(model.arch, model.n_inputs, n_classes_paper), 4),
        "input": model.input_spec.to_dict(),
        "vocab_words": len(model.vocab) if model.vocab is not None else None,
        "labels": list(model.labels),
        "output_activation": model.output_activation,
        "accuracy": model.accuracy,
        "provenance": model.provenance,
        "description": model.description,
    }
