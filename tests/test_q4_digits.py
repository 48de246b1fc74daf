"""Keras's weight-only int4 (float inputs), the "digits" recipe on the integer kernels
(csrc/fd_q4gemm.c): the inputs written per chunk as 2^-s times four signed base-256 digits, exact
integer products, one rounding per chunk.  Every path must equal the int64 NumPy transcription of
that recipe (below) bit for bit, and Keras's formula in float64 within the recipe's stated bound
(docs/quantization.md).  Kernels are packed for it explicitly (_kernels._q4_repacked): packing
picks it only where the path is AVX512-VNNI or AMX; the "float" recipe (main's kernel) elsewhere,
checked in test_quant_ops.py and, across paths, here."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdense
from fastdense import _kernels, ops
from fastdense import quantizers as Q

CHUNK = 128   # k per digit chunk inside a weight group (csrc/fd_q4gemm.c Q4CH)
E_MIN, E_MAX = -97, 115   # chunk maxima exponents the integer form takes; others: the float formula


def _chunks(k, block):
    """(k0, k1, group) of each digit chunk: runs of <= CHUNK k that never straddle a group."""
    block = k if block == -1 else block
    for g0 in range(0, k, block):
        g1 = min(k, g0 + block)
        for c0 in range(g0, g1, CHUNK):
            yield c0, min(g1, c0 + CHUNK), g0 // block


def recipe_reference(x, w, bias=None):
    """The kernels' recipe in int64 NumPy (+ the one rounding to float32 and float32 fma / add):
    per row and chunk, X = rint(x 2^s) with max|x| 2^s in [2^29, 2^30); R = sum X (q - zero) exactly;
    v = float32(R) 2^-s; acc = fma(v, scale, acc) in chunk order (per unit: acc + v, / kernel_scale).
    Rows the kernels send to the float formula (NaN, inf, out-of-range chunks) come back as None."""
    x = np.asarray(x, np.float32)
    k, n = w.q.shape
    out = np.zeros((x.shape[0], n), np.float32)
    float_rows = []
    for i, row in enumerate(x):
        acc = np.zeros(n, np.float32)
        ok = True
        for k0, k1, g in _chunks(k, w.block_size):
            xc = row[k0:k1]
            amax = np.abs(xc).max()
            if not np.isfinite(amax):
                ok = False
                break
            if amax == 0:
                continue   # v = 0: fma(0, scale, acc) = acc (+0 added)
            e = int(np.frexp(np.float64(amax))[1]) - 1
            if e < E_MIN or e > E_MAX:
                ok = False
                break
            s = 29 - e
            big = np.rint(np.ldexp(xc.astype(np.float64), s)).astype(np.int64)   # exact: x 2^s in float64
            zero = (w.zero[g].astype(np.int64) if w.zero is not None else 0)
            r = big @ (w.q[k0:k1].astype(np.int64) - zero)
            v = np.ldexp(r.astype(np.float64), 0).astype(np.float32)   # one rounding (|R| < 2^42: exact in f64)
            v = (v.astype(np.float64) * 2.0 ** -s).astype(np.float32)  # exact: a power of two, normal result
            if w.zero is not None:
                acc = _fma32(v, w.scale[g], acc)
            else:
                acc = _fma32(v, np.float32(1), acc)
        if not ok:
            float_rows.append(i)
            continue
        out[i] = acc if w.zero is not None else (acc.astype(np.float64) / w.scale.astype(np.float64)).astype(np.float32)
    if bias is not None:
        out = (out.astype(np.float64) + np.asarray(bias, np.float64)).astype(np.float32)
    return out, float_rows


def _fma32(a, b, c):
    """float32 fma(a, b, c) exactly: the product of two float32 is exact in float64; the sum is
    rounded once to float32 where it is exact in float64 (TwoSum error 0), else by fractions."""
    a64, b64, c64 = np.broadcast_arrays(*(np.asarray(t, np.float32).astype(np.float64) for t in (a, b, c)))
    p = a64 * b64
    s = p + c64
    bb = s - p
    exact = ((p - (s - bb)) + (c64 - bb)) == 0
    out = s.astype(np.float32)
    if not exact.all():   # rare: fall back to exact rationals
        from fractions import Fraction
        flat = out.reshape(-1)
        for idx in np.flatnonzero(~exact.reshape(-1)):
            t = Fraction(float(a64.reshape(-1)[idx])) * Fraction(float(b64.reshape(-1)[idx])) + \
                Fraction(float(c64.reshape(-1)[idx]))
            flat[idx] = _round_f32(t)
    return out


def _round_f32(t):
    """A rational rounded to the nearest float32 (ties to even)."""
    from fractions import Fraction
    f = np.float32(float(t))   # within a float64 rounding: check the neighbours
    best = f
    for cand in (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))):
        d, bd = abs(Fraction(float(cand)) - t), abs(Fraction(float(best)) - t)
        if d < bd or (d == bd and (np.float32(cand).view(np.int32) & 1) == 0):
            best = cand
    return best


def error_bound(x, w):
    """|kernel - Keras's formula in float64| allowed per output (before the bias): the digitization
    (max|x| of the chunk 2^-30 per input: |x_k - X_k 2^-s| <= 2^-s / 2 < max 2^-30 ... ) times
    sum |q - zero| |scale|, plus one float32 rounding of each chunk's value and of each fma / add
    (relative 2^-24 of the running magnitudes), and the division per unit."""
    x = np.asarray(x, np.float64)
    k, n = w.q.shape
    bound = np.zeros((x.shape[0], n))
    mag = np.zeros((x.shape[0], n))
    chunks = 0
    for k0, k1, g in _chunks(k, w.block_size):
        qz = w.q[k0:k1].astype(np.float64) - (w.zero[g].astype(np.float64) if w.zero is not None else 0)
        sc = np.abs(w.scale[g].astype(np.float64)) if w.zero is not None else 1.0
        amax = np.abs(x[:, k0:k1]).max(axis=1, keepdims=True)
        bound += amax * 2.0 ** -30 * (np.abs(qz).sum(axis=0) * sc)
        mag += (np.abs(x[:, k0:k1]) @ np.abs(qz)) * sc
        chunks += 1
    u = 2.0 ** -24
    bound += 2 * (chunks + 1) * u * mag   # each chunk's float(R), its fma / add (running sum <= mag)
    if w.zero is None:
        bound = bound / np.abs(w.scale.astype(np.float64)) * (1 + 2 * u)
        mag = mag / np.abs(w.scale.astype(np.float64))
    return bound + u * mag + 1e-37


def _kernel(k, n, block, seed):
    rng = np.random.default_rng(seed)
    wf = (rng.standard_normal((k, n)) * rng.uniform(0.01, 1, size=n)).astype(np.float32)
    w = Q.quantize_int4(wf, block)
    qk = _kernels.QuantizedKernel("int4", Q.pack_int4(w.q), w.scale, w.zero, block, False)
    return w, _kernels._q4_repacked(qk, "digits")


def _inputs(m, k, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)) * rng.uniform(0.01, 10, size=(m, 1))).astype(np.float32)


SHAPES = [(1, 784, 512, 128), (3, 130, 17, 128), (5, 300, 70, 64), (7, 129, 33, 32), (2, 5, 3, 128),
          (4, 257, 40, -1), (9, 1000, 16, -1), (1, 77, 250, 7), (6, 64, 1, 1), (40, 200, 48, 128),
          (13, 3, 31, -1), (2, 512, 10, 256)]


@pytest.mark.parametrize("m,k,n,block", SHAPES)
def test_equals_the_int64_recipe_bit_for_bit(m, k, n, block):
    w, qk = _kernel(k, n, block, seed=k + n)
    x = _inputs(m, k, seed=m)
    b = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    want, float_rows = recipe_reference(x, w, b)
    assert float_rows == []
    np.testing.assert_array_equal(ops.dense(x, qk, b), want)


@pytest.mark.parametrize("m,k,n,block", SHAPES)
def test_within_the_bound_of_kerass_formula(m, k, n, block):
    w, qk = _kernel(k, n, block, seed=k * n)
    x = _inputs(m, k, seed=m + 1)
    exact = x.astype(np.float64) @ Q.dequantize_int4(w).astype(np.float64)
    if w.zero is None:   # Keras: (x @ q) / kernel_scale
        exact = (x.astype(np.float64) @ w.q.astype(np.float64)) / w.scale.astype(np.float64)
    got = ops.dense(x, qk)
    assert np.all(np.abs(got - exact) <= error_bound(x, w))


def _special_rows(k):
    rng = np.random.default_rng(11)
    base = rng.standard_normal(k).astype(np.float32)
    rows = {
        "zeros": np.zeros(k, np.float32),
        "one_nonzero": np.where(np.arange(k) == k // 2, np.float32(3.5), np.float32(0)),
        "normal": base,
        "huge_ok": base * np.float32(2.0 ** 100),          # integer form (e <= 115)
        "huge": base * np.float32(1e37),                   # float formula (e > 115)
        "tiny_ok": base * np.float32(2.0 ** -90),          # integer form
        "tiny": base * np.float32(1e-33),                  # float formula (e < -97)
        "denormal": np.full(k, np.float32(1e-40)),
        "mixed_scales": base * np.float32(1e-20) + np.where(np.arange(k) == 0, np.float32(1e4), np.float32(0)),
        "nan": np.where(np.arange(k) == 1, np.float32(np.nan), base),
        "inf": np.where(np.arange(k) == k - 1, np.float32(np.inf), base),
        "ninf": np.where(np.arange(k) == 0, np.float32(-np.inf), base),
    }
    return rows


@pytest.mark.parametrize("block", [128, 32, -1])
def test_special_rows(block):
    k, n = 300, 37
    w, qk = _kernel(k, n, block, seed=5)
    rows = _special_rows(k)
    x = np.stack(list(rows.values()))
    got = ops.dense(x, qk)
    want, float_rows = recipe_reference(x, w)
    names = list(rows)
    assert sorted(names[i] for i in float_rows) == sorted(["huge", "tiny", "denormal", "nan", "inf", "ninf"])
    integer_rows = [i for i in range(len(names)) if i not in float_rows]
    np.testing.assert_array_equal(got[integer_rows], want[integer_rows])
    # every row, float formula included, against Keras's formula in float64
    with np.errstate(invalid="ignore", over="ignore"):
        if w.zero is None:
            exact = (x.astype(np.float64) @ w.q.astype(np.float64)) / w.scale.astype(np.float64)
        else:
            exact = x.astype(np.float64) @ Q.dequantize_int4(w).astype(np.float64)
    for i, name in enumerate(names):
        if name in ("nan", "inf", "ninf"):
            # NaN wherever float64 gives NaN; +-inf where it gives +-inf (float32 may overflow sooner)
            np.testing.assert_array_equal(np.isnan(got[i]), np.isnan(exact[i]), err_msg=name)
            fin = np.isfinite(exact[i])
            assert not fin.any() or name == "nan", name
            np.testing.assert_array_equal(got[i][~np.isnan(exact[i])], exact[i][~np.isnan(exact[i])].astype(np.float32))
            continue
        xi = x[i:i + 1]
        mag = np.abs(xi.astype(np.float64)) @ np.abs(Q.dequantize_int4(w).astype(np.float64) if w.zero is not None
                                                    else w.q.astype(np.float64))
        # per unit, Keras's float32 x @ q overflows where the float64 one passes 2^128: inf there
        overflow = mag >= 2.0 ** 127
        if w.zero is None:
            mag /= w.scale
        if i in float_rows:   # float32 fmaf in k order: k roundings, plus denormal steps
            bound = 1.2e-7 * (k + 2) * mag + k * 2.0 ** -149 * (1 if w.zero is not None else 1 / w.scale)
        else:
            bound = error_bound(xi, w)[0]
        ok = np.abs(got[i].astype(np.float64) - exact[i]) <= bound
        assert np.all(ok | (overflow[0] & np.isinf(got[i]))), name


@pytest.mark.parametrize("block", [128, -1])
def test_every_batch_and_thread_split_gives_the_same_bits(block):
    w, qk = _kernel(300, 100, block, seed=9)
    x = _inputs(40, 300, seed=3)
    want, _ = recipe_reference(x, w)
    before = fastdense.get_num_threads()
    try:
        for threads in (1, 2):
            fastdense.set_num_threads(threads)
            for m in (1, 2, 3, 4, 5, 8, 13, 40):
                np.testing.assert_array_equal(ops.dense(x[:m], qk), want[:m])
    finally:
        fastdense.set_num_threads(before)


_PATH_SCRIPT = """
import json, sys
import numpy as np
from fastdense import _kernels, ops
from fastdense import quantizers as Q
rng = np.random.default_rng(3)
out = {"isa": _kernels.quant_isa(), "recipe": None}
special = np.array([np.nan, np.inf, 1e37, 1e-33, 0.0], np.float32)
for (m, k, n, block) in [(1, 20, 64, 128), (5, 784, 33, 128), (17, 129, 130, 32), (4, 3, 1, -1), (3, 300, 70, -1),
                         (2, 77, 250, 7), (6, 257, 31, 64)]:
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    x[m // 2, k // 2] = special[m % 5]
    w = Q.quantize_int4(rng.standard_normal((k, n)).astype(np.float32), block)
    qk = _kernels.QuantizedKernel("int4", Q.pack_int4(w.q), w.scale, w.zero, block, False)
    out["recipe"] = qk.int4_recipe   # the one this path packs for
    out[f"{m}x{k}x{n}/{block}"] = ops.dense(x, _kernels._q4_repacked(qk, sys.argv[1])).tobytes().hex()
json.dump(out, sys.stdout)
"""


@pytest.mark.parametrize("recipe", ["digits", "float"])
@pytest.mark.parametrize("path,quant,isa_needed", [("baseline", None, "baseline"), ("avx2", "avx2", "avx2"),
                                                   ("avx2", None, "avx_vnni"), ("avx512", None, "avx512_vnni")])
def test_every_path_gives_the_same_bits(path, quant, isa_needed, recipe):
    """FASTDENSE_CPU_PATH / FASTDENSE_QUANT_PATH force each path in a subprocess: for kernels packed
    under one recipe, the bits of this process's path (digits: checked against the int64 recipe
    above), NaN / inf / huge / tiny rows included; and the recipe each path packs for."""
    env = {k: v for k, v in os.environ.items() if k != "FASTDENSE_QUANT_PATH"}
    env["FASTDENSE_CPU_PATH"] = path
    if quant:
        env["FASTDENSE_QUANT_PATH"] = quant
    run = subprocess.run([sys.executable, "-c", _PATH_SCRIPT, recipe], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    isa = got.pop("isa")
    if isa != isa_needed:
        pytest.skip(f"this CPU does not run the {isa_needed} int4 kernel (got {isa})")
    assert got.pop("recipe") == ("digits" if isa in ("avx512_vnni", "amx") else "float")
    here = subprocess.run([sys.executable, "-c", _PATH_SCRIPT, recipe], capture_output=True, text=True, timeout=120)
    assert here.returncode == 0, here.stderr
    want = json.loads(here.stdout)
    assert want.pop("recipe") == ("digits" if want.pop("isa") in ("avx512_vnni", "amx") else "float")
    assert got == want


def test_keras_int4_mlp_fixture_within_the_bound():
    """Keras's own int4_mlp (blocks of 128): fastdense's outputs against Keras's stored ones."""
    from _helpers import FIXTURES, INDEX_ALL
    if "int4_mlp" not in INDEX_ALL:
        pytest.skip("Keras fixtures not found")
    from fastdense.saving import load_model
    data = np.load(FIXTURES / "int4_mlp.io.npz")
    model = load_model(FIXTURES / "int4_mlp.keras")
    y = model.predict(data["x0"])
    assert np.abs(y - data["y"]).max() <= 2e-5 * max(1.0, np.abs(data["y"]).max())
