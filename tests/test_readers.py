"""Readers: a number from digit regions, with voting and plausibility rules; [[readers]] / [mqtt] config;
GET /api/readers. Real frames: MNIST test digits composed into 4-digit numbers (tests/meterkit.py)."""

from __future__ import annotations

import numpy as np
import pytest

import meterkit
from serverkit import bundled_or_none

from edge_rbmlp.engines.base import NO_DIGIT, Prediction
from edge_rbmlp.readers import Reader, ReaderSet, crop
from edge_rbmlp.server.config import ConfigError, ReaderConfig, from_dict, load_config


# -- config -------------------------------------------------------------------------------------------------
def test_readers_and_mqtt_config():
    config = from_dict({"camera": {"enabled": True},
                        "readers": [{"name": "water", "rois": [[1, 2, 30, 40], [31, 2, 30, 40]], "vote": 5,
                                     "monotonic": True, "max_rate_per_hour": 60, "min_confidence": 0.8,
                                     "reanchor_after": 4},
                                    {"name": "gas-2", "model": "digits", "rois": [[0, 0, 8, 8]]}],
                        "mqtt": {"host": "broker.lan", "username": "u", "password": "p", "qos": 2,
                                 "tls": True, "ca_file": "/etc/ssl/ca.pem"}})
    water, gas = config.readers
    assert water.rois == ((1, 2, 30, 40), (31, 2, 30, 40)) and water.vote == 5 and water.monotonic
    assert water.max_rate_per_hour == 60.0 and water.min_confidence == 0.8 and water.model == "mnist"
    assert water.reanchor_after == 4 and gas.reanchor_after == 10
    assert gas.model == "digits" and gas.vote == 3 and gas.min_confidence == 0.6 and not gas.monotonic
    m = config.mqtt
    assert (m.host, m.port, m.qos, m.tls, m.discovery_prefix, m.topic_prefix) == ("broker.lan", 1883, 2, True,
                                                                                  "homeassistant", None)
    assert "p" not in repr(m).replace("port", "").replace("prefix", "").split("password")[0][-3:]
    assert "password" not in repr(m)


@pytest.mark.parametrize("data, message", [
    ({"readers": {"name": "x"}}, "must be [[readers]] tables"),
    ({"readers": [{"rois": [[0, 0, 8, 8]]}]}, "needs name"),
    ({"readers": [{"name": "x"}]}, "needs rois"),
    ({"readers": [{"name": "a/b", "rois": [[0, 0, 8, 8]]}]}, "part of MQTT topics"),
    ({"readers": [{"name": "x", "rois": []}]}, "1 to 32"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8]]}]}, "roi 1 must be"),
    ({"readers": [{"name": "x", "rois": [[0, -1, 8, 8]]}]}, "roi 1 must be"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8], [0, 0, 4, 8]]}]}, "roi 2 must be"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8.5]]}]}, "roi 1 must be"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "vote": 0}]}, "vote must be an integer"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "min_confidence": 2}]}, "min_confidence"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "max_rate_per_hour": 0}]}, "above 0"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "monotonic": "yes"}]}, "true or false"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "reanchor_after": -1}]}, "reanchor_after must be an integer"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]], "roi": 1}]}, "unknown config key"),
    ({"readers": [{"name": "x", "rois": [[0, 0, 8, 8]]}, {"name": "x", "rois": [[0, 0, 8, 8]]}]}, "both named"),
    ({"mqtt": {"port": 1883}}, "needs host"),
    ({"mqtt": {"host": "h", "port": 0}}, "port must be"),
    ({"mqtt": {"host": "h", "qos": 3}}, "qos must be"),
    ({"mqtt": {"host": "h", "topic_prefix": "a/#"}}, "without wildcards"),
    ({"mqtt": {"host": "h", "discovery_prefix": ""}}, "must not be empty"),
    ({"mqtt": {"host": "h", "ca_file": "/x"}}, "tls = false"),
    ({"mqtt": {"host": "h", "pasword": "x"}}, "unknown config key"),
    ({"mqtt": {"host": "h", "password": 1234}}, "must be a string, got a int"),
    ({"mqtt": "broker"}, "must be a table"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert message in str(err.value)
    assert "1234" not in str(err.value)  # a password given as a number is not echoed


def test_readers_need_the_camera_and_mqtt_needs_readers(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[readers]]\nname = "w"\nrois = [[0, 0, 8, 8]]\n')
    with pytest.raises(ConfigError, match="enabled = true"):
        load_config(cfg, environ={})
    assert load_config(cfg, {"camera": {"enabled": True}}, environ={}).readers[0].name == "w"  # serve --camera
    cfg.write_text('[camera]\nenabled = true\n[mqtt]\nhost = "h"\n')
    with pytest.raises(ConfigError, match="at least one reader"):
        load_config(cfg, environ={})


def test_the_mqtt_password_from_the_environment_wins(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[camera]\nenabled = true\n[[readers]]\nname = "w"\nrois = [[0, 0, 8, 8]]\n'
                   '[mqtt]\nhost = "h"\nusername = "u"\npassword = "from-file"\n')
    assert load_config(cfg, environ={}).mqtt.password == "from-file"
    config = load_config(cfg, environ={"EDGE_RBMLP_MQTT_PASSWORD": "from-env"})
    assert config.mqtt.password == "from-env" and "from-env" not in repr(config) and "from-file" not in repr(config)


def test_the_shipped_device_config_documents_the_sections():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "device" / "config.toml").read_text()
    for needle in ('source = "picamera2"', "# [[readers]]", "# rois = ", "# vote = ", "# [mqtt]",
                   "EDGE_RBMLP_MQTT_PASSWORD", "# discovery_prefix", "# monotonic", "# max_rate_per_hour",
                   "# reanchor_after"):
        assert needle in text, needle
    # uncommented, the examples are a valid config
    import re

    example = "\n".join(line[2:] if re.match(r"# (\[[a-z\[]|[a-z_]+ = )", line) else line for line in text.splitlines())
    config = from_dict(__import__("tomllib").loads(example))
    assert config.readers and config.mqtt is not None


# -- one frame, the vote, the rules ---------------------------------------------------------------------------
def pred(label, p=0.99):
    if label is None:
        return Prediction(None, None, [0.1] * 10, NO_DIGIT, {"total_us": 1.0})
    probs = [(1 - p) / 9] * 10
    probs[int(label)] = p
    return Prediction(label, int(label), probs, None, {"total_us": 1.0})


def feed(reader, values, start_ts=0.0, step=1.0):
    """Raw readings of ``values`` ("0427", or "04?7" for a refused digit) one frame per ``step`` seconds."""
    out = []
    for i, v in enumerate(values):
        preds = [pred(None if c == "?" else c, 0.3 if c.isupper() else 0.99) for c in v]
        out.append(reader.update(reader.raw(preds, 10.0, start_ts + i * step, i + 1)))
    return out


def test_a_frame_reading_reports_every_digit():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1))
    good = r.raw([pred("0"), pred("4"), pred("2", 0.7), pred("7")], 55.0, 1.0, 1)
    assert good.valid and good.value == "0427" and good.confidence == pytest.approx(0.7)
    assert [d["label"] for d in good.digits] == list("0427") and good.latency_us == 55.0
    refused = r.raw([pred("0"), pred(None), pred("2"), pred("7")], 1.0, 1.0, 2)
    assert not refused.valid and refused.value == "0?27" and refused.reason.startswith("digit 2: no digit")
    low = r.raw([pred("0"), pred("4", 0.5), pred("2"), pred("7")], 1.0, 1.0, 3)
    assert not low.valid and "digit 2: confidence 0.50 is below min_confidence 0.6" == low.reason


def test_vote_hides_a_single_misread_and_publishes_a_change_once_it_is_the_majority():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=3))
    out = feed(r, ["0427", "0427", "0421", "0427", "0428", "0428", "0428"])
    assert [o.valid for o in out] == [False, True, True, True, False, True, True]
    assert out[0].reason.startswith("no majority yet") and out[0].votes == 1
    assert [o.value for o in out if o.valid] == ["0427", "0427", "0427", "0428", "0428"]
    assert out[2].raw_value == "0421" and out[2].votes == 2  # the misread frame still published 0427
    assert out[4].reason.startswith("no majority yet")  # 0421, 0427, 0428: nothing is published
    # without voting the misread goes straight through
    plain = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1))
    assert [o.value for o in feed(plain, ["0427", "0421", "0427"])] == ["0427", "0421", "0427"]


def test_an_unreadable_frame_counts_against_the_majority():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=3))
    out = feed(r, ["0427", "0427", "04?7", "0427", "04?7", "04?7"])
    assert [o.valid for o in out] == [False, True, True, True, False, False]
    assert out[2].value == "0427" and out[2].raw_value == "04?7"  # one unreadable frame of three: still 0427
    assert out[4].reason.startswith("digit 3: no digit")


def test_monotonic_refuses_a_lower_value():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, monotonic=True))
    out = feed(r, ["0427", "0426", "0428", "0427"])
    assert [o.valid for o in out] == [True, False, True, False]
    assert out[1].reason == "monotonic: 0426 is below the last value 0427"
    assert r.accepted == "0428"


def test_a_consistent_run_of_refused_readings_replaces_an_accepted_misread():
    """The first value misread as 0927 on a meter at 0427: without re-anchoring ``monotonic`` would refuse
    every true reading until the meter passed 0927."""
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, monotonic=True, reanchor_after=3))
    out = feed(r, ["0927", "0427", "0427", "0428", "0428", "0429", "0427"])
    assert [o.valid for o in out] == [True, False, False, True, True, True, False]
    assert out[1].reason == "monotonic: 0427 is below the last value 0927"
    assert out[3].reanchored == "0927" and out[3].to_dict()["reanchored"] == "0927" and out[3].value == "0428"
    assert [o.reanchored for o in out].count(None) == 6 and "reanchored" not in out[4].to_dict()
    assert r.accepted == "0429" and out[6].reason == "monotonic: 0427 is below the last value 0429"


def test_refused_readings_that_contradict_each_other_never_replace_the_accepted_value():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, monotonic=True, reanchor_after=3))
    out = feed(r, ["0927", "0427", "0300", "0427", "0300", "0427", "0300", "0427"])
    assert [o.valid for o in out] == [True] + [False] * 7 and r.accepted == "0927"
    never = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, monotonic=True, reanchor_after=0))
    assert [o.valid for o in feed(never, ["0927"] + ["0427"] * 20)] == [True] + [False] * 20


def test_reanchoring_keeps_the_rate_rule_on_the_run_itself():
    """Under max_rate_per_hour the run must be plausible at that rate too; the new value's change time is
    when the run first read it."""
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, max_rate_per_hour=60, reanchor_after=3))
    times = [0, 1, 2, 3, 4, 5]
    values = ["0900", "0427", "0427", "0427", "0428", "0500"]
    out = [r.update(r.raw([pred(c) for c in v], 1.0, t, i)) for i, (v, t) in enumerate(zip(values, times))]
    assert [o.valid for o in out] == [True, False, False, True, False, False]
    assert out[3].reanchored == "0900" and r.accepted == "0427" and r.changed_ts == 1
    assert out[4].reason.startswith("max_rate_per_hour: 0427 -> 0428")


def test_max_rate_per_hour_counts_from_the_last_change():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),) * 4, vote=1, max_rate_per_hour=60))  # 1 per minute
    # t = 0: 0427; 30 s later +1 is too fast; at 60 s +1 is fine; at 90 s +9 is too much; at 20 min +9 is fine
    times = [0, 30, 60, 90, 1260]
    out = [r.update(r.raw([pred(c) for c in v], 1.0, t, i)) for i, (v, t) in
           enumerate(zip(["0427", "0428", "0428", "0437", "0437"], times))]
    assert [o.valid for o in out] == [True, False, True, False, True]
    assert out[1].reason.startswith("max_rate_per_hour: 0427 -> 0428")


def test_rules_need_numbers():
    r = Reader(ReaderConfig("m", ((0, 0, 8, 8),), vote=1, monotonic=True))
    r.update(r.raw([pred("4")], 1.0, 0, 1))
    bad = r.raw([Prediction("x", 0, [1.0], None, {})], 1.0, 1, 2)
    assert "not a number" in r.update(bad).reason


# -- frames through the real model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist():
    path = bundled_or_none("mnist")
    if path is None:
        pytest.skip("the bundled mnist.rbm is not installed")
    try:
        from edge_rbmlp.datasets import load_mnist

        x, y = load_mnist("test")
    except (OSError, ValueError) as exc:
        pytest.skip(f"MNIST is not in the data cache (make data): {exc}")
    import edge_rbmlp

    return edge_rbmlp.load(str(path)), x, y


class CountingEngine:
    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def predict_images(self, images):
        self.calls.append(len(images))
        return self.engine.predict_images(images)


def test_all_rois_of_a_frame_go_through_the_engine_in_one_batch(mnist):
    engine, x, y = mnist
    glyphs = meterkit.clear_glyphs(x, y, engine, "0427")
    frame = meterkit.still_frames(glyphs, 1, seed=1)[0]
    rois = tuple(tuple(r) for r in meterkit.rois())
    counting = CountingEngine(engine)
    readers = ReaderSet([ReaderConfig("all", rois, vote=1), ReaderConfig("last-two", rois[2:], vote=1),
                         ReaderConfig("outside", ((400, 0, 20, 20),), vote=1)], lambda model: counting)
    a, b, c = readers.read(frame)
    assert counting.calls == [6]  # 4 + 2 ROIs, one call; the ROI outside the frame is not sent
    assert a.value == "0427" and a.valid and b.value == "27" and b.valid
    assert not c.valid and c.reason == "roi 1 [400, 0, 20, 20] is outside the 320x160 frame"
    assert a.latency_us > 0 and a.ts > 0 and a.frame == 1
    assert crop(frame, (310, 0, 20, 20)) is None and crop(frame, (300, 0, 20, 20)).shape == (20, 20, 3)


def reading_accuracy(engine, x, y, vote, new_glyphs_every_frame, values=30, hold=6, seed=0, rules=False):
    """Per-frame outcome of a 4-digit counter shown ``hold`` frames per value, one frame a second: (correct,
    stale, misread, invalid) fractions; stale = the previous value (the vote lags a change), misread = any
    other value. ``rules``: monotonic, and max_rate_per_hour at twice the counter's rate."""
    bank = meterkit.DigitBank(x, y, seed=seed)
    frames = meterkit.counter_sequence(bank, np.random.default_rng(seed), 427, values, hold,
                                       new_glyphs_every_frame=new_glyphs_every_frame)
    rois = tuple(tuple(r) for r in meterkit.rois())
    extra = {"monotonic": True, "max_rate_per_hour": 2 * 3600.0 / hold} if rules else {}
    readers = ReaderSet([ReaderConfig("m", rois, vote=vote, min_confidence=0.6, **extra)], lambda m: engine)
    counts = dict(correct=0, stale=0, misread=0, invalid=0)
    for i, (frame, truth) in enumerate(frames):
        r = readers.read(frame, ts=float(i))[0]
        previous = str(int(truth) - 1).zfill(4)
        key = "invalid" if not r.valid else "correct" if r.value == truth else "stale" if r.value == previous \
            else "misread"
        counts[key] += 1
    return {k: v / len(frames) for k, v in counts.items()}


@pytest.mark.parametrize("new_glyphs", [False, True], ids=["same-glyphs", "new-handwriting-every-frame"])
def test_reading_accuracy_with_and_without_voting(mnist, new_glyphs):
    """Whole pipeline: composed frames -> ROIs -> one batch -> vote. A misread is a wrong number published;
    voting must cut misreads (it may publish a change a frame later: 'stale')."""
    engine, x, y = mnist
    plain = reading_accuracy(engine, x, y, 1, new_glyphs)
    voted = reading_accuracy(engine, x, y, 3, new_glyphs)
    ruled = reading_accuracy(engine, x, y, 3, new_glyphs, rules=True)
    print(f"\nreaders, 4 digits, {'new handwriting every frame' if new_glyphs else 'same glyphs per value'}: "
          f"no vote {plain}; vote 3 {voted}; vote 3 + monotonic + max rate {ruled}")
    assert plain["correct"] > 0.4  # 4 digits at ~90% each
    assert voted["misread"] <= plain["misread"]
    assert ruled["misread"] <= voted["misread"] and ruled["correct"] >= voted["correct"] - 0.05
    if new_glyphs:  # independent errors: the majority of 3 removes most of them
        assert voted["misread"] < plain["misread"]


# -- GET /api/readers ----------------------------------------------------------------------------------------------
def test_api_readers_and_the_frame_with_boxes(mnist, tmp_path):
    from PIL import Image
    import io
    import time

    from edge_rbmlp.server import create_app
    from edge_rbmlp.server.camera import open_camera, start_in_service
    from edge_rbmlp.server.config import CameraConfig, ServerConfig

    engine, x, y = mnist
    meterkit.write_frames(tmp_path, meterkit.still_frames(meterkit.clear_glyphs(x, y, engine, "0427"), 3))
    rois = tuple(tuple(r) for r in meterkit.rois())
    config = ServerConfig(models=[str(bundled_or_none("mnist"))],
                          camera=CameraConfig(enabled=True, source=f"dir:{tmp_path}", interval=0.05),
                          readers=(ReaderConfig("water", rois, vote=1),))
    app = create_app(config)
    client = app.test_client()
    assert client.get("/api/readers").get_json()["readers"] == []  # no camera loop yet
    assert client.get("/api/readers/frame.png").status_code == 404
    loop = start_in_service(app, open_camera(source=config.camera.source), None, 0.05)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and client.get("/api/readers").get_json()["frames"] < 2:
            time.sleep(0.02)
        body = client.get("/api/readers").get_json()
        assert body["running"] and body["frame"]["width"] == 320 and body["frame"]["height"] == 160
        water = body["readers"][0]
        assert water["name"] == "water" and water["rois"] == [list(r) for r in rois] and water["vote"] == 1
        assert water["reanchor_after"] == 10
        assert water["last"]["value"] == "0427" and water["last"]["valid"] and body["mqtt"] is None
        boxed = client.get("/api/readers/frame.png")
        bare = client.get("/api/readers/frame.png?boxes=0")
        assert boxed.status_code == bare.status_code == 200 and boxed.mimetype == "image/png"
        a = np.asarray(Image.open(io.BytesIO(boxed.data)).convert("RGB")).astype(int)
        b = np.asarray(Image.open(io.BytesIO(bare.data)).convert("RGB")).astype(int)
        assert a.shape == b.shape == (160, 320, 3)
        x0, y0, w, h = rois[0]
        assert tuple(a[y0 + h // 2, x0]) == (0, 200, 0)  # the left edge of a valid reading's box: green
        assert client.get("/api/readers/frame.png?boxes=yes").status_code == 400
        assert client.get("/api/camera").get_json()["frames"] >= 2  # the camera counters go on too
        assert "edge_rbmlp_camera_frames" in client.get("/metrics").get_data(as_text=True)
    finally:
        loop.stop()
        loop.thread.join(timeout=30)
    assert client.get("/api/readers").get_json()["running"] is False


# -- the page: readers panel and ROI editor in a real Chromium -------------------------------------------------
# Playwright runs in a child process: granian's asyncio tasks, left in this process by other tests' servers,
# break sync_playwright's exit here (RuntimeError "Future object is not initialized").
PAGE_SCRIPT = r"""
import json, sys
from playwright.sync_api import sync_playwright
url, chromium, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args, timeout=60_000)
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    seen = []
    page.on("request", lambda req: seen.append([req.method, req.url]))
    page.goto(url + "/", wait_until="load")
    page.wait_for_function("() => JSON.parse(document.body.dataset.readers || '{}').water === '0427'", timeout=60_000)
    out["readers_visible"] = page.locator("#readers-panel").is_visible()
    out["camera_hidden"] = page.locator("#camera-panel").is_hidden()
    out["table"] = page.locator("#readers-table tbody").inner_text()
    page.wait_for_function("() => document.getElementById('readers-frame').naturalWidth > 0", timeout=60_000)
    out["frame_width"] = page.locator("#readers-frame").evaluate("img => img.naturalWidth")
    # the editor: boxes dragged on the live frame, in frame pixels whatever the canvas's CSS size
    page.wait_for_function("() => document.body.dataset.roiFrame === '320'", timeout=60_000)
    canvas = page.locator("#roi-canvas")
    canvas.evaluate("c => { c.style.width = '640px'; }")  # shown at twice the frame's size
    box = canvas.bounding_box()
    sx = box["width"] / 320
    for x0, y0, x1, y1 in ((20, 30, 70, 100), (80, 30, 130, 100), (200, 5, 203, 9)):  # the last: too small
        page.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sx)
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * sx, box["y"] + y1 * sx, steps=5)
        page.mouse.up()
    page.fill("#roi-name", "gas")
    out["toml"] = page.wait_for_function("() => document.body.dataset.roiToml", timeout=30_000).json_value()
    page.click("#roi-undo")
    out["after_undo"] = page.locator("#roi-toml").inner_text()
    page.select_option("#roi-start", "water")  # start from a configured reader's boxes
    out["from_water"] = page.locator("#roi-toml").inner_text()
    out["requests"] = seen
    browser.close()
print(json.dumps(out))
"""


def test_page_shows_the_readers_and_the_roi_editor_gives_the_toml(mnist, tmp_path):
    import json
    import subprocess
    import sys
    import tomllib

    from test_web_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

    from edge_rbmlp.server import create_app
    from edge_rbmlp.server.camera import open_camera, start_in_service
    from edge_rbmlp.server.config import CameraConfig, ServerConfig
    from serverkit import running_server

    _browser_or_skip()
    engine, x, y = mnist
    meterkit.write_frames(tmp_path / "frames", meterkit.still_frames(meterkit.clear_glyphs(x, y, engine, "0427"), 3))
    rois = tuple(tuple(r) for r in meterkit.rois())
    config = ServerConfig(models=[str(bundled_or_none("mnist"))],
                          camera=CameraConfig(enabled=True, source=f"dir:{tmp_path / 'frames'}", interval=0.2),
                          readers=(ReaderConfig("water", rois, vote=1),))
    app = create_app(config)
    loop = start_in_service(app, open_camera(source=config.camera.source), None, 0.2)
    try:
        with running_server(config, app) as (url, _):
            proc = subprocess.run([sys.executable, "-c", PAGE_SCRIPT, url, CHROMIUM, json.dumps(CHROMIUM_ARGS)],
                                  capture_output=True, text=True, timeout=300)
    finally:
        loop.stop()
        loop.thread.join(timeout=30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["readers_visible"] and out["camera_hidden"] and "0427" in out["table"]
    assert out["frame_width"] == 320  # the full-size frame with its boxes
    table = tomllib.loads(out["toml"])["readers"][0]
    assert table["name"] == "gas" and table["model"] == "mnist" and len(table["rois"]) == 2
    for got, want in zip(table["rois"], ([20, 30, 50, 70], [80, 30, 50, 70])):
        assert all(abs(g - w) <= 2 for g, w in zip(got, want)), (got, want)
    assert from_dict({"camera": {"enabled": True}, "readers": [table]}).readers[0].name == "gas"  # pastes as is
    assert len(tomllib.loads(out["after_undo"])["readers"][0]["rois"]) == 1
    start = tomllib.loads(out["from_water"])["readers"][0]
    assert start["name"] == "water" and start["rois"] == [list(r) for r in rois]
    assert all(u.startswith(url) or u.startswith(("blob:", "data:")) for _, u in out["requests"])  # nothing outside
    assert not [u for m, u in out["requests"] if m != "GET"]  # the editor writes nothing
