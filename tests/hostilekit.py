"""Helpers of tests/test_hostile.py (and ``make soak``'s hostile rounds): the real service in a
subprocess inside a memory cgroup of the systemd unit's ``MemoryMax``, a legitimate client
measuring its latency beside an attack, and the figures of each case."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from load_test import Service, process_tree  # noqa: E402

UNIT = ROOT / "systemd" / "edge-rbmlp.service"
FIGURES_ENV = "EDGE_RBMLP_HOSTILE_FIGURES"  # a file: one JSON line of figures per case


def unit_memory_max() -> int:
    """``MemoryMax=`` of systemd/edge-rbmlp.service in bytes."""
    match = re.search(r"^MemoryMax=(\d+)([KMG]?)\s*$", UNIT.read_text(), re.M)
    assert match, f"{UNIT} has no MemoryMax="
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2)]


class MemoryCgroup:
    """A memory cgroup (v2, else v1) limited to ``limit`` bytes, for the service's process tree.
    ``problem`` says why none can be made here (then tests skip with it)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.path: Optional[Path] = None
        self.version = 0
        self.problem: Optional[str] = None
        name = f"edge-rbmlp-hostile-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        v2 = Path("/sys/fs/cgroup")
        v1 = Path("/sys/fs/cgroup/memory")
        try:
            if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.subtree_control").read_text():
                self.path, self.version = v2 / name, 2
                self.path.mkdir()
                (self.path / "memory.max").write_text(str(limit))
                (self.path / "memory.swap.max").write_text("0")
            elif (v1 / "memory.limit_in_bytes").exists():
                self.path, self.version = v1 / name, 1
                self.path.mkdir()
                (self.path / "memory.limit_in_bytes").write_text(str(limit))
                try:
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                except OSError:
                    pass
            else:
                self.problem = "no cgroup memory controller is mounted at /sys/fs/cgroup"
        except OSError as exc:
            self.problem = f"cannot make a memory cgroup here ({exc}): run as root on a cgroup-enabled Linux"
            self.path = None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.version == 2 else "memory.oom_control")
        match = re.search(r"^oom_kill (\d+)", text, re.M)
        return int(match.group(1)) if match else 0

    def peak(self) -> Optional[int]:
        text = self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else None

    def close(self) -> None:
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


class CgroupService(Service):
    """``edge-rbmlp serve`` whose process tree runs in ``cgroup`` from its first instruction on
    (the child is added before it imports anything: it waits for a byte on stdin)."""

    def __init__(self, cgroup: Optional[MemoryCgroup], **kw):
        super().__init__(**kw)
        self.cgroup = cgroup

    def _popen(self):
        import subprocess

        gate = ("import sys,runpy; sys.stdin.read(1); sys.argv=['edge_rbmlp.cli']+sys.argv[1:]; "
                "runpy.run_module('edge_rbmlp.cli', run_name='__main__')")
        args = [self.args[0], "-c", gate] + self.args[3:]  # drop "-m edge_rbmlp.cli"
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                text=True, env=self.env, cwd=self.cwd)
        if self.cgroup is not None and self.cgroup.path is not None:
            self.cgroup.add(proc.pid)
        proc.stdin.write("g")
        proc.stdin.close()
        return proc

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def workers(self) -> List[int]:
        return [p for p in self.pids() if p != self.proc.pid] or [self.proc.pid]


def request(port: int, method: str, path: str, body: bytes = None, headers=None, timeout: float = 120):
    """(status, body, seconds) on a fresh connection (SO_REUSEPORT spreads connections)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - t0
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}", b"", time.perf_counter() - t0
    finally:
        conn.close()


def peak_rss(pid: int) -> Optional[int]:
    """VmHWM of ``pid`` in bytes (None when it is gone)."""
    from edge_rbmlp.server.metrics import memory_bytes

    return memory_bytes(pid)[1]


class Legit:
    """A legitimate client: POSTs ``body`` to ``path`` one request after another (fresh
    connections) while ``running``, recording every status and latency."""

    def __init__(self, port: int, path: str, body: bytes, headers: dict):
        self.port, self.path, self.body, self.headers = port, path, body, headers
        self.latencies: List[float] = []
        self.statuses: List = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self, n: int) -> float:
        """The median latency of ``n`` requests now (the client's normal latency)."""
        out = []
        for _ in range(n):
            status, _, dt = request(self.port, "POST", self.path, self.body, self.headers)
            assert status == 200, status
            out.append(dt)
        return statistics.median(out)

    def _run(self):
        while not self._stop.is_set():
            status, _, dt = request(self.port, "POST", self.path, self.body, self.headers)
            self.statuses.append(status)
            self.latencies.append(dt)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(180)

    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


def hammer(n_threads: int, attack: Callable[[], object], seconds: Optional[float] = None,
           count: Optional[int] = None) -> list:
    """Run ``attack()`` from ``n_threads`` threads, ``count`` times in all or for ``seconds``;
    returns what every call returned."""
    results, lock = [], threading.Lock()
    end = time.monotonic() + seconds if seconds else None
    left = [count if count is not None else 1 << 62]

    def run():
        while True:
            with lock:
                if left[0] <= 0 or (end is not None and time.monotonic() > end):
                    return
                left[0] -= 1
            out = attack()
            with lock:
                results.append(out)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return results


def record(case: str, **figures) -> None:
    """Print the figures of a case and append them to $EDGE_RBMLP_HOSTILE_FIGURES (if set)."""
    line = json.dumps({"case": case, **figures}, default=str)
    print(f"\nhostile: {line}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes (or ``timeout``
    passes: then the bytes so far and ``<OPEN>``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk
        except socket.timeout:
            return out + b"<OPEN>"


_ = process_tree
