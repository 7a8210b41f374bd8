"""The device's HTTP service: ``create_app(config)`` (Flask), served by waitress.

APIs: ``POST /classify/<model>``; the Open Inference Protocol (KServe v2) under
``/v2``; TensorFlow Serving's REST API under ``/v1``; ``/metrics`` (Prometheus),
``/openapi.json``, ``/healthz``; the web page at ``/``.
"""

from .app import create_app
from .config import ConfigError, ServerConfig, load_config

__all__ = ["create_app", "ServerConfig", "load_config", "ConfigError"]
