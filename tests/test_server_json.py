"""The service's JSON (server/app.py FastJSONProvider): orjson where it is a dependency, the standard
library's encoder otherwise, giving the same values; what orjson cannot take goes to the standard
encoder whole, with Flask's output for it."""

from __future__ import annotations

import datetime
import json
import platform
import sys
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from flask import Flask

from edge_rbmlp.server.app import FastJSONProvider

# the pyproject marker of the orjson dependency
ORJSON_IS_A_DEPENDENCY = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64", "armv7l")


@dataclass
class Point:
    x: int
    y: float


def provider() -> FastJSONProvider:
    return FastJSONProvider(Flask(__name__))


def std(p: FastJSONProvider, obj) -> bytes:
    return p._std_encode(obj).encode("utf-8")


PAYLOADS = [
    {"model": "mnist", "label": "7", "class_index": 7,
     "probabilities": [7.939102601994819e-07, 2.1415522155621147e-07, 2.0824565581278875e-05, 0.999891996383667,
                       2.517538261193053e-11, 1.0, 0.0, 5e-324, 1.7976931348623157e308],
     "latency_us": 123.4, "decode_us": 62.9, "backend": "native", "kernel": "avx2"},
    {"error": "Zeichen: äöü – 日本語 \u2028 \"quoted\" \\ back", "label": None, "reason": "no digit"},
    {"nested": [[1, 2], {"a": [True, False, None]}], "empty": {}, "list": []},
    {1: "int key", 2.5: "float key", None: "none key"},
    {"numpy": np.arange(4, dtype=np.int64), "f32": np.float32(0.1), "scalar": np.int32(-3),
     "matrix": np.eye(2, dtype=np.float32)},
    {"big": 2 ** 70, "negative": -(2 ** 64)},
    {"when": datetime.datetime(2026, 12, 1, 21, 30, 5, tzinfo=datetime.timezone.utc), "day": datetime.date(2026, 12, 1)},
    {"point": Point(1, 2.5), "id": uuid.UUID(int=12345)},
]


@pytest.mark.parametrize("i", range(len(PAYLOADS)))
def test_same_values_as_the_standard_encoder(i):
    p = provider()
    obj = PAYLOADS[i]
    fast, slow = p.dumps_bytes(obj), std(p, obj)
    assert json.loads(fast) == json.loads(slow)
    assert p.dumps(obj) == fast.decode("utf-8")


def test_what_orjson_cannot_take_is_flasks_output_exactly():
    """Big integers, dates, dataclasses and UUIDs: the standard encoder with Flask's default
    (HTTP dates, dataclasses as dicts, UUIDs as strings), byte for byte."""
    p = provider()
    for obj in PAYLOADS[5:]:
        assert p.dumps_bytes(obj) == std(p, obj)
    assert json.loads(p.dumps_bytes(PAYLOADS[6]))["when"] == "Tue, 01 Dec 2026 21:30:05 GMT"


def test_compact_in_insertion_order_with_non_ascii_kept():
    assert provider().dumps_bytes({"z": [1, 2.5], "a": "äö"}) == '{"z":[1,2.5],"a":"äö"}'.encode("utf-8")


def test_floats_round_trip_exactly():
    p = provider()
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(200), rng.random(200).astype(np.float32).astype(np.float64) * 1e-6,
                             [1e-300, 3.0e38, 0.1, 1 / 3]]).tolist()
    assert json.loads(p.dumps_bytes(values)) == values


def test_a_response_is_the_encoding_and_a_newline():
    app = Flask(__name__)
    app.json = FastJSONProvider(app)
    with app.app_context():
        response = app.json.response({"a": 1.5, "b": [1, 2]})
    assert response.get_data() == b'{"a":1.5,"b":[1,2]}\n'
    assert response.mimetype == "application/json"


@pytest.mark.skipif(not ORJSON_IS_A_DEPENDENCY,
                    reason="orjson is a dependency on Linux x86_64/aarch64/armv7l only; here the standard encoder runs")
def test_orjson_encodes_where_it_is_a_dependency():
    import orjson  # a missing dependency is an error here, not a skip

    p = provider()
    assert p.encoder == "orjson"
    obj = PAYLOADS[0]
    assert p.dumps_bytes(obj) == orjson.dumps(obj)


def test_without_orjson_the_standard_encoder_runs(monkeypatch):
    import edge_rbmlp.server.app as app_module

    monkeypatch.setattr(app_module, "_orjson", lambda: None)
    p = provider()
    assert p.encoder == "json"
    for obj in PAYLOADS:
        assert p.dumps_bytes(obj) == std(p, obj)
