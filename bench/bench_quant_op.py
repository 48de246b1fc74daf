"""Per-call cost of ``fastdense.ops.dense`` on a QuantizedKernel against a float32 kernel (issue 14).

At batch 1 on small kernels the call's Python overhead is most of its time. Timed interleaved
(round-robin, medians), for each shape and quantized mode:

    f32        dense(x, w, b)                       a float32 ndarray kernel (the op's fast path)
    <mode>     dense(x, qk, b)                      qk = ops.quantize_kernel(w, mode)
    <mode> checked  ops._dense_checked(x, qk, ...)  the validating path every call took before
                                                    the quantized fast path

    python bench/bench_quant_op.py [--quick] [--shapes 1x4x4,1x784x512,1x512x10] [--json P]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import numpy as np

from fastdense import ops
from harness import format_ratio, format_table, format_time, machine_info, paired_ratio, time_interleaved

MODES = ("int8", "int4")


def contenders(shape: tuple[int, int, int], act: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Statements and the namespace they run in; checks the fast and validating paths agree."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    spec = ops._spec(act)
    ns: dict[str, Any] = {"dense": ops.dense, "checked": ops._dense_checked, "x": x, "w": w, "b": b,
                          "act": act, "spec": spec}
    stmts = {"f32": "dense(x, w, b, act)"}
    for mode in MODES:
        qk = ops.quantize_kernel(w, mode)
        fast, slow = ops.dense(x, qk, b, act), ops._dense_checked(x, qk, b, spec, act, None)
        if not np.array_equal(fast, slow):
            raise SystemExit(f"{mode} {shape}: ops.dense and ops._dense_checked differ")
        ns[mode] = qk
        stmts[mode] = f"dense(x, {mode}, b, act)"
        stmts[f"{mode} checked"] = f"checked(x, {mode}, b, spec, act, None)"
    return stmts, ns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    parser.add_argument("--shapes", default="1x4x4,1x784x512,1x512x10", help="MxKxN,... (default: %(default)s)")
    parser.add_argument("--act", default="linear", help="activation (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
        assert all(len(s) == 3 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        parser.error(f"--shapes expects MxKxN,... like 1x4x4, got {args.shapes!r}")

    rows, results = [], []
    for shape in shapes:
        stmts, ns = contenders(shape, args.act)  # type: ignore[arg-type]
        timings = time_interleaved(stmts, ns, min_time=0.1 if args.quick else 0.4, min_samples=9)
        records = {name: t.to_dict() for name, t in timings.items()}
        f32 = timings["f32"].median
        for name, t in timings.items():
            rows.append(["x".join(map(str, shape)), name, format_time(t.median),
                         "" if name == "f32" else f"{(t.median - f32) * 1e9:+.0f} ns",
                         "" if name == "f32" else format_ratio(paired_ratio(records[name], records["f32"]))])
        results.append({"shape": list(shape), "times": records})
    print(f"ops.dense per call, float32 vs quantized kernels, activation {args.act!r} "
          f"(median per call; paired ratio to f32)")
    print(format_table(["MxKxN", "path", "time", "over f32", "/ f32"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"job": "quant_op", "activation": args.act, "machine": machine_info(),
                       "results": results}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
