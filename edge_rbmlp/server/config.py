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

    [limits]
    max_body_bytes = 4194304      # refused (413) from Content-Length and while reading
    max_image_pixels = 40000000   # decompression bombs are refused before decoding
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

Unknown sections or keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import List, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib

TOKEN_ENV = "EDGE_RBMLP_TOKEN"
DEFAULT_CONFIG_PATH = Path("/etc/edge-rbmlp/config.toml")


HTTP_SERVERS = ("auto", "granian", "waitress")


class ConfigError(ValueError):
    """A config file or option is invalid; the message names the key."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_image_pixels: int = 40_000_000
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
    limits: Limits = field(default_factory=Limits)
    camera: CameraConfig = field(default_factory=CameraConfig)

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
    "max_body_bytes": (1024, 1 << 30), "max_image_pixels": (64, 400_000_000), "min_image_side": (1, 1024),
    "max_text_chars": (1, 10_000_000), "max_batch": (1, 100_000), "max_connections": (1, 100_000),
    "idle_timeout_s": (1, 3600), "width": (16, 8192), "height": (16, 8192),
}


def _check(section: str, cls, values: dict):
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        where = f"[{section}] {key}" if section else key
        if key not in known or key in ("limits", "camera"):
            raise ConfigError(f"unknown config key {where}; known: {', '.join(k for k in known if k not in ('limits', 'camera'))}")
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
        elif key in ("host", "backend", "token", "model"):
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
            if key == "token" and value == "":
                value = None
        out[key] = value
    return out


def from_dict(data: dict, base: Optional[ServerConfig] = None) -> ServerConfig:
    base = base or ServerConfig()
    unknown = set(data) - {"server", "limits", "camera"}
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; known: server, limits, camera")
    for name in ("server", "limits", "camera"):
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"[{name}] must be a table")
    server = _check("server", ServerConfig, data.get("server", {}))
    limits = replace(base.limits, **_check("limits", Limits, data.get("limits", {})))
    camera = replace(base.camera, **_check("camera", CameraConfig, data.get("camera", {})))
    return replace(base, limits=limits, camera=camera, **server)


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
    return config
