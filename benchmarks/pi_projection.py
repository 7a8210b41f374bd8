"""Project Raspberry Pi inference times without a Pi, and write benchmarks/pi-projection.md.

    python benchmarks/pi_projection.py [--out benchmarks/pi-projection.md] [--json FILE] [--skip-armv7 | --only-armv7] [--litert]

Method (stated again in the report it writes):
1. The emulated Pi: native/arm/test-arm.sh's cached arm64 / armhf Debian bookworm sysroot and the
   cross-built wheel (ARM_PREPARE_ONLY=1: no tests), plus tflite-runtime 2.14.0's aarch64 wheel from
   PyPI (pip --target --platform; --litert adds ai-edge-litert 1.4.0).
2. Instructions per inference: benchmarks/pi_projection_guest.py runs one engine on one input N
   times under qemu-user with `-d in_asm,exec,nochain` and `-dfilter` set to the engine's own
   executable mappings (so only code in the engine's shared objects is logged). Every executed
   translation block is one `Trace` line (nochain: no block is chained past the log); its length is
   the number of instructions qemu listed when it translated that block. Two runs (N1, N2) give
   (I(N2) - I(N1)) / (N2 - N1): imports, loading and warm-up cancel out. Host ASLR is off
   (setarch -R) and the logged runs must report the mappings the filter was made from.
3. Cycles: the hot blocks (those covering 95 % of the per-inference instructions, at most 60) are
   disassembled by llvm-mc from their bytes and run through llvm-mca -mcpu=cortex-a53|a72|a76 as a
   loop; cycles = sum(executions x cycles per iteration); the remaining instructions are charged at
   the hot blocks' mean cycles per instruction.
4. Microseconds at each Pi's clock; the ratio against TFLite's float and int8 models on the same core.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST = Path(__file__).resolve().parent / "pi_projection_guest.py"
MODELS = ROOT / "edge_rbmlp" / "models"
N1, N2 = 2, 12
HOT_COVERAGE, HOT_MAX = 0.95, 60
MCA_ITERATIONS = 200
JOBS = int(os.environ.get("PI_PROJECTION_JOBS", "3"))  # qemu processes at once
# (board, core, clock GHz): the clocks of the boards as sold (Pi 4 from 2020 on: 1.8 GHz)
PIS = [("Pi Zero 2 W", "cortex-a53", 1.0), ("Pi 3 B+", "cortex-a53", 1.4), ("Pi 4 B", "cortex-a72", 1.8),
       ("Pi 5", "cortex-a76", 2.4)]
TFLITE_VERSIONS = {"tflite": ("tflite-runtime", "2.14.0"), "litert": ("ai-edge-litert", "1.4.0")}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def prepare(arch: str) -> dict:
    """native/arm/test-arm.sh steps 1-5 (cached): the sysroot, the wheel's install dir, its dependencies."""
    proc = subprocess.run(["bash", str(ROOT / "native" / "arm" / "test-arm.sh")], capture_output=True, text=True,
                          env=dict(os.environ, ARM_ARCH=arch, ARM_PREPARE_ONLY="1"), timeout=3600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ARM_ENV ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"test-arm.sh (ARM_ARCH={arch}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return dict(kv.split("=", 1) for kv in line[0].split()[1:])


def tflite_site(env: dict, which: str) -> Path:
    name, version = TFLITE_VERSIONS[which]
    cache = Path(env["XENV"]).parent / f"projection-{which}-{version}-aarch64"
    if not (cache / ".complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        plats = [f"--platform=manylinux_2_{v}_aarch64" for v in range(36, 16, -1)] + ["--platform=manylinux2014_aarch64"]
        sh([f"{env['XENV']}/hv/bin/pip", "install", "-q", "--disable-pip-version-check", "--only-binary=:all:",
            "--target", str(cache), "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            *plats, f"{name}=={version}", "numpy<2"], timeout=1800)
        (cache / ".complete").write_text("")
    return cache


def guest(env: dict, cpu: str, pythonpath: list, args: list, log: Path = None, dfilter: str = None,
          kernel: str = None) -> dict:
    qemu = [env["QEMU"], "-cpu", cpu, "-L", env["SYSROOT"]]
    if log is not None:
        qemu += ["-d", "in_asm,exec,nochain", "-dfilter", dfilter, "-D", str(log)]
    run_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(map(str, pythonpath)), "PYTHONNOUSERSITE": "1",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "HOME": "/tmp", "EDGE_RBMLP_DATA": "/nonexistent"}
    if kernel:
        run_env["EDGE_RBMLP_KERNEL"] = kernel
    cmd = ["setarch", os.uname().machine, "-R", *qemu, f"{env['SYSROOT']}/usr/bin/python3.11", str(GUEST), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"guest failed ({' '.join(map(str, args))}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
INSN = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4,8}\s)+)\s*(\S.*)?$")


def parse_log(path: Path):
    """{pc: executions}, {pc: [instruction words]} (the last translation of each block)."""
    execs = collections.Counter()
    blocks = {}
    cur = None
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.startswith("Trace "):
                m = TRACE.match(line)
                if m:
                    execs[int(m.group(1), 16)] += 1
                cur = None
            elif line.startswith("IN:"):
                cur = []
            elif cur is not None:
                m = INSN.match(line)
                if m:
                    if not cur:
                        blocks[int(m.group(1), 16)] = cur
                    cur.append(m.group(2).split())
                elif not line.strip():
                    cur = None
    return execs, blocks


_MAPS = {}  # engine kind -> its executable mappings (the same for every model: mapped at import)


def count(env, cpu, pythonpath, args, kernel, tmp: Path, retry: bool = True):
    """Per-inference instructions in the engine's mappings and the per-block execution deltas."""
    kind = (env["QEMU"], args[0].split("-")[0])
    if kind not in _MAPS:
        _MAPS[kind] = guest(env, cpu, pythonpath, [*args, 0], kernel=kernel)["maps"]
    maps = _MAPS[kind]
    if not maps:
        raise RuntimeError(f"no executable mapping of the engine {kind[1]} found")
    dfilter = ",".join(f"0x{lo:x}..0x{hi - 1:x}" for lo, hi, _ in maps)
    runs = []
    for n in (N1, N2):
        log = tmp / f"q{n}.log"
        facts = guest(env, cpu, pythonpath, [*args, n], log=log, dfilter=dfilter, kernel=kernel)
        if facts["maps"] != maps:
            log.unlink()
            del _MAPS[kind]
            if retry:
                return count(env, cpu, pythonpath, args, kernel, tmp, retry=False)
            raise RuntimeError(f"the engine's mappings moved between runs (address layout not reproducible): "
                               f"{maps} then {facts['maps']}")
        execs, blocks = parse_log(log)
        log.unlink()
        runs.append((execs, blocks))
    (e1, b1), (e2, b2) = runs
    blocks = {**b1, **b2}
    delta = {pc: (e2[pc] - e1.get(pc, 0)) / (N2 - N1) for pc in e2}
    missing = [pc for pc in delta if pc not in blocks and delta[pc]]
    if missing:
        raise RuntimeError(f"{len(missing)} executed blocks were never listed by in_asm")
    per_inf = sum(d * len(blocks[pc]) for pc, d in delta.items())
    return per_inf, delta, blocks, facts


def mca_cycles(words, cpu: str, triple: str) -> float:
    """llvm-mca's steady-state cycles for one pass over a block (disassembled by llvm-mc from its bytes)."""
    data = " ".join(" ".join(f"0x{int(w, 16) >> (8 * k) & 0xff:02x}" for k in range(4)) for ws in words for w in ws)
    asm = sh(["llvm-mc", "--disassemble", f"-triple={triple}"], input=data).stdout
    asm = re.sub(r"#-?\d+$|#0x[0-9a-f]+$", "#0", asm, flags=re.M)  # pc-relative targets: any in-range offset
    out = sh(["llvm-mca", f"-mtriple={triple}", f"-mcpu={cpu}", f"-iterations={MCA_ITERATIONS}"], input=asm).stdout
    return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / MCA_ITERATIONS


def estimate_cycles(delta, blocks, cpu, triple="aarch64"):
    weight = sorted(((d * len(blocks[pc]), pc) for pc, d in delta.items() if d > 0), reverse=True)
    total = sum(w for w, _ in weight)
    hot, covered, cycles = [], 0.0, 0.0
    for w, pc in weight:
        if covered >= HOT_COVERAGE * total or len(hot) >= HOT_MAX:
            break
        hot.append(pc)
        covered += w
    for pc in hot:
        cycles += delta[pc] * mca_cycles(blocks[pc], cpu, triple)
    cpi = cycles / covered if covered else 1.0
    return cycles + (total - covered) * cpi, covered / total if total else 0.0, len(hot)


def rows_aarch64(env, sites, tmp):
    """Every engine x model x kernel on aarch64: (label, model, kernel, instructions, cycles by core)."""
    wheel = [env["PKG"], env["SITE"]]
    cases = []
    for model in ("mnist", "imdb"):
        rbm = MODELS / f"{model}.rbm"
        for kernel, cpu in (("portable", "cortex-a72"), ("neon", "cortex-a72"), ("neon_dotprod", "cortex-a76")):
            cases.append((f"edge-rbmlp native", model, kernel, cpu, wheel, ["native", rbm], kernel))
        if model == "imdb":
            cases.append(("edge-rbmlp native, active indices", model, "neon", "cortex-a72", wheel,
                          ["native-sparse", rbm], "neon"))
        for which, site in sites.items():
            for variant, fname in (("float", f"{model}.tflite"), ("int8", f"{model}_int8.tflite")):
                if (MODELS / fname).exists():
                    name, version = TFLITE_VERSIONS[which]
                    cases.append((f"{name} {version} {variant}", model, variant, "cortex-a72", [site],
                                  [which, MODELS / fname], None))
    for label, model, kernel, cpu, path, args, forced in cases:  # each engine's mappings, once, in turn
        kind = (env["QEMU"], args[0].split("-")[0])
        if kind not in _MAPS:
            _MAPS[kind] = guest(env, cpu, path, [*args, 0], kernel=forced)["maps"]

    def one(i):
        label, model, kernel, cpu, path, args, forced = cases[i]
        sub = tmp / f"{i}"
        sub.mkdir()
        try:
            per_inf, delta, blocks, facts = count(env, cpu, path, args, forced, sub)
        except RuntimeError as exc:
            print(f"  {label} {model} {kernel}: FAILED {exc}", file=sys.stderr)
            return {"engine": label, "model": model, "kernel": kernel, "error": str(exc)[:300]}
        if forced and facts.get("kernel") != forced:
            raise SystemExit(f"{label}: forced {forced} but the engine ran {facts.get('kernel')}")
        est = {}
        for core in ("cortex-a53", "cortex-a72", "cortex-a76"):
            if kernel == "neon_dotprod" and core != "cortex-a76":
                continue  # only the A76 (Pi 5) has the dot-product extension
            cyc, cov, nhot = estimate_cycles(delta, blocks, core)
            est[core] = {"cycles": cyc, "hot_coverage": cov, "hot_blocks": nhot}
        print(f"  {label:38s} {model:6s} {kernel:13s} {per_inf:12.0f} instructions/inference", file=sys.stderr)
        return {"engine": label, "model": model, "kernel": kernel, "instructions": per_inf, "cores": est}

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(JOBS) as pool:  # qemu runs in parallel; the order of the rows stays
        return list(pool.map(one, range(len(cases))))


# 32-bit cases: (input path, core, forced kernel or None = the engine's own choice, the kernel it must run).
# cortex-a7,neon=off is qemu's A7 without NEON (an ARMv7 the portable kernel serves, chosen at run time)
ARMV7_CASES = [("native", "cortex-a7", "portable", "portable"), ("native", "cortex-a7", None, "neon"),
               ("native", "cortex-a7,neon=off", None, "portable")]


def rows_armv7(env, tmp):
    """The 32-bit wheel under qemu-arm: portable against NEON on the Pi 2's core, per model and input path."""
    wheel = [env["PKG"], env["SITE"]]
    cases = [(model, path, cpu, forced, expect) for model in ("mnist", "imdb") for path, cpu, forced, expect in
             ARMV7_CASES + ([("native-sparse", "cortex-a7", "portable", "portable"),
                             ("native-sparse", "cortex-a7", None, "neon")] if model == "imdb" else [])]
    kind = (env["QEMU"], "native")
    if kind not in _MAPS:
        _MAPS[kind] = guest(env, "cortex-a7", wheel, ["native", MODELS / "mnist.rbm", 0])["maps"]

    def one(i):
        model, path, cpu, forced, expect = cases[i]
        sub = tmp / f"v7-{i}"
        sub.mkdir()
        per_inf, _, _, facts = count(env, cpu, wheel, [path, MODELS / f"{model}.rbm"], forced, sub)
        if facts.get("kernel") != expect:
            raise SystemExit(f"armv7 {model} on {cpu} ({forced or 'unforced'}): the engine ran "
                             f"{facts.get('kernel')}, expected {expect}")
        print(f"  armv7 {model} {path} {cpu} {facts['kernel']}: {per_inf:.0f} instructions", file=sys.stderr)
        return {"engine": "edge-rbmlp native" + (", active indices" if path == "native-sparse" else ""),
                "model": model, "core": cpu, "forced": forced, "kernel": facts["kernel"], "instructions": per_inf}

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(JOBS) as pool:
        return list(pool.map(one, range(len(cases))))


def models_facts() -> dict:
    """What was measured: each bundled model's architecture, options, size and hash."""
    import hashlib

    from edge_rbmlp.model_file import load_packed_model

    out = {}
    for name in ("mnist", "imdb"):
        path = MODELS / f"{name}.rbm"
        m = load_packed_model(path)
        out[name] = {"arch": m.arch.notation(), "options": m.arch.options(), "bytes": path.stat().st_size,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12]}
    return out


def render(result: dict) -> str:
    rows = [r for r in result["aarch64"] if "instructions" in r]
    tfl = {(r["model"], r["kernel"]): r for r in rows if not r["engine"].startswith("edge-rbmlp")
           and r["engine"].startswith("tflite-runtime")}
    out = ["# Raspberry Pi performance, projected without a Pi", "",
           "**These are projections, not measurements on a Pi.** Until Pi owners send real figures "
           "(`edge-rbmlp bench`, see benchmarks/README.md), they are the best estimate this project has. "
           f"Generated by `python benchmarks/pi_projection.py` on {result['date']} at commit {result['commit']}"
           f"{' (with uncommitted changes under edge_rbmlp/ or native/: the models below are what ran)' if result.get('tree') == 'working tree' else ''} "
           f"({result['qemu']}, {result['llvm_mca']}).", "",
           "Models: " + "; ".join(f"`{n}` `{m['arch']}` ({', '.join(f'{k} {v}' for k, v in m['options'].items())}; "
                                  f"{m['bytes']:,} bytes, sha256 {m['sha256']}...{': ' + m['note'] if m.get('note') else ''})"
                                  for n, m in result.get("models", {}).items())
           + ", with their TFLite float and int8 siblings from `edge_rbmlp/models/`.", "",
           "## Instructions per inference (qemu-aarch64, exact for this code path)", "",
           "One input (batch 1), after warm-up; only instructions inside the engine's own shared objects "
           "(`edge_rbmlp/_native*.so`, `tflite_runtime/_pywrap_tensorflow_interpreter_wrapper.so`, "
           "`ai_edge_litert/*.so`) are counted: the Python calls around them, numpy and libc are not.", "",
           "| engine | model | kernel / variant | instructions | vs tflite float | vs tflite int8 |",
           "|---|---|---|---:|---:|---:|"]
    for r in result["aarch64"]:
        if "instructions" not in r:
            out.append(f"| {r['engine']} | {r['model']} | {r['kernel']} | failed: {r['error'][:80]} | | |")
            continue
        rf, ri = tfl.get((r["model"], "float")), tfl.get((r["model"], "int8"))
        ours = r["engine"].startswith("edge-rbmlp")
        ratio = lambda t: f"{t['instructions'] / r['instructions']:.1f}x fewer" if t and ours else ""  # noqa: E731
        out.append(f"| {r['engine']} | {r['model']} | {r['kernel']} | {r['instructions']:,.0f} | {ratio(rf)} | {ratio(ri)} |")
    out += ["", "## Estimated cycles and microseconds per inference", "",
            "llvm-mca's steady-state cycles for the hot translation blocks (see Method), at each board's clock. "
            "`x TFLite` is TFLite (tflite-runtime) int8 time / ours on the same core.", "",
            "| board (core, GHz) | engine | model | kernel / variant | est. cycles | est. us | x TFLite int8 | x TFLite float |",
            "|---|---|---|---|---:|---:|---:|---:|"]
    for board, core, ghz in PIS:
        for r in rows:
            c = r["cores"].get(core)
            if not c:
                continue
            us = c["cycles"] / (ghz * 1e3)
            cells = []
            for v in ("int8", "float"):
                t = tfl.get((r["model"], v))
                tc = t and t["cores"].get(core)
                cells.append(f"{tc['cycles'] / c['cycles']:.1f}" if tc and r["engine"].startswith("edge-rbmlp") else "")
            out.append(f"| {board} ({core[7:]}, {ghz}) | {r['engine']} | {r['model']} | {r['kernel']} | "
                       f"{c['cycles']:,.0f} | {us:,.1f} | {cells[0]} | {cells[1]} |")
    if result.get("armv7"):
        v7 = result["armv7"]
        when = (f" Measured on {result['armv7_date']} at commit {result['armv7_commit']}"
                f"{' (with uncommitted changes under edge_rbmlp/ or native/)' if result.get('armv7_tree') == 'working tree' else ''}"
                + (", on the models " + ", ".join(f"`{n}` ({m['bytes']:,} bytes, sha256 {m['sha256']}...)"
                                                  for n, m in result["armv7_models"].items())
                   if result.get("armv7_models") else "") + "." if result.get("armv7_commit") else "")
        out += ["", "## 32-bit Raspberry Pi OS (armhf), qemu-arm", "",
                "Instructions per inference (`predict_into`, the path `edge-rbmlp bench` times as batch 1; "
                "`predict_indices_into` for active indices) of the same bundled models in the armv7 wheel "
                "(Debian's armhf compiler emits Thumb-2), counted the same way, on `-cpu cortex-a7` (the Pi 2's "
                "core; NEON) with the portable kernel forced and with the kernel the engine picks (neon), and on "
                "`-cpu cortex-a7,neon=off` (no NEON: the engine picks portable)." + when + " No cycle estimate "
                "(LLVM's scheduling models here are for AArch64).", "",
                "| engine | model | core | kernel | instructions | portable / this |", "|---|---|---|---|---:|---:|"]
        base = {(r["engine"], r["model"]): r["instructions"] for r in v7
                if r.get("kernel") == "portable" and r.get("core", "cortex-a7") == "cortex-a7"}
        for r in v7:
            chosen = f"{r['kernel']} ({'forced' if r.get('forced') else 'chosen at run time'})" if "core" in r else r["kernel"]
            p = base.get((r["engine"], r["model"]))
            ratio = f"{p / r['instructions']:.1f}x" if p and r["kernel"] != "portable" else ""
            out.append(f"| {r['engine']} | {r['model']} | {r.get('core', 'cortex-a7')} | {chosen} | "
                       f"{r['instructions']:,.0f} | {ratio} |")
    out += ["", "## Method", "", __doc__.split("Method (stated again in the report it writes):", 1)[1].strip(), "",
            "## Limits", "",
            "- The instruction counts are exact for the code qemu executed, but instructions are not time: the Pi's "
            "caches, memory bandwidth, branch predictors and the DVFS governor are not modelled.",
            "- llvm-mca models each hot block as an endless loop with every load hitting L1 and every branch "
            "predicted: an optimistic lower bound for the blocks, rough for the straight-line code around them.",
            "- LLVM 14's (and 16's) llvm-mca schedules `-mcpu=cortex-a76` with the same Cortex-A57-derived model "
            "as `cortex-a72`: the Pi 5 rows differ from the Pi 4 rows by the clock and by the kernel "
            "(neon_dotprod runs only on the A76), not by a model of the A76's wider core.",
            "- TFLite's count covers its interpreter and XNNPACK/ruy kernels for one `invoke()` plus the tensor "
            "copies of `set_tensor`/`get_tensor`; ours covers `predict_into` (probabilities included).",
            "- The inputs are random (the instruction path of these dense kernels does not depend on the values; "
            "the active-indices path of the text model does, through the number of active words, 2 % here).",
            "- Python's own per-call overhead (the call, numpy's argument checks) is not in these figures for either "
            "engine; `edge-rbmlp bench` on a real Pi measures everything.",
            "- Equal counts for `neon` and `neon_dotprod` mean the model has no layer the dot-product kernel "
            "handles differently (the dot-product instructions serve int8-input layers)."]
    return "\n".join(out) + "\n"


def armv7_provenance() -> dict:
    """When and from what the 32-bit rows were measured (they can be re-measured alone: --only-armv7)."""
    dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "edge_rbmlp", "native"]).stdout.strip()
    return {"armv7_date": datetime.date.today().isoformat(), "armv7_models": models_facts(),
            "armv7_commit": sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip(),
            "armv7_tree": "working tree" if dirty else "clean"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "pi-projection.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "pi-projection.json"))
    ap.add_argument("--skip-armv7", action="store_true")
    ap.add_argument("--only-armv7", action="store_true",
                    help="measure only the 32-bit rows; the aarch64 rows come from --json as written before")
    ap.add_argument("--litert", action="store_true", help="also ai-edge-litert 1.4.0 (2.x crashes under qemu)")
    ap.add_argument("--from-json", default=None, help="only render the report from a JSON file written before")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        result.setdefault("models", models_facts())
        if "Optimized" in result.get("llvm_mca", ""):  # a report written before the version was parsed right
            result["llvm_mca"] = "llvm-mca " + re.search(r"version (\S+)", sh(["llvm-mca", "--version"]).stdout).group(1)
        Path(args.out).write_text(render(result))
        return
    if args.only_armv7:
        result = json.loads(Path(args.json).read_text())
        result.setdefault("models", models_facts())
        result.update(armv7_provenance())
        with tempfile.TemporaryDirectory(prefix="pi-projection-") as tmp:
            result["armv7"] = rows_armv7(prepare("armv7"), Path(tmp))
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        Path(args.out).write_text(render(result))
        print(f"wrote {args.out} and {args.json}", file=sys.stderr)
        return
    for tool in ("llvm-mc", "llvm-mca", "setarch"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install llvm util-linux")
    print("preparing the emulated Pi (native/arm/test-arm.sh, cached)", file=sys.stderr)
    env64 = prepare("aarch64")
    sites = {}
    for which in (["tflite", "litert"] if args.litert else ["tflite"]):
        try:
            sites[which] = tflite_site(env64, which)
        except subprocess.CalledProcessError as exc:
            print(f"  {which}: could not install ({exc.stderr[-300:]})", file=sys.stderr)
    result = {"date": datetime.date.today().isoformat(),
              "commit": sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip(),
              "qemu": sh([env64["QEMU"], "--version"]).stdout.splitlines()[0],
              "llvm_mca": "llvm-mca " + re.search(r"version (\S+)", sh(["llvm-mca", "--version"]).stdout).group(1),
              "tree": "working tree" if sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "edge_rbmlp",
                                            "native"]).stdout.strip() else "clean",
              "models": models_facts()}
    with tempfile.TemporaryDirectory(prefix="pi-projection-") as tmp:
        result["aarch64"] = rows_aarch64(env64, sites, Path(tmp))
        if not args.skip_armv7:
            result.update(armv7_provenance())
            result["armv7"] = rows_armv7(prepare("armv7"), Path(tmp))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out).write_text(render(result))
    print(f"wrote {args.out} and {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
