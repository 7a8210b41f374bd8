"""Tables III and VI as the paper made them: a designed grid over the layer elements, fitted by regression.

``python -m train design --dataset mnist --epochs 1 --seeds 1`` (then ``--report-only``)

The paper (section V.C) trains "various combinations of dropout layers, normalization layers, and
shortcuts based on a predefined base design" and reports the "average accuracy achieved by each
layer", "supported by multivariable regression". This module makes that grid explicit:

* **Factors**, per depth T (1, 2, 3 hidden layers, the widths of Table IV / VII): ``Dt`` dropout before
  hidden layer t and ``Nt`` batch norm after it (t = 1..T), the shortcut (4 levels: none / F / Q / P),
  ``Ns`` batch norm on the shortcut, ``Ds`` dropout before the output. The 4-level shortcut is coded
  by two 2-level pseudo-factors ``S1``, ``S2`` ((-,-) none, (+,-) F, (-,+) Q, (+,+) P), whose three
  contrasts S1, S2, S1*S2 carry its 3 degrees of freedom. ``Ns`` has no effect without a shortcut:
  those design points are the same network whatever ``Ns`` says (one trial file for both).
* **Design**: 2T + 4 two-level factors, i.e. 2^6 = 64 / 2^8 = 256 / 2^10 = 1024 runs for the full
  factorial at T = 1 / 2 / 3. We run a regular fractional factorial (:data:`GENERATORS`, built by
  :func:`pyDOE3.fracfact`): 2^(6-1) resolution VI (32 runs), 2^(8-2) resolution V (64 runs),
  2^(10-3) resolution V (128 runs); 224 networks per data set and seed. At resolution V no main
  effect or two-factor interaction is aliased with another main effect or two-factor interaction,
  so the shortcut's S1*S2 contrast (a two-factor interaction of the pseudo-factors) is clear of every
  main effect. :func:`resolution` checks the defining relation (tested).
* **Reference rows**: the float model and the plain binary model of each depth at the same settings
  (the paper's "F original" and "B equivalent").
* **Trials** go through :mod:`train.sweep` (Ray tasks); the trial files under
  ``OUT/<dataset>/trials/`` are the single source of truth, shared with ``reproduce`` and ``sweep``:
  a design point that is a printed row of the paper's table reuses that row's trial at equal settings.
* **Regression** (:func:`fit_depth`, statsmodels OLS), per depth, one observation per trial:
  ``accuracy ~ 1 + sum_t Dt + sum_t Nt + Ds + F + Q + P + Ns``, all 0/1 indicators of the element being
  in the network (F/Q/P against no shortcut; Ns only where there is a shortcut). A coefficient is the
  element's average contribution to test accuracy (holding the others), with a 95 % confidence interval
  from the residual variance; the "with" value is the regression's average accuracy of the design's
  networks with that element (the fitted mean over the design points with the element switched on,
  for Ns over those with a shortcut), the quantity we read Tables III / VI to print.

Reduced budgets (``--epochs 1`` etc.) are kept in their own trial files and tables (settings suffix)
and labelled as such; they are never the paper's setting.
"""

from __future__ import annotations

import csv
import io
import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import reproduce as rp

# The paper's hidden widths per depth (the printed rows of Tables IV and VII).
WIDTHS = {"mnist": {1: (128,), 2: (128, 88), 3: (128, 88, 88)},
          "imdb": {1: (250,), 2: (32, 32), 3: (32, 16, 8)},
          "cifar10": {1: (256,), 2: (256, 256), 3: (256, 256, 256)}}

# pyDOE3.fracfact generator strings (one word per column; single letters are the base factors).
# 6 factors: F = ABCDE (res. VI); 8: G = ABCDE, H = ABCF (res. V); 10: H = ABCDEFG, J = ABCD, K = ABEF (res. V).
GENERATORS = {1: "a b c d e abcde", 2: "a b c d e f abcde abcf", 3: "a b c d e f g abcdefg abcd abef"}
DESIGN_NAME = {1: "2^(6-1), resolution VI", 2: "2^(8-2), resolution V", 3: "2^(10-3), resolution V"}
SHORTCUT_OF = {(-1, -1): None, (1, -1): "F", (-1, 1): "Q", (1, 1): "P"}
KINDS = ("F", "Q", "P")


def factor_names(depth: int) -> List[str]:
    """Column order of the design: S1, S2 first (base factors), then Ns, Ds, then Dt, Nt."""
    return ["S1", "S2", "Ns", "Ds"] + [f"{e}{t}" for t in range(1, depth + 1) for e in ("D", "N")]


def element_names(depth: int) -> List[str]:
    """The regression's terms (Table III's rows in the paper's order: D = Ds, N = Ns, P, F, Q, Dt, Nt)."""
    return ["D", "N", "P", "F", "Q"] + [f"{e}{t}" for t in range(1, depth + 1) for e in ("D", "N")]


def design_matrix(depth: int):
    """The fractional factorial in -1/+1 coding (rows = runs, columns = :func:`factor_names`)."""
    import numpy as np
    from pyDOE3 import fracfact

    m = np.asarray(fracfact(GENERATORS[depth]), dtype=int)
    assert m.shape[1] == len(factor_names(depth)), (m.shape, factor_names(depth))
    return m


def defining_words(generators: str) -> List[frozenset]:
    """Every word of the defining relation (products of the generator words), as sets of column indices."""
    cols = generators.split()
    base = [c for c in cols if len(c) == 1]
    words = [frozenset({base.index(ch) for ch in c} | {j}) for j, c in enumerate(cols) if len(c) > 1]
    out = []
    for r in range(1, len(words) + 1):
        for combo in itertools.combinations(words, r):
            w = frozenset()
            for x in combo:
                w = w ^ x
            out.append(w)
    return out


def resolution(generators: str) -> int:
    """Length of the shortest word of the defining relation (a full factorial: no word, returns 99)."""
    return min((len(w) for w in defining_words(generators)), default=99)


@dataclass(frozen=True)
class Point:
    depth: int
    levels: Tuple[int, ...]  # -1/+1 per factor_names(depth)
    variant: str
    elements: Tuple[Tuple[str, int], ...]  # 0/1 indicator per element_names(depth), as in the network


def variant_of(depth: int, levels: Sequence[int], widths: Sequence[int]) -> Tuple[str, Dict[str, int]]:
    f = dict(zip(factor_names(depth), levels))
    kind = SHORTCUT_OF[(f["S1"], f["S2"])]
    parts = [("D" if f[f"D{t}"] > 0 else "") + str(w) + ("N" if f[f"N{t}"] > 0 else "")
             for t, w in enumerate(widths, start=1)]
    ns = kind is not None and f["Ns"] > 0
    if kind is not None:
        parts.append(kind + ("N" if ns else ""))
    if f["Ds"] > 0:
        parts.append("D")
    el = {"D": int(f["Ds"] > 0), "N": int(ns)}
    el.update({k: int(kind == k) for k in KINDS})
    for t in range(1, depth + 1):
        el[f"D{t}"] = int(f[f"D{t}"] > 0)
        el[f"N{t}"] = int(f[f"N{t}"] > 0)
    return "B-" + ",".join(parts), el


def design_points(dataset: str, depth: int) -> List[Point]:
    from edge_rbmlp.arch import parse

    widths = WIDTHS[dataset][depth]
    out = []
    for levels in design_matrix(depth):
        v, el = variant_of(depth, levels, widths)
        v = parse(v).notation()
        out.append(Point(depth, tuple(int(x) for x in levels), v, tuple((e, el[e]) for e in element_names(depth))))
    return out


def reference_variants(dataset: str, depth: int) -> Tuple[str, str]:
    """The float model and the plain binary model of a depth (the paper's F original / B equivalent)."""
    w = ",".join(str(x) for x in WIDTHS[dataset][depth])
    return f"F-{w}", f"B-{w}"


def plan_variants(dataset: str, depths: Sequence[int]) -> List[str]:
    """Every network of the design of these depths (each once), then the reference rows."""
    seen, out = set(), []
    for d in depths:
        for v in [p.variant for p in design_points(dataset, d)] + list(reference_variants(dataset, d)):
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out


def plan(out: Path, dataset: str, depths: Sequence[int], seeds: Sequence[int], settings: dict):
    from . import sweep as sw

    rows = [sw.sweep_row(dataset, v) for v in plan_variants(dataset, depths)]
    return sw.plan(out, dataset, rows, seeds, [settings])


# -- the regression ---------------------------------------------------------------------------------
def _trials_by_variant(out: Path, dataset: str, settings: dict) -> Dict[str, List[dict]]:
    from edge_rbmlp.arch import parse

    by: Dict[str, List[dict]] = {}
    for t in rp.load_trials(out, dataset, settings):
        by.setdefault(parse(t["variant"]).notation(), []).append(t)
    return by


def fit_depth(dataset: str, depth: int, trials: Dict[str, List[dict]], alpha: float = 0.05) -> Optional[dict]:
    """OLS of accuracy on the element indicators over the design's trials of one depth (None if too few)."""
    import numpy as np
    import statsmodels.api as sm

    names = element_names(depth)
    pts = {p.variant: p for p in design_points(dataset, depth)}  # a duplicated point (Ns without shortcut) once
    rows, ys, used = [], [], []
    for v, p in pts.items():
        for t in trials.get(v, []):
            rows.append([1.0] + [float(x) for _, x in p.elements])
            ys.append(t["accuracy"])
            used.append((v, t["seed"]))
    if len(ys) <= len(names) + 1:
        return {"depth": depth, "n_trials": len(ys), "n_points": len(pts), "n_params": len(names) + 1,
                "fitted": False, "terms": []}
    X, y = np.asarray(rows), np.asarray(ys)
    if np.linalg.matrix_rank(X) < X.shape[1]:  # an incomplete design can leave an element inseparable
        return {"depth": depth, "n_trials": len(ys), "n_points": len(pts), "n_params": len(names) + 1,
                "fitted": False, "terms": [], "rank_deficient": True,
                "missing_points": sorted(v for v in pts if v not in trials)}
    res = sm.OLS(y, X).fit()
    ci = res.conf_int(alpha)
    # design points (one row per point, not per trial) for the "with" averages
    P = np.asarray([[1.0] + [float(x) for _, x in p.elements] for p in pts.values()])
    terms = []
    for j, name in enumerate(names, start=1):
        sel = P
        if name == "N":
            sel = P[(P[:, names.index("F") + 1] + P[:, names.index("Q") + 1] + P[:, names.index("P") + 1]) > 0]
        c = sel.copy()
        if name in KINDS:
            for k in KINDS:
                c[:, names.index(k) + 1] = 0.0
        c[:, j] = 1.0
        c = c.mean(axis=0)
        tt = res.t_test(c[None, :])
        lo, hi = np.asarray(tt.conf_int(alpha)).ravel()
        n_with = int(sum(1 for r in rows if r[j] > 0))
        obs_with = [yy for r, yy in zip(rows, ys) if r[j] > 0]
        obs_without = [yy for r, yy in zip(rows, ys) if r[j] == 0]
        terms.append({"element": name, "coef": float(res.params[j]), "coef_lo": float(ci[j][0]),
                      "coef_hi": float(ci[j][1]), "p": float(res.pvalues[j]),
                      "with": float(np.asarray(tt.effect).ravel()[0]), "with_lo": float(lo), "with_hi": float(hi),
                      "n_with": n_with, "observed_with": statistics.mean(obs_with) if obs_with else None,
                      "observed_without": statistics.mean(obs_without) if obs_without else None})
    return {"depth": depth, "n_trials": len(ys), "n_points": len(pts), "n_params": len(names) + 1, "fitted": True,
            "intercept": float(res.params[0]), "r2": float(res.rsquared), "df_resid": float(res.df_resid),
            "sigma": float(np.sqrt(res.scale)), "terms": terms,
            "n_seeds": len({s for _, s in used}), "missing_points": sorted(v for v in pts if v not in trials)}


def reference_rows(dataset: str, depth: int, trials: Dict[str, List[dict]]) -> Dict[str, Optional[dict]]:
    """F original, B equivalent (at the design's settings) and the best design point (mean over seeds)."""
    fl, b = reference_variants(dataset, depth)

    def agg(v):
        ts = trials.get(v, [])
        if not ts:
            return None
        m, s = rp._mean_std([t["accuracy"] for t in ts])
        return {"variant": v, "mean": m, "std": s, "n": len(ts)}

    best = None
    for p in design_points(dataset, depth):
        a = agg(p.variant)
        if a is not None and (best is None or a["mean"] > best["mean"]):
            best = a
    return {"F original": agg(fl), "B equivalent": agg(b), "Best variant": best}


def summarize(dataset: str, out: Path, settings: dict, depths: Sequence[int] = (1, 2, 3), plots: bool = True,
              echo: Callable[[str], None] = print) -> dict:
    """Fit every depth from the trial files and write ``OUT/<dataset>/design<tag>.md|csv`` and the plots."""
    out = Path(out)
    trials = _trials_by_variant(out, dataset, settings)
    fits = {d: fit_depth(dataset, d, trials) for d in depths}
    refs = {d: reference_rows(dataset, d, trials) for d in depths}
    tag = rp.settings_tag(settings)
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"design{tag}.md").write_text(markdown(dataset, settings, fits, refs))
    write_csv(folder / f"design{tag}.csv", fits)
    written = [f"design{tag}.md", f"design{tag}.csv"]
    if plots:
        for name, fn in (("fig5_normalization", plot_normalization), ("fig6_shortcut", plot_shortcut),
                         ("fig7_float_binary_best", plot_float_binary_best)):
            fn(dataset, fits, refs, folder / f"design_{name}{tag}.png", settings)
            written.append(f"design_{name}{tag}.png")
    echo(f"{dataset} design: " + "; ".join(f"depth {d}: {f['n_trials']} trials of {f['n_points']} points"
                                            + ("" if f["fitted"] else " (too few to fit)") for d, f in fits.items())
         + "; wrote " + ", ".join(str(folder / w) for w in written))
    return {"fits": fits, "refs": refs}


def _budget_text(settings: dict) -> str:
    s = rp._settings_text(settings)
    reduced = settings["epochs"] != rp.PAPER_SETTINGS["epochs"] or settings.get("limit_train") is not None
    if reduced:
        s = ("**REDUCED BUDGET, not the paper's setting**: " + s)
    return s


def markdown(dataset: str, settings: dict, fits: Dict[int, dict], refs: Dict[int, dict]) -> str:
    table = rp.LAYER_TABLE_OF.get(dataset)
    paper = rp.PAPER_LAYER_TABLES.get(table, {}) if table else {}
    lines = [f"### Table {table or '–'} ({dataset}) from a designed grid: each element's contribution by regression",
             "", f"Settings: {_budget_text(settings)}.", "",
             "Design per depth (train/design.py): factors Dt, Nt (t = 1..T), shortcut none/F/Q/P (two pseudo-"
             "factors), Ns, Ds; " + "; ".join(f"depth {d}: {DESIGN_NAME[d]}, {fits[d]['n_points']} networks"
                                               for d in fits) + ". Widths as Table " + rp.TABLE_OF[dataset]
             + ". Fit: OLS of test accuracy on 0/1 element indicators, one observation per trial (seeds are "
             "replicates). *contribution*: the element's coefficient (accuracy points it adds, others held) with "
             "its 95 % CI; *with*: the regression's average accuracy of the design's networks with the element "
             "(95 % CI), the quantity the paper's table prints; *observed*: the raw mean of the trials with / "
             "without it. D = dropout before the output, N = batch norm on the shortcut, P/F/Q = shortcut kind "
             "(against none), Dt / Nt = dropout before / batch norm after hidden layer t.", ""]
    for d, f in fits.items():
        lines += [f"#### {d} hidden layer{'s' if d > 1 else ''}: {f['n_trials']} trials of {f['n_points']} networks"
                  + (f", R² {f['r2']:.3f}, residual std {f['sigma']:.4f}, {f['df_resid']:.0f} residual df"
                     if f["fitted"] else " (too few trials to fit)" if not f.get("rank_deficient")
                     else " (elements not separable yet)"), ""]
        lines += ["| row | paper | ours | n | variant |", "|---|---|---|---|---|"]
        for name, r in refs[d].items():
            p = paper.get(name, (None,) * 3)[d - 1] if paper else None
            cell = "not run" if r is None else (f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["n"] > 1 else ""))
            lines.append(f"| {name} | {rp._f(p)} | {cell} | {0 if r is None else r['n']} | "
                         f"{'' if r is None else '`' + r['variant'] + '`'} |")
        lines.append("")
        if f["fitted"]:
            lines += ["| element | paper (avg. acc.) | ours: with (95 % CI) | contribution (95 % CI) | p | "
                      "observed with / without | n with |", "|---|---|---|---|---|---|---|"]
            for t in f["terms"]:
                p = paper.get(t["element"], (None,) * 3)[d - 1] if paper else None
                lines.append(f"| {t['element']} | {rp._f(p)} | {t['with']:.4f} [{t['with_lo']:.4f}, {t['with_hi']:.4f}] | "
                             f"{t['coef']:+.4f} [{t['coef_lo']:+.4f}, {t['coef_hi']:+.4f}] | {t['p']:.3g} | "
                             f"{rp._f(t['observed_with'])} / {rp._f(t['observed_without'])} | {t['n_with']} |")
            lines.append("")
        if f.get("missing_points"):
            lines += [f"**Incomplete design**: {len(f['missing_points'])} of the {f['n_points']} networks have no "
                      "trial yet, so the finished ones are not balanced and the estimates above may mix elements"
                      + (" (here some element is not separable from the others: no fit)" if f.get("rank_deficient")
                         else "") + "; `python -m train design` with the same options resumes.", ""]
    return "\n".join(lines)


CSV_FIELDS = ["depth", "element", "coef", "coef_lo", "coef_hi", "p", "with", "with_lo", "with_hi", "n_with",
              "observed_with", "observed_without", "paper"]


def write_csv(path: Path, fits: Dict[int, dict], dataset: Optional[str] = None) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for d, f in fits.items():
        for t in f["terms"]:
            w.writerow({"depth": d, **t})
    path.write_text(buf.getvalue())


# -- plots (the paper's figures 5-7) ----------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _paper(dataset, name, depth):
    table = rp.LAYER_TABLE_OF.get(dataset)
    return rp.PAPER_LAYER_TABLES.get(table, {}).get(name, (None,) * 3)[depth - 1] if table else None


def _contribution_plot(dataset, fits, names_of, path, title, settings):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    x, labels = 0, []
    for d, f in fits.items():
        if not f["fitted"]:
            continue
        for t in f["terms"]:
            if t["element"] not in names_of(d):
                continue
            ax.errorbar([x], [t["with"]], yerr=[[t["with"] - t["with_lo"]], [t["with_hi"] - t["with"]]], fmt="o",
                        color="tab:blue", capsize=3, label="ours: with the element (95 % CI)" if x == 0 else None)
            p = _paper(dataset, t["element"], d)
            if p is not None:
                ax.scatter([x], [p], marker="x", color="tab:red", zorder=3,
                           label="paper (Table " + rp.LAYER_TABLE_OF[dataset] + ")" if not labels else None)
            labels.append(f"{t['element']}\n{d} L")
            x += 1
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("average test accuracy")
    reduced = settings["epochs"] != rp.PAPER_SETTINGS["epochs"] or settings.get("limit_train") is not None
    ax.set_title(f"{dataset}: {title}" + (f" (reduced budget: {settings['epochs']} epoch(s))" if reduced else ""),
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if labels:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_normalization(dataset, fits, refs, path, settings):
    _contribution_plot(dataset, fits, lambda d: ["N"] + [f"N{t}" for t in range(1, d + 1)], path,
                       "normalization layer contribution (cf. the paper's Fig. 5)", settings)


def plot_shortcut(dataset, fits, refs, path, settings):
    _contribution_plot(dataset, fits, lambda d: list(KINDS), path,
                       "shortcut contribution to accuracy (cf. the paper's Fig. 6)", settings)


def plot_float_binary_best(dataset, fits, refs, path, settings):
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    names = ["F original", "B equivalent", "Best variant"]
    depths = list(refs)
    w = 0.13
    for i, name in enumerate(names):
        xs = np.arange(len(depths)) + (i - 1) * 2.2 * w
        ours = [refs[d][name]["mean"] if refs[d][name] else np.nan for d in depths]
        ax.bar(xs - w / 2, ours, w, label=f"{name} (ours)", color=f"C{i}")
        paper = [_paper(dataset, name, d) for d in depths]
        ax.bar(xs + w / 2, [np.nan if p is None else p for p in paper], w, label=f"{name} (paper)", color=f"C{i}",
               alpha=0.45, hatch="//")
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels([f"{d} hidden layer{'s' if d > 1 else ''}" for d in depths])
    ax.set_ylabel("test accuracy")
    lo = min([v for d in depths for n in names if refs[d][n] for v in [refs[d][n]["mean"]]] + [1.0])
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    reduced = settings["epochs"] != rp.PAPER_SETTINGS["epochs"] or settings.get("limit_train") is not None
    ax.set_title(f"{dataset}: floating point vs binary vs best variant (cf. the paper's Fig. 7)"
                 + (f"\nours at a reduced budget ({settings['epochs']} epoch(s)), the paper at 10" if reduced else ""),
                 fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(dataset: str, out: Path, depths: Sequence[int], seeds: Sequence[int], settings: dict, address: str = "local",
        threads: int = 2, command: str = "", echo: Callable[[str], None] = print, deadline: Optional[float] = None,
        max_retries: int = 3, num_cpus: Optional[int] = None, verbose: bool = False):
    from . import sweep as sw

    specs = plan(out, dataset, depths, seeds, settings)
    echo(f"design {dataset}: depths {', '.join(map(str, depths))} ("
         + "; ".join(f"{d}: {DESIGN_NAME[d]}" for d in depths) + f"), {len(plan_variants(dataset, depths))} "
         f"networks x seeds {list(seeds)} = {len(specs)} trials; settings {settings}")
    return sw.run_sweep(specs, address=address, threads=threads, command=command, echo=echo, deadline=deadline,
                        max_retries=max_retries, num_cpus=num_cpus, verbose=verbose)
