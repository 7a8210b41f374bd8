"""Per-reading accuracy of the whole reader pipeline, with and without voting.

Frames: a 4-digit counter made of real MNIST test digits (tests/meterkit.py: fixed positions, noisy,
unevenly lit paper or a dark display, camera shake), starting at 0427, each value shown for --hold
frames. Every frame goes through ROI crops -> one predict_images batch -> the reader's vote, exactly
as in the service. Two scenarios:

* same glyphs per value: a meter's digits keep their shape while light, noise and shake change
  (errors are correlated from frame to frame: voting can only remove the unlucky frames);
* new handwriting every frame: every frame draws new MNIST samples (independent errors).

Per frame the published reading is: correct, stale (the previous value: the vote lags a change),
misread (any other value: a wrong number published) or invalid (nothing published). Frames are
taken as 1 s apart; the row "3+rules" is vote 3 with monotonic = true and max_rate_per_hour at twice
the counter's true rate.

    .venv-test/bin/python benchmarks/reader_accuracy.py [--values 50 --hold 6 --votes 1 3 5 --json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import meterkit  # noqa: E402

from edge_rbmlp.readers import Reader, ReaderSet  # noqa: E402
from edge_rbmlp.server.config import ReaderConfig  # noqa: E402


def run(engine, x, y, new_glyphs: bool, values: int, hold: int, votes, seed: int, min_confidence: float):
    bank = meterkit.DigitBank(x, y, seed=seed)
    frames = meterkit.counter_sequence(bank, np.random.default_rng(seed), 427, values, hold,
                                       new_glyphs_every_frame=new_glyphs)
    rois = tuple(tuple(r) for r in meterkit.rois())
    first = ReaderConfig("v1", rois, vote=1, min_confidence=min_confidence)
    reader_set = ReaderSet([first], lambda m: engine)
    voters = {v: Reader(ReaderConfig(f"v{v}", rois, vote=v, min_confidence=min_confidence)) for v in votes if v != 1}
    voters["3+rules"] = Reader(ReaderConfig("rules", rois, vote=3, min_confidence=min_confidence, monotonic=True,
                                            max_rate_per_hour=2 * 3600.0 / hold))
    counts = {v: dict(correct=0, stale=0, misread=0, invalid=0) for v in [*votes, "3+rules"]}
    digits_right = digits = 0
    latency = []
    for i, (frame, truth) in enumerate(frames):
        reading = reader_set.read(frame, ts=float(i))[0]  # one frame a second
        raw = reader_set.readers[0].last_raw
        latency.append(raw.latency_us)
        digits += len(truth)
        digits_right += sum(d["label"] == c for d, c in zip(raw.digits, truth))
        results = {1: reading} if 1 in votes else {}
        for v, reader in voters.items():
            results[v] = reader.update(raw)
        previous = str(int(truth) - 1).zfill(len(truth))
        for v, r in results.items():
            key = ("invalid" if not r.valid else "correct" if r.value == truth else
                   "stale" if r.value == previous else "misread")
            counts[v][key] += 1
    n = len(frames)
    return {"frames": n, "digit_accuracy": digits_right / digits, "latency_us_p50": float(np.median(latency)),
            "by_vote": {str(v): {k: c / n for k, c in counts[v].items()} for v in counts}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mnist")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--values", type=int, default=50, help="counter values per scenario")
    ap.add_argument("--hold", type=int, default=6, help="frames per value")
    ap.add_argument("--votes", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--min-confidence", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import edge_rbmlp
    from edge_rbmlp.datasets import load_mnist

    engine = edge_rbmlp.load(args.model, args.backend)
    x, y = load_mnist("test")
    t0 = time.perf_counter()
    out = {"model": args.model, "backend": engine.name, "values": args.values, "hold": args.hold,
           "min_confidence": args.min_confidence, "seed": args.seed, "scenarios": {}}
    for name, new_glyphs in (("same glyphs per value", False), ("new handwriting every frame", True)):
        res = run(engine, x, y, new_glyphs, args.values, args.hold, args.votes, args.seed, args.min_confidence)
        out["scenarios"][name] = res
        print(f"\n{name}: {res['frames']} frames of a 4-digit counter ({args.hold} frames per value), "
              f"digit accuracy {res['digit_accuracy']:.3f}, reading latency p50 {res['latency_us_p50']:.0f} us")
        print(f"  {'vote':>7}  {'correct':>7}  {'stale':>6}  {'misread':>7}  {'invalid':>7}")
        for v, r in res["by_vote"].items():
            print(f"  {v:>7}  {r['correct']:7.3f}  {r['stale']:6.3f}  {r['misread']:7.3f}  {r['invalid']:7.3f}")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
