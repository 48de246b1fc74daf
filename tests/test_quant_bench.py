"""fastdense.benchmark_quant (``fastdense bench --quantize``): the report's structure and its
accuracy figures (no timing assertions)."""

import json

import numpy as np
import pytest

from fastdense import benchmark as B
from fastdense import benchmark_quant as BQ


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_report(mode):
    report = BQ.run_quant([3], mode, quick=True, peers=False, progress=False)
    (row,) = report["results"]
    assert set(row["times"]) == {"fastdense", "fastdense f32"} and report["mode"] == mode
    acc = row["accuracy"]
    assert acc["fastdense f32"]["max_abs_error"] < 1e-5
    assert 0 < acc["fastdense"]["max_abs_error"] < 0.05  # quantized: close, not equal
    table = BQ.quant_table(json.loads(json.dumps(report)))
    assert f"fd {mode}/fastdense f32" in table and "top-1 agreement" in table


def test_accuracy_figures():
    expected = np.array([[0.1, 0.9], [0.8, 0.2]])
    got = BQ.accuracy([np.array([[0.2, 0.8], [0.3, 0.7]], np.float32)], expected)  # onnxruntime's list
    assert got == {"max_abs_error": pytest.approx(0.5), "top1_agreement": 0.5}


def test_cli_switch_dispatches(capsys):
    assert B.main(["--quantize", "int8", "--quick", "--batches", "1", "--no-peers", "--no-progress"]) == 0
    assert "fastdense int8 (Model.quantize)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        BQ.main(["--quantize", "int2"])
