"""Camera sources: dir: (image files in name order, looped), file: (a real video written with PyAV),
v4l2: (the newest-frame thread, tested on a video file; no /dev/video* here), picamera2, and the
errors that name what to install."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_rbmlp.camera_sources import (DirSource, VideoSource, CameraUnavailable, open_source, parse_source,
                                       PYAV_HINT)
from edge_rbmlp.server.camera import CameraLoop, open_camera


def _levels(n):
    """Frames that tell each other apart by their brightness: 20, 60, 100, ..."""
    return [np.full((48, 64, 3), 20 + 40 * i, np.uint8) for i in range(n)]


@pytest.mark.parametrize("spec, expected", [
    ("picamera2", ("picamera2", None)), ("v4l2", ("v4l2", "/dev/video0")), ("v4l2:/dev/video2", ("v4l2", "/dev/video2")),
    ("dir:/srv/frames", ("dir", "/srv/frames")), ("file:meter.mp4", ("file", "meter.mp4")),
    (" dir:x ", ("dir", "x"))])
def test_parse_source(spec, expected):
    assert parse_source(spec) == expected


@pytest.mark.parametrize("spec", ["", "webcam", "dir:", "file:", "picamera2:0", "http://cam", None])
def test_parse_source_refuses_others_and_names_the_forms(spec):
    with pytest.raises(ValueError) as err:
        parse_source(spec)
    assert "v4l2:/dev/videoN" in str(err.value) and "dir:FOLDER" in str(err.value)


def test_config_checks_the_source():
    from edge_rbmlp.server.config import ConfigError, from_dict

    assert from_dict({"camera": {"source": "v4l2:/dev/video1"}}).camera.source == "v4l2:/dev/video1"
    assert from_dict({}).camera.source == "picamera2"
    with pytest.raises(ConfigError, match=r"\[camera\] source"):
        from_dict({"camera": {"source": "usb"}})
    with pytest.raises(ConfigError, match="must be a string"):
        from_dict({"camera": {"source": 0}})


def test_dir_source_in_name_order_looped_and_relisted(tmp_path):
    frames = _levels(3)
    for name, frame in zip(["b.png", "a.jpg", "c.bmp"], frames):  # name order: a, b, c
        Image.fromarray(frame).save(tmp_path / name, quality=95)
    (tmp_path / "notes.txt").write_text("not a frame")
    src = open_source(f"dir:{tmp_path}")
    means = [round(float(src.capture().mean()) / 40) for _ in range(6)]
    assert means == [round(v / 40) for v in (60, 20, 100, 60, 20, 100)]
    Image.fromarray(np.full((48, 64), 220, np.uint8)).save(tmp_path / "d.png")  # grey: comes back as RGB
    got = [src.capture() for _ in range(4)]
    assert [src.current.name for _ in range(1)] == ["d.png"] and got[-1].shape == (48, 64, 3)
    assert abs(float(got[-1].mean()) - 220) < 1


def test_dir_source_reports_a_bad_file_and_goes_on(tmp_path):
    Image.fromarray(_levels(1)[0]).save(tmp_path / "1.png")
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(_levels(2)[1]).save(tmp_path / "3.png")
    src = DirSource(str(tmp_path))
    assert src.capture().mean() == 20
    with pytest.raises(OSError, match="cannot read frame 2.png"):
        src.capture()
    assert src.capture().mean() == 60


def test_dir_source_errors(tmp_path):
    with pytest.raises(CameraUnavailable, match="no such folder"):
        open_source(f"dir:{tmp_path / 'missing'}")
    empty = DirSource(str(tmp_path))
    with pytest.raises(OSError, match="no image files"):
        empty.capture()
    Image.fromarray(_levels(1)[0]).save(tmp_path / "late.png")  # a folder that fills later works
    assert empty.capture().shape == (48, 64, 3)


def test_camera_loop_over_a_dir_with_a_bad_file(tmp_path):
    """The loop reports the bad frame, counts it, and keeps reading (as for a camera that hiccups)."""
    import edge_rbmlp

    for i, frame in enumerate(_levels(2)):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    (tmp_path / "1b.png").write_bytes(b"garbage")

    class Engine:
        def __init__(self):
            self.seen = []

        def predict_image(self, frame):
            self.seen.append(float(np.asarray(frame).mean()))
            return edge_rbmlp.Prediction("7", 7, [0.0] * 7 + [1.0] + [0.0] * 2, None, {"total_us": 1.0})

    engine, errors = Engine(), []
    loop = CameraLoop(open_camera(source=f"dir:{tmp_path}"), engine, interval=0, max_frames=4, on_error=errors.append)
    loop._sleep = lambda seconds: None
    loop.run()
    assert loop.frames == 4 and loop.errors == 1 and "1b.png" in str(errors[0])  # 0, 1, 1b (bad), 0, 1
    assert engine.seen == [20.0, 60.0, 20.0, 60.0]


# -- video ---------------------------------------------------------------------------------------------------
@pytest.fixture
def av():
    return pytest.importorskip("av", reason="PyAV is not installed: pip install 'edge-rbmlp[video]' (the test extra has it)")


def write_video(av, path, frames, fps=10):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture
def video(av, tmp_path):
    path = tmp_path / "meter.mp4"
    write_video(av, path, _levels(5))
    return path


def test_file_source_plays_every_frame_in_order_and_loops(video):
    src = open_source(f"file:{video}")
    means = [float(src.capture().mean()) for _ in range(12)]
    assert [round((m - 20) / 40) for m in means] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert src.capture().shape == (48, 64, 3)
    src.close()


def test_file_source_errors(av, tmp_path):
    with pytest.raises(CameraUnavailable, match="no such file"):
        open_source(f"file:{tmp_path / 'missing.mp4'}")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CameraUnavailable, match=f"cannot open file:{bad}"):
        open_source(f"file:{bad}")


def test_live_source_keeps_the_newest_frame_and_reopens_after_a_failure(av, video):
    """The V4L2 path minus the device: a thread decodes continuously, capture() takes the newest frame;
    when the stream ends (a webcam unplugged) capture() raises and the next one reopens it."""
    opened = []

    def opener():
        opened.append(1)
        return av.open(str(video))

    src = VideoSource("/dev/video9", live=True, opener=opener)
    first = src.capture()
    assert first.shape == (48, 64, 3)
    with pytest.raises(OSError, match="stopped sending frames"):
        for _ in range(10):  # 5 frames: the thread reaches the end long before this many captures
            src._thread.join(timeout=30)
            src.capture()
    assert round((float(src._latest.mean()) - 20) / 40) == 4  # the newest frame was the last one
    assert src.capture().shape == (48, 64, 3) and len(opened) == 2  # reopened
    src.close()


def test_v4l2_without_the_device_says_so(av, tmp_path):
    with pytest.raises(CameraUnavailable) as err:
        open_source(f"v4l2:{tmp_path / 'video0'}")
    assert f"v4l2:{tmp_path / 'video0'}" in str(err.value) and "video group" in str(err.value)


@pytest.mark.parametrize("spec", ["v4l2:/dev/video0", "file:/tmp/x.mp4"])
def test_without_pyav_the_error_names_the_package(monkeypatch, spec, tmp_path):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(
        ImportError("No module named 'av'")) if name == "av" else real_import(name, *a, **k))
    target = tmp_path / "x.mp4"
    target.write_bytes(b"")
    with pytest.raises(CameraUnavailable) as err:
        open_source(spec.replace("/tmp/x.mp4", str(target)))
    assert "pip install 'edge-rbmlp[video]'" in str(err.value) and "python3-av" in str(err.value)
    assert "PyAV" in PYAV_HINT


# -- the commands -----------------------------------------------------------------------------------------------
def test_camera_command_reads_a_dir_source(tmp_path):
    from serverkit import drawn_seven, write_models

    from edge_rbmlp.cli import main

    paths = write_models(tmp_path / "models")
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(drawn_seven()).save(frames / "seven.png")
    result = CliRunner().invoke(main, ["camera", str(paths["mnist"]), "--backend", "reference", "--count", "3",
                                       "--interval", "0", "--camera-source", f"dir:{frames}"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["frame"] for r in records] == [1, 2, 3]
    assert all(r["label"] in list("0123456789") for r in records)
    result = CliRunner().invoke(main, ["camera", str(paths["mnist"]), "--camera-source", "dir:/nonexistent"])
    assert result.exit_code == 1 and "no such folder" in result.output


def test_serve_camera_source_option_reaches_the_config(tmp_path, monkeypatch):
    """`serve --camera --camera-source dir:F` (the serve itself is stopped before it binds)."""
    from edge_rbmlp.cli import main
    from edge_rbmlp.server import serve as serve_module

    seen = {}

    def fake_serve(config, echo=None, **kw):
        seen["config"] = config
        return 0

    monkeypatch.setattr(serve_module, "serve", fake_serve)
    result = CliRunner().invoke(main, ["serve", "--camera", "--camera-source", f"dir:{tmp_path}"])
    assert result.exit_code == 0, result.output
    assert seen["config"].camera.enabled and seen["config"].camera.source == f"dir:{tmp_path}"
    result = CliRunner().invoke(main, ["serve", "--camera", "--camera-source", "usb"])
    assert result.exit_code == 1 and "v4l2:/dev/videoN" in result.output
