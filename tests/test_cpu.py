"""CPU detection (csrc/fd_cpu.c): features, the chosen path, and FASTDENSE_CPU_PATH lowering both."""
import json
import os
import subprocess
import sys

import pytest

from fastdense import _kernels

AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16")
X86 = ("avx2", "fma", "avx_vnni") + AVX512


def _features_under(path):
    code = ("import json, fastdense._kernels as k; "
            "print(json.dumps([k.cpu_path(), k.cpu_level(), k.cpu_features(), k.packed_available()]))")
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_path_matches_features():
    feats = _kernels.cpu_features()
    level = _kernels.cpu_level()
    assert set(X86 + ("neon", "vendor", "family", "model")) <= set(feats)
    want = 2 if all(feats[f] for f in ("avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl")) \
        else 1 if feats["avx2"] and feats["fma"] else 0
    assert level == want
    assert _kernels.cpu_path() == ("avx512", "avx2", "baseline")[2 - level] or \
        (level == 0 and _kernels.cpu_path() == "neon" and feats["neon"])


def test_features_agree_with_proc_cpuinfo():
    flags = _cpuinfo_flags()
    if flags is None or "FASTDENSE_CPU_PATH" in os.environ:
        pytest.skip("no /proc/cpuinfo flags, or a forced CPU path")
    feats = _kernels.cpu_features()
    linux_name = {"avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16", "avx_vnni": "avx_vnni"}
    for f in X86:
        if feats[f]:   # detected -> the kernel lists it (the OS may hide what it does not save)
            assert linux_name.get(f, f) in flags, f
    if "avx2" in flags and "fma" in flags:
        assert feats["avx2"] and feats["fma"]
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
        assert _kernels.cpu_level() == 2


@pytest.mark.parametrize("path", ["baseline", "avx2"])
def test_forced_path_lowers_every_feature(path):
    native = _kernels.cpu_features()
    got_path, level, feats, packed = _features_under(path)
    if path == "baseline":
        assert (got_path, level, packed) == ("baseline", 0, False)
        assert not any(feats[f] for f in X86 + ("neon",))
    else:
        assert not any(feats[f] for f in AVX512)
        assert level == min(_kernels.cpu_level(), 1)
        for f in ("avx2", "fma", "avx_vnni"):
            assert feats[f] == native[f]
    assert (feats["vendor"], feats["family"]) == (native["vendor"], native["family"])


def test_forced_path_never_raises():
    got_path, level, feats, _ = _features_under("avx512")
    assert level == _kernels.cpu_level() and got_path == _kernels.cpu_path()
    assert _features_under("no-such-path")[1] == _kernels.cpu_level()
