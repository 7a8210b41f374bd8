"""The smallest Flask app on waitress: one route returning a constant JSON (the floor of any Flask
service on this server; ours cannot be faster per request unless its server is faster).

    python benchmarks/reference_services/flask_minimal.py --port 0
    # prints "listening on http://127.0.0.1:PORT/"; POST or GET any path under /classify/
"""

from __future__ import annotations

import sys

from _runloop import arguments, serve_waitress
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/classify/<model>", methods=["GET", "POST"])
def classify(model):
    return jsonify({"model": model, "label": "7", "class_index": 7})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def main(argv=None) -> int:
    args = arguments(__doc__, 8081).parse_args(argv)
    return serve_waitress(app, args.host, args.port, args.threads)


if __name__ == "__main__":
    sys.exit(main())
