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

    return Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    console.print(f"[b]{summary['name'] or path.name}[/b]  {summary['arch']}  {summary['options']}")
    console.print(f"file: {path} ({summary['file_bytes']} bytes = {summary['file_bytes'] / 1024:.2f} KiB); "
                  f"paper formula: {summary['paper_kib']:.2f} KiB")
    inp = summary["input"]
    console.print(f"input: {inp['kind']}, {inp['size']} values"
                  + (f", vocabulary of {summary['vocab_words']} words" if summary["vocab_words"] else ""))
    console.print(f"labels ({summary['output_activation']}): {', '.join(summary['labels'])}")
    if summary["accuracy"]:
        console.print(f"accuracy: {json.dumps(summary['accuracy'])}")
    if summary["provenance"]:
        console.print(f"provenance: {json.dumps(summary['provenance'])}")


# -- classify -----------------------------------------------------------------
@main.command()
@click.argument("model")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--text", "texts", multiple=True, help="text to classify (repeatable)")
@click.option("--backend", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def classify(model, images, texts, backend, as_json):
    """Classify IMAGE files or --text strings with MODEL."""
    from .engines import create
    from .models import load_model

    if not images and not texts:
        raise click.UsageError("give image files or --text")
    if images and texts:
        raise click.UsageError("give image files or --text, not both")
    engine = create(load_model(model), backend)
    results = []
    if images:
        for path in images:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise click.ClickException(f"{path}: {exc}") from None
            try:
                pred = engine.predict_image(data)  # decode, preprocess and inference, timed
            except ValueError as exc:  # ImageError is a ValueError
                raise click.ClickException(f"{path}: {exc}") from None
            results.append({"input": str(path), **pred.to_dict(timing=True)})
    else:
        for text in texts:
            pred = engine.predict_text(text)
            results.append({"input": text if len(text) <= 60 else text[:57] + "...", **pred.to_dict(timing=True)})
    for r in results:
        r["backend"] = engine.name
        r["kernel"] = engine.kernel
    refused = [r for r in results if r["label"] is None]
    if as_json:
        _print_json(results)
    else:
        for r in results:
            if r["label"] is None:
                click.echo(f"{r['input']}: refused ({r['reason']})")
            else:
                click.echo(f"{r['input']}: {r['label']} ({max(r['probabilities']):.3f})  "
                           f"[{r['total_us']:.0f} us: decode {r['decode_us']:.0f}, preprocess "
                           f"{r['preprocess_us']:.0f}, inference {r['inference_us']:.1f}]")
    if refused:
        raise SystemExit(1)  # the same inputs are refused everywhere (HTTP answers 422)


# -- eval ---------------------------------------------------------------------
@main.command("eval")
@click.argument("model")
@click.option("--backend", default="auto", show_default=True)
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
        raise click.ClickException(str(exc)) from None
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
@click.option("--backend", default="auto", show_default=True)
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
