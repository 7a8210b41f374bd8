"""The edge-rbmlp command line: info, classify, errors without tracebacks."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_rbmlp.cli import main
from edge_rbmlp.engines.reference import ReferenceEngine
from edge_rbmlp.samples import SAMPLES_DIR


@pytest.fixture
def mnist_path(tmp_path, mnist_like_model):
    mnist_like_model.name = "random-mnist"
    mnist_like_model.provenance = {"command": "random_packed_model"}
    path = tmp_path / "digits.rbm"
    mnist_like_model.save(path)
    return path


@pytest.fixture
def imdb_path(tmp_path, imdb_like_model):
    path = tmp_path / "reviews.rbm"
    imdb_like_model.save(path)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_info_json(mnist_path):
    result = run("info", mnist_path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["arch"] == "B-D128N,D88N,PN"
    assert info["file_bytes"] == mnist_path.stat().st_size
    assert info["paper_kib"] == pytest.approx(54.35, abs=0.01)  # pool 8 (the paper prints 50.57 = pool 9)
    assert info["labels"] == [str(i) for i in range(10)]
    assert info["provenance"] == {"command": "random_packed_model"}


def test_info_human(mnist_path):
    result = run("info", mnist_path)
    assert result.exit_code == 0 and "B-D128N,D88N,PN" in result.output


def test_classify_images_json_in_input_order(mnist_path, mnist_like_model):
    images = sorted(SAMPLES_DIR.glob("*.png"))
    result = run("classify", mnist_path, *images, "--json", "--backend", "reference")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["input"] for r in rows] == [str(p) for p in images]
    engine = ReferenceEngine(mnist_like_model)
    from edge_rbmlp.image import load_image

    for row, path in zip(rows, images):
        expected = engine.predict_image(load_image(path.read_bytes()))
        assert row["class_index"] == expected.class_index
        assert row["label"] == expected.label
        assert row["probabilities"] == pytest.approx(expected.probabilities)
        assert row["backend"] == "reference"


def test_classify_text(imdb_path):
    result = run("classify", imdb_path, "--text", "w1 w2 w3", "--text", "w4", "--json", "--backend", "reference")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2 and all(len(r["probabilities"]) == 2 for r in rows)


def test_bad_image_names_the_file(tmp_path, mnist_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = next(SAMPLES_DIR.glob("*.png"))
    result = run("classify", mnist_path, good, bad, "--backend", "reference")
    assert result.exit_code != 0
    assert "broken.png" in result.output and "Traceback" not in result.output


def test_missing_model_and_corrupt_model(tmp_path):
    result = run("info", tmp_path / "nope.rbm")
    assert result.exit_code != 0 and "no model file" in result.output
    corrupt = tmp_path / "corrupt.rbm"
    corrupt.write_bytes(b"\x10\0\0\0\0\0\0\0{}")
    result = run("info", corrupt)
    assert result.exit_code != 0 and "invalid model file" in result.output and "Traceback" not in result.output


def test_unknown_backend_is_an_error(mnist_path):
    result = run("classify", mnist_path, next(SAMPLES_DIR.glob("*.png")), "--backend", "gpu")
    assert result.exit_code != 0 and "unknown backend" in result.output


def test_text_on_image_model_is_an_error(mnist_path):
    result = run("classify", mnist_path, "--text", "hello", "--backend", "reference")
    assert result.exit_code == 1 and "takes image input, not text" in result.output


def test_usage_errors(mnist_path):
    assert run("classify", mnist_path).exit_code != 0
