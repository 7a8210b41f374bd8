"""Where camera frames come from: ``[camera] source`` / ``--camera-source``.

* ``picamera2``: the Raspberry Pi CSI camera (the default; ``python3-picamera2`` from apt);
* ``v4l2:/dev/video0``: a USB webcam or any V4L2 device, through PyAV (``pip install 'edge-rbmlp[video]'``
  or ``sudo apt install python3-av``); a background thread keeps only the newest frame, so a slow
  reader never gets a stale one;
* ``dir:PATH``: the image files of a folder, in name order, looped (tests, development, replays);
* ``file:VIDEO``: the frames of a video file, in order, looped (PyAV too).

Every source has ``capture() -> uint8 HxWx3`` and ``close()``. Optional libraries are imported only
by the source that needs them, and a missing one is a :class:`CameraUnavailable` naming what to
install. A source that fails while running raises from ``capture()``; the camera loop reports it and
calls ``capture()`` again after a back-off, and the source reopens what it has to.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

log = logging.getLogger("edge_rbmlp.camera")

PICAMERA_HINT = ("picamera2 is not installed. On Raspberry Pi OS: `sudo apt install python3-picamera2`, and "
                 "create the venv with `python3 -m venv --system-site-packages` so that it can see it "
                 "(device/install.sh does both)")
PYAV_HINT = ("the {kind} camera source needs PyAV (the `av` package), which is not installed: "
             "`pip install 'edge-rbmlp[video]'` (or on Raspberry Pi OS `sudo apt install python3-av` with a "
             "--system-site-packages venv)")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp", ".gif")
KINDS = ("picamera2", "v4l2", "dir", "file")
SOURCE_HELP = 'picamera2, v4l2:/dev/videoN, dir:FOLDER or file:VIDEO'


class CameraUnavailable(RuntimeError):
    """No camera can be opened here (the message says what to install or check)."""


def parse_source(spec: str) -> Tuple[str, Optional[str]]:
    """``"v4l2:/dev/video0"`` -> ``("v4l2", "/dev/video0")``; ``"picamera2"`` -> ``("picamera2", None)``.

    A bare ``v4l2`` means ``/dev/video0``. Raises ``ValueError`` naming the accepted forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"camera source must be one of {SOURCE_HELP}, got {spec!r}")
    spec = spec.strip()
    kind, sep, arg = spec.partition(":")
    if kind == "picamera2" and not arg:
        return "picamera2", None
    if kind == "v4l2":
        return "v4l2", arg or "/dev/video0"
    if kind in ("dir", "file") and sep and arg:
        return kind, arg
    raise ValueError(f"camera source must be one of {SOURCE_HELP}, got {spec!r}")


def open_source(spec: str = "picamera2", width: int = 640, height: int = 480):
    """Open the camera source ``spec`` (see the module doc); raises :class:`CameraUnavailable`."""
    try:
        kind, arg = parse_source(spec)
    except ValueError as exc:
        raise CameraUnavailable(str(exc)) from None
    if kind == "picamera2":
        return PiCameraSource(width, height)
    if kind == "dir":
        return DirSource(arg)
    if kind == "file":
        return VideoSource(arg, live=False)
    return VideoSource(arg, live=True, width=width, height=height)


def _rgb(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., :3])
    return arr


class PiCameraSource:
    """Frames from the Raspberry Pi camera through picamera2."""

    name = "picamera2"

    def __init__(self, width: int = 640, height: int = 480):
        try:
            from picamera2 import Picamera2  # noqa: F401  (only on Raspberry Pi OS)
        except ImportError as exc:
            raise CameraUnavailable(f"{PICAMERA_HINT} ({exc})") from None
        try:
            self._cam = Picamera2()
            config = self._cam.create_still_configuration(main={"size": (width, height), "format": "RGB888"})
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:  # libcamera raises many kinds when no camera is connected
            raise CameraUnavailable(f"cannot open the camera: {exc} (is it connected and enabled?)") from None

    def capture(self) -> np.ndarray:
        return self._cam.capture_array("main")

    def close(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception:  # pragma: no cover - best effort on shutdown
            pass


class DirSource:
    """The image files of a folder, in name order, looped. The folder is listed again at the start of
    every pass, so files added or removed show up; a file that cannot be read is raised (the loop
    reports it) and the next ``capture()`` goes on with the next file."""

    name = "dir"

    def __init__(self, path: str):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CameraUnavailable(f"camera source dir:{path}: no such folder")
        self._files = []
        self._i = 0
        self.current: Optional[Path] = None

    def _list(self):
        return sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def capture(self) -> np.ndarray:
        from PIL import Image

        if self._i >= len(self._files):
            self._files, self._i = self._list(), 0
            if not self._files:
                raise OSError(f"no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in {self.path}")
        path = self._files[self._i]
        self._i += 1
        self.current = path
        try:
            with Image.open(path) as img:
                img.load()
                return np.asarray(img.convert("RGB"))
        except FileNotFoundError:
            raise OSError(f"{path} was removed") from None
        except Exception as exc:  # Pillow raises many types for a corrupt file
            raise OSError(f"cannot read frame {path.name}: {exc}") from None

    def close(self) -> None:
        pass


def _import_av(kind: str):
    try:
        import av
    except ImportError as exc:
        raise CameraUnavailable(f"{PYAV_HINT.format(kind=kind)} ({exc})") from None
    return av


class VideoSource:
    """Frames decoded by PyAV: a video file (``live=False``: every frame in order, looped at the end)
    or a V4L2 device (``live=True``: a thread decodes continuously and ``capture()`` returns the newest
    frame, waiting up to ``timeout`` seconds for one). A device that goes away is reopened by the next
    ``capture()``."""

    def __init__(self, target: str, live: bool, width: Optional[int] = None, height: Optional[int] = None,
                 timeout: float = 10.0, opener=None):
        self.kind = "v4l2" if live else "file"
        self.name = self.kind
        self.target = target
        self.live = live
        self.width, self.height = width, height
        self.timeout = timeout
        self._av = _import_av(f"{self.kind}:") if opener is None else None
        self._opener = opener or self._open_container
        self._container = None
        self._frames = None
        self._lock = threading.Condition()
        self._latest: Optional[np.ndarray] = None
        self._seq = 0
        self._taken = 0
        self._error: Optional[BaseException] = None
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        if not live and not os.path.isfile(target):
            raise CameraUnavailable(f"camera source file:{target}: no such file")
        self._open()  # fail now (wrong device, unreadable file) rather than at the first frame

    def _open_container(self):
        av = self._av
        try:
            if self.live:
                options = {}
                if self.width and self.height:
                    options["video_size"] = f"{self.width}x{self.height}"
                return av.open(self.target, format="v4l2", options=options)
            return av.open(self.target)
        except Exception as exc:  # av.error.* (FileNotFoundError, PermissionError, InvalidDataError, ...)
            hint = " (is the service user in the video group? device/install.sh --camera)" if self.live else ""
            raise CameraUnavailable(f"cannot open {self.kind}:{self.target}: {exc}{hint}") from None

    def _open(self) -> None:
        self._container = self._opener()
        streams = [s for s in self._container.streams if s.type == "video"]
        if not streams:
            self._container.close()
            raise CameraUnavailable(f"{self.kind}:{self.target} has no video stream")
        self._frames = self._container.decode(streams[0])
        if self.live:
            self._error = None
            self._thread = threading.Thread(target=self._grab, name="edge-rbmlp-v4l2", daemon=True)
            self._thread.start()

    def _close_container(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # pragma: no cover - best effort
                pass
        self._container = None
        self._frames = None

    def _grab(self) -> None:
        """The V4L2 thread: it alone touches the container once started, and closes it when it ends."""
        container, frames = self._container, self._frames
        try:
            for frame in frames:
                arr = frame.to_ndarray(format="rgb24")
                with self._lock:
                    if self._closed:
                        return
                    self._latest = arr
                    self._seq += 1
                    self._lock.notify_all()
            raise OSError("the device stopped sending frames")
        except Exception as exc:
            with self._lock:
                self._error = exc
                self._lock.notify_all()
        finally:
            try:
                container.close()
            except Exception:  # pragma: no cover - best effort
                pass

    def capture(self) -> np.ndarray:
        if self._container is None:
            self._open()
        if not self.live:
            try:
                return next(self._frames).to_ndarray(format="rgb24")
            except StopIteration:  # the end of the file: loop
                self._close_container()
                self._open()
                try:
                    return next(self._frames).to_ndarray(format="rgb24")
                except StopIteration:
                    raise OSError(f"file:{self.target} has no frames") from None
            except Exception as exc:
                self._close_container()
                raise OSError(f"cannot decode file:{self.target}: {exc}") from None
        with self._lock:
            self._lock.wait_for(lambda: self._seq > self._taken or self._error is not None, self.timeout)
            if self._seq > self._taken:
                self._taken = self._seq
                return self._latest
            error = self._error
        if error is not None:  # the thread has ended and closed the device: reopened by the next capture()
            self._container = self._frames = None
            raise OSError(f"{self.kind}:{self.target} failed: {error}")
        raise OSError(f"{self.kind}:{self.target} sent no frame in {self.timeout:g} s")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self.live:
            if self._thread is not None:  # it closes the device after its current frame
                self._thread.join(timeout=2)
        else:
            self._close_container()
