"""The bundled default models against their own report.json, on the FULL real test sets.

No TensorFlow: the .rbm runs on the reference engine, the TFLite files on ai-edge-litert when
it is installed. Needs the data cache (`python -m train data fetch`)."""

import json
from pathlib import Path

import numpy as np
import pytest

import edge_rbmlp
from edge_rbmlp import datasets
from edge_rbmlp.model_file import load_packed_model
from edge_rbmlp.engines.reference import ReferenceEngine

MODELS = Path(edge_rbmlp.__file__).parent / "models"
TARGETS = {"mnist": (0.965, 64 * 1024), "imdb": (0.87, 160 * 1024)}


def _load(name):
    path = MODELS / f"{name}.rbm"
    if not path.exists():
        pytest.skip(f"{path} is not bundled yet (make models)")
    if datasets.verified_record(name) is None:
        pytest.skip(f"{name} is not in the data cache: run `python -m train data fetch`")
    report = json.loads((MODELS / f"{name}.report.json").read_text())
    return path, load_packed_model(path), report


@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_bundled_model_meets_its_targets_on_the_full_test_set(name):
    path, model, report = _load(name)
    min_acc, max_bytes = TARGETS[name]
    assert model.name == name
    assert path.stat().st_size <= max_bytes, path.stat().st_size
    q, y = datasets.model_inputs(model, "test")
    assert len(y) == (10000 if name == "mnist" else 25000)
    pred = ReferenceEngine(model).predict_class(q)
    acc = float(np.mean(pred == y))
    assert acc >= min_acc, acc
    # what the file and report.json claim is what we measure
    assert acc == pytest.approx(model.accuracy["accuracy"], abs=1e-9)
    assert acc == pytest.approx(report["accuracy"]["rbm"]["accuracy"], abs=1e-9)
    assert model.accuracy["n"] == len(y) and model.accuracy["split"] == "test"
    assert model.accuracy["agreement_with_keras"] >= 0.999
    for fmt in ("rbm", "tflite", "lce"):
        assert report["accuracy"][fmt]["agreement_with_keras"] >= 0.999, fmt
    prov = model.provenance
    assert prov["command"].startswith(f"python -m train fit --dataset {name} ")
    assert prov["data"]["sha512"].startswith("sha512-") and prov["seed"] == report["provenance"]["seed"]


@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_bundled_tflite_files_match_their_report(name):
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (the tflite extra)")
    path, model, report = _load(name)
    q, y = datasets.model_inputs(model, "test", limit=2000)
    x = model.input_spec.dequantize(q)
    for fname, fmt in ((f"{name}.tflite", "tflite"), (f"{name}_int8.tflite", "tflite_int8")):
        interp = litert.Interpreter(model_path=str(MODELS / fname))
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], [len(x), x.shape[1]])
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x.astype(np.float32))
        interp.invoke()
        out = interp.get_tensor(interp.get_output_details()[0]["index"])
        pred = (out[:, 0] > 0.5).astype(int) if model.output_activation == "sigmoid" else out.argmax(1)
        acc = float(np.mean(pred == y))
        # a 2,000-sample slice: within 2.5 points of the full-test-set number in the report
        assert abs(acc - report["accuracy"][fmt]["accuracy"]) < 0.025, (fname, acc)
