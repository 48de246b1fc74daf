"""Per-call cost of a built ``fastdense.layers.Dense`` over calling ``fastdense.ops.dense``.

Issue 3: calling a built Dense on a numpy array adds at most about 1 us over the op.
At (1, 16, 16) float32 the op itself costs about a microsecond, so this isolates the
layer's Python path. Timed interleaved (round-robin, medians):

    op          fastdense.ops.dense(x, kernel, bias, act)
    layer       layer(x)                   the Keras-style call
    layer.call  layer.call(x)              the body without __call__'s checks
    model       Sequential([layer]).predict(x), for comparison
    model(x)    the same model called (the predict shortcut, PlanCache.shortcut)

    python bench/bench_layer_overhead.py [--quick] [--shape 1x16x16] [--acts relu,linear] [--json P]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import numpy as np

from fastdense import ops
from fastdense.layers import Dense
from fastdense.models import Sequential
from harness import format_ratio, format_table, format_time, machine_info, time_interleaved


def contenders(shape: tuple[int, int, int], act: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Statements and the namespace they run in."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)
    layer = Dense(n, activation=act)
    layer(x)  # builds
    kernel, bias = layer.get_weights()
    expected = ops.dense(x, kernel, bias, act)
    got = layer(x)
    if not np.array_equal(got, expected):
        raise SystemExit(f"Dense({n}, activation={act!r})(x) differs from ops.dense: "
                         f"max abs difference {np.abs(got - expected).max():.3g}")
    ns: dict[str, Any] = {"dense": ops.dense, "x": x, "K": kernel, "B": bias, "act": act, "layer": layer}
    stmts = {"op": "dense(x, K, B, act)", "layer": "layer(x)", "layer.call": "layer.call(x)"}
    model = Sequential([layer])
    if not np.array_equal(model.predict(x), expected):
        raise SystemExit(f"Sequential([Dense({n}, activation={act!r})]).predict(x) differs from ops.dense")
    if not np.array_equal(model(x), expected):
        raise SystemExit(f"Sequential([Dense({n}, activation={act!r})])(x) differs from ops.dense")
    ns["model"] = model
    stmts["model"] = "model.predict(x)"
    stmts["model(x)"] = "model(x)"
    return stmts, ns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    parser.add_argument("--shape", default="1x16x16", help="MxKxN (default: %(default)s)")
    parser.add_argument("--acts", default="relu,linear", help="activations (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.shape.lower().split("x"))
        assert len(shape) == 3 and min(shape) > 0
    except (ValueError, AssertionError):
        parser.error(f"--shape expects MxKxN like 1x16x16, got {args.shape!r}")

    rows, results = [], []
    for act in args.acts.split(","):
        stmts, ns = contenders(shape, act)  # type: ignore[arg-type]
        timings = time_interleaved(stmts, ns, min_time=0.1 if args.quick else 0.5, min_samples=9)
        op = timings["op"].median
        for name, t in timings.items():
            rows.append([act, name, format_time(t.median),
                         "" if name == "op" else f"{(t.median - op) * 1e9:+.0f} ns",
                         format_ratio(t.median / op)])
        results.append({"activation": act, "times": {k: t.to_dict() for k, t in timings.items()}})
    print(f"Dense layer call overhead at {'x'.join(map(str, shape))} float32 "
          f"(median per call; target: layer - op <= ~1 us)")
    print(format_table(["act", "path", "time", "over op", "/ op"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"job": "layer_overhead", "shape": list(shape), "machine": machine_info(),
                       "results": results}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
