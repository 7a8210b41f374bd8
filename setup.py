"""Build script for the compiled engine (the rest of the metadata is in pyproject.toml).

``edge_rbmlp._native`` is one extension: the Cython bindings plus the C kernels
of native/. Every variant is compiled into the same binary (the AVX2 and NEON
dot-product kernels through function-level target attributes, never -march),
and native/select.c picks one at run time, so one wheel serves every CPU of an
architecture.
"""
import platform

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build requirement in pyproject.toml
    raise SystemExit("building edge-rbmlp needs Cython>=3.0 (pip install cython): %s" % exc)

SOURCES = [
    "edge_rbmlp/_native.pyx",
    "native/engine.c",
    "native/select.c",
    "native/text.c",
    "native/digit.c",
    "native/kernels_portable.c",
    "native/kernels_avx2.c",
    "native/kernels_neon.c",
    "native/kernels_neon_dotprod.c",
]

COMPILE_ARGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing"]
if platform.system() == "Windows":  # MSVC: not a target of this project, keep the build sane
    COMPILE_ARGS = ["/O2"]

extensions = [
    Extension(
        "edge_rbmlp._native",
        sources=SOURCES,
        include_dirs=["native"],
        depends=["native/rbm_kernels.h", "native/kernels_neon.h", "native/kernels_table.h", "native/kernels_f32_mm.h"],
        extra_compile_args=COMPILE_ARGS,
    )
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}))
