"""Prometheus metrics of one app, in a registry of its own (no global state)."""

from __future__ import annotations

import os
import resource
import sys
from bisect import bisect_left
from typing import Dict, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

# the ``method`` label of the request counter: anything else counts as "other" (bounded cardinality)
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
# inference latency buckets (seconds): 5 us .. 1 s
STAGES = ("decode", "preprocess", "inference", "total")
LATENCY_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 1.0)


def memory_bytes(pid="self") -> Tuple[Optional[int], Optional[int]]:
    """(RSS, peak RSS) in bytes of this process (or of ``pid``), from /proc (Linux); for this
    process the peak falls back to getrusage. ``None`` where unknown (e.g. ``pid`` is gone)."""
    rss = peak = None
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    if peak is None and pid == "self":
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = ru if sys.platform == "darwin" else ru * 1024
    return rss, peak


class _StateCollector:
    """Gauges read at scrape time: memory, model sizes, camera."""

    def __init__(self, state_fn):
        self._state_fn = state_fn

    def collect(self):
        rss, peak = memory_bytes()
        g = GaugeMetricFamily("edge_rbmlp_process_resident_memory_bytes", "Resident set size of the service process")
        if rss is not None:
            g.add_metric([], rss)
        yield g
        g = GaugeMetricFamily("edge_rbmlp_process_peak_resident_memory_bytes", "Peak resident set size (VmHWM)")
        if peak is not None:
            g.add_metric([], peak)
        yield g
        state = self._state_fn()
        files = GaugeMetricFamily("edge_rbmlp_model_file_bytes", "Size of the packed .rbm file", labels=["model"])
        paper = GaugeMetricFamily("edge_rbmlp_model_paper_size_bytes",
                                  "Model size by the paper's formula (eq. 4-7)", labels=["model"])
        info = GaugeMetricFamily("edge_rbmlp_model_info", "Served models", labels=["model", "arch", "backend", "kernel"])
        for name, served in sorted(state.models.items()):
            files.add_metric([name], served.summary["file_bytes"] or 0)
            paper.add_metric([name], paper_bytes(served.model))
            info.add_metric([name, served.summary["arch"], served.engine.name, served.engine.kernel], 1)
        yield files
        yield paper
        yield info
        cam = state.camera.snapshot()
        g = GaugeMetricFamily("edge_rbmlp_camera_frames", "Camera frames classified since start")
        g.add_metric([], cam["frames"])
        yield g
        g = GaugeMetricFamily("edge_rbmlp_camera_errors", "Camera capture or classification errors since start")
        g.add_metric([], cam["errors"])
        yield g


def _observer(child):
    """``child.observe`` of a labelled histogram, cheaper: the bucket found by bisection and the two
    values (sum, bucket) incremented directly, as ``Histogram.observe`` does (a linear scan of 17
    bounds otherwise, five times a prediction). The histogram's own ``observe`` where its
    internals are not the ones this was written against."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if not (isinstance(bounds, list) and isinstance(buckets, list) and len(bounds) == len(buckets)
            and bounds and bounds[-1] == float("inf") and hasattr(total, "inc")
            and all(hasattr(b, "inc") for b in buckets)):
        return child.observe
    add_sum, adds = total.inc, tuple(b.inc for b in buckets)

    def observe(seconds: float) -> None:
        if seconds != seconds:  # NaN: as Histogram.observe (no bucket)
            return child.observe(seconds)
        add_sum(seconds)
        adds[bisect_left(bounds, seconds)](1)

    return observe


class Metrics:
    def __init__(self, state_fn):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edge_rbmlp_requests", "HTTP requests by route and model",
                                ["route", "model", "method"], registry=self.registry)
        self.errors = Counter("edge_rbmlp_errors", "HTTP requests answered with a 4xx/5xx status",
                              ["route", "model", "status"], registry=self.registry)
        self.inference = Histogram("edge_rbmlp_inference_seconds",
                                   "Engine time of one prediction (decoding and preprocessing not included)",
                                   ["model", "backend"], buckets=LATENCY_BUCKETS, registry=self.registry)
        # where a prediction's time goes (the split every response reports): decode, preprocess,
        # inference and their total
        self.stages = Histogram("edge_rbmlp_prediction_stage_seconds",
                                "Time of each stage of one prediction (decode, preprocess, inference, total)",
                                ["model", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.state_collector = _StateCollector(state_fn)
        self.registry.register(self.state_collector)
        self._children: Dict[tuple, tuple] = {}  # (model, backend) -> labelled histograms (bounded: served models)

    def observe_inference(self, model: str, backend: str, seconds: float) -> None:
        self.inference.labels(model, backend).observe(seconds)

    def observe_prediction(self, model: str, backend: str, timing_us: Dict[str, float]) -> None:
        """One prediction's time split (``decode_us``, ``preprocess_us``, ``inference_us``, ``total_us``)."""
        observers = self._children.get((model, backend))
        if observers is None:  # the labelled series of a (model, backend) are looked up once
            observers = self._children[(model, backend)] = (
                ("inference_us", _observer(self.inference.labels(model, backend))),
                *((stage + "_us", _observer(self.stages.labels(model, stage))) for stage in STAGES))
        get = timing_us.get
        for key, observe in observers:
            observe(get(key, 0.0) * 1e-6)

    def request_accounting(self, models):
        """``account(rule, view_args, method, status)``: one answered request counted by route, model
        and method (and by status when >= 400); ``models()``: the served models now. The labelled
        counters are looked up once per (route, model, method): a bounded set, since unknown
        models count as ``unknown`` and methods outside KNOWN_METHODS as ``other``."""
        counters = {}
        requests, errors = self.requests, self.errors

        def account(rule: str, view_args, method: str, status: int) -> None:
            served = models()
            model = view_args.get("model") if view_args else None
            if model is not None and model not in served:
                model = "unknown"
            method = method if method in KNOWN_METHODS else "other"
            key = (rule, model, method)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = requests.labels(rule, label_model(view_args, served), method)
            counter.inc()
            if status >= 400:
                errors.labels(rule, label_model(view_args, served), str(status)).inc()

        return account

    def exposition(self) -> Tuple[bytes, str]:
        """The text format; under ``serve --workers N`` (prometheus-client's multiprocess mode,
        ``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor) the counters and histograms are the
        sums over every worker, the gauges this worker's."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from .config import METRICS_DIR_ENV

        directory = os.environ.get(METRICS_DIR_ENV)
        if directory and os.path.isdir(directory):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            registry.register(self.state_collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def paper_bytes(model) -> float:
    from ..size import paper_size_bits

    n_classes = 1 if model.output_activation == "sigmoid" else model.n_classes
    return paper_size_bits(model.arch, model.n_inputs, n_classes) / 8


def label_model(view_args: Optional[Dict], known) -> str:
    """The ``model`` label of a request: a served model's name, ``unknown`` or empty (bounded cardinality)."""
    if not view_args or "model" not in view_args:
        return ""
    return view_args["model"] if view_args["model"] in known else "unknown"
