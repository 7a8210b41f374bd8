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


def _fake_trial(out, variant, seed, acc, input_mode, history=None):
    """A trial file as `reproduce` writes it, reduced to the fields the aggregation reads."""
    from train import reproduce as rp

    settings = rp.settings_for(input_mode=input_mode)
    path = rp.trial_path(out, "mnist", variant, seed, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"variant": variant, "seed": seed, "accuracy": acc, "settings": settings, "n_test": 10000,
           "train_seconds": 1.0}
    if history is not None:
        rec["history"] = {"accuracy": history}
    path.write_text(json.dumps(rec))


def test_headline_is_the_int8_grid_with_a_verdict_per_row(tmp_path):
    from train import reproduce as rp

    out = tmp_path / "results"
    for seed, d in enumerate((-0.001, 0.0, 0.001)):
        _fake_trial(out, "F-128", seed, 0.9749 + d, "int8")          # paper 0.9749: within
        _fake_trial(out, "B-D128N,P", seed, 0.9500 + d, "int8")      # paper 0.9340: above, P shortcut note
        _fake_trial(out, "B-128", seed, 0.8000 + d, "int8")          # paper 0.9024: below, no known cause
        _fake_trial(out, "B-128", seed, 0.7000 + d, "sign")          # the ablation
    _fake_trial(out, "B-128,88", 0, 0.9100, "int8")                  # n = 1
    rows = {r["variant"]: r for r in rp.headline_rows(out, "mnist")}
    assert rows["F-128"]["verdict"] == "within" and not rows["F-128"]["notes"]
    assert rows["B-D128N,P"]["verdict"] == "above" and "pool 8" in rows["B-D128N,P"]["notes"][0]
    assert rows["B-128"]["verdict"] == "below" and rows["B-128"]["flagged"]
    assert rows["B-128,88"]["verdict"] == "n=1" and rows["B-128,88"]["n_seeds"] == 1
    assert rows["F-128,88"]["verdict"] == "not run"

    rp.update_readme(out)
    text = (out / "README.md").read_text()
    assert "## Headline: Tables IV and VII in the paper's reading" in text
    assert "### mnist (Table IV): 10 of 54 trials (3 seeds x 18 rows); 3 rows with n = 3, 1 rows with n = 1" in text
    assert "| 1 | `F-128` | 0.9749 | 0.9749 ± 0.0010 | 3 | +0.0000 | yes |  |" in text
    assert "| 1 | `B-128` | 0.9024 | 0.8000 ± 0.0010 | 3 | -0.1024 | **no, below** | **unexplained** |" in text
    assert "| 2 | `B-128,88` | 0.9162 | 0.9100 | 1 | -0.0062 | n = 1: no std |  |" in text
    # the sign-input grid is the ablation beside it
    assert "| `B-128` | 0.9024 | 0.8000 ± 0.0010 | 3 | 0.7000 ± 0.0010 | 3 | -0.1000 |" in text
    assert "rows have" not in text


def test_flagged_row_gets_what_its_training_curves_say(tmp_path):
    """The MNIST `B-128,88,88` row (far above the paper) carries facts computed from its trial files: the
    epoch at which the mean training accuracy first reaches the paper's value, the last epoch's gain, and
    where the paper's value lies between the two input readings; it stays flagged."""
    from train import reproduce as rp

    out = tmp_path / "results"
    for seed, d in enumerate((-0.002, 0.0, 0.002)):
        _fake_trial(out, "B-128,88,88", seed, 0.8960 + d, "int8",
                    history=[0.70 + d, 0.80 + d, 0.85 + d, 0.87 + d, 0.89 + d])  # mean reaches 0.8510 at epoch 4
        _fake_trial(out, "B-128,88,88", seed, 0.60 + d, "sign")
    text = rp._observation(out, "mnist", "B-128,88,88")
    assert "first reaches the paper's 0.8510 at epoch 4 of 5 and still gains +0.0200 in the last epoch" in text
    assert "lies between our two input readings (sign input 0.5980-0.6020, real input 0.8940-0.8980" in text
    rows = {r["variant"]: r for r in rp.headline_rows(out, "mnist")}
    assert rows["B-128,88,88"]["verdict"] == "above" and rows["B-128,88,88"]["flagged"]
    rp.update_readme(out)
    line = next(x for x in (out / "README.md").read_text().splitlines() if x.startswith("| 3 | `B-128,88,88`"))
    assert "**unexplained**" in line and "at epoch 4 of 5" in line
    # a curve that never gets there says so
    for seed in range(3):
        _fake_trial(out, "B-128,88,88", seed, 0.80, "int8", history=[0.70, 0.80])
    assert "never reaches the paper's 0.8510 in 2 epochs" in rp._observation(out, "mnist", "B-128,88,88")


def test_sweep_settings_get_their_own_file_names():
    from train import reproduce as rp

    assert rp.settings_tag(rp.settings_for()) == ""
    assert rp.settings_tag(rp.settings_for(input_mode="int8")) == "__in-int8"
    assert rp.settings_tag(rp.settings_for(lr=0.001, batch_size=32, dropout=0.05)) == ""  # the paper's values
    assert rp.settings_tag(rp.settings_for(epochs=1, lr=0.005, batch_size=64, dropout=0.1,
                                           input_mode="int8")) == "__e1_in-int8_lr0.005_bs64_do0.1"
