#!/usr/bin/env bash
# Build the native engine with AddressSanitizer + UBSan in a scratch copy of the checkout and run the
# engine's tests (native kernels, native engine, loader fuzz corpus) against it. Any out-of-bounds read or
# write, use-after-free or undefined behaviour in the C code aborts the run with a report.
# Usage: native/asan/test-asan.sh [PYTHON]   (PYTHON: an interpreter with the test extra, default .venv-test)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=${1:-$ROOT/.venv-test/bin/python}
PY="$(cd "$(dirname "$P")" && pwd)/$(basename "$P")"  # absolute, symlink kept (venv)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-rbmlp-asan.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# a copy of the tracked files only, so the checkout's own build stays untouched
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK")
cd "$WORK"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
echo "asan: building edge_rbmlp._native with $SAN"
CFLAGS="$SAN -O1 -g" LDFLAGS="$SAN" "$PY" setup.py -q build_ext --inplace >build.log 2>&1 || {
    tail -40 build.log; echo "asan: build failed" >&2; exit 1; }
SO=$(ls edge_rbmlp/_native*.so)
[ "$(nm -D "$SO" | grep -c __asan_)" -gt 0 ] || { echo "asan: $SO is not instrumented" >&2; exit 1; }

LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
# CPython itself is not instrumented and keeps memory until exit: leak checking would only report it
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TESTS=$(ls tests/test_native*.py tests/test_model_file.py 2>/dev/null | tr '\n' ' ')
echo "asan: running $TESTS"
LD_PRELOAD="$LIBASAN $LIBUBSAN" PYTHONPATH="$WORK" "$PY" -m pytest -q -p no:cacheprovider $TESTS
# the instrumented module really was the one under test
LD_PRELOAD="$LIBASAN $LIBUBSAN" PYTHONPATH="$WORK" "$PY" -c "import edge_rbmlp._native as n, sys; \
assert n.__file__.startswith('$WORK'), n.__file__; print('asan: tested', n.__file__)"
