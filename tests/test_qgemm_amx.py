"""The int8 kernel on Intel AMX tiles (csrc/fd_qgemm_amx.c): exact against int64 NumPy, and the
same bits as the AVX512-VNNI path for the op and for a compiled model on the pool's 2 threads.

Each check runs in child processes with FASTDENSE_CPU_PATH=amx and =avx512 (AVX-512 without
AMX); on a CPU (or OS) without AMX the tests skip and say so. The C harness part
(tests/c/qgemm_test.c, `check amx`) also calls the tile kernel directly at every m from 1.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastdense import quantizers as Q

ROOT = Path(__file__).resolve().parents[1]

# (m, k, n): m 1..40 (below and above the 3 rows where tiles start, one and two 16-row tiles,
# partial last tiles), k tails around 64 and up to 3000, n tails around 16 and 32.
_KS = (1, 3, 4, 63, 64, 65, 127, 129, 784, 1000, 2049, 3000)
_NS = (1, 10, 15, 16, 17, 31, 33, 100)
SHAPES = [(m, _KS[m % len(_KS)], _NS[(m * 5) % len(_NS)]) for m in range(1, 41)] + \
         [(m, k, n) for m, k, n in [(64, 512, 512), (257, 784, 48), (35, 130, 70), (18, 5000, 3)]]
BATCHES = (1, 2, 3, 5, 8, 16, 17, 18, 19, 31, 32, 33, 40, 64, 100, 257)

_CHILD = """
import json, sys
import numpy as np
import fastdense
from fastdense import _kernels, ops
from fastdense.layers import Dense
from fastdense.models import Sequential

shapes, batches, seed = json.loads(sys.argv[1])
rng = np.random.default_rng(seed)
out = {"isa": _kernels.quant_isa(), "features": _kernels.cpu_features(), "op": {}, "model": {}}
for m, k, n in shapes:
    extreme = (m + k) % 7 == 0
    q = np.full((k, n), -128, np.int8) if extreme else rng.integers(-128, 128, (k, n), dtype=np.int8)
    scale = (127 / rng.uniform(0.05, 2.0, n)).astype(np.float32)
    x = (np.where(rng.random((m, k)) < 0.5, -1.0, 1.0) if extreme else rng.standard_normal((m, k)) * 3)
    x = x.astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y = ops.dense(x, _kernels.QuantizedKernel("int8", q, scale), b)
    out["op"][f"{m}x{k}x{n}"] = y.tobytes().hex()
model = Sequential([Dense(512, activation="relu", input_shape=(784,)), Dense(100, activation="relu"), Dense(10)])
model.build((None, 784))
model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.05 for w in model.get_weights()])
model.quantize("int8")
fastdense.set_num_threads(2)
for m in batches:
    x = rng.standard_normal((m, 784)).astype(np.float32)
    out["model"][str(m)] = model.predict_on_batch(x).tobytes().hex()
json.dump(out, sys.stdout)
"""


def _child(path, shapes=SHAPES, batches=BATCHES, seed=14):
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([shapes, batches, seed])], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def runs():
    amx = _child("amx")
    if amx["isa"] != "amx":
        pytest.skip(f"this CPU (or OS) has no AMX-INT8 tiles for fastdense (int8 path {amx['isa']!r})")
    return amx, _child("avx512")


def test_avx512_path_means_no_amx(runs):
    amx, avx512 = runs
    assert avx512["isa"] == "avx512_vnni"
    assert not avx512["features"]["amx_tile"] and not avx512["features"]["amx_int8"]
    assert amx["features"]["amx_tile"] and amx["features"]["amx_int8"]


def test_amx_detection_agrees_with_proc_cpuinfo():
    """amx_tile / amx_int8 are reported only where Linux lists them, and lowering the path to
    avx2 or baseline drops them (no AMX CPU needed)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), None)
    except OSError:
        flags = None
    code = "import json, fastdense._kernels as k; print(json.dumps([k.cpu_features(), k.quant_isa()]))"
    for path in ("amx", "avx2", "baseline"):
        run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FASTDENSE_CPU_PATH=path),
                             capture_output=True, text=True, check=True)
        features, isa = json.loads(run.stdout)
        if path != "amx":
            assert not features["amx_tile"] and not features["amx_int8"] and isa != "amx"
        elif flags is not None:
            assert features["amx_tile"] <= ("amx_tile" in flags) and features["amx_int8"] <= ("amx_int8" in flags)
            assert (isa == "amx") <= features["amx_int8"]


def test_op_equals_int64_reference(runs):
    """ops.dense on tiles (3+ rows) and strips: Keras's int8 layer with the exact int64 product,
    bit for bit, for every m, k tail, n tail and the all -128 x +-127 extremes."""
    amx, _ = runs
    rng = np.random.default_rng(14)
    for m, k, n in SHAPES:
        extreme = (m + k) % 7 == 0
        q = np.full((k, n), -128, np.int8) if extreme else rng.integers(-128, 128, (k, n), dtype=np.int8)
        scale = (127 / rng.uniform(0.05, 2.0, n)).astype(np.float32)
        x = (np.where(rng.random((m, k)) < 0.5, -1.0, 1.0) if extreme else rng.standard_normal((m, k)) * 3)
        x = x.astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        want = Q.int8_dense_reference(x, q, scale, b)
        got = np.frombuffer(bytes.fromhex(amx["op"][f"{m}x{k}x{n}"]), np.float32).reshape(m, n)
        if extreme:   # the sums themselves: -128 * +-127 * k, far from zero
            xq, _ = Q.quantize_inputs(x)
            assert np.abs(xq).min() == 127 and np.abs(Q.int_matmul(xq, q)).max() >= 127 * 128
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"m={m} k={k} n={n}")


def test_op_and_model_equal_avx512_vnni_bits(runs):
    """The op for every shape, and a quantized 784-512-100-10 model run by the plan on 2 threads
    for batches 1..257 (tiles, strips, and a split of the rows between threads), give the VNNI
    path's bits."""
    amx, avx512 = runs
    assert amx["op"] == avx512["op"]
    assert amx["model"] == avx512["model"]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_c_harness_amx_tiles_at_every_m(tmp_path, cc):
    """tests/c/qgemm_test.c `check amx`, the kernels built by gcc and by clang without warnings:
    the tile kernel called directly for m 1..70 against int64 (k up to FD_Q8_MAX_K, -128
    weights) and against the VNNI layer bit for bit, plus every int8 / int4 check through
    FD_QISA_AMX; FASTDENSE_CPU_PATH=avx512 takes AMX away."""
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    env = {k: v for k, v in os.environ.items() if k != "FASTDENSE_CPU_PATH"}
    exe = tmp_path / f"qgemm_test_{cc}"
    build_env = dict(env, CC=cc, HELPERS_CC="gcc" if shutil.which("gcc") else cc, HELPERS_OPT="-O1")
    build = subprocess.run([sys.executable, str(ROOT / "tests/c/qgemm_build.py"), str(exe)], env=build_env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr, build.stderr
    run = subprocess.run([str(exe), "check", "amx"], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode == 77:
        pytest.skip(f"this CPU lacks AMX: {run.stdout.strip()}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "shapes on AMX tiles at any m" in run.stdout and "amx: " in run.stdout and "ok" in run.stdout
    forced = subprocess.run([str(exe), "check", "amx"], env=dict(env, FASTDENSE_CPU_PATH="avx512"),
                            capture_output=True, text=True, timeout=60)
    assert forced.returncode == 77 and "amx" in forced.stdout, forced.stdout
