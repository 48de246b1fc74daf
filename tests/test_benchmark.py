"""Smoke tests for the benchmark job and scripts: tiny configs, results checked, no timing asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastdense import benchmark

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_script(name: str):
    path = BENCH_DIR / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} not present (tests run outside the source tree)")
    if str(BENCH_DIR) not in sys.path:   # the scripts import bench/harness.py, next to them
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_interleaved_measures_every_contender():
    a = np.ones(1000)
    timings = benchmark.time_interleaved(
        {"sum": "a.sum()", "callable": lambda: a.sum()}, {"a": a},
        min_time=0.005, min_samples=3, warmup=0.001,
    )
    assert set(timings) == {"sum", "callable"}
    for t in timings.values():
        assert len(t.samples) >= 3
        assert 0 < t.median < 0.01
        assert t.to_dict()["calls_per_sample"] == t.calls_per_sample >= 1


def test_every_contender_has_samples_in_every_round():
    timings = benchmark.time_interleaved(
        {"a": "sum(range(10))", "b": "sum(range(20))"}, min_time=0.005, min_samples=4, warmup=0.001,
        turn_time=0.002,
    )
    rounds = [set(t.rounds) for t in timings.values()]
    assert rounds[0] == rounds[1] == set(range(max(rounds[0]) + 1))
    for t in timings.values():
        assert len(t.rounds) == len(t.samples)
        assert t.to_dict()["sample_rounds"] == t.rounds


def test_paired_ratio_compares_within_rounds():
    # the host is 10x slower in rounds 2-4; a had more samples then, so the ratio of medians
    # says a is 5x slower, while in every round a takes half b's time
    a = {"samples_s": [1, 1, 10, 10, 10, 10, 10, 10], "sample_rounds": [0, 1, 2, 2, 3, 3, 4, 4]}
    b = {"samples_s": [2, 2, 2, 2, 20, 20, 20], "sample_rounds": [0, 0, 1, 1, 2, 3, 4]}
    assert np.median(a["samples_s"]) / np.median(b["samples_s"]) == 5.0
    assert benchmark.paired_ratio(a, b) == pytest.approx(0.5)
    assert benchmark.paired_ratio(b, a) == pytest.approx(2.0)
    # no common round (or records from before rounds were kept): no ratio, not a wrong one
    assert np.isnan(benchmark.paired_ratio(a, {"samples_s": [1.0], "sample_rounds": [9]}))
    assert np.isnan(benchmark.paired_ratio({"samples_s": [1.0]}, {"samples_s": [1.0]}))


def test_samples_last_about_sample_time_despite_one_slow_call():
    # one slow call late in the calibration (a burst of load) must not shorten every sample:
    # the median of short samples drops the slow calls that the median of long samples keeps
    import time
    state = {"start": None, "slept": False}

    def contender():
        now = time.perf_counter()
        if state["start"] is None:
            state["start"] = now
        elif not state["slept"] and now - state["start"] > 0.025:
            state["slept"] = True
            time.sleep(0.02)

    t = benchmark.time_interleaved({"bursty": contender}, min_time=0.005, min_samples=3,
                                   warmup=0.03, sample_time=0.01)["bursty"]
    assert state["slept"]
    assert t.calls_per_sample * t.median > 0.003, (t.calls_per_sample, t.median)


def test_format_helpers():
    assert benchmark.format_time(1.5e-6) == "1.5 us"
    assert benchmark.format_time(0.0123) == "12.3 ms"
    assert benchmark.format_time(float("nan")) == "-"
    assert benchmark.format_ratio(0.5) == "0.50x"
    table = benchmark.format_table(["name", "value"], [["a", 1], ["bb", 22]])
    assert table.splitlines() == ["name  value", "----  -----", "a         1", "bb       22"]


def test_numpy_references_match_float64_formulas():
    y = np.array([[-2.0, 0.0, 1.5]])
    assert np.array_equal(benchmark.numpy_activation("relu")(y), [[0.0, 0.0, 1.5]])
    np.testing.assert_allclose(benchmark.numpy_activation("gelu")(y), [[-0.04550026, 0.0, 1.39978919]], rtol=1e-7)
    np.testing.assert_allclose(benchmark.numpy_activation("softmax")(y).sum(), 1.0)
    with pytest.raises(ValueError, match="got 'nope'"):
        benchmark.numpy_activation("nope")


def test_mlp_weights_are_reproducible():
    a, b = benchmark.mlp_weights(0), benchmark.mlp_weights(0)
    assert [k.shape for k, _, _ in a] == [(784, 512), (512, 512), (512, 10)]
    assert all(np.array_equal(k1, k2) and np.array_equal(b1, b2) for (k1, b1, _), (k2, b2, _) in zip(a, b))
    assert all(k.dtype == np.float32 for k, _, _ in a)


def test_mlp_job_runs_and_fastdense_agrees(tmp_path, capsys):
    out = tmp_path / "mlp.json"
    status = benchmark.main(["--quick", "--batches", "1,3", "--no-peers", "--no-progress", "--json", str(out)])
    assert status == 0
    report = json.loads(out.read_text())
    assert [r["batch"] for r in report["results"]] == [1, 3]
    for row in report["results"]:
        assert row["agree"] == {"fastdense": True, "numpy": True}
        assert row["times"]["fastdense"]["median_s"] > 0
    printed = capsys.readouterr().out
    assert "fd/numpy" in printed and "MLP 784-512-512-10" in printed


def test_mlp_job_rejects_bad_batches(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--batches", "0,x"])
    assert "--batches expects" in capsys.readouterr().err


def test_bench_dense_script_smoke(tmp_path, capsys):
    script = load_script("bench_dense")
    out = tmp_path / "dense.json"
    assert script.main(["--quick", "--shapes", "3x8x5", "--acts", "relu,softmax", "--no-peers",
                        "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["shape"], r["activation"]) for r in report["results"]] == [([3, 8, 5], "relu"), ([3, 8, 5], "softmax")]
    for row in report["results"]:
        assert all(row["agree"].values()), row["agree"]
    assert "fd(out=)/floor" in capsys.readouterr().out


def test_bench_dense_parses_shapes():
    script = load_script("bench_dense")
    assert script.parse_shapes("1x16x16, 32X512x512") == [(1, 16, 16), (32, 512, 512)]
    with pytest.raises(ValueError, match="got '1x16'"):
        script.parse_shapes("1x16")


def test_bench_threads_sgemm_through_cython_blas_is_right():
    script = load_script("bench_threads")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    W = rng.standard_normal((7, 3)).astype(np.float32)
    call = script.scipy_sgemm(x, W)
    call()
    out = call.buffers[-1]
    np.testing.assert_allclose(out, x.astype(np.float64) @ W, rtol=1e-5, atol=1e-5)


def test_bench_threads_throughput_counts_calls_of_every_caller():
    script = load_script("bench_threads")
    calls = []
    rate = script.throughput(lambda: (lambda: calls.append(1)), callers=2, duration=0.02)
    assert rate > 0 and len(calls) > 0


def test_a_peer_is_one_function_and_a_row_in_the_table(monkeypatch):
    """The peer table is the extension point: a new row is built, checked against the float64
    reference and timed like the built-in peers."""
    def fake_contender(layers, x):
        h = "x"
        ns = {}
        for i, (kernel, bias, act) in enumerate(layers):
            ns[f"fk{i}"], ns[f"fb{i}"], ns[f"fa{i}"] = kernel, bias, benchmark.numpy_activation(act)
            h = f"fa{i}({h} @ fk{i} + fb{i})"
        return h, ns

    monkeypatch.setattr(benchmark, "PEERS", {"fake": fake_contender, "missing": lambda layers, x: None})
    report = benchmark.run_mlp([2], quick=True, progress=False)
    (row,) = report["results"]
    assert row["agree"] == {"fastdense": True, "numpy": True, "fake": True}
    assert row["times"]["fake"]["median_s"] > 0
    assert "fd/fake" in benchmark.mlp_table(report)


def test_harness_reexports_the_package_timing_core():
    load_script("bench_layer_overhead")   # puts bench/ on sys.path
    import harness

    assert harness.time_interleaved is benchmark.time_interleaved
    assert harness.paired_ratio is benchmark.paired_ratio
    assert callable(harness.wait_for_quiet) and "gelu" in harness.TORCH_ACTIVATIONS
