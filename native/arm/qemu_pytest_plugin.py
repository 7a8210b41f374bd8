"""pytest plugin loaded by native/arm/test-arm.sh for runs under qemu-user (not part of the package).

- Emulation is 10-50x slower than a real core: Hypothesis deadlines measure qemu, not the engine,
  so they are switched off (examples and shrinking are unchanged).
- With EDGE_RBMLP_ARM_ONLY_FORCED=1, kernel-parametrized tests run only the forced kernel.
- At the end of the session it records, into $EDGE_RBMLP_ARM_REPORT (JSON), which edge_rbmlp
  modules the tests imported, the machine they ran on and, when the native extension was
  imported, the kernel NativeEngine reports (arm_probe.py), so the script can prove that the native
  engine (not a pure-Python fallback) from the installed aarch64 wheel ran the forced kernel.
"""
import json
import os
import platform
import sys

_relaxed = False


def _relax_hypothesis():
    """deadline=None for every Hypothesis test; imported only when a test needs Hypothesis (its import
    costs seconds under qemu). Must run before a test module applies @settings (which copies the
    current profile), hence the check of each test file's text below."""
    global _relaxed
    if _relaxed:
        return
    _relaxed = True
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    settings.register_profile(
        "qemu", deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile("qemu")


def pytest_configure(config):
    if "hypothesis" in sys.modules:
        _relax_hypothesis()


def pytest_collect_file(file_path, parent):
    if _relaxed or file_path.suffix != ".py":
        return None
    try:
        if "hypothesis" in sys.modules or "hypothesis" in file_path.read_text(errors="replace"):
            _relax_hypothesis()
    except OSError:
        pass
    return None


def pytest_collection_modifyitems(config, items):
    """With EDGE_RBMLP_ARM_ONLY_FORCED=1, tests parametrized over the kernel variant run only the
    variant forced by EDGE_RBMLP_KERNEL (the script's run for each other variant covers those)."""
    forced = os.environ.get("EDGE_RBMLP_KERNEL")
    if not forced or os.environ.get("EDGE_RBMLP_ARM_ONLY_FORCED") != "1":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("variant") if callspec is not None else None
        (drop if isinstance(variant, str) and variant != forced else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("EDGE_RBMLP_ARM_REPORT")
    if not path:
        return
    mods = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
            if name == "edge_rbmlp" or name.startswith("edge_rbmlp.")}
    report = {
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "kernel_env": os.environ.get("EDGE_RBMLP_KERNEL"),
        "exitstatus": int(exitstatus),
        "testscollected": getattr(session, "testscollected", None),
        "testsfailed": getattr(session, "testsfailed", None),
        "modules": mods,
    }
    if "edge_rbmlp._native" in sys.modules:
        # the kernel the tests ran with, as the engine reports it (NativeEngine(...).kernel)
        try:
            import arm_probe
            report["probe_status"], report["probe"] = arm_probe.probe()
        except Exception as exc:
            report["probe_status"], report["probe"] = 5, {"error": f"{type(exc).__name__}: {exc}"}
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)
