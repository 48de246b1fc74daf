"""The C pieces of the issue-13 layers (csrc/fd_norm.c, csrc/fd_gather.c), checked in C:
tests/c/norm_gather_test.c is built with the system C compiler and run on each CPU path (skipped
without a compiler, and for a path this CPU lacks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# fd_norm.c dispatches per CPU path (fd_cpu.c) and applies the activation after it (fd_act.c)
SOURCES = ["tests/c/norm_gather_test.c", "csrc/fd_norm.c", "csrc/fd_gather.c", "csrc/fd_act.c", "csrc/fd_cpu.c"]


@pytest.fixture(scope="module")
def norm_gather_test(tmp_path_factory):
    cc = shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc") \
        or shutil.which("cc")
    if cc is None or not (ROOT / "csrc/fd_norm.c").exists():
        pytest.skip("no C compiler (or no source tree) here")
    exe = tmp_path_factory.mktemp("norm") / "norm_gather_test"
    done = subprocess.run([cc, "-O2", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Werror",
                           "-I", str(ROOT / "csrc"), *(str(ROOT / s) for s in SOURCES), "-lm", "-o", str(exe)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


@pytest.mark.parametrize("path", ["baseline", "avx2", "avx512"])
def test_norm_and_gather_in_c(norm_gather_test, path):
    result = subprocess.run([str(norm_gather_test)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, FASTDENSE_CPU_PATH=path))
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout
    if f"on the {path} path" not in result.stdout:
        pytest.skip(f"this CPU has no {path} path ({result.stdout.strip()})")
