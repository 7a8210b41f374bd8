"""`python -m train sweep` on a real two-node Ray cluster on loopback, started by the test itself.

The head (`ray start --head`, 1 CPU) and a second node (`ray start --address ...`, 1 CPU and its own
custom resource `node_b`) run as separate raylets with their own temporary directories. A tiny sweep
(3 variants x 2 seeds of real MNIST slices: 300 training samples, 200 test samples, 1 epoch) runs on
both; as soon as the second node starts its second trial, every process of that node is SIGKILLed.
The sweep must still finish: the lost trial is retried on the head, every trial file is written exactly
once and names the node that ran it, and a second run redoes nothing. The cluster is stopped in a
`finally` block (its processes are killed by the temporary directories they were started with).
"""

import importlib.util
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

_missing = [m for m in ("ray", "tensorflow", "larq", "tf_keras") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(bool(_missing), reason=f"needs the train extra (missing: {', '.join(_missing)}): "
                                             "pip install -e '.[train]'"),
]

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
VARIANTS = "B-32;B-32,Q;B-16,PN"
SEEDS = 2
N_TRIALS = 3 * SEEDS
# a dead node is declared dead after ~3 missed 1 s health checks instead of the default ~30 s
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}
# the hang guard of the driver (not a speed limit: on 2 idle cores the whole test takes about a minute)
HANG_GUARD_S = 900


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pids_of(root: str):
    """Pids of the processes started with ``root`` on their command line and all their descendants
    (a raylet's workers are its children), this test process and its ancestors excluded."""
    me = set()
    pid = os.getpid()
    while pid > 1:
        me.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    parent, found = {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in me:
            continue
        p = int(entry)
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            parent[p] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if root.encode() in cmd:
            found.add(p)
    grown = True
    while grown:
        grown = False
        for p, pp in parent.items():
            if p not in found and pp in found:
                found.add(p)
                grown = True
    return found


def _kill_all(root: str) -> int:
    pids = _pids_of(root)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


class Cluster:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's unix socket paths must fit
        self.head_dir, self.b_dir = os.path.join(self.tmp, "h"), os.path.join(self.tmp, "b")
        # token authentication with a token of this test only (nothing is read from or written to ~/.ray)
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                     "RAY_USAGE_STATS_ENABLED": "0"}
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), **self.auth, **FAST_HEALTH)
        self.port = None

    def _start(self, args, temp_dir):
        p = [self.ports.pop() for _ in range(6)]
        cmd = [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--object-store-memory", str(100 * 1024 * 1024), "--temp-dir", temp_dir, "--disable-usage-stats",
               "--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
               "--dashboard-agent-listen-port", str(p[2]), "--dashboard-agent-grpc-port", str(p[3]),
               "--metrics-export-port", str(p[4]), "--runtime-env-agent-port", str(p[5]), *args]
        out = subprocess.run(cmd, env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return p

    def start(self):
        self.ports = _free_ports(15)  # all at once, so that no two of them are the same
        self.port, client, dash = (self.ports.pop() for _ in range(3))
        self._start(["--head", "--port", str(self.port), "--include-dashboard", "false",
                     "--ray-client-server-port", str(client), "--dashboard-port", str(dash)], self.head_dir)
        self._start(["--address", f"127.0.0.1:{self.port}", "--resources", json.dumps({"node_b": 1})], self.b_dir)
        return f"127.0.0.1:{self.port}"

    def kill_b(self) -> int:
        return _kill_all(self.b_dir)

    def stop(self):
        _kill_all(self.b_dir)
        _kill_all(self.head_dir)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _reader(stream, q):
    for line in stream:
        q.put(line.rstrip("\n"))
    q.put(None)


def test_sweep_survives_a_killed_node_and_runs_every_trial_once(tmp_path):
    from edge_rbmlp import datasets

    if datasets.verified_record("mnist") is None:
        pytest.skip("mnist is not in the data cache: run `python -m train data fetch` (make test does it)")
    out = tmp_path / "results"
    cluster = Cluster()
    driver = None
    log = []
    try:
        address = cluster.start()
        args = [sys.executable, "-m", "train", "sweep", "--dataset", "mnist", "--variants", VARIANTS,
                "--seeds", str(SEEDS), "--epochs", "1", "--limit-train", "300", "--limit-test", "200",
                "--threads", "1", "--out", str(out), "--ray", address, "--verbose"]
        driver = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, **cluster.auth),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        q = queue.Queue()
        threading.Thread(target=_reader, args=(driver.stdout, q), daemon=True).start()
        b_starts, killed, in_flight_on_b = 0, None, set()
        finished = set()
        t0 = time.time()
        while True:
            line = q.get(timeout=HANG_GUARD_S - (time.time() - t0))
            if line is None:
                break
            log.append(line)
            m = re.match(r"\s+start (\S+) on node \S+ \(([^)]*)\)", line)
            if m and "node_b" in m.group(2) and killed is None:
                b_starts += 1
                in_flight_on_b.add(m.group(1))
                if b_starts == 2:  # the second node is in the middle of its second trial: kill it
                    n = cluster.kill_b()
                    killed = {"trial": m.group(1), "processes": n, "in_flight": in_flight_on_b - finished}
                    log.append(f"TEST: killed node_b ({n} processes) while it ran {sorted(killed['in_flight'])}")
            m = re.match(r"\[\d+/\d+\] node \S+ \(([^)]*)\): .*", line)
            if m and killed is None:
                key = next((k for k in in_flight_on_b if k not in finished and _key_label(k) in line), None)
                if key and "node_b" in m.group(1):
                    finished.add(key)
        assert driver.wait(timeout=60) == 0, "\n".join(log)
        text = "\n".join(log)
        assert killed is not None, "node_b never started a second trial:\n" + text
        assert killed["processes"] >= 2, killed  # at least its raylet and the worker running the trial

        files = sorted((out / "mnist" / "trials").glob("*.json"))
        recs = {p.name: json.loads(p.read_text()) for p in files}
        assert len(recs) == N_TRIALS, sorted(recs)
        assert not list((out / "mnist" / "trials").glob("*.running")) and not list(out.rglob("*.tmp"))
        # exactly once: one progress line per trial, one file per trial, nothing discarded
        progress = [ln for ln in log if re.match(r"\[\d+/\d+\] node ", ln)]
        assert len(progress) == N_TRIALS, text
        for name, rec in recs.items():
            assert sum(1 for ln in progress if _key_label(name) in ln) == 1, (name, text)
            assert rec["node"]["node_id"] and rec["node"]["ip"] and rec["node"]["pid"] > 0
            assert 0.0 <= rec["accuracy"] <= 1.0 and rec["rbm_agreement_with_keras"] >= 0.99
        summary = log[-1]
        assert summary.startswith("sweep done") and f"{N_TRIALS} ran" in summary and "0 failed" in summary
        assert "duplicate" not in text
        # both nodes ran trials; the trial(s) cut off by the kill ran again, on the head, and say so
        on_b = [n for n, r in recs.items() if r["node"]["resources"] == ["node_b"]]
        on_head = [n for n, r in recs.items() if r["node"]["head"]]
        assert on_b and on_head and len(on_b) + len(on_head) == N_TRIALS
        for name in killed["in_flight"]:
            attempts = recs[name]["ray_attempts"]
            assert len(attempts) >= 2 and attempts[0]["resources"] == ["node_b"], (name, attempts)
            assert recs[name]["node"]["head"], (name, recs[name]["node"])
            assert name in summary.split("retried after a lost worker or node:")[1]
        assert killed["trial"] in killed["in_flight"]

        # a second run finds every trial file and redoes nothing (no Ray connection needed)
        before = {p.name: p.read_bytes() for p in files}
        again = subprocess.run(args, cwd=ROOT, env=dict(os.environ, **cluster.auth),
                               capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"{N_TRIALS} already done, 0 to run" in again.stdout
        assert {p.name: p.read_bytes() for p in sorted((out / "mnist" / "trials").glob("*.json"))} == before

        # `reproduce --ray HOST:PORT` on what is left of the cluster: the paper's rows as Ray tasks, same files
        rep = subprocess.run([sys.executable, "-m", "train", "reproduce", "--dataset", "mnist", "--variants", "B-128",
                              "--seeds", "1", "--epochs", "1", "--limit-train", "300", "--limit-test", "200",
                              "--threads", "1", "--out", str(out), "--no-plots", "--ray", address],
                             cwd=ROOT, env=dict(os.environ, **cluster.auth), capture_output=True, text=True,
                             timeout=HANG_GUARD_S)
        log += ["", "$ python -m train reproduce ... --ray " + address, *rep.stdout.splitlines()]
        assert rep.returncode == 0, rep.stdout + rep.stderr
        rec = json.loads((out / "mnist" / "trials" / "B-128__s0__e1_lt300_ls200.json").read_text())
        assert rec["node"]["head"] and rec["paper_accuracy"] == 0.9024 and rec["ray_attempts"][0]["node_id"]
        assert "1 planned, 0 already done, 1 ran" in rep.stdout
        assert "| `B-128` | 0.9024 |" in (out / "mnist" / "table__e1_lt300_ls200.md").read_text()
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        cluster.stop()
        print("\n".join(log))
    assert not _pids_of(cluster.tmp), "cluster processes left behind"


def _key_label(key: str) -> str:
    """'B-32_Q__s1__e1_lt300_ls200.json' -> 'seed 1 [e1...' matched with its variant: the label the driver
    prints for that trial ('mnist B-32,Q seed 1 [e1_lt300_ls200]')."""
    slug, seed = re.match(r"(.+)__s(\d+)__", key).groups()
    variant = {v.replace(",", "_"): v for v in VARIANTS.split(";")}[slug]
    return f"mnist {variant} seed {seed} ["


def test_device_side_never_imports_ray():
    """Every module of `edge_rbmlp` (the device package: CLI, service, engines) imports without Ray,
    TensorFlow or larq ever being asked for: an import hook records (and refuses) any attempt."""
    code = """
import importlib, pkgutil, sys
tried = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ray', 'tensorflow', 'larq', 'tf_keras'):
            tried.append(name)
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import edge_rbmlp
names = [m.name for m in pkgutil.walk_packages(edge_rbmlp.__path__, 'edge_rbmlp.')]
for n in names:
    try:
        importlib.import_module(n)
    except Exception as e:  # other optional packages may be missing; only the blocked ones count
        pass
print(len(names))
print(sorted(set(tried)))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    n, tried = res.stdout.strip().splitlines()[-2:]
    assert int(n) > 10, res.stdout
    assert tried == "[]", f"the device side asked for {tried}"


def test_reproduce_ray_auto_without_a_cluster_starts_an_embedded_one(tmp_path):
    """`--ray auto` on a machine with no Ray cluster: an embedded local Ray, said so; trial file as without Ray."""
    from edge_rbmlp import datasets

    if datasets.verified_record("mnist") is None:
        pytest.skip("mnist is not in the data cache: run `python -m train data fetch` (make test does it)")
    if _pids_of("/gcs_server"):
        pytest.skip("another Ray cluster runs on this machine: `--ray auto` would (rightly) join it")
    ray_tmp = tempfile.mkdtemp(prefix="rl", dir="/tmp")  # Ray's own files; no cluster is registered there
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "results"
    try:
        rep = subprocess.run([sys.executable, "-m", "train", "reproduce", "--dataset", "mnist", "--variants",
                              "F-128;B-128", "--seeds", "1", "--epochs", "1", "--limit-train", "300",
                              "--limit-test", "200", "--threads", "1", "--ray-cpus", "2", "--out", str(out),
                              "--no-plots", "--ray", "auto"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=HANG_GUARD_S)
        print(rep.stdout)
        assert rep.returncode == 0, rep.stdout + rep.stderr
        assert "ray: no running Ray cluster on this machine: an embedded local Ray (2 CPUs)" in rep.stdout
        progress = [ln for ln in rep.stdout.splitlines() if re.match(r"\[\d+/2\] node ", ln)]
        assert len(progress) == 2 and all("ETA" in ln and "acc " in ln for ln in progress), rep.stdout
        for name in ("F-128__s0__e1_lt300_ls200.json", "B-128__s0__e1_lt300_ls200.json"):
            rec = json.loads((out / "mnist" / "trials" / name).read_text())
            assert rec["node"]["head"] and rec["provenance"]["ray"]["address"] == "auto"
        md = (out / "mnist" / "table__e1_lt300_ls200.md").read_text()
        assert "| `F-128` | 0.9749 |" in md and "| `B-128` | 0.9024 |" in md
    finally:
        assert not _pids_of(ray_tmp), "embedded Ray left processes behind"
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_sweep_plan_covers_the_grid_once_and_skips_finished_trials(tmp_path):
    """The grid (variants x settings x seeds) as trial files: the paper's rows keep their numbers, every
    point has its own file, a finished one is not run again (no Ray is started when nothing is left)."""
    from train import sweep as sw

    rows = [sw.sweep_row("mnist", "B-128"), sw.sweep_row("mnist", "B-32,Q")]
    assert rows[0].paper_accuracy == 0.9024 and rows[1].paper_accuracy is None and rows[1].layers == 1
    grid = sw.settings_grid(epochs=[1], lr=[0.001, 0.002], batch_size=[32, 64], limit_train=300, limit_test=200)
    specs = sw.plan(tmp_path, "mnist", rows, range(2), grid + grid)  # a repeated point is planned once
    names = [s.path.name for s in specs]
    assert len(names) == len(set(names)) == 2 * 4 * 2
    assert names[0] == "B-128__s0__e1_lt300_ls200.json" and "B-32_Q__s1__e1_lt300_ls200_lr0.002_bs64.json" in names
    assert [s.seed for s in specs[:8]] == [0] * 8  # seed-major
    for s in specs:
        s.path.parent.mkdir(parents=True, exist_ok=True)
        s.path.write_text("{}")
    lines = []
    res = sw.run_sweep(specs, address="127.0.0.1:1", echo=lines.append)  # never connects: nothing to run
    assert res.ran == 0 and res.skipped == 16 and lines == [
        "sweep: 16 trials planned, 16 already done, 0 to run (1 CPU(s) per trial, up to 3 retries of a trial "
        "lost with its worker or node)"]
