"""`edge-rbmlp serve --workers N`: worker processes behind one port (edge_rbmlp/server/workers.py),
and model replacement under load (SIGHUP) with nothing dropped, for one worker and for two."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from serverkit import drawn_seven, png_bytes, write_models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from load_test import Service  # noqa: E402

from edge_rbmlp.server import loadgen  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="worker processes share a port with SO_REUSEPORT: Linux only")

SEVEN = png_bytes(drawn_seven())
POLL_S = 60.0


def one_shot(url: str, method: str, path: str, body: bytes = None, headers=None):
    """One request on a fresh connection (SO_REUSEPORT spreads connections, not requests)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probabilities(url: str):
    status, body = one_shot(url, "POST", "/classify/mnist", SEVEN, {"Content-Type": "image/png"})
    assert status == 200, body
    return json.loads(body)["probabilities"]


def workers_seen(url: str, tries: int = 200) -> dict:
    seen = {}
    for _ in range(tries):
        status, body = one_shot(url, "GET", "/api/status")
        assert status == 200
        info = json.loads(body)
        seen[info["worker"]] = info["pid"]
        if len(seen) == 2:
            break
    return seen


def wait_for(condition, what: str):
    deadline = time.monotonic() + POLL_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {POLL_S:.0f} s: {what}")


@pytest.fixture()
def model_paths(tmp_path):
    return write_models(tmp_path / "models")


def test_two_workers_answer_on_one_port(model_paths):
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native") as svc:
        seen = workers_seen(svc.url)
        assert set(seen) == {0, 1}, f"connections reached only worker(s) {sorted(seen)}"
        tree = svc.pids()
        assert svc.proc.pid in tree and set(seen.values()) <= set(tree)
        result = loadgen.run(svc.url, "mnist", "image", requests=200, concurrency=8)
        assert result["errors"] == 0 and result["ok"] == 200
        assert len(result["labels"]) == 1  # one image, one answer, whichever worker computed it
        assert svc.stop() == 0
    # multiprocessing's resource tracker leaves a moment after the supervisor (it sees its pipe close)
    wait_for(lambda: all(_is_zombie_or_gone(pid) for pid in tree),
             f"every process of the service ({tree}) gone: {[p for p in tree if not _is_zombie_or_gone(p)]}")


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_killed_worker_is_replaced_and_no_connection_is_refused(model_paths):
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native") as svc:
        seen = workers_seen(svc.url)
        victim = seen[0]
        os.kill(victim, signal.SIGKILL)
        # connections the kernel hashes to the dead worker's socket wait in its queue (the supervisor
        # keeps the socket) until the replacement takes them: every one of these is answered
        statuses = [one_shot(svc.url, "GET", "/healthz")[0] for _ in range(60)]
        assert statuses == [200] * 60
        wait_for(lambda: victim not in svc.pids() and len(workers_seen(svc.url)) == 2
                 and workers_seen(svc.url).get(0) not in (None, victim), "a new worker 0")
        assert svc.stop() == 0
        assert "worker-0" in svc.stderr() and "died with exit code -9; restarting it" in svc.stderr()


@pytest.mark.parametrize("workers", [1, 2])
def test_model_replaced_under_load_nothing_dropped_corrupt_refused(tmp_path, workers):
    """Atomic rename + SIGHUP while requests run: no request fails, every worker serves the new
    model; a corrupt replacement is refused and the last good model keeps serving."""
    from edge_rbmlp.arch import parse
    from edge_rbmlp.random_model import random_packed_model

    paths = write_models(tmp_path / "models")
    with Service(models=[str(p) for p in paths.values()], workers=workers, threads=2, backend="native") as svc:
        before = probabilities(svc.url)
        load = {}
        runner = threading.Thread(target=lambda: load.update(
            loadgen.run(svc.url, "mnist", "image", requests=3000, concurrency=8)))
        runner.start()
        try:
            for seed in (101, 102, 103):
                tmp = paths["mnist"].with_suffix(".new")
                random_packed_model(parse("B-D128N,D88N,PN"), 784, 10, seed=seed, input_kind="image").save(tmp)
                os.replace(tmp, paths["mnist"])
                svc.proc.send_signal(signal.SIGHUP)
                time.sleep(0.3)
        finally:
            runner.join(timeout=600)
        assert load["errors"] == 0 and load["ok"] == 3000, load["first_error"]

        def all_new():
            answers = [probabilities(svc.url) for _ in range(20)]  # fresh connections reach every worker
            return all(a == answers[0] for a in answers) and answers[0] != before

        wait_for(all_new, "every worker serves the last replacement")
        good = probabilities(svc.url)
        tmp = paths["mnist"].with_suffix(".new")
        tmp.write_bytes(paths["mnist"].read_bytes()[:-100])  # truncated: refused
        os.replace(tmp, paths["mnist"])
        svc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: svc.stderr().count("reload refused") >= workers, "every worker refuses the corrupt file")
        assert [probabilities(svc.url) for _ in range(20)] == [good] * 20
        assert svc.stop() == 0
    assert svc.stderr().count("SIGHUP: reloaded mnist") >= workers


def test_workers_with_camera_or_a_bad_model_is_one_clear_error(model_paths, tmp_path):
    from edge_rbmlp.cli import main

    result = CliRunner().invoke(main, ["serve", str(model_paths["mnist"]), "--workers", "2", "--camera",
                                       "--port", "0"])
    assert result.exit_code == 1 and "use workers = 1 with the camera" in result.output
    bad = tmp_path / "bad.rbm"
    bad.write_bytes(b"not a model")
    result = CliRunner().invoke(main, ["serve", str(bad), "--workers", "2", "--port", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "bad.rbm" in result.output, result.output


def test_listen_sockets_share_a_free_port():
    from edge_rbmlp.server.workers import listen_sockets

    groups = listen_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for group in groups for sock in group}
        assert len(groups) == 3 and len(ports) == 1 and ports != {0}
    finally:
        for group in groups:
            for sock in group:
                sock.close()


def test_config_accepts_workers(tmp_path):
    from edge_rbmlp.server.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("[server]\nworkers = 4\n")
    assert load_config(path, environ={}).workers == 4
    path.write_text("[server]\nworkers = 0\n")
    with pytest.raises(ConfigError, match="workers must be between 1 and 64"):
        load_config(path, environ={})


def test_a_wedged_worker_is_killed_and_replaced(model_paths):
    """A worker that stops answering (SIGSTOP: alive, but deaf) fails its private health probes and
    is replaced; the other worker answers meanwhile."""
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native") as svc:
        victim = workers_seen(svc.url)[1]
        os.kill(victim, signal.SIGSTOP)
        try:
            wait_for(lambda: victim not in svc.pids(), "the stopped worker is killed")
            wait_for(lambda: workers_seen(svc.url).get(1) not in (None, victim), "a new worker 1 answers")
        finally:
            if victim in svc.pids():
                os.kill(victim, signal.SIGKILL)
        assert "is wedged (" in svc.stderr()
        assert svc.stop() == 0


def test_supervisor_speaks_the_notify_protocol(model_paths, tmp_path):
    import socket
    import tempfile

    d = tempfile.mkdtemp(prefix="sd-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(d, "notify"))
    sock.settimeout(60)
    env = {"NOTIFY_SOCKET": os.path.join(d, "notify"), "WATCHDOG_USEC": "400000"}
    try:
        svc = Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native")
        svc.env.update(env)
        with svc:
            messages = []
            while not any("WATCHDOG=1" in m for m in messages):
                messages.append(sock.recv(4096).decode())
            ready = [m for m in messages if "READY=1" in m]
            assert ready and "with 2 workers" in ready[0] and f"MAINPID={svc.proc.pid}" in ready[0]
            assert svc.stop() == 0
            while "STOPPING=1" not in messages[-1]:
                messages.append(sock.recv(4096).decode())
            # only the supervisor talks to systemd (NotifyAccess=main): one READY, from its pid
            assert sum("READY=1" in m for m in messages) == 1
    finally:
        sock.close()
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_reload_models_reloads_exactly_the_files_whose_bytes_changed(tmp_path):
    from edge_rbmlp.arch import parse
    from edge_rbmlp.model_file import ModelFormatError
    from edge_rbmlp.random_model import random_packed_model
    from edge_rbmlp.server import ServerConfig, create_app
    from edge_rbmlp.server.state import app_state, reload_models

    paths = write_models(tmp_path / "models")
    app = create_app(ServerConfig(models=[str(p) for p in paths.values()], backend="reference"))
    state = app_state(app)
    assert reload_models(state) == []
    os.utime(paths["mnist"], (1, 1))  # touched, same bytes: nothing to do
    assert reload_models(state) == []
    old_engine = state.models["mnist"].engine
    random_packed_model(parse("B-D128N,D88N,PN"), 784, 10, seed=5, input_kind="image").save(paths["mnist"])
    assert reload_models(state) == ["mnist"] and state.models["mnist"].engine is not old_engine
    assert reload_models(state) == []
    kept = dict(state.models)
    paths["imdb"].write_bytes(paths["imdb"].read_bytes()[:50])
    with pytest.raises(ModelFormatError):
        reload_models(state)
    assert state.models == kept  # all or nothing


def test_metrics_add_up_every_worker(model_paths):
    """/metrics under two workers counts every request, whichever worker answers the scrape."""
    import re
    import tempfile

    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native") as svc:
        assert set(workers_seen(svc.url)) == {0, 1}
        n = 60
        for _ in range(n):  # fresh connections: both workers take a share
            status, _ = one_shot(svc.url, "POST", "/classify/mnist", SEVEN, {"Content-Type": "image/png"})
            assert status == 200
        pattern = re.compile(r'^edge_rbmlp_requests_total\{[^}]*model="mnist"[^}]*\} (\S+)$', re.M)
        hist = re.compile(r'^edge_rbmlp_inference_seconds_count\{[^}]*model="mnist"[^}]*\} (\S+)$', re.M)
        answered_by = set()
        for _ in range(20):
            status, body = one_shot(svc.url, "GET", "/metrics")
            text = body.decode()
            assert status == 200
            assert sum(float(v) for v in pattern.findall(text)) == n, text[:2000]
            assert sum(float(v) for v in hist.findall(text)) == n
            status, body = one_shot(svc.url, "GET", "/api/status")
            answered_by.add(json.loads(body)["worker"])
        assert "edge_rbmlp_process_resident_memory_bytes" in text
        mine = list(Path(tempfile.gettempdir()).glob(f"edge-rbmlp-metrics-{svc.proc.pid}-*"))
        assert len(mine) == 1
        assert svc.stop() == 0
    assert not mine[0].exists()  # the supervisor removed its directory


def test_slow_clients_do_not_lock_others_out(model_paths, tmp_path):
    """150 connections that send half a request and stall (slow-loris) used to take all 100 of
    waitress's default connections until the idle timeout; now a normal client still gets in,
    and a silent connection is closed after idle_timeout_s."""
    import socket

    config = tmp_path / "config.toml"
    config.write_text("[limits]\nidle_timeout_s = 120\n")
    with Service(models=[str(model_paths["mnist"])], workers=1, threads=2, backend="native",
                 extra_args=["--config", str(config)]) as svc:
        host, port = svc.url.split("//")[1].split(":")
        stalled = []
        try:
            for _ in range(150):
                s = socket.create_connection((host, int(port)), timeout=30)
                s.sendall(b"POST /classify/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                stalled.append(s)
            conn = http.client.HTTPConnection(host, int(port), timeout=20)  # far below the 120 s idle timeout
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
        finally:
            for s in stalled:
                s.close()
        assert "reached the connection limit" not in svc.stderr()
    config.write_text("[limits]\nidle_timeout_s = 1\n")
    with Service(models=[str(model_paths["mnist"])], workers=1, threads=2, backend="native",
                 extra_args=["--config", str(config)]) as svc:
        host, port = svc.url.split("//")[1].split(":")
        s = socket.create_connection((host, int(port)), timeout=60)
        try:
            assert s.recv(1) == b""  # closed by the server
        finally:
            s.close()


def test_connection_limits_in_the_config(tmp_path):
    from edge_rbmlp.server.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_connections = 5000\nidle_timeout_s = 30\n")
    limits = load_config(path, environ={}).limits
    assert (limits.max_connections, limits.idle_timeout_s) == (5000, 30)
    path.write_text("[limits]\nidle_timeout_s = 0\n")
    with pytest.raises(ConfigError, match="idle_timeout_s must be between 1 and 3600"):
        load_config(path, environ={})


def test_supervisor_says_what_it_serves(model_paths):
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=1, backend="native") as svc:
        line = svc.banner
    assert "serving imdb, mnist (native/" in line and "with 2 workers on http://127.0.0.1:" in line, line


def test_killing_workers_under_load_loses_at_most_the_connections_they_held(model_paths):
    """Chaos: SIGKILL a worker twice while 8 keep-alive clients send 3,000 requests. A killed worker
    takes its connections with it (each client sees at most one reset per kill, then reconnects);
    everything else is answered, and the service is whole afterwards."""
    concurrency, kills = 8, 2
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native") as svc:
        load = {}
        runner = threading.Thread(target=lambda: load.update(
            loadgen.run(svc.url, "mnist", "image", requests=3000, concurrency=concurrency)))
        runner.start()
        victims = []
        try:
            for k in range(kills):
                time.sleep(0.5)
                victim = workers_seen(svc.url)[k % 2]
                victims.append(victim)
                os.kill(victim, signal.SIGKILL)
                wait_for(lambda: len(workers_seen(svc.url)) == 2 and victim not in svc.pids(), "a replacement")
        finally:
            runner.join(timeout=600)
        assert load["ok"] + load["errors"] == 3000
        assert load["errors"] <= kills * concurrency, load["first_error"]
        assert len(load["labels"]) == 1  # every answer the same (one image)
        assert svc.stderr().count("died with exit code -9; restarting it") == kills
        assert set(workers_seen(svc.url)) == {0, 1} and not set(victims) & set(svc.pids())
        print(f"\nchaos: {kills} workers killed under load at concurrency {concurrency}: "
              f"{load['ok']} answered, {load['errors']} lost")
        assert svc.stop() == 0


def test_the_supervisor_stays_small():
    """The CLI and the supervisor import neither numpy nor Flask (about 18 MiB RSS instead of 50;
    the workers load them): a fresh interpreter imports what `serve --workers N` runs."""
    import subprocess

    code = ("import sys, edge_rbmlp, edge_rbmlp.cli, edge_rbmlp.server.workers, edge_rbmlp.server.serve; "
            "heavy = [m for m in ('numpy', 'flask', 'PIL', 'safetensors', 'waitress') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"the supervisor's imports pull in {r.stdout.strip()} {r.stderr}"
    import edge_rbmlp

    assert edge_rbmlp.PackedModel.__name__ == "PackedModel" and callable(edge_rbmlp.load_packed_model)
    with pytest.raises(AttributeError):
        edge_rbmlp.no_such_name


def test_workers_die_with_a_killed_supervisor(model_paths):
    """SIGKILL the supervisor (no chance to stop anything): its workers go too, and the port is free."""
    import socket

    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=1, backend="native") as svc:
        workers = [pid for pid in svc.pids() if pid != svc.proc.pid]
        port = int(svc.url.rsplit(":", 1)[1])
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(timeout=30)
        wait_for(lambda: all(_is_zombie_or_gone(pid) for pid in workers), "the orphaned workers exit")

        def port_free():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return False
            except OSError:
                return True

        wait_for(port_free, "nobody listens on the port any more")
        # its metrics directory is left behind; the next supervisor removes it
        import tempfile

        stale = list(Path(tempfile.gettempdir()).glob(f"edge-rbmlp-metrics-{svc.proc.pid}-*"))
        assert len(stale) == 1
    with Service(models=[str(model_paths["mnist"])], workers=2, threads=1, backend="native") as again:
        assert workers_seen(again.url)
        assert not stale[0].exists()


def test_a_worker_past_its_memory_bound_is_recycled_gracefully(model_paths, tmp_path):
    """A worker whose resident memory is above limits.max_worker_rss_bytes after a request asks to
    be recycled: the supervisor starts its replacement on the same sockets, then stops it with
    SIGTERM (it finishes what it holds). Every request of a client meanwhile is answered; no
    worker is killed. (1 MiB: every worker is above it, so recycling goes on all along.)

    One race is hyper's, and granian's graceful stop inherits it: a connection the stopping worker
    accepted in its last instant, whose request it has not read yet, is closed (hyper closes
    connections that have received no byte: hyperium/hyper#2730, #3233). The client sees the
    connection closed before any byte of an answer: the request was not read, and sending it again
    loses nothing. Such requests are sent again once here, counted, and must stay rare (at most
    5 %, and 2 in a short run: about 1 in 8 runs of this test saw one under load, with a recycle after
    every request)."""
    config = tmp_path / "config.toml"
    config.write_text("[limits]\nmax_worker_rss_bytes = 1048576\n")
    with Service(models=[str(p) for p in model_paths.values()], workers=2, threads=2, backend="native",
                 extra_args=["--config", str(config)]) as svc:
        first = set(workers_seen(svc.url).values())
        statuses, closed_unread = [], 0
        deadline = time.monotonic() + POLL_S
        while time.monotonic() < deadline:
            try:
                status = one_shot(svc.url, "POST", "/classify/mnist", SEVEN, {"Content-Type": "image/png"})[0]
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                closed_unread += 1  # closed before any byte of an answer: sent again, on a new connection
                status = one_shot(svc.url, "POST", "/classify/mnist", SEVEN, {"Content-Type": "image/png"})[0]
            statuses.append(status)
            if svc.stderr().count("grew past its memory bound") >= 2 and not first & set(svc.pids()):
                break
        log = svc.stderr()
        assert set(statuses) == {200}, statuses
        assert closed_unread <= max(2, len(statuses) // 20), (closed_unread, len(statuses))
        assert log.count("grew past its memory bound") >= 2, log[-2000:]
        assert not first & set(svc.pids()), "the first workers are still running"
        assert "died with exit code" not in log and "is wedged" not in log, log[-2000:]
        assert svc.stop() == 0
