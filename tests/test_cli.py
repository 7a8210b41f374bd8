"""The edge-rbmlp command line: info, classify, errors without tracebacks."""

import json
from pathlib import Path

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
    assert result.exit_code != 0 and "'gpu' is not one of" in result.output
    assert all(b in result.output for b in ("auto", "reference", "native", "tflite", "lce"))


def test_text_on_image_model_is_an_error(mnist_path):
    result = run("classify", mnist_path, "--text", "hello", "--backend", "reference")
    assert result.exit_code == 1 and "takes image input, not text" in result.output


def test_usage_errors(mnist_path):
    assert run("classify", mnist_path).exit_code != 0


def test_backend_choices_are_the_engines():
    from edge_rbmlp.cli import BACKEND_CHOICES
    from edge_rbmlp.engines import BACKENDS

    assert sorted(BACKEND_CHOICES) == sorted(BACKENDS)
    assert "[auto|reference|native|tflite|lce]" in run("classify", "--help").output.replace("\n", "")


def test_top_level_help_shows_whole_summaries():
    out = " ".join(run("--help").output.split())
    assert "The paper's model size (eq. 4-7) of ARCH, and the bytes of our packed file for it." in out
    assert "Eq. 4-7 against every row of the paper's Tables IV, V and VII, with the explanation that fits." in out


def test_classify_a_directory_keeps_going_past_a_bad_file(tmp_path, mnist_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for p in sorted(SAMPLES_DIR.glob("*.png"))[:2]:
        (d / p.name).write_bytes(p.read_bytes())
    (d / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "notes.txt").write_text("not an image: skipped for an image model")
    result = run("classify", mnist_path, d, "--backend", "reference", "--format", "jsonl")
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [Path(r["input"]).name for r in rows] == sorted([p.name for p in d.glob("*.png")])
    bad = [r for r in rows if "error" in r]
    assert len(bad) == 1 and bad[0]["input"].endswith("b_broken.png")
    assert all(r["label"] is not None for r in rows if "error" not in r)


def test_classify_csv(mnist_path):
    import csv
    import io

    images = sorted(SAMPLES_DIR.glob("*.png"))
    result = run("classify", mnist_path, *images, "--backend", "reference", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["input"] for r in rows] == [str(p) for p in images]
    assert all(0 <= float(r["confidence"]) <= 1 and r["error"] == "" for r in rows)


def test_classify_text_files_and_stdin(imdb_path, tmp_path):
    texts = sorted(SAMPLES_DIR.glob("*.txt"))
    result = run("classify", imdb_path, SAMPLES_DIR, "--backend", "reference", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["input"] for r in rows] == [str(p) for p in texts]
    direct = json.loads(run("classify", imdb_path, "--text", texts[0].read_text(), "--backend", "reference",
                            "--json").output)
    assert rows[0]["probabilities"] == pytest.approx(direct[0]["probabilities"])
    piped = CliRunner().invoke(main, ["classify", str(imdb_path), "-", "--backend", "reference", "--json"],
                               input=texts[0].read_text())
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.output)[0]["probabilities"] == pytest.approx(direct[0]["probabilities"])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    bad = run("classify", imdb_path, tmp_path / "latin1.txt", texts[0], "--backend", "reference")
    assert bad.exit_code == 1 and "not UTF-8" in bad.output and texts[0].name in bad.output


def test_info_is_readable(mnist_path):
    out = run("info", mnist_path).output
    assert "{" not in out and "'" not in out, out
    assert "command: random_packed_model" in out


def test_paper_sizes_not_truncated_when_piped():
    out = run("paper-sizes").output  # CliRunner's stdout is not a terminal
    assert "…" not in out and "unexplained" in out


def test_eval_without_data_says_how_to_copy_it(tmp_path, mnist_path, monkeypatch):
    monkeypatch.setenv("EDGE_RBMLP_DATA", str(tmp_path / "empty"))
    result = run("eval", mnist_path, "--dataset", "mnist", "--backend", "reference")
    assert result.exit_code == 1 and "scp -r" in result.output and "EDGE_RBMLP_DATA" in result.output


def test_bench_names_a_missing_runtime_once(monkeypatch):
    """Every TFLite variant (float, int8) fails the same way without a runtime: one hint, not one per variant."""
    from edge_rbmlp import bench
    from edge_rbmlp.engines.base import BackendUnavailable
    from edge_rbmlp.models import load_model, resolve_model_path

    def missing(backend, variant, model, model_path, kernel=None):
        raise BackendUnavailable("backend 'tflite' needs a TFLite runtime: pip install ai-edge-litert")

    monkeypatch.setattr(bench, "_make_engine", missing)
    q = np.zeros((2, 784), np.uint8)
    with pytest.raises(BackendUnavailable) as info:
        bench._runners("tflite", load_model("mnist"), resolve_model_path("mnist"), q, q)
    assert str(info.value).count("pip install ai-edge-litert") == 1
