"""server/fastpath.py answers the hot routes' plain requests without Flask's request context: the
same status, headers, JSON and metrics as the Flask view (create_app(fast_path=False)), and
everything else is left to Flask."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from flask import request_started

from serverkit import drawn_seven, make_config, png_bytes, write_models

from edge_rbmlp.server import create_app
from edge_rbmlp.server.state import load_served_models

TIMING = ("latency_us", "decode_us", "preprocess_us", "inference_us", "total_us")
REVIEW = b"A wonderful film: the acting is superb and the story moving, one of the best this year."


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("fastpath"))


def apps(config, served):
    """(fast, flask-only) apps on the same loaded models, and the requests Flask saw in each."""
    fast, slow = create_app(config, served=served), create_app(config, served=served, fast_path=False)
    seen = {fast: [], slow: []}

    def started(sender, **kw):
        from flask import request

        seen[sender].append(request.path)

    request_started.connect(started, fast)
    request_started.connect(started, slow)
    return fast, slow, seen, started


def answer_of(resp) -> tuple:
    """(status, headers, JSON) without the time split (it differs from run to run, and with it the
    Content-Length, checked against the body instead)."""
    assert int(resp.headers["Content-Length"]) == len(resp.get_data())
    body = resp.get_json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in TIMING}
    return resp.status, sorted((k, v) for k, v in resp.headers.items() if k != "Content-Length"), body


def counters(app) -> list:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return sorted(line for line in text.splitlines()
                  if line.startswith(("edge_rbmlp_requests_total", "edge_rbmlp_errors_total",
                                      "edge_rbmlp_prediction_stage_seconds_count")))


CASES = [  # (path, body, content type, answered by the fast path)
    ("/classify/mnist", png_bytes(drawn_seven()), "image/png", True),
    ("/classify/mnist", png_bytes(drawn_seven()), "application/octet-stream", True),
    ("/classify/mnist", png_bytes(drawn_seven()), "", True),
    ("/classify/mnist", png_bytes(np.full((40, 40), 255)), "image/png", True),  # blank: 422
    ("/classify/mnist", b"not an image at all", "image/png", True),  # 400
    ("/classify/mnist", b"", "image/png", False),  # empty: 400 (the test client sends no Content-Length)
    ("/classify/mnist", png_bytes(np.zeros((2, 2))), "image/png", True),  # too small: 400
    ("/classify/imdb", REVIEW, "text/plain", True),
    ("/classify/imdb", REVIEW, "text/plain; charset=UTF-8", True),
    ("/classify/imdb", REVIEW, "application/x-www-form-urlencoded", True),
    ("/classify/imdb", "Ｔｈｅ ﬁlm was ｇｒｅａｔ, truly".encode(), "text/plain", True),  # NFKC
    ("/classify/imdb", b"   ", "text/plain", True),  # empty: 400
    ("/classify/imdb", b"\xff\xfe bad utf-8", "text/plain", True),  # 400
    ("/classify/imdb", REVIEW, "text/plain; charset=latin-1", False),  # 415 by Flask
    ("/classify/imdb", b'{"text": "a great film"}', "application/json", False),
    ("/classify/imdb", png_bytes(drawn_seven()), "image/png", False),  # an image to a text model: 415
    ("/classify/mnist", REVIEW, "text/plain", False),  # text to an image model: 415
    ("/classify/nosuch", REVIEW, "text/plain", False),  # 404
    ("/classify/mnist/", png_bytes(drawn_seven()), "image/png", False),
]


def test_the_fast_path_answers_as_flask_does(paths):
    config = make_config(paths)
    fast, slow, seen, _ = apps(config, load_served_models(config))
    for path, body, ctype, hot in CASES:
        seen[fast].clear()
        got = [answer_of(app.test_client().post(path, data=body, content_type=ctype)) for app in (fast, slow)]
        assert got[0] == got[1], (path, ctype)
        assert (seen[fast] == []) == hot, (path, ctype, seen[fast])  # Flask never saw the hot ones
    assert counters(fast) == counters(slow)
    assert any(line.startswith("edge_rbmlp_errors_total") for line in counters(fast))
    multipart = {"file": (png_bytes(drawn_seven()), "seven.png")}
    assert (answer_of(fast.test_client().post("/classify/mnist", data=dict(multipart)))
            == answer_of(slow.test_client().post("/classify/mnist", data=dict(multipart))))


def test_a_limit_answered_on_the_fast_path_keeps_its_headers(paths):
    """A 503 past the request's deadline carries Retry-After; a 413 over the memory budget."""
    for limits in ({"request_timeout_s": 1e-9}, {"max_decode_bytes": 100}):
        config = make_config(paths, limits=limits)
        fast, slow, seen, _ = apps(config, load_served_models(config))
        got = [answer_of(app.test_client().post("/classify/mnist", data=png_bytes(drawn_seven(300)),
                                                content_type="image/png")) for app in (fast, slow)]
        assert got[0] == got[1]
        assert got[0][0] == ("503 SERVICE UNAVAILABLE" if "request_timeout_s" in limits else
                             "413 REQUEST ENTITY TOO LARGE"), got[0]
        assert seen[fast] == []


def test_the_token_is_checked_and_a_refusal_left_to_flask(paths):
    config = replace(make_config(paths), token="s3cret")
    fast, slow, seen, _ = apps(config, load_served_models(config))
    for headers, status, hot in (({}, 401, False), ({"Authorization": "Bearer wrong"}, 401, False),
                                 ({"Authorization": "Bearer s3cret"}, 200, True), ({"X-API-Token": "s3cret"}, 200, True)):
        seen[fast].clear()
        got = [answer_of(app.test_client().post("/classify/imdb", data=REVIEW, content_type="text/plain",
                                                headers=headers)) for app in (fast, slow)]
        assert got[0] == got[1] and got[0][0].startswith(str(status)), (headers, got[0][0])
        assert (seen[fast] == []) == hot


def test_a_bug_is_left_to_flask_which_logs_it(paths, monkeypatch, caplog):
    config = make_config(paths)
    served = load_served_models(config)
    fast, slow, seen, _ = apps(config, served)

    def broken(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(served["imdb"].engine, "predict_texts", broken)
    got = [answer_of(app.test_client().post("/classify/imdb", data=REVIEW, content_type="text/plain"))
           for app in (fast, slow)]
    assert got[0] == got[1] and got[0][0] == "500 INTERNAL SERVER ERROR"
    assert seen[fast] == ["/classify/imdb"]  # the fast path handed it over
    assert "a bug" in caplog.text
