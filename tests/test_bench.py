"""edge-rbmlp bench: rows, fields, strict vs default backend lists (short runs; numbers are not checked)."""

import json

import pytest
from click.testing import CliRunner

from edge_rbmlp.arch import parse
from edge_rbmlp.bench import run
from edge_rbmlp.cli import main
from edge_rbmlp.engines.base import BackendUnavailable
from edge_rbmlp.random_model import random_packed_model

FIELDS = {"backend", "variant", "batch", "p50_us", "p99_us", "throughput_per_s", "peak_rss_bytes", "load_ms",
          "file_bytes", "runtime", "version"}


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.rbm"
    random_packed_model(parse("B-D128N,D88N,PN"), 784, 10, seed=1, input_kind="image").save(path)
    return path


def test_run_native_and_reference(model_path):
    result = run(str(model_path), ["native", "reference"], batch=16, rounds=2, calls=10, measure_memory=True,
                 e2e=False)
    rows = result["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {("native", 1), ("native", 16), ("reference", 1),
                                                            ("reference", 16)}
    for r in rows:
        assert FIELDS <= set(r)
        assert r["p50_us"] > 0 and r["throughput_per_s"] > 0 and r["file_bytes"] == model_path.stat().st_size
        assert r["peak_rss_bytes"] > 0 and r["load_ms"] >= 0, r
    assert result["rows"][0]["runtime"].startswith("edge-rbmlp native (")


def test_missing_sibling_is_an_error_when_named(model_path):
    with pytest.raises(BackendUnavailable, match="sibling|pip install"):
        run(str(model_path), ["native", "tflite"], batch=4, rounds=1, calls=2, measure_memory=False)
    result = run(str(model_path), ["native", "tflite"], batch=4, rounds=1, calls=2, measure_memory=False,
                 strict=False)
    assert "tflite" in result["skipped"]


def test_cli_json(model_path):
    res = CliRunner().invoke(main, ["bench", str(model_path), "--backends", "native", "--batch", "8", "--rounds",
                                    "2", "--calls", "10", "--no-memory", "--json"])
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.output[res.output.index("["):]) if r["variant"] == "binary"]
    assert [r["batch"] for r in rows] == [1, 8]
    assert FIELDS <= set(rows[0])
    res = CliRunner().invoke(main, ["bench", str(model_path), "--backends", "native,gpu"])
    assert res.exit_code != 0 and "unknown backend" in res.output


def test_sibling_paths_name_every_comparison_file(tmp_path):
    from edge_rbmlp.models import sibling_path

    model = tmp_path / "m.rbm"
    model.write_bytes(b"")
    assert all(sibling_path(model, v) is None for v in ("float", "int8", "lce", "F-float"))
    for name in ("m.tflite", "m_int8.tflite", "m_lce.tflite", "m_F.tflite"):
        (tmp_path / name).write_bytes(b"")
    assert [sibling_path(model, v).name for v in ("float", "int8", "lce", "F-float")] == [
        "m.tflite", "m_int8.tflite", "m_lce.tflite", "m_F.tflite"]


def test_end_to_end_rows_report_the_split_and_the_accuracy():
    """PNG bytes, a 640x480 frame and a JPEG -> Prediction on the bundled model, beside the numpy
    yardstick and a Pi tutorial's TFLite int8 path on the same inputs."""
    result = run("mnist", ["native", "tflite"], batch=4, rounds=1, calls=4, measure_memory=False)
    rows = {r["variant"]: r for r in result["rows"] if r["batch"] == 1}
    for kind in ("png", "frame", "jpeg"):
        r = rows[f"e2e-{kind}"]
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["preprocess_us"] > 0 and r["inference_us"] > 0 and r["total_us"] >= r["preprocess_us"]
    assert rows["e2e-frame"]["decode_us"] == 0 and rows["e2e-png"]["decode_us"] > 0
    assert "astype-frame" in rows
    assert {"tutorial-png", "tutorial-frame"} <= set(rows)
    # the camera frames are real test digits: our pipeline reads them, a plain resize does not
    assert rows["e2e-frame"]["accuracy"] > rows["tutorial-frame"]["accuracy"]


def test_no_e2e_leaves_only_the_engine_rows(model_path):
    result = run(str(model_path), ["native"], batch=4, rounds=1, calls=2, measure_memory=False, e2e=False)
    assert {r["variant"] for r in result["rows"]} == {"binary"}


def test_tflite_runtime_prefers_litert_then_tflite_runtime_then_names_what_to_install(monkeypatch):
    import sys
    import types

    from edge_rbmlp.engines.tflite import tflite_runtime

    # None in sys.modules makes an import fail, as if the package were not installed.
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = object
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    interpreter, name, _version = tflite_runtime()
    assert (interpreter, name) == (object, "tflite-runtime")

    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(BackendUnavailable, match="pip install ai-edge-litert"):
        tflite_runtime()
