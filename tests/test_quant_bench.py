"""fastdense.benchmark_quant (``fastdense bench --quantize``): the report's structure and its
accuracy figures (no timing assertions)."""

import json

import numpy as np
import pytest

from fastdense import _kernels
from fastdense import benchmark as B
from fastdense import benchmark_quant as BQ


@pytest.mark.parametrize("mode", ["int8", "int4", "int4-act"])
def test_quantized_report(mode):
    report = BQ.run_quant([3], mode, quick=True, peers=False, progress=False)
    (row,) = report["results"]
    assert set(row["times"]) == {"fastdense", "fastdense f32"} and report["mode"] == mode
    acc = row["accuracy"]
    assert acc["fastdense f32"]["max_abs_error"] < 1e-5
    assert 0 < acc["fastdense"]["max_abs_error"] < 0.05  # quantized: close, not equal
    table = BQ.quant_table(json.loads(json.dumps(report)))
    assert f"fd {mode}/fastdense f32" in table and "top-1 agreement" in table
    assert report["paths"]["quantized"] == _kernels.quant_isa() and "kernels: quantized" in table
    recipe = report["paths"]["int4_recipe"]
    assert recipe == (("digits" if _kernels.quant_isa() in ("avx512_vnni", "amx") else "float") if mode == "int4" else None)
    assert (f"(int4 {recipe} recipe)" in table) == (mode == "int4")


def test_target_lines_name_the_bound_and_the_verdict():
    def row(batch, ratio):
        def rec(t):
            return {"median_s": t, "samples_s": [t] * 3, "sample_rounds": [0, 1, 2]}

        return {"batch": batch, "times": {"fastdense": rec(ratio), "fastdense f32": rec(1.0)}}

    report = {"mode": "int8", "paths": {"quantized": "avx2"}, "results": [row(1, 0.9), row(32, 0.65), row(256, 0.75)]}
    lines = BQ.target_lines(report)
    assert lines[0] == "targets (int8 avx2, quantized path avx2):"
    assert lines[1:] == ["  batch 32: fd int8 / fastdense f32 = 0.65x (target <= 0.7x): met",
                         "  batch 256: fd int8 / fastdense f32 = 0.75x (target <= 0.7x): NOT met"]
    report["paths"]["quantized"] = "avx512_vnni"
    assert "  batch 1: fd int8 / fastdense f32 = 0.90x (target <= 0.6x): NOT met" in BQ.target_lines(report)


def test_accuracy_figures():
    expected = np.array([[0.1, 0.9], [0.8, 0.2]])
    got = BQ.accuracy([np.array([[0.2, 0.8], [0.3, 0.7]], np.float32)], expected)  # onnxruntime's list
    assert got == {"max_abs_error": pytest.approx(0.5), "top1_agreement": 0.5}


def test_cli_switch_dispatches(capsys):
    assert B.main(["--quantize", "int8", "--quick", "--batches", "1", "--no-peers", "--no-progress"]) == 0
    assert "fastdense int8 (Model.quantize)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        BQ.main(["--quantize", "int2"])
