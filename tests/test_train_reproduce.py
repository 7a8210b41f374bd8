"""`python -m train reproduce` on a 2-variant grid of real MNIST slices (1 epoch, 2 seeds): trial files,
resumability, aggregated tables beside the paper's numbers, plots; CIFAR-10 refused when absent."""

import importlib.util
import json
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_missing = [m for m in ("tensorflow", "larq", "tf_keras", "matplotlib") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(bool(_missing), reason=f"needs the train extra (missing: {', '.join(_missing)}): "
                                             "pip install -e '.[train]'"),
]

from click.testing import CliRunner  # noqa: E402

from edge_rbmlp import datasets  # noqa: E402

VARIANTS = "B-D128N,D88N,PN;F-128"
ARGS = ["--dataset", "mnist", "--seeds", "2", "--variants", VARIANTS, "--epochs", "1",
        "--limit-train", "300", "--limit-test", "200", "--threads", "2"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    if datasets.verified_record("mnist") is None:
        pytest.skip("mnist is not in the data cache: run `python -m train data fetch` (make test does it)")
    from train.cli import main

    out = tmp_path_factory.mktemp("results")
    runner = CliRunner()
    first = runner.invoke(main, ["reproduce", *ARGS, "--out", str(out)])
    assert first.exit_code == 0, first.output + repr(first.exception)
    second = runner.invoke(main, ["reproduce", *ARGS, "--out", str(out)])
    assert second.exit_code == 0, second.output + repr(second.exception)
    return out, first.output, second.output


def test_one_trial_file_per_variant_and_seed(grid):
    out, first, _ = grid
    files = sorted(p.name for p in (out / "mnist" / "trials").glob("*.json"))
    assert files == ["B-D128N_D88N_PN__s0__e1_lt300_ls200.json", "B-D128N_D88N_PN__s1__e1_lt300_ls200.json",
                     "F-128__s0__e1_lt300_ls200.json", "F-128__s1__e1_lt300_ls200.json"]
    rec = json.loads((out / "mnist" / "trials" / files[0]).read_text())
    assert rec["variant"] == "B-D128N,D88N,PN" and rec["seed"] == 0 and rec["n_test"] == 200
    assert rec["settings"]["epochs"] == 1 and rec["settings"]["limit_train"] == 300
    assert 0.0 <= rec["accuracy"] <= 1.0 and rec["rbm_bytes"] > 0
    assert rec["rbm_agreement_with_keras"] >= 0.99
    assert rec["paper_accuracy"] == 0.9630 and rec["paper_kib"] == 50.57
    # one progress line per trial with accuracy, seconds and ETA
    lines = [ln for ln in first.splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and all("acc " in ln and "ETA" in ln and " s," in ln for ln in lines)


def test_second_run_skips_everything(grid):
    _, _, second = grid
    assert "4 already done, 0 to run" in second
    assert not [ln for ln in second.splitlines() if ln.startswith("[")]


def test_aggregated_tables_hold_the_papers_numbers(grid):
    out, _, _ = grid
    md = (out / "mnist" / "table__e1_lt300_ls200.md").read_text()
    row = next(ln for ln in md.splitlines() if "`B-D128N,D88N,PN`" in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.9630" and "±" in cells[3] and cells[4] == "2" and cells[7] == "50.57"
    assert "pool 9" in md and "not** the paper's 10 epochs" in md
    assert "| `B-128` | 0.9024 | not run | 0 |" in md  # rows without trials are shown, never filled in
    csv_text = (out / "mnist" / "table__e1_lt300_ls200.csv").read_text()
    assert "B-D128N,D88N,PN" in csv_text and "0.963" in csv_text
    layers = (out / "mnist" / "layers__e1_lt300_ls200.md").read_text()
    assert "| N2 | 2 | 0.9520 |" in layers
    assert "Table VIII" in (out / "sizes__e1_lt300_ls200.md").read_text()
    for png in ("accuracy_by_variant__e1_lt300_ls200.png", "accuracy_vs_size__e1_lt300_ls200.png"):
        assert (out / "mnist" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar10_absent_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "empty"))
    from train.cli import main

    res = CliRunner().invoke(main, ["reproduce", "--dataset", "cifar10", "--seeds", "1", "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "CIFAR-10 is not in the data cache" in res.output and "cifar-10-batches-py" in res.output
