"""``edge-rbmlp serve --workers N``: N worker processes behind one port.

Why processes: the engine releases the GIL, but an HTTP request spends most of
its time in Python (waitress, Flask, Pillow, JSON), so threads of one process
share one core. Separate processes run requests on every core.

How: the supervisor (this process, the one systemd watches) binds one listening
socket per worker with ``SO_REUSEPORT`` on the same address and port, and the
kernel spreads new connections over them. Each worker is a fresh interpreter
(``multiprocessing`` *spawn*: nothing is inherited but its socket and the
config) that loads the models and runs the HTTP server (granian or waitress, see serve.py) on its
socket. The supervisor
keeps every socket open, so connections queued on a worker that crashes wait for
its replacement instead of being refused.

The supervisor:

* sends ``READY=1`` once every worker listens, and ``WATCHDOG=1`` only while
  every worker is alive and ``/healthz`` answers;
* restarts a worker that dies, and one that is wedged, telling busy from wedged:
  every worker writes, to memory it shares with the supervisor, a heartbeat (a
  thread of its own, every second) and the start of its oldest request in flight
  (guard.Activity). A worker is wedged when its heartbeat stops (HEARTBEAT_STALE_S:
  the process is stopped or a call holds the interpreter), when a request has been
  in flight for twice the request deadline and more (it cannot end), or when it is
  idle and its private health port (a loopback port where the supervisor asks its
  ``/healthz`` every few seconds; SO_REUSEPORT hashes connections, so the public
  port cannot reach a chosen worker) failed PROBE_FAILURES probes in a row. A busy
  worker whose probes time out is left to work. Client traffic never makes the
  supervisor give up: a worker that dies is restarted (after a pause of
  RESTART_PAUSE_S when more than MAX_CRASHES_IN_WINDOW died within a minute); only
  workers that cannot *start* (a bad model file, ...) end the supervisor with an
  error so that systemd's ``Restart=`` takes over;
* recycles a worker whose resident memory grew past its bound after a request
  (guard.worker_memory_bound): a replacement starts on the same sockets, then the
  old worker is stopped gracefully (it finishes the requests it holds);
* forwards ``SIGHUP`` (reload the model files; a corrupt file is refused by
  each worker, which keeps serving the old model) and ``SIGTERM``/``SIGINT``
  (graceful stop) to the workers.

``/metrics`` adds up the counters and histograms of every worker (prometheus-client's
multiprocess mode, in a private directory the supervisor makes and removes); the
memory gauges and ``/api/status`` (``worker``, ``pid``, recent latencies) describe
the worker that answered.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait as wait_for_objects
from typing import Callable, List, Optional

from .config import METRICS_DIR_ENV, ConfigError, ServerConfig

log = logging.getLogger("edge_rbmlp.server")

CRASH_WINDOW_S = 60.0
MAX_CRASHES_IN_WINDOW = 5
READY_TIMEOUT_S = 120.0
PROBE_INTERVAL_S = 2.0  # how often each worker's own /healthz is asked
PROBE_FAILURES = 3  # consecutive failed probes of an idle worker after which it counts as wedged
HEARTBEAT_STALE_S = 15.0  # a heartbeat older than this: the worker is wedged
RESTART_PAUSE_S = 1.0
START_FAILURES = 3  # workers that fail to start in a row before the supervisor gives up
METRICS_DIR_PREFIX = "edge-rbmlp-metrics-"  # + the supervisor's pid + "-" + random


def listen_sockets(host: str, port: int, count: int, backlog: int = 1024) -> List[List[socket.socket]]:
    """``count`` groups of listening sockets on ``host:port`` with SO_REUSEPORT (one socket per
    address ``host`` resolves to, in each group). ``port`` 0 picks a free port shared by all."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers > 1 needs SO_REUSEPORT (Linux); use --workers 1 here")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen, addresses = set(), []
    for family, type_, proto, _, addr in infos:
        if (family, addr[0]) not in seen:
            seen.add((family, addr[0]))
            addresses.append((family, type_, proto, addr))
    from .serve import bind_or_explain

    groups: List[List[socket.socket]] = []
    try:
        for _ in range(count):
            group = []
            for family, type_, proto, addr in addresses:
                sock = socket.socket(family, type_, proto)
                group.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                bind_or_explain(sock, (addr[0], port) + tuple(addr[2:]))
                if port == 0:
                    port = sock.getsockname()[1]  # every other socket takes the port the first one got
                sock.listen(backlog)
                sock.setblocking(False)
            groups.append(group)
    except BaseException:
        for group in groups + [group]:
            for sock in group:
                sock.close()
        raise
    return groups


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG):
    outside systemd nothing else would stop orphaned workers from holding the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:  # not Linux: systemd's KillMode still stops workers
        log.warning("cannot tie the worker's life to the supervisor's: %s", exc)
        return
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(config: ServerConfig, sockets: List[socket.socket], probe_socket: socket.socket, index: int, ready,
                 supervisor_pid: int, shared=None) -> None:
    """One worker process: load the models, serve on ``sockets`` (and the supervisor's private
    health probes on ``probe_socket``) until SIGTERM."""
    from .serve import build_server, run_until_stopped

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker-{index} %(name)s %(levelname)s %(message)s")
    _die_with_parent(supervisor_pid)
    os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor talks to systemd
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    from .guard import Activity

    try:
        app, server = build_server(config, sockets=sockets, extra_sockets=[probe_socket], activity=Activity(shared))
    except Exception as exc:  # a missing or corrupt model, ...: one line for the supervisor to report
        ready.send({"error": str(exc) or type(exc).__name__})
        ready.close()
        raise SystemExit(1) from None
    state = app.extensions["edge_rbmlp"]
    state.worker = index
    backends = sorted({f"{m.engine.name}/{m.engine.kernel}" for m in state.models.values()})
    ready.send({"pid": os.getpid(), "models": state.model_names(), "backends": backends, "http_server": server.name})
    ready.close()
    run_until_stopped(app, server)


def _remove_stale_metrics_dirs() -> None:
    """Metrics directories of supervisors that died without cleaning up (SIGKILL, power cut)."""
    import glob
    import shutil
    import tempfile

    for path in glob.glob(os.path.join(tempfile.gettempdir(), METRICS_DIR_PREFIX + "*-*")):
        pid = os.path.basename(path)[len(METRICS_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive, someone else's
            pass


class WorkerStartError(ConfigError):
    """A worker could not load its models or bind (the message is the worker's own error)."""


class Supervisor:
    """Starts, watches and stops the worker processes (see the module docstring)."""

    def __init__(self, config: ServerConfig, echo: Callable[[str], None] = print):
        if config.workers < 2:
            raise ValueError("Supervisor is for 2 or more workers")
        if config.camera.enabled:
            raise ConfigError("the camera runs inside one process: use workers = 1 with the camera "
                              "(or run `edge-rbmlp camera --publish` beside the service)")
        config.check_exposure()
        self.config = config
        self.echo = echo
        self.ctx = multiprocessing.get_context("spawn")
        import tempfile

        self.socket_groups = listen_sockets(config.host, config.port, config.workers)
        self.port = self.socket_groups[0][0].getsockname()[1]
        self.probe_sockets = [listen_sockets("127.0.0.1", 0, 1)[0][0] for _ in range(config.workers)]
        # set before any worker imports prometheus_client: the workers then write their counters
        # and histograms to files here, and every scrape adds them up (api_ops.metrics)
        _remove_stale_metrics_dirs()
        self.metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
        os.environ[METRICS_DIR_ENV] = self.metrics_dir
        self.processes: List[Optional[multiprocessing.Process]] = [None] * config.workers
        self.shared: list = [None] * config.workers  # guard.Activity's slots of each worker
        self.retiring: list = []  # (process, when it was asked to stop): recycled workers finishing
        self.kills = 0  # wedged workers killed
        self.recycled = 0
        self.start_failures = 0
        self.probe_failures = [0] * config.workers
        self.next_probe = 0.0
        self.deaths: List[float] = []
        self.stopping = False
        self.served: dict = {}  # what the last worker to start reported: models, backends

    def _spawn(self, index: int) -> multiprocessing.Process:
        from .guard import SLOTS

        parent_end, child_end = self.ctx.Pipe(duplex=False)
        shared = self.ctx.Array("d", SLOTS, lock=False)
        shared[0] = time.monotonic()
        proc = self.ctx.Process(target=_worker_main, name=f"edge-rbmlp-worker-{index}",
                                args=(self.config, self.socket_groups[index], self.probe_sockets[index], index,
                                      child_end, os.getpid(), shared), daemon=False)
        proc.start()
        child_end.close()
        proc.ready_pipe = parent_end
        self.processes[index] = proc
        self.shared[index] = shared
        self.probe_failures[index] = 0
        return proc

    def _await_ready(self, procs: List[multiprocessing.Process]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for proc in procs:
            remaining = max(0.0, deadline - time.monotonic())
            ready = proc.ready_pipe.poll(remaining)
            if not ready:
                raise RuntimeError(f"{proc.name} did not start within {READY_TIMEOUT_S:.0f} s")
            try:
                message = proc.ready_pipe.recv()
            except EOFError:
                proc.join(5)
                raise WorkerStartError(f"{proc.name} failed to start (exit code {proc.exitcode}); "
                                       f"its error is above") from None
            finally:
                proc.ready_pipe.close()
            if "error" in message:
                proc.join(5)
                raise WorkerStartError(message["error"])
            self.served = message

    def all_alive(self) -> bool:
        return all(p is not None and p.is_alive() for p in self.processes)

    def _forget_metrics_of(self, pid: int) -> None:
        """A dead worker's live gauges go; its counters stay in the sums (they did happen)."""
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)
        except Exception as exc:  # metrics must never stop the supervisor
            log.warning("cannot clean the metrics of pid %s: %s", pid, exc)

    def _kill_wedged(self, index: int, why: str) -> None:
        proc = self.processes[index]
        log.error("%s (pid %s) is wedged (%s): killing it", proc.name, proc.pid, why)
        proc.kill()
        self.kills += 1
        self.probe_failures[index] = 0

    def probe(self, timeout: float = 2.0) -> None:
        """Tell busy from wedged for every worker (see the module docstring) and kill the wedged
        (``watch`` then starts a new one); start the recycling of a worker that asks for it."""
        from .guard import HEARTBEAT, IN_FLIGHT, OLDEST_REQUEST, RECYCLE
        from .notify import http_health_check

        hard_deadline = 2 * self.config.limits.request_timeout_s + 10
        for index, sock in enumerate(self.probe_sockets):
            proc, shared = self.processes[index], self.shared[index]
            if proc is None or not proc.is_alive():
                continue
            now = time.monotonic()
            if now - shared[HEARTBEAT] > HEARTBEAT_STALE_S:
                self._kill_wedged(index, f"no heartbeat for {now - shared[HEARTBEAT]:.0f} s")
                continue
            busy = shared[IN_FLIGHT] > 0
            if busy and now - shared[OLDEST_REQUEST] > hard_deadline:
                self._kill_wedged(index, f"a request in flight for {now - shared[OLDEST_REQUEST]:.0f} s, more than "
                                         f"twice the {self.config.limits.request_timeout_s} s deadline")
                continue
            if shared[RECYCLE]:
                self._recycle(index)
                continue
            if http_health_check("127.0.0.1", sock.getsockname()[1], timeout)():
                self.probe_failures[index] = 0
                continue
            if busy or shared[IN_FLIGHT] > 0:  # working on requests: slow, not wedged
                self.probe_failures[index] = 0
                continue
            self.probe_failures[index] += 1
            if self.probe_failures[index] >= PROBE_FAILURES:
                self._kill_wedged(index, f"did not answer {self.probe_failures[index]} health probes in a row "
                                         f"while idle")

    def _recycle(self, index: int) -> None:
        """A replacement on the same sockets first, then the old worker stopped gracefully."""
        old = self.processes[index]
        log.warning("%s (pid %s) grew past its memory bound: starting its replacement, then stopping it",
                    old.name, old.pid)
        try:
            self._await_ready([self._spawn(index)])
        except (RuntimeError, WorkerStartError) as exc:
            log.error("cannot start a replacement of worker-%d (%s); it keeps serving", index, exc)
            self.processes[index] = old
            return
        self.recycled += 1
        try:
            os.kill(old.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.retiring.append((old, time.monotonic()))

    def _reap_retiring(self) -> None:
        from .serve import STOP_TIMEOUT_S

        for proc, since in list(self.retiring):
            if not proc.is_alive():
                proc.join(1)
                self._forget_metrics_of(proc.pid)
                self.retiring.remove((proc, since))
            elif time.monotonic() - since > STOP_TIMEOUT_S + 10:
                proc.kill()

    def signal_workers(self, signum: int) -> None:
        for proc in self.processes:
            if proc is not None and proc.is_alive():
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    pass

    def start(self) -> None:
        procs = [self._spawn(i) for i in range(self.config.workers)]
        try:
            self._await_ready(procs)
        except BaseException:
            self.stop()
            raise

    def watch(self, poll_s: float = 0.5) -> int:
        """Restart dead workers until stopped; returns the exit code for the supervisor (1 only
        when workers cannot start, never because of what clients sent)."""
        while not self.stopping:
            sentinels = {p.sentinel: i for i, p in enumerate(self.processes) if p is not None}
            done = wait_for_objects(list(sentinels), timeout=poll_s)
            if self.stopping:
                break
            if self.retiring:
                self._reap_retiring()
            if not done and time.monotonic() >= self.next_probe:
                self.probe()
                self.next_probe = time.monotonic() + PROBE_INTERVAL_S
                continue
            for sentinel in done:
                index = sentinels[sentinel]
                proc = self.processes[index]
                proc.join(5)  # its sentinel closes a moment before it can be reaped: wait for that
                now = time.monotonic()
                self.deaths = [t for t in self.deaths if now - t < CRASH_WINDOW_S] + [now]
                log.error("%s (pid %s) died with exit code %s; restarting it", proc.name, proc.pid, proc.exitcode)
                self._forget_metrics_of(proc.pid)
                if len(self.deaths) > MAX_CRASHES_IN_WINDOW:
                    log.error("%d worker deaths within %.0f s: pausing %.0f s before the restart", len(self.deaths),
                              CRASH_WINDOW_S, RESTART_PAUSE_S)
                    time.sleep(RESTART_PAUSE_S)
                try:
                    self._await_ready([self._spawn(index)])
                    self.start_failures = 0
                except (RuntimeError, WorkerStartError) as exc:
                    self.start_failures += 1
                    log.error("cannot restart worker-%d: %s", index, exc)
                    if self.start_failures >= START_FAILURES:
                        log.error("%d worker starts failed in a row: giving up (systemd restarts the service)",
                                  self.start_failures)
                        return 1
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping = True
        self.signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, _ in self.retiring:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.processes + [p for p, _ in self.retiring]:
            if proc is not None:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    log.error("%s did not stop in %.0f s: killing it", proc.name, timeout)
                    proc.kill()
                    proc.join(5)
        for group in self.socket_groups + [self.probe_sockets]:
            for sock in group:
                sock.close()
        import shutil

        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if os.environ.get(METRICS_DIR_ENV) == self.metrics_dir:
            del os.environ[METRICS_DIR_ENV]


def serve_workers(config: ServerConfig, echo: Callable[[str], None] = print) -> int:
    """The supervisor's main loop (``edge-rbmlp serve --workers N``, N >= 2); returns the exit code."""
    import sys

    from .notify import Watchdog, http_health_check, sd_notify, watchdog_interval
    from .serve import public_url

    supervisor = Supervisor(config, echo)

    def _stop(signum, frame):
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: supervisor.signal_workers(signal.SIGHUP))
    watchdog = None
    code = 0
    try:
        supervisor.start()
        url = public_url(config.host, supervisor.port)
        names = ", ".join(supervisor.served.get("models", []))
        backends = ", ".join(supervisor.served.get("backends", []))
        echo(f"edge-rbmlp: serving {names} ({backends}) with {config.workers} workers on {url} - open it in a "
             f"browser; API at {url}openapi.json")
        log.info("HTTP server: %s", supervisor.served.get("http_server"))
        if hasattr(sys.stdout, "flush"):
            sys.stdout.flush()
        sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {names} on port {supervisor.port} "
                  f"with {config.workers} workers")
        interval = watchdog_interval()
        if interval:
            health = http_health_check(config.host, supervisor.port)
            watchdog = Watchdog(interval, lambda: supervisor.all_alive() and health()).start()
        code = supervisor.watch()
    finally:
        sd_notify("STOPPING=1")
        if watchdog is not None:
            watchdog.stop()
        supervisor.stop()
        echo("edge-rbmlp: stopped")
    return code
