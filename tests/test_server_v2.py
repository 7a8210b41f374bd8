"""The Open Inference Protocol (KServe v2): JSON tensors, the binary tensor extension,
an off-the-shelf client (tritonclient[http]) against a real server, and bad requests."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from serverkit import drawn_seven, make_config, png_bytes, running_server, write_models
from test_server import check_error

from edge_rbmlp.server import create_app


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def app(paths):
    return create_app(make_config(paths, limits={"max_batch": 16}))


@pytest.fixture
def client(app):
    return app.test_client()


def engine_probs(app, name, q):
    served = app.extensions["edge_rbmlp"].models[name]
    return served.engine.predict(np.asarray(q, np.uint8).reshape(-1, served.model.n_inputs))


def infer(client, model, tensor, **extra):
    return client.post(f"/v2/models/{model}/infer", json={"inputs": [tensor], **extra})


def test_health_and_metadata(client):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["name"] == "edge-rbmlp"
    meta = client.get("/v2/models/mnist").get_json()
    assert meta["name"] == "mnist" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 784]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "class_index", "label"]
    assert client.get("/v2/models/imdb").get_json()["inputs"][0]["datatype"] == "BYTES"
    assert client.get("/v2/models/imdb/ready").get_json() == {"name": "imdb", "ready": True}
    assert client.get("/v2/models/imdb/versions/1/ready").status_code == 200
    check_error(client.get("/v2/models/imdb/versions/2"), 404, "version")
    check_error(client.get("/v2/models/nope"), 404, "unknown model")
    check_error(client.get("/v2/models/nope/ready"), 404, "unknown model")


def test_uint8_fp32_int32_bool_and_shapes_agree(app, client):
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (3, 784)).astype(np.uint8)
    expected = engine_probs(app, "mnist", q)
    forms = [
        {"name": "input", "shape": [3, 784], "datatype": "UINT8", "data": q.reshape(-1).tolist()},
        {"name": "input", "shape": [3, 784], "datatype": "UINT8", "data": q.tolist()},  # nested data
        {"name": "input", "shape": [3, 28, 28], "datatype": "INT32", "data": q.reshape(-1).tolist()},
        {"name": "input", "shape": [3, 784], "datatype": "INT64", "data": q.reshape(-1).tolist()},
        {"name": "input", "shape": [3, 784], "datatype": "FP32", "data": (q / 255.0).reshape(-1).tolist()},
        {"name": "input", "shape": [3, 784], "datatype": "FP64", "data": (q / 255.0).reshape(-1).tolist()},
    ]
    for tensor in forms:
        body = infer(client, "mnist", tensor).get_json()
        out = {o["name"]: o for o in body["outputs"]}
        assert body["model_name"] == "mnist"
        assert out["probabilities"]["shape"] == [3, 10] and out["probabilities"]["datatype"] == "FP32"
        np.testing.assert_allclose(np.reshape(out["probabilities"]["data"], (3, 10)), expected, rtol=1e-5, atol=1e-7)
        assert out["class_index"]["data"] == expected.argmax(1).tolist()
        assert out["label"]["data"] == [str(i) for i in expected.argmax(1)]
    one = infer(client, "mnist", {"name": "input", "shape": [784], "datatype": "UINT8",
                                  "data": q[0].tolist()}).get_json()
    assert one["outputs"][0]["shape"] == [1, 10]
    bools = (q > 127)
    body = infer(client, "mnist", {"name": "input", "shape": [3, 784], "datatype": "BOOL",
                                   "data": bools.reshape(-1).tolist()}).get_json()
    np.testing.assert_allclose(np.reshape(body["outputs"][0]["data"], (3, 10)),
                               engine_probs(app, "mnist", bools.astype(np.uint8)), rtol=1e-5, atol=1e-7)


def test_text_bytes_input_and_requested_outputs(app, client):
    texts = ["a wonderful, moving film", "dull and far too long"]
    body = infer(client, "imdb", {"name": "text", "shape": [2], "datatype": "BYTES", "data": texts},
                 outputs=[{"name": "label"}], id="req-1").get_json()
    assert body["id"] == "req-1"
    assert [o["name"] for o in body["outputs"]] == ["label"]
    direct = [app.extensions["edge_rbmlp"].models["imdb"].engine.predict_text(t).label for t in texts]
    assert body["outputs"][0]["data"] == direct
    body = infer(client, "imdb", {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [[t] for t in texts]})
    assert body.status_code == 200


def test_bytes_image_input_matches_classify(client):
    png = png_bytes(drawn_seven())
    via_classify = client.post("/classify/mnist", data=png, content_type="image/png").get_json()
    body = infer(client, "mnist", {"name": "input", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(png).decode()]}).get_json()
    out = {o["name"]: o for o in body["outputs"]}
    assert out["class_index"]["data"] == [via_classify["class_index"]]
    np.testing.assert_allclose(out["probabilities"]["data"], via_classify["probabilities"], rtol=1e-5)


def _binary_request(header: dict, blobs: list):
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def test_binary_tensor_extension_both_ways(app, client):
    q = np.arange(2 * 784, dtype=np.int64).reshape(2, 784) % 256
    q = q.astype(np.uint8)
    body, headers = _binary_request({"inputs": [{"name": "input", "shape": [2, 784], "datatype": "UINT8",
                                                 "parameters": {"binary_data_size": q.nbytes}}],
                                     "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                                                 {"name": "label", "parameters": {"binary_data": True}},
                                                 {"name": "class_index"}]}, [q.tobytes()])
    resp = client.post("/v2/models/mnist/infer", data=body, headers=headers)
    assert resp.status_code == 200
    n = int(resp.headers["Inference-Header-Content-Length"])
    raw = resp.get_data()
    header = json.loads(raw[:n])
    blob = raw[n:]
    outs = header["outputs"]
    size_p = outs[0]["parameters"]["binary_data_size"]
    probs = np.frombuffer(blob[:size_p], dtype="<f4").reshape(2, 10)
    np.testing.assert_allclose(probs, engine_probs(app, "mnist", q), rtol=1e-5, atol=1e-7)
    labels, rest = [], blob[size_p:]
    while rest:
        (k,) = struct.unpack_from("<I", rest)
        labels.append(rest[4: 4 + k].decode())
        rest = rest[4 + k:]
    assert labels == [str(i) for i in probs.argmax(1)]
    assert outs[2]["data"] == probs.argmax(1).tolist()
    # BYTES text input in binary form
    texts = [b"great film", "d\xc3\xa9j\xc3\xa0 vu, but fun".encode("latin-1")]
    blob = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    body, headers = _binary_request({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                 "parameters": {"binary_data_size": len(blob)}}]}, [blob])
    assert client.post("/v2/models/imdb/infer", data=body, headers=headers).status_code == 200


@pytest.mark.parametrize("tensor,status,words", [
    ({"name": "input", "shape": [784], "datatype": "UINT8", "data": [0] * 783}, 400, ["783", "784"]),
    ({"name": "input", "shape": [2, 10], "datatype": "UINT8", "data": [0] * 20}, 400, ["784"]),
    ({"name": "input", "shape": [784], "datatype": "UINT8", "data": [0.5] * 784}, 400, ["integers"]),
    ({"name": "input", "shape": [784], "datatype": "INT32", "data": [300] * 784}, 400, ["[0, 255]"]),
    ({"name": "input", "shape": [784], "datatype": "INT32", "data": [-1] * 784}, 400, ["[0, 255]"]),
    ({"name": "input", "shape": [784], "datatype": "FP32", "data": ["a"] * 784}, 400, ["numbers"]),
    ({"name": "input", "shape": [784], "datatype": "BF16", "data": [0] * 784}, 400, ["not supported"]),
    ({"name": "input", "shape": [784], "datatype": "BOOL", "data": [1] * 784}, 400, ["true/false"]),
    ({"name": "input", "shape": [784], "datatype": "UINT8"}, 400, ["data"]),
    ({"name": "input", "shape": "784", "datatype": "UINT8", "data": [0] * 784}, 400, ["shape"]),
    ({"name": "input", "shape": [-1], "datatype": "UINT8", "data": []}, 400, ["shape"]),
    ({"name": "input", "shape": [0, 784], "datatype": "UINT8", "data": []}, 400, []),
    ({"name": "input", "shape": [2, 784], "datatype": "UINT8", "data": [[0] * 784, [0] * 3]}, 400, ["regular"]),
    ({"name": "input", "shape": [17, 784], "datatype": "UINT8", "data": [0] * (17 * 784)}, 413, ["limit"]),
    ({"name": "input", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}, 400, ["base64"]),
    ({"name": "input", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(b"junk").decode()]}, 400,
     ["image"]),
    ({"shape": [784], "datatype": "UINT8", "data": [0] * 784}, 400, ["name"]),
    ("a string", 400, ["object"]),
])
def test_bad_image_tensors(client, tensor, status, words):
    check_error(infer(client, "mnist", tensor), status, *words)


@pytest.mark.parametrize("tensor,status,words", [
    ({"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}, 400, ["empty"]),
    ({"name": "text", "shape": [1], "datatype": "BYTES", "data": [5]}, 400, ["strings"]),
    ({"name": "text", "shape": [2], "datatype": "BYTES", "data": ["one"]}, 400, ["1 bytes elements"]),
    ({"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}, 400, ["[batch, 1]"]),
    ({"name": "text", "shape": [1], "datatype": "BYTES", "data": "plain"}, 400, ["list"]),
])
def test_bad_text_tensors(client, tensor, status, words):
    check_error(infer(client, "imdb", tensor), status, *words)


def test_bad_requests(client):
    ok = {"name": "input", "shape": [784], "datatype": "UINT8", "data": [0] * 784}
    post = lambda body, **kw: client.post("/v2/models/mnist/infer", data=body, **kw)  # noqa: E731
    check_error(post(b"", content_type="application/json"), 400, "empty")
    check_error(post(b"{not json", content_type="application/json"), 400, "json")
    check_error(post(b"[1, 2]", content_type="application/json"), 400, "object")
    check_error(post(json.dumps({"inputs": []}), content_type="application/json"), 400, "non-empty")
    check_error(post(json.dumps({"inputs": [ok, ok]}), content_type="application/json"), 400, "exactly one")
    check_error(post(json.dumps({"inputs": [ok], "outputs": [{"name": "logits"}]}), content_type="application/json"),
                400, "unknown output")
    check_error(post(json.dumps({"inputs": [ok], "outputs": "all"}), content_type="application/json"), 400, "list")
    check_error(post(json.dumps({"inputs": [ok], "id": 5}), content_type="application/json"), 400, "id")
    check_error(post(b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [NaN]}]}'.replace(
        b"[1]", b"[784]").replace(b"[NaN]", b"[" + b",".join([b"NaN"] * 784) + b"]"),
        content_type="application/json"), 400, "nan")
    check_error(post(b"{}", headers={"Inference-Header-Content-Length": "99"}), 400, "99")
    check_error(post(b"{}", headers={"Inference-Header-Content-Length": "x"}), 400, "integer")
    check_error(post(json.dumps({"inputs": [ok]}), headers={"Content-Encoding": "gzip"}), 415, "gzip")
    body, headers = _binary_request({"inputs": [{"name": "input", "shape": [784], "datatype": "UINT8",
                                                 "parameters": {"binary_data_size": 784}}]}, [b"\0" * 700])
    check_error(post(body, headers=headers), 400, "binary_data_size")
    body, headers = _binary_request({"inputs": [{"name": "input", "shape": [784], "datatype": "UINT8",
                                                 "parameters": {"binary_data_size": 784}}]}, [b"\0" * 790])
    check_error(post(body, headers=headers), 400, "not claimed")
    check_error(client.post("/v2/models/nope/infer", json={"inputs": [ok]}), 404, "unknown model")
    check_error(client.get("/v2/models/mnist/infer"), 405)


def test_tritonclient_against_a_real_server(paths):
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the test extra")
    from tritonclient.utils import InferenceServerException

    with running_server(make_config(paths)) as (url, app):
        client = httpclient.InferenceServerClient(url.split("://", 1)[1], connection_timeout=10, network_timeout=30)
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("mnist") and client.is_model_ready("imdb")
            meta = client.get_model_metadata("mnist")
            assert meta["inputs"][0]["name"] == "input"
            q = np.random.default_rng(1).integers(0, 256, (4, 784)).astype(np.uint8)
            for binary in (True, False):
                inp = httpclient.InferInput("input", list(q.shape), "UINT8")
                inp.set_data_from_numpy(q, binary_data=binary)
                outs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary),
                        httpclient.InferRequestedOutput("label", binary_data=binary),
                        httpclient.InferRequestedOutput("class_index", binary_data=binary)]
                result = client.infer("mnist", [inp], outputs=outs)
                probs = result.as_numpy("probabilities")
                np.testing.assert_allclose(probs, engine_probs(app, "mnist", q), rtol=1e-5, atol=1e-7)
                assert result.as_numpy("class_index").tolist() == probs.argmax(1).tolist()
                labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
                assert labels == [str(i) for i in probs.argmax(1)]
            texts = np.array([b"a wonderful film", b"boring and bad"], dtype=object)
            inp = httpclient.InferInput("text", [2], "BYTES")
            inp.set_data_from_numpy(texts)
            result = client.infer("imdb", [inp])  # the client's defaults: binary input, JSON outputs
            assert result.as_numpy("probabilities").shape == (2, 2)
            with pytest.raises(InferenceServerException, match="unknown model"):
                client.get_model_metadata("nope")
            bad = httpclient.InferInput("input", [1, 10], "UINT8")
            bad.set_data_from_numpy(np.zeros((1, 10), np.uint8))
            with pytest.raises(InferenceServerException, match="784"):
                client.infer("mnist", [bad])
        finally:
            client.close()
