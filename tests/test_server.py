"""POST /classify/<model>: every accepted input form, and every bad input answered with a 4xx JSON error."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest

from serverkit import bundled_or_none, drawn_seven, make_config, png_bytes, write_models

from edge_rbmlp.server import create_app

KEYS = {"model", "label", "class_index", "probabilities", "latency_us", "decode_us", "preprocess_us", "inference_us",
        "total_us", "backend", "kernel"}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def app(paths):
    return create_app(make_config(paths, limits={"max_body_bytes": 256 * 1024, "max_text_chars": 20_000}))


@pytest.fixture
def client(app):
    return app.test_client()


def check_prediction(resp, model, n_classes):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    # text answers also say how many of the words the model knows, and whether that is too few
    assert set(body) == KEYS or set(body) == KEYS | {"known_words", "low_confidence"}
    assert body["model"] == model
    assert len(body["probabilities"]) == n_classes
    assert abs(sum(body["probabilities"]) - 1) < 1e-6
    assert body["class_index"] == int(np.argmax(body["probabilities"]))
    assert body["backend"] == "reference" and body["latency_us"] > 0
    return body


def check_error(resp, status, *words):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    # a refused picture (422) also says what was measured: label null, the reason, the probabilities
    extra = {"label", "class_index", "reason", "probabilities"} if status == 422 else set()
    assert {"error"} <= set(body) <= {"error"} | extra and isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body["error"]


# -- accepted forms -------------------------------------------------------------------------------------------
SEVEN = drawn_seven()


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                       ("PPM", "image/x-portable-graymap"), ("BMP", "image/bmp"),
                                       ("PNG", "application/x-www-form-urlencoded"),  # what curl --data-binary sends
                                       ("PNG", "application/octet-stream"), ("PNG", None)])
def test_image_body_forms_give_the_same_answer(client, fmt, ctype):
    data = png_bytes(SEVEN, fmt=fmt)
    headers = {"Content-Type": ctype} if ctype else {}
    body = check_prediction(client.post("/classify/mnist", data=data, headers=headers), "mnist", 10)
    reference = client.post("/classify/mnist", data=png_bytes(SEVEN), content_type="image/png").get_json()
    if fmt in ("PNG", "PPM", "BMP"):  # lossless: identical pixels, identical answer
        assert body["probabilities"] == reference["probabilities"]


def test_colour_and_light_on_dark_images_are_accepted(client):
    rgb = np.stack([SEVEN, SEVEN, SEVEN], axis=-1)
    rgb[..., 0] = np.maximum(rgb[..., 0], 40)
    check_prediction(client.post("/classify/mnist", data=png_bytes(rgb), content_type="image/png"), "mnist", 10)
    inverted = 255 - SEVEN
    a = client.post("/classify/mnist", data=png_bytes(inverted), content_type="image/png").get_json()
    b = client.post("/classify/mnist", data=png_bytes(SEVEN), content_type="image/png").get_json()
    assert a["class_index"] == b["class_index"]  # dark-on-light and light-on-dark are the same digit


def test_multipart_upload(client):
    resp = client.post("/classify/mnist", data={"file": (io.BytesIO(png_bytes(SEVEN)), "seven.png")},
                       content_type="multipart/form-data")
    check_prediction(resp, "mnist", 10)
    resp = client.post("/classify/imdb", data={"text": "a wonderful film"}, content_type="multipart/form-data")
    check_prediction(resp, "imdb", 2)
    resp = client.post("/classify/imdb", data={"file": (io.BytesIO(b"a wonderful film"), "r.txt")},
                       content_type="multipart/form-data")
    check_prediction(resp, "imdb", 2)


def test_text_forms_agree(client):
    text = "An utterly wonderful film; I'd watch it again."
    answers = [
        client.post("/classify/imdb", data=text.encode(), content_type="text/plain; charset=utf-8"),
        client.post("/classify/imdb", json={"text": text}),
        client.post("/classify/imdb", data=text.encode()),  # curl --data-binary @review.txt
    ]
    bodies = [check_prediction(r, "imdb", 2) for r in answers]
    assert bodies[0]["probabilities"] == bodies[1]["probabilities"] == bodies[2]["probabilities"]
    assert bodies[0]["label"] in ("negative", "positive")


def test_prediction_matches_the_engine(app, client):
    from edge_rbmlp.image import load_image

    served = app.extensions["edge_rbmlp"].models["mnist"]
    expected = served.engine.predict_image(load_image(png_bytes(SEVEN)))
    body = client.post("/classify/mnist", data=png_bytes(SEVEN), content_type="image/png").get_json()
    assert body["class_index"] == expected.class_index
    np.testing.assert_allclose(body["probabilities"], expected.probabilities, rtol=1e-6)


def test_real_bundled_models_classify_real_samples():
    from edge_rbmlp.samples import SAMPLES_DIR
    from edge_rbmlp.server import ServerConfig

    if bundled_or_none("mnist") is None or bundled_or_none("imdb") is None:
        pytest.skip("the bundled models (edge_rbmlp/models/mnist.rbm, imdb.rbm) are not installed yet")
    models = [str(bundled_or_none("mnist")), str(bundled_or_none("imdb"))]
    client = create_app(ServerConfig(models=models, backend="reference")).test_client()
    digits = sorted(SAMPLES_DIR.glob("mnist_test_*_label_*.png"))
    right = 0
    for path in digits:
        body = client.post("/classify/mnist", data=path.read_bytes()).get_json()
        right += body["label"] == path.stem.rsplit("_", 1)[1]
    assert digits and right >= len(digits) - 1, (right, len(digits))
    for path in sorted(SAMPLES_DIR.glob("imdb_test_*_label_*.txt")):
        body = client.post("/classify/imdb", data=path.read_bytes(), content_type="text/plain").get_json()
        assert body["label"] == path.stem.rsplit("_", 1)[1]


# -- bad input --------------------------------------------------------------------------------------------------
def _png_with_size(width: int, height: int) -> bytes:
    """A valid PNG whose header declares ``width x height`` (a decompression bomb's header)."""
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr: ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4: ihdr + 13]))
    data[ihdr + 13: ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


GOOD_PNG = png_bytes(SEVEN)


@pytest.mark.parametrize("body,ctype,status,words", [
    (b"", "image/png", 400, ["empty"]),
    (b"not an image at all", "image/png", 400, ["image"]),
    (GOOD_PNG[: len(GOOD_PNG) // 2], "image/png", 400, ["truncated"]),
    (GOOD_PNG[:40], "image/png", 400, []),
    (png_bytes(np.zeros((1, 1), np.uint8)), "image/png", 400, ["1x1"]),
    (png_bytes(np.zeros((3, 500), np.uint8)), "image/png", 400, ["500x3"]),
    (_png_with_size(20000, 20000), "image/png", 400, ["pixel"]),
    (_png_with_size(100000, 100000), "image/png", 400, []),
    (png_bytes(np.full((64, 64), 255, np.uint8)), "image/png", 422, ["no digit"]),
    (GOOD_PNG, "application/xml", 415, ["content-type"]),
    (b"some text", "text/plain", 415, ["images"]),
    (b'{"text": "x"}', "application/json", 415, ["images"]),
])
def test_bad_images(client, body, ctype, status, words):  # noqa: D103
    check_error(client.post("/classify/mnist", data=body, content_type=ctype), status, *words)


@pytest.mark.parametrize("body,ctype,status,words", [
    (b"\xff\xfe\xfa broken", "text/plain", 400, ["utf-8"]),
    (b"\xff\xfe\xfa broken", None, 400, ["utf-8"]),
    (b"", "text/plain", 400, ["empty"]),
    (b"   \n\t ", "text/plain", 400, ["empty"]),
    (b"caf\xe9", "text/plain; charset=latin-1", 415, ["utf-8"]),
    (b"x" * 30_000, "text/plain", 413, ["limit"]),
    (b'{"text": ""}', "application/json", 400, ["empty"]),
    (b'{"text": 5}', "application/json", 400, ["string"]),
    (b'{"txt": "hello"}', "application/json", 400, ['"text"']),
    (b'["hello"]', "application/json", 400, ['"text"']),
    (b'{"text": "unterminated', "application/json", 400, ["json"]),
    (b"\xff\xfe", "application/json", 400, ["json"]),
    (GOOD_PNG, "image/png", 415, ["text"]),
    (b"hello", "application/pdf", 415, ["content-type"]),
])
def test_bad_text(client, body, ctype, status, words):
    headers = {"Content-Type": ctype} if ctype else {}
    check_error(client.post("/classify/imdb", data=body, headers=headers), status, *words)


def test_multipart_without_content(client):
    check_error(client.post("/classify/mnist", data={"x": "y"}, content_type="multipart/form-data"), 400, "file")
    check_error(client.post("/classify/imdb", data={"x": "y"}, content_type="multipart/form-data"), 400, "text")


def test_body_over_the_limit_is_refused_before_decoding(client, monkeypatch):
    import edge_rbmlp.server.infer as infer

    called = []
    monkeypatch.setattr(infer, "load_image", lambda *a, **k: called.append(1))
    resp = client.post("/classify/mnist", data=b"\x89PNG" + b"\0" * (300 * 1024), content_type="image/png")
    check_error(resp, 413, "limit")
    assert not called


def test_unknown_models_routes_and_methods(client):
    check_error(client.post("/classify/nope", data=GOOD_PNG), 404, "unknown model", "mnist")
    check_error(client.get("/no/such/route"), 404, "openapi")
    check_error(client.get("/classify/mnist"), 405)
    check_error(client.post("/classify/..%2f..%2fetc%2fpasswd", data=GOOD_PNG), 404)


def test_errors_are_counted_not_raised(app, client):
    before = app.extensions["edge_rbmlp"].metrics.errors.labels("/classify/<model>", "mnist", "400")._value.get()
    client.post("/classify/mnist", data=b"garbage", content_type="image/png")
    after = app.extensions["edge_rbmlp"].metrics.errors.labels("/classify/<model>", "mnist", "400")._value.get()
    assert after == before + 1


def test_a_request_past_its_deadline_is_a_503(paths, monkeypatch):
    """limits.request_timeout_s is checked between the stages of a request: a v2 batch whose
    images take longer to decode than the deadline stops with 503 and Retry-After."""
    import base64
    import time as time_

    from edge_rbmlp.server import infer

    app = create_app(make_config(paths, limits={"request_timeout_s": 1}))
    real = infer.load_image

    def slow(*args, **kw):
        time_.sleep(0.4)
        return real(*args, **kw)

    monkeypatch.setattr(infer, "load_image", slow)
    b64 = base64.b64encode(png_bytes(drawn_seven())).decode()
    body = {"inputs": [{"name": "input", "shape": [6], "datatype": "BYTES", "data": [b64] * 6}]}
    t0 = time_.perf_counter()
    resp = app.test_client().post("/v2/models/mnist/infer", json=body)
    assert resp.status_code == 503 and "1 s limit" in resp.get_json()["error"], resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "1" and time_.perf_counter() - t0 < 6 * 0.4
    body["inputs"][0].update(shape=[1], data=[b64])
    assert app.test_client().post("/v2/models/mnist/infer", json=body).status_code == 200


def test_the_memory_budget(paths):
    """An image whose decoded frame is more than the worker's budget is a 413 before decoding; a
    budget held by another request makes a request wait, then 503 at its deadline; JSON reserves
    what its values can cost."""
    import threading

    from PIL import Image

    from edge_rbmlp.server.guard import Deadline

    app = create_app(make_config(paths, limits={"max_decode_bytes": 8 << 20, "request_timeout_s": 1}))
    client = app.test_client()
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1100), (255, 255, 255)).save(buf, format="PNG")  # 8.4 MB decoded (4 B/px)
    resp = client.post("/classify/mnist", data=buf.getvalue(), content_type="image/png")
    assert resp.status_code == 413 and "memory budget" in resp.get_json()["error"], resp.get_json()
    state = app.extensions["edge_rbmlp"]
    held, release = threading.Event(), threading.Event()

    def hold():
        with state.budget.reserve(8 << 20, "a test", Deadline(30)):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        resp = client.post("/classify/mnist", data=png_bytes(drawn_seven()), content_type="image/png")
        assert resp.status_code == 503 and "memory budget" in resp.get_json()["error"], resp.get_json()
    finally:
        release.set()
        holder.join(10)
    assert client.post("/classify/mnist", data=png_bytes(drawn_seven()), content_type="image/png").status_code == 200
    floats = json.dumps({"instances": [[0.5] * 784] * 200}).encode()  # 200 x 784 values x 64 B > 8 MiB
    resp = client.post("/v1/models/mnist:predict", data=floats, content_type="application/json")
    assert resp.status_code == 413 and "JSON" in resp.get_json()["error"], resp.get_json()
    assert state.budget.free == state.budget.total  # everything given back
