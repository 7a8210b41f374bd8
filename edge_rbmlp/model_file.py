"""The packed model file (``.rbm``): a safetensors container with a documented layout.

Tensors (``T`` hidden layers, ``n_i`` inputs of hidden layer ``i``, ``w_i = ceil(n_i/64)``):

====================== ======= ====================== ==========================================
name                   dtype   shape                  meaning
====================== ======= ====================== ==========================================
``layer.{i}.weight``   U64     ``[width_i, w_i]``     binary weights, bit order of :mod:`edge_rbmlp.bits`
``layer.{i}.threshold`` I32    ``[width_i]``          folded BN + sign, ``i < T-1`` (:mod:`edge_rbmlp.fold`)
``layer.{i}.flip``     U8      ``[width_i]``          0: ``acc >= threshold``, 1: ``acc <= threshold``
``layer.{T-1}.scale``  F32     ``[width]``            last hidden layer: ``h = scale * acc + shift``
``layer.{T-1}.shift``  F32     ``[width]``
``shortcut.weight``    F32/I8  ``[width, n]``         F: float on ``q``; Q: int8; P: float on pooled ``q``
``shortcut.scale``     F32     ``[width]``            Q only: ``s = scale * (Wq @ q) + bias``
``shortcut.bias``      F32     ``[width]``
``output.weight``      F32     ``[outputs, width]``   float output layer on ``h (+ shortcut)``
``output.bias``        F32     ``[outputs]``
``input.vocab.zlib``   U8      ``[bytes]``            text models: zlib of the UTF-8 words joined by ``\\n``
``input.vocab``        U8      ``[bytes]``            (read only) the same, uncompressed
====================== ======= ====================== ==========================================

``acc`` of layer 0 is ``n - 2*popcount(bits(q >= binarize_threshold) XOR W)`` in
``sign`` input mode, ``sum_i q_i * (±1)_i`` in ``int8`` mode, or ``sum_i v_i * (±1)_i`` with
``v = q >> (8 - k)`` in ``planes`` mode (``k`` = ``arch.input_bits``; the engines compute it
as ``k`` bit-plane passes ``sum_b 2^b (2*popcount(plane_b AND W) - popcount(plane_b))``); of every later
layer ``n - 2*popcount(x XOR W)``. The shortcut takes the uint8 input ``q``
(P: max over non-overlapping windows of ``pool_size``, the tail dropped), with
any input scale, zero point and shortcut batch norm already folded in.

The metadata (``__metadata__["edge_rbmlp"]``, a JSON string) holds the format
name and version, the architecture, the input spec, the output activation and
labels, and free-form ``accuracy`` / ``provenance`` objects.

Format versions: 2 (written) added the ``planes`` input mode and its ``arch.input_bits``
field; version-1 files (``sign`` / ``int8`` only, no ``input_bits``) load unchanged.
``__metadata__["edge_rbmlp_sha256"]`` is the sha256 of that JSON string followed
by the file's tensor data region, so any corruption of weights or metadata is
caught. A loader validates all of it, the checksum, every tensor's dtype and
shape, that no unknown tensor is present and that padding bits are zero, before
any engine sees the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .arch import Architecture, ArchError
from .bits import padding_is_zero, words_for
from .inputs import InputSpec, InputSpecError

FORMAT_NAME = "edge-rbmlp-packed"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # 1: sign / int8 input modes; 2 adds planes (arch.input_bits)
METADATA_KEY = "edge_rbmlp"
CHECKSUM_KEY = "edge_rbmlp_sha256"
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_METADATA_BYTES = 1024 * 1024
MAX_VOCAB_BYTES = 64 * 1024 * 1024
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


class ModelFormatError(ValueError):
    """A packed model file that cannot be used; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str, source: Optional[str] = None):
        self.field = field
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}invalid model file: {field}: {message}")


@dataclass
class PackedModel:
    """A binary residual MLP in its packed inference form (see the module docstring)."""

    arch: Architecture
    input_spec: InputSpec
    labels: List[str]
    output_activation: str
    tensors: Dict[str, np.ndarray]
    vocab: Optional[List[str]] = None
    accuracy: Optional[dict] = None
    provenance: Optional[dict] = None
    name: Optional[str] = None
    description: Optional[str] = None
    file_bytes: Optional[int] = field(default=None, compare=False)

    # -- shape bookkeeping -------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.input_spec.size

    @property
    def n_outputs(self) -> int:
        return 1 if self.output_activation == "sigmoid" else len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def layer_inputs(self) -> List[int]:
        return [self.n_inputs] + list(self.arch.widths[:-1])

    def pooled_size(self) -> int:
        return self.n_inputs // self.arch.pool_size

    def tensor(self, name: str) -> np.ndarray:
        return self.tensors[name]

    # -- (de)serialization -------------------------------------------------
    def metadata(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "arch": self.arch.to_dict(),
            "input": self.input_spec.to_dict(),
            "output": {"activation": self.output_activation, "labels": list(self.labels)},
            "accuracy": self.accuracy,
            "provenance": self.provenance,
        }

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        validate_tensors(self)
        tensors = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        if self.vocab is not None:
            # compressed: a 10,000-word vocabulary is ~77 KB raw, ~36 KB with zlib
            blob = zlib.compress("\n".join(self.vocab).encode("utf-8"), 9)
            tensors["input.vocab.zlib"] = np.frombuffer(blob, dtype=np.uint8).copy()
        meta = json.dumps(self.metadata(), ensure_ascii=False, sort_keys=True)
        # the checksum covers the metadata string and the tensor data; safetensors lays the data out
        # deterministically, so it is computed on a first serialization and stored in the second
        draft = save(tensors, metadata={METADATA_KEY: meta, CHECKSUM_KEY: "0" * 64})
        digest = _checksum(meta, draft)
        data = save(tensors, metadata={METADATA_KEY: meta, CHECKSUM_KEY: digest})
        assert len(data) == len(draft) and _checksum(meta, data) == digest
        return data

    def save(self, path) -> int:
        """Write atomically (temporary file + rename); returns the byte size."""
        data = self.to_bytes()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600: the service (DynamicUser) must be able to read it
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.file_bytes = len(data)
        return len(data)

    @classmethod
    def from_bytes(cls, data: bytes, source: Optional[str] = None) -> "PackedModel":
        return _parse(bytes(data), source)


def expected_tensors(arch: Architecture, n_inputs: int, n_outputs: int) -> Dict[str, Tuple[np.dtype, tuple]]:
    """Every tensor a packed model of this architecture holds: ``name -> (dtype, shape)``."""
    if not arch.is_binary:
        raise ArchError(f"only binary (B-) variants have a packed form; {arch} is a float baseline "
                        "(export it as TFLite instead)")
    spec: Dict[str, Tuple[np.dtype, tuple]] = {}
    inputs = [n_inputs] + list(arch.widths[:-1])
    last = len(arch.blocks) - 1
    for i, (n_in, width) in enumerate(zip(inputs, arch.widths)):
        spec[f"layer.{i}.weight"] = (np.dtype(np.uint64), (width, words_for(n_in)))
        if i < last:
            spec[f"layer.{i}.threshold"] = (np.dtype(np.int32), (width,))
            spec[f"layer.{i}.flip"] = (np.dtype(np.uint8), (width,))
        else:
            spec[f"layer.{i}.scale"] = (np.dtype(np.float32), (width,))
            spec[f"layer.{i}.shift"] = (np.dtype(np.float32), (width,))
    width = arch.last_width
    if arch.shortcut is not None:
        kind = arch.shortcut.kind
        if kind == "F":
            spec["shortcut.weight"] = (np.dtype(np.float32), (width, n_inputs))
        elif kind == "Q":
            spec["shortcut.weight"] = (np.dtype(np.int8), (width, n_inputs))
            spec["shortcut.scale"] = (np.dtype(np.float32), (width,))
        else:
            pooled = n_inputs // arch.pool_size
            if pooled < 1:
                raise ArchError(f"pool size {arch.pool_size} is larger than the {n_inputs} inputs")
            spec["shortcut.weight"] = (np.dtype(np.float32), (width, pooled))
        spec["shortcut.bias"] = (np.dtype(np.float32), (width,))
    spec["output.weight"] = (np.dtype(np.float32), (n_outputs, width))
    spec["output.bias"] = (np.dtype(np.float32), (n_outputs,))
    return spec


def validate_tensors(model: PackedModel, source: Optional[str] = None) -> None:
    """Check every tensor of ``model`` against its architecture; raise :class:`ModelFormatError`."""
    if model.output_activation not in OUTPUT_ACTIVATIONS:
        raise ModelFormatError("output.activation", f"must be one of {OUTPUT_ACTIVATIONS}", source)
    if model.output_activation == "sigmoid" and len(model.labels) != 2:
        raise ModelFormatError("output.labels", "a sigmoid output needs exactly 2 labels", source)
    if len(model.labels) < 1 or len(model.labels) > 100000 or not all(isinstance(x, str) and x for x in model.labels):
        raise ModelFormatError("output.labels", "labels must be non-empty strings", source)
    try:
        spec = expected_tensors(model.arch, model.n_inputs, model.n_outputs)
    except ArchError as exc:
        raise ModelFormatError("arch", str(exc), source) from None
    missing = sorted(set(spec) - set(model.tensors))
    if missing:
        raise ModelFormatError(missing[0], "tensor is missing", source)
    unknown = sorted(set(model.tensors) - set(spec))
    if unknown:
        raise ModelFormatError(unknown[0], "unknown tensor (not part of this architecture)", source)
    for name, (dtype, shape) in spec.items():
        arr = model.tensors[name]
        if not isinstance(arr, np.ndarray):
            raise ModelFormatError(name, f"expected an array, got {type(arr).__name__}", source)
        if arr.dtype != dtype:
            raise ModelFormatError(name, f"dtype {arr.dtype} where {dtype} is required", source)
        if tuple(arr.shape) != shape:
            raise ModelFormatError(name, f"shape {tuple(arr.shape)} where {shape} is required", source)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ModelFormatError(name, "contains NaN or infinite values", source)
    for i, n_in in enumerate(model.layer_inputs()):
        if not padding_is_zero(model.tensors[f"layer.{i}.weight"], n_in):
            raise ModelFormatError(f"layer.{i}.weight", "padding bits past the row length must be 0", source)
        flip = model.tensors.get(f"layer.{i}.flip")
        if flip is not None and np.any(flip > 1):
            raise ModelFormatError(f"layer.{i}.flip", "values must be 0 or 1", source)
    if model.arch.input_mode == "planes" and model.input_spec.kind == "text":
        raise ModelFormatError("arch.input_mode", "the planes input mode takes dense 8-bit inputs, not multi-hot "
                               "text (whose 0/1 values have no upper bits)", source)
    if model.input_spec.kind == "text":
        if model.vocab is None:
            raise ModelFormatError("input.vocab", "a text model must carry its vocabulary", source)
        if len(model.vocab) != model.input_spec.size:
            raise ModelFormatError("input.vocab", f"{len(model.vocab)} words for {model.input_spec.size} inputs",
                                   source)
        if len(set(model.vocab)) != len(model.vocab) or not all(model.vocab) \
                or any("\n" in w for w in model.vocab):
            raise ModelFormatError("input.vocab", "words must be unique, non-empty and without newlines", source)
    elif model.vocab is not None:
        raise ModelFormatError("input.vocab", "only text models carry a vocabulary", source)


def _checksum(meta: str, data: bytes) -> str:
    """sha256 over the metadata JSON string and the tensor data region of the file."""
    header_len = int.from_bytes(data[:8], "little")
    h = hashlib.sha256(meta.encode("utf-8"))
    h.update(memoryview(data)[8 + header_len:])
    return h.hexdigest()


def _inflate_bounded(blob: bytes, limit: int, source: Optional[str]) -> bytes:
    """zlib-decompress at most ``limit`` bytes: a small blob cannot expand into a memory bomb."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, limit)
    except zlib.error as exc:
        raise ModelFormatError("input.vocab", f"is not a valid zlib stream ({exc})", source) from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ModelFormatError("input.vocab", f"decompresses to more than {limit} bytes or is truncated", source)
    return raw


def _read_metadata(data: bytes, source: Optional[str]) -> dict:
    if len(data) < 8:
        raise ModelFormatError("header", f"file is {len(data)} bytes, too short for a safetensors header", source)
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ModelFormatError("header", f"declares {header_len} header bytes but the file has {len(data) - 8}",
                               source)
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError("header", f"not valid JSON ({exc})", source) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise ModelFormatError("metadata", f"no '{METADATA_KEY}' metadata: not an edge-rbmlp model", source)
    raw = meta[METADATA_KEY]
    if not isinstance(raw, str) or len(raw) > MAX_METADATA_BYTES:
        raise ModelFormatError("metadata", "must be a JSON string of at most 1 MiB", source)
    if meta.get(CHECKSUM_KEY) != _checksum(raw, data):
        raise ModelFormatError("checksum", "sha256 of the metadata and tensor data does not match: the file is "
                               "corrupt or was modified", source)
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ModelFormatError("metadata", f"not valid JSON ({exc})", source) from None
    if not isinstance(parsed, dict):
        raise ModelFormatError("metadata", "must be a JSON object", source)
    return parsed


def _parse(data: bytes, source: Optional[str]) -> PackedModel:
    if len(data) > MAX_FILE_BYTES:
        raise ModelFormatError("file", f"{len(data)} bytes is larger than the {MAX_FILE_BYTES} byte limit", source)
    meta = _read_metadata(data, source)
    if meta.get("format") != FORMAT_NAME:
        raise ModelFormatError("format", f"expected {FORMAT_NAME!r}, got {meta.get('format')!r}", source)
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise ModelFormatError("format_version", f"version {version!r} is not supported (this reader knows "
                               f"{', '.join(map(str, SUPPORTED_VERSIONS))})", source)
    arch_meta = meta.get("arch")
    if version == 1 and isinstance(arch_meta, dict) and ("input_bits" in arch_meta
                                                        or arch_meta.get("input_mode") == "planes"):
        raise ModelFormatError("arch", "the planes input mode (input_bits) needs format version 2", source)
    try:
        arch = Architecture.from_dict(arch_meta)
    except (ArchError, TypeError) as exc:
        raise ModelFormatError("arch", str(exc), source) from None
    try:
        input_spec = InputSpec.from_dict(meta.get("input"))
    except InputSpecError as exc:
        raise ModelFormatError("input", str(exc), source) from None
    output = meta.get("output")
    if not isinstance(output, dict):
        raise ModelFormatError("output", "must be an object with 'activation' and 'labels'", source)
    labels = output.get("labels")
    if not isinstance(labels, list):
        raise ModelFormatError("output.labels", "must be a list of strings", source)
    activation = output.get("activation")
    for key in ("accuracy", "provenance"):
        if meta.get(key) is not None and not isinstance(meta.get(key), dict):
            raise ModelFormatError(key, "must be an object or null", source)
    for key in ("name", "description"):
        if meta.get(key) is not None and not isinstance(meta.get(key), str):
            raise ModelFormatError(key, "must be a string or null", source)

    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as exc:
        raise ModelFormatError("tensors", f"the safetensors container is corrupt ({exc})", source) from None
    vocab = None
    vocab_tensors = [name for name in ("input.vocab", "input.vocab.zlib") if name in tensors]
    if len(vocab_tensors) > 1:
        raise ModelFormatError("input.vocab", "both input.vocab and input.vocab.zlib are present", source)
    if vocab_tensors:
        blob = tensors.pop(vocab_tensors[0])
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ModelFormatError("input.vocab", "must be a 1-D U8 tensor", source)
        raw = blob.tobytes()
        if vocab_tensors[0] == "input.vocab.zlib":
            raw = _inflate_bounded(raw, MAX_VOCAB_BYTES, source)
        try:
            vocab = raw.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise ModelFormatError("input.vocab", "is not valid UTF-8", source) from None
    model = PackedModel(
        arch=arch,
        input_spec=input_spec,
        labels=labels,
        output_activation=activation,
        tensors=tensors,
        vocab=vocab,
        accuracy=meta.get("accuracy"),
        provenance=meta.get("provenance"),
        name=meta.get("name"),
        description=meta.get("description"),
        file_bytes=len(data),
    )
    validate_tensors(model, source)
    # read-only: engines share these arrays and must never write into them
    for arr in model.tensors.values():
        arr.setflags(write=False)
    return model


def read_model_bytes(path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a model file, refusing one larger than ``max_bytes`` before reading it all."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelFormatError("file", f"{size} bytes is larger than the {max_bytes} byte limit", str(path))
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew between stat and read
        raise ModelFormatError("file", f"more than the {max_bytes} byte limit", str(path))
    return data


def load_packed_model(path, max_bytes: int = MAX_FILE_BYTES) -> PackedModel:
    """Read and fully validate a ``.rbm`` file; raises :class:`ModelFormatError` or ``OSError``."""
    return _parse(read_model_bytes(path, max_bytes), str(path))
