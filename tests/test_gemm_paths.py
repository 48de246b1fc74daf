"""The float32 GEMM paths from Python: ops.dense (packed weights, plain weights per call, the
direct few-row kernel) and a compiled model give the same bits with FASTDENSE_CPU_PATH=avx2 as
on AVX-512 with Intel's tunings (x packed) and AMD's (x read in place), each forced in a child
process; and `fd_gemm_kernel_name` reports the path."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastdense import _kernels

_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from fastdense import _kernels, ops
    from fastdense.layers import Dense
    from fastdense.models import Sequential

    rng = np.random.default_rng(7)
    out = {"path": np.array(_kernels.cpu_path())}
    # 12-29 rows: the avx512 path's 12 x 32 tiles (one or two of them, a 6-row tile, row tiles);
    # at most 32 columns over many rows: its narrow 12-row tiles, x read in place in row blocks;
    # at most 8: its column tiles (32 rows in the lanes)
    for m, k, n in [(1, 784, 512), (3, 300, 129), (5, 64, 1030), (12, 257, 48), (14, 300, 70), (18, 784, 512),
                    (29, 513, 100), (32, 512, 512), (37, 700, 33), (100, 17, 100), (600, 513, 96),
                    (203, 512, 10), (1100, 513, 26), (130, 300, 32), (101, 513, 8), (70, 200, 1)]:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        tag = f"{m}x{k}x{n}"
        out["packed_" + tag] = ops.dense(x, ops.pack_kernel(w), b, "relu")
        out["rows_" + tag] = np.concatenate([ops.dense(x[i:i + 1], ops.pack_kernel(w), b, "relu")
                                             for i in range(0, m, 1 + m // 8)])
        out["plain_" + tag] = ops.dense(x, w, b, "tanh")
        out["fortran_" + tag] = ops.dense(x, np.asfortranarray(w), b)
        out["x_" + tag], out["w_" + tag], out["b_" + tag] = x, w, b
    model = Sequential([Dense(512, activation="relu", input_shape=(784,)), Dense(512, activation="relu"),
                        Dense(10, activation="softmax")])
    model.set_weights([(rng.standard_normal(a.shape) / 20).astype(np.float32) for a in model.get_weights()])
    for batch in (1, 32, 256, 4096):
        out[f"mlp_{batch}"] = model.predict(rng.standard_normal((batch, 784)).astype(np.float32))
    np.savez(sys.argv[1], **out)
""")


def run_path(tmp_path, path, vendor=None):
    dst = tmp_path / f"{path}-{vendor}.npz"
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    if vendor:   # another vendor's tunings: AMD reads x in place on avx512, Intel packs it
        env["FASTDENSE_CPU_VENDOR"] = vendor
    done = subprocess.run([sys.executable, "-c", _CHILD, str(dst)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with np.load(dst) as npz:
        return dict(npz)


def test_avx2_and_avx512_paths_give_the_same_bits(tmp_path):
    avx512 = run_path(tmp_path, "avx512", "intel")
    if str(avx512["path"]) != "avx512":
        pytest.skip(f"this CPU has no avx512 path (FASTDENSE_CPU_PATH=avx512 ran {avx512['path']})")
    amd, avx2 = run_path(tmp_path, "avx512", "amd"), run_path(tmp_path, "avx2")
    assert str(avx2["path"]) == "avx2"
    for other in (amd, avx2):
        assert other.keys() == avx512.keys()
        mismatched = [key for key in other if key != "path" and not np.array_equal(other[key], avx512[key])]
        assert not mismatched
    for key in avx512:   # a row alone: the bits it has in the batch
        if key.startswith("rows_"):
            m = int(key.split("_")[1].split("x")[0])
            assert np.array_equal(avx512[key], avx512["packed_" + key[5:]][::1 + m // 8]), key
    # and right: within the float32 bound of float64
    for tag in ("1x784x512", "12x257x48", "18x784x512", "29x513x100", "600x513x96", "203x512x10", "1100x513x26",
                "101x513x8"):
        x, w, b = (avx512[f"{v}_{tag}"].astype(np.float64) for v in "xwb")
        ref, mag = x @ w + b, np.abs(x) @ np.abs(w) + np.abs(b)
        bound = (x.shape[1] + 3) * 2.0 ** -24 * mag
        assert (np.abs(avx512["fortran_" + tag] - ref) <= bound).all(), tag
        assert (np.abs(avx512["packed_" + tag] - np.maximum(ref, 0)) <= bound).all(), tag


@pytest.mark.skipif(not hasattr(_kernels, "gemm_kernel_name"), reason="_kernels does not expose fd_gemm_kernel_name")
def test_kernel_name_names_the_path():
    name = _kernels.gemm_kernel_name()
    assert name.split()[0] in {"avx512": ("avx512",), "avx2": ("avx2",), "baseline": ("BLAS",),
                               "neon": ("BLAS", "neon")}[_kernels.cpu_path()], name
