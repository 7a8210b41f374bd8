"""The smallest Flask app on waitress: one route returning a constant JSON (the floor of any Flask
service on this server; ours cannot be faster per request unless its server is faster).

    python benchmarks/reference_services/flask_minimal.py --port 0
    # prints "listening on http://127.0.0.1:PORT/"; POST or GET any path under /classify/
"""

from __future__ import annotations

import argparse
import sys

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/classify/<model>", methods=["GET", "POST"])
def classify(model):
    return jsonify({"model": model, "label": "7", "class_index": 7})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from waitress.server import create_server

    server = create_server(app, host=args.host, port=args.port, threads=args.threads)
    print(f"listening on http://{args.host}:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
