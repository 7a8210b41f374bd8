"""The device's HTTP service: ``create_app(config)`` (Flask), served by waitress.

APIs: ``POST /classify/<model>``; the Open Inference Protocol (KServe v2) under
``/v2``; TensorFlow Serving's REST API under ``/v1``; ``/metrics`` (Prometheus),
``/openapi.json``, ``/healthz``; the web page at ``/``.
"""

from .config import ConfigError, ServerConfig, load_config


def __getattr__(name):  # Flask only when an app is made (the workers supervisor never makes one)
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'edge_rbmlp.server' has no attribute {name!r}")

__all__ = ["create_app", "ServerConfig", "load_config", "ConfigError"]
