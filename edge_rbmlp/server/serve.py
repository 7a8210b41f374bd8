"""Run the service with waitress (a production WSGI server that runs on a Pi):
the implementation of ``edge-rbmlp serve``."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Callable

from .config import ServerConfig
from .notify import Watchdog, http_health_check, sd_notify, watchdog_interval

log = logging.getLogger("edge_rbmlp.server")


def public_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", "[::]", ""):
        shown = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    else:
        shown = host
    return f"http://{shown}:{port}/"


def _json_channel_class(limit: int):
    """waitress answers protocol errors (body too large, malformed HTTP) itself, in plain text;
    this channel makes them the same JSON ``{"error": ...}`` as the app's."""
    import json

    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self):
            err = self.request.error
            if err.code == 413:
                message = f"request body is larger than the {limit} byte limit"
            else:
                message = f"{err.reason}: {err.body}"
            body = json.dumps({"error": message}).encode("utf-8")
            self.status = f"{err.code} {err.reason}"
            self.response_headers.extend([("Content-Type", "application/json"),
                                          ("X-Content-Type-Options", "nosniff")])
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


def build_server(config: ServerConfig, app=None, sockets=None):
    """The waitress server for ``config`` (socket bound, not yet serving); ``sockets`` are
    listening sockets to serve on instead of binding ``config.host:config.port`` (workers)."""
    from waitress.server import create_server

    from .app import create_app

    config.check_exposure()
    app = app or create_app(config)
    where = {"sockets": sockets} if sockets else {"host": config.host, "port": config.port}
    server = create_server(app, threads=config.threads, max_request_body_size=config.limits.max_body_bytes,
                           ident="edge-rbmlp", channel_timeout=config.limits.idle_timeout_s,
                           connection_limit=config.limits.max_connections, asyncore_use_poll=True,
                           # idle channels are only looked at every cleanup_interval (waitress: 30 s)
                           cleanup_interval=max(1, min(30, config.limits.idle_timeout_s // 2)),
                           clear_untrusted_proxy_headers=True, **where)
    channel = _json_channel_class(config.limits.max_body_bytes)
    listeners = [server] if hasattr(server, "channel_class") else [
        s for s in getattr(server, "map", {}).values() if hasattr(s, "channel_class") and hasattr(s, "accept")]
    for listener in listeners:
        listener.channel_class = channel
    return app, server


def bound_port(server) -> int:
    """The port actually bound (``--port 0`` picks a free one); a host name that resolves to
    several addresses (``localhost`` -> 127.0.0.1 and ::1) gives waitress several listeners."""
    if hasattr(server, "effective_port"):
        return int(server.effective_port)
    return int(server.effective_listen[0][1])


def install_reload_handler(state) -> None:
    """SIGHUP reloads every changed model file; a corrupt replacement is refused and the old
    models keep serving (in-flight requests keep the engine they started with)."""
    if not hasattr(signal, "SIGHUP"):
        return

    def _reload(signum, frame):
        from .state import reload_models

        try:
            changed = reload_models(state)
            log.info("SIGHUP: reloaded %s", ", ".join(changed) or "nothing (no model file changed)")
        except Exception as exc:
            log.error("SIGHUP: reload refused, the old models keep serving: %s", exc)

    signal.signal(signal.SIGHUP, _reload)


def run_until_stopped(app, server) -> None:
    """Serve until SIGTERM/SIGINT, reloading models on SIGHUP."""
    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    install_reload_handler(app.extensions["edge_rbmlp"])
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.close()


def serve(config: ServerConfig, camera_source=None, echo: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT. ``camera_source`` replaces the Pi camera (tests, other cameras).
    With ``config.workers`` > 1 this process supervises worker processes (workers.py)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if config.workers > 1:
        from .workers import serve_workers

        return serve_workers(config, echo)
    app, server = build_server(config)
    state = app.extensions["edge_rbmlp"]
    port = bound_port(server)
    camera_loop = None
    if config.camera.enabled:
        from .camera import open_camera, start_in_service

        try:
            source = camera_source or open_camera(config.camera.width, config.camera.height)
            camera_loop = start_in_service(app, source, config.camera.model, config.camera.interval)
        except BaseException:
            server.close()  # do not keep the port while reporting why the camera cannot start
            raise
    names = ", ".join(state.model_names())
    backends = ", ".join(sorted({f"{s.engine.name}/{s.engine.kernel}" for s in state.models.values()}))
    echo(f"edge-rbmlp: serving {names} ({backends}) on {public_url(config.host, port)} - open it in a browser; "
         f"API at {public_url(config.host, port)}openapi.json")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()
    watchdog = None
    sd_notify(f"READY=1\nSTATUS=serving {names} on port {port}")
    interval = watchdog_interval()
    if interval:
        watchdog = Watchdog(interval, http_health_check(config.host, port)).start()
    try:
        run_until_stopped(app, server)
    finally:
        sd_notify("STOPPING=1")
        if watchdog is not None:
            watchdog.stop()
        if camera_loop is not None:
            camera_loop.stop()
            close = getattr(camera_loop.source, "close", None)
            if close:
                close()
        echo("edge-rbmlp: stopped")
    return 0
