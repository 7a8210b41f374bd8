"""TensorFlow Serving's REST API: status, metadata, :predict with every instance form, bad requests."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from serverkit import drawn_seven, make_config, png_bytes, write_models
from test_server import check_error

from edge_rbmlp.server import create_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(make_config(write_models(tmp_path_factory.mktemp("models")), limits={"max_batch": 8}))


@pytest.fixture
def client(app):
    return app.test_client()


def test_status_and_metadata(client):
    status = client.get("/v1/models/mnist").get_json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert client.get("/v1/models/mnist/versions/1").status_code == 200
    check_error(client.get("/v1/models/mnist/versions/7"), 404, "version")
    meta = client.get("/v1/models/imdb/metadata").get_json()
    assert meta["model_spec"]["name"] == "imdb"
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
    check_error(client.get("/v1/models/nope"), 404, "unknown model")


def test_predict_forms_agree(app, client):
    engine = app.extensions["edge_rbmlp"].models["mnist"].engine
    q = np.random.default_rng(3).integers(0, 256, (2, 784)).astype(np.uint8)
    expected = engine.predict(q)
    for instances in (q.tolist(), q.reshape(2, 28, 28).tolist(), (q / 255.0).tolist(),
                      [{"input": row} for row in q.tolist()]):
        body = client.post("/v1/models/mnist:predict", json={"instances": instances}).get_json()
        got = np.array([p["probabilities"] for p in body["predictions"]])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
        assert [p["class_index"] for p in body["predictions"]] == expected.argmax(1).tolist()
    body = client.post("/v1/models/mnist:predict", json={"inputs": q.tolist()}).get_json()
    assert len(body["predictions"]) == 2
    png = png_bytes(drawn_seven())
    b64 = client.post("/v1/models/mnist:predict", json={"instances": [{"b64": base64.b64encode(png).decode()}],
                                                         "signature_name": "serving_default"}).get_json()
    direct = client.post("/classify/mnist", data=png, content_type="image/png").get_json()
    assert b64["predictions"][0]["class_index"] == direct["class_index"]


def test_predict_text(app, client):
    texts = ["a wonderful film", "boring"]
    body = client.post("/v1/models/imdb:predict", json={"instances": texts}).get_json()
    engine = app.extensions["edge_rbmlp"].models["imdb"].engine
    assert [p["label"] for p in body["predictions"]] == [engine.predict_text(t).label for t in texts]
    body = client.post("/v1/models/imdb:predict", json={"instances": [{"text": "great"}]}).get_json()
    assert len(body["predictions"]) == 1


@pytest.mark.parametrize("model,payload,status,words", [
    ("mnist", {"instances": [[1, 2, 3]]}, 400, ["784"]),
    ("mnist", {"instances": [[300] * 784]}, 400, ["[0, 255]"]),
    ("mnist", {"instances": [["x"] * 784]}, 400, ["numbers"]),
    ("mnist", {"instances": ["text for an image model"]}, 400, ["image"]),
    ("mnist", {"instances": [{"b64": "!!!"}]}, 400, ["base64"]),
    ("mnist", {"instances": [{"b64": base64.b64encode(b"junk").decode()}]}, 400, ["image"]),
    ("mnist", {"instances": [[0] * 784] * 9}, 413, ["limit"]),
    ("mnist", {"instances": []}, 400, ["empty"]),
    ("mnist", {"instances": 5}, 400, ["list"]),
    ("mnist", {"instances": [[0] * 784], "inputs": [[0] * 784]}, 400, ["exactly one"]),
    ("mnist", {}, 400, ["exactly one"]),
    ("mnist", {"instances": [[0] * 784], "signature_name": "other"}, 400, ["signature_name"]),
    ("mnist", {"instances": [[0] * 784], "extra": 1}, 400, ["unknown request keys"]),
    ("mnist", {"instances": [{"a": 1, "b": 2}]}, 400, ["one key"]),
    ("imdb", {"instances": [""]}, 400, ["empty"]),
    ("imdb", {"instances": [{"b64": base64.b64encode(b"x").decode()}]}, 400, ["image models"]),
    ("imdb", {"instances": [None]}, 400, ["expected"]),
    ("nope", {"instances": ["x"]}, 404, ["unknown model"]),
])
def test_bad_predict_requests(client, model, payload, status, words):
    check_error(client.post(f"/v1/models/{model}:predict", json=payload), status, *words)


def test_bad_bodies(client):
    check_error(client.post("/v1/models/imdb:predict", data=b"", content_type="application/json"), 400, "empty")
    check_error(client.post("/v1/models/imdb:predict", data=b"{x", content_type="application/json"), 400, "json")
    check_error(client.post("/v1/models/imdb:predict", data=b"[]", content_type="application/json"), 400, "object")
    check_error(client.post("/v1/models/imdb:predict", data=b"\xff", content_type="application/json"), 400, "json")
