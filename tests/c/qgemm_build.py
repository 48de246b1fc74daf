"""Build tests/c/qgemm_test (the fd_qgemm harness) and, with more arguments, run it.

    python tests/c/qgemm_build.py OUT [check ISA | bench]

CC=clang works too (HELPERS_CC=gcc builds the other units with gcc). fd_qgemm{,_amx}.c and
fd_q4gemm{,_float}.c get setup.py's flags (a portable build: the paths come from target
attributes); HELPERS_OPT (default -O3) is for the units it calls, e.g. -O1 to build the
activation epilogue quickly when only checking.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["-std=gnu11", "-Wall", "-fno-math-errno", "-fno-trapping-math", f"-I{ROOT / 'csrc'}"]


def build(out: str) -> None:
    cc = os.environ.get("CC", "cc")
    helpers_cc = os.environ.get("HELPERS_CC", cc)
    helpers_opt = os.environ.get("HELPERS_OPT", "-O3")
    with tempfile.TemporaryDirectory() as tmp:
        objects = []
        for unit in ("fd_qgemm", "fd_q4gemm", "fd_q4gemm_float", "fd_qgemm_amx"):   # the kernels under test, with CC
            objects.append(f"{tmp}/{unit}.o")
            subprocess.run([cc, "-O3", *FLAGS, "-c", str(ROOT / f"csrc/{unit}.c"), "-o", objects[-1]], check=True)
        for unit in ("fd_act", "fd_gemm", "fd_cpu"):
            objects.append(f"{tmp}/{unit}.o")
            subprocess.run([helpers_cc, helpers_opt, *FLAGS, "-c", str(ROOT / f"csrc/{unit}.c"), "-o", objects[-1]],
                           check=True)
        subprocess.run([cc, "-O2", *FLAGS, str(ROOT / "tests/c/qgemm_test.c"), *objects, "-o", out, "-lm", "-lpthread"],
                       check=True)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/qgemm_test"
    build(out)
    if len(sys.argv) > 2:
        sys.exit(subprocess.run([out, *sys.argv[2:]]).returncode)
