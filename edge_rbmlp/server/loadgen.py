"""``edge-rbmlp bench --http URL``: end-to-end latency and throughput of a running service.

Sends a fixed number of ``POST /classify/<model>`` requests (a real sample digit
or review from the bundled samples when present) over keep-alive connections at
a given concurrency, then stops: latency percentiles include HTTP, decoding,
preprocessing and inference.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

SAMPLE_REVIEW = ("This film was a delight from start to finish: the acting is superb, the story moving and "
                 "the photography beautiful. I would happily watch it again.")


class LoadgenError(RuntimeError):
    pass


def _connection(url: str, timeout: float):
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise LoadgenError(f"URL must be http:// or https://, got {url!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return lambda: cls(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout=timeout), \
        parts.path.rstrip("/")


def _headers(token: Optional[str]) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def sample_payload(kind: str) -> Tuple[bytes, str]:
    """A real sample input for a model kind: (body, content type)."""
    from ..samples import SAMPLES_DIR

    if kind == "image":
        pngs = sorted(SAMPLES_DIR.glob("*.png"))
        if pngs:
            return pngs[0].read_bytes(), "image/png"
        from PIL import Image, ImageDraw

        img = Image.new("L", (112, 112), 255)
        ImageDraw.Draw(img).line([(30, 20), (80, 20), (50, 95)], fill=0, width=9)  # a drawn 7
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    txts = sorted(SAMPLES_DIR.glob("*.txt"))
    text = txts[0].read_text(encoding="utf-8") if txts else SAMPLE_REVIEW
    return text.encode("utf-8"), "text/plain; charset=utf-8"


def served_models(url: str, token: Optional[str] = None, timeout: float = 10.0) -> List[dict]:
    make, base = _connection(url, timeout)
    conn = make()
    try:
        conn.request("GET", base + "/api/status", headers=_headers(token))
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise LoadgenError(f"GET /api/status answered {resp.status}: {body[:200]!r}")
        return json.loads(body)["models"]
    except OSError as exc:
        raise LoadgenError(f"cannot reach {url}: {exc}") from None
    finally:
        conn.close()


def _label_of(body: bytes) -> str:
    """The predicted label of a /classify answer (so a run shows every answer, not only the status)."""
    try:
        return str(json.loads(body)["label"])
    except (ValueError, KeyError, TypeError):
        return "?"


def error_text(status: int, reason: str, body: bytes) -> str:
    """An error answer as one readable line: ``422 Unprocessable Entity: no digit in the picture``
    (the service's JSON ``error`` text when there is one, else the start of the body)."""
    text = body[:400].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            text = parsed["error"]
    except ValueError:
        pass
    return f"{status} {reason}" + (f": {text[:200]}" if text else "")


def run(url: str, model: str, kind: str, requests: int = 500, concurrency: int = 1,
        token: Optional[str] = None, timeout: float = 30.0, progress=None) -> dict:
    """``requests`` POSTs at ``concurrency``; returns percentiles (us), req/s and error count."""
    if requests < 1 or concurrency < 1:
        raise LoadgenError("requests and concurrency must be at least 1")
    body, ctype = sample_payload(kind)
    make, base = _connection(url, timeout)
    path = f"{base}/classify/{model}"
    headers = {"Content-Type": ctype, **_headers(token)}
    latencies: List[float] = []
    errors: List[str] = []
    labels: Dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        conn = make()
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                t0 = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    ok = resp.status == 200
                    if not ok:
                        data = error_text(resp.status, resp.reason, data).encode()
                except (OSError, http.client.HTTPException) as exc:  # reset, refused, cut-off answer
                    ok, data = False, f"{type(exc).__name__}: {exc}".encode()
                    conn.close()
                    conn = make()
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                        label = _label_of(data)
                        labels[label] = labels.get(label, 0) + 1
                    else:
                        errors.append(data[:200].decode("utf-8", "replace"))
                    if progress is not None:
                        progress()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(concurrency, requests))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e6
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: None)
    return {"url": url, "model": model, "requests": requests, "concurrency": concurrency, "ok": len(latencies),
            "errors": len(errors), "first_error": errors[0] if errors else None, "labels": labels,
            "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
            "max_us": round(float(lat.max()), 1) if lat.size else None,
            "requests_per_s": round(len(latencies) / wall, 1) if wall > 0 else None, "seconds": round(wall, 3)}


def bench_http(url: str, models: Optional[List[str]] = None, requests: int = 500, concurrency: int = 1,
               token: Optional[str] = None, progress_factory=None) -> List[dict]:
    available = served_models(url, token)
    kinds = {m["name"]: m["kind"] for m in available}
    chosen = models or list(kinds)
    results = []
    for name in chosen:
        if name not in kinds:
            raise LoadgenError(f"the service does not serve {name!r} (it serves {', '.join(kinds)})")
        if kinds[name] not in ("image", "text"):
            continue
        progress = progress_factory(name, requests) if progress_factory else None
        results.append(run(url, name, kinds[name], requests, concurrency, token, progress=progress))
    return results


def compare(url: str, against: List[str], models: Optional[List[str]] = None, requests: int = 500,
            concurrency: int = 1, token: Optional[str] = None, rounds: int = 3) -> List[dict]:
    """The service at ``url`` side by side with other services (``against``: e.g. the reference
    services of benchmarks/reference_services/) on the same ``POST /classify/<model>`` requests:
    every service in turn, ``rounds`` times; the median round counts. Each row says its
    requests/s as a ratio of the first service's (``vs_first``). The others only need to answer
    ``/classify/<model>`` (their kinds are taken from the first service's ``/api/status``)."""
    available = {m["name"]: m["kind"] for m in served_models(url, token)}
    chosen = models or [m for m, k in available.items() if k in ("image", "text")]
    rows = []
    for name in chosen:
        if name not in available:
            raise LoadgenError(f"the service does not serve {name!r} (it serves {', '.join(available)})")
        runs: Dict[str, List[dict]] = {u: [] for u in [url, *against]}
        for _ in range(rounds):
            for target in runs:
                runs[target].append(run(target, name, available[name], requests, concurrency,
                                        token if target == url else None))
        base = None
        for target, results in runs.items():
            ordered = sorted(results, key=lambda r: r["requests_per_s"] or 0.0)
            row = dict(ordered[len(ordered) // 2])
            row["errors"] = sum(r["errors"] for r in results)
            row["all_requests_per_s"] = [r["requests_per_s"] for r in results]
            base = row["requests_per_s"] if base is None else base
            row["vs_first"] = round(row["requests_per_s"] / base, 2) if base and row["requests_per_s"] else None
            rows.append(row)
    return rows
