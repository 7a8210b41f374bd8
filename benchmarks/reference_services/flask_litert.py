"""A digit classifier the way a Raspberry Pi tutorial writes one: Flask on waitress, Pillow to
decode, resize to 28x28, normalize to [0, 1], then ``ai-edge-litert``'s interpreter on the bundled
int8 TFLite model (``edge_rbmlp/models/mnist_int8.tflite``, the same network as our ``mnist``).

    python benchmarks/reference_services/flask_litert.py --port 0
    curl --data-binary @seven.png http://127.0.0.1:PORT/classify/mnist

It answers ``{"label": ..., "probabilities": [...]}`` like ours, so the load generator checks
its answers too. Needs the ``tflite`` extra (``pip install ai-edge-litert``).
"""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import numpy as np
from _runloop import arguments, serve_waitress
from flask import Flask, jsonify, request
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "edge_rbmlp" / "models" / "mnist_int8.tflite"


def create_app(model_path: Path) -> Flask:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise SystemExit("flask_litert needs ai-edge-litert: pip install 'ai-edge-litert>=1.4' "
                         "(the project's [tflite] extra)") from None
    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    lock = threading.Lock()  # one interpreter, as in the tutorials
    app = Flask(__name__)

    @app.post("/classify/<model>")
    def classify(model):
        img = Image.open(io.BytesIO(request.get_data())).convert("L").resize((28, 28))
        x = np.asarray(img, dtype=np.float32) / 255.0
        if x.mean() > 0.5:  # dark digit on light paper -> MNIST's light on dark
            x = 1.0 - x
        x = x.reshape(inp["shape"]).astype(inp["dtype"])
        with lock:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            probs = interpreter.get_tensor(out["index"])[0]
        index = int(np.argmax(probs))
        return jsonify({"label": str(index), "class_index": index, "probabilities": probs.tolist()})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


def main(argv=None) -> int:
    ap = arguments(__doc__, 8082)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    if not args.model.exists():
        print(f"no TFLite model at {args.model}: build one with benchmarks/build_comparison_models.py",
              file=sys.stderr)
        return 2
    return serve_waitress(create_app(args.model), args.host, args.port, args.threads)


if __name__ == "__main__":
    sys.exit(main())
