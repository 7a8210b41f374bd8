"""The README's first ten minutes: its "what you get" table states the bundled models' real accuracy,
architecture and size, and its quick start works when pasted into a fresh clone (`make run` in one
process, the terminal-2 commands against it), exactly as written but for the port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from edge_rbmlp.model_file import load_packed_model
from edge_rbmlp.models import model_summary, resolve_model_path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _sh_blocks(text: str):
    return [b.strip("\n") for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_what_you_get_table_matches_the_bundled_models():
    rows = [line for line in _section("What you get").splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`mnist`", "`imdb`"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = cells[0].strip("`")
        path = resolve_model_path(name)
        summary = model_summary(load_packed_model(path), path)
        assert cells[2].split("`")[1] == summary["arch"], (name, cells[2], summary["arch"])
        assert float(cells[3].split()[0]) == pytest.approx(summary["accuracy"]["accuracy"], abs=5e-5), name
        assert int(cells[3].split("(")[1].split()[0].replace(",", "")) == summary["accuracy"]["n"]
        assert int(cells[4].split()[0].replace(",", "")) == summary["file_bytes"] == path.stat().st_size


def test_quick_start_names_only_files_that_exist():
    for block in _sh_blocks(_section("Quick start")):
        for ref in re.findall(r"edge_rbmlp/samples/[\w./-]*", block):
            assert (ROOT / ref).exists(), ref


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quick_start_in_a_fresh_clone(tmp_path):
    """git clone, `make run` (venv, install, native build, serve) and every terminal-2 command of the
    README against it. Bounded: 20 min for the set-up, 5 min per command."""
    for tool in ("git", "make", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing")
    blocks = _sh_blocks(_section("Quick start"))
    assert blocks[0] == "make run", blocks[0]
    commands = [line for line in blocks[1].splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) >= 4
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "EDGE_RBMLP_"))}
    log = open(tmp_path / "make-run.log", "w")
    server = subprocess.Popen(["make", "run", f"RUN_ARGS=--port {port}"], cwd=clone, stdout=log,
                              stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 1200
        while True:
            if server.poll() is not None:
                pytest.fail(f"make run exited {server.returncode}:\n{(tmp_path / 'make-run.log').read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make run did not serve within 20 min:\n{(tmp_path / 'make-run.log').read_text()[-4000:]}")
            time.sleep(2)
        assert f"on http://127.0.0.1:{port}/" in (tmp_path / "make-run.log").read_text()
        outputs = []
        for cmd in commands:
            proc = subprocess.run(["bash", "-c", cmd.replace("8080", str(port))], cwd=clone, capture_output=True,
                                  text=True, timeout=300, env=env)
            assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            outputs.append(proc.stdout)
        by_cmd = dict(zip(commands, outputs))
        demo = next(o for c, o in by_cmd.items() if c.endswith("edge-rbmlp demo"))
        assert "mnist_test_0_label_7.png: 7" in demo and "imdb_test_5_label_negative.txt: negative" in demo
        answers = [json.loads(o) for c, o in by_cmd.items() if c.startswith("curl")]
        assert [(a["model"], a["label"]) for a in answers] == [("mnist", "7"), ("imdb", "negative")]
        classify = next(o for c, o in by_cmd.items() if "classify mnist" in c)
        assert "mnist_test_1_label_2.png: 2" in classify
        assert next(o for c, o in by_cmd.items() if "python -c" in c).strip() == "7"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()
