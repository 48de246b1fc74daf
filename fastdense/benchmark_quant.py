"""The quantized MLP benchmark (issue 14): ``fastdense bench --quantize int8`` and
``bench/bench_quant.py``.

The 784-512-512-10 MLP of ``fastdense bench``, quantized by ``Model.quantize(mode)``, timed in
turns against the same model in float32 and against the peers' own dynamic int8 models
(onnxruntime ``quantize_dynamic`` with QInt8 weights, torch ``quantize_dynamic`` with qint8),
those installed. Ratios are paired (see :func:`fastdense.benchmark.paired_ratio`). Accuracy on
the benchmark inputs: each quantized model against the float64 reference of the float model,
as the max abs error of the softmax outputs and the share of rows whose top-1 class agrees.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fastdense import benchmark as B

MODES = ("int8", "int4", "int4-act")
# Model.quantize's arguments per bench mode: "int4-act" is Keras's int4 with its activation
# quantizer, Int4QuantizationConfig(block_size=-1, activation_quantizer=AbsMaxQuantizer(axis=-1)):
# int4 weights, one scale per unit, inputs quantized per row (the int8 kernels run it)
INT4_ACT_CONFIG = {"class_name": "Int4QuantizationConfig",
                   "config": {"block_size": -1, "weight_quantizer": None,
                              "activation_quantizer": {"class_name": "AbsMaxQuantizer", "config": {"axis": -1}}}}
QUANTIZE_ARGS: dict[str, tuple[str, Any]] = {"int8": ("int8", None), "int4": ("int4", None),
                                             "int4-act": ("int4", INT4_ACT_CONFIG)}


def _fastdense_models(layers: Sequence[tuple[np.ndarray, np.ndarray, str]], mode: str) -> tuple[Any, Any]:
    from fastdense.layers import Dense
    from fastdense.models import Sequential

    models = []
    for quantize in (False, True):
        model = Sequential([Dense(kernel.shape[1], activation=act) for kernel, _, act in layers])
        model.build((None, layers[0][0].shape[0]))
        model.set_weights([w for kernel, bias, _ in layers for w in (kernel, bias)])
        if quantize:
            quant_mode, config = QUANTIZE_ARGS[mode]
            model.quantize(quant_mode, config=config)
        models.append(model)
    return models[0], models[1]


def _onnx_int8(layers: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> Any | None:
    """onnxruntime's dynamically quantized (QInt8 weights, per-tensor) session, or None."""
    onnx, ort = B.import_peer("onnx"), B.import_peer("onnxruntime")
    if onnx is None or ort is None:
        return None
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing advice
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(B._onnx_model(onnx, layers, True), os.path.join(tmp, "f32.onnx"))
        quantize_dynamic(os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "int8.onnx"), weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(os.path.join(tmp, "int8.onnx"), options, providers=["CPUExecutionProvider"])


def quant_contenders(
    layers: Sequence[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray, mode: str, peers: bool = True
) -> tuple[dict[str, str | Callable[[], object]], dict[str, Any]]:
    """Statements timed for one batch, and the namespace they run in. ``fastdense`` is the
    quantized model; ``fastdense f32`` the same model in float32."""
    f32, quantized = _fastdense_models(layers, mode)
    ns: dict[str, Any] = {"x": x, "fd": quantized, "fd32": f32}
    contenders: dict[str, str | Callable[[], object]] = {"fastdense": "fd.predict(x)", "fastdense f32": "fd32.predict(x)"}
    if not peers:
        return contenders, ns
    session = _onnx_int8(layers)
    if session is not None:
        ns["ort8"], ns["feed"] = session, {"x": x}
        contenders["onnxruntime int8"] = "ort8.run(None, feed)"
    torch = B.import_peer("torch")
    if torch is not None:
        model = B.torch_sequential(torch, layers)
        ns["torch8"] = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        ns["tx"] = torch.from_numpy(x)
        contenders["torch int8"] = "torch8(tx)"
    return contenders, ns


def _as_numpy(result: Any) -> np.ndarray:
    if isinstance(result, list):  # onnxruntime
        result = result[0]
    if hasattr(result, "detach"):
        result = result.detach().numpy()
    return np.asarray(result, np.float64)


def accuracy(result: Any, expected: np.ndarray) -> dict[str, float]:
    """Max abs error against the float reference and the share of rows with the same top-1 class."""
    got = _as_numpy(result)
    return {"max_abs_error": float(np.abs(got - expected).max()),
            "top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1)))}


def run_quant(
    batches: Sequence[int] = B.MLP_BATCHES,
    mode: str = "int8",
    *,
    quick: bool = False,
    peers: bool = True,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the quantized benchmark MLP at each batch size; the numbers as a JSON-ready dict
    (the layout of :func:`fastdense.benchmark.run_mlp`'s, plus ``accuracy`` per contender)."""
    if mode not in MODES:
        raise ValueError(f"run_quant: mode must be one of {MODES}, got {mode!r}")
    layers = B.mlp_weights(seed)
    rng = np.random.default_rng(seed + 1)
    min_time, turn_time, min_samples = (0.05, 0.025, 3) if quick else (0.5, 0.05, 7)
    results = []
    overall = B.LoadMeter()
    bar = B.Progress(len(batches), enabled=progress)
    torch = B.import_peer("torch") if peers else None
    guard = torch.inference_mode() if torch is not None else B._NullContext()
    with guard:
        for i, batch in enumerate(batches):
            bar.update(i, f"batch {batch}: checking")
            x = rng.standard_normal((batch, B.MLP_UNITS[0])).astype(np.float32)
            contenders, ns = quant_contenders(layers, x, mode, peers)
            expected = B.reference(x, layers)
            acc = {name: accuracy(eval(stmt, ns) if isinstance(stmt, str) else stmt(), expected)
                   for name, stmt in contenders.items()}
            bar.update(i, f"batch {batch}: timing {', '.join(contenders)}")
            meter = B.LoadMeter()
            timings = B.time_interleaved(contenders, ns, min_time=min_time, min_samples=min_samples,
                                         turn_time=turn_time, settle=B.SETTLE, max_time=4.0 if quick else 10.0)
            results.append({"batch": batch, "accuracy": acc, "agree": {n: True for n in contenders},
                            "times": {name: t.to_dict() for name, t in timings.items()},
                            "other_load_cores": meter.other_cores()})
    bar.update(len(batches), "done")
    bar.close()
    from fastdense import _kernels

    return {"job": "mlp-quantized", "mode": mode, "units": list(B.MLP_UNITS), "activations": list(B.MLP_ACTIVATIONS),
            "dtype": f"{mode} (fastdense), float32 and the peers' dynamic int8", "machine": B.machine_info(),
            "paths": {"quantized": _kernels.quant_isa(), "float32": _kernels.cpu_path(),
                      "int4_recipe": _kernels.q4_recipe() if mode == "int4" else None},
            "other_load_cores": overall.other_cores(), "results": results}


# Issue 14's targets: (contender the quantized model is compared with, batches, highest ratio).
# int8 against float32 depends on the quantized path: VNNI CPUs, or an AVX2-only one.
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "int8 vnni": [("fastdense f32", "1", 0.6), ("fastdense f32", ">=32", 0.45),
                  ("onnxruntime int8", "all", 0.8), ("torch int8", "all", 1.0)],
    "int8 avx2": [("fastdense f32", ">=32", 0.7), ("onnxruntime int8", "all", 0.8), ("torch int8", "all", 1.0)],
    "int4": [("fastdense f32", "1", 0.35)],
    "int4-act": [("fastdense f32", "1", 0.35)],
}


def _applies(batches: str, batch: int) -> bool:
    return batches == "all" or (batches == "1" and batch == 1) or (batches == ">=32" and batch >= 32)


def target_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per issue-14 target the run measured: the paired ratio, the bound, met or not."""
    quant_path = report.get("paths", {}).get("quantized", "")
    vnni = "vnni" in quant_path or quant_path == "amx"
    key = report["mode"] if report["mode"] in ("int4", "int4-act") else ("int8 vnni" if vnni else "int8 avx2")
    lines = [f"targets ({key}, quantized path {quant_path or '?'}):"]
    for other, batches, bound in TARGETS[key]:
        for row in report["results"]:
            if not _applies(batches, row["batch"]) or other not in row["times"]:
                continue
            ratio = B.paired_ratio(row["times"]["fastdense"], row["times"][other])
            verdict = "met" if ratio <= bound else "NOT met"
            lines.append(f"  batch {row['batch']}: fd {report['mode']} / {other} = {ratio:.2f}x "
                         f"(target <= {bound}x): {verdict}")
    return lines


def quant_table(report: Mapping[str, Any]) -> str:
    """Times, paired ratios of the quantized fastdense model to each other contender, and accuracy."""
    names: list[str] = []
    for row in report["results"]:
        names += [n for n in row["times"] if n not in names]
    others = [n for n in names if n != "fastdense"]
    headers = ["batch"] + names + [f"fd {report['mode']}/{n}" for n in others]
    rows = []
    for row in report["results"]:
        cells = [str(row["batch"])] + [B.format_time(row["times"][n]["median_s"]) if n in row["times"] else "-"
                                       for n in names]
        cells += [B.format_ratio(B.paired_ratio(row["times"]["fastdense"], row["times"][n])
                                 if n in row["times"] else math.nan) for n in others]
        rows.append(cells)
    paths = report.get("paths")
    title = (f"MLP {'-'.join(map(str, report['units']))} ({', '.join(report['activations'])}): fastdense "
             f"{report['mode']} (Model.quantize) against float32 and the peers' int8; median time per call; "
             "ratios: median over rounds of the two times' ratio in a round (< 1: quantized fastdense is faster)"
             + (f"; kernels: quantized {paths['quantized']}"
                + (f" (int4 {paths['int4_recipe']} recipe)" if paths.get("int4_recipe") else "")
                + f", float32 {paths['float32']}" if paths else ""))
    acc_rows = []
    for name in names:
        errs = [row["accuracy"][name] for row in report["results"] if name in row["accuracy"]]
        acc_rows.append([name, f"{max(e['max_abs_error'] for e in errs):.2e}",
                         f"{100 * np.mean([e['top1_agreement'] for e in errs]):.2f}%"])
    accuracy_table = B.format_table(["model", "max |y - float64 reference|", "top-1 agreement"], acc_rows)
    notes = []
    load = report.get("other_load_cores")
    if load is not None:
        notes.append(f"other processes kept {load:.1f} of {report['machine']['cpu_count']} cores busy "
                     "during the run (noise)")
    return "\n".join([title, B.format_table(headers, rows), "", "accuracy on the benchmark inputs:",
                      accuracy_table, ""] + target_lines(report) + notes)


def main(argv: Sequence[str] | None = None) -> int:
    """``fastdense bench --quantize MODE`` / ``python bench/bench_quant.py``."""
    parser = argparse.ArgumentParser(prog="python -m fastdense bench --quantize",
                                     description="Time the 784-512-512-10 MLP quantized by fastdense against "
                                     "its float32 self and the peers' dynamic int8 models.")
    parser.add_argument("--quantize", default="int8", choices=MODES,
                        help="fastdense's mode (default: int8; int4-act: int4 weights with Keras's activation "
                        "quantizer, block_size -1)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a few seconds, noisier)")
    parser.add_argument("--batches", default=",".join(map(str, B.MLP_BATCHES)),
                        help="comma-separated batch sizes (default: %(default)s)")
    parser.add_argument("--no-peers", action="store_true", help="fastdense only")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    parser.add_argument("--plot", metavar="PNG", help="save a bar chart (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    batches = B.parse_batches(parser, args.batches)
    B.check_output_paths(parser, args.json, args.plot)
    report = run_quant(batches, args.quantize, quick=args.quick, peers=not args.no_peers,
                       progress=not args.no_progress)
    print(quant_table(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        B.plot_mlp(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
