"""The packed model file: round trips, and every kind of bad file rejected with one clear error."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_rbmlp.arch import parse
from edge_rbmlp.inputs import InputSpec
from edge_rbmlp.model_file import (CHECKSUM_KEY, FORMAT_VERSION, METADATA_KEY, ModelFormatError, PackedModel, _checksum,
                                   load_packed_model)
from edge_rbmlp.random_model import random_packed_model
from edge_rbmlp.engines.reference import ReferenceEngine

VARIANTS = [
    ("B-D128N,D88N,PN", 784, 10, "image", "sign"),
    ("B-D128N,D88N,D88N,PN,D", 784, 10, "image", "int8"),
    ("B-D32N,D16N,D8N,Q", 10000, 1, "text", "sign"),
    ("B-32,32,Q", 300, 1, "text", "int8"),
    ("B-65,F", 100, 3, "vector", "sign"),
    ("B-1", 5, 2, "vector", "int8"),
    ("B-63N,64N,65N,130N,FN,D", 200, 7, "vector", "sign"),
    ("B-D256N,D64N,PN", 784, 10, "image", "planes"),
    ("B-63N,65,Q", 100, 3, "vector", "planes"),
]


def _rebuild(data: bytes, meta_edit=None, tensor_edit=None) -> bytes:
    """Re-serialize a file after editing its metadata and/or tensors, with a valid checksum (a lying file)."""
    from safetensors.numpy import load, save

    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    tensors = load(data)
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    raw = json.dumps(meta)
    draft = save(tensors, metadata={METADATA_KEY: raw, CHECKSUM_KEY: "0" * 64})
    return save(tensors, metadata={METADATA_KEY: raw, CHECKSUM_KEY: _checksum(raw, draft)})


@pytest.mark.parametrize("variant, n_in, n_out, kind, mode", VARIANTS)
def test_written_and_read_back_predicts_identically(tmp_path, rng, variant, n_in, n_out, kind, mode):
    model = random_packed_model(parse(variant, input_mode=mode), n_in, n_out, seed=3, input_kind=kind)
    model.accuracy = {"dataset": "synthetic", "accuracy": 0.5}
    model.provenance = {"command": "test", "date": "2026-11-25"}
    path = tmp_path / "m.rbm"
    size = model.save(path)
    assert size == path.stat().st_size
    loaded = load_packed_model(path)
    assert loaded.arch == model.arch and loaded.input_spec == model.input_spec
    assert loaded.labels == model.labels and loaded.vocab == model.vocab
    assert loaded.accuracy == model.accuracy and loaded.provenance == model.provenance
    assert loaded.file_bytes == size
    for name, arr in model.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], arr)
        assert loaded.tensors[name].dtype == arr.dtype
    q = rng.integers(0, 256, (20, n_in)).astype(np.uint8)
    np.testing.assert_array_equal(ReferenceEngine(loaded).logits(q), ReferenceEngine(model).logits(q))


def test_loaded_tensors_are_read_only(tmp_path, mnist_like_model):
    mnist_like_model.save(tmp_path / "m.rbm")
    loaded = load_packed_model(tmp_path / "m.rbm")
    with pytest.raises(ValueError):
        loaded.tensors["output.bias"][0] = 1.0


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, mnist_like_model):
    path = tmp_path / "m.rbm"
    mnist_like_model.save(path)
    mnist_like_model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.rbm"]


def test_every_truncation_is_rejected(mnist_like_model):
    data = mnist_like_model.to_bytes()
    cuts = sorted(set([0, 1, 7, 8, 9, 100, len(data) - 1]) | set(range(0, len(data), 997)))
    for cut in cuts:
        with pytest.raises(ModelFormatError):
            PackedModel.from_bytes(data[:cut])


def test_random_mutations_are_rejected_or_harmless():
    """Flip, overwrite, insert and delete bytes at random, many times: nothing but ModelFormatError escapes."""
    model = random_packed_model(parse("B-D32N,D16N,D8N,Q"), 300, 1, seed=5, input_kind="text")
    data = model.to_bytes()
    rng = np.random.default_rng(99)
    rejected = 0
    trials = 1500
    for _ in range(trials):
        buf = bytearray(data)
        kind = rng.integers(0, 4)
        pos = int(rng.integers(0, len(buf)))
        if kind == 0:
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            buf[pos] = int(rng.integers(0, 256))
        elif kind == 2:
            buf[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        else:
            del buf[pos:pos + int(rng.integers(1, 9))]
        try:
            loaded = PackedModel.from_bytes(bytes(buf))
        except ModelFormatError as exc:
            assert "invalid model file" in str(exc)
            rejected += 1
            continue
        # the only acceptable survivor is a mutation that changed nothing (e.g. a byte set to its own value)
        assert all(np.array_equal(loaded.tensors[k], v) for k, v in model.tensors.items())
        assert loaded.metadata() == model.metadata()
    assert rejected >= trials * 0.95


def test_data_corruption_is_caught_by_the_checksum(mnist_like_model):
    data = bytearray(mnist_like_model.to_bytes())
    data[-5] ^= 0x10  # inside the last tensor's data
    with pytest.raises(ModelFormatError) as info:
        PackedModel.from_bytes(bytes(data))
    assert info.value.field == "checksum"


@pytest.mark.parametrize(
    "field, meta_edit, tensor_edit",
    [
        ("format", lambda m: m.update(format="other"), None),
        ("format_version", lambda m: m.update(format_version=3), None),
        ("arch", lambda m: m["arch"].update(notation="B-128,,88"), None),
        ("arch", lambda m: m["arch"].update(notation="F-128,88"), None),
        ("arch", lambda m: m["arch"].update(pool_size="8"), None),
        ("arch", lambda m: m["arch"].update(input_bits=2), None),  # input_bits outside the planes mode
        ("arch", lambda m: m["arch"].update(input_mode="planes", input_bits=0), None),
        ("arch", lambda m: m["arch"].update(input_mode="planes", input_bits=9), None),
        ("arch", lambda m: m["arch"].update(input_mode="planes", input_bits="2"), None),
        ("arch", lambda m: m["arch"].update(input_mode="planes", input_bits=True), None),
        ("arch", lambda m: m["arch"].update(input_mode="bits"), None),
        # a version-1 file cannot hold the planes mode (added by version 2)
        ("arch", lambda m: (m.update(format_version=1), m["arch"].update(input_mode="planes", input_bits=2)), None),
        ("input", lambda m: m["input"].update(size=-1), None),
        ("input", lambda m: m["input"].update(kind="audio"), None),
        ("input", lambda m: m["input"].update(extra=1), None),
        ("output", lambda m: m.update(output=[]), None),
        ("output.labels", lambda m: m["output"].update(labels="0123456789"), None),
        ("output.weight", lambda m: m["output"].update(labels=[str(i) for i in range(11)]), None),
        ("output.labels", lambda m: m["output"].update(labels=[""] * 10), None),
        ("output.activation", lambda m: m["output"].update(activation="relu"), None),
        ("accuracy", lambda m: m.update(accuracy=[0.9]), None),
        ("name", lambda m: m.update(name=5), None),
        ("layer.0.weight", None, lambda t: t.pop("layer.0.weight")),
        ("layer.0.weight", None, lambda t: t.update({"layer.0.weight": t["layer.0.weight"].astype(np.int64)})),
        ("layer.0.weight", None, lambda t: t.update({"layer.0.weight": t["layer.0.weight"][:, :-1].copy()})),
        ("layer.0.weight", None, lambda t: t.update({"layer.0.weight": t["layer.0.weight"] | np.uint64(1 << 63)})),
        ("layer.0.flip", None, lambda t: t.update({"layer.0.flip": t["layer.0.flip"] + np.uint8(2)})),
        ("layer.1.scale", None, lambda t: t["layer.1.scale"].__setitem__(0, np.nan)),
        ("extra.tensor", None, lambda t: t.update({"extra.tensor": np.zeros(3, np.float32)})),
        ("input.vocab", None, lambda t: t.update({"input.vocab.zlib": _vocab_blob(["a", "b"])})),
        ("shortcut.weight", None, lambda t: t.update({"shortcut.weight": np.zeros((88, 10**5), np.float32)})),
    ],
)
def test_lying_files_name_the_field(field, meta_edit, tensor_edit, mnist_like_model):
    data = _rebuild(mnist_like_model.to_bytes(), meta_edit, tensor_edit)
    with pytest.raises(ModelFormatError) as info:
        PackedModel.from_bytes(data)
    assert info.value.field == field, str(info.value)


def _vocab_blob(words, compress=True):
    import zlib

    raw = "\n".join(words).encode("utf-8") if isinstance(words, list) else words
    return np.frombuffer(zlib.compress(raw) if compress else raw, np.uint8).copy()


def test_vocabulary_is_stored_compressed(imdb_like_model):
    from safetensors.numpy import load

    tensors = load(imdb_like_model.to_bytes())
    assert "input.vocab.zlib" in tensors and "input.vocab" not in tensors
    raw_bytes = len("\n".join(imdb_like_model.vocab).encode())
    assert tensors["input.vocab.zlib"].size < raw_bytes / 2


def test_uncompressed_vocabulary_is_read_too(imdb_like_model):
    def plain(t):
        del t["input.vocab.zlib"]
        t["input.vocab"] = _vocab_blob(imdb_like_model.vocab, compress=False)

    loaded = PackedModel.from_bytes(_rebuild(imdb_like_model.to_bytes(), None, plain))
    assert loaded.vocab == imdb_like_model.vocab


@pytest.mark.parametrize("name, edit", [
    ("duplicate words", lambda t: t.update({"input.vocab.zlib": _vocab_blob(["same"] * 10000)})),
    ("not UTF-8", lambda t: t.update({"input.vocab.zlib": _vocab_blob(b"\xff\xfe" * 10)})),
    ("not zlib", lambda t: t.update({"input.vocab.zlib": _vocab_blob(b"plain words", False)})),
    ("truncated zlib", lambda t: t.update({"input.vocab.zlib": t["input.vocab.zlib"][:-10].copy()})),
    ("zlib bomb", lambda t: t.update({"input.vocab.zlib": _vocab_blob(b"a" * (65 * 1024 * 1024))})),
    ("both encodings", lambda t: t.update({"input.vocab": _vocab_blob([f"w{i}" for i in range(10000)], False)})),
    ("missing", lambda t: t.pop("input.vocab.zlib")),
    ("wrong dtype", lambda t: t.update({"input.vocab.zlib": t["input.vocab.zlib"].astype(np.int16)})),
])
def test_text_model_vocabulary_checks(imdb_like_model, name, edit):
    with pytest.raises(ModelFormatError) as info:
        PackedModel.from_bytes(_rebuild(imdb_like_model.to_bytes(), None, edit))
    assert info.value.field == "input.vocab", name


def test_huge_declared_header_is_rejected_without_reading_it():
    data = (10**12).to_bytes(8, "little") + b"{}"
    with pytest.raises(ModelFormatError) as info:
        PackedModel.from_bytes(data)
    assert info.value.field == "header"


def test_not_a_model_at_all(tmp_path):
    path = tmp_path / "x.rbm"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ModelFormatError):
        load_packed_model(path)
    from safetensors.numpy import save

    path.write_bytes(save({"a": np.zeros(3, np.float32)}))
    with pytest.raises(ModelFormatError) as info:
        load_packed_model(path)
    assert info.value.field == "metadata"


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.rbm"
    with open(path, "wb") as fh:
        fh.truncate(2048)
    with pytest.raises(ModelFormatError) as info:
        load_packed_model(path, max_bytes=1024)
    assert info.value.field == "file"


def test_cannot_save_an_inconsistent_model(mnist_like_model):
    mnist_like_model.tensors["output.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ModelFormatError):
        mnist_like_model.to_bytes()


def test_float_baseline_has_no_packed_form():
    from edge_rbmlp.model_file import expected_tensors
    from edge_rbmlp.arch import ArchError

    with pytest.raises(ArchError):
        expected_tensors(parse("F-128,88"), 784, 10)


def test_input_spec_round_trip():
    spec = InputSpec.image(28, 28)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.binarize_threshold == 128 and spec.scale == pytest.approx(1 / 255)


V1_FILE = Path(__file__).parent / "data" / "mnist_format_v1.rbm"


def test_format_version_1_files_still_load():
    """The bundled MNIST model as shipped before format version 2 (int8 input mode), committed as it was."""
    raw = V1_FILE.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert json.loads(header["__metadata__"][METADATA_KEY])["format_version"] == 1
    model = load_packed_model(V1_FILE)
    assert model.arch.input_mode == "int8" and "input_bits" not in model.arch.to_dict()
    assert model.metadata()["format_version"] == FORMAT_VERSION == 2
    q = np.random.default_rng(0).integers(0, 256, (8, 784)).astype(np.uint8)
    logits = ReferenceEngine(model).logits_uint8(q)
    # re-written as version 2, it is the same model
    again = PackedModel.from_bytes(model.to_bytes())
    assert again.arch == model.arch
    np.testing.assert_array_equal(ReferenceEngine(again).logits_uint8(q), logits)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_planes_mode_round_trips_its_bits(tmp_path, bits):
    model = random_packed_model(parse("B-D64N,D32N,PN", input_mode="planes", input_bits=bits), 784, 10, seed=bits,
                                input_kind="image")
    path = tmp_path / "p.rbm"
    model.save(path)
    raw = path.read_bytes()
    meta = json.loads(json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"][METADATA_KEY])
    assert meta["format_version"] == 2
    assert meta["arch"]["input_mode"] == "planes" and meta["arch"]["input_bits"] == bits
    assert load_packed_model(path).arch.input_bits == bits


def test_planes_mode_is_refused_for_text_models():
    model = random_packed_model(parse("B-32,Q", input_mode="planes"), 300, 1, seed=0, input_kind="text")
    with pytest.raises(ModelFormatError) as info:
        model.to_bytes()
    assert info.value.field == "arch.input_mode"
