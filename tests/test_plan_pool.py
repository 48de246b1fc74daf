"""The thread pool (csrc/fd_pool.c) on its own, through the C harness tests/c/pool_test.c built
here with the system's C compiler: every task of a job runs exactly once, the first failure is
returned, helpers return to the idle mask, also with more callers (and threads) than cores."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "tests/c/pool_test.c", ROOT / "csrc/fd_pool.c"]


def test_pool_runs_every_task_once_and_returns_its_helpers(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or not all(p.exists() for p in SOURCES):
        pytest.skip("no C compiler (or no C sources in this checkout): the pool harness cannot be built")
    exe = tmp_path / "pool_test"
    built = subprocess.run([cc, "-O2", "-std=gnu11", f"-I{ROOT / 'csrc'}", *map(str, SOURCES), "-o", str(exe),
                            "-lpthread"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok ") and int(done.stdout.split()[1]) > 70000, done.stdout
