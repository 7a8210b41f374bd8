"""Coverage-guided fuzz target (atheris) for the packed model loader and the engines behind it.

Run: ``python tests/fuzz/fuzz_model_loader.py CORPUS_DIR -max_total_time=60``.
The seed corpus is written by :func:`write_seed_corpus` (random models of several
shapes plus the bundled models). A loaded model must run on the reference engine
(and the native engine when it is built) without any error; anything but a
``ModelFormatError`` from the loader is a finding.
"""

import sys
from pathlib import Path

import numpy as np

SEED_VARIANTS = [
    ("B-D128N,D88N,PN", 784, 10, "image", "sign"),
    ("B-32,16,Q", 300, 1, "text", "int8"),
    ("B-65,F", 70, 3, "vector", "sign"),
    ("B-3", 5, 2, "vector", "int8"),
]


def write_seed_corpus(directory) -> int:
    from edge_rbmlp.arch import parse
    from edge_rbmlp.models import bundled_models
    from edge_rbmlp.random_model import random_packed_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, (variant, n_in, n_out, kind, mode) in enumerate(SEED_VARIANTS):
        model = random_packed_model(parse(variant, input_mode=mode), n_in, n_out, seed=i, input_kind=kind)
        (directory / f"random_{i}.rbm").write_bytes(model.to_bytes())
        count += 1
    for name, path in bundled_models().items():
        (directory / f"bundled_{name}.rbm").write_bytes(path.read_bytes())
        count += 1
    return count


def _engines(model):
    from edge_rbmlp.engines.base import BackendUnavailable
    from edge_rbmlp.engines.reference import ReferenceEngine

    engines = [ReferenceEngine(model)]
    try:
        from edge_rbmlp.engines.native import NativeEngine

        engines.append(NativeEngine(model))
    except (ImportError, BackendUnavailable):
        pass
    return engines


def resign(data: bytes) -> bytes:
    """Give a mutated file a valid checksum again, as a deliberately lying file would have.

    Without this the checksum rejects nearly every mutation and the fuzzer never
    reaches the loader's deeper validation or the engines.
    """
    import json

    from edge_rbmlp.model_file import CHECKSUM_KEY, METADATA_KEY, _checksum

    if len(data) < 8:
        return data
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        return data
    try:
        header = json.loads(data[8:8 + n])
        meta = header["__metadata__"]
        raw = meta[METADATA_KEY]
        meta[CHECKSUM_KEY] = "0" * 64
    except Exception:
        return data
    body = data[8 + n:]
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    draft = len(encoded).to_bytes(8, "little") + encoded + body
    meta[CHECKSUM_KEY] = _checksum(raw if isinstance(raw, str) else "", draft)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + body


def test_one_input(data: bytes) -> None:
    from edge_rbmlp.model_file import ModelFormatError, PackedModel

    # odd-length inputs are re-signed (lying files); even-length ones are loaded as they are
    if len(data) % 2:
        data = resign(data)
    try:
        model = PackedModel.from_bytes(data)
    except ModelFormatError:
        return
    q = np.full((2, model.n_inputs), 200, dtype=np.uint8)
    for engine in _engines(model):
        logits = engine.logits_uint8(q)
        assert logits.shape == (2, model.n_outputs)


def main(argv) -> None:
    import atheris

    with atheris.instrument_imports():
        import edge_rbmlp.model_file  # noqa: F401
        import edge_rbmlp.engines.reference  # noqa: F401
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
