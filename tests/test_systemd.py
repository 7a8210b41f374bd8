"""systemd: the unit passes `systemd-analyze verify`, the notify/watchdog protocol works
against a fake $NOTIFY_SOCKET (in-process and with the real `edge-rbmlp serve`), and
device/install.sh is idempotent and has a faithful --dry-run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serverkit import write_models

from edge_rbmlp.server.notify import Watchdog, notify_address, sd_notify, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "edge-rbmlp.service"
CAMERA_DROPIN = ROOT / "systemd" / "edge-rbmlp.service.d" / "camera.conf"
INSTALL = ROOT / "device" / "install.sh"


# -- the unit --------------------------------------------------------------------------------------------------
def _verify_root(tmp_path: Path, with_camera: bool) -> Path:
    """A root for `systemd-analyze verify --root`: the system's own units (sysinit.target, ...),
    our unit where the installer puts it, and a stand-in for the venv's edge-rbmlp executable."""
    root = tmp_path / ("root-camera" if with_camera else "root")
    units = root / "usr" / "lib" / "systemd"
    units.mkdir(parents=True)
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if candidate.is_dir():
            shutil.copytree(candidate, units / "system", symlinks=True, dirs_exist_ok=True)
            break
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    shutil.copy(UNIT, unit_dir / UNIT.name)
    if with_camera:
        (unit_dir / "edge-rbmlp.service.d").mkdir()
        shutil.copy(CAMERA_DROPIN, unit_dir / "edge-rbmlp.service.d" / CAMERA_DROPIN.name)
    for exe in ("opt/edge-rbmlp/venv/bin/edge-rbmlp", "bin/kill"):
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("with_camera", [False, True], ids=["base", "camera-dropin"])
def test_unit_passes_systemd_analyze_verify(tmp_path, with_camera):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing: `make test` installs Debian's systemd package (make systemd-tools)")
    root = _verify_root(tmp_path, with_camera)
    proc = subprocess.run([analyze, "verify", f"--root={root}", "edge-rbmlp.service"], capture_output=True,
                          text=True, timeout=120)
    print(f"\nsystemd-analyze verify ({'with' if with_camera else 'without'} the camera drop-in): "
          f"exit {proc.returncode}, output {proc.stdout + proc.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    # verify only warns (exit 0) on unknown keys or bad values: any output at all is a failure
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a typo and a bad value in the unit are reported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing")
    root = _verify_root(tmp_path, False)
    unit = root / "etc" / "systemd" / "system" / UNIT.name
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes\nWatchdogSecs=5"))
    proc = subprocess.run([analyze, "verify", f"--root={root}", "edge-rbmlp.service"], capture_output=True,
                          text=True, timeout=120)
    assert "WatchdogSecs" in proc.stderr and "sometimes" in proc.stderr


def test_unit_hardening_settings():
    text = UNIT.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["Restart"] == "on-failure"
    assert settings["DynamicUser"] == "yes" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["PrivateTmp"] == "yes"
    assert settings["MemoryMax"].endswith("M") and settings["PrivateDevices"] == "yes"
    assert "SupplementaryGroups" not in settings and "DeviceAllow" not in settings  # camera: drop-in only
    assert "SupplementaryGroups=video" in CAMERA_DROPIN.read_text()
    assert "DeviceAllow=char-video4linux rw" in CAMERA_DROPIN.read_text()
    assert "--config /etc/edge-rbmlp/config.toml" in settings["ExecStart"]


def test_the_shipped_config_loads():
    from edge_rbmlp.server.config import load_config

    config = load_config(ROOT / "device" / "config.toml", environ={})
    assert config.host == "127.0.0.1" and config.port == 8080 and config.models == ["mnist", "imdb"]
    assert config.camera.enabled is False and config.token is None


# -- the notify protocol -------------------------------------------------------------------------------------------
class FakeSystemd:
    """A unix datagram socket playing systemd's side of $NOTIFY_SOCKET."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.path = path
        self.messages = []

    def receive(self, until: str, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(msg)
            if until in msg:
                return msg
        raise AssertionError(f"no {until!r} from the service within {timeout_s} s; got {self.messages}")

    def close(self):
        self.sock.close()


@pytest.fixture
def fake_systemd(tmp_path):
    # a short path: unix socket paths are limited to ~100 bytes
    import tempfile

    d = tempfile.mkdtemp(prefix="sd-")
    fake = FakeSystemd(os.path.join(d, "notify"))
    yield fake
    fake.close()
    shutil.rmtree(d, ignore_errors=True)


def test_sd_notify_sends_datagrams(fake_systemd):
    assert sd_notify("READY=1\nSTATUS=hi", {"NOTIFY_SOCKET": fake_systemd.path})
    assert fake_systemd.receive("READY=1") == "READY=1\nSTATUS=hi"
    assert not sd_notify("READY=1", {})  # not under systemd: nothing to do
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/socket"})  # logged, never raised
    assert notify_address({"NOTIFY_SOCKET": "@abstract"}) == "\0abstract"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:3"}) is None


def test_abstract_namespace_socket():
    name = f"edge-rbmlp-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_watchdog_interval_from_the_environment():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # for another process
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


def test_watchdog_pings_only_while_healthy(fake_systemd):
    healthy = {"ok": True}
    dog = Watchdog(0.02, lambda: healthy["ok"], {"NOTIFY_SOCKET": fake_systemd.path}).start()
    try:
        fake_systemd.receive("WATCHDOG=1")
        fake_systemd.receive("WATCHDOG=1")
        healthy["ok"] = False
        deadline = time.monotonic() + 30
        while dog.misses < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dog.misses >= 3
        # drain what was sent before the switch, then nothing more may come
        pings = dog.pings
        time.sleep(0.1)
        assert dog.pings == pings
    finally:
        dog.stop()
        dog.thread.join(timeout=5)


def test_failing_health_check_is_a_miss_not_a_crash(fake_systemd):
    def boom():
        raise RuntimeError("wedged")

    dog = Watchdog(0.01, boom, {"NOTIFY_SOCKET": fake_systemd.path}).start()
    deadline = time.monotonic() + 30
    while dog.misses < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    dog.stop()
    dog.thread.join(timeout=5)
    assert dog.misses >= 2 and dog.pings == 0


def test_serve_speaks_the_protocol(tmp_path, fake_systemd):
    """The real `edge-rbmlp serve`: READY=1 once it listens, WATCHDOG=1 while /healthz answers,
    STOPPING=1 and exit status 0 on SIGTERM."""
    paths = write_models(tmp_path / "models")
    env = dict(os.environ, NOTIFY_SOCKET=fake_systemd.path, WATCHDOG_USEC="200000", PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_PID", None)
    env.pop("EDGE_RBMLP_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge_rbmlp.cli", "serve", str(paths["mnist"]),
                             str(paths["imdb"]), "--port", "0", "--backend", "reference"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        ready = fake_systemd.receive("READY=1", timeout_s=60)
        assert "STATUS=serving imdb, mnist" in ready
        line = proc.stdout.readline()
        assert "open it in a browser" in line, line
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))
        for _ in range(3):
            fake_systemd.receive("WATCHDOG=1")
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        fake_systemd.receive("STOPPING=1")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# -- device/install.sh ------------------------------------------------------------------------------------------
def test_install_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    prefix, conf = tmp_path / "opt", tmp_path / "etc"
    proc = subprocess.run(["bash", str(INSTALL), "--dry-run", "--camera", "--prefix", str(prefix),
                           "--config-dir", str(conf), "--unit-dir", str(tmp_path / "units"),
                           "--models-dir", str(tmp_path / "models")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in ("python3 -m venv --system-site-packages", "pip install",
                     f"{conf}/config.toml", "edge-rbmlp.service", "camera.conf", "systemctl enable",
                     "systemctl daemon-reload"):
        assert expected in out, expected
    assert not prefix.exists() and not conf.exists() and not (tmp_path / "units").exists()
    assert not (tmp_path / "models").exists()


def test_install_is_idempotent(tmp_path):
    """A real run (as root) with apt, dpkg, python3 and systemctl replaced by logging stand-ins,
    twice: the second run installs no packages, keeps the venv and the edited config."""
    if os.geteuid() != 0:
        pytest.skip("install.sh refuses to run for real without root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    installed = tmp_path / "installed"
    stubs = {
        "apt-get": f'echo "apt-get $*" >> {log}; [ "$1" = install ] && touch {installed}; exit 0',
        "dpkg-query": f'[ -f {installed} ] && echo "install ok installed"; exit 0',
        "systemctl": f'echo "systemctl $*" >> {log}',
        "python3": f'echo "python3 $*" >> {log}; mkdir -p "$4/bin"; printf "#!/bin/sh\\necho pip \\"\\$*\\" >> {log}\\n"'
                   f' > "$4/bin/pip"; cp "$4/bin/pip" "$4/bin/python"; chmod +x "$4/bin/pip" "$4/bin/python"',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", EDGE_RBMLP_SD_BOOTED=str(bin_dir))  # "booted with systemd"
    args = ["bash", str(INSTALL), "--prefix", str(tmp_path / "opt"), "--config-dir", str(tmp_path / "etc"),
            "--unit-dir", str(tmp_path / "units"), "--models-dir", str(tmp_path / "models")]
    (tmp_path / "units").mkdir()
    first = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    calls_first = log.read_text()
    assert "apt-get install" in calls_first and "python3 -m venv --system-site-packages" in calls_first
    assert "systemctl enable edge-rbmlp.service" in calls_first
    config = tmp_path / "etc" / "config.toml"
    assert config.read_text() == (ROOT / "device" / "config.toml").read_text()
    assert oct((tmp_path / "etc" / "env").stat().st_mode & 0o777) == "0o600"
    unit = (tmp_path / "units" / "edge-rbmlp.service").read_text()
    assert f"{tmp_path}/opt/venv/bin/edge-rbmlp serve" in unit
    config.write_text(config.read_text().replace("port = 8080", "port = 9090"))
    log.write_text("")
    second = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    calls_second = log.read_text()
    assert "apt-get" not in calls_second and "python3 -m venv" not in calls_second
    assert "port = 9090" in config.read_text()  # the edited config is kept
    assert "kept as it is" in second.stdout
    assert not (tmp_path / "units" / "edge-rbmlp.service.d" / "camera.conf").exists()


def test_install_with_camera_enables_it_with_one_worker(tmp_path):
    """--camera turns the camera on and sets one worker (the camera loop lives in one process); the
    resulting config loads."""
    from edge_rbmlp.server.config import load_config

    if os.geteuid() != 0:
        pytest.skip("install.sh refuses to run for real without root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"apt-get": "exit 0", "dpkg-query": 'echo "install ok installed"', "systemctl": "exit 0",
             "python3": 'mkdir -p "$4/bin"; printf "#!/bin/sh\n" > "$4/bin/pip"; chmod +x "$4/bin/pip"'}
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "units").mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", EDGE_RBMLP_SD_BOOTED=str(bin_dir))  # "booted with systemd"
    run = subprocess.run(["bash", str(INSTALL), "--camera", "--prefix", str(tmp_path / "opt"), "--config-dir",
                          str(tmp_path / "etc"), "--unit-dir", str(tmp_path / "units"), "--models-dir",
                          str(tmp_path / "models")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    shipped = load_config(ROOT / "device" / "config.toml", environ={})
    config = load_config(tmp_path / "etc" / "config.toml", environ={})
    assert shipped.workers > 1 and not shipped.camera.enabled
    assert config.camera.enabled and config.workers == 1
    assert (tmp_path / "units" / "edge-rbmlp.service.d" / "camera.conf").exists()


def test_unit_exposure_score(tmp_path):
    """systemd's own sandboxing score of the unit (0 = locked down, 10 = fully exposed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing")
    root = _verify_root(tmp_path, False)
    proc = subprocess.run([analyze, "security", "--offline=true", f"--root={root}", "--no-pager",
                           "edge-rbmlp.service"], capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for edge-rbmlp.service: ([0-9.]+)", proc.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score units offline: {proc.stderr.strip()[:200]}")
    score = float(match.group(1))
    print(f"\nsystemd-analyze security: exposure {score}")
    assert score <= 2.0
