"""device/install.sh on each OS family it supports: Raspberry Pi OS bookworm 64-bit and 32-bit and plain
Debian/Ubuntu arm64 (--dry-run with their os-release files and dpkg architectures), prebuilt wheel
selection, and the Debian path for real in a throw-away root (overlay file systems over /etc, /opt
and /var/lib in a private mount namespace: a real venv, a real pip install that builds the native
engine, the real config, unit and models directory; nothing reaches the host's /etc, /opt or /var)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "device" / "install.sh"

OS_RELEASES = {
    # Raspberry Pi OS 64-bit says ID=debian; /etc/rpi-issue tells it apart
    "rpios-64": ("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n", "arm64", True),
    "rpios-32": ("PRETTY_NAME=\"Raspbian GNU/Linux 12 (bookworm)\"\nID=raspbian\nID_LIKE=debian\n"
                 "VERSION_CODENAME=bookworm\n", "armhf", True),
    "debian-arm64": ("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n", "arm64", False),
    "ubuntu-arm64": ("PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n", "arm64", False),
}


def dry_run(tmp_path: Path, system: str, *args: str, script: Path = INSTALL) -> subprocess.CompletedProcess:
    text, arch, rpi = OS_RELEASES[system]
    os_release = tmp_path / f"os-release-{system}"
    os_release.write_text(text)
    env = dict(os.environ, EDGE_RBMLP_OS_RELEASE=str(os_release), EDGE_RBMLP_DPKG_ARCH=arch,
               EDGE_RBMLP_RPI_ISSUE=str(tmp_path / "rpi-issue" if rpi else tmp_path / "no-rpi-issue"))
    if rpi:
        (tmp_path / "rpi-issue").write_text("Raspberry Pi reference 2024-11-19\n")
    return subprocess.run(["bash", str(script), "--dry-run", "--prefix", str(tmp_path / "opt"), "--config-dir",
                           str(tmp_path / "etc"), "--unit-dir", str(tmp_path / "units"), "--models-dir",
                           str(tmp_path / "models"), *args], capture_output=True, text=True, timeout=60, env=env)


def apt_install_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("+ ") and "apt-get install" in line]
    return lines[0] if lines else ""


@pytest.mark.parametrize("system", ["rpios-64", "rpios-32"])
def test_raspberry_pi_os_gets_picamera2_only_with_camera(tmp_path, system):
    plain = dry_run(tmp_path, system)
    assert plain.returncode == 0, plain.stderr
    assert "system: Raspberry Pi OS" in plain.stdout
    assert "picamera2" not in plain.stdout  # a headless install pulls no libcamera
    camera = dry_run(tmp_path, system, "--camera")
    assert camera.returncode == 0, camera.stderr
    assert "python3-picamera2" in camera.stdout.split("1/7 apt packages (", 1)[1].split(")", 1)[0]
    assert "camera.conf" in camera.stdout and "v4l2:/dev/video0" not in camera.stdout
    assert not (tmp_path / "opt").exists() and not (tmp_path / "etc").exists()


@pytest.mark.parametrize("system", ["debian-arm64", "ubuntu-arm64"])
def test_plain_debian_and_ubuntu_never_ask_for_picamera2(tmp_path, system):
    for args in ((), ("--camera",)):
        proc = dry_run(tmp_path, system, *args)
        assert proc.returncode == 0, proc.stderr
        assert "system: Debian" in proc.stdout and "(arm64" not in proc.stdout.split("system:")[0]
        packages = proc.stdout.split("1/7 apt packages (", 1)[1].split(")", 1)[0].split()
        assert "python3-picamera2" not in packages
        assert "python3-picamera2" not in apt_install_line(proc.stdout)
        if args:  # the camera is a USB webcam there
            assert "python3-av" in packages and 'source = "v4l2:/dev/video0"' in proc.stdout
    assert not (tmp_path / "opt").exists()


def test_unknown_system_is_refused(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text("ID=fedora\nVERSION_CODENAME=\n")
    proc = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, EDGE_RBMLP_OS_RELEASE=str(os_release),
                                   EDGE_RBMLP_RPI_ISSUE=str(tmp_path / "none")))
    assert proc.returncode == 1 and "fedora" in proc.stderr and "Raspberry Pi OS, Debian and Ubuntu" in proc.stderr


def test_dry_run_says_how_to_reach_the_service_and_where_models_go(tmp_path):
    proc = dry_run(tmp_path, "rpios-64")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "EDGE_RBMLP_TOKEN=" in out and 'host = "0.0.0.0"' in out and ":8080/#token=" in out
    assert "Authorization: Bearer" in out and "/classify/mnist" in out
    assert f"install -d -m 0755 {tmp_path / 'models'}" in out
    assert f"{tmp_path / 'models'}/NAME.rbm" in out and "systemctl reload edge-rbmlp" in out


def _this_python_wheel_name() -> str:
    import sysconfig

    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"edge_rbmlp-0.1.0-{tag}-{tag}-{plat}.whl"


def _host_python3_is_this_python() -> bool:
    out = subprocess.run(["python3", "-c", "import sys, sysconfig; print(sys.version_info[:2], sysconfig.get_platform())"],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    import sysconfig

    return out == f"{tuple(sys.version_info[:2])} {sysconfig.get_platform()}"


def test_a_wheel_beside_the_script_is_used_and_no_compiler_installed(tmp_path):
    if not _host_python3_is_this_python():
        pytest.skip("python3 on PATH is another Python than the one running the tests: the fake wheel name would not fit")
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(INSTALL, kit / "install.sh")
    (kit / _this_python_wheel_name()).write_bytes(b"")  # a dry run never opens it
    (kit / "edge_rbmlp-0.1.0-cp311-cp311-manylinux_2_17_s390x.whl").write_bytes(b"")  # fits no machine here
    proc = dry_run(tmp_path, "debian-arm64", "--source", str(ROOT), script=kit / "install.sh")
    assert proc.returncode == 0, proc.stderr
    assert f"prebuilt wheel: {kit / _this_python_wheel_name()}" in proc.stdout
    assert "build-essential" not in proc.stdout and "python3-dev" not in proc.stdout
    assert f"--find-links {kit} {kit / _this_python_wheel_name()}" in proc.stdout


def test_without_a_wheel_it_builds_from_source(tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(INSTALL, kit / "install.sh")
    src = tmp_path / "src"
    src.mkdir()  # a checkout without dist/
    proc = dry_run(tmp_path, "rpios-32", "--source", str(src), script=kit / "install.sh")
    assert proc.returncode == 0, proc.stderr
    assert "no prebuilt wheel for this machine" in proc.stdout
    assert "build-essential" in proc.stdout.split("1/7 apt packages (", 1)[1].split(")", 1)[0]
    assert f"pip install --disable-pip-version-check --upgrade {src}" in proc.stdout


def test_a_wheel_for_another_machine_is_refused(tmp_path):
    wheel = tmp_path / "edge_rbmlp-0.1.0-cp311-cp311-manylinux_2_17_s390x.whl"
    wheel.write_bytes(b"")
    proc = dry_run(tmp_path, "debian-arm64", "--wheel", str(wheel))
    assert proc.returncode == 1 and "does not fit this machine" in proc.stderr


# -- the Debian path for real ---------------------------------------------------------------------------------
THROWAWAY = textwrap.dedent(r"""
    set -euo pipefail
    T=$1; SRC=$2
    cd /  # never the checkout: python would import its edge_rbmlp instead of the venv's
    # a throw-away root: /etc, /opt and /var/lib seen through overlays whose upper layers are in $T,
    # /run/systemd hidden (no systemctl reaches the host's systemd); gone when this namespace exits
    for d in etc opt var/lib; do
        u=$T/up/$d; w=$T/wk/$d; mkdir -p "$u" "$w"
        mount -t overlay overlay -o "lowerdir=/$d,upperdir=$u,workdir=$w" "/$d"
    done
    [ -d /run/systemd ] && mount -t tmpfs tmpfs /run/systemd
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash "$SRC/device/install.sh" --source "$SRC" > "$T/install.out" 2>&1
    echo "install exit $?"
    /opt/edge-rbmlp/venv/bin/edge-rbmlp classify mnist "$SRC/edge_rbmlp/samples/mnist_test_0_label_7.png" > "$T/classify.out" 2>&1
    /opt/edge-rbmlp/venv/bin/python -c 'import edge_rbmlp._native as n, sys; print(n.__file__)' > "$T/native.out"
    stat -c '%a %n' /etc/edge-rbmlp/env /etc/edge-rbmlp/config.toml /var/lib/edge-rbmlp/models /etc/systemd/system/edge-rbmlp.service > "$T/modes.out"
    cp /etc/edge-rbmlp/config.toml "$T/config.toml"
""")


def test_debian_install_for_real_in_a_throwaway_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: mount namespaces and overlay mounts over /etc, /opt, /var/lib")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing")
    if not Path("/etc/debian_version").exists():
        pytest.skip("not a Debian system")
    for d in ("/opt/edge-rbmlp", "/etc/edge-rbmlp", "/var/lib/edge-rbmlp"):
        if Path(d).exists():
            pytest.skip(f"{d} exists on this machine: the throw-away install would start from it")
    # the sources as a checkout's files (pip builds in-tree: the repository itself is never written to)
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "pyproject.toml", "setup.py",
                            "MANIFEST.in", "README.md", "LICENSE", "edge_rbmlp", "native", "systemd", "device"],
                           cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.endswith((".so", ".c.gen")) and f != "edge_rbmlp/_native.c":
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    script = tmp_path / "throwaway.sh"
    script.write_text(THROWAWAY)
    work = tmp_path / "t"
    work.mkdir()
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", str(script), str(work), str(src)],
                          capture_output=True, text=True, timeout=1200)
    out = (work / "install.out").read_text() if (work / "install.out").exists() else ""
    print(out[-3000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr + out[-3000:]
    assert "install exit 0" in proc.stdout
    assert "system: Debian (debian" in out and "picamera2" not in out
    assert "no prebuilt wheel for this machine" in out  # src/ has no dist/: the engine was compiled
    assert "systemd is not running here" in out and ":8080/#token=" in out
    assert "mnist_test_0_label_7.png: 7 (" in (work / "classify.out").read_text()
    assert "/opt/edge-rbmlp/venv/" in (work / "native.out").read_text()
    modes = dict(line.split(" ", 1)[::-1] for line in (work / "modes.out").read_text().splitlines())
    assert modes["/etc/edge-rbmlp/env"] == "600" and modes["/var/lib/edge-rbmlp/models"] == "755"
    assert modes["/etc/systemd/system/edge-rbmlp.service"] == "644"
    assert (work / "config.toml").read_text() == (src / "device" / "config.toml").read_text()  # the copy installed
    # nothing reached the host
    assert not Path("/opt/edge-rbmlp").exists() and not Path("/etc/edge-rbmlp").exists()
    assert not Path("/var/lib/edge-rbmlp").exists()
