"""The paper's future work, measured: a hyperparameter study on the best variant of each depth.

``python -m train hparams --dataset mnist --seeds 1`` (then ``--report-only``)

Section VIII leaves hyperparameter tuning and optimizers for binary weights to future work. Here,
for the paper's best variant of each depth (the fifth row of each depth group of Table IV / VII), one
setting at a time is moved away from Table II's (10 epochs, batch 32, Adam lr 0.001, dropout 0.05,
constant lr) to the values of :data:`LEVELS`; the optimizer ``bop`` is larq's Bop for the binary
kernels with Adam for every real-valued variable (:func:`train.pipeline.bop_optimizer`), the schedule
``cosine`` decays the lr to 0 over the run. The first layer takes the real-valued input (``int8``,
the paper's reading), so the Table II baseline *is* the headline grid's trial of that row (reused).
A hyperparameter never changes the model, so every row of a variant has the same size: "what it buys
at equal size" is the accuracy difference to the baseline, given with a rough 95 % interval
(difference of means +- 1.96 * sqrt(s1^2/n1 + s2^2/n2), once both sides have 2 seeds).

:func:`pareto` takes every full-data trial of the data set with real-valued input (the headline grid,
the designed grid at full budget, this study) and gives the best model per size budget (accuracy
against eq. 4-7 KiB) and its Pareto front.

Trials run through :mod:`train.sweep` and live in ``OUT/<dataset>/trials/`` like every other trial.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import reproduce as rp

LEVELS = {"lr": (0.0003, 0.003, 0.01), "batch_size": (64, 128, 256), "epochs": (20, 30),
          "dropout": (0.0, 0.1, 0.2), "optimizer": ("bop",), "lr_schedule": ("cosine",)}
BASE = {"lr": 0.001, "batch_size": 32, "epochs": 10, "dropout": 0.05, "optimizer": "adam", "lr_schedule": "constant"}
INPUT_MODE = "int8"


def best_rows(dataset: str) -> List[rp.Row]:
    """The paper's best variant of each depth (fifth row of each depth group of its table)."""
    rows = rp.paper_rows(dataset)
    return [[r for r in rows if r.layers == d][4] for d in (1, 2, 3)]


def settings_of(factor: Optional[str], value, limit_train=None, limit_test=None) -> dict:
    kw = {} if factor is None else {factor: value}
    return rp.settings_for(limit_train=limit_train, limit_test=limit_test, input_mode=INPUT_MODE, **kw)


def settings_list(factors: Sequence[str] = tuple(LEVELS), limit_train=None, limit_test=None) -> List[tuple]:
    """(factor, value, settings) of the baseline (factor None) and every one-at-a-time change."""
    out = [(None, None, settings_of(None, None, limit_train, limit_test))]
    for f in factors:
        if f not in LEVELS:
            raise ValueError(f"unknown hyperparameter {f!r} ({', '.join(LEVELS)})")
        out += [(f, v, settings_of(f, v, limit_train, limit_test)) for v in LEVELS[f]]
    return out


def plan(out: Path, dataset: str, rows: Sequence[rp.Row], seeds: Sequence[int], factors=tuple(LEVELS),
         limit_train=None, limit_test=None):
    from . import sweep as sw

    return sw.plan(out, dataset, rows, seeds, [s for _, _, s in settings_list(factors, limit_train, limit_test)])


def _agg(trials: List[dict]) -> Optional[dict]:
    if not trials:
        return None
    m, s = rp._mean_std([t["accuracy"] for t in trials])
    return {"mean": m, "std": s, "n": len(trials)}


def study_rows(out: Path, dataset: str, rows: Sequence[rp.Row], factors=tuple(LEVELS), limit_train=None,
               limit_test=None) -> List[dict]:
    """One row per (variant, factor, value): accuracy over seeds and the difference to Table II's settings."""
    out_rows = []
    for row in rows:
        base_t = [t for t in rp.load_trials(out, dataset, settings_of(None, None, limit_train, limit_test))
                  if t["variant"] == row.variant]
        base = _agg(base_t)
        kib = base_t[0]["eq_size_kib"] if base_t else None
        for f, v, s in settings_list(factors, limit_train, limit_test):
            ts = [t for t in rp.load_trials(out, dataset, s) if t["variant"] == row.variant]
            a = _agg(ts)
            d = lo = hi = None
            if a is not None and base is not None and f is not None:
                d = a["mean"] - base["mean"]
                if a["n"] > 1 and base["n"] > 1:
                    half = 1.96 * math.sqrt(a["std"] ** 2 / a["n"] + base["std"] ** 2 / base["n"])
                    lo, hi = d - half, d + half
            if kib is None and ts:
                kib = ts[0]["eq_size_kib"]
            out_rows.append({"variant": row.variant, "layers": row.layers, "factor": f or "Table II",
                             "value": _value_text(f, v), "acc": a, "delta": d, "delta_lo": lo, "delta_hi": hi,
                             "kib": kib})
    return out_rows


def _value_text(f, v) -> str:
    if f is None:
        return "epochs 10, batch 32, Adam lr 0.001, dropout 0.05, constant lr"
    return f"{v:g}" if isinstance(v, float) else str(v)


def markdown(dataset: str, rows: List[dict], limit_train=None, limit_test=None) -> str:
    lim = (f" **Limited to {limit_train} train / {limit_test} test samples (a test run, not a result).**"
           if limit_train is not None or limit_test is not None else "")
    lines = [f"### Hyperparameters of the best variant per depth ({dataset}), one change at a time from Table II",
             "", "First layer input `int8` (the paper's reading). Each row changes one setting of Table II (the "
             "`Table II` row, the headline grid's trial); *gain*: accuracy minus the Table II row's, with a rough "
             "95 % interval once both have 2 or more seeds; the size is the same in every row of a variant "
             "(eq. 4-7, pool 8)." + lim, "",
             "| layers | variant | KiB | setting | value | accuracy | n | gain over Table II |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["acc"]
        acc = "not run" if a is None else (f"{a['mean']:.4f}" + (f" ± {a['std']:.4f}" if a["n"] > 1 else ""))
        gain = rp._f(r["delta"], "{:+.4f}")
        if r["delta_lo"] is not None:
            gain += f" [{r['delta_lo']:+.4f}, {r['delta_hi']:+.4f}]"
        lines.append(f"| {r['layers']} | `{r['variant']}` | {rp._f(r['kib'], '{:.2f}')} | {r['factor']} | {r['value']} "
                     f"| {acc} | {0 if a is None else a['n']} | {gain} |")
    return "\n".join(lines) + "\n"


# -- best model per size budget ----------------------------------------------------------------------
def pareto_points(out: Path, dataset: str) -> List[dict]:
    """Every (variant, settings) of the data set with full data, real-valued input and at least the paper's
    10 epochs (no reduced budget), mean over seeds."""
    import json

    folder = Path(out) / dataset / "trials"
    groups: Dict[tuple, List[dict]] = {}
    for p in sorted(folder.glob("*.json")) if folder.exists() else []:
        t = json.loads(p.read_text())
        s = t.get("settings", {})
        if (s.get("input_mode") != INPUT_MODE or s.get("limit_train") is not None or s.get("limit_test") is not None
                or s.get("epochs", 0) < rp.PAPER_SETTINGS["epochs"]):  # no reduced budget on the front
            continue
        key = (t["variant"], rp.settings_tag(s))
        groups.setdefault(key, []).append(t)
    pts = []
    for (v, tag), ts in groups.items():
        pts.append({"variant": v, "settings": tag.replace("in-int8", "").strip("_") or "table II", "kib": ts[0]["eq_size_kib"],
                    "acc": statistics.mean(t["accuracy"] for t in ts), "n": len(ts),
                    "binary": not v.startswith("F-"), "epochs": ts[0]["settings"]["epochs"]})
    return pts


def pareto_front(pts: List[dict]) -> List[dict]:
    """The points no other point beats on both size (smaller) and accuracy (higher), by size."""
    front, best = [], -1.0
    for p in sorted(pts, key=lambda p: (p["kib"], -p["acc"])):
        if p["acc"] > best:
            front.append(p)
            best = p["acc"]
    return front


def budget_table(dataset: str, pts: List[dict], budgets=(16, 32, 64, 128, 256, 512, 1024, 4096, 16384)) -> str:
    lines = [f"### Best model per size budget ({dataset}; every full-data trial with real-valued input)", "",
             "| budget (KiB) | best variant | settings | KiB | accuracy (mean) | n |", "|---|---|---|---|---|---|"]
    for b in budgets:
        fit = [p for p in pts if p["kib"] <= b]
        if not fit:
            lines.append(f"| {b} | none | | | | |")
            continue
        p = max(fit, key=lambda p: p["acc"])
        lines.append(f"| {b} | `{p['variant']}` | {p['settings']} | {p['kib']:.2f} | {p['acc']:.4f} | {p['n']} |")
    return "\n".join(lines) + "\n"


def plot_pareto(dataset: str, pts: List[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for binary, c, lab in ((True, "tab:blue", "binary variants"), (False, "black", "float models")):
        ps = [p for p in pts if p["binary"] == binary]
        ax.scatter([p["kib"] for p in ps], [p["acc"] for p in ps], s=12, color=c, alpha=0.5, label=lab)
    front = pareto_front(pts)
    ax.step([p["kib"] for p in front], [p["acc"] for p in front], where="post", color="tab:red", label="Pareto front")
    for p in front:
        ax.annotate(p["variant"] + ("" if p["settings"] == "table II" else f" [{p['settings']}]"), (p["kib"], p["acc"]),
                    fontsize=6, textcoords="offset points", xytext=(3, -8))
    ax.set_xscale("log")
    ax.set_xlabel("model size, KiB (eq. 4-7, pool 8), log scale")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title(f"{dataset}: accuracy against size, every full-data trial with real-valued input", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(dataset: str, out: Path, rows: Sequence[rp.Row], factors=tuple(LEVELS), limit_train=None,
              limit_test=None, plots: bool = True, echo: Callable[[str], None] = print) -> dict:
    out = Path(out)
    srows = study_rows(out, dataset, rows, factors, limit_train, limit_test)
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    tag = rp.settings_tag(settings_of(None, None, limit_train, limit_test))
    text = markdown(dataset, srows, limit_train, limit_test)
    written = [f"hparams{tag}.md"]
    if limit_train is None and limit_test is None:
        pts = pareto_points(out, dataset)
        text += "\n" + budget_table(dataset, pts)
        if plots and pts:  # no full-data trial yet: no plot
            plot_pareto(dataset, pts, folder / "pareto.png")
            written.append("pareto.png")
    (folder / f"hparams{tag}.md").write_text(text)
    ran = sum(1 for r in srows if r["acc"] is not None)
    echo(f"{dataset} hparams: {ran} of {len(srows)} (variant, setting) rows have trials; wrote "
         + ", ".join(str(folder / w) for w in written))
    return {"rows": srows}
