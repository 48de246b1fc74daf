"""Build the fastdense extension: Cython glue (fastdense/_kernels.pyx) + plain C (csrc/).

The default build is portable (x86-64 baseline): the kernels carry their own AVX2 and AVX-512
variants (FD_TARGET_BEGIN_* regions) chosen at run time by csrc/fd_cpu.c, so one wheel runs on any
x86-64 machine. Generated sources (csrc/fd_act_coeffs.h, csrc/fd_gemm_tiles*.h) are checked in;
tests/test_generated_code.py checks that their generators still write them.
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extra_compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11"]
if os.environ.get("FASTDENSE_NATIVE") == "1":  # opt-in, never in a wheel
    extra_compile_args.append("-march=native")
if sys.platform == "win32":
    sys.exit("fastdense does not support Windows: its C kernels need POSIX threads and a GCC- or "
             "clang-compatible compiler. Use Linux, macOS or WSL.")

ext = Extension(
    "fastdense._kernels",
    sources=["fastdense/_kernels.pyx"] + sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=extra_compile_args,
    libraries=["m", "dl"] if sys.platform.startswith("linux") else [],
    depends=sorted(glob.glob("csrc/*.h")),
)

setup(ext_modules=cythonize([ext], compiler_directives={"language_level": "3"}))
