"""What the issue-13 layers cost inside a model, as paired ratios measured in one run.

    bn      Dense(512) -> BatchNormalization -> ReLU  /  Dense(512, relu) with the BN folded by hand
            (target <= 1.05: the plan folds the BN into the kernel)
    ln      Dense(512) -> LayerNormalization  /  Dense(512) alone
            (target <= 1.15: the normalization runs fused in the Dense's epilogue)
    tab     a tabular model: 8 categorical ids -> Embedding(1000, 8) -> Flatten, 16 numbers ->
            Normalization, Concatenate -> Dense(256) -> BN -> ReLU -> Dense(128) -> BN -> ReLU ->
            Dense(1, sigmoid)  /  onnxruntime on the same graph (Gather, Sub/Div, Concat, Gemm,
            BatchNormalization, Relu, Sigmoid nodes)   (target < 1 at batch 1, 32 and 256)

Each model's output is checked against the other contender's before timing. Run it under
``flock /work/coord/bench.lock`` on a shared machine:

    python bench/bench_layers.py [--quick] [--batches 1,32,256] [--cases bn,ln,tab] [--json P]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

from harness import (
    LoadMeter,
    format_ratio,
    format_table,
    format_time,
    import_peer,
    machine_info,
    paired_ratio,
    time_interleaved,
)

import fastdense
from fastdense.layers import (
    BatchNormalization,
    Concatenate,
    Dense,
    Embedding,
    Flatten,
    LayerNormalization,
    Normalization,
    ReLU,
)
from fastdense.models import Model, Sequential

WIDTH = 512
TARGETS = {"bn": ("bn_model", "folded_by_hand", 1.05), "ln": ("ln_model", "dense_alone", 1.15),
           "tab": ("fastdense", "onnxruntime", 1.0)}


def random_bn(width: int, rng: np.random.Generator) -> BatchNormalization:
    bn = BatchNormalization()
    bn.build((None, width))
    bn.set_weights([rng.uniform(0.5, 2, width), rng.standard_normal(width) * 0.1, rng.standard_normal(width) * 0.1,
                    rng.uniform(0.2, 3, width)])
    return bn


def bn_case(rng: np.random.Generator) -> dict[str, Any]:
    dense = Dense(WIDTH, input_shape=(WIDTH,))
    model = Sequential([dense, bn := random_bn(WIDTH, rng), ReLU()])
    kernel, bias = dense.get_weights()
    affine = bn.affine()
    folded = Sequential([Dense(WIDTH, activation="relu", input_shape=(WIDTH,),
                               weights=[(kernel * affine.scale).astype(np.float32),
                                        (bias * affine.scale + affine.offset).astype(np.float32)])])
    return {"bn_model": model, "folded_by_hand": folded}


def ln_case(rng: np.random.Generator) -> dict[str, Any]:
    dense = Dense(WIDTH, input_shape=(WIDTH,))
    ln = LayerNormalization()
    model = Sequential([dense, ln])
    ln.set_weights([rng.uniform(0.5, 2, WIDTH), rng.standard_normal(WIDTH)])
    alone = Sequential([Dense(WIDTH, input_shape=(WIDTH,), weights=dense.get_weights())])
    return {"ln_model": model, "dense_alone": alone}


TAB_IDS, TAB_VOCAB, TAB_DIM, TAB_NUM = 8, 1000, 8, 16


def tab_model(rng: np.random.Generator) -> Model:
    ids = fastdense.Input((TAB_IDS,), dtype="int32", name="ids")
    num = fastdense.Input((TAB_NUM,), name="num")
    emb = Flatten()(Embedding(TAB_VOCAB, TAB_DIM, name="emb")(ids))
    norm = Normalization(mean=rng.standard_normal(TAB_NUM), variance=rng.uniform(0.5, 4, TAB_NUM), name="norm")(num)
    x = Concatenate()([emb, norm])
    for units in (256, 128):
        x = ReLU()(random_bn(units, rng)(Dense(units, use_bias=False)(x)))
    return Model([ids, num], Dense(1, activation="sigmoid", name="out")(x), name="tabular")


def tab_onnx(model: Model) -> Any | None:
    """An onnxruntime session of the tabular model's graph (None without onnx/onnxruntime)."""
    onnx, ort = import_peer("onnx"), import_peer("onnxruntime")
    if onnx is None or ort is None:
        return None
    helper, tensor = onnx.helper, onnx.numpy_helper.from_array
    inits, nodes = [], []

    def init(name: str, value: np.ndarray) -> str:
        inits.append(tensor(np.asarray(value), name))
        return name

    table = model.get_layer("emb").get_weights()[0]
    norm = model.get_layer("norm")
    std = np.maximum(np.sqrt(norm.input_variance), 1e-7).astype(np.float32)
    nodes += [
        helper.make_node("Gather", [init("table", table), "ids"], ["rows"], axis=0),
        helper.make_node("Reshape", ["rows", init("flat", np.array([-1, TAB_IDS * TAB_DIM], np.int64))], ["emb"]),
        helper.make_node("Sub", ["num", init("mean", norm.input_mean.astype(np.float32))], ["centred"]),
        helper.make_node("Div", ["centred", init("std", std)], ["normed"]),
        helper.make_node("Concat", ["emb", "normed"], ["h0"], axis=1),
    ]
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    bns = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
    h = "h0"
    for i, (d, bn) in enumerate(zip(dense, bns)):
        gamma, beta, mean, var = bn.get_weights()
        nodes += [
            helper.make_node("MatMul", [h, init(f"W{i}", d.get_weights()[0])], [f"g{i}"]),
            helper.make_node("BatchNormalization", [f"g{i}", init(f"gamma{i}", gamma), init(f"beta{i}", beta),
                                                    init(f"mean{i}", mean), init(f"var{i}", var)], [f"n{i}"],
                             epsilon=bn.epsilon),
            helper.make_node("Relu", [f"n{i}"], [f"h{i + 1}"]),
        ]
        h = f"h{i + 1}"
    w, b = dense[-1].get_weights()
    nodes += [helper.make_node("Gemm", [h, init("Wout", w), init("bout", b)], ["z"]),
              helper.make_node("Sigmoid", ["z"], ["y"])]
    graph = helper.make_graph(
        nodes, "tabular",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT32, ["batch", TAB_IDS]),
         helper.make_tensor_value_info("num", onnx.TensorProto.FLOAT, ["batch", TAB_NUM])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 1])],
        initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_case(case: str, batch: int, rng: np.random.Generator, quick: bool) -> dict[str, Any] | None:
    if case in ("bn", "ln"):
        models = bn_case(rng) if case == "bn" else ln_case(rng)
        x = rng.standard_normal((batch, WIDTH)).astype(np.float32)
        outs = [m.predict(x) for m in models.values()]
        if case == "bn" and not np.allclose(outs[0], outs[1], rtol=1e-4, atol=1e-4):
            raise SystemExit("bn: the model and the hand-folded Dense disagree")
        ns: dict[str, Any] = {"x": x, **{f"m_{k}": m for k, m in models.items()}}
        stmts = {k: f"m_{k}.predict(x)" for k in models}
    else:
        model = tab_model(rng)
        ids = rng.integers(0, TAB_VOCAB, (batch, TAB_IDS)).astype(np.int32)
        num = rng.standard_normal((batch, TAB_NUM)).astype(np.float32)
        session = tab_onnx(model)
        if session is None:
            print("tab: onnx/onnxruntime not installed; skipped", file=sys.stderr)
            return None
        feed = {"ids": ids, "num": num}
        ours, theirs = model.predict([ids, num]), session.run(None, feed)[0]
        if not np.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
            raise SystemExit(f"tab: fastdense and onnxruntime disagree by {np.abs(ours - theirs).max():.3g}")
        ns = {"model": model, "xs": [ids, num], "sess": session, "feed": feed}
        stmts = {"fastdense": "model.predict(xs)", "onnxruntime": "sess.run(None, feed)"}
    meter = LoadMeter()
    timings = time_interleaved(stmts, ns, min_time=0.1 if quick else 0.5, min_samples=9,
                               settle=0.0 if case != "tab" else 0.05)
    records = {k: t.to_dict() for k, t in timings.items()}
    a, b, target = TARGETS[case]
    return {"case": case, "batch": batch, "times": records, "ratio": paired_ratio(records[a], records[b]),
            "target": target, "pair": [a, b], "other_cores": meter.other_cores()}


def cpu_line() -> str:
    """The CPU, its fastdense path and core count (the figures mean nothing without them)."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
    except OSError:
        pass
    info = fastdense.config_info()
    return f"{name}, {os.cpu_count()} cores, fastdense {info['cpu_path']} path"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    parser.add_argument("--batches", default="1,32,256", help="batch sizes (default: %(default)s)")
    parser.add_argument("--cases", default="bn,ln,tab", help="cases among bn, ln, tab (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    results, rows = [], []
    overall = LoadMeter()
    for case in args.cases.split(","):
        for batch in batches:
            result = run_case(case, batch, np.random.default_rng(0), args.quick)
            if result is None:
                continue
            results.append(result)
            a, b = result["pair"]
            met = result["ratio"] <= result["target"] if case != "tab" else result["ratio"] < 1.0
            busy = result["other_cores"]
            rows.append([case, batch, f"{a} {format_time(result['times'][a]['median_s'])}",
                         f"{b} {format_time(result['times'][b]['median_s'])}", format_ratio(result["ratio"]),
                         f"{'<=' if case != 'tab' else '<'} {result['target']:.2f}", "yes" if met else "NO",
                         "?" if busy is None else f"{busy:.1f}"])
    print(f"fastdense layers in compiled models on {cpu_line()}")
    print("(median per predict; ratio: paired, a / b; busy: cores other processes kept busy meanwhile)")
    print(format_table(["case", "batch", "a", "b", "a / b", "target", "met", "busy"], rows))
    other = overall.other_cores()
    if other is not None:
        print(f"other processes kept {other:.2f} of {os.cpu_count()} cores busy on average during the run")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"job": "layers", "machine": machine_info(), "cpu": cpu_line(), "other_cores": other,
                       "results": results}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
