"""Hostile clients (issue 15): each attack replayed against the real service (``edge-rbmlp serve``,
2 workers x 2 threads like device/config.toml, granian) inside a memory cgroup of the systemd
unit's ``MemoryMax`` where this machine allows one (else those tests skip, saying why).

Every case asserts: no process died (no worker killed, no OOM kill in the cgroup, the supervisor
alive), no 5xx, every worker's peak resident memory under its stated bound (guard.worker_memory_bound,
reported by /api/status), and a legitimate client still answered (200) within a factor of its
normal latency, measured in the same run. Bounded by request counts and a few seconds of attack
each; ``make soak`` runs them ten times longer (EDGE_RBMLP_HOSTILE_SCALE=10).
Figures per case: printed, and appended to $EDGE_RBMLP_HOSTILE_FIGURES when set.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import sys
import time
from typing import Optional

import numpy as np
import pytest

from hostilekit import (CgroupService, Legit, MemoryCgroup, hammer, peak_rss, raw_exchange, record, request,
                        unit_memory_max)
from serverkit import drawn_seven, png_bytes, write_models

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT workers, /proc: Linux")

IDLE_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 20
MAX_CONNECTIONS = 64
SEVEN = png_bytes(drawn_seven())
PNG = {"Content-Type": "image/png"}
JSON = {"Content-Type": "application/json"}
# a legitimate client's latency during an attack, as a multiple of its normal latency (measured
# just before, same run): generous, the machine is shared; what it guards against is being locked
# out (the issue measured 2.1 s medians and refused connections)
LATENCY_FACTOR = 40
# `make soak` runs this suite with EDGE_RBMLP_HOSTILE_SCALE=10: every count and attack time x10
SCALE = max(1, int(os.environ.get("EDGE_RBMLP_HOSTILE_SCALE", "1")))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def cgroup():
    group = MemoryCgroup(unit_memory_max())
    yield group
    group.close()


def _service_scope(fixture_name, config):
    """One service for the module; a fresh one per case with EDGE_RBMLP_HOSTILE_FRESH=1 (to run
    this suite against older code, where one case can take the whole service down)."""
    return "function" if os.environ.get("EDGE_RBMLP_HOSTILE_FRESH") else "module"


@pytest.fixture(scope=_service_scope)
def svc(tmp_path_factory, cgroup):
    root = tmp_path_factory.mktemp("hostile")
    paths = write_models(root / "models")
    config = root / "config.toml"
    from edge_rbmlp.server.config import Limits

    deadline = f"request_timeout_s = {REQUEST_TIMEOUT_S}\n" if hasattr(Limits, "request_timeout_s") else ""  # older code
    config.write_text(f"[limits]\nidle_timeout_s = {IDLE_TIMEOUT_S}\nmax_connections = {MAX_CONNECTIONS}\n{deadline}")
    group = cgroup if cgroup.problem is None else None
    with CgroupService(group, models=[str(p) for p in paths.values()], workers=2, threads=2, backend="native",
                       extra_args=["--config", str(config)]) as service:
        service.cgroup_problem = cgroup.problem
        yield service


FIRST_RSS = {}  # pid -> RSS when first seen: the bound of a service that states none (older code)


def bounds(svc) -> dict:
    """pid -> the memory bound /api/status states for that worker (both workers asked). A service
    that states none (the code before issue 15, run against this suite) is held to the bound the
    current code states: its RSS when first seen + the budget, the server's and 2 threads' share."""
    out = {}
    for _ in range(100):
        status, body, _ = request(svc.port, "GET", "/api/status")
        assert status == 200, status
        info = json.loads(body)
        FIRST_RSS.setdefault(info["pid"], info["rss_bytes"])
        out[info["pid"]] = info.get("memory_bound_bytes") or FIRST_RSS[info["pid"]] + (48 + 16 + 2 * 24) * 2**20
        if len(out) == 2:
            return out
    raise AssertionError(f"only workers {sorted(out)} answered")


class Watch:
    """The service's state before an attack, checked after it (see the module docstring)."""

    def __init__(self, svc, case: str):
        self.svc, self.case = svc, case
        self.workers = sorted(bounds(svc))
        self.stderr_at = len(svc.stderr())
        self.ooms = svc.cgroup.oom_kills() if svc.cgroup is not None else 0
        self.legit = Legit(svc.port, "/classify/mnist", SEVEN, PNG)
        self.normal = self.legit.sample(15)

    def finish(self, results, latency_ceiling_s: Optional[float] = None, **figures) -> dict:
        """``latency_ceiling_s``: for an attack of allowed but heavy requests that keeps every thread
        busy, a legitimate request may take as long as one of those (measured in the same run) instead of
        LATENCY_FACTOR x normal: being locked out means queueing behind them, i.e. taking longer."""
        svc = self.svc
        log = svc.stderr()[self.stderr_at:]
        statuses = [r[0] if isinstance(r, tuple) else r for r in results]
        fives = [s for s in statuses + self.legit.statuses if not isinstance(s, int) or s >= 500]
        worker_bounds = bounds(svc)
        peaks = {pid: peak_rss(pid) for pid in worker_bounds}
        kills = log.count("is wedged (") + log.count("died with exit code")
        ooms = (svc.cgroup.oom_kills() - self.ooms) if svc.cgroup is not None else None
        during = self.legit.median()
        figures = dict(requests=len(results), statuses=sorted({str(s) for s in statuses}), five_xx=len(fives),
                       worker_kills=kills, oom_kills=ooms, recycled=log.count("grew past its memory bound"),
                       peak_rss_mib={str(p): round(v / 2**20, 1) for p, v in peaks.items() if v},
                       bound_mib={str(p): round(v / 2**20, 1) for p, v in worker_bounds.items()},
                       cgroup_limit_mib=None if svc.cgroup is None else svc.cgroup.limit >> 20,
                       cgroup_peak_mib=None if svc.cgroup is None or svc.cgroup.peak() is None
                       else round(svc.cgroup.peak() / 2**20, 1),
                       legit_normal_ms=round(self.normal * 1e3, 1), legit_during_ms=round(during * 1e3, 1),
                       legit_requests=len(self.legit.latencies), **figures)
        record(self.case, **figures)
        assert svc.proc.poll() is None, f"the supervisor exited:\n{log[-3000:]}"
        assert kills == 0 and not ooms, f"{kills} worker kills, {ooms} OOM kills:\n{log[-3000:]}"
        assert sorted(worker_bounds) == self.workers, "a worker was replaced"
        assert not fives, f"5xx or no answer: {fives[:5]}"
        assert self.legit.statuses and set(self.legit.statuses) == {200}, set(self.legit.statuses)
        for pid, peak in peaks.items():
            assert peak is not None and peak <= worker_bounds[pid], \
                f"worker {pid}: peak RSS {peak >> 20} MiB over its bound {worker_bounds[pid] >> 20} MiB"
        allowed = max(LATENCY_FACTOR * self.normal, latency_ceiling_s or 0.0)
        assert during <= allowed, \
            (f"legitimate latency {during * 1e3:.0f} ms during the attack, {self.normal * 1e3:.1f} ms normally"
             + ("" if latency_ceiling_s is None else f", {latency_ceiling_s * 1e3:.0f} ms per attack request"))
        assert "Traceback" not in log, log[-3000:]
        return figures


def test_the_service_runs_inside_the_units_memory_limit(svc):
    """Not a skip in disguise: says whether the cases below ran inside the cgroup."""
    if svc.cgroup_problem:
        pytest.skip(f"no memory cgroup ({svc.cgroup_problem}); the cases run without one")
    assert svc.proc.pid in [int(p) for p in (svc.cgroup.path / "cgroup.procs").read_text().split()]
    assert svc.cgroup.limit == unit_memory_max()


# 1. memory per pixel -------------------------------------------------------------------------------
def test_memory_per_pixel(svc):
    from PIL import Image

    big = 12_000_000  # the pixel limit: the largest images allowed, in every costly mode
    side = int(big ** 0.5)
    pal = Image.new("P", (side, side), 0)
    pal.info["transparency"] = 0
    g16 = io.BytesIO()
    Image.fromarray(np.full((side, side), 65535, np.uint16)).save(g16, format="PNG")
    bodies = {
        "white 4000x3000 RGB PNG": _png(Image.new("RGB", (4000, 3000), (255, 255, 255))),
        f"white {side}x{side} RGBA PNG": _png(Image.new("RGBA", (side, side), (255, 255, 255, 255))),
        f"{side}x{side} 16-bit grey PNG": g16.getvalue(),
        f"{side}x{side} palette PNG with transparency": _png(pal),
        "white 4000x4000 grey PNG (over the pixel limit)": _png(Image.new("L", (4000, 4000), 255)),
        "6000x6000 RGBA PNG (over the pixel limit)": _png(Image.new("RGBA", (6000, 6000), (255,) * 4)),
    }
    watch = Watch(svc, "memory per pixel")
    results = []
    with watch.legit:
        for name, body in bodies.items():
            got = hammer(4, lambda: request(svc.port, "POST", "/classify/mnist", body, PNG), count=4 * SCALE)
            results += got
            assert {s for s, _, _ in got} <= {400, 413, 422}, (name, {s for s, _, _ in got})
    watch.finish(results, bodies_kib={k: len(v) >> 10 for k, v in bodies.items()})


# 2. busy is not dead -------------------------------------------------------------------------------
def test_busy_workers_are_not_killed(svc):
    from PIL import Image

    heavy = _png(Image.new("RGB", (4000, 3000), (250, 250, 250)))  # allowed, ~0.5 s of decoding each
    watch = Watch(svc, "busy is not dead")
    with watch.legit:
        results = hammer(4, lambda: request(svc.port, "POST", "/classify/mnist", heavy, PNG), seconds=20 * SCALE)
    times = sorted(dt for _, _, dt in results)
    median = times[len(times) // 2]
    # 4 clients of allowed ~0.5 s decodes keep all 2 x 2 threads busy on 2 cores: the legitimate client
    # shares the CPU with them, so its bound is one attack request's time, not 40x its idle latency
    # (which only measures how fast the idle path is: 2.4 ms idle and 147 ms here on a quiet machine)
    watch.finish(results, latency_ceiling_s=median, body_kib=len(heavy) >> 10,
                 attack_median_s=round(median, 2), attack_slowest_s=round(times[-1], 2))


# 3. unbounded metric labels ------------------------------------------------------------------------
def test_method_names_do_not_grow_the_metrics(svc):
    """Methods outside the known set count as ``other``: after the first few requests (which make
    their labelled series), 200 more with 60 KB method names of their own add nothing."""
    def metrics_size():
        return max(len(request(svc.port, "GET", "/metrics")[1]) for _ in range(4))

    watch = Watch(svc, "metric labels")
    methods = [("X" * 60_000) + str(i) for i in range(210 * SCALE)]

    def attack():
        return request(svc.port, methods.pop(), "/api/status")

    with watch.legit:
        results = hammer(2, attack, count=10)
        before = metrics_size()
        results += hammer(4, attack, count=200 * SCALE)
        after = metrics_size()
    watch.finish(results, metrics_bytes_before=before, metrics_bytes_after=after)
    assert after - before < 1024, (before, after)


# 4. deeply nested JSON -----------------------------------------------------------------------------
def test_deep_json_is_a_400(svc):
    deep = b"[" * 1000 + b"]" * 1000
    cases = [("/classify/imdb", b'{"text": ' + deep + b"}"), ("/v1/models/mnist:predict", b'{"instances": ' + deep + b"}"),
             ("/v2/models/mnist/infer", b'{"inputs": ' + deep + b"}"), ("/v2/models/mnist/infer", b"{" * 10_000)]
    watch = Watch(svc, "deep JSON")
    results = []
    with watch.legit:
        for path, body in cases:
            got = hammer(2, lambda: request(svc.port, "POST", path, body, JSON), count=10 * SCALE)
            assert {s for s, _, _ in got} == {400}, (path, got[0])
            assert b"nests" in got[0][1] or b"not valid JSON" in got[0][1], got[0][1]
            results += got
    watch.finish(results)


# 5. quadratic flattening of v2 BYTES ---------------------------------------------------------------
def test_bytes_flattening_is_linear_and_limited_early(svc):
    def body(shape, data):
        return json.dumps({"inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}]},
                          separators=(",", ":")).encode()

    cases = [(body([1_000_000], [""] * 1_000_000), 413, b"memory budget"),  # the 3 MB body
             (body([500_000], [""] * 500_000), 413, b"batch"),  # parsed, refused before flattening
             (body([1], [""] * 500_000), 400, b"more BYTES elements"),  # stops at the second element
             (body([256], [[""] * 1000] * 500), 400, b"more BYTES elements")]
    watch = Watch(svc, "quadratic flattening")
    results = []
    with watch.legit:
        for data, expect, text in cases:
            got = hammer(2, lambda: request(svc.port, "POST", "/v2/models/imdb/infer", data, JSON), count=6 * SCALE)
            assert {s for s, _, _ in got} == {expect} and text in got[0][1], got[0][:2]
            results += got
    slowest = max(dt for _, _, dt in results)
    figures = watch.finish(results, body_mib=round(len(cases[0][0]) / 2**20, 1), attack_slowest_s=round(slowest, 2))
    # the issue measured 82.7 s for the first body: now each answer costs about a parse of 3 MB
    assert slowest < LATENCY_FACTOR * 10 * watch.normal or slowest < 5.0, figures


# 6. output amplification ---------------------------------------------------------------------------
def test_outputs_are_limited(svc):
    img = np.asarray(drawn_seven(28)).reshape(-1).tolist()
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8", "data": img}],
                       "outputs": [{"name": "probabilities"}] * 70_000}).encode()
    watch = Watch(svc, "output amplification")
    with watch.legit:
        results = hammer(2, lambda: request(svc.port, "POST", "/v2/models/mnist/infer", body, JSON), count=10 * SCALE)
    assert {s for s, _, _ in results} == {400} and max(len(b) for _, b, _ in results) < 1024, results[0][:2]
    watch.finish(results, request_mib=round(len(body) / 2**20, 2), largest_answer=max(len(b) for _, b, _ in results))


# 7. shape product overflow -------------------------------------------------------------------------
def test_shape_arithmetic_does_not_overflow(svc):
    data = [0] * 784
    bodies = [json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "UINT8", "data": data}]}).encode()
              for shape in ([2**60 + 1, 1, 784], [2**62, 2**2, 784], [2**64, 784])]
    watch = Watch(svc, "shape overflow")
    results = []
    with watch.legit:
        for body in bodies:
            got = request(svc.port, "POST", "/v2/models/mnist/infer", body, JSON)
            assert got[0] in (400, 413) and b"probabilities" not in got[1], got[:2]
            results.append(got)
    watch.finish(results)


# 8. slow headers -----------------------------------------------------------------------------------
def test_slow_headers_are_cut_at_the_head_deadline(svc):
    n = 2 * MAX_CONNECTIONS + 40  # more than both workers' connection limits together
    watch = Watch(svc, "slow headers")
    socks = []
    lines = 0
    with watch.legit:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            s.sendall(b"POST /classify/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append([s, time.monotonic(), None])
        end = time.monotonic() + 4 * IDLE_TIMEOUT_S
        while time.monotonic() < end and any(closed is None for _, _, closed in socks):
            time.sleep(1.0)
            lines += 1
            for entry in socks:
                s, _, closed = entry
                if closed is not None:
                    continue
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % lines)
                    s.setblocking(False)
                    try:
                        if s.recv(1 << 16) == b"":
                            entry[2] = time.monotonic()
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
                except OSError:
                    entry[2] = time.monotonic()
    held = [closed - opened for _, opened, closed in socks if closed is not None]
    for s, _, _ in socks:
        s.close()
    open_left = sum(1 for _, _, closed in socks if closed is None)
    watch.finish([200] * 0, connections=n, header_lines_sent=lines, still_open=open_left,
                 longest_held_s=round(max(held), 1) if held else None)
    assert open_left == 0, f"{open_left} of {n} connections still open after {lines} header lines"
    # the connections beyond both workers' limits wait in the backlog until others are cut: their
    # head deadline starts when they are accepted, so they are held up to two deadlines
    assert max(held) < 2 * IDLE_TIMEOUT_S + 4, max(held)


# 9. CPU per small request --------------------------------------------------------------------------
def test_nfkc_expansion_is_bounded(svc):
    fdfa = "\ufdfa"
    one = fdfa * 150_000  # 450 KB, 2.7 M characters once normalized
    batch = json.dumps({"inputs": [{"name": "text", "shape": [200], "datatype": "BYTES",
                                    "data": [fdfa * 6000] * 200}]}, ensure_ascii=False).encode()  # 3.6 MB
    watch = Watch(svc, "NFKC expansion")
    results = []
    with watch.legit:
        got = hammer(2, lambda: request(svc.port, "POST", "/classify/imdb", one.encode(),
                                        {"Content-Type": "text/plain"}), count=6 * SCALE)
        assert {s for s, _, _ in got} == {413}, got[0][:2]
        results += got
        got = hammer(2, lambda: request(svc.port, "POST", "/v2/models/imdb/infer", batch, JSON), count=6 * SCALE)
        assert {s for s, _, _ in got} == {413}, got[0][:2]
        results += got
    watch.finish(results, attack_slowest_s=round(max(dt for _, _, dt in results), 2))


def test_one_client_looping_a_small_costly_png(svc):
    from PIL import Image

    costly = _png(Image.new("RGB", (4000, 3000), (255, 255, 255)))  # 12 MP in ~36 KB
    watch = Watch(svc, "looping a costly PNG")
    with watch.legit:
        results = hammer(1, lambda: request(svc.port, "POST", "/classify/mnist", costly, PNG), seconds=15 * SCALE)
    watch.finish(results, body_kib=len(costly) >> 10,
                 attack_median_s=round(float(np.median([dt for _, _, dt in results])), 3))


# 10. every Pillow decoder reachable ----------------------------------------------------------------
def test_only_the_documented_image_formats(svc):
    from PIL import Image

    img = Image.fromarray(np.asarray(drawn_seven(64)))
    bodies = {}
    for fmt in ("ICO", "TGA", "PCX", "JPEG2000", "SGI", "DDS", "IM"):
        buf = io.BytesIO()
        try:
            img.convert("RGB" if fmt in ("JPEG2000", "DDS") else "L").save(buf, format=fmt)
        except (KeyError, OSError, ValueError):
            continue  # this Pillow cannot write it
        bodies[fmt] = buf.getvalue()
    bodies["EPS"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    assert {"ICO", "TGA", "PCX", "EPS"} <= set(bodies)
    watch = Watch(svc, "image formats")
    results = []
    with watch.legit:
        for fmt, body in bodies.items():
            for ctype in ("image/png", "application/octet-stream"):
                got = request(svc.port, "POST", "/classify/mnist", body, {"Content-Type": ctype})
                assert got[0] == 400 and b"not a recognised image format" in got[1], (fmt, got[:2])
                results.append(got)
    watch.finish(results, formats=sorted(bodies))


# 11. browsers as attackers -------------------------------------------------------------------------
def test_dns_rebinding_and_cross_site_posts_are_refused(svc):
    watch = Watch(svc, "browsers as attackers")
    results = []
    port = svc.port
    with watch.legit:
        for host in ("evil.example", "evil.example:%d" % port, "127.0.0.1.nip.io:%d" % port):
            got = request(port, "GET", "/api/status", headers={"Host": host})
            assert got[0] == 403 and b"DNS rebinding" in got[1], (host, got[:2])
            results.append(got)
        for path, body, ctype in (("/api/camera/publish/mnist", SEVEN, "image/png"),
                                  ("/classify/mnist", SEVEN, "image/png"),
                                  ("/classify/imdb", b"text=great+film", "application/x-www-form-urlencoded")):
            for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                            {"Origin": "null"}, {"Sec-Fetch-Site": "same-site", "Origin": f"http://127.0.0.1:{port}"}):
                got = request(port, "POST", path, body, {"Content-Type": ctype, **headers})
                assert got[0] == 403 and b"cross-origin" in got[1], (path, headers, got[:2])
                results.append(got)
        same = request(port, "POST", "/classify/mnist", SEVEN,
                       {**PNG, "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
        assert same[0] == 200, same[:2]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert request(port, "GET", "/api/status", headers={"Host": host})[0] == 200, host
    watch.finish(results)


# 12. smaller ---------------------------------------------------------------------------------------
def test_protocol_details(svc):
    port = svc.port
    watch = Watch(svc, "protocol details")
    results = []
    with watch.legit:
        smuggle = (b"POST /classify/imdb HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = raw_exchange(port, smuggle)
        assert not reply.endswith(b"<OPEN>") and len(re.findall(rb"(?:^|\r\n)HTTP/1\.1 \d{3}", reply)) == 1, reply[-300:]
        assert b"connection: close" in reply.lower() and b'"pid"' not in reply, reply[:300]
        reply = raw_exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400") and not reply.endswith(b"<OPEN>"), reply[:200]
        assert b"Host header" in reply
        for path, body in (("/classify/imdb", b"great film"), ("/classify/mnist", SEVEN),
                           ("/v1/models/mnist:predict", b'{"instances": []}'),
                           ("/v2/models/mnist/infer", b'{"inputs": []}')):
            got = request(port, "POST", path, body, {"Content-Encoding": "gzip", "Content-Type": "text/plain"})
            assert got[0] == 415 and b"Content-Encoding" in got[1], (path, got[:2])
            results.append(got)
        boundary = "b0undary"
        parts = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n" for i in range(1100))
        form = (parts + f"--{boundary}--\r\n").encode()
        got = request(port, "POST", "/classify/imdb", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert got[0] == 413 and b"parts" in got[1], got[:2]
        results.append(got)
        empty = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8", "data": []}]}).encode()
        got = request(port, "POST", "/v2/models/mnist/infer", empty, JSON)
        assert got[0] == 400 and b"empty" in got[1] and b"floating" not in got[1], got[:2]
        results.append(got)
        spec = json.loads(request(port, "GET", "/openapi.json")[1])
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    watch.finish(results)


def test_nfkc_in_windows_is_exact():
    """The bounded normalization (server/infer._nfkc_bounded) gives NFKC of the whole text, for
    random texts of combining marks, Hangul jamo, compatibility characters and ASCII, with small
    windows (so that every kind of split happens)."""
    import random
    import unicodedata

    from edge_rbmlp.server import infer

    rng = random.Random(1)
    special = [chr(c) for c in (0x301, 0x308, 0x327, 0xe9, 0xfdfa, 0xfb01, 0xff21, 0x1100, 0x1161, 0x11a8, 0xac00,
                                0x3131, 0x314f, 0x2460, 0x3000, 0x0b47, 0x0b3e, 0x0cc6, 0x0cd5, 0x1b05, 0x1b35,
                                0x0dd9, 0x0dcf, 0x0f71, 0x0f72)]
    mixed = [chr(c) for c in range(32, 127)] + special
    window = infer.NFKC_WINDOW
    try:
        for trial in range(200):
            text = "".join(rng.choice(mixed if trial % 2 else special) for _ in range(rng.randint(1, 5000)))
            infer.NFKC_WINDOW = rng.choice([17, 64, 4096])
            assert infer._nfkc_bounded(text, 10**8, 10**9, "t")[0] == unicodedata.normalize("NFKC", text), trial
    finally:
        infer.NFKC_WINDOW = window
