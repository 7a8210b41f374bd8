"""Trials as Ray tasks: ``python -m train sweep`` and ``python -m train reproduce --ray ...``.

A *trial* is (dataset, variant, seed, settings), exactly as in :mod:`train.reproduce`, and its JSON file
``OUT/<dataset>/trials/<variant>__s<seed><settings tag>.json`` stays the single source of truth:

* the driver (the process that runs this module) plans the grid, drops every trial whose file exists,
  and submits the rest as Ray tasks (``num_cpus`` = ``--threads``); a task trains one trial on whichever
  node Ray picks and *returns* its record; only the driver writes trial files, each one once (a hard
  link of a finished temporary file: an existing file is never overwritten);
* a task lost with its worker or node (killed process, dead raylet, lost machine) is retried by Ray
  (``--max-retries``, default 3) on the nodes that are left; a Python error inside a trial is not
  retried: it is reported and makes the command fail;
* each record names the node that ran it (``node``: Ray node id, IP, hostname, pid, the node's custom
  resources) and every node a task was started on (``ray_attempts``), so a retry after a lost node is
  visible in the file;
* the driver claims each trial it submits with the ``<trial>.running`` marker of
  :func:`train.reproduce._claim`, so a local ``reproduce`` run and a Ray sweep over the same folder
  never train the same trial twice; an interrupted driver leaves nothing but stale markers, which
  the next run takes over.

Every node needs this project installed with the ``train`` extra (``pip install -e '.[train]'``)
and the data cache (``python -m train data fetch``); the ``train`` package itself is shipped to the
cluster with the job (Ray ``runtime_env`` ``py_modules``), so the nodes run the driver's trial code.

``--ray`` takes ``local`` (an embedded Ray started by the driver on this machine and stopped with it),
``auto`` (the Ray cluster this machine belongs to, i.e. ``ray start`` was run here or ``RAY_ADDRESS`` is
set; when there is none, an embedded local Ray, said so on the first line), or ``HOST:PORT`` of any
cluster's head (its GCS port, as printed by ``ray start --head``). The driver runs on one of the
cluster's nodes (``ray start --address HEAD:PORT`` on the machine first, if it is not the head): the
results folder is the driver's, and Ray Client (``ray://``) addresses are not supported.

Why plain Ray tasks and not Ray Tune for these grids: every trial of ``reproduce`` and of a grid
``sweep`` is fixed in advance and trains to the end (the paper's protocol: no early stopping), so Tune's
search algorithms and schedulers have nothing to decide, and its experiment state would be a second
record of which trials are done beside the trial files.

Ray is only in the ``train`` extra; nothing in ``edge_rbmlp`` imports it.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import reproduce as rp

NAMESPACE = "edge-rbmlp-sweep"
# keys of ray.nodes()[i]["Resources"] that are not a node's own custom resources
_STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory", "TPU", "accelerator_type"}


class SweepError(RuntimeError):
    pass


def import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SweepError("Ray is not installed: the sweeps need the train extra (pip install -e '.[train]', "
                         "which brings ray)") from exc
    return ray


# -- the plan --------------------------------------------------------------------------------------
@dataclass
class TrialSpec:
    dataset: str
    row: rp.Row
    seed: int
    settings: dict
    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    def label(self) -> str:
        tag = rp.settings_tag(self.settings).strip("_")
        return f"{self.dataset} {self.row.variant} seed {self.seed}" + (f" [{tag}]" if tag else "")

    def to_task(self) -> dict:
        return {"dataset": self.dataset, "row": asdict(self.row), "seed": self.seed, "settings": self.settings,
                "key": self.key}


def sweep_row(dataset: str, variant: str) -> rp.Row:
    """The paper's row for ``variant`` if it is printed in the dataset's table (its numbers come along),
    else a row of our own with no paper numbers."""
    from edge_rbmlp.arch import parse

    arch = parse(variant)
    for r in rp.paper_rows(dataset) if dataset in rp.TABLE_OF else []:
        if parse(r.variant).notation() == arch.notation():
            return r
    return rp.Row(rp.TABLE_OF.get(dataset, ""), dataset, len(arch.blocks), arch.notation(), None, None, None)


def plan(out: Path, dataset: str, rows: Sequence[rp.Row], seeds: Sequence[int],
         settings_list: Sequence[dict]) -> List[TrialSpec]:
    """Seed-major, then settings, then rows: an interrupted sweep still covers every row and setting."""
    specs, seen = [], set()
    for seed, settings, row in itertools.product(seeds, settings_list, rows):
        path = rp.trial_path(Path(out), dataset, row.variant, seed, settings)
        if path not in seen:
            seen.add(path)
            specs.append(TrialSpec(dataset, row, int(seed), dict(settings), path))
    return specs


def settings_grid(epochs: Sequence[Optional[int]] = (None,), lr: Sequence[Optional[float]] = (None,),
                  batch_size: Sequence[Optional[int]] = (None,), dropout: Sequence[Optional[float]] = (None,),
                  input_mode: Sequence[str] = ("sign",), limit_train: Optional[int] = None,
                  limit_test: Optional[int] = None) -> List[dict]:
    return [rp.settings_for(e, limit_train, limit_test, m, lr=l, batch_size=b, dropout=d)
            for e, l, b, d, m in itertools.product(epochs or (None,), lr or (None,), batch_size or (None,),
                                                   dropout or (None,), input_mode or ("sign",))]


# -- the task (runs on any node) ------------------------------------------------------------------------
_DATA: Dict[tuple, object] = {}


def _trial_task(task: dict, threads: int, command: str, monitor) -> dict:
    """Train one trial in a Ray worker and return its record (the driver writes the file)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    if monitor is not None:
        monitor.started.remote(task["key"], node_id, socket.gethostname(), os.getpid())
    rp.limit_threads(threads)
    from .pipeline import FitConfig, load_data

    s = task["settings"]
    dkey = (task["dataset"], s["limit_train"], s["limit_test"])
    if dkey not in _DATA:  # a worker keeps its data set for the next trial it gets
        _DATA.clear()
        _DATA[dkey] = load_data(FitConfig(dataset=task["dataset"], arch=None, limit_train=s["limit_train"],
                                          limit_test=s["limit_test"]))
    rec = rp.run_trial(_DATA[dkey], rp.Row(**task["row"]), task["seed"], s, command=command)
    rec["node"] = {"node_id": node_id, "hostname": socket.gethostname(), "pid": os.getpid()}
    return rec


class _Monitor:
    """A tiny actor on the driver's node: tasks tell it when they start (node, attempt)."""

    def __init__(self):
        self.events: List[dict] = []

    def started(self, key: str, node_id: str, hostname: str, pid: int) -> None:
        self.events.append({"key": key, "node_id": node_id, "hostname": hostname, "pid": pid, "time": time.time()})

    def since(self, n: int) -> List[dict]:
        return self.events[n:]


# -- connecting ---------------------------------------------------------------------------------------
def connect(address: str, num_cpus: Optional[int] = None, object_store_mb: int = 100,
            echo: Callable[[str], None] = print) -> str:
    """``ray.init`` for ``local`` / ``auto`` / ``HOST:PORT``; returns what it connected to."""
    ray = import_ray()
    import train

    runtime_env = {
        "py_modules": [str(Path(train.__file__).parent)],
        "excludes": ["__pycache__", "*.pyc", "variant_runs"],
        "env_vars": {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    }
    common = {"namespace": NAMESPACE, "runtime_env": runtime_env, "logging_level": "WARNING"}
    local = {"num_cpus": num_cpus or os.cpu_count() or 1, "object_store_memory": object_store_mb * 1024 * 1024,
             "include_dashboard": False}
    if address == "local":
        ray.init(**common, **local)
        return f"an embedded local Ray ({local['num_cpus']} CPUs)"
    if address == "auto":
        try:
            ray.init(address="auto", **common)
            return f"the running Ray cluster at {ray.get_runtime_context().gcs_address}"
        except ConnectionError:
            ray.init(**common, **local)
            return f"no running Ray cluster on this machine: an embedded local Ray ({local['num_cpus']} CPUs)"
    ray.init(address=address, **common)
    return f"the Ray cluster at {address}"


def _node_table(ray) -> Dict[str, dict]:
    out = {}
    for n in ray.nodes():
        custom = sorted(k for k in n.get("Resources", {}) if k not in _STANDARD_RESOURCES
                        and not k.startswith("node:") and not k.startswith("accelerator_type"))
        out[n["NodeID"]] = {"ip": n.get("NodeManagerAddress"), "hostname": n.get("NodeManagerHostname"),
                            "alive": n.get("Alive"), "resources": custom,
                            "cpus": n.get("Resources", {}).get("CPU", 0),
                            "head": "node:__internal_head__" in n.get("Resources", {})}
    return out


def node_label(node_id: str, nodes: Dict[str, dict]) -> str:
    n = nodes.get(node_id, {})
    extra = ",".join(n.get("resources", [])) or ("head" if n.get("head") else "")
    return f"{n.get('ip', '?')}/{node_id[:8]}" + (f" ({extra})" if extra else "")


def _write_once(path: Path, rec: dict) -> bool:
    """Write ``path`` unless it exists (atomic: a hard link of a complete temporary file)."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.json.tmp")
    tmp.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


# -- the driver ---------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    failed: List[str] = field(default_factory=list)
    not_started: int = 0
    duplicates: int = 0
    per_node: Counter = field(default_factory=Counter)
    retried: Dict[str, List[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["per_node"] = dict(self.per_node)
        return d


def _fmt_acc(rec: dict, row: rp.Row) -> str:
    rbm = f" (rbm {rec['rbm_accuracy']:.4f})" if "rbm_accuracy" in rec else ""
    paper = f"paper {row.paper_accuracy:.4f}" if row.paper_accuracy is not None else "paper –"
    return f"acc {rec['accuracy']:.4f}{rbm} {paper}"


def run_sweep(specs: Sequence[TrialSpec], address: str = "auto", threads: int = 1, command: str = "",
              echo: Callable[[str], None] = print, deadline: Optional[float] = None, max_retries: int = 3,
              num_cpus: Optional[int] = None, object_store_mb: int = 100, verbose: bool = False,
              shutdown: bool = True) -> SweepResult:
    """Run every trial of ``specs`` whose file is missing as a Ray task; write each finished trial once."""
    res = SweepResult(planned=len(specs))
    todo = [s for s in specs if not s.path.exists()]
    res.skipped = len(specs) - len(todo)
    echo(f"sweep: {len(specs)} trials planned, {res.skipped} already done, {len(todo)} to run "
         f"({threads} CPU(s) per trial, up to {max_retries} retries of a trial lost with its worker or node)")
    if not todo:
        return res
    for ds in sorted({s.dataset for s in todo}):
        rp.check_data(ds)  # the driver's node at least must have the data; remote nodes are checked by the task
    ray = import_ray()
    t0 = time.time()
    echo("ray: " + connect(address, num_cpus=num_cpus, object_store_mb=object_store_mb, echo=echo))
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        monitor = ray.remote(_Monitor).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        task = ray.remote(_trial_task).options(num_cpus=threads, max_retries=max_retries, retry_exceptions=False)
        nodes = _node_table(ray)
        echo("ray: " + ", ".join(f"node {node_label(k, nodes)} {n['cpus']:g} CPU"
                                 for k, n in nodes.items() if n["alive"]) + f"; driver on {node_label(here, nodes)}")
        queue = deque(todo)
        pending: Dict[object, tuple] = {}
        starts: Dict[str, List[str]] = {}
        n_events = 0
        done_count = 0
        t_first = time.time()

        def window() -> int:
            cpus = ray.cluster_resources().get("CPU", 0)
            return max(1, int(cpus // max(threads, 1))) * 2

        def poll_events():
            nonlocal n_events, nodes
            for ev in ray.get(monitor.since.remote(n_events)):
                n_events += 1
                starts.setdefault(ev["key"], []).append(ev["node_id"])
                if ev["node_id"] not in nodes:
                    nodes = _node_table(ray)
                if verbose:
                    attempt = len(starts[ev["key"]])
                    echo(f"  start {ev['key']} on node {node_label(ev['node_id'], nodes)} pid {ev['pid']}"
                         + (f" (attempt {attempt})" if attempt > 1 else ""))

        while queue or pending:
            while queue and len(pending) < window():
                if deadline is not None and time.time() > deadline:
                    res.not_started = len(queue)
                    echo(f"deadline reached: not starting the remaining {len(queue)} trials")
                    queue.clear()
                    break
                spec = queue.popleft()
                if spec.path.exists():
                    res.skipped += 1
                    continue
                claim = rp._claim(spec.path)
                if claim is None:
                    echo(f"{spec.label()}: running in another process, skipped")
                    res.skipped += 1
                    continue
                pending[task.remote(spec.to_task(), threads, command, monitor)] = (spec, claim)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            poll_events()
            for ref in ready:
                spec, claim = pending.pop(ref)
                done_count += 1
                try:
                    rec = ray.get(ref)
                except Exception as exc:  # a trial's own error, or retries exhausted
                    claim.unlink(missing_ok=True)
                    res.failed.append(spec.key)
                    first = str(exc).strip().splitlines()
                    echo(f"[{done_count}/{len(todo)}] {spec.label()}: FAILED: {type(exc).__name__}: "
                         f"{first[-1] if first else ''}")
                    continue
                poll_events()
                nodes = _node_table(ray) if rec["node"]["node_id"] not in nodes else nodes
                node = nodes.get(rec["node"]["node_id"], {})
                rec["node"]["ip"] = node.get("ip")  # the node's address in the cluster
                rec["node"]["resources"] = node.get("resources", [])
                rec["node"]["head"] = bool(node.get("head"))
                attempts = starts.get(spec.key, [rec["node"]["node_id"]])
                rec["ray_attempts"] = [{"node_id": a, "ip": nodes.get(a, {}).get("ip"),
                                        "resources": nodes.get(a, {}).get("resources", [])} for a in attempts]
                rec["provenance"]["ray"] = {"address": address, "version": ray.__version__}
                try:
                    if _write_once(spec.path, rec):
                        res.ran += 1
                        res.per_node[node_label(rec["node"]["node_id"], nodes)] += 1
                    else:
                        res.duplicates += 1
                        echo(f"{spec.label()}: a trial file appeared meanwhile; this result is discarded")
                        continue
                finally:
                    claim.unlink(missing_ok=True)
                if len(attempts) > 1:
                    res.retried[spec.key] = [node_label(a, nodes) for a in attempts]
                remaining = len(queue) + len(pending)
                eta = (time.time() - t_first) / done_count * remaining
                echo(f"[{done_count}/{len(todo)}] node {node_label(rec['node']['node_id'], nodes)}: {spec.label()}: "
                     f"{_fmt_acc(rec, spec.row)}, {rec['seconds']:.0f} s, ETA {rp._fmt_secs(eta)} "
                     f"({remaining} left) [{time.strftime('%H:%M:%S')}]"
                     + (f" (attempt {len(attempts)})" if len(attempts) > 1 else ""))
        res.seconds = time.time() - t0
        echo(summary_line(res))
        return res
    finally:
        for spec, claim in list(pending.values()) if "pending" in locals() else []:
            claim.unlink(missing_ok=True)
        if shutdown:
            ray.shutdown()


def summary_line(res: SweepResult) -> str:
    parts = [f"sweep done in {rp._fmt_secs(res.seconds)}: {res.planned} planned, {res.skipped} already done, "
             f"{res.ran} ran"]
    if res.per_node:
        parts.append(" (" + "; ".join(f"{k}: {v}" for k, v in sorted(res.per_node.items())) + ")")
    parts.append(f", {len(res.failed)} failed")
    if res.not_started:
        parts.append(f", {res.not_started} not started (deadline)")
    if res.duplicates:
        parts.append(f", {res.duplicates} duplicate results discarded")
    if res.retried:
        parts.append("; retried after a lost worker or node: "
                     + "; ".join(f"{k} ({' -> '.join(v)})" for k, v in sorted(res.retried.items())))
    return "".join(parts)
