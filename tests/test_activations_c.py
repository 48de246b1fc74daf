"""The C-level activation harness (tests/c/act_test.c, built by tests/c/act.mk), independent of
Python: every activation epilogue against a wider-precision reference within the bounds of
tests/test_activations.py, once per x86 CPU path this machine has and, with Debian's
gcc-aarch64-linux-gnu and qemu-user installed, the NEON copy cross-compiled and run under
qemu-aarch64 (fewer inputs: an emulator is slow)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_activations import F32_BOUND, F64_BOUND, ROW_BOUNDS

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "tests/c/act.mk"
X86_PATHS = ["baseline", "avx2", "avx512"]


def build(out_dir, cc):
    """make -f tests/c/act.mk with compiler `cc` into out_dir; the executable's path."""
    make = shutil.which("make")
    if make is None or not MAKEFILE.exists():
        pytest.skip("no `make` (or no tests/c/act.mk in this checkout): the C activation harness cannot be built")
    done = subprocess.run([make, "-s", "-f", str(MAKEFILE), f"CC={cc}", f"OUT={out_dir}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(out_dir) / "act_test"


def parse(stdout):
    """{'path': ..., 'ok': ..., 'cases': {'f32 gelu': max ulp, ...}} from the harness's output."""
    out = {"cases": {}}
    for line in stdout.strip().splitlines():
        words = line.split()
        if words[0] in ("f32", "f64"):
            out["cases"][f"{words[0]} {words[1]}"] = float(words[3])
        else:
            out[words[0]] = words[1]
    return out


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler: the C activation harness cannot be built")
    return build(tmp_path_factory.mktemp("act"), cc)


def test_bounds_are_the_python_tests_bounds(harness):
    done = subprocess.run([str(harness), "--bounds"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    elementwise, rowwise = {}, {}
    for line in done.stdout.splitlines():
        kind, name, f32, f64 = line.split()
        (elementwise if kind == "bound" else rowwise)[name] = (float(f32), float(f64))
    names = set(F32_BOUND) | set(F64_BOUND)
    assert elementwise == {n: (F32_BOUND.get(n, 1), F64_BOUND.get(n, 1)) for n in names}
    assert rowwise == {n: tuple(map(float, b)) for n, b in ROW_BOUNDS.items()}


@pytest.mark.parametrize("path", X86_PATHS)
def test_every_activation_within_bound_on_x86_path(harness, path):
    done = subprocess.run([str(harness)], env=dict(os.environ, FASTDENSE_CPU_PATH=path), capture_output=True,
                          text=True, timeout=600)
    out = parse(done.stdout)
    if out.get("path") != path:
        pytest.skip(f"this CPU has no {path} path (FASTDENSE_CPU_PATH={path} ran {out.get('path')!r})")
    assert done.returncode == 0, done.stderr
    assert int(out["ok"]) >= 70 and out["cases"]["f32 gelu"] > 0   # every case ran, and measured something


def test_neon_copy_under_qemu_within_bound(tmp_path):
    cross, qemu, sysroot = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64"), "/usr/aarch64-linux-gnu"
    if not cross or not qemu or not Path(sysroot).is_dir():
        pytest.skip("the neon copy needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu, "
                    "qemu-user) to be checked on this machine")
    exe = build(tmp_path, cross)
    done = subprocess.run([qemu, "-L", sysroot, str(exe), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    out = parse(done.stdout)
    assert out["path"] == "neon" and int(out["ok"]) >= 70
    assert "f64 gelu" in out["cases"]   # long double is IEEE quad there: the float64 bounds were checked too
