"""The C-level GEMM harness (tests/c/gemm_test.c), built here with the system's C compiler and
run once per CPU path this machine has: every path against a float64 reference and against
itself over many shapes, and every path giving the same bits (equal digests). With Debian's
gcc-aarch64-linux-gnu and qemu-user installed, the NEON path too, cross-compiled and run
under qemu-aarch64 (its small shapes: an emulator is slow)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "tests/c/gemm_test.c", ROOT / "csrc/fd_gemm.c", ROOT / "csrc/fd_cpu.c"]
KERNEL_PREFIX = {"avx2": "avx2 ", "avx512": "avx512 "}   # the x86 paths with a packed kernel
# each run: (FASTDENSE_CPU_PATH, FASTDENSE_CPU_VENDOR); avx512 packs x with Intel's tunings and
# reads it in place with AMD's
RUNS = {"avx2": ("avx2", None), "avx512-intel": ("avx512", "intel"), "avx512-amd": ("avx512", "amd")}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or not all(p.exists() for p in SOURCES):
        pytest.skip("no C compiler (or no C sources in this checkout): the C GEMM harness cannot be built")
    return build(cc, tmp_path_factory.mktemp("gemm") / "gemm_test")


def run(exe, path, vendor=None):
    """{'path': kernel name, 'digest': ..., 'ok': shapes} from one run on a forced path (and vendor)."""
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    env.pop("FASTDENSE_CPU_VENDOR", None)
    if vendor:
        env["FASTDENSE_CPU_VENDOR"] = vendor
    done = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{path}: {done.stdout}{done.stderr}"
    return dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())


@pytest.fixture(scope="module")
def results(harness):
    return {name: run(harness, *forced) for name, forced in RUNS.items()}


@pytest.mark.parametrize("name", RUNS)
def test_path_matches_the_float64_reference_and_itself(results, name):
    out, path = results[name], RUNS[name][0]
    if not out["path"].startswith(KERNEL_PREFIX[path]):
        pytest.skip(f"this CPU has no {path} GEMM path (FASTDENSE_CPU_PATH={path} ran {out['path']!r})")
    assert int(out["ok"]) > 6000


def test_every_path_gives_the_same_bits(results):
    ran = {name: out["digest"] for name, out in results.items()
           if out["path"].startswith(KERNEL_PREFIX[RUNS[name][0]])}
    if len(ran) < 2:
        pytest.skip(f"only {sorted(ran) or 'no'} packed GEMM path on this CPU: nothing to compare")
    assert len(set(ran.values())) == 1, ran


def build(cc, exe):
    done = subprocess.run([cc, "-O2", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math",
                           f"-I{ROOT / 'csrc'}", *map(str, SOURCES), "-o", str(exe), "-lpthread", "-lm"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return exe


def test_neon_path_under_qemu_gives_the_x86_bits(harness, tmp_path):
    cross, qemu, sysroot = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64"), "/usr/aarch64-linux-gnu"
    if not cross or not qemu or not Path(sysroot).is_dir():
        pytest.skip("the neon path needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu, "
                    "qemu-user) to be checked on this machine")
    exe = build(cross, tmp_path / "gemm_test_aarch64")
    done = subprocess.run([qemu, "-L", sysroot, str(exe), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    neon = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert neon["path"].startswith("neon ")
    native = subprocess.run([str(harness), "--quick"], capture_output=True, text=True, timeout=300)
    assert native.returncode == 0, native.stdout + native.stderr
    here = dict(line.split(" ", 1) for line in native.stdout.strip().splitlines())
    if here["path"] == "none":
        pytest.skip("no packed GEMM on this machine to compare the neon bits with")
    assert neon["digest"] == here["digest"], (neon, here)


def test_baseline_path_runs_no_packed_kernel(harness):
    assert run(harness, "baseline") == {"path": "none"}
