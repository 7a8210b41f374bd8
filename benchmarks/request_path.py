"""Where a request's time goes, in process (no server, no socket): the WSGI call of a bare
callable, of the smallest Flask app, of our app on a trivial route (Flask + our front and
hooks), and of our two hot routes (answered by server/fastpath.py, and through Flask with it
off) with the route's own time split (decode, preprocess, inference) taken from its answer;
plus the JSON encoding of one answer. Together with the
req/s on the wire (``load_test.py --compare``) this tells the server's share from the app's.

    .venv-test/bin/python benchmarks/request_path.py [--json] [--out benchmarks/results/request_path.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks" / "reference_services"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


SPLIT_SAMPLES = 201


def environ(method: str, path: str, body: bytes = b"", content_type: str = "") -> dict:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)) if body else "", "CONTENT_TYPE": content_type, "HTTP_HOST": "127.0.0.1",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.version": (1, 0), "wsgi.input_terminated": True}


def call(app, method, path, body=b"", content_type="") -> bytes:
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    result = app(environ(method, path, body, content_type), start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{method} {path}: {status[0]} {data[:200]!r}")
    return data


def per_call_us(fn, number: int, repeat: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--number", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import flask_minimal

    from edge_rbmlp.samples import SAMPLES_DIR
    from edge_rbmlp.server import ServerConfig, create_app

    png = sorted(SAMPLES_DIR.glob("*.png"))[0].read_bytes()
    review = sorted(SAMPLES_DIR.glob("*.txt"))[0].read_bytes()
    config = ServerConfig(models=["mnist", "imdb"])
    ours = create_app(config)
    # the same app with every request through Flask (server/fastpath.py off): what the fast path saves
    flask_only = create_app(config, served=ours.extensions["edge_rbmlp"].models, fast_path=False)

    def bare(environ_, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    cases = {
        "bare_wsgi": lambda: call(bare, "GET", "/"),
        "flask_minimal": lambda: call(flask_minimal.app, "GET", "/classify/mnist"),
        "ours_v2_live": lambda: call(ours, "GET", "/v2/health/live"),
        "ours_classify_mnist": lambda: call(ours, "POST", "/classify/mnist", png, "image/png"),
        "ours_classify_imdb": lambda: call(ours, "POST", "/classify/imdb", review, "text/plain; charset=utf-8"),
        "ours_classify_mnist_through_flask": lambda: call(flask_only, "POST", "/classify/mnist", png, "image/png"),
        "ours_classify_imdb_through_flask": lambda: call(flask_only, "POST", "/classify/imdb", review,
                                                         "text/plain; charset=utf-8"),
    }
    rows = {name: round(per_call_us(fn, args.number, args.repeat), 1) for name, fn in cases.items()}
    # the route's split: the median of each stage over many warm answers (one answer alone can
    # carry a collection pause or a cold cache and exceed the best-of WSGI call time)
    answers = {m: [json.loads(cases[f"ours_classify_{m}"]()) for _ in range(SPLIT_SAMPLES)] for m in ("mnist", "imdb")}
    split = {}
    for m, samples in answers.items():
        route = {k: round(statistics.median(a[k] for a in samples), 1)
                 for k in ("decode_us", "preprocess_us", "inference_us", "total_us") if k in samples[0]}
        split[m] = dict(route, wsgi_call_us=rows[f"ours_classify_{m}"],
                        dispatch_and_answer_us=round(rows[f"ours_classify_{m}"] - route.get("total_us", 0.0), 1))
    with ours.app_context():
        from flask import json as flask_json

        encode_us = round(per_call_us(lambda: ours.json.dumps(answers["mnist"][0]), args.number * 4, args.repeat), 2)
        default_us = round(per_call_us(lambda: json.dumps(answers["mnist"][0], ensure_ascii=False,
                                                          separators=(",", ":")), args.number * 4, args.repeat), 2)
        del flask_json
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "load_average": os.getloadavg()},
              "wsgi_call_us": rows, "route_split_us": split,
              "json_encode_mnist_answer_us": {"ours": encode_us, "json.dumps with the same options": default_us}}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in rows.items():
            print(f"  {k:22s} {v:8.1f} us per WSGI call")
        for m, sp in split.items():
            print(f"  {m}: " + ", ".join(f"{k} {v}" for k, v in sp.items()))
        print(f"  JSON of one mnist answer: {encode_us} us (json.dumps: {default_us} us)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
