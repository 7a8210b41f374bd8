"""Readers of the real data sets in the local data cache (numpy + stdlib only).

The workstation fetches the data once (``python -m train data fetch`` or
``make data``) into :func:`data_dir`; the device evaluates packed models from
the same cache without TensorFlow. Layout of the cache::

    DATA/mnist/train-images-idx3-ubyte   (+ train-labels, t10k-images, t10k-labels)
    DATA/imdb/reviews.json               (list of {"t": text, "s": 0|1})
    DATA/cifar10/cifar-10-batches-py/    (data_batch_1..5, test_batch; put there by hand)
    DATA/<name>/VERIFIED.json            (npm package, sha512 integrity, sha256 of every file)

IMDB keeps the original train/test split, which the npm package stores by
position: ``[0, 12500)`` test/negative, ``[12500, 25000)`` train/negative,
``[25000, 37500)`` test/positive, ``[37500, 50000)`` train/positive.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

DATA_ENV = "EDGE_RBMLP_DATA"
FETCH_HINT = "run `python -m train data fetch` (or `make data`) in an edge-rbmlp checkout"
DATASETS = ("mnist", "imdb", "cifar10")
SPLITS = ("train", "test")

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_LABELS = [str(d) for d in range(10)]
IMDB_LABELS = ["negative", "positive"]
IMDB_FILE = "reviews.json"
# position ranges of the npm package's reviews.json (see the module docstring)
IMDB_RANGES = {"test": ((0, 12500), (25000, 37500)), "train": ((12500, 25000), (37500, 50000))}
IMDB_TOTAL = 50000
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DatasetMissing(FileNotFoundError):
    """A data set is not in the cache; the message says how to get it."""


class DatasetError(ValueError):
    """A data file exists but is malformed."""


def data_dir() -> Path:
    """``$EDGE_RBMLP_DATA``, else ``$XDG_CACHE_HOME/edge-rbmlp/data``, else ``~/.cache/edge-rbmlp/data``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edge-rbmlp" / "data"


def dataset_dir(name: str, root: Optional[os.PathLike] = None) -> Path:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return Path(root) if root is not None else data_dir() / name


def _missing(name: str, path: Path) -> DatasetMissing:
    if name == "cifar10":
        return DatasetMissing(
            f"CIFAR-10 is not in the data cache ({path} not found). It is in no package registry this "
            f"project can reach: download the python version of CIFAR-10 (cifar-10-python.tar.gz) yourself "
            f"and unpack it so that {path / CIFAR10_DIR}/data_batch_1 ... test_batch exist "
            f"(`python -m train data fetch` prints this path too)")
    return DatasetMissing(f"the {name} data set is not in the data cache ({path} not found): {FETCH_HINT}. "
                          f"Set {DATA_ENV} to use another cache directory.")


def verified_record(name: str, root: Optional[os.PathLike] = None) -> Optional[dict]:
    """The ``VERIFIED.json`` the fetcher wrote after checking the package's checksums (or None)."""
    path = dataset_dir(name, root) / "VERIFIED.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# -- MNIST -------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: os.PathLike) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic ``00 00 type ndim``, big-endian dims, data."""
    data = Path(path).read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX data type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = int(np.prod(dims, dtype=np.int64)) if ndim else 1
    if len(data) != header + count * dtype.itemsize:
        raise DatasetError(f"{path}: expected {header + count * dtype.itemsize} bytes for shape {dims}, "
                           f"found {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(split: str = "train", root: Optional[os.PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 28, 28], labels uint8 [n])`` of the original MNIST split."""
    _check_split(split)
    folder = dataset_dir("mnist", root)
    image_file, label_file = (folder / f for f in MNIST_FILES[split])
    if not image_file.exists() or not label_file.exists():
        raise _missing("mnist", image_file if not image_file.exists() else label_file)
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


# -- IMDB --------------------------------------------------------------------
def load_imdb_reviews(split: str = "train", root: Optional[os.PathLike] = None) -> Tuple[List[str], np.ndarray]:
    """``(texts, labels uint8 [n])`` of the original IMDB split (25,000 each), in package order
    (all negatives, then all positives)."""
    _check_split(split)
    path = dataset_dir("imdb", root) / IMDB_FILE
    if not path.exists():
        raise _missing("imdb", path)
    with open(path, "rb") as fh:
        reviews = json.loads(fh.read().decode("utf-8"))
    if not isinstance(reviews, list) or len(reviews) != IMDB_TOTAL:
        raise DatasetError(f"{path}: expected a list of {IMDB_TOTAL} reviews")
    texts: List[str] = []
    labels: List[int] = []
    for start, stop in IMDB_RANGES[split]:
        for item in reviews[start:stop]:
            texts.append(item["t"])
            labels.append(int(item["s"]))
    labels_arr = np.asarray(labels, dtype=np.uint8)
    expected = np.repeat(np.array([0, 1], np.uint8), 12500)
    if not np.array_equal(labels_arr, expected):
        raise DatasetError(f"{path}: the labels do not follow the package's known split layout")
    return texts, labels_arr


# -- CIFAR-10 ----------------------------------------------------------------
def read_cifar_batch(path: os.PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` pickle -> ``(images uint8 [n, 32, 32, 3], labels uint8 [n])``."""
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: not a CIFAR batch (expected a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{path}: a CIFAR batch needs 'data' and 'labels'")
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: data {data.shape} / labels {labels.shape} are not CIFAR-10 shaped")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def load_cifar10(split: str = "train", root: Optional[os.PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 32, 32, 3], labels uint8 [n])`` from ``cifar10/cifar-10-batches-py``."""
    _check_split(split)
    folder = dataset_dir("cifar10", root) / CIFAR10_DIR
    names = CIFAR10_TRAIN if split == "train" else CIFAR10_TEST
    paths = [folder / n for n in names]
    for p in paths:
        if not p.exists():
            raise _missing("cifar10", p.parent.parent)
    parts = [read_cifar_batch(p) for p in paths]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar10_to_grey(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of ``uint8 [n, 32, 32, 3]`` -> ``uint8 [n, 32, 32]`` (rounded)."""
    rgb = np.asarray(images, np.float32)
    grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


# -- evaluation inputs for a packed model ------------------------------------
def dataset_of_model(model) -> Optional[str]:
    """The data set a packed model was trained on (from its metadata), or None."""
    acc = getattr(model, "accuracy", None) or {}
    name = acc.get("dataset") if isinstance(acc, dict) else None
    if name in DATASETS:
        return name
    if getattr(model, "name", None) in DATASETS:
        return model.name
    return None


def model_inputs(model, split: str = "test", limit: Optional[int] = None,
                 dataset: Optional[str] = None, root: Optional[os.PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The model's uint8 inputs ``q [n, size]`` and labels ``[n]`` for a split of its data set.

    Images are flattened pixels (CIFAR-10 as flattened ``32x32x3``, or grey when the
    model takes 1024 inputs); text is encoded with the model's own vocabulary.
    """
    name = dataset or dataset_of_model(model)
    if name is None:
        raise ValueError("cannot tell which data set this model belongs to (no accuracy.dataset in its "
                         "metadata): name one")
    if name == "mnist":
        images, labels = load_mnist(split, root)
        q = images.reshape(len(images), -1)
    elif name == "cifar10":
        images, labels = load_cifar10(split, root)
        if model.input_spec.size == 32 * 32:
            images = cifar10_to_grey(images)
        q = images.reshape(len(images), -1)
    else:
        from .text import TextEncoder

        texts, labels = load_imdb_reviews(split, root)
        if limit is not None:
            texts, labels = even_subset(texts, labels, limit)
            limit = None
        q = TextEncoder.for_model(model).multi_hot_batch(texts)
    if limit is not None:
        q, labels = even_subset(q, labels, limit)
    if q.shape[1] != model.input_spec.size:
        raise ValueError(f"{name} gives {q.shape[1]} inputs, the model takes {model.input_spec.size}")
    return np.ascontiguousarray(q, dtype=np.uint8), np.asarray(labels)


def even_subset(x, labels, limit: int):
    """The first ``limit`` samples of an evenly spaced selection (keeps both IMDB classes)."""
    n = len(labels)
    if limit >= n:
        return x, labels
    idx = np.linspace(0, n - 1, limit).round().astype(np.int64)
    if isinstance(x, list):
        return [x[i] for i in idx], labels[idx]
    return x[idx], labels[idx]
