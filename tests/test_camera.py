"""The camera pipeline: frames of real MNIST test digits on larger, noisy, unevenly lit
backgrounds at different scales and positions -> preprocess_digit -> classify -> publish."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from serverkit import bundled_or_none, http, make_config, mnist_test_digits, running_server, synthetic_frame, \
    write_models

from edge_rbmlp.image import preprocess_digit
from edge_rbmlp.server import create_app
from edge_rbmlp.server.camera import PICAMERA_HINT, CameraLoop, CameraUnavailable, open_camera, start_in_service

N_FRAMES = 300


class FrameCamera:
    """A stand-in for Picamera2: yields prepared frames, then raises when it runs out."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.i = 0
        self.closed = False

    def capture(self):
        frame = self.frames[self.i % len(self.frames)]
        self.i += 1
        return frame

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def digits():
    data = mnist_test_digits(N_FRAMES)
    if data is None:
        pytest.skip("no MNIST test digits: neither the data cache (make data) nor edge_rbmlp/samples has them")
    return data


@pytest.fixture(scope="module")
def frames(digits):
    x, _ = digits
    rng = np.random.default_rng(2026)
    # one frame in five is chalk on a dark board; the rest dark ink on (often dimly lit) paper
    return [synthetic_frame(x[i], rng, dark_background=(i % 5 == 4)) for i in range(len(x))]


@pytest.fixture(scope="module")
def piped(frames):
    """What the pipeline makes of every frame (uint8 [n, 28, 28])."""
    return np.stack([preprocess_digit(f) for f in frames])


def test_frames_are_what_they_claim(frames, digits):
    x, _ = digits
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    sizes = {f.shape for f in frames}
    assert sizes == {(240, 320, 3)}
    # different exposures: the frames are not all alike
    means = [f.mean() for f in frames]
    assert max(means) - min(means) > 100


def test_pipeline_recovers_the_mnist_digit(frames, digits, piped):
    """Model-independent: the 28x28 the pipeline makes of a frame looks like the MNIST original."""
    x, _ = digits
    corr = np.array([np.corrcoef(piped[i].ravel().astype(float), x[i].ravel().astype(float))[0, 1]
                     for i in range(len(frames))])
    print(f"\ncamera frames -> preprocess_digit: correlation with the MNIST original: mean {corr.mean():.3f}, "
          f"10th percentile {np.percentile(corr, 10):.3f} ({len(frames)} frames)")
    assert corr.mean() > 0.85 and np.percentile(corr, 10) > 0.6


def test_pipeline_keeps_what_a_classifier_needs(frames, digits, piped):
    """Model-independent accuracy: 1-nearest-neighbour on 20,000 MNIST training digits, on the
    original test digits and on what the pipeline makes of their camera frames."""
    try:
        from edge_rbmlp.datasets import load_mnist

        xt, yt = load_mnist("train")
    except (OSError, ValueError) as exc:
        pytest.skip(f"the MNIST training set is not in the data cache (make data): {exc}")
    x, y = digits
    train = xt[:20000].reshape(20000, -1).astype(np.float32) / 255
    norms = (train ** 2).sum(1)

    def nn(q):
        q = q.reshape(len(q), -1).astype(np.float32) / 255
        return yt[:20000][(norms[None, :] - 2 * q @ train.T).argmin(1)]

    direct = (nn(x) == y).mean()
    through = (nn(piped) == y).mean()
    print(f"\n1-NN accuracy: MNIST test digits {direct:.3f}, their camera frames through the pipeline {through:.3f}")
    assert through >= direct - 0.04


def test_whole_pipeline_accuracy_with_the_bundled_model(frames, digits):
    """The closing number: camera frames -> CameraLoop -> the bundled MNIST model."""
    from edge_rbmlp.engines import create
    from edge_rbmlp.models import load_model

    if bundled_or_none("mnist") is None:
        pytest.skip("the bundled mnist.rbm is not installed yet (train/ makes it); "
                    "the model-independent checks above still ran")
    x, y = digits
    engine = create(load_model(str(bundled_or_none("mnist"))), "reference")
    results = []
    loop = CameraLoop(FrameCamera(frames), engine, interval=0, max_frames=len(frames),
                      on_result=lambda frame, pred: results.append(pred.class_index))
    loop.run()
    assert loop.frames == len(frames) and loop.errors == 0
    direct = (engine.predict(x.reshape(len(x), -1)).argmax(1) == y).mean()
    accuracy = (np.array(results) == y).mean()
    print(f"\ncamera pipeline accuracy (bundled mnist, {len(frames)} synthetic camera frames): {accuracy:.3f}; "
          f"the same model on the MNIST originals: {direct:.3f}")
    assert accuracy >= 0.85 and accuracy >= direct - 0.06


# -- the loop, faults, and publishing ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


def test_loop_survives_a_failing_and_garbage_camera(paths, frames):
    from edge_rbmlp.engines import create
    from edge_rbmlp.model_file import load_packed_model

    engine = create(load_packed_model(paths["mnist"]), "reference")

    class Flaky:
        def __init__(self):
            self.n = 0

        def capture(self):
            self.n += 1
            if self.n == 2:
                raise OSError("camera disconnected")
            if self.n == 3:
                return np.zeros((0, 5), np.uint8)
            if self.n == 4:
                return None
            if self.n == 5:
                return np.array([["a"]], dtype=object)
            return frames[self.n]

    records, errors = [], []
    loop = CameraLoop(Flaky(), engine, interval=0, max_frames=3, echo=records.append, on_error=errors.append)
    loop._sleep = lambda seconds: None  # no back-off sleeps in the test
    loop.run()
    assert loop.frames == 3 and loop.errors == 4
    assert "disconnected" in str(errors[0])
    assert all(set(r) >= {"frame", "label", "confidence", "latency_us"} for r in records)


def test_camera_in_the_service_publishes_the_latest_frame(paths, frames):
    app = create_app(make_config(paths))
    source = FrameCamera(frames[:3])
    loop = start_in_service(app, source, None, interval=0.01)
    try:
        loop.stop_event.wait(0)
        client = app.test_client()
        import time

        deadline = time.monotonic() + 60  # bounded wait for the first frames
        while time.monotonic() < deadline and client.get("/api/camera").get_json()["frames"] < 2:
            time.sleep(0.01)
        cam = client.get("/api/camera").get_json()
        assert cam["running"] and cam["model"] == "mnist" and cam["frames"] >= 2
        assert cam["last"]["label"] in [str(i) for i in range(10)]
        png = client.get("/api/camera/frame.png")
        assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"
        assert client.get("/api/camera/input.png").status_code == 200
        assert "edge_rbmlp_camera_frames" in client.get("/metrics").get_data(as_text=True)
    finally:
        loop.stop()
        loop.thread.join(timeout=10)


def test_no_frame_yet_is_a_clear_404(paths):
    client = create_app(make_config(paths)).test_client()
    resp = client.get("/api/camera/frame.png")
    assert resp.status_code == 404 and "no camera frame" in resp.get_json()["error"]
    assert client.get("/api/camera").get_json()["running"] is False


def test_publish_to_a_running_service(paths, frames):
    from edge_rbmlp.server.cli_commands import _publisher

    with running_server(make_config(paths)) as (url, app):
        publish = _publisher(url, str(paths["mnist"]))
        publish(frames[0], None)
        status, _, body = http("GET", url + "/api/camera")
        cam = json.loads(body)
        assert cam["frames"] == 1 and cam["last"]["model"] == "mnist"
        status, _, body = http("POST", url + "/api/camera/publish/imdb", b"x", {"Content-Type": "image/png"})
        assert status == 400


def test_without_picamera2_the_error_says_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_picamera(name, *args, **kwargs):
        if name.startswith("picamera2"):
            raise ImportError("No module named 'picamera2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_picamera)
    with pytest.raises(CameraUnavailable) as err:
        open_camera()
    assert "sudo apt install python3-picamera2" in str(err.value) and "--system-site-packages" in str(err.value)
    assert "python3-picamera2" in PICAMERA_HINT


def test_camera_command_without_picamera2(paths, monkeypatch):
    import builtins

    from edge_rbmlp.cli import main

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(
        ImportError("no picamera2")) if name.startswith("picamera2") else real_import(name, *a, **k))
    result = CliRunner().invoke(main, ["camera", str(paths["mnist"]), "--backend", "reference", "--count", "1"])
    assert result.exit_code == 1
    assert "sudo apt install python3-picamera2" in result.output
    result = CliRunner().invoke(main, ["camera", str(paths["imdb"]), "--backend", "reference"])
    assert result.exit_code == 1 and "not images" in result.output


def test_preprocessing_fixes_for_camera_frames():
    """The three changes made to edge_rbmlp.image for camera frames, one by one."""
    from PIL import Image, ImageDraw

    def seven(paper, ink, size=(200, 260)):
        img = Image.new("L", (size[1], size[0]), paper)
        ImageDraw.Draw(img).line([(90, 50), (160, 50), (115, 150)], fill=ink, width=9)
        return np.asarray(img)

    reference = preprocess_digit(seven(255, 0))
    # 1. dimly lit paper (mid-grey, below 0.5) with dark ink is still dark-on-light
    dim = preprocess_digit(seven(100, 20))
    assert np.corrcoef(dim.ravel(), reference.ravel())[0, 1] > 0.9
    # 2. sensor noise does not stretch the crop to the whole frame
    rng = np.random.default_rng(0)
    noisy = np.clip(seven(200, 40) + rng.normal(0, 12, (200, 260)), 0, 255).astype(np.uint8)
    out = preprocess_digit(noisy)
    ys, xs = np.nonzero(out > 60)
    assert max(ys.ptp(), xs.ptp()) >= 16  # the digit fills the 20-pixel box, not a corner of it
    assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.8
    # 3. a speck far from the digit is ignored
    specked = seven(255, 0).copy()
    specked[185:192, 5:12] = 0
    assert np.corrcoef(preprocess_digit(specked).ravel(), reference.ravel())[0, 1] > 0.95


def test_a_broken_camera_is_reported_and_the_service_keeps_serving(paths, frames):
    from serverkit import drawn_seven, png_bytes

    app = create_app(make_config(paths))

    class Broken:
        def __init__(self):
            self.n = 0

        def capture(self):
            self.n += 1
            if self.n % 2:
                raise OSError("camera disconnected")
            return frames[0]

    loop = start_in_service(app, Broken(), "mnist", interval=0.01)
    loop._sleep = lambda seconds: None  # no back-off sleeps in the test
    try:
        client = app.test_client()
        import time

        deadline = time.monotonic() + 60  # bounded; the first back-off may already be sleeping
        while time.monotonic() < deadline:
            cam = client.get("/api/camera").get_json()
            if cam["errors"] >= 2 and cam["frames"] >= 1:
                break
            time.sleep(0.01)
        assert cam["errors"] >= 2 and "disconnected" in cam["last_error"] and cam["frames"] >= 1
        resp = client.post("/classify/mnist", data=png_bytes(drawn_seven()), content_type="image/png")
        assert resp.status_code == 200
        assert "edge_rbmlp_camera_errors" in client.get("/metrics").get_data(as_text=True)
    finally:
        loop.stop()
        loop.thread.join(timeout=10)


# -- device/install.sh --camera: V4L2 (python3-av, the video group) and MQTT (paho-mqtt, the password in env) --
DEBIAN = 'ID=debian\nVERSION_CODENAME=bookworm\n'
RASPBIAN = 'ID=raspbian\nID_LIKE=debian\nVERSION_CODENAME=bookworm\n'


def _install(tmp_path, *args, os_release=None):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    stubs = {"apt-get": f'echo "apt-get $*" >> {log}', "dpkg-query": "exit 1", "systemctl": "exit 0",
             "getent": f'echo "getent $*" >> {log}; exit 2', "groupadd": f'echo "groupadd $*" >> {log}',
             "python3": f'mkdir -p "$4/bin"; printf "#!/bin/sh\\necho pip \\"\\$*\\" >> {log}\\n" > "$4/bin/pip"; '
                        f'chmod +x "$4/bin/pip"'}
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "units").mkdir(exist_ok=True)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    if os_release is not None:  # pretend to be another OS (install.sh reads this instead of /etc/os-release)
        (tmp_path / "os-release").write_text(os_release)
        env["EDGE_RBMLP_OS_RELEASE"] = str(tmp_path / "os-release")
        env["EDGE_RBMLP_RPI_ISSUE"] = str(tmp_path / "no-rpi-issue")
    run = subprocess.run(["bash", str(root / "device" / "install.sh"), *args, "--prefix", str(tmp_path / "opt"),
                          "--config-dir", str(tmp_path / "etc"), "--unit-dir", str(tmp_path / "units"),
                          "--models-dir", str(tmp_path / "models")],  # never the host's /var/lib
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout, log.read_text() if log.exists() else ""


def test_install_camera_adds_v4l2_the_video_group_and_mqtt(tmp_path):
    import os
    from pathlib import Path

    if os.geteuid() != 0:
        pytest.skip("install.sh refuses to run for real without root")
    out, calls = _install(tmp_path, "--camera", os_release=DEBIAN)
    # apt: PyAV everywhere; python3-picamera2 only exists in the Raspberry Pi archive
    assert "python3-av" in calls and "python3-picamera2" not in calls
    (tmp_path / "pi").mkdir()
    _, pi_calls = _install(tmp_path / "pi", "--camera", os_release=RASPBIAN)
    assert "python3-av" in pi_calls and "python3-picamera2" in pi_calls
    assert f"{Path(__file__).resolve().parent.parent}[mqtt]" in calls  # pip install SOURCE[mqtt] (paho-mqtt)
    assert "getent group video" in calls and "groupadd --system video" in calls  # a system without the group
    env = (tmp_path / "etc" / "env").read_text()
    assert "# EDGE_RBMLP_MQTT_PASSWORD=" in env and "# EDGE_RBMLP_TOKEN=" in env
    assert oct((tmp_path / "etc" / "env").stat().st_mode & 0o777) == "0o600"
    dropin = (tmp_path / "units" / "edge-rbmlp.service.d" / "camera.conf").read_text()
    assert "SupplementaryGroups=video" in dropin and "DeviceAllow=char-video4linux rw" in dropin
    # again: the password line is not added twice; without --camera no PyAV, no paho, no group
    _install(tmp_path, "--camera", os_release=DEBIAN)
    assert (tmp_path / "etc" / "env").read_text().count("EDGE_RBMLP_MQTT_PASSWORD") == 1
    plain = tmp_path / "plain"
    plain.mkdir()
    _, calls = _install(plain, os_release=RASPBIAN)
    assert "python3-picamera2" not in calls and "python3-av" not in calls and "[mqtt]" not in calls and "groupadd" not in calls
