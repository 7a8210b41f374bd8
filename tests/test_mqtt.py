"""MQTT with Home Assistant discovery against a real mosquitto broker on a loopback port.

Frames come from a ``dir:`` source of real MNIST test digits composed into the number 0427 on noisy,
unevenly lit backgrounds (tests/meterkit.py). Every broker is started by the test on a free port with
a temporary config and stopped by the ``teardown`` fixture; every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import meterkit
from mqttkit import HINT, WAIT_S, Broker, Subscriber, free_port, have_mosquitto, wait_until
from serverkit import bundled_or_none

pytest.importorskip("paho.mqtt", reason="paho-mqtt is not installed: pip install 'edge-rbmlp[mqtt]' (the test extra has it)")
pytestmark = pytest.mark.skipif(not have_mosquitto(), reason=HINT)

from edge_rbmlp.server import create_app  # noqa: E402
from edge_rbmlp.server.config import CameraConfig, MqttConfig, ReaderConfig, ServerConfig  # noqa: E402

NUMBER = "0427"
RECONNECT_WAIT_S = 90  # paho's back-off grows to 30 s between attempts while the broker is away
PREFIX = "test/meter"
NODE = "meter-test"
PASSWORD = "s3cret-Pa55word-never-logged"


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """Six frames of 0427 (the bundled mnist model reads each of its glyphs on its own)."""
    mnist = bundled_or_none("mnist")
    if mnist is None:
        pytest.skip("the bundled mnist.rbm is not installed")
    try:
        from edge_rbmlp.datasets import load_mnist

        x, y = load_mnist("test")
    except (OSError, ValueError) as exc:
        pytest.skip(f"MNIST is not in the data cache (make data): {exc}")
    import edge_rbmlp

    engine = edge_rbmlp.load(str(mnist))
    glyphs = meterkit.clear_glyphs(x, y, engine, NUMBER)
    directory = tmp_path_factory.mktemp("frames")
    meterkit.write_frames(directory, meterkit.still_frames(glyphs, 6, seed=3))
    return directory


def readers(vote=1):
    return (ReaderConfig("water", tuple(tuple(r) for r in meterkit.rois()), vote=vote, monotonic=True),
            # half outside the 320x160 frame: every reading is invalid and goes to the error topic
            ReaderConfig("broken", ((300, 10, 60, 60),)))


def mqtt_config(port, **kw):
    return MqttConfig(host="127.0.0.1", port=port, topic_prefix=PREFIX, client_id=NODE, **kw)


def start(frames_dir, port, interval=0.2, vote=1, **kw):
    """The service's camera loop with readers and MQTT, in this process (no HTTP listener needed)."""
    from edge_rbmlp.server.camera import open_camera, start_in_service

    config = ServerConfig(models=[str(bundled_or_none("mnist"))],
                          camera=CameraConfig(enabled=True, source=f"dir:{frames_dir}", interval=interval),
                          readers=readers(vote), mqtt=mqtt_config(port, **kw))
    app = create_app(config)
    loop = start_in_service(app, open_camera(source=config.camera.source), None, interval, hostname="testhost")
    return app, loop


def stop(loop):
    loop.stop()
    loop.thread.join(timeout=WAIT_S)


@pytest.fixture
def teardown():
    """What a test starts (brokers, the service's camera loop, subscribers), stopped in reverse
    order however the test ends; every stop is idempotent, so a test may stop a thing early itself."""
    with contextlib.ExitStack() as stack:
        yield stack


def broker_for(teardown, directory, **kw) -> Broker:
    broker = Broker(directory, **kw)
    teardown.callback(broker.stop)
    return broker


def subscriber(teardown, port, **kw) -> Subscriber:
    sub = Subscriber(port, **kw)
    teardown.callback(sub.close)
    return sub


def running(teardown, frames_dir, port, **kw):
    """:func:`start`, stopped by ``teardown``."""
    app, loop = start(frames_dir, port, **kw)
    teardown.callback(stop, loop)
    return app, loop


def is_state(m, reader="water"):
    return m.topic == f"{PREFIX}/{reader}/state"


def discovery(reader="water"):
    return f"homeassistant/sensor/{NODE}/{reader}/config"


def test_discovery_state_error_status_and_ha_restart(frames_dir, tmp_path, caplog, teardown):
    caplog.set_level(logging.DEBUG, logger="edge_rbmlp")
    broker = broker_for(teardown, tmp_path / "broker").start()
    first = subscriber(teardown, broker.port, client_id="first")
    app, loop = running(teardown, frames_dir, broker.port)
    state = first.wait_for(is_state)
    payload = state.json()
    assert payload["value"] == NUMBER and payload["valid"] is True
    assert set(payload) >= {"value", "valid", "confidence", "digits", "latency_us", "ts"}
    assert len(payload["digits"]) == 4 and [d["label"] for d in payload["digits"]] == list(NUMBER)
    assert payload["confidence"] == min(d["confidence"] for d in payload["digits"]) >= 0.6
    error = first.wait_for(lambda m: m.topic == f"{PREFIX}/broken/error").json()
    assert error["valid"] is False and "outside the 320x160 frame" in error["reason"]
    assert not any(m.topic == f"{PREFIX}/broken/state" for m in first.messages)

    # a subscriber that comes later gets the retained discovery and status
    late = subscriber(teardown, broker.port, client_id="late")
    config = late.wait_for(lambda m: m.topic == discovery())
    assert config.retain
    disc = config.json()
    assert disc["name"] == "water" and disc["unique_id"] == f"{NODE}_water"
    assert disc["state_topic"] == f"{PREFIX}/water/state" and disc["value_template"] == "{{ value_json.value }}"
    assert disc["availability_topic"] == f"{PREFIX}/status" and disc["state_class"] == "total_increasing"
    assert disc["device"]["identifiers"] == [NODE] and disc["device"]["model"] and disc["device"]["sw_version"]
    assert late.wait_for(lambda m: m.topic == discovery("broken")).retain
    online = late.wait_for(lambda m: m.topic == f"{PREFIX}/status")
    assert online.text == "online" and online.retain

    # Home Assistant restarted: it announces itself and gets the discovery again
    before = sum(m.topic == discovery() for m in first.messages)
    n = first.count()
    first.publish("homeassistant/status", "online")
    first.wait_for(lambda m: m.topic == discovery(), after=n)
    assert sum(m.topic == discovery() for m in first.messages) == before + 1

    # HTTP: the readings and the broker status
    body = app.test_client().get("/api/readers").get_json()
    water = next(r for r in body["readers"] if r["name"] == "water")
    assert water["last"]["value"] == NUMBER and body["mqtt"]["connected"] is True
    assert body["mqtt"]["topic_prefix"] == PREFIX

    # a clean stop says offline (retained)
    n = first.count()
    stop(loop)
    off = first.wait_for(lambda m: m.topic == f"{PREFIX}/status", after=n)
    assert off.text == "offline"
    teardown.close()  # all stopped: nothing on the way down logged it either
    assert PASSWORD not in caplog.text


def test_cmd_read_takes_a_reading_now(frames_dir, tmp_path, teardown):
    broker = broker_for(teardown, tmp_path / "broker").start()
    sub = subscriber(teardown, broker.port)
    app, loop = running(teardown, frames_dir, broker.port, interval=3600)  # one frame, then an hour's sleep
    sub.wait_for(is_state)
    frames = loop.frames
    n = sub.count()
    sub.publish(f"{PREFIX}/cmd/read", "")
    again = sub.wait_for(is_state, after=n)  # unchanged value, published because it was asked for
    assert again.json()["value"] == NUMBER
    sub.wait_for(lambda m: m.topic == f"{PREFIX}/broken/error", after=n)
    # the messages can arrive before the camera thread is back from the forced frame (and a late
    # message of the first frame can be the one seen): wait, bounded, for the frame count
    deadline = time.monotonic() + 30
    while loop.frames < frames + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.frames == frames + 1
def test_broker_restart_reconnects_and_republishes_discovery(frames_dir, tmp_path, teardown):
    broker = broker_for(teardown, tmp_path / "broker").start()
    sub = subscriber(teardown, broker.port)
    app, loop = running(teardown, frames_dir, broker.port)
    sub.wait_for(is_state)
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    assert publisher.connects == 1
    sub.close()
    broker.stop()  # persistence is off: the restarted broker has no retained messages of its own
    wait_until(lambda: not publisher.connected.is_set(), what="the service noticing the broker is gone")
    # the camera and the HTTP side keep working meanwhile
    frames = loop.frames
    wait_until(lambda: loop.frames >= frames + 3, what="frames while the broker is down")
    client = app.test_client()
    body = client.get("/api/readers").get_json()
    assert body["mqtt"]["connected"] is False and body["readers"][0]["last"]["value"] == NUMBER
    assert client.get("/healthz").status_code == 200
    broker.start()
    wait_until(lambda: publisher.connects == 2, RECONNECT_WAIT_S, "the service reconnecting")
    sub = subscriber(teardown, broker.port)  # after the reconnect: what it gets now was retained
    config = sub.wait_for(lambda m: m.topic == discovery())
    assert config.retain  # sent again by the service after it reconnected
    assert sub.wait_for(lambda m: m.topic == f"{PREFIX}/status").text == "online"
    state = sub.wait_for(is_state)  # the latest reading, sent again after the reconnect (retained)
    assert state.retain and state.json()["value"] == NUMBER
    assert publisher.connects == 2
def test_broker_absent_at_start(frames_dir, tmp_path, caplog, teardown):
    caplog.set_level(logging.INFO, logger="edge_rbmlp")
    port = free_port()
    broker = broker_for(teardown, tmp_path / "broker", port=port)
    app, loop = running(teardown, frames_dir, port)
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    wait_until(lambda: publisher.attempts >= 1, what="a first connection attempt")
    wait_until(lambda: loop.frames >= 3, what="frames without a broker")
    assert not publisher.connected.is_set()
    assert app.test_client().get("/api/readers").get_json()["readers"][0]["last"]["value"] == NUMBER
    unreachable = [r for r in caplog.records if "cannot reach the broker" in r.getMessage()]
    assert len(unreachable) == 1, [r.getMessage() for r in caplog.records]
    assert "Connection refused" in unreachable[0].getMessage()
    broker.start()
    wait_until(publisher.connected.is_set, RECONNECT_WAIT_S, "the service connecting once the broker is there")
    sub = subscriber(teardown, port)
    assert sub.wait_for(lambda m: m.topic == discovery()).retain
    assert sub.wait_for(is_state).json()["value"] == NUMBER
def test_wrong_password_is_one_clear_log_line_and_retried(frames_dir, tmp_path, caplog, teardown):
    caplog.set_level(logging.DEBUG, logger="edge_rbmlp")
    broker = broker_for(teardown, tmp_path / "broker", users={"edge": "the-right-one"}).start()
    app, loop = running(teardown, frames_dir, broker.port, username="edge", password=PASSWORD)
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    wait_until(lambda: publisher.refusals >= 3, RECONNECT_WAIT_S, "three refused connection attempts")
    assert not publisher.connected.is_set() and publisher.connects == 0
    errors = [r for r in caplog.records if r.name == "edge_rbmlp.mqtt" and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "refused" in message and "password" in message.lower() and "127.0.0.1" in message
    assert broker.log_text().count("not authorised") >= 3 or broker.log_text().count("Client meter-test") >= 3
    body = app.test_client().get("/api/readers").get_json()
    assert body["mqtt"]["connected"] is False and "refused" in body["mqtt"]["last_error"]
    assert PASSWORD not in json.dumps(body)
    teardown.close()  # all stopped: nothing on the way down logged it either
    assert PASSWORD not in caplog.text


def test_password_from_the_environment(frames_dir, tmp_path, caplog, teardown):
    """``EDGE_RBMLP_MQTT_PASSWORD`` overrides ``[mqtt] password`` and opens a password-only broker."""
    from edge_rbmlp.server.config import load_config

    caplog.set_level(logging.DEBUG, logger="edge_rbmlp")
    broker = broker_for(teardown, tmp_path / "broker", users={"edge": PASSWORD}).start()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[camera]\nenabled = true\n[[readers]]\nname = "water"\nrois = [[0, 0, 20, 20]]\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "edge"\npassword = "wrong"\n')
    config = load_config(cfg, environ={"EDGE_RBMLP_MQTT_PASSWORD": PASSWORD})
    assert config.mqtt.password == PASSWORD and PASSWORD not in repr(config)
    app, loop = running(teardown, frames_dir, broker.port, username="edge", password=config.mqtt.password)
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    wait_until(publisher.connected.is_set, what="connected with the password from the environment")
    teardown.close()  # all stopped: nothing on the way down logged it either
    assert PASSWORD not in caplog.text


def test_tls_with_a_private_ca(frames_dir, tmp_path, caplog, teardown):
    """tls = true with ca_file: the service verifies the broker's certificate against the private CA; without
    the CA (the system's CAs) the handshake fails, is logged once and retried."""
    import shutil

    from mqttkit import make_certificates

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test certificates)")
    caplog.set_level(logging.DEBUG, logger="edge_rbmlp")
    certs = make_certificates(tmp_path / "certs")
    broker = broker_for(teardown, tmp_path / "broker", tls=certs).start()
    sub = subscriber(teardown, broker.port)  # the plain listener, for the test's own eyes
    app, loop = running(teardown, frames_dir, broker.tls_port, tls=True, ca_file=certs["cafile"])
    assert sub.wait_for(is_state).json()["value"] == NUMBER
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    assert publisher.connected.is_set()
    stop(loop)
    app, loop = running(teardown, frames_dir, broker.tls_port, tls=True)  # the system CAs do not know our private CA
    publisher = app.extensions["edge_rbmlp.readers"].publisher
    wait_until(lambda: publisher.attempts >= 2, RECONNECT_WAIT_S, "two failed TLS handshakes")
    assert not publisher.connected.is_set()
    failures = [r.getMessage() for r in caplog.records if r.name == "edge_rbmlp.mqtt"
                and r.levelno >= logging.WARNING and "cannot reach" in r.getMessage()]
    assert len(failures) == 1 and "CERTIFICATE_VERIFY_FAILED" in failures[0], failures
def test_a_missing_ca_file_is_a_clear_error(tmp_path):
    from edge_rbmlp.server.mqtt import MqttPublisher, MqttUnavailable

    with pytest.raises(MqttUnavailable, match=r"\[mqtt\] tls: cannot use ca_file '.*missing.pem'"):
        MqttPublisher(mqtt_config(8883, tls=True, ca_file=str(tmp_path / "missing.pem")), readers())


def test_without_paho_the_error_names_the_package(monkeypatch):
    import builtins

    from edge_rbmlp.server.mqtt import MqttPublisher, MqttUnavailable

    real_import = builtins.__import__

    def no_paho(name, *args, **kwargs):
        if name.startswith("paho"):
            raise ImportError("No module named 'paho'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_paho)
    with pytest.raises(MqttUnavailable) as err:
        MqttPublisher(mqtt_config(1883), readers())
    assert "pip install 'edge-rbmlp[mqtt]'" in str(err.value) and "paho-mqtt" in str(err.value)


def test_serve_without_paho_is_one_error_line(monkeypatch, frames_dir, tmp_path):
    import builtins

    from click.testing import CliRunner

    from edge_rbmlp.cli import main

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(
        ImportError("No module named 'paho'")) if name.startswith("paho") else real_import(name, *a, **k))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[server]\nmodels = ["{bundled_or_none("mnist")}"]\nport = 0\n[camera]\nenabled = true\n'
                   f'source = "dir:{frames_dir}"\n[[readers]]\nname = "w"\nrois = [[0, 0, 20, 20]]\n'
                   f'[mqtt]\nhost = "127.0.0.1"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: [mqtt] needs paho-mqtt" in result.output and "edge-rbmlp[mqtt]" in result.output


# -- the real `edge-rbmlp serve` --------------------------------------------------------------------------------
class PlainSubscriber:
    """``mosquitto_sub -v -F '%r %t %p' -t '#'``: one line per message (retain flag, topic, payload)."""

    def __init__(self, port):
        import shutil

        self.proc = subprocess.Popen([shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub", "-h", "127.0.0.1",
                                      "-p", str(port), "-t", "#", "-F", "%r %t %p", "-q", "1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n").split(" ", 2))
                self.cond.notify_all()

    def wait_for(self, predicate, after=0, timeout=WAIT_S * 2):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, (retain, topic, payload) in enumerate(self.lines[after:], after):
                    if predicate(retain == "1", topic, payload):
                        return i, retain == "1", payload
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"mosquitto_sub saw no such message; got {self.lines[-20:]}")
                self.cond.wait(min(left, 1))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT_S)


def test_serve_end_to_end_with_a_plain_subscriber(frames_dir, tmp_path, teardown):
    """Done-when: a broker on loopback, `edge-rbmlp serve --config F` reading dir: frames of 0427; a plain
    MQTT subscriber sees the retained discovery config, `online`, and states with value 0427; after
    SIGKILL the broker sends the last will, `offline`."""
    broker = broker_for(teardown, tmp_path / "broker").start()
    config = tmp_path / "config.toml"
    rois = ", ".join(f"[{x}, {y}, {w}, {h}]" for x, y, w, h in meterkit.rois())
    config.write_text(f"""
[server]
models = ["{bundled_or_none('mnist')}"]
port = 0
[camera]
enabled = true
source = "dir:{frames_dir}"
interval = 0.3
[[readers]]
name = "gas"
rois = [{rois}]
vote = 3
monotonic = true
[mqtt]
host = "127.0.0.1"
port = {broker.port}
topic_prefix = "home/gasmeter"
client_id = "gasmeter"
""")
    exe = Path(sys.executable).with_name("edge-rbmlp")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def launch():
        proc = subprocess.Popen([str(exe), "serve", "--config", str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        teardown.callback(ended, proc)
        output = []
        threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()
        wait_until(lambda: "serving" in "".join(output) or proc.poll() is not None, WAIT_S * 2, "serve to start")
        assert proc.poll() is None, "".join(output)
        return proc

    def ended(proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)

    service = launch()
    first = subscriber(teardown, broker.port)  # the service has connected and read a frame ...
    first.wait_for(lambda m: m.topic == "home/gasmeter/gas/state")
    first.close()
    sub = PlainSubscriber(broker.port)
    teardown.callback(sub.close)  # ... so what a plain subscriber gets now was retained
    _, retained, payload = sub.wait_for(lambda r, t, p: t == "homeassistant/sensor/gasmeter/gas/config")
    assert retained and json.loads(payload)["state_topic"] == "home/gasmeter/gas/state"
    _, retained, payload = sub.wait_for(lambda r, t, p: t == "home/gasmeter/status")
    assert retained and payload == "online"
    i, retained, payload = sub.wait_for(lambda r, t, p: t == "home/gasmeter/gas/state")
    assert retained and json.loads(payload)["value"] == NUMBER and json.loads(payload)["valid"] is True
    service.send_signal(signal.SIGKILL)
    service.wait(timeout=WAIT_S)
    i, _, payload = sub.wait_for(lambda r, t, p: t == "home/gasmeter/status" and p == "offline", after=i)
    assert payload == "offline"  # the broker's last will for the killed service
    # started again it is online again, and a clean stop (SIGTERM, as systemctl stop) says offline itself
    service = launch()
    i, _, _ = sub.wait_for(lambda r, t, p: t == "home/gasmeter/status" and p == "online", after=i)
    i, _, payload = sub.wait_for(lambda r, t, p: t == "home/gasmeter/gas/state", after=i)
    assert json.loads(payload)["value"] == NUMBER
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=WAIT_S) == 0
    sub.wait_for(lambda r, t, p: t == "home/gasmeter/status" and p == "offline", after=i)
    log = broker.log_text()  # SIGKILL: the socket just closed (last will); SIGTERM: a clean DISCONNECT
    assert log.index("Client gasmeter closed its connection.") < log.index("Client gasmeter disconnected.")