"""The C harness tests/c/qgemm_test.c: every fd_qgemm path against int64 / C references.

Each instruction set is its own test; on a CPU without it the test skips and names it. The
harness checks the int8 products bit for bit against an int64 reference over 550+ shapes
(k to 1100 and FD_Q8_MAX_K, n to 1030, m to 64, -128 weights), Keras's row quantizer and the
layer's de-scale bit for bit, and the int4 layers (both recipes) against a float64 reference
and the C path of their recipe.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ISAS = ["baseline", "avx2", "avx_vnni", "avx512_vnni"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build tests/c/qgemm_test.c")
    exe = tmp_path_factory.mktemp("qgemm") / "qgemm_test"
    env = dict(os.environ, HELPERS_OPT="-O1")  # the epilogue is not under test here: build it fast
    build = subprocess.run([sys.executable, str(ROOT / "tests/c/qgemm_build.py"), str(exe)], env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return exe


# AVX512-VNNI tiles differ by vendor (AMD: at most 6 rows x 4 panels; Intel: 12 x 2, 8 x 3):
# FASTDENSE_CPU_VENDOR runs both on any CPU with the instructions
CASES = [(isa, None) for isa in ISAS if isa != "avx512_vnni"] + [("avx512_vnni", "intel"), ("avx512_vnni", "amd")]


@pytest.mark.parametrize(("isa", "vendor"), CASES)
def test_qgemm_path(harness, isa, vendor):
    env = {k: v for k, v in os.environ.items() if k not in ("FASTDENSE_CPU_PATH", "FASTDENSE_CPU_VENDOR")}
    if vendor:
        env["FASTDENSE_CPU_VENDOR"] = vendor
    run = subprocess.run([str(harness), "check", isa], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{isa}: " in run.stdout and "ok" in run.stdout


def test_forced_path_hides_avx512(harness):
    """FASTDENSE_CPU_PATH=avx2 takes the AVX-512 path away (the harness then skips it)."""
    env = dict(os.environ, FASTDENSE_CPU_PATH="avx2")
    run = subprocess.run([str(harness), "check", "avx512_vnni"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 77, run.stdout + run.stderr
    assert "avx512_vnni" in run.stdout


def test_clang_build_passes_every_path(tmp_path):
    """fd_qgemm.c built by clang (its target attributes and intrinsics) gives the same results."""
    if shutil.which("clang") is None or shutil.which("gcc") is None:
        pytest.skip("clang (and gcc for the other units) not installed")
    exe = tmp_path / "qgemm_test_clang"
    env = dict(os.environ, CC="clang", HELPERS_CC="gcc", HELPERS_OPT="-O1")
    env.pop("FASTDENSE_CPU_PATH", None)
    build = subprocess.run([sys.executable, str(ROOT / "tests/c/qgemm_build.py"), str(exe)], env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    for isa in ISAS:
        run = subprocess.run([str(exe), "check", isa], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode in (0, 77), run.stdout + run.stderr
