"""``edge-rbmlp bench``: the native engine against the reference engine, TFLite and LCE.

All backends run in one process, single-threaded, interleaved round by round
(so a noisy host slows every backend alike), on the same inputs:

* batch-1 latency through each runtime's Python API, per call:
  native ``predict_into`` (probabilities computed in C, into a preallocated
  array), reference ``logits_uint8``, TFLite ``set_tensor + invoke +
  get_tensor`` on an already converted input, LCE ``Interpreter.predict``;
* batch-256 throughput with the same calls;
* model load time, peak RSS and the RSS the backend adds to an idle
  interpreter, each measured in a fresh child process (``python -m
  edge_rbmlp.bench --child ...``), and the model file's size.

Text models add a row ``text-e2e``: one raw review tokenized and classified
by ``NativeEngine.predict_text`` (sparse path), to compare with the other
backends' inference alone on the dense multi-hot vector.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

BACKEND_NAMES = ("native", "reference", "tflite", "lce")


@dataclass
class Runner:
    backend: str
    variant: str
    runtime: str
    version: str
    file_bytes: int
    one: Callable[[int], object]          # batch-1 call on sample i
    big: Optional[Callable[[], object]]   # one batch-N call
    child_args: List[str] = field(default_factory=list)
    note: str = ""
    accuracy: Optional[float] = None      # end-to-end rows: share of the inputs answered correctly
    splits: Optional[list] = None         # end-to-end rows: the timing_us of each prediction made


def _rss_bytes() -> int:
    """Peak RSS of this process: VmHWM (ru_maxrss survives exec on Linux, so a child started by a
    big parent would report the parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return _rss_bytes()


def bench_inputs(model, n: int, seed: int = 0):
    """``q uint8 [n, size]``: real test inputs when the data cache has them, else random ones."""
    source = "random"
    try:
        from .datasets import model_inputs

        q, _ = model_inputs(model, "test", limit=n)
        if len(q) >= n:
            return np.ascontiguousarray(q[:n]), "test set"
    except Exception:
        pass
    rng = np.random.default_rng(seed)
    if model.input_spec.kind == "text":
        q = (rng.random((n, model.n_inputs)) < 0.02).astype(np.uint8)
    else:
        q = rng.integers(0, 256, (n, model.n_inputs)).astype(np.uint8)
    return q, source


def _make_engine(backend: str, variant: str, model, model_path: Path, kernel: Optional[str] = None):
    """The engine of one row, through the one backend registry (:func:`edge_rbmlp.engines.create`)."""
    from .engines import create
    from .models import sibling_path

    options: dict = {}
    if backend == "native":
        options = {"kernel": kernel}
    elif backend == "tflite":
        options = ({"variant": "float", "path": sibling_path(model_path, "F-float")} if variant == "F-float"
                   else {"variant": variant, "model_path": model_path})
    elif backend == "lce":
        options = {"model_path": model_path}
    return create(model, backend, **options)


def _runners(backend: str, model, model_path: Path, q1: np.ndarray, qb: np.ndarray, kernel=None) -> List[Runner]:
    """Every variant of ``backend`` for this model; raises BackendUnavailable when none runs."""
    from . import __version__ as our_version
    from .engines.base import BackendUnavailable

    file_bytes = model_path.stat().st_size
    runners = []
    if backend == "native":
        eng = _make_engine("native", "binary", model, model_path, kernel)
        out1 = np.empty((1, eng.predict_uint8(q1[:1]).shape[1]), np.float32)
        outb = np.empty((len(qb), out1.shape[1]), np.float32)
        rows = [np.ascontiguousarray(q1[i:i + 1]) for i in range(len(q1))]
        runners.append(Runner("native", "binary", f"edge-rbmlp native ({eng.kernel})", our_version, file_bytes,
                              lambda i: eng.predict_into(rows[i], out1), lambda: eng.predict_into(qb, outb),
                              ["native", "binary"] + ([kernel] if kernel else [])))
        if model.input_spec.kind == "text":
            idx = [np.flatnonzero(r).astype(np.int32) for r in q1]
            offs = [np.array([0, len(ix)], np.int64) for ix in idx]
            runners.append(Runner("native", "binary-sparse", f"edge-rbmlp native ({eng.kernel}), active indices",
                                  our_version, file_bytes,
                                  lambda i: eng.predict_indices_into(idx[i], offs[i], out1), None,
                                  ["native", "binary"] + ([kernel] if kernel else [])))
        return runners
    if backend == "reference":
        eng = _make_engine("reference", "binary", model, model_path)
        rows = [np.ascontiguousarray(q1[i:i + 1]) for i in range(len(q1))]
        runners.append(Runner("reference", "binary", "edge-rbmlp reference (numpy)", np.__version__, file_bytes,
                              lambda i: eng.logits_uint8(rows[i]), lambda: eng.logits_uint8(qb),
                              ["reference", "binary"]))
        return runners
    from .models import sibling_path

    variants = {"tflite": ["float", "int8", "F-float"], "lce": ["lce"]}[backend]
    errors = []
    for variant in variants:
        if variant == "F-float" and sibling_path(model_path, "F-float") is None:
            continue
        try:
            e1 = _make_engine(backend, variant, model, model_path)
            eb = _make_engine(backend, variant, model, model_path)
        except BackendUnavailable as exc:
            errors.append(str(exc))
            continue
        if backend == "tflite":
            e1._resize(1)
            eb._resize(len(qb))
        xs = [e1.prepare_input(q1[i:i + 1]) for i in range(len(q1))]
        xb = eb.prepare_input(qb)
        fb = e1.path.stat().st_size
        runners.append(Runner(backend, variant if backend == "tflite" else "binary-lce", e1.runtime, e1.version, fb,
                              (lambda e, xs: (lambda i: e.run_prepared(xs[i])))(e1, xs),
                              (lambda e, x: (lambda: e.run_prepared(x)))(eb, xb),
                              [backend, variant], note=str(e1.path.name)))
    if not runners:
        # every variant fails the same way when the runtime is missing: say it once
        raise BackendUnavailable("; ".join(dict.fromkeys(errors)) or f"backend {backend!r} has nothing to run")
    for err in errors:
        print(f"edge-rbmlp bench: warning: {err}", file=sys.stderr)
    return runners


def _child_measure(args: List[str]) -> dict:
    """In a fresh interpreter: load time, peak RSS, RSS added by loading and running the backend."""
    cmd = [sys.executable, "-m", "edge_rbmlp.bench", "--child"] + args
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["child failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def child_main(argv: List[str]) -> int:
    model_path, backend, variant = Path(argv[0]), argv[1], argv[2]
    kernel = argv[3] if len(argv) > 3 else None
    from .model_file import load_packed_model

    model = load_packed_model(model_path)
    q, _ = bench_inputs(model, 256)
    # import the runtime first: load_ms is the engine's own load, not the import of its library
    if backend == "tflite":
        from .engines.tflite import tflite_runtime

        tflite_runtime()
    elif backend == "lce":
        from .engines.tflite import lce_runtime

        lce_runtime()
    elif backend == "native":
        from .engines import native  # noqa: F401
    base = _current_rss_bytes()
    t0 = time.perf_counter()
    model2 = load_packed_model(model_path)  # the whole load: read + validate + prepare
    eng = _make_engine(backend, variant, model2, model_path, kernel)
    load_ms = (time.perf_counter() - t0) * 1e3
    for i in range(50):
        eng.logits_uint8(q[i % len(q):i % len(q) + 1])
    for _ in range(3):
        eng.logits_uint8(q)
    print(json.dumps({"load_ms": load_ms, "peak_rss_bytes": _rss_bytes(),
                      "rss_added_bytes": max(0, _current_rss_bytes() - base)}))
    return 0


def run(model_arg: str, backends: List[str], batch: int = 256, rounds: int = 30, calls: int = 200,
        kernel: Optional[str] = None, measure_memory: bool = True, progress=None, strict: bool = True,
        e2e: bool = True) -> dict:
    """Measure ``backends`` on one model. ``strict``: a backend that cannot run is an error
    (BackendUnavailable); otherwise it is skipped with its reason on stderr and in ``skipped``."""
    from .models import resolve_model_path
    from .model_file import load_packed_model

    model_path = resolve_model_path(model_arg)
    model = load_packed_model(model_path)
    q1, source = bench_inputs(model, 64)
    qb, _ = bench_inputs(model, batch, seed=1)
    from .engines.base import BackendUnavailable

    runners: List[Runner] = []
    skipped: Dict[str, str] = {}
    for b in backends:
        try:
            runners.extend(_runners(b, model, model_path, q1, qb, kernel))
        except BackendUnavailable as exc:
            if strict:
                raise
            skipped[b] = str(exc)
            print(f"edge-rbmlp bench: skipping backend {b!r}: {exc}", file=sys.stderr)
    if not runners:
        raise BackendUnavailable("no backend could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    extra: List[Runner] = []
    if model.input_spec.kind == "text" and "native" in backends:
        extra.append(_text_runner(model, model_path, kernel))
    if e2e and model.input_spec.kind == "image":
        extra.extend(_e2e_runners(model, model_path, kernel, backends))
    everyone = runners + extra
    lat: Dict[int, List[float]] = {i: [] for i in range(len(everyone))}
    big: Dict[int, List[float]] = {i: [] for i in range(len(runners))}
    # warm-up
    for r in everyone:
        for i in range(20):
            r.one(i % 64)
        if r.big:
            r.big()
    perf = time.perf_counter_ns
    for rnd in range(rounds):
        for k, r in enumerate(everyone):
            samples = lat[k]
            for c in range(calls // rounds + 1):
                i = (rnd * 7 + c) % 64
                t0 = perf()
                r.one(i)
                samples.append((perf() - t0) / 1e3)
        for k, r in enumerate(runners):
            if r.big is not None:
                t0 = perf()
                r.big()
                big[k].append((perf() - t0) / 1e3)
        if progress:
            progress(rnd + 1, rounds)
    rows = []
    mem_cache: Dict[tuple, dict] = {}
    for k, r in enumerate(everyone):
        mem = {}
        if measure_memory and r.child_args:
            key = tuple(r.child_args)
            if key not in mem_cache:
                mem_cache[key] = _child_measure([str(model_path)] + r.child_args)
            mem = mem_cache[key]
        s = np.array(lat[k])
        base = {"backend": r.backend, "variant": r.variant, "runtime": r.runtime, "version": r.version,
                "file_bytes": r.file_bytes, "load_ms": mem.get("load_ms"), "peak_rss_bytes": mem.get("peak_rss_bytes"),
                "rss_added_bytes": mem.get("rss_added_bytes"), "threads": 1}
        if "error" in mem:
            base["memory_error"] = mem["error"]
        if r.accuracy is not None:
            base["accuracy"] = r.accuracy
        if r.splits:
            for key in ("decode_us", "preprocess_us", "inference_us", "total_us"):
                base[key] = float(np.median([t[key] for t in r.splits]))
        if r.note:
            base["file"] = r.note
        rows.append(dict(base, batch=1, p50_us=float(np.percentile(s, 50)), p99_us=float(np.percentile(s, 99)),
                         throughput_per_s=float(1e6 / np.mean(s)), calls=int(len(s))))
        if k < len(runners) and big[k]:
            b = np.array(big[k])
            rows.append(dict(base, batch=batch, p50_us=float(np.percentile(b, 50)),
                             p99_us=float(np.percentile(b, 99)), throughput_per_s=float(batch * 1e6 / np.median(b)),
                             calls=int(len(b))))
    return {"model": str(model_path), "arch": model.arch.notation(), "inputs": source,
            "machine": _machine(), "rows": rows, "skipped": skipped}


def camera_frame(digit: np.ndarray, rng, size=(480, 640), height: int = 120) -> np.ndarray:
    """A camera-like grey frame of an MNIST digit: dark ink on unevenly lit paper, the digit about
    ``height`` pixels high off the centre, blurred by resampling, with sensor noise."""
    from PIL import Image

    H, W = size
    ink = np.asarray(Image.fromarray(digit).resize((height, height), Image.BILINEAR), np.float32) / 255.0
    paper = np.linspace(150, 215, W, dtype=np.float32)[None, :] * np.linspace(0.9, 1.05, H, dtype=np.float32)[:, None]
    frame = paper.copy()
    y, x = H // 2 - height // 2 + int(rng.integers(-40, 40)), W // 2 - height // 2 + int(rng.integers(-80, 80))
    patch = frame[y:y + height, x:x + height]
    frame[y:y + height, x:x + height] = patch * (1 - ink) + 35.0 * ink
    frame += rng.normal(0, 5, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def e2e_inputs(model, n: int = 64) -> dict:
    """What a user hands the image path, made of real test digits when the data cache has them:
    the 28x28 digits as PNG bytes, 640x480 camera frames (arrays) and the same frames as JPEG bytes."""
    import io

    from PIL import Image

    spec = model.input_spec
    try:
        from .datasets import model_inputs

        q, labels = model_inputs(model, "test", limit=n)
        q, labels, source = q[:n], [model.labels[int(v)] for v in labels[:n]], "test set"
    except Exception:
        q, _ = bench_inputs(model, n)
        labels, source = None, "random"
    digits = [row.reshape(spec.height, spec.width) for row in q]
    rng = np.random.default_rng(5)

    def encode(arr, fmt, **kw):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **kw)
        return buf.getvalue()

    frames = [camera_frame(d, rng) for d in digits]
    return {"png": [encode(d, "PNG") for d in digits], "frame": frames,
            "jpeg": [encode(f, "JPEG", quality=85) for f in frames], "labels": labels, "source": source}


def _accuracy(answers: List[Optional[str]], labels) -> Optional[float]:
    if labels is None:
        return None
    return float(np.mean([a == t for a, t in zip(answers, labels)]))


def _e2e_runners(model, model_path: Path, kernel, backends: List[str]) -> List[Runner]:
    """End-to-end rows of an image model: bytes or frame -> Prediction through the engine (the split
    recorded), a numpy ``astype(float32)`` pass over the frame as the yardstick, and the way a Pi
    tutorial classifies the same inputs with TFLite int8 (PIL decode, resize to 28x28, normalize,
    invoke), each with its accuracy on these inputs."""
    import io

    from PIL import Image

    from . import __version__ as our_version
    from .engines.base import BackendUnavailable

    data = e2e_inputs(model)
    labels = data["labels"]
    file_bytes = model_path.stat().st_size
    runners: List[Runner] = []
    if "native" in backends:
        eng = _make_engine("native", "binary", model, model_path, kernel)
        for kind, what in (("png", "28x28 PNG bytes"), ("frame", "640x480 grey frame"),
                           ("jpeg", "640x480 JPEG bytes")):
            items = data[kind]
            answers = [p.label for p in eng.predict_images(items)]
            splits: list = []

            def one(i, items=items, splits=splits):
                pred = eng.predict_image(items[i])
                splits.append(pred.timing_us)
                return pred

            runners.append(Runner("native", f"e2e-{kind}", f"edge-rbmlp native ({eng.kernel}): {what} -> Prediction",
                                  our_version, file_bytes, one, None, [], accuracy=_accuracy(answers, labels),
                                  splits=splits))
        frames = data["frame"]
        runners.append(Runner("numpy", "astype-frame", "numpy: one astype(float32) pass over the 640x480 frame "
                              "(the yardstick)", np.__version__, 0, lambda i: frames[i].astype(np.float32), None, []))
    if "tflite" in backends:
        try:
            e = _make_engine("tflite", "int8", model, model_path)
        except BackendUnavailable as exc:
            print(f"edge-rbmlp bench: no tutorial rows: {exc}", file=sys.stderr)
            return runners
        e._resize(1)
        spec = model.input_spec

        def tutorial(item):
            img = Image.open(io.BytesIO(item)) if isinstance(item, bytes) else Image.fromarray(item)
            img = img.convert("L").resize((spec.width, spec.height))
            arr = np.asarray(img, dtype=np.uint8)
            if arr.mean() > 127:  # white paper: invert, as the tutorials do
                arr = 255 - arr
            out = e.run_prepared(e.prepare_input(arr.reshape(1, -1)))
            return model.labels[int(np.argmax(out[0]))] if out.shape[1] > 1 else model.labels[int(out[0, 0] > 0.5)]

        for kind in ("png", "frame"):
            items = data[kind]
            answers = [tutorial(item) for item in items]
            runners.append(Runner("tflite", f"tutorial-{kind}", f"{e.runtime} int8, tutorial path: PIL decode, "
                                  "resize, normalize, invoke", e.version, e.path.stat().st_size,
                                  (lambda items: (lambda i: tutorial(items[i])))(items), None, [],
                                  accuracy=_accuracy(answers, labels)))
    return runners


def _text_runner(model, model_path: Path, kernel) -> Optional[Runner]:
    from . import __version__ as our_version
    from .engines.native import NativeEngine

    eng = NativeEngine(model, kernel=kernel)
    texts = None
    try:
        from .datasets import load_imdb_reviews

        texts, _ = load_imdb_reviews("test")
        texts = texts[:64]
    except Exception:
        rng = np.random.default_rng(3)
        vocab = model.vocab
        texts = [" ".join(vocab[j] for j in rng.integers(0, len(vocab), 230)) for _ in range(64)]
    return Runner("native", "text-e2e", f"edge-rbmlp native ({eng.kernel}): tokenize + infer one raw text",
                  our_version, model_path.stat().st_size, lambda i: eng.predict_text(texts[i]), None, [])


def _machine() -> dict:
    import platform

    info = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from .engines.native import available_kernels, best_kernel

        info["native_kernels"] = available_kernels()
        info["native_best"] = best_kernel()
    except Exception:
        pass
    return info


def format_table(result: dict) -> str:
    rows = result["rows"]
    ref = {}
    for r in rows:
        ref[(r["backend"], r["variant"], r["batch"])] = r
    nat1 = ref.get(("native", "binary", 1))
    lines = [f"model {result['model']} ({result['arch']}), inputs: {result['inputs']}, "
             f"{result['machine'].get('cpu', result['machine'].get('machine'))}",
             f"{'backend':10s} {'variant':14s} {'batch':>5s} {'p50 us':>9s} {'p99 us':>9s} {'samples/s':>11s} "
             f"{'vs native':>9s} {'load ms':>8s} {'peak RSS':>9s} {'+RSS':>8s} {'file B':>8s}  runtime"]
    for r in rows:
        ratio = ""
        if nat1 and r["batch"] == 1 and r is not nat1:
            ratio = f"{r['p50_us'] / nat1['p50_us']:.1f}x"
        if r["variant"].startswith("tutorial-"):  # against our own end-to-end row on the same inputs
            ours = ref.get(("native", "e2e-" + r["variant"][len("tutorial-"):], 1))
            ratio = f"{r['p50_us'] / ours['p50_us']:.1f}x e2e" if ours else ""
        if r["batch"] != 1:
            nb = ref.get(("native", "binary", r["batch"]))
            if nb and r is not nb:
                ratio = f"{nb['throughput_per_s'] / r['throughput_per_s']:.1f}x"
        mb = lambda v: "" if v is None else f"{v / 2**20:.1f}M"  # noqa: E731
        kb = lambda v: "" if v is None else f"{v / 1024:.0f}K"  # noqa: E731
        lines.append(f"{r['backend']:10s} {r['variant']:14s} {r['batch']:5d} {r['p50_us']:9.2f} {r['p99_us']:9.2f} "
                     f"{r['throughput_per_s']:11.0f} {ratio:>9s} "
                     f"{'' if r['load_ms'] is None else format(r['load_ms'], '.1f'):>8s} {mb(r['peak_rss_bytes']):>9s} "
                     f"{kb(r.get('rss_added_bytes')):>8s} {r['file_bytes']:8d}  {r['runtime']} {r['version']}"
                     + (f"  [decode {r['decode_us']:.0f} + preprocess {r['preprocess_us']:.0f} + inference "
                        f"{r['inference_us']:.1f} us]" if "decode_us" in r else "")
                     + (f"  accuracy {r['accuracy']:.3f}" if "accuracy" in r else ""))
    lines.append("vs native: batch 1 = how many times the native p50 latency; batch N = how many times "
                 "fewer samples/s than native; tutorial rows against native e2e on the same inputs")
    frame, yard = ref.get(("native", "e2e-frame", 1)), ref.get(("numpy", "astype-frame", 1))
    if frame and yard:
        lines.append(f"a 640x480 frame -> Prediction takes {frame['p50_us'] / yard['p50_us']:.1f}x one numpy "
                     f"astype(float32) pass over it")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    print("usage: edge-rbmlp bench MODEL --backends native,reference,tflite,lce [--json]", file=sys.stderr)
    sys.exit(2)
