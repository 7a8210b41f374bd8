"""systemd's notify protocol in a few lines of socket code (no python-systemd needed).

``Type=notify`` units get ``$NOTIFY_SOCKET``; the service sends ``READY=1`` once
it listens, ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while a health check
passes (so a wedged service misses the watchdog and systemd restarts it), and
``STOPPING=1`` on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Mapping, Optional

log = logging.getLogger("edge_rbmlp.notify")


def notify_address(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    environ = os.environ if environ is None else environ
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr[0] == "@":
        return "\0" + addr[1:]  # abstract namespace
    if addr[0] == "/":
        return addr
    log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", addr)
    return None


def sd_notify(message: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; False when not under a notify unit."""
    addr = notify_address(environ)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message.encode("utf-8"))
        return True
    except OSError as exc:
        log.warning("cannot notify systemd at %r: %s", addr, exc)
        return False


def watchdog_interval(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when disabled."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` every ``interval`` seconds while ``healthy()`` returns True."""

    def __init__(self, interval: float, healthy: Callable[[], bool], environ: Optional[Mapping[str, str]] = None):
        self.interval = interval
        self.healthy = healthy
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_event = threading.Event()
        self.pings = 0
        self.misses = 0
        self.thread = threading.Thread(target=self._run, name="edge-rbmlp-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                ok = bool(self.healthy())
            except Exception as exc:  # the check failing is a miss, not a crash of the watchdog
                log.warning("health check failed: %s", exc)
                ok = False
            if ok:
                sd_notify("WATCHDOG=1", self.environ)
                self.pings += 1
            else:
                self.misses += 1
                log.warning("health check failed; not pinging the systemd watchdog")
            self.stop_event.wait(self.interval)


def http_health_check(host: str, port: int, timeout: float = 2.0) -> Callable[[], bool]:
    """A check that the HTTP side really answers: GET /healthz on the service's own socket."""
    import http.client

    target = host
    if host in ("0.0.0.0", ""):
        target = "127.0.0.1"
    elif host in ("::", "[::]"):
        target = "::1"

    def check() -> bool:
        conn = http.client.HTTPConnection(target.strip("[]"), port, timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    return check
