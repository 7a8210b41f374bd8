"""The service's settings: defaults, a TOML file and command-line overrides.

A config file (``/etc/edge-rbmlp/config.toml`` on a Pi, see ``device/config.toml``)::

    [server]
    models = ["mnist", "imdb"]    # bundled names or .rbm paths; empty = every bundled model
    host = "127.0.0.1"            # loopback by default
    port = 8080
    threads = 1                   # request threads per worker process (the GIL runs one at a time)
    workers = 1                   # processes behind the port (SO_REUSEPORT); the cores of a Pi 4/5: 4
    backend = "auto"
    http_server = "auto"          # auto = granian (Rust HTTP/1) when installed, else waitress
    token = ""                    # API token; EDGE_RBMLP_TOKEN in the environment overrides it
    insecure_public = false       # allow a non-loopback bind without a token
    access_log = false            # one line per request (client, method, path, status, bytes, ms)

    [limits]
    max_body_bytes = 4194304      # refused (413) from Content-Length and while reading
    max_image_pixels = 12000000   # refused before decoding (12 MP: a 4000x3000 photo)
    max_decode_bytes = 50331648   # per worker: decoded frames and parsed JSON at once (48 MiB)
    request_timeout_s = 30        # a request still running after this long is answered 503
    max_worker_rss_bytes = 0      # a worker above this after a request is replaced (0: its stated bound)
    min_image_side = 8
    max_text_chars = 200000
    max_batch = 256
    max_connections = 1000        # open connections per worker (then new ones wait in the backlog)
    idle_timeout_s = 15           # a connection that sends nothing for this long is closed

    [camera]
    enabled = false
    model = "mnist"
    interval = 1.0
    width = 640
    height = 480
    source = "picamera2"          # or "v4l2:/dev/video0", "dir:FOLDER", "file:VIDEO"

    [[readers]]                   # a number read from digit regions of every frame (needs the camera)
    name = "water"
    model = "mnist"
    rois = [[10, 20, 40, 60], [50, 20, 40, 60]]   # [x, y, w, h] in frame pixels, one per digit, left to right
    min_confidence = 0.6
    vote = 3                      # publish a value only when most of the last 3 frames read it
    monotonic = false             # true: a counter never goes down
    max_rate_per_hour = 100       # optional: refuse a change faster than this since the value last changed
    reanchor_after = 10           # this many refused readings in a row that agree replace the last value (0: never)

    [mqtt]                        # publish the readings, with Home Assistant discovery
    host = "192.168.1.10"
    port = 1883
    username = "edge"
    password = ""                 # better: EDGE_RBMLP_MQTT_PASSWORD in the environment (it overrides)
    tls = false
    ca_file = ""
    topic_prefix = "edge-rbmlp/<hostname>"
    discovery_prefix = "homeassistant"
    qos = 1
    client_id = "edge-rbmlp-<hostname>"

Unknown sections or keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib

TOKEN_ENV = "EDGE_RBMLP_TOKEN"
# prometheus-client's multiprocess mode: set by the --workers supervisor, read by /metrics (here so
# that both import it from below, and the supervisor stays free of prometheus-client)
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MQTT_PASSWORD_ENV = "EDGE_RBMLP_MQTT_PASSWORD"
DEFAULT_CONFIG_PATH = Path("/etc/edge-rbmlp/config.toml")


HTTP_SERVERS = ("auto", "granian", "waitress")


class ConfigError(ValueError):
    """A config file or option is invalid; the message names the key."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    # memory: a worker holds at most max_decode_bytes of decoded frames and parsed JSON at once
    # (shared by its threads; server/guard.py), and 12 MP of RGB (4 bytes a pixel in Pillow) is
    # 48 MiB: the largest image the pixel limit allows fits the budget. A worker's resident memory
    # stays under its bound (guard.worker_memory_bound: what it had when ready + the budget +
    # 24 MiB per thread); systemd/edge-rbmlp.service's MemoryMax is chosen from it
    max_image_pixels: int = 12_000_000
    max_decode_bytes: int = 48 * 1024 * 1024
    request_timeout_s: int = 30
    max_worker_rss_bytes: int = 0  # 0: guard.worker_memory_bound
    min_image_side: int = 8
    max_text_chars: int = 200_000
    max_batch: int = 256
    # slow or idle clients hold a connection each: many are allowed (waitress polls, so more than
    # select's 1024 descriptors), and silent ones are closed soon
    max_connections: int = 1000
    idle_timeout_s: int = 15


@dataclass(frozen=True)
class CameraConfig:
    enabled: bool = False
    model: Optional[str] = None  # default: the first image model served
    interval: float = 1.0
    width: int = 640
    height: int = 480
    source: str = "picamera2"  # v4l2:/dev/videoN, dir:FOLDER, file:VIDEO (edge_rbmlp.camera_sources)


@dataclass(frozen=True)
class ReaderConfig:
    """``[[readers]]``: a number read from one digit region (``[x, y, w, h]``) per digit, left to right."""

    name: str
    rois: Tuple[Tuple[int, int, int, int], ...]
    model: str = "mnist"
    min_confidence: float = 0.6
    vote: int = 3  # a value is published once it is the majority of the last `vote` frames
    monotonic: bool = False
    max_rate_per_hour: Optional[float] = None
    # this many voted readings in a row that the rules refuse, and that agree with each other, replace
    # the last accepted value (which was then a misread, or the meter was replaced); 0: never
    reanchor_after: int = 10


@dataclass(frozen=True)
class MqttConfig:
    """``[mqtt]``: where the readings go (paho-mqtt, imported only when this section exists)."""

    host: str
    port: int = 1883
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)  # never printed; EDGE_RBMLP_MQTT_PASSWORD
    tls: bool = False
    ca_file: Optional[str] = None
    topic_prefix: Optional[str] = None  # default edge-rbmlp/<hostname>
    discovery_prefix: str = "homeassistant"
    qos: int = 1
    client_id: Optional[str] = None  # default edge-rbmlp-<hostname>
    keepalive: int = 30  # seconds; the broker sends the last will when this many pass without a word
    republish_s: float = 60.0  # an unchanged reading is published again after this long


@dataclass(frozen=True)
class ServerConfig:
    models: List[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8080
    # one request thread per process: requests are mostly Python, and a second thread of the same
    # process only adds GIL hand-offs between cores (make soak: 1 worker x 2 threads = 0.76x of 1 x 1);
    # for more throughput add workers
    threads: int = 1
    workers: int = 1
    backend: str = "auto"
    # the HTTP server under the Flask app: "granian" (Rust, hyper; the default where its wheel is
    # installed), "waitress" (pure Python, the fallback) or "auto" (granian if usable, else waitress)
    http_server: str = "auto"
    token: Optional[str] = field(default=None, repr=False)  # never printed
    insecure_public: bool = False
    access_log: bool = False  # one INFO line per request on the edge_rbmlp.access logger
    limits: Limits = field(default_factory=Limits)
    camera: CameraConfig = field(default_factory=CameraConfig)
    readers: Tuple[ReaderConfig, ...] = ()
    mqtt: Optional[MqttConfig] = None

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def check_exposure(self) -> None:
        """Refuse a non-loopback bind without a token unless ``insecure_public`` is set."""
        if not self.is_loopback and not self.token and not self.insecure_public:
            raise ConfigError(
                f"refusing to listen on {self.host!r} (not loopback) without an API token: set [server] token "
                f"in the config or {TOKEN_ENV} in the environment, or pass --insecure-public to expose the "
                f"service to everyone who can reach it")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_INT_RANGES = {
    "port": (0, 65535), "threads": (1, 64), "workers": (1, 64),
    "max_body_bytes": (1024, 1 << 30), "max_image_pixels": (64, 400_000_000),
    "max_decode_bytes": (1 << 20, 1 << 34), "request_timeout_s": (1, 3600), "max_worker_rss_bytes": (0, 1 << 40), "min_image_side": (1, 1024),
    "max_text_chars": (1, 10_000_000), "max_batch": (1, 100_000), "max_connections": (1, 100_000),
    "idle_timeout_s": (1, 3600), "width": (16, 8192), "height": (16, 8192),
}


def _check(section: str, cls, values: dict):
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        where = f"[{section}] {key}" if section else key
        if key not in known or key in _NESTED:
            raise ConfigError(f"unknown config key {where}; known: {', '.join(k for k in known if k not in _NESTED)}")
        default = known[key].default
        if key in _INT_RANGES:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            lo, hi = _INT_RANGES[key]
            if not lo <= value <= hi:
                raise ConfigError(f"{where} must be between {lo} and {hi}, got {value}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif key == "interval":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 3600:
                raise ConfigError(f"{where} must be a number of seconds in [0, 3600], got {value!r}")
            value = float(value)
        elif key == "models":
            if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
                raise ConfigError(f"{where} must be a list of model names or paths")
        elif key == "http_server":
            if value not in HTTP_SERVERS:
                raise ConfigError(f"{where} must be one of {', '.join(HTTP_SERVERS)}, got {value!r}")
        elif key in ("host", "backend", "token", "model", "source"):
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
            if key == "token" and value == "":
                value = None
            if key == "source":
                from ..camera_sources import parse_source

                try:
                    parse_source(value)
                except ValueError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
        out[key] = value
    return out


_NESTED = ("limits", "camera", "readers", "mqtt")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _number(where: str, value, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _int(where: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be an integer between {lo} and {hi}, got {value!r}")
    return value


def _keys(where: str, cls, values: dict, required=()) -> None:
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown config key {where} {key}; known: {', '.join(known)}")
    for key in required:
        if key not in values:
            raise ConfigError(f"{where} needs {key}")


def _readers(data) -> Tuple[ReaderConfig, ...]:
    """``[[readers]]`` tables -> ReaderConfigs (every key checked; names unique and topic-safe)."""
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError("readers must be [[readers]] tables")
    out, names = [], set()
    for n, table in enumerate(data, 1):
        where = f"[[readers]] #{n}"
        _keys(where, ReaderConfig, table, required=("name", "rois"))
        name = table["name"]
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 64:
            raise ConfigError(f"{where} name must be 1-64 letters, digits, '_' or '-' (it is part of MQTT "
                              f"topics), got {name!r}")
        if name in names:
            raise ConfigError(f"two readers are both named {name!r}")
        names.add(name)
        where = f"[[readers]] {name}:"
        rois = table["rois"]
        if not isinstance(rois, list) or not 1 <= len(rois) <= 32:
            raise ConfigError(f"{where} rois must be a list of 1 to 32 [x, y, w, h] boxes, got {rois!r}")
        boxes = []
        for i, roi in enumerate(rois, 1):
            if (not isinstance(roi, list) or len(roi) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in roi)
                    or roi[0] < 0 or roi[1] < 0 or roi[2] < 8 or roi[3] < 8 or max(roi) > 16384):
                raise ConfigError(f"{where} roi {i} must be [x, y, w, h] in frame pixels (integers, x and y "
                                  f">= 0, w and h >= 8), got {roi!r}")
            boxes.append(tuple(roi))
        kw = {"name": name, "rois": tuple(boxes)}
        if "model" in table:
            if not isinstance(table["model"], str) or not table["model"]:
                raise ConfigError(f"{where} model must be a model name, got {table['model']!r}")
            kw["model"] = table["model"]
        if "min_confidence" in table:
            kw["min_confidence"] = _number(f"{where} min_confidence", table["min_confidence"], 0.0, 1.0)
        if "vote" in table:
            kw["vote"] = _int(f"{where} vote", table["vote"], 1, 100)
        if "monotonic" in table:
            if not isinstance(table["monotonic"], bool):
                raise ConfigError(f"{where} monotonic must be true or false, got {table['monotonic']!r}")
            kw["monotonic"] = table["monotonic"]
        if "max_rate_per_hour" in table:
            rate = _number(f"{where} max_rate_per_hour", table["max_rate_per_hour"], 0.0, 1e12)
            if rate <= 0:
                raise ConfigError(f"{where} max_rate_per_hour must be above 0 (leave it out for no limit)")
            kw["max_rate_per_hour"] = rate
        if "reanchor_after" in table:
            kw["reanchor_after"] = _int(f"{where} reanchor_after", table["reanchor_after"], 0, 100000)
        out.append(ReaderConfig(**kw))
    return tuple(out)


def _mqtt(table) -> MqttConfig:
    if not isinstance(table, dict):
        raise ConfigError("[mqtt] must be a table")
    _keys("[mqtt]", MqttConfig, table, required=("host",))
    kw = {}
    for key, value in table.items():
        where = f"[mqtt] {key}"
        if key == "port":
            kw[key] = _int(where, value, 1, 65535)
        elif key == "qos":
            kw[key] = _int(where, value, 0, 2)
        elif key == "keepalive":
            kw[key] = _int(where, value, 5, 3600)
        elif key == "republish_s":
            kw[key] = _number(where, value, 1.0, 86400.0)
        elif key == "tls":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            kw[key] = value
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {'a ' + type(value).__name__ if key == 'password' else repr(value)}")
            if key == "host" and not value:
                raise ConfigError("[mqtt] host must name the broker")
            if key in ("topic_prefix", "discovery_prefix") and value and (
                    any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/")):
                raise ConfigError(f"{where} must be an MQTT topic without wildcards or a leading/trailing '/', "
                                  f"got {value!r}")
            if key == "discovery_prefix" and not value:
                raise ConfigError("[mqtt] discovery_prefix must not be empty")
            kw[key] = value or None  # "" = the default (no username, no CA file, the hostname's prefix)
    config = MqttConfig(**kw)
    if config.ca_file and not config.tls:
        raise ConfigError("[mqtt] ca_file is set but tls = false")
    return config


def check_camera_sections(config: ServerConfig) -> None:
    """``[[readers]]`` need the camera, ``[mqtt]`` needs readers to publish: say so instead of idling."""
    if config.readers and not config.camera.enabled:
        raise ConfigError("[[readers]] read from the camera: set [camera] enabled = true (or serve --camera)")
    if config.mqtt is not None and not config.readers:
        raise ConfigError("[mqtt] publishes the readings of [[readers]]: configure at least one reader")


def from_dict(data: dict, base: Optional[ServerConfig] = None) -> ServerConfig:
    base = base or ServerConfig()
    unknown = set(data) - {"server", "limits", "camera", "readers", "mqtt"}
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; known: server, limits, camera, readers, mqtt")
    for name in ("server", "limits", "camera"):
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"[{name}] must be a table")
    server = _check("server", ServerConfig, data.get("server", {}))
    limits = replace(base.limits, **_check("limits", Limits, data.get("limits", {})))
    camera = replace(base.camera, **_check("camera", CameraConfig, data.get("camera", {})))
    extra = {}
    if "readers" in data:
        extra["readers"] = _readers(data["readers"])
    if "mqtt" in data:
        extra["mqtt"] = _mqtt(data["mqtt"])
    return replace(base, limits=limits, camera=camera, **extra, **server)


def load_config(path=None, overrides: Optional[dict] = None, environ=None) -> ServerConfig:
    """Defaults < config file < ``overrides`` (the command line) < ``$EDGE_RBMLP_TOKEN``."""
    environ = os.environ if environ is None else environ
    config = ServerConfig()
    if path is not None:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        config = from_dict(data, config)
    if overrides:
        nested = {"server": {k: v for k, v in overrides.items() if v is not None and k not in ("camera", "limits")}}
        for section in ("camera", "limits"):
            if overrides.get(section):
                nested[section] = {k: v for k, v in overrides[section].items() if v is not None}
        config = from_dict(nested, config)
    token = environ.get(TOKEN_ENV)
    if token:
        config = replace(config, token=token)
    mqtt_password = environ.get(MQTT_PASSWORD_ENV)
    if mqtt_password and config.mqtt is not None:
        config = replace(config, mqtt=replace(config.mqtt, password=mqtt_password))
    check_camera_sections(config)
    return config
