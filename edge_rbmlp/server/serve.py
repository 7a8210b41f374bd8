"""Run the service: the implementation of ``edge-rbmlp serve``.

Two HTTP servers can run the Flask app (``[server] http_server`` / ``--http-server``):

* **granian** (the default where it is installed: Rust, hyper's HTTP/1, wheels for x86_64,
  aarch64 and armv7l). Sockets, HTTP parsing, keep-alive and timeouts are handled in Rust
  threads that do not hold the GIL; the Python threads only run the app. It runs here
  *embedded*: we bind the listening sockets ourselves (or the ``--workers`` supervisor does,
  with ``SO_REUSEPORT``) and start one of granian's WSGI workers per socket inside this
  process, so the supervisor, systemd notify/watchdog, SIGHUP reload and PDEATHSIG are ours
  whichever server runs. Limits: ``max_connections`` is granian's backpressure (connections
  beyond it wait in the kernel's backlog), ``idle_timeout_s`` its header read timeout (a
  connection that has not sent a complete request head within it is closed, whether idle or
  sending one header line at a time), a body over ``max_body_bytes`` is refused from its
  Content-Length before it is read (:func:`~.app.create_app`'s front) and while reading.
  Requests hyper itself refuses as malformed get its own empty ``400``/``431`` with the
  connection closed (granian has no hook for a JSON body there).
  hyper reads a request with both Content-Length and Transfer-Encoding as chunked (it drops
  the length before the app sees it) and closes the connection after the answer, so what
  follows such a body is never answered (RFC 9112 6.3); an HTTP/1.1 request without Host is
  refused by the app's front (400, closed).
* **waitress** (pure Python, the fallback where granian is missing, e.g. Python 3.9):
  protocol errors are JSON too; our channel adds what waitress lacks: a total deadline of
  ``idle_timeout_s`` for a request's head (waitress itself only times out silence), and a
  request with both Content-Length and Transfer-Encoding refused (400, closed).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import Callable, List, Optional

from .config import ConfigError, ServerConfig
from .notify import Watchdog, http_health_check, sd_notify, watchdog_interval

log = logging.getLogger("edge_rbmlp.server")

# the granian releases whose embedding API (granian._granian.WSGIWorker on a SocketHolder) this
# module speaks; pyproject.toml pins the same range
GRANIAN_VERSIONS = ((2, 8), (2, 9))
STOP_TIMEOUT_S = 10.0  # how long a stopping granian server waits for requests in flight


def public_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", "[::]", ""):
        shown = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    else:
        shown = host
    return f"http://{shown}:{port}/"


# -- which server ----------------------------------------------------------------------------------------------------
def granian_problem() -> Optional[str]:
    """None when granian can serve here, else why not (a sentence naming what to install)."""
    try:
        import granian
        from granian._granian import SocketHolder, WSGIWorker  # noqa: F401
    except ImportError as exc:
        return f"granian is not installed ({exc}): pip install 'granian>=2.8,<2.9'"
    try:
        version = tuple(int(x) for x in granian.__version__.split(".")[:2])
    except ValueError:
        return f"cannot read granian's version {granian.__version__!r}"
    low, high = GRANIAN_VERSIONS
    if not low <= version < high:
        return (f"granian {granian.__version__} is not a version this service embeds "
                f"(>={low[0]}.{low[1]},<{high[0]}.{high[1]}): pip install 'granian>=2.8,<2.9'")
    return None


def resolve_http_server(requested: str) -> str:
    """``auto`` -> ``granian`` when usable, else ``waitress``; an explicit ``granian`` that cannot
    run is a ConfigError saying why."""
    if requested == "waitress":
        return "waitress"
    problem = granian_problem()
    if requested == "granian":
        if problem:
            raise ConfigError(f"--http-server granian: {problem}")
        return "granian"
    if requested != "auto":
        raise ConfigError(f"unknown HTTP server {requested!r}: auto, granian or waitress")
    if problem:
        log.info("serving with waitress: %s", problem)
        return "waitress"
    return "granian"


# -- waitress --------------------------------------------------------------------------------------------------------
def _json_channel_class(limit: int, head_timeout: float):
    """waitress answers protocol errors (body too large, malformed HTTP) itself, in plain text;
    this channel makes them the same JSON ``{"error": ...}`` as the app's. It also

    * refuses a request with both Content-Length and Transfer-Encoding (400, connection closed:
      waitress would read the chunked body and answer what follows it, a smuggled request);
    * gives a request ``head_timeout`` seconds *in all* to send its head (waitress only times out
      silence, so one header line every few seconds held a connection for ever);
    * lets the app close the connection after its answer (``environ["edge_rbmlp.close"]()``: PEP
      3333 forbids the app a Connection header)."""
    import json
    import time

    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError
    from waitress.task import ErrorTask, WSGITask

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

    class StrictParser(HTTPRequestParser):
        def parse_header(self, header_plus):
            super().parse_header(header_plus)
            if self.chunked and "CONTENT_LENGTH" in self.headers:
                raise ParsingError("a request must not have both Content-Length and Transfer-Encoding")

    class ClosableTask(WSGITask):
        def get_environment(self):
            environ = super().get_environment()
            environ["edge_rbmlp.close"] = self.set_close_on_finish
            return environ

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask
        task_class = ClosableTask
        parser_class = StrictParser
        head_started = 0.0

        def received(self, data):
            if self.request is None and data:
                self.head_started = time.time()
            return super().received(data)

        def handle_read(self):
            super().handle_read()
            request = self.request
            if request is not None and not request.headers_finished:
                # the idle sweep closes a channel whose last_activity is older than the timeout:
                # while a head is incomplete, its activity is when the head began
                self.last_activity = self.head_started

    JsonErrorChannel.head_timeout = head_timeout
    return JsonErrorChannel


class QueueDepthAsInfo(logging.Filter):
    """waitress logs "Task queue depth is N" at WARNING whenever every thread is busy: that is load,
    not a fault (the requests wait their turn), so it is said at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("Task queue depth"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_waitress_queue() -> None:
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, QueueDepthAsInfo) for f in queue_log.filters):
        queue_log.addFilter(QueueDepthAsInfo())


class WaitressServer:
    """waitress on ``config.host:config.port`` or on given listening sockets."""

    name = "waitress"

    def __init__(self, app, config: ServerConfig, sockets=None, extra_sockets=()):
        from waitress.server import create_server

        quiet_waitress_queue()

        sockets = list(sockets or []) + list(extra_sockets)
        where = {"sockets": sockets} if sockets else {"host": config.host, "port": config.port}
        self.inner = create_server(app, threads=config.threads, max_request_body_size=config.limits.max_body_bytes,
                                   ident="edge-rbmlp", channel_timeout=config.limits.idle_timeout_s,
                                   connection_limit=config.limits.max_connections, asyncore_use_poll=True,
                                   # idle channels are only looked at every cleanup_interval (waitress: 30 s)
                                   cleanup_interval=max(1, min(30, config.limits.idle_timeout_s // 2)),
                                   clear_untrusted_proxy_headers=True, **where)
        channel = _json_channel_class(config.limits.max_body_bytes, config.limits.idle_timeout_s)
        inner = self.inner
        listeners = [inner] if hasattr(inner, "channel_class") else [
            s for s in getattr(inner, "map", {}).values() if hasattr(s, "channel_class") and hasattr(s, "accept")]
        for listener in listeners:
            listener.channel_class = channel
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        """The port actually bound (``--port 0`` picks a free one); a host name that resolves to
        several addresses (``localhost`` -> 127.0.0.1 and ::1) gives waitress several listeners."""
        if hasattr(self.inner, "effective_port"):
            return int(self.inner.effective_port)
        return int(self.inner.effective_listen[0][1])

    def run(self) -> None:
        """Serve until :meth:`stop` (from a signal handler or another thread)."""
        from waitress import wasyncore

        while not self._stop.is_set():
            wasyncore.loop(timeout=0.2, map=self.inner._map, use_poll=True, count=1)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.inner.close()
        self.inner.task_dispatcher.shutdown(timeout=5)


# -- granian ---------------------------------------------------------------------------------------------------------
def bind_or_explain(sock: socket.socket, address: tuple) -> None:
    """``sock.bind(address)``; a port already in use is said with the address and what to do."""
    import errno

    try:
        sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"cannot listen on {address[0]} port {address[1]}: the port is in use "
                                     f"(another edge-rbmlp serve, or another service; choose one with --port)") from None
        raise


def bind_sockets(host: str, port: int, backlog: int = 1024) -> List[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (``localhost``: 127.0.0.1 and ::1),
    all on the same port (``0``: a free one)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen, out = set(), []
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, type_, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            bind_or_explain(sock, (addr[0], port) + tuple(addr[2:]))
            port = sock.getsockname()[1]
            sock.listen(backlog)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def _granian_app(app, config: ServerConfig):
    """The WSGI call as granian's worker makes it: ``(protocol, environ)``. The body is joined
    and handed over in one piece (``response_bytes``): granian's streamed response path costs a
    thread hop per chunk, and every answer of this service is small."""
    base = {"SCRIPT_NAME": "", "SERVER_SOFTWARE": "edge-rbmlp", "wsgi.errors": sys.stderr,
            "wsgi.input_terminated": True, "wsgi.multiprocess": config.workers > 1,
            "wsgi.multithread": config.threads > 1, "wsgi.run_once": False, "wsgi.version": (1, 0)}

    def call(proto, environ):
        environ.update(base)
        started = []

        def start_response(status, headers, exc_info=None):
            started[:] = (status, headers)

        result = app(environ, start_response)
        try:
            body = result[0] if type(result) is list and len(result) == 1 else b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        proto.response_bytes(int(status[:3]), headers, body)

    return call


class GranianServer:
    """granian's WSGI workers embedded in this process, one per listening socket (see the module
    docstring). ``sockets``: the public listening sockets (bound here from ``config`` when None);
    ``extra_sockets``: more, served alike (the supervisor's private health-probe port)."""

    name = "granian"

    def __init__(self, app, config: ServerConfig, sockets=None, extra_sockets=()):
        problem = granian_problem()
        if problem:
            raise ConfigError(problem)
        self.config = config
        self.own_sockets = sockets is None
        self.sockets = list(sockets) if sockets is not None else bind_sockets(config.host, config.port)
        self.extra_sockets = list(extra_sockets)
        for sock in self.sockets + self.extra_sockets:
            # accepted connections inherit it: without it a response written in two segments
            # waits for the client's delayed ACK (40 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.callback = _granian_app(app, config)
        self._signals: list = []
        self._stopped = threading.Event()
        # a plain flag, not an Event: stop() runs in signal handlers, and Event.set() there could
        # deadlock on the lock the interrupted Event.wait() of the same thread holds
        self._stop_requested = False
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    def _start_one(self, index: int, sock: socket.socket, py_threads: int) -> None:
        import asyncio

        from granian._futures import _new_cbscheduler
        from granian._granian import SocketHolder, WorkerSignal, WSGIWorker
        from granian.http import HTTP1Settings

        limits = self.config.limits
        import os

        # granian's listener takes ownership of the descriptor it is given (closes it when it
        # stops): give it a duplicate, the socket stays ours (the supervisor's, under --workers)
        holder = SocketHolder(os.dup(sock.fileno()), False, 1024)
        h1 = HTTP1Settings(header_read_timeout=limits.idle_timeout_s * 1000, keep_alive=True,
                           max_buffer_size=8192 + 4096 * 100, pipeline_flush=False)
        worker = WSGIWorker(index + 1, (None, holder), None, threads=1, blocking_threads=1, py_threads=py_threads,
                            py_threads_idle_timeout=30, backpressure=limits.max_connections, http_mode="1",
                            http1_opts=h1)
        sig = WorkerSignal()
        sig.add_cb(self._one_stopped)
        loop = asyncio.new_event_loop()  # granian's scheduler wants one; WSGI never runs it
        # WSGI calls the callback directly from granian's Python threads; the asyncio flavour of the
        # scheduler is the one that does not register a stand-in Task in asyncio's global task set
        # (which would break asyncio.all_tasks() for anything else in this process, e.g. Playwright)
        scheduler = _new_cbscheduler(loop, self.callback, impl_asyncio=True)
        with self._lock:
            self._pending += 1
            self._signals.append((sig, worker, holder, loop, scheduler))
        worker.serve_mtr(scheduler, loop, sig)

    def _one_stopped(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self._stopped.set()

    def run(self) -> None:
        """Serve until :meth:`stop`; then wait (up to STOP_TIMEOUT_S) for requests in flight."""
        import logging as _logging

        # granian's Rust side logs through Python logging; one line per worker start is enough
        _logging.getLogger("_granian").setLevel(_logging.WARNING)
        import time

        try:
            for i, sock in enumerate(self.sockets):
                self._start_one(i, sock, self.config.threads)
            for sock in self.extra_sockets:
                self._start_one(len(self._signals), sock, 1)
            while not self._stop_requested:
                time.sleep(0.1)
        finally:
            for sig, *_ in self._signals:
                sig.set()
            if self._signals and not self._stopped.wait(STOP_TIMEOUT_S):
                log.warning("granian: requests still in flight after %.0f s; stopping anyway", STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Safe from a signal handler and from another thread."""
        self._stop_requested = True

    def close(self) -> None:
        self.stop()
        if self._stopped.is_set():  # the stand-in event loops, once granian let go of them
            for _sig, _worker, _holder, loop, _scheduler in self._signals:
                loop.close()
        if self.own_sockets:
            for sock in self.sockets:
                sock.close()


# -- the service -----------------------------------------------------------------------------------------------------
def build_server(config: ServerConfig, app=None, sockets=None, extra_sockets=(), http_server: Optional[str] = None,
                 activity=None):
    """(app, server) for ``config``: the server's sockets bound, not yet serving. ``sockets`` are
    listening sockets to serve on instead of binding ``config.host:config.port`` (workers);
    ``http_server`` overrides ``config.http_server``; ``activity``: what a supervisor watches
    (guard.Activity). The process's memory bound (guard.worker_memory_bound) is set from its
    resident memory once the models are loaded."""
    from .app import create_app
    from .guard import bound_malloc, trim, worker_memory_bound
    from .metrics import memory_bytes

    config.check_exposure()
    kind = resolve_http_server(http_server or config.http_server)
    if app is None:
        bound_malloc()
        app = create_app(config, activity=activity)
        state = app.extensions["edge_rbmlp"]
        trim()  # what loading freed (the model files' bytes, parsing) back to the system
        rss, _ = memory_bytes()
        if config.limits.max_worker_rss_bytes:
            state.activity.recycle_rss_bytes = config.limits.max_worker_rss_bytes
        elif rss is not None:
            state.activity.recycle_rss_bytes = worker_memory_bound(rss, config.limits, config.threads)
    cls = GranianServer if kind == "granian" else WaitressServer
    return app, cls(app, config, sockets=sockets, extra_sockets=extra_sockets)


def bound_port(server) -> int:
    return server.port


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
    signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: server.stop())
    install_reload_handler(app.extensions["edge_rbmlp"])
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def serve(config: ServerConfig, camera_source=None, echo: Callable[[str], None] = print) -> int:
    """Serve in this process until SIGTERM/SIGINT (``config.workers`` must be 1: several workers
    are :func:`edge_rbmlp.server.workers.serve_workers`). ``camera_source`` replaces the Pi camera
    (tests, other cameras)."""
    if config.workers > 1:
        raise ValueError("serve() runs one process; use edge_rbmlp.server.workers.serve_workers for workers > 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app, server = build_server(config)
    state = app.extensions["edge_rbmlp"]
    port = server.port
    camera_loop = None
    if config.camera.enabled:
        from .camera import open_camera, start_in_service

        try:
            source = camera_source or open_camera(config.camera.width, config.camera.height, config.camera.source)
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
    log.info("HTTP server: %s", server.name)
    log.info("JSON encoder: %s", app.json.encoder)
    watchdog = None
    sd_notify(f"READY=1\nSTATUS=serving {names} on port {port} ({server.name})")
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
