"""train/design.py and train/hparams.py: the fractional factorial (balance, orthogonality, resolution), the
networks it maps to, the regression recovering known effects from synthetic trial files, the hyperparameter
study's gains and the Pareto front, and both CLI commands on a tiny real sweep (300 MNIST samples, 1 epoch)
through an embedded Ray."""

import importlib.util
import json
import os
import random

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_missing = [m for m in ("pyDOE3", "statsmodels", "matplotlib") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(bool(_missing), reason=f"needs the train extra (missing: {', '.join(_missing)}): "
                                             "pip install -e '.[train]'"),
]

import numpy as np  # noqa: E402

from edge_rbmlp.arch import parse  # noqa: E402
from train import design as ds  # noqa: E402
from train import hparams as hp  # noqa: E402
from train import reproduce as rp  # noqa: E402


@pytest.mark.parametrize("depth,runs,res", [(1, 32, 6), (2, 64, 5), (3, 128, 5)])
def test_design_is_balanced_orthogonal_and_of_its_resolution(depth, runs, res):
    m = ds.design_matrix(depth)
    assert m.shape == (runs, 2 * depth + 4)
    assert set(np.unique(m)) == {-1, 1}
    assert (m.sum(axis=0) == 0).all()  # every factor half at each level
    assert (m.T @ m == runs * np.eye(m.shape[1])).all()  # main effects orthogonal
    assert ds.resolution(ds.GENERATORS[depth]) == res
    # resolution >= V: every two-factor interaction is orthogonal to every main effect and to every other one
    inter = np.stack([m[:, i] * m[:, j] for i in range(m.shape[1]) for j in range(i + 1, m.shape[1])], axis=1)
    assert not (inter.T @ m).any()
    g = inter.T @ inter
    assert (g == runs * np.eye(len(g))).all()
    # each of the four shortcut levels appears equally often
    kinds = [ds.SHORTCUT_OF[(a, b)] for a, b in m[:, :2]]
    assert {k: kinds.count(k) for k in set(kinds)} == {None: runs // 4, "F": runs // 4, "Q": runs // 4, "P": runs // 4}


def test_resolution_of_a_known_design():
    assert ds.resolution("a b c ab") == 3  # 2^(4-1) with D = AB: I = ABD
    assert ds.resolution("a b c abc") == 4  # I = ABCD
    assert ds.resolution("a b c d e ab ac") == 3
    assert ds.resolution("a b c") == 99  # full factorial


def test_points_are_the_networks_their_levels_say():
    for dataset in ("mnist", "imdb"):
        for depth in (1, 2, 3):
            pts = ds.design_points(dataset, depth)
            assert len({p.variant for p in pts}) == len(pts)  # no two design points are the same network
            for p in pts:
                a = parse(p.variant)
                el = dict(p.elements)
                f = dict(zip(ds.factor_names(depth), p.levels))
                assert a.is_binary and [b.width for b in a.blocks] == list(ds.WIDTHS[dataset][depth])
                kind = ds.SHORTCUT_OF[(f["S1"], f["S2"])]
                assert (a.shortcut.kind if a.shortcut else None) == kind
                assert el["N"] == int(bool(a.shortcut and a.shortcut.batchnorm)) == int(kind is not None and f["Ns"] > 0)
                assert el["D"] == int(a.output_dropout) == int(f["Ds"] > 0)
                for t, b in enumerate(a.blocks, start=1):
                    assert el[f"D{t}"] == int(b.dropout) and el[f"N{t}"] == int(b.batchnorm)
    # a design point that is a printed row of the paper shares that row's trial files (same notation)
    assert {"B-D128N,P", "B-128"} <= {p.variant for p in ds.design_points("mnist", 1)}
    assert "B-D128N,D88N,D88N,PN,D" in {p.variant for p in ds.design_points("mnist", 3)}
    assert ds.reference_variants("imdb", 3) == ("F-32,16,8", "B-32,16,8")


SETTINGS = rp.settings_for(epochs=1, input_mode="int8")
TRUE = {"D": 0.004, "N": 0.010, "P": 0.030, "F": 0.012, "Q": 0.020, "D1": -0.006, "N1": 0.040,
        "D2": 0.002, "N2": 0.025}


def _write(out, dataset, variant, seed, acc, settings=SETTINGS, kib=10.0):
    path = rp.trial_path(out, dataset, variant, seed, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": dataset, "variant": variant, "seed": seed, "settings": settings,
                                "accuracy": acc, "eq_size_kib": kib, "layers": len(parse(variant).blocks)}))


def _synthetic(out, depths=(1, 2), seeds=(0, 1), noise=0.002):
    rnd = random.Random(7)
    for d in depths:
        for p in ds.design_points("mnist", d):
            for s in seeds:
                acc = 0.85 + sum(TRUE[e] * x for e, x in p.elements) + rnd.gauss(0, noise)
                _write(out, "mnist", p.variant, s, acc)
        fl, b = ds.reference_variants("mnist", d)
        for s in seeds:
            _write(out, "mnist", fl, s, 0.97 + rnd.gauss(0, noise))
            _write(out, "mnist", b, s, 0.85 + rnd.gauss(0, noise))


def test_regression_recovers_known_effects(tmp_path):
    _synthetic(tmp_path)
    res = ds.summarize("mnist", tmp_path, SETTINGS, depths=(1, 2), echo=lambda m: None)
    for d in (1, 2):
        f = res["fits"][d]
        assert f["fitted"] and f["n_trials"] == 2 * len(ds.design_points("mnist", d))
        terms = {t["element"]: t for t in f["terms"]}
        assert set(terms) == set(ds.element_names(d))
        for e, t in terms.items():
            assert t["coef_lo"] < TRUE[e] < t["coef_hi"], (d, e, t)
            assert abs(t["coef"] - TRUE[e]) < 0.003
            assert t["coef_lo"] < t["coef"] < t["coef_hi"] and t["with_lo"] < t["with"] < t["with_hi"]
        assert f["sigma"] == pytest.approx(0.002, rel=0.35)
        # the strongest element is the most significant one; the regression's "with" mean orders the kinds as
        # their effects do
        assert terms["N1"]["p"] < 1e-6
        assert terms["P"]["with"] > terms["Q"]["with"] > terms["F"]["with"]
        refs = res["refs"][d]
        assert refs["F original"]["n"] == 2 and refs["F original"]["mean"] == pytest.approx(0.97, abs=0.005)
        assert parse(refs["Best variant"]["variant"]).shortcut.kind == "P"
    md = (tmp_path / "mnist" / "design__e1_in-int8.md").read_text()
    assert "REDUCED BUDGET" in md and "2^(8-2), resolution V" in md
    assert "| N1 | 0.9238 |" in md  # the paper's Table III beside ours
    for name in ("fig5_normalization", "fig6_shortcut", "fig7_float_binary_best"):
        assert (tmp_path / "mnist" / f"design_{name}__e1_in-int8.png").stat().st_size > 5000
    lines = (tmp_path / "mnist" / "design__e1_in-int8.csv").read_text().splitlines()
    assert len(lines) == 1 + len(ds.element_names(1)) + len(ds.element_names(2))


def test_regression_needs_more_trials_than_parameters(tmp_path):
    pts = ds.design_points("mnist", 1)
    for p in pts[:5]:
        _write(tmp_path, "mnist", p.variant, 0, 0.9)
    f = ds.fit_depth("mnist", 1, ds._trials_by_variant(tmp_path, "mnist", SETTINGS))
    assert not f["fitted"] and f["n_trials"] == 5
    md = ds.markdown("mnist", SETTINGS, {1: f}, {1: ds.reference_rows("mnist", 1, {})})
    assert "too few trials" in md


def test_hparams_gains_and_pareto(tmp_path):
    rows = hp.best_rows("mnist")
    assert [r.variant for r in rows] == ["B-128N,PN,D", "B-D128N,D88N,PN", "B-D128N,D88N,D88N,PN,D"]
    base = hp.settings_of(None, None)
    assert base == rp.settings_for(input_mode="int8")  # the headline grid's trial is the baseline
    for s in (0, 1):
        _write(tmp_path, "mnist", rows[0].variant, s, 0.94 + 0.002 * s, base, kib=63.8)
        _write(tmp_path, "mnist", rows[0].variant, s, 0.95 + 0.002 * s, hp.settings_of("optimizer", "bop"), kib=63.8)
        _write(tmp_path, "mnist", "F-128", s, 0.978, base, kib=397.0)
        _write(tmp_path, "mnist", "B-128", s, 0.90, base, kib=17.8)
        _write(tmp_path, "mnist", "B-D128N,Q", s, 0.93, base, kib=117.3)  # dominated by the 63.8 KiB variant
        _write(tmp_path, "mnist", "B-D128N,P", s, 0.99, rp.settings_for(epochs=1, input_mode="int8"), kib=62.8)
    res = hp.summarize("mnist", tmp_path, rows[:1], factors=("optimizer", "lr"), echo=lambda m: None)
    by = {(r["factor"], r["value"]): r for r in res["rows"]}
    assert by[("Table II", hp._value_text(None, None))]["acc"]["n"] == 2
    bop = by[("optimizer", "bop")]
    assert bop["delta"] == pytest.approx(0.01) and bop["delta_lo"] < 0.01 < bop["delta_hi"]
    assert by[("lr", "0.003")]["acc"] is None
    pts = hp.pareto_points(tmp_path, "mnist")
    assert all(p["epochs"] >= 10 for p in pts)  # the 1-epoch trial is a reduced budget: not on the front
    front = [(p["variant"], p["settings"]) for p in hp.pareto_front(pts)]
    assert front == [("B-128", "table II"), ("B-128N,PN,D", "opt-bop"), ("F-128", "table II")]
    text = (tmp_path / "mnist" / "hparams__in-int8.md").read_text()
    assert "| 64 | `B-128N,PN,D` | opt-bop | 63.80 | 0.9510 | 2 |" in text
    assert (tmp_path / "mnist" / "pareto.png").stat().st_size > 5000


def test_hparams_report_of_an_empty_folder(tmp_path):
    res = hp.summarize("mnist", tmp_path, hp.best_rows("mnist"), echo=lambda m: None)
    assert all(r["acc"] is None for r in res["rows"]) and len(res["rows"]) == 3 * (1 + 13)
    assert not (tmp_path / "mnist" / "pareto.png").exists()
    assert "| 16 | none |" in (tmp_path / "mnist" / "hparams__in-int8.md").read_text()


def test_optimizer_and_schedule_settings_keep_old_trial_files_valid():
    assert rp.settings_for(input_mode="int8", optimizer="adam", lr_schedule="constant") == rp.settings_for(
        input_mode="int8")
    s = rp.settings_for(input_mode="int8", optimizer="bop", lr_schedule="cosine")
    assert rp.settings_tag(s) == "__in-int8_opt-bop_sch-cosine"
    with pytest.raises(ValueError):
        rp.settings_for(optimizer="sgd")


# -- the CLI on a real tiny sweep ------------------------------------------------------------------------
_train_missing = [m for m in ("ray", "tensorflow", "larq", "tf_keras") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_train_missing), reason=f"needs the train extra (missing: {', '.join(_train_missing)})")
def test_design_and_hparams_cli_on_a_tiny_sweep(tmp_path):
    from click.testing import CliRunner

    from edge_rbmlp import datasets
    from train.cli import main

    if datasets.verified_record("mnist") is None:
        pytest.skip("mnist is not in the data cache: run `python -m train data fetch` (make test does it)")
    tiny = ["--epochs", "1", "--limit-train", "300", "--limit-test", "200"]
    settings = rp.settings_for(1, 300, 200, "int8")
    # every network of the depth-1 design but two has a (synthetic) trial already: only those two train
    pts = ds.design_points("mnist", 1)
    todo = [pts[3].variant, pts[20].variant]
    for p in pts:
        if p.variant not in todo:
            _write(tmp_path, "mnist", p.variant, 0, 0.5 + 0.05 * dict(p.elements)["N1"], settings)
    for v in ds.reference_variants("mnist", 1):
        _write(tmp_path, "mnist", v, 0, 0.6, settings)
    runner = CliRunner()
    args = ["design", "--dataset", "mnist", "--depths", "1", *tiny, "--threads", "1", "--ray", "local",
            "--ray-cpus", "2", "--out", str(tmp_path)]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "33 trials planned, 31 already done, 2 to run" in r.output
    for v in todo:
        rec = json.loads(rp.trial_path(tmp_path, "mnist", v, 0, settings).read_text())
        assert rec["settings"] == settings and 0.0 <= rec["accuracy"] <= 1.0 and rec["node"]["node_id"]
        assert rec["rbm_agreement_with_keras"] > 0.9
    md = (tmp_path / "mnist" / "design__e1_lt300_ls200_in-int8.md").read_text()
    assert "33 trials of 32 networks" not in md and "32 trials of 32 networks" in md
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "0 to run" in again.output
    # hparams: the baseline and Bop for one variant, 1 epoch on the same slice
    h = runner.invoke(main, ["hparams", "--dataset", "mnist", "--variants", "B-16N,PN", "--factors", "optimizer",
                             "--limit-train", "300", "--limit-test", "200", "--threads", "1", "--ray", "local",
                             "--ray-cpus", "2", "--out", str(tmp_path)])
    assert h.exit_code == 0, h.output + repr(h.exception)
    bop = rp.trial_path(tmp_path, "mnist", "B-16N,PN", 0, rp.settings_for(None, 300, 200, "int8", optimizer="bop"))
    assert json.loads(bop.read_text())["settings"]["optimizer"] == "bop"
    text = (tmp_path / "mnist" / "hparams__lt300_ls200_in-int8.md").read_text()
    assert "Limited to 300 train / 200 test samples" in text and "| optimizer | bop |" in text


def test_an_incomplete_design_is_said_so_and_an_inseparable_one_not_fitted(tmp_path):
    pts = ds.design_points("mnist", 1)
    with_p = [p for p in pts if dict(p.elements)["P"]]
    keep = [p for p in pts if p not in with_p[:1]]  # one network missing: still separable
    for p in keep:
        _write(tmp_path, "mnist", p.variant, 0, 0.8 + 0.03 * dict(p.elements)["N1"])
    f = ds.fit_depth("mnist", 1, ds._trials_by_variant(tmp_path, "mnist", SETTINGS))
    assert f["fitted"] and f["missing_points"] == [with_p[0].variant]
    md = ds.markdown("mnist", SETTINGS, {1: f}, {1: ds.reference_rows("mnist", 1, {})})
    assert "**Incomplete design**: 1 of the 32 networks" in md
    # without any P network, P cannot be told apart from the intercept and the other kinds: no fit
    for p in with_p:
        rp.trial_path(tmp_path, "mnist", p.variant, 0, SETTINGS).unlink(missing_ok=True)
    f = ds.fit_depth("mnist", 1, ds._trials_by_variant(tmp_path, "mnist", SETTINGS))
    assert not f["fitted"] and f["rank_deficient"] and len(f["missing_points"]) == len(with_p)
