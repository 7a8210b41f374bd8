"""Helpers of the device-app tests (test_server*, test_web*, test_camera*, test_systemd*):
small models on disk, an app, and a real HTTP server (granian or waitress) on a loopback port."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_rbmlp.arch import parse
from edge_rbmlp.random_model import random_packed_model
from edge_rbmlp.server import ServerConfig, create_app

MNIST_ARCH = "B-D128N,D88N,PN"
IMDB_ARCH = "B-D32N,D16N,D8N,Q"


def write_models(directory: Path) -> dict:
    """Random models of the paper's shapes as ``mnist.rbm`` and ``imdb.rbm`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"mnist": directory / "mnist.rbm", "imdb": directory / "imdb.rbm"}
    random_packed_model(parse(MNIST_ARCH), 784, 10, seed=0, input_kind="image").save(paths["mnist"])
    random_packed_model(parse(IMDB_ARCH), 10000, 1, seed=0, input_kind="text").save(paths["imdb"])
    return paths


def make_config(paths: dict, **kw) -> ServerConfig:
    limits = kw.pop("limits", None)
    config = ServerConfig(models=[str(p) for p in paths.values()], backend=kw.pop("backend", "reference"), **kw)
    if limits:
        config = replace(config, limits=replace(config.limits, **limits))
    return config


def png_bytes(arr: np.ndarray, mode: str = None, fmt: str = "PNG") -> bytes:
    from PIL import Image

    img = Image.fromarray(np.asarray(arr).astype(np.uint8), mode=mode) if mode else Image.fromarray(
        np.asarray(arr).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def drawn_seven(size: int = 120) -> np.ndarray:
    """A dark 7 drawn on white paper (grey uint8)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(img)
    s = size / 120
    d.line([(30 * s, 25 * s), (88 * s, 25 * s), (55 * s, 100 * s)], fill=0, width=int(9 * s))
    return np.asarray(img)


@contextmanager
def running_server(config: ServerConfig, app=None, http_server: str = None):
    """A real HTTP server (``config.http_server``, or ``http_server``: granian or waitress) for
    ``config`` on 127.0.0.1 and a free port; yields (url, app)."""
    from edge_rbmlp.server.serve import build_server

    config = replace(config, host="127.0.0.1", port=0)
    app, server = build_server(config, app, http_server=http_server)
    thread = threading.Thread(target=server.run, daemon=True)  # stopped from the test's thread
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", app
    finally:
        server.stop()
        thread.join(timeout=30)
        server.close()


def http(method: str, url: str, body: bytes = None, headers: dict = None, timeout: float = 30):
    """(status, headers, body) of one request, without raising on 4xx/5xx."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def bundled_or_none(name: str):
    """The bundled model ``name`` (a Path), or None. ``EDGE_RBMLP_TEST_MODEL_<NAME>`` (a .rbm path)
    stands in for it, to check the real-model tests with a freshly trained model before bundling."""
    import os

    from edge_rbmlp.models import bundled_models

    override = os.environ.get(f"EDGE_RBMLP_TEST_MODEL_{name.upper()}")
    if override:
        return Path(override)
    return bundled_models().get(name)


def mnist_test_digits(limit: int = 500):
    """(images uint8 [n, 28, 28], labels) from the data cache, else the bundled samples, else None."""
    try:
        from edge_rbmlp.datasets import load_mnist

        x, y = load_mnist("test")
        return x[:limit], y[:limit]
    except (OSError, ValueError):
        pass
    from PIL import Image

    from edge_rbmlp.samples import SAMPLES_DIR

    items = sorted(SAMPLES_DIR.glob("mnist_test_*_label_*.png"))
    if not items:
        return None
    xs = [np.asarray(Image.open(p).convert("L")) for p in items]
    ys = [int(p.stem.rsplit("_", 1)[1]) for p in items]
    keep = [i for i, x in enumerate(xs) if x.shape == (28, 28)]
    return np.stack([xs[i] for i in keep]), np.array([ys[i] for i in keep])


def synthetic_frame(digit: np.ndarray, rng: np.random.Generator, size=(240, 320), dark_background: bool = False):
    """A camera-like RGB frame of a 28x28 MNIST digit: written on a larger sheet at a random scale and
    position, unevenly lit (a gradient and a vignette), tinted, slightly blurred and noisy.

    The digit's MNIST pixels are the ink's coverage; ink is dark on light paper (or chalk on a dark
    board when ``dark_background``). Returns uint8 ``[h, w, 3]``.
    """
    from PIL import Image

    from meterkit import photograph

    h, w = size
    side = int(rng.uniform(0.25, 0.85) * min(h, w))  # the 28x28 cell's side in the frame
    cell = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR), np.float32) / 255.0
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    alpha = np.zeros((h, w), np.float32)
    alpha[top: top + side, left: left + side] = cell
    if dark_background:
        return photograph(alpha, rng, gradient=0.5, paper=(0.1, 0.3), ink=(0.75, 0.95))
    return photograph(alpha, rng, gradient=0.5, paper=(0.65, 0.95), ink=(0.05, 0.3))
