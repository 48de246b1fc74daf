"""The C pieces of the issue-13 layers (csrc/fd_norm.c, csrc/fd_gather.c), checked in C:
tests/c/norm_gather_test.c is built with the system C compiler and run (skipped without one)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_norm_and_gather_in_c(tmp_path):
    cc = shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc") \
        or shutil.which("cc")
    if cc is None or not (ROOT / "csrc/fd_norm.c").exists():
        pytest.skip("no C compiler (or no source tree) here")
    exe = tmp_path / "norm_gather_test"
    sources = [ROOT / "tests/c/norm_gather_test.c", ROOT / "csrc/fd_norm.c", ROOT / "csrc/fd_gather.c"]
    subprocess.run([cc, "-O2", "-std=gnu11", "-Wall", "-Werror", "-I", str(ROOT / "csrc"), *map(str, sources),
                    "-lm", "-o", str(exe)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout
