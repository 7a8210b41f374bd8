"""`edge-rbmlp eval`: accuracy from the local data cache, without TensorFlow."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_rbmlp.cli import main
from edge_rbmlp.datasets import DatasetMissing, load_mnist
from edge_rbmlp.engines.reference import ReferenceEngine


def _mnist_available():
    try:
        load_mnist("test")
        return True
    except DatasetMissing:
        return False


@pytest.fixture
def model_path(tmp_path, mnist_like_model):
    mnist_like_model.accuracy = {"dataset": "mnist"}
    path = tmp_path / "m.rbm"
    mnist_like_model.save(path)
    return path


@pytest.mark.skipif(not _mnist_available(), reason="MNIST is not in the data cache (make data fetches it)")
def test_eval_counts_what_the_engine_predicts(model_path, mnist_like_model):
    result = CliRunner().invoke(main, ["eval", str(model_path), "--backend", "reference", "--limit", "300",
                                       "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n"] == 300 and data["backend"] == "reference" and data["dataset"] == "mnist"
    images, labels = load_mnist("test")
    idx = np.linspace(0, len(labels) - 1, 300).round().astype(int)
    predicted = ReferenceEngine(mnist_like_model).predict_class(images[idx].reshape(300, -1))
    assert data["correct"] == int((predicted == labels[idx]).sum())
    assert data["accuracy"] == pytest.approx(data["correct"] / 300)


def test_eval_without_data_says_how_to_fetch(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_RBMLP_DATA", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["eval", str(model_path), "--backend", "reference"])
    assert result.exit_code == 1
    assert "python -m train data fetch" in result.output


def test_eval_needs_a_dataset_name(tmp_path, mnist_like_model):
    path = tmp_path / "anon.rbm"
    mnist_like_model.save(path)
    result = CliRunner().invoke(main, ["eval", str(path), "--backend", "reference"])
    assert result.exit_code == 1 and "data set" in result.output
