"""Load, soak and worker scaling of the real service on loopback (``make soak``).

Starts ``edge-rbmlp serve`` as a subprocess (waitress, the native engine, the
bundled models) and drives it with the project's own load generator
(``edge_rbmlp.server.loadgen``, the code behind ``edge-rbmlp bench-http``):

1. **levels**: a fixed number of ``POST /classify/<model>`` at concurrency 1, 8
   and 64 for every model; zero errors, latency percentiles, requests/s, and
   every answer's label (the requests send a real test digit / review);
2. **soak**: at least ``--soak`` inferences in chunks, sampling the resident
   memory of the whole service (supervisor + workers) after every chunk; the
   memory is *flat* when what it grew after the first quarter (warm-up: code
   paths, allocator arenas, caches) is under ``--max-growth-mib``;
3. **scaling**: requests/s with 1 and with 2 worker processes, same client, same
   run. The client competes with the server for this machine's cores, so it is
   ``wrk`` (C, one thread) when installed and the Python load generator
   otherwise (then the ratio understates the speed-up, and the output says so).

Exit status 1 when any request failed, an answer was wrong, or memory grew.
Writes everything to ``--out`` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge_rbmlp.server import loadgen  # noqa: E402
from edge_rbmlp.server.metrics import memory_bytes  # noqa: E402


class Service:
    """``edge-rbmlp serve`` in a subprocess on a free loopback port; stopped on exit."""

    # the interpreter our services run on (--service-python: e.g. a device venv as ``make run`` makes it)
    python = sys.executable

    def __init__(self, models=("mnist", "imdb"), workers: int = 1, threads: int = 4, backend: str = "auto",
                 extra_args=(), cwd: Optional[Path] = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "EDGE_RBMLP_TOKEN"):
            env.pop(name, None)
        self.args = [self.python, "-m", "edge_rbmlp.cli", "serve", *models, "--port", "0",
                     "--workers", str(workers), "--threads", str(threads), "--backend", backend, *extra_args]
        self.env = env
        self.cwd = cwd or ROOT  # another checkout's edge_rbmlp (python -m imports it from the cwd)
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.stderr_file = tempfile.TemporaryFile(mode="w+")

    def _popen(self) -> subprocess.Popen:
        """Start the process (subclasses start it otherwise: tests/hostilekit.py's in a cgroup)."""
        return subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr_file, text=True, env=self.env,
                                cwd=self.cwd)

    def __enter__(self) -> "Service":
        t0 = time.perf_counter()
        self.proc = self._popen()
        line = self.proc.stdout.readline()
        self.banner = line
        match = re.search(r"(http://[^/\s]+)/", line)
        if not match:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the service did not start: {line!r}\n{self.stderr()}")
        self.url = match.group(1).replace("localhost", "127.0.0.1")
        # ready: from the start of the process to the first answered GET /healthz
        try:
            self.ready_s = round(wait_until_answers(self.url, "/healthz", proc=self.proc) - t0, 3)
        except (OSError, RuntimeError) as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the service does not answer /healthz ({exc}):\n{self.stderr()}") from None
        return self

    def stderr(self) -> str:
        """Everything the service wrote to stderr (kept after the service stopped)."""
        if self.stderr_file.closed:
            return self._final_stderr
        self.stderr_file.seek(0)
        return self.stderr_file.read()

    def pids(self) -> List[int]:
        """The service's process tree (supervisor and workers)."""
        return process_tree(self.proc.pid)

    def rss_bytes(self) -> int:
        return sum(rss_of(pid) for pid in self.pids())

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.stop()
            self.proc.stdout.close()
        self._final_stderr = self.stderr()
        self.stderr_file.close()


def wait_until_answers(url: str, path: str, timeout: float = 120.0, proc: Optional[subprocess.Popen] = None) -> float:
    """perf_counter() at the first 200 answer to GET ``path``; RuntimeError when ``proc`` exits or
    ``timeout`` passes first."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.perf_counter() + timeout
    while True:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.perf_counter()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no 200 answer to GET {path} within {timeout:.0f} s")
        time.sleep(0.005)


class Reference:
    """A reference service (benchmarks/reference_services/NAME.py) in a subprocess on a free
    loopback port: what our service is compared with in the same run."""

    def __init__(self, name: str, extra_args=()):
        self.name = name
        self.args = [sys.executable, str(ROOT / "benchmarks" / "reference_services" / f"{name}.py"), "--port", "0",
                     *extra_args]
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.stderr_file = tempfile.TemporaryFile(mode="w+")

    def __enter__(self) -> "Reference":
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr_file, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        match = re.search(r"(http://[^/\s]+)/", line)
        if not match:
            self.proc.wait(10)
            self.stderr_file.seek(0)
            err = self.stderr_file.read()[-2000:]
            self.__exit__()
            raise RuntimeError(f"reference service {self.name} did not start: {line!r} {err}")
        self.url = match.group(1)
        self.ready_s = round(wait_until_answers(self.url, "/healthz", proc=self.proc) - t0, 3)
        return self

    def pids(self) -> List[int]:
        return process_tree(self.proc.pid)

    def rss_bytes(self) -> int:
        return sum(rss_of(pid) for pid in self.pids())

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.proc.stdout.close()
        self.stderr_file.close()


def process_tree(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pids) -> float:
    """User + system CPU time of ``pids`` so far (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of proc(5))
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def rss_of(pid: int) -> int:
    return memory_bytes(pid)[0] or 0


def smaps_rollup_of(pid: int, fields=("Pss", "Anonymous")) -> Dict[str, int]:
    """Fields of /proc/PID/smaps_rollup in bytes (0 where it cannot be read): ``Pss``, shared pages
    divided among the processes mapping them; ``Anonymous``, the pages no file backs (the Python
    heap and objects, thread stacks), what a process costs beyond the libraries every Python process
    on the machine maps from the same files."""
    out = dict.fromkeys(fields, 0)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def expected_label(kind: str) -> Optional[str]:
    """The true label of the sample the load generator sends (from the sample's file name)."""
    from edge_rbmlp.samples import SAMPLES_DIR

    files = sorted(SAMPLES_DIR.glob("*.png" if kind == "image" else "*.txt"))
    match = re.search(r"_label_([^.]+)\.", files[0].name) if files else None
    return match.group(1) if match else None


def check_answers(result: dict, kind: str) -> List[str]:
    problems = []
    if result["errors"]:
        problems.append(f"{result['model']} c={result['concurrency']}: {result['errors']} errors, "
                        f"first: {result['first_error']}")
    want = expected_label(kind)
    wrong = {k: v for k, v in result["labels"].items() if want is not None and k != want}
    if wrong:
        problems.append(f"{result['model']} c={result['concurrency']}: answers {wrong} instead of {want!r}")
    return problems


def run_levels(service: Service, kinds: Dict[str, str], levels, requests: int, progress=print) -> List[dict]:
    rows = []
    for model, kind in kinds.items():
        for concurrency in levels:
            rss_before = service.rss_bytes()
            r = loadgen.run(service.url, model, kind, requests=requests, concurrency=concurrency)
            r["rss_before"], r["rss_after"] = rss_before, service.rss_bytes()
            r["problems"] = check_answers(r, kind)
            rows.append(r)
            progress(f"  {model:6s} c={concurrency:<3d} {r['ok']:>6d} ok {r['errors']} errors  p50 {r['p50_us']:>8.0f} us"
                     f"  p99 {r['p99_us']:>8.0f} us  {r['requests_per_s']:>7.0f} req/s")
    return rows


def run_soak(service: Service, kinds: Dict[str, str], inferences: int, chunk: int, concurrency: int,
             max_growth_mib: float, progress=print) -> dict:
    chunks = max(4, -(-inferences // chunk))
    models = list(kinds)
    samples = [{"inferences": 0, "rss_bytes": service.rss_bytes(), "t": 0.0}]
    done, errors, problems = 0, 0, []
    t0 = time.perf_counter()
    for i in range(chunks):
        model = models[i % len(models)]
        n = min(chunk, max(1, inferences - done)) if i < chunks - 1 else max(1, inferences - done)
        r = loadgen.run(service.url, model, kinds[model], requests=n, concurrency=concurrency)
        done += r["ok"]
        errors += r["errors"]
        problems += check_answers(r, kinds[model])
        samples.append({"inferences": done, "rss_bytes": service.rss_bytes(), "t": round(time.perf_counter() - t0, 2)})
        progress(f"  soak {done:>7d} inferences  RSS {samples[-1]['rss_bytes'] / 2**20:7.1f} MiB")
    warm = samples[max(1, len(samples) // 4)]["rss_bytes"]
    end = samples[-1]["rss_bytes"]
    peak_after_warm = max(s["rss_bytes"] for s in samples[max(1, len(samples) // 4):])
    growth = (peak_after_warm - warm) / 2**20
    flat = growth <= max_growth_mib
    if not flat:
        problems.append(f"RSS grew {growth:.1f} MiB after warm-up (limit {max_growth_mib} MiB): a leak?")
    return {"inferences": done, "errors": errors, "seconds": round(time.perf_counter() - t0, 1),
            "rss_start": samples[0]["rss_bytes"], "rss_after_warmup": warm, "rss_end": end,
            "growth_after_warmup_mib": round(growth, 2), "max_growth_mib": max_growth_mib, "flat": flat,
            "samples": samples, "problems": problems}


def wrk_rps(url: str, body_path: Path, content_type: str, connections: int, seconds: float) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    with script:
        script.write('wrk.method = "POST"\n'
                     f'local f = assert(io.open({json.dumps(str(body_path))}, "rb"))\n'
                     'wrk.body = f:read("*all")\nf:close()\n'
                     f'wrk.headers["Content-Type"] = {json.dumps(content_type)}\n')
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name,
                              url], capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the client's own CPU (wrk's user + system time): on a machine of few cores it takes cores the
    # services would use, which bounds what a second worker can add (two_worker_ceilings)
    client_cores = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / (time.perf_counter() - t0)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    rps = float(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    unit = {"us": 1.0, "ms": 1e3, "s": 1e6}
    return {"requests_per_s": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "p50_us": round(float(p50.group(1)) * unit[p50.group(2)], 1) if p50 else None,
            "client_cores_busy": round(client_cores, 2)}


def _measure(service: Service, model: str, kind: str, body: Path, ctype: str, connections: int, seconds: float,
             requests: int, use_wrk: bool) -> dict:
    pids = service.pids()
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    if use_wrk:
        r = wrk_rps(f"{service.url}/classify/{model}", body, ctype, connections, seconds)
    else:
        r = loadgen.run(service.url, model, kind, requests=requests, concurrency=connections)
        r = {"requests_per_s": r["requests_per_s"], "non_2xx": r["errors"], "socket_errors": 0, "p50_us": r["p50_us"]}
    # cores the service kept busy (the rest of the machine ran the client and the kernel)
    r["service_cores_busy"] = round((cpu_seconds(pids) - cpu0) / (time.perf_counter() - t0), 2)
    return r


def run_engine_threads(kinds: Dict[str, str], batch: int = 64, seconds: float = 2.0, repeats: int = 3,
                       progress=print) -> List[dict]:
    """Inferences/s of one native engine called from 1 and from 2 Python threads at once (the
    engine releases the GIL inside every call), in turn ``repeats`` times; the median counts."""
    import threading

    import numpy as np

    from edge_rbmlp.engines import create
    from edge_rbmlp.models import load_model

    rows = []
    for model_name in kinds:
        engine = create(load_model(model_name), "native")
        q = np.random.default_rng(0).integers(0, 2, size=(batch, engine.model.n_inputs)).astype(np.uint8)
        engine.logits_uint8(q)

        def throughput(n_threads: int) -> float:
            counts = [0] * n_threads
            stop = time.perf_counter() + seconds

            def work(k):
                while time.perf_counter() < stop:
                    engine.logits_uint8(q)
                    counts[k] += batch

            threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts) / (time.perf_counter() - t0)

        runs = {1: [], 2: []}
        for _ in range(repeats):
            for n in (1, 2):
                runs[n].append(throughput(n))
        med = {n: sorted(v)[len(v) // 2] for n, v in runs.items()}
        row = {"model": model_name, "kernel": engine.kernel, "batch": batch,
               "inferences_per_s": {str(n): round(v) for n, v in med.items()}, "speedup": round(med[2] / med[1], 2)}
        rows.append(row)
        progress(f"  {model_name:6s} native ({engine.kernel}) batch {batch}: 1 thread {med[1]:,.0f}/s, 2 threads "
                 f"{med[2]:,.0f}/s: {row['speedup']}x")
    return rows


def reference_problem(name: str) -> Optional[str]:
    """Why a reference service cannot run here (None when it can)."""
    if name == "flask_litert":
        try:
            import ai_edge_litert  # noqa: F401
        except ImportError:
            return "ai-edge-litert is not installed (pip install 'ai-edge-litert>=1.4', the [tflite] extra)"
        if not (ROOT / "edge_rbmlp" / "models" / "mnist_int8.tflite").exists():
            return "no edge_rbmlp/models/mnist_int8.tflite"
    return None


COMPARE_SERVICES = ("ours", "ours_waitress", "ours_2_workers", "ours_before", "flask_minimal", "flask_litert")


def run_compare(levels=(1, 8), seconds: float = 4.0, repeats: int = 3, progress=print, use_wrk: Optional[bool] = None,
                requests: int = 2000, before: Optional[Path] = None, only: Optional[List[str]] = None) -> dict:
    """Our service against the reference services, side by side in one run (issue 10): every
    service is up at once and each (service, model, concurrency) cell is measured in turn
    ``repeats`` times with wrk; the median counts. Services:

    * ``ours``: ``edge-rbmlp serve`` as ``make run`` starts it (1 worker, 1 thread, the default
      HTTP server: granian where installed), both bundled models;
    * ``ours_waitress``: the same on waitress (the server before granian);
    * ``ours_2_workers``: ``--workers 2`` (default HTTP server);
    * ``flask_minimal``: the smallest Flask app on waitress returning a constant JSON;
    * ``flask_litert``: Flask + ai-edge-litert int8, written the way a Pi tutorial would;
    * ``ours_before`` (with ``before``, a checkout of an older commit with its extension built):
      that code's ``edge-rbmlp serve`` as ``make run`` started it then.

    Ratios: ours / flask_minimal per model and concurrency, 2 workers / 1 worker at c=8, ours /
    flask_litert (digits). RSS and ready time (process start to the first answered /healthz) of each.
    ``only``: the services to run (names above; all by default; ``ours_before`` needs ``before``).
    The client is wrk for ``seconds`` per cell (``use_wrk`` None: when installed), else the Python
    load generator for ``requests`` per cell (bounded; it takes cores from the services, so its
    ratios understate the faster services).
    """
    from contextlib import ExitStack

    if use_wrk is None:
        use_wrk = shutil.which("wrk") is not None
    if use_wrk and shutil.which("wrk") is None:
        raise RuntimeError("the comparison needs wrk (make load-client, or apt-get install wrk)")
    from edge_rbmlp.samples import SAMPLES_DIR

    def measure(url: str, model: str, connections: int) -> dict:
        if use_wrk:
            return wrk_rps(f"{url}/classify/{model}", *bodies[model], connections, seconds)
        r = loadgen.run(url, model, "image" if model == "mnist" else "text", requests=requests,
                        concurrency=connections)
        return {"requests_per_s": r["requests_per_s"], "non_2xx": r["errors"], "socket_errors": 0,
                "p50_us": r["p50_us"], "labels": r["labels"]}

    bodies = {"mnist": (sorted(SAMPLES_DIR.glob("*.png"))[0], "image/png"),
              "imdb": (sorted(SAMPLES_DIR.glob("*.txt"))[0], "text/plain; charset=utf-8")}
    skipped = {}
    cells: Dict[tuple, List[dict]] = {}
    info: Dict[str, dict] = {}
    wanted = set(only or COMPARE_SERVICES)
    unknown = wanted - set(COMPARE_SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}: choose from {', '.join(COMPARE_SERVICES)}")
    ours_kinds = {"ours": (1, []), "ours_waitress": (1, ["--http-server", "waitress"]), "ours_2_workers": (2, [])}
    with ExitStack() as stack:
        services = {name: (stack.enter_context(Service(models=("mnist", "imdb"), workers=workers, threads=1,
                                                       extra_args=extra)), ("mnist", "imdb"))
                    for name, (workers, extra) in ours_kinds.items() if name in wanted}
        if before is not None and "ours_before" in wanted:
            services["ours_before"] = (stack.enter_context(Service(models=("mnist", "imdb"), workers=1, threads=1,
                                                                   cwd=before)), ("mnist", "imdb"))
        for name, models in (("flask_minimal", ("mnist", "imdb")), ("flask_litert", ("mnist",))):
            if name not in wanted:
                continue
            problem = reference_problem(name)
            if problem:
                skipped[name] = problem
                progress(f"  {name}: skipped: {problem}")
                continue
            services[name] = (stack.enter_context(Reference(name)), models)
        for name, (svc, models) in services.items():
            for model in models:  # warm-up (and a check that the service answers this route)
                warm = loadgen.run(svc.url, model, "image" if model == "mnist" else "text", requests=50,
                                   concurrency=2)
                if warm["errors"]:
                    raise RuntimeError(f"{name} does not answer /classify/{model}: {warm['first_error']}")
        for _ in range(repeats):
            for c in levels:
                for model in ("mnist", "imdb"):
                    for name, (svc, models) in services.items():
                        if model not in models:
                            continue
                        pids = svc.pids()
                        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
                        r = measure(svc.url, model, c)
                        r["service_cores_busy"] = round((cpu_seconds(pids) - cpu0) / (time.perf_counter() - t0), 2)
                        # what one CPU-second of the service answers: steadier than req/s on a shared machine
                        r["requests_per_cpu_s"] = round(r["requests_per_s"] / max(r["service_cores_busy"], 0.01))
                        r["load_average_1min"] = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy
                        cells.setdefault((name, model, c), []).append(r)
        for name, (svc, _) in services.items():  # memory after the run (warm: every route served)
            rollups = [smaps_rollup_of(p) for p in svc.pids()]
            info[name] = {"rss_bytes": svc.rss_bytes(), "pss_bytes": sum(r["Pss"] for r in rollups),
                          "anonymous_bytes": sum(r["Anonymous"] for r in rollups),
                          "ready_s": svc.ready_s, "processes": len(svc.pids())}
            if isinstance(svc, Service):
                match = re.search(r"HTTP server: (\w+)", svc.stderr())
                info[name]["http_server"] = match.group(1) if match else None
    # ready time and idle RSS, one service at a time (not beside the others: cold starts would
    # compete for the cores), each started ``repeats`` times; the median counts
    ready = {}
    kinds = [("ours", [], None), ("ours_waitress", ["--http-server", "waitress"], None)]
    if before is not None:
        kinds.append(("ours_before", [], before))
    for name, extra, cwd in (k for k in kinds if k[0] in services):
        starts = []
        for _ in range(repeats):
            with Service(models=("mnist", "imdb"), workers=1, threads=1, extra_args=extra, cwd=cwd) as svc:
                starts.append({"ready_s": svc.ready_s, "rss_bytes": svc.rss_bytes()})
        ordered = sorted(starts, key=lambda r: r["ready_s"])
        ready[name] = {"ready_s": ordered[len(ordered) // 2]["ready_s"], "all_ready_s": [r["ready_s"] for r in starts],
                       "idle_rss_bytes": sorted(r["rss_bytes"] for r in starts)[len(starts) // 2]}
        progress(f"  {name}: ready in {ready[name]['ready_s']} s (of {ready[name]['all_ready_s']}), idle RSS "
                 f"{ready[name]['idle_rss_bytes'] / 2**20:.1f} MiB")
    rows = []
    for (name, model, c), rs in cells.items():
        ordered = sorted(rs, key=lambda r: r["requests_per_s"])
        med = dict(ordered[len(ordered) // 2])
        per_cpu = sorted(r["requests_per_cpu_s"] for r in rs)
        med.update(service=name, model=model, concurrency=c, all_requests_per_s=[r["requests_per_s"] for r in rs],
                   requests_per_cpu_s=per_cpu[len(per_cpu) // 2],
                   all_requests_per_cpu_s=[r["requests_per_cpu_s"] for r in rs],
                   all_load_average_1min=[r["load_average_1min"] for r in rs],
                   non_2xx=sum(r["non_2xx"] for r in rs), socket_errors=sum(r["socket_errors"] for r in rs))
        rows.append(med)
        progress(f"  {name:15s} {model:6s} c={c}: {med['requests_per_s']:>8.0f} req/s (median of "
                 f"{med['all_requests_per_s']}, load {med['all_load_average_1min']}), p50 {med['p50_us']} us, "
                 f"{med['non_2xx'] + med['socket_errors']} errors")
    ratios = compare_ratios({(r["service"], r["model"], r["concurrency"]): r["requests_per_s"] for r in rows}, levels)
    per_cpu_ratios = compare_ratios({(r["service"], r["model"], r["concurrency"]): r["requests_per_cpu_s"]
                                     for r in rows}, levels)
    per_cpu_ratios = {k: v for k, v in per_cpu_ratios.items() if not k.startswith("two_workers")}
    ratios.update(two_worker_ceilings(rows, levels))
    for k, v in ratios.items():
        progress(f"  {k}: {v}")
    return {"client": "wrk (C, 1 thread)" if use_wrk else f"python loadgen ({requests} requests per cell)",
            "seconds_per_run": seconds if use_wrk else None, "repeats": repeats, "levels": list(levels),
            "samples": {k: str(v[0].name) for k, v in bodies.items()}, "rows": rows, "ratios": ratios,
            "ratios_per_cpu_s": per_cpu_ratios,
            "services": info, "ready": ready, "skipped": skipped}


def compare_ratios(value: Dict[tuple, float], levels) -> Dict[str, Optional[float]]:
    """The comparison's ratios of ``value[(service, model, concurrency)]`` (requests/s, or per CPU-second)."""

    def ratio(a, b):
        return round(value[a] / value[b], 2) if a in value and b in value and value[b] else None

    ratios = {}
    for model in ("mnist", "imdb"):
        for c in levels:
            ratios[f"ours_vs_flask_minimal_{model}_c{c}"] = ratio(("ours", model, c), ("flask_minimal", model, c))
            ratios[f"ours_vs_ours_waitress_{model}_c{c}"] = ratio(("ours", model, c), ("ours_waitress", model, c))
            ratios[f"ours_before_vs_flask_minimal_{model}_c{c}"] = ratio(("ours_before", model, c),
                                                                         ("flask_minimal", model, c))
            ratios[f"ours_vs_ours_before_{model}_c{c}"] = ratio(("ours", model, c), ("ours_before", model, c))
        top = max(levels)
        ratios[f"two_workers_vs_one_{model}_c{top}"] = ratio(("ours_2_workers", model, top), ("ours", model, top))
    for c in levels:
        ratios[f"ours_vs_flask_litert_mnist_c{c}"] = ratio(("ours", "mnist", c), ("flask_litert", "mnist", c))
        ratios[f"ours_2_workers_vs_flask_litert_mnist_c{c}"] = ratio(("ours_2_workers", "mnist", c),
                                                                     ("flask_litert", "mnist", c))
    return ratios


def two_worker_ceilings(rows: List[dict], levels, cores: Optional[int] = None) -> Dict[str, Optional[float]]:
    """What this machine's cores allow ``--workers 2`` against 1 worker at the top concurrency: the
    cores left beside the client (wrk's CPU in the 2-worker cell) over the cores one worker kept
    busy, at most 2; and the measured ratio as a share of it. On 2 cores with the client beside
    the services a second worker cannot double the requests: the client's own core share and the
    first worker's server threads already take part of the second core."""
    cores = cores or os.cpu_count() or 1
    cell = {(r["service"], r["model"], r["concurrency"]): r for r in rows}
    top = max(levels)
    out: Dict[str, Optional[float]] = {}
    for model in ("mnist", "imdb"):
        one, two = cell.get(("ours", model, top)), cell.get(("ours_2_workers", model, top))
        if not one or not two or two.get("client_cores_busy") is None or not one.get("service_cores_busy"):
            continue
        ceiling = min(2.0, (cores - two["client_cores_busy"]) / one["service_cores_busy"])
        out[f"two_workers_ceiling_{model}_c{top}"] = round(ceiling, 2)
        if one["requests_per_s"]:
            out[f"two_workers_of_ceiling_{model}_c{top}"] = round(
                two["requests_per_s"] / one["requests_per_s"] / ceiling, 2)
    return out


def compare_markdown(compare: dict, per_cpu: bool = False) -> str:
    """The comparison as the Markdown table of benchmarks/README.md: requests/s with memory and
    ready time, or (``per_cpu``) requests per CPU-second of the service."""
    key = "requests_per_cpu_s" if per_cpu else "requests_per_s"
    rps = {(r["service"], r["model"], r["concurrency"]): r[key] for r in compare["rows"] if key in r}
    names = [n for n in ("ours_before", "ours_waitress", "ours", "ours_2_workers", "flask_minimal", "flask_litert")
             if any(k[0] == n for k in rps)]
    label = {"ours_before": "before (the --compare-before checkout)", "ours_waitress": "ours on waitress",
             "ours": "**ours** (`make run`: granian, 1 worker)", "ours_2_workers": "ours, `--workers 2`",
             "flask_minimal": "smallest Flask app (waitress)", "flask_litert": "Flask + ai-edge-litert int8 (waitress)"}
    cols = [(m, c) for m in ("mnist", "imdb") for c in compare["levels"]]
    tail = "" if per_cpu else " RSS idle | RSS / PSS / anonymous after | ready |"
    lines = ["| service | " + " | ".join(f"{m} c={c}" for m, c in cols) + " |" + tail,
             "|---|" + "---|" * len(cols) + ("" if per_cpu else "---|---|---|")]
    ready = compare.get("ready", {})
    for n in names:
        cells = []
        for m, c in cols:
            v = rps.get((n, m, c))
            base = rps.get(("flask_minimal", m, c))
            cells.append("-" if v is None else f"{v:,.0f}" + (f" ({v / base:.2f}x)" if base and n != "flask_minimal" else ""))
        if per_cpu:
            lines.append(f"| {label[n]} | " + " | ".join(cells) + " |")
            continue
        info = compare["services"].get(n, {})
        idle = ready.get(n, {}).get("idle_rss_bytes")
        ready_s = ready.get(n, {}).get("ready_s") or info.get("ready_s")
        started_alone = n in ready  # else its start competed with the others' (all start at once)
        after = (f"{info['rss_bytes'] / 2**20:.1f} / {info.get('pss_bytes', 0) / 2**20:.1f} / "
                 f"{info.get('anonymous_bytes', 0) / 2**20:.1f} MiB") if info else "-"
        lines.append(f"| {label[n]} | " + " | ".join(cells) + f" | {f'{idle / 2**20:.1f} MiB' if idle else '-'} | "
                     f"{after} | {ready_s:.2f} s" + ("" if started_alone else "*") + " |")
    return "\n".join(lines)


def parse_configs(text: str) -> List[tuple]:
    """``"1x1,1x2,2x2"`` -> [(workers, threads), ...]."""
    out = []
    for item in text.split(","):
        if item.strip():
            w, _, t = item.strip().partition("x")
            out.append((int(w), int(t or 1)))
    return out


def run_scaling(kinds: Dict[str, str], configs, connections: int, seconds: float, requests: int,
                repeats: int = 3, progress=print) -> dict:
    """Requests/s of the same model served as ``configs`` (workers, threads per worker), side by
    side: every service runs at once (an idle one costs nothing), each measured in turn
    ``repeats`` times; the median counts. Speed-ups are against the first config."""
    from contextlib import ExitStack

    from edge_rbmlp.samples import SAMPLES_DIR

    use_wrk = shutil.which("wrk") is not None
    client = "wrk (C, 1 thread)" if use_wrk else "python loadgen (client-bound: understates the speed-up)"
    rows = []
    for model, kind in kinds.items():
        body = sorted(SAMPLES_DIR.glob("*.png" if kind == "image" else "*.txt"))[0]
        ctype = "image/png" if kind == "image" else "text/plain; charset=utf-8"
        runs: Dict[tuple, List[dict]] = {c: [] for c in configs}
        with ExitStack() as stack:
            services = {c: stack.enter_context(Service(models=(model,), workers=c[0], threads=c[1])) for c in configs}
            for service in services.values():
                loadgen.run(service.url, model, kind, requests=200, concurrency=4)  # warm every worker
            for _ in range(repeats):
                for c, service in services.items():
                    runs[c].append(_measure(service, model, kind, body, ctype, connections, seconds, requests,
                                            use_wrk))
            rss = {c: service.rss_bytes() for c, service in services.items()}
        by_config = {}
        for c, rs in runs.items():
            ordered = sorted(rs, key=lambda r: r["requests_per_s"])
            median = dict(ordered[len(ordered) // 2])
            median.update(workers=c[0], threads=c[1], all_requests_per_s=[r["requests_per_s"] for r in rs],
                          rss_bytes=rss[c], non_2xx=sum(r["non_2xx"] for r in rs),
                          socket_errors=sum(r["socket_errors"] for r in rs))
            by_config[f"{c[0]}x{c[1]}"] = median
            progress(f"  {model:6s} {c[0]} worker(s) x {c[1]} thread(s) {median['requests_per_s']:>7.0f} req/s "
                     f"(median of {median['all_requests_per_s']})  service busy on "
                     f"{median['service_cores_busy']:.2f} cores  ({median['non_2xx'] + median['socket_errors']} errors)")
        base = next(iter(by_config.values()))["requests_per_s"]
        rows.append({"model": model, "by_config": by_config,
                     "speedup": {k: round(v["requests_per_s"] / base, 2) for k, v in by_config.items()}})
    return {"client": client, "connections": connections, "repeats": repeats, "seconds_per_run": seconds,
            "baseline": "{}x{}".format(*configs[0]), "rows": rows}


def machine(load: bool = False) -> dict:
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
           "service_python": Service.python, "service_packages": service_packages()}
    if load:
        out["load_average"] = os.getloadavg()
    return out


def service_packages() -> Dict[str, str]:
    """The versions of the service's dependencies on the interpreter it runs on."""
    code = ("import importlib.metadata as m, json\nout = {}\n"
            "for p in ('numpy', 'flask', 'werkzeug', 'granian', 'waitress', 'pillow', 'prometheus-client'):\n"
            "    try: out[p] = m.version(p)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    try:
        return json.loads(subprocess.run([Service.python, "-c", code], capture_output=True, text=True, timeout=60).stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def compare_report(args) -> tuple:
    """(run_compare's report, the problems in it) for the command line's --compare options."""
    print("compare: our service against the reference services (wrk, same run)")
    only = [n.strip() for n in args.compare_services.split(",") if n.strip()] if args.compare_services else None
    compare = run_compare(seconds=args.compare_seconds, repeats=args.compare_repeats, before=args.compare_before,
                          only=only)
    problems = [f"compare {r['service']} {r['model']} c={r['concurrency']}: {r['non_2xx']} non-2xx, "
                f"{r['socket_errors']} socket errors" for r in compare["rows"] if r["non_2xx"] or r["socket_errors"]]
    return compare, problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mnist,imdb")
    ap.add_argument("--levels", default="1,8,64")
    ap.add_argument("--requests", type=int, default=2000, help="requests per model and concurrency level")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the service under load")
    ap.add_argument("--threads", type=int, default=2, help="threads per worker (the device config's 2)")
    ap.add_argument("--soak", type=int, default=100_000, help="inferences in the soak (0: no soak)")
    ap.add_argument("--soak-chunk", type=int, default=5000)
    ap.add_argument("--soak-concurrency", type=int, default=8)
    ap.add_argument("--max-growth-mib", type=float, default=8.0)
    ap.add_argument("--scaling", default="1x1,1x2,2x1,2x2",
                    help="WORKERSxTHREADS configurations to compare, the first is the baseline ('' to skip)")
    ap.add_argument("--scaling-seconds", type=float, default=6.0)
    ap.add_argument("--engine-threads", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the native engine from 1 and 2 threads (GIL released)")
    ap.add_argument("--compare", action=argparse.BooleanOptionalAction, default=False,
                    help="also compare the service with the reference services (benchmarks/reference_services/)")
    ap.add_argument("--compare-seconds", type=float, default=4.0)
    ap.add_argument("--compare-repeats", type=int, default=3)
    ap.add_argument("--compare-only", action="store_true", help="only the comparison (no load, soak, scaling)")
    ap.add_argument("--compare-before", type=Path, default=None, metavar="CHECKOUT",
                    help="also serve an older checkout (its extension built in place) beside ours: the 'before' column")
    ap.add_argument("--compare-services", default="", metavar="NAMES",
                    help=f"comma-separated subset of the compared services ({', '.join(COMPARE_SERVICES)}; default all)")
    ap.add_argument("--service-python", type=Path, default=None, metavar="PYTHON",
                    help="run our services on this interpreter (e.g. .venv/bin/python, make run's venv); the "
                         "checkout's code either way (they start in it), the reference services on this one")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.service_python:
        Service.python = str(args.service_python)
    if args.compare_only:
        report = {"machine": machine(load=True)}
        report["compare"], problems = compare_report(args)
        report["problems"] = problems
        print(compare_markdown(report["compare"]))
        print("requests per CPU-second of the service:")
        print(compare_markdown(report["compare"], per_cpu=True))
        return finish(report, problems, args.out)

    models = [m for m in args.models.split(",") if m]
    levels = [int(x) for x in args.levels.split(",") if x]
    from edge_rbmlp.models import load_model

    kinds = {m: load_model(m).input_spec.kind for m in models}
    report = {"machine": machine(), "service": {"workers": args.workers, "threads": args.threads}}
    problems: List[str] = []
    print(f"load: {args.requests} requests per level, levels {levels}, {args.workers} workers x {args.threads} threads")
    with Service(models=models, workers=args.workers, threads=args.threads) as service:
        report["service"]["pids"] = service.pids()
        report["levels"] = run_levels(service, kinds, levels, args.requests)
        problems += [p for r in report["levels"] for p in r["problems"]]
        if args.soak:
            print(f"soak: {args.soak} inferences, concurrency {args.soak_concurrency}")
            report["soak"] = run_soak(service, kinds, args.soak, args.soak_chunk, args.soak_concurrency,
                                      args.max_growth_mib)
            problems += report["soak"]["problems"]
            if report["soak"]["problems"]:  # what the service said meanwhile (a worker replaced?)
                problems.append("the service's log during the soak:\n" + service.stderr()[-3000:])
        code = service.stop()
        if code != 0:
            problems.append(f"the service exited with {code} on SIGTERM:\n{service.stderr()[-2000:]}")
    configs = parse_configs(args.scaling)
    if len(configs) >= 2:
        print(f"scaling: (workers x threads) {args.scaling}")
        report["scaling"] = run_scaling(kinds, configs, connections=8, seconds=args.scaling_seconds,
                                        requests=args.requests)
        for row in report["scaling"]["rows"]:
            for name, r in row["by_config"].items():
                if r["non_2xx"] or r["socket_errors"]:
                    problems.append(f"scaling {row['model']} {name}: {r['non_2xx']} non-2xx, "
                                    f"{r['socket_errors']} socket errors")
    if args.compare:
        report["compare"], compare_problems = compare_report(args)
        problems += compare_problems
    if args.engine_threads:
        print("engine: one native engine called from 1 and from 2 threads")
        report["engine_threads"] = run_engine_threads(kinds)
    report["problems"] = problems
    summary = {"requests_tried": sum(r["requests"] for r in report["levels"]),
               "errors": sum(r["errors"] for r in report["levels"])}
    if "soak" in report:
        s = report["soak"]
        summary.update(soak_inferences=s["inferences"], soak_errors=s["errors"],
                       rss_start_mib=round(s["rss_start"] / 2**20, 1),
                       rss_after_warmup_mib=round(s["rss_after_warmup"] / 2**20, 1),
                       rss_end_mib=round(s["rss_end"] / 2**20, 1), rss_flat=s["flat"])
    if "scaling" in report:
        summary["speedup_vs_" + report["scaling"]["baseline"]] = {row["model"]: row["speedup"]
                                                                  for row in report["scaling"]["rows"]}
        summary["scaling_client"] = report["scaling"]["client"]
    if "engine_threads" in report:
        summary["engine_speedup_1_to_2_threads"] = {r["model"]: r["speedup"] for r in report["engine_threads"]}
    if "compare" in report:
        summary["compare_ratios"] = report["compare"]["ratios"]
    report["summary"] = summary
    print(json.dumps(summary, indent=2))
    return finish(report, problems, args.out)


def finish(report: dict, problems: List[str], out: Optional[Path]) -> int:
    """Write ``report`` to ``out`` (JSON), say the problems; the exit status (1: any problem)."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
