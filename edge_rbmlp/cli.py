"""The ``edge-rbmlp`` command line.

Every command that takes MODEL accepts a ``.rbm`` path or a bundled model's
name (``mnist``, ``imdb``). Errors are one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from .arch import parse
from .user_errors import user_error_types

# numpy, the engines and the file format are imported by the commands that use them, so that
# `edge-rbmlp serve --workers N` keeps its supervisor process small (server/workers.py)


def __getattr__(name):  # ``USER_ERRORS`` as it was, without importing numpy with the module
    if name == "USER_ERRORS":
        return user_error_types()
    raise AttributeError(name)


def user_errors(func):
    """Turn the project's input errors into a clean ``Error: ...`` line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, user_error_types()):
                raise click.ClickException(str(exc)) from None
            raise

    return wrapper


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _console():
    from rich.console import Console

    # piped or redirected: rich would wrap tables at 80 columns and cut cells; never narrower than a table
    return Console() if sys.stdout.isatty() else Console(width=250, soft_wrap=True)


class _Group(click.Group):
    """Lists each command with the whole first line of its help (click cuts it at the first ". ",
    which the size command's "eq. 4-7" ends too early)."""

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            text = cmd.short_help or (cmd.help or "").strip().split("\n\n", 1)[0]
            rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# the engines' names (edge_rbmlp.engines.BACKENDS, spelled out here so that the CLI imports no numpy;
# tests/test_cli.py checks that they agree)
BACKEND_CHOICES = ("auto", "reference", "native", "tflite", "lce")
backend_option = click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
                              help="auto = the native engine, else the numpy reference")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-rbmlp")
def main():
    """Residual binary MLPs on small devices: size, inspect, classify, evaluate, benchmark, serve."""


# -- size ---------------------------------------------------------------------
@main.command()
@click.argument("arch")
@click.option("--inputs", "n_inputs", type=click.IntRange(1, 1 << 20), required=True, help="input width |V_0|")
@click.option("--classes", "n_classes", type=click.IntRange(1, 100000), required=True,
              help="output units (1 = one sigmoid unit, as the paper's IMDB models)")
@click.option("--pool-size", type=click.IntRange(1, 4096), default=8, show_default=True)
@click.option("--quant-bits", type=click.IntRange(2, 8), default=8, show_default=True)
@click.option("--input-mode", type=click.Choice(["sign", "int8"]), default="sign", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
@user_errors
def size(arch, n_inputs, n_classes, pool_size, quant_bits, input_mode, as_json):
    """The paper's model size (eq. 4-7) of ARCH, and the bytes of our packed file for it."""
    from .size import bits_by_width, packed_file_bytes, packed_tensor_bytes, paper_size_terms

    a = parse(arch, pool_size=pool_size, quant_bits=quant_bits, input_mode=input_mode)
    terms = paper_size_terms(a, n_inputs, n_classes)
    paper_bits = sum(t.total_bits for t in terms)
    result = {
        "arch": a.notation(),
        "options": a.options(),
        "inputs": n_inputs,
        "classes": n_classes,
        "paper_bits": paper_bits,
        "paper_kib": round(paper_bits / 8 / 1024, 4),
        "params_by_bits": {str(k): v for k, v in bits_by_width(terms).items()},
        "terms": [{"name": t.name, "count": t.count, "bits": t.bits} for t in terms],
    }
    if a.is_binary:
        n_outputs = 1 if n_classes == 1 else n_classes
        result["packed_tensor_bytes"] = packed_tensor_bytes(a, n_inputs, n_outputs)
        result["packed_bytes"] = packed_file_bytes(a, n_inputs, n_classes)
    else:
        result["packed_bytes"] = None
        result["packed_note"] = "float baselines have no packed form; they are exported as TFLite"
    if as_json:
        _print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"{a.notation()}  ({n_inputs} inputs, {n_classes} outputs)")
    table.add_column("term")
    table.add_column("values", justify="right")
    table.add_column("bits each", justify="right")
    table.add_column("KiB", justify="right")
    for t in terms:
        table.add_row(t.name, str(t.count), str(t.bits), f"{t.total_bits / 8192:.2f}")
    table.add_row("[b]paper size (eq. 4-7)[/b]", "", "", f"[b]{result['paper_kib']:.2f}[/b]")
    console = _console()
    console.print(table)
    if result["packed_bytes"] is not None:
        console.print(f"packed .rbm file: {result['packed_bytes']} bytes "
                      f"({result['packed_bytes'] / 1024:.2f} KiB; tensors {result['packed_tensor_bytes']} bytes)")
    else:
        console.print(result["packed_note"])


@main.command("paper-sizes")
@click.option("--json", "as_json", is_flag=True)
def paper_sizes(as_json):
    """Eq. 4-7 against every row of the paper's Tables IV, V and VII, with the explanation that fits."""
    from dataclasses import asdict

    from .size import compare_with_paper

    rows = compare_with_paper()
    if as_json:
        _print_json([{**asdict(r), "difference_kib": round(r.difference_kib, 4)} for r in rows])
        return
    from rich.table import Table

    table = Table(title="Model size (KiB): paper's tables vs eq. 4-7")
    for col in ("table", "variant", "paper", "ours (pool 8)", "explained", "explanation"):
        table.add_column(col, justify="right" if col in ("paper", "ours (pool 8)", "explained") else "left")
    for r in rows:
        table.add_row(r.table, r.variant, f"{r.paper_kib:.2f}", f"{r.ours_kib:.2f}", f"{r.explained_kib:.2f}",
                      r.explanation)
    _console().print(table)


# -- info ---------------------------------------------------------------------
@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def info(model, as_json):
    """Architecture, sizes, labels, accuracy and provenance of MODEL."""
    from .models import model_summary, resolve_model_path
    from .model_file import load_packed_model

    path = resolve_model_path(model)
    summary = model_summary(load_packed_model(path), path)
    if as_json:
        _print_json(summary)
        return
    console = _console()
    options = ", ".join(f"{k} {v}" for k, v in summary["options"].items()) if isinstance(summary["options"], dict) \
        else str(summary["options"])
    console.print(f"[b]{summary['name'] or path.name}[/b]  {summary['arch']}  ({options})")
    console.print(f"file: {path} ({summary['file_bytes']} bytes = {summary['file_bytes'] / 1024:.2f} KiB); "
                  f"paper formula: {summary['paper_kib']:.2f} KiB")
    inp = summary["input"]
    console.print(f"input: {inp['kind']}, {inp['size']} values"
                  + (f", vocabulary of {summary['vocab_words']} words" if summary["vocab_words"] else ""))
    console.print(f"labels ({summary['output_activation']}): {', '.join(summary['labels'])}")
    for title in ("accuracy", "provenance"):
        if summary[title]:
            console.print(f"{title}:")
            for line in _readable(summary[title]):
                console.print("  " + line, markup=False, highlight=False)


def _readable(value, indent: str = ""):
    """Lines of ``key: value`` for nested dicts and lists (no Python reprs, no JSON braces)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)):
                yield f"{indent}{k}:"
                yield from _readable(v, indent + "  ")
            elif isinstance(v, list):
                yield f"{indent}{k}: {', '.join(map(_scalar, v))}"
            else:
                yield f"{indent}{k}: {_scalar(v)}"
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list)):
                yield f"{indent}-"
                yield from _readable(v, indent + "  ")
            else:
                yield f"{indent}- {_scalar(v)}"
    else:
        yield indent + _scalar(value)


def _scalar(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


# -- classify -----------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pbm", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
CSV_FIELDS = ("input", "label", "confidence", "total_us", "decode_us", "preprocess_us", "inference_us",
              "backend", "kernel", "error")


def _expand_inputs(paths, kind: str):
    """Files in command-line order; a directory gives its files (recursively, sorted) whose suffix fits
    the model (images, or .txt for text models); ``-`` is standard input."""
    suffixes = TEXT_SUFFIXES if kind == "text" else IMAGE_SUFFIXES
    for path in paths:
        if str(path) == "-":
            yield path
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                yield path, f"no {'/'.join(suffixes)} files in this directory"
            yield from found
        else:
            yield path


@main.command()
@click.argument("model")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--text", "texts", multiple=True, help="text to classify (repeatable)")
@backend_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON array (the same as --format json)")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl", "csv"]), default=None,
              help="text (default), json (one array), jsonl (one object per line, as results come) or csv")
@user_errors
def classify(model, inputs, texts, backend, as_json, fmt):
    """Classify image files, text files (.txt; - reads standard input) or --text strings with MODEL.

    A directory stands for the files in it that fit the model (images, or .txt for a text model). A file
    that cannot be read or decoded is reported and skipped; the exit status is 1 at the end if any input
    failed or was refused."""
    import csv

    from .engines import create
    from .models import load_model

    fmt = fmt or ("json" if as_json else "text")
    if not inputs and not texts:
        raise click.UsageError("give image or text files, a directory, - (standard input) or --text")
    if inputs and texts:
        raise click.UsageError("give files or --text, not both")
    packed = load_model(model)
    engine = create(packed, backend)
    kind = packed.input_spec.kind
    if kind not in ("image", "text"):
        raise click.ClickException(f"model {model!r} takes raw {kind} vectors: use the Python API or POST /v2/...")
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    results, failed = [], 0

    def emit(r):
        r.setdefault("backend", engine.name)
        r.setdefault("kernel", engine.kernel)
        if fmt == "json":
            results.append(r)
        elif fmt == "jsonl":
            click.echo(json.dumps(r, ensure_ascii=False))
        elif fmt == "csv":
            row = dict(r)
            if r.get("probabilities"):
                row["confidence"] = f"{max(r['probabilities']):.4f}"
            writer.writerow(row)
        elif "error" in r:
            click.echo(f"{r['input']}: error: {r['error']}", err=True)
        elif r["label"] is None:
            click.echo(f"{r['input']}: refused ({r['reason']})")
        else:
            click.echo(f"{r['input']}: {r['label']} ({max(r['probabilities']):.3f})  "
                       f"[{r['total_us']:.0f} us: decode {r.get('decode_us', 0):.0f}, preprocess "
                       f"{r.get('preprocess_us', 0):.0f}, inference {r['inference_us']:.1f}]")

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= 60 else text[:57] + "..."

    items = [(t, None) for t in texts] if texts else _expand_inputs(inputs, kind)
    for item in items:
        if isinstance(item, tuple) and item[1] is not None:  # an empty directory
            failed += 1
            emit({"input": str(item[0]), "error": item[1]})
            continue
        item = item[0] if isinstance(item, tuple) else item
        name = short(item) if texts else ("<stdin>" if str(item) == "-" else str(item))
        try:
            if texts:
                pred = engine.predict_text(item)
            else:
                data = sys.stdin.buffer.read() if str(item) == "-" else item.read_bytes()
                if kind == "text":
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
                    pred = engine.predict_text(text)
                else:
                    pred = engine.predict_image(data)  # decode, preprocess and inference, timed
        except (OSError, ValueError) as exc:  # unreadable, not an image (ImageError is a ValueError), bad text
            failed += 1
            emit({"input": name, "error": exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)})
            continue
        r = {"input": name, **pred.to_dict(timing=True)}
        failed += r["label"] is None  # the same inputs are refused everywhere (HTTP answers 422)
        emit(r)
    if fmt == "json":
        _print_json(results)
    if failed:
        raise SystemExit(1)


# -- eval ---------------------------------------------------------------------
@main.command("eval")
@click.argument("model")
@backend_option
@click.option("--dataset", type=click.Choice(["mnist", "imdb", "cifar10"]), default=None,
              help="data set (default: the one in the model's metadata)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="evaluate an evenly spaced subset")
@click.option("--batch-size", type=click.IntRange(1, 100000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def evaluate(model, backend, dataset, split, limit, batch_size, as_json):
    """Accuracy of MODEL on its data set's test split, from the local data cache (no TensorFlow)."""
    import time

    import numpy as np

    from .engines import create
    from .datasets import DatasetMissing, dataset_of_model, model_inputs
    from .models import load_model

    packed = load_model(model)
    engine = create(packed, backend)
    name = dataset or dataset_of_model(packed)
    try:
        q, labels = model_inputs(packed, split=split, limit=limit, dataset=name)
    except DatasetMissing as exc:
        from .datasets import data_dir

        raise click.ClickException(
            f"{exc}\nOn a device without a checkout: copy the cache over from a machine that has it, e.g. "
            f"`scp -r ~/.cache/edge-rbmlp/data/{name} pi@raspberrypi.local:{data_dir()}/` (the same layout), "
            f"or point EDGE_RBMLP_DATA at a copy") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    start = time.perf_counter()
    predicted = np.concatenate([engine.predict_class(q[i:i + batch_size]) for i in range(0, len(q), batch_size)]) \
        if len(q) else np.zeros(0, np.int64)
    seconds = time.perf_counter() - start
    result = {
        "model": packed.name or str(model),
        "arch": packed.arch.notation(),
        "dataset": name,
        "split": split,
        "n": int(len(labels)),
        "correct": int((predicted == labels).sum()),
        "accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "backend": engine.name,
        "kernel": engine.kernel,
        "seconds": round(seconds, 4),
    }
    if as_json:
        _print_json(result)
    else:
        click.echo(f"{result['model']} ({result['arch']}) on {name} {split}: accuracy {result['accuracy']:.4f} "
                   f"({result['correct']}/{result['n']}), backend {engine.name} [{engine.kernel}], "
                   f"{seconds:.2f} s")


# -- demo (the README's `make run` until the service lands) --------------------
@main.command()
@backend_option
@user_errors
def demo(backend):
    """Classify the bundled sample digits and reviews with the bundled models."""
    from .engines import create
    from .models import bundled_models, load_model
    from .samples import SAMPLES_DIR

    models = bundled_models()
    if not models:
        raise click.ClickException("no bundled models are installed (make models trains them)")
    console = _console()
    for name in models:
        model = load_model(name)
        engine = create(model, backend)
        console.print(f"[b]{name}[/b] {model.arch.notation()} ({model.file_bytes} bytes), "
                      f"backend {engine.name}, kernel {engine.kernel}")
        if model.input_spec.kind == "image":
            for path in sorted(SAMPLES_DIR.glob("*.png")):
                pred = engine.predict_image(path.read_bytes())
                console.print(f"  {path.name}: {pred.label} ({pred.confidence:.3f})")
        elif model.input_spec.kind == "text":
            for path in sorted(SAMPLES_DIR.glob("*.txt")):
                pred = engine.predict_text(path.read_text(encoding="utf-8"))
                console.print(f"  {path.name}: {pred.label} ({max(pred.probabilities):.3f})")


# -- bench (the native engine against reference / TFLite / LCE: edge_rbmlp/bench.py) --
@main.command()
@click.argument("model")
@click.option("--backends", default=None,
              help="comma-separated: native, reference, tflite (float, int8, F- float), lce; named backends "
                   "must run (else an error naming what to install); default: all, skipping (with the "
                   "reason) the ones not installed here")
@click.option("--batch", type=click.IntRange(1, 1 << 16), default=256, show_default=True,
              help="batch size of the throughput measurement")
@click.option("--rounds", type=click.IntRange(1, 10000), default=30, show_default=True,
              help="interleaved rounds (every backend runs once per round)")
@click.option("--calls", type=click.IntRange(1, 10**7), default=2000, show_default=True,
              help="batch-1 calls per backend in total")
@click.option("--kernel", default=None, help="force a native kernel variant (default: the best for this CPU)")
@click.option("--no-memory", is_flag=True, help="skip the per-backend child processes (load time, RSS)")
@click.option("--no-e2e", is_flag=True, help="skip the end-to-end rows (PNG bytes, a 640x480 frame, a JPEG -> "
              "Prediction, with the decode/preprocess/inference split, beside a Pi tutorial's TFLite path)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON (rows: one per backend/variant/batch)")
@user_errors
def bench(model, backends, batch, rounds, calls, kernel, no_memory, no_e2e, as_json):
    """Latency (batch 1), throughput (batch N), load time, RSS and size of MODEL on each backend."""
    from .bench import BACKEND_NAMES, format_table, run

    strict = backends is not None
    names = [b.strip() for b in (backends or ",".join(BACKEND_NAMES)).split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKEND_NAMES]
    if unknown or not names:
        raise click.ClickException(f"unknown backend(s) {unknown}; choose from {', '.join(BACKEND_NAMES)}")
    result = run(model, names, batch=batch, rounds=rounds, calls=calls, kernel=kernel,
                 measure_memory=not no_memory, strict=strict, e2e=not no_e2e)
    if as_json:
        meta = {"model": result["model"], "arch": result["arch"], "inputs": result["inputs"],
                "cpu": result["machine"].get("cpu"), "machine": result["machine"].get("machine")}
        _print_json([dict(row, **meta) for row in result["rows"]])
    else:
        click.echo(format_table(result))


# -- serve, camera, bench-http (the device app: edge_rbmlp/server/cli_commands.py) --
from .server.cli_commands import register as _register_device_app  # noqa: E402

_register_device_app(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
