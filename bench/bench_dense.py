"""Time ``fastdense.ops.dense`` against the bare matmul and the peers, one run, float32.

For each shape (M, K, N) and activation it times, in interleaved turns (see
``fastdense.benchmark.time_interleaved``; a --settle pause before each turn lets the previous
contender's spinning thread pool go idle):

    floor        np.matmul(x, W, out=buf)         the bare BLAS cost (numpy's OpenBLAS)
    sgemm        scipy.linalg.blas.sgemm          the BLAS fastdense calls (scipy's OpenBLAS),
                                                  row-major trick, no copies; for reference
    fd(out=)     fastdense.ops.dense(x, W, b, act, out=o)
    fd           fastdense.ops.dense(x, W, b, act)
    fd packed    fastdense.ops.dense(x, P, b, act), P = ops.pack_kernel(W): what a Dense layer
                 runs (its float32 kernel packed once per set of weights, as onnxruntime
                 pre-packs its constant weights)
    fd pool      the same under fastdense.set_num_threads(cores) (its own thread pool,
                 OpenBLAS single-threaded), switched on around each of its turns only
    numpy        act(x @ W + b) in plain numpy/scipy (gelu: exact erf form)
    torch        act(F.linear(x, W, b)) under torch.inference_mode, torch's default threads
    onnxruntime  Gemm + activation node(s), intra_op_num_threads = cores

and prints the medians, the ratios (fd(out=) / floor, fd / each peer) and the issue-2
targets. Every contender's result is checked against a float64 reference before timing.

    python bench/bench_dense.py                    # full run, a few minutes
    python bench/bench_dense.py --quick            # shorter samples, noisier
    python bench/bench_dense.py --shapes 1x16x16,32x512x512 --acts relu --json out.json
    python bench/bench_dense.py --quiet-wait 60 --retries 3   # on a shared, busy machine
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

import fastdense
from fastdense import ops
from harness import (
    SETTLE,
    LoadMeter,
    agrees,
    fastdense_threads,
    format_ratio,
    format_table,
    format_time,
    import_peer,
    machine_info,
    numpy_activation,
    onnx_session,
    paired_ratio,
    wait_for_quiet,
    reference,
    time_interleaved,
    torch_activation,
)

Shape = tuple[int, int, int]

SHAPES: list[Shape] = [
    (1, 16, 16),
    (1, 256, 256),
    (1, 1024, 1024),
    (32, 512, 512),
    (256, 1024, 1024),
    (2048, 1024, 1024),
    (4096, 256, 256),
]
ACTIVATIONS = ["relu", "gelu", "softmax"]
EPILOGUE_SHAPE: Shape = (2048, 1024, 1024)
EPILOGUE_EXTRA = ["sigmoid", "tanh"]  # timed at EPILOGUE_SHAPE only, for the epilogue-cost check
PEERS = ("numpy", "torch", "onnxruntime")
POOL_THREADS = os.cpu_count() or 1  # "fd pool": fastdense.set_num_threads(POOL_THREADS)
NOISY = 0.3  # cores kept busy by other processes above which --retries times a case again


def parse_shapes(text: str) -> list[Shape]:
    """``"1x16x16,32x512x512"`` -> ``[(1, 16, 16), (32, 512, 512)]``."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"--shapes expects MxKxN items like 32x512x512, got {item!r}")
        shapes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return shapes


def make_case(shape: Shape, act: str, seed: int, peers: bool) -> tuple[dict[str, str], dict[str, Any], dict[str, bool]]:
    """Contender statements, their namespace, and whether each one's result is right."""
    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    W = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
    b = rng.normal(0.0, 0.1, n).astype(np.float32)
    from scipy.linalg.blas import sgemm

    ns: dict[str, Any] = {
        "x": x, "W": W, "b": b, "act": act,
        "buf": np.empty((m, n), np.float32), "o": np.empty((m, n), np.float32),
        "matmul": np.matmul, "maximum": np.maximum, "dense": ops.dense,
        "sgemm": sgemm, "Wt": W.T, "xt": x.T, "nact": numpy_activation(act),
        "P": ops.pack_kernel(W),
    }
    contenders = {
        "floor": "matmul(x, W, out=buf)",
        "sgemm": "sgemm(1.0, Wt, xt)",
        "fd(out=)": "dense(x, W, b, act, out=o)",
        "fd": "dense(x, W, b, act)",
        "fd packed": "dense(x, P, b, act)",
        "fd pool": "dense(x, W, b, act)",
        "numpy": "maximum(x @ W + b, 0)" if act == "relu" else "nact(x @ W + b)",
    }
    if not hasattr(fastdense, "set_num_threads"):
        del contenders["fd pool"]
    if peers:
        torch = import_peer("torch")
        if torch is not None:
            ns["tx"], ns["tb"] = torch.from_numpy(x), torch.from_numpy(b)
            ns["tW"] = torch.from_numpy(np.ascontiguousarray(W.T))  # nn.Linear's (out, in)
            ns["linear"], ns["tact"] = torch.nn.functional.linear, torch_activation(torch, act)
            contenders["torch"] = "tact(linear(tx, tW, tb))"
        session = onnx_session([(W, b, act)])
        if session is not None:
            ns["ort"], ns["feed"] = session, {"x": x}
            contenders["onnxruntime"] = "ort.run(None, feed)"

    expected = reference(x, [(W, b, act)])
    bare = x.astype(np.float64) @ W.astype(np.float64)
    agree = {}
    for name, stmt in contenders.items():
        with fastdense_threads(POOL_THREADS if name == "fd pool" else None):
            result = eval(stmt, ns)
        if name == "sgemm":
            result = result.T
        agree[name] = agrees(result, bare if name in ("floor", "sgemm") else expected)
    return contenders, ns, agree


def run(
    shapes: Sequence[Shape],
    acts: Sequence[str],
    *,
    quick: bool,
    peers: bool,
    settle: float,
    epilogue: bool,
    quiet_wait: float = 0.0,
    retries: int = 0,
) -> dict[str, Any]:
    """Time every (shape, activation) case. A case during which other processes kept more
    than ``NOISY`` cores busy is timed again, up to ``retries`` times, keeping the quietest."""
    cases = [(s, a) for s in shapes for a in acts]
    if epilogue and EPILOGUE_SHAPE in shapes:
        cases += [(EPILOGUE_SHAPE, a) for a in EPILOGUE_EXTRA if a not in acts]
    min_time, turn_time, min_samples = (0.05, 0.025, 3) if quick else (0.2, 0.05, 7)
    torch = import_peer("torch") if peers else None
    results = []
    overall = LoadMeter()
    started = time.perf_counter()
    with torch.inference_mode() if torch is not None else _nothing():
        for i, (shape, act) in enumerate(cases):
            label = f"{'x'.join(map(str, shape))} {act}"
            print(f"[{i + 1}/{len(cases)}] {label}", file=sys.stderr, flush=True)
            contenders, ns, agree = make_case(shape, act, seed=i, peers=peers)
            best: dict[str, Any] | None = None
            for attempt in range(1 + retries):
                if quiet_wait:
                    wait_for_quiet(quiet_wait)
                meter = LoadMeter()
                timings = time_interleaved(
                    contenders, ns, min_time=min_time, min_samples=min_samples,
                    turn_time=turn_time, settle=settle, max_time=5.0 if quick else 20.0,
                    contexts={"fd pool": lambda: fastdense_threads(POOL_THREADS)},
                )
                load = meter.other_cores()
                result = {
                    "shape": list(shape),
                    "activation": act,
                    "agree": agree,
                    "times": {name: t.to_dict() for name, t in timings.items()},
                    "other_load_cores": load,
                    "attempts": attempt + 1,
                }
                if best is None or (load or 0.0) < (best["other_load_cores"] or 0.0):
                    best = result
                if load is None or load < NOISY:
                    break
                print(f"    other processes kept {load:.1f} cores busy: timing again", file=sys.stderr)
            results.append(best)
        epi = None
        if epilogue and EPILOGUE_SHAPE in shapes:
            print(f"[epilogue] {'x'.join(map(str, EPILOGUE_SHAPE))} fd(out=) per activation",
                  file=sys.stderr, flush=True)
            epi = time_epilogues(quick=quick, settle=settle)
    return {
        "job": "dense",
        "dtype": "float32",
        "quick": quick,
        "settle_s": settle,
        "wall_s": time.perf_counter() - started,
        "other_load_cores": overall.other_cores(),
        "machine": machine_info(),
        "results": results,
        "epilogue": epi,
    }


EPILOGUE_ACTS = ("relu", "gelu", "sigmoid", "tanh", "softmax")


def time_epilogues(*, quick: bool, settle: float) -> dict[str, Any]:
    """fd(out=) at EPILOGUE_SHAPE with each of EPILOGUE_ACTS, timed against one another in one
    interleaved run, so the epilogue-cost checks compare turns taken a moment apart."""
    m, k, n = EPILOGUE_SHAPE
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((m, k)).astype(np.float32)
    W = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
    b = rng.normal(0.0, 0.1, n).astype(np.float32)
    ns = {"x": x, "W": W, "b": b, "o": np.empty((m, n), np.float32), "dense": ops.dense}
    contenders = {act: f"dense(x, W, b, {act!r}, out=o)" for act in EPILOGUE_ACTS}
    agree = {act: agrees(eval(stmt, ns), reference(x, [(W, b, act)])) for act, stmt in contenders.items()}
    min_time, turn_time, min_samples = (0.05, 0.025, 3) if quick else (0.3, 0.05, 13)
    timings = time_interleaved(contenders, ns, min_time=min_time, min_samples=min_samples,
                               turn_time=turn_time, settle=settle, max_time=5.0 if quick else 20.0)
    return {
        "shape": list(EPILOGUE_SHAPE),
        "agree": agree,
        "times": {name: t.to_dict() for name, t in timings.items()},
    }


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _median(row: dict[str, Any], name: str) -> float:
    return row["times"][name]["median_s"] if name in row["times"] else math.nan


def _paired(row: dict[str, Any], a: str, b: str) -> float:
    """a's time over b's, both timed in ``row``'s run: the median of per-round ratios."""
    times = row["times"]
    return paired_ratio(times[a], times[b]) if a in times and b in times else math.nan


def tables(report: dict[str, Any]) -> str:
    """Medians, ratios and the issue-2 target checks, as printed text."""
    names: list[str] = []
    for row in report["results"]:
        names += [n for n in row["times"] if n not in names]
    peers = [p for p in PEERS if p in names]

    time_rows, ratio_rows = [], []
    for row in report["results"]:
        shape = "x".join(map(str, row["shape"]))
        cells = [shape, row["activation"]]
        for n in names:
            mark = "" if row["agree"].get(n, True) else " !"
            cells.append(format_time(_median(row, n)) + mark)
        load = row.get("other_load_cores")
        time_rows.append(cells + ["?" if load is None else f"{load:.1f}"])
        ratio_rows.append(
            [shape, row["activation"]]
            + [format_ratio(_paired(row, a, b)) for a, b in
               (("fd(out=)", "floor"), ("fd", "floor"), ("fd pool", "fd"), ("fd packed", "fd"))]
            + [format_ratio(_paired(row, "fd", p)) for p in peers]
            + [format_ratio(_paired(row, "fd packed", p)) for p in peers]
        )
    out = [
        "Median time per call (float32; ! = result disagreed with the float64 reference;",
        " busy = cores kept busy by other processes meanwhile: noise)",
        format_table(["shape", "act"] + names + ["busy"], time_rows),
        "",
        "Ratios (< 1 means fastdense is faster; floor = np.matmul(x, W, out=buf)); each is the",
        " median over the run's rounds of the two contenders' ratio in that round (paired)",
        format_table(
            ["shape", "act", "fd(out=)/floor", "fd/floor", "pool/fd", "packed/fd"]
            + [f"fd/{p}" for p in peers] + [f"packed/{p}" for p in peers],
            ratio_rows,
        ),
        "",
        "Targets (issue 2)",
        targets(report, peers),
    ]
    return "\n".join(out)


def _best(row: dict[str, Any], name: str) -> float:
    return row["times"][name]["min_s"] if name in row["times"] else math.nan


def targets(report: dict[str, Any], peers: Sequence[str]) -> str:
    """The issue-2 targets, judged on paired ratios (see ``fastdense.benchmark.paired_ratio``);
    the ratios of the two medians and of the two best samples are shown beside them."""
    rows = []
    by_case = {(tuple(r["shape"]), r["activation"]): r for r in report["results"]}

    def check(what: str, row: dict[str, Any], a: str, b: str, limit: float | None,
              row_b: dict[str, Any] | None = None) -> None:
        """a in row against b in row_b (default: the same row, where the ratio can be paired;
        across rows, or for records without rounds, the ratio of medians is judged)."""
        rb = row if row_b is None else row_b
        paired = _paired(row, a, b) if rb is row else math.nan
        medians, best = _median(row, a) / _median(rb, b), _best(row, a) / _best(rb, b)
        judged = paired if paired == paired else medians
        if judged != judged:
            return
        verdict = "" if limit is None else ("ok" if judged <= limit else "MISSED")
        rows.append([what, format_ratio(paired), format_ratio(medians), format_ratio(best),
                     "(info)" if limit is None else f"<= {limit:.2f}x", verdict])

    for (shape, act), row in by_case.items():
        if act == "relu" and shape[0] >= 256:
            name = "x".join(map(str, shape))
            check(f"relu {name}: fd(out=) / floor", row, "fd(out=)", "floor", 1.05)
    tiny = by_case.get(((1, 16, 16), "relu"))
    if tiny is not None:
        check("relu 1x16x16: fd / numpy", tiny, "fd", "numpy", 0.5)
    for (shape, act), row in by_case.items():
        present = [p for p in peers if p in row["times"]]
        if present:
            fastest = min(present, key=lambda p: _median(row, p))
            name = "x".join(map(str, shape))
            check(f"{act} {name}: fd / fastest peer ({fastest})", row, "fd", fastest, 1.0)
            if "fd packed" in row["times"]:
                check(f"{act} {name}: fd packed / fastest peer ({fastest})", row, "fd packed", fastest, 1.0)
    name = "x".join(map(str, EPILOGUE_SHAPE))
    epi = report.get("epilogue")
    for act in ("gelu", "sigmoid", "tanh", "softmax"):
        limit = None if act == "softmax" else 1.10
        if epi is not None and act in epi["times"]:
            # timed against relu in one run of their own: paired
            check(f"{act} {name}: fd(out=) / relu's", epi, act, "relu", limit)
        elif (EPILOGUE_SHAPE, act) in by_case and (EPILOGUE_SHAPE, "relu") in by_case:
            check(f"{act} {name}: fd(out=) / relu's", by_case[(EPILOGUE_SHAPE, act)], "fd(out=)",
                  "fd(out=)", limit, row_b=by_case[(EPILOGUE_SHAPE, "relu")])
    return format_table(["check", "paired", "medians", "best", "target", ""], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short samples (noisier, about 4x faster)")
    parser.add_argument("--shapes", help="comma-separated MxKxN (default: the issue-2 set)")
    parser.add_argument("--acts", help=f"comma-separated activations (default: {','.join(ACTIVATIONS)})")
    parser.add_argument("--no-peers", action="store_true", help="skip torch and onnxruntime")
    parser.add_argument("--no-epilogue", action="store_true", help=f"skip the extra {EPILOGUE_EXTRA} cases")
    parser.add_argument("--settle", type=float, default=SETTLE,
                        help="seconds to sleep before each contender's turn so the previous one's "
                        "spinning BLAS/OpenMP threads go idle (default: %(default)s)")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                        help="before each case, wait up to S seconds for a second in which other "
                        "processes keep < 0.25 cores busy (shared machines)")
    parser.add_argument("--retries", type=int, default=0, metavar="N",
                        help=f"time a case again (up to N times) when other processes kept more than "
                        f"{NOISY} cores busy meanwhile; the quietest attempt is kept")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes) if args.shapes else SHAPES
        acts = [a.strip() for a in args.acts.split(",")] if args.acts else ACTIVATIONS
        for a in acts:
            numpy_activation(a)
    except ValueError as exc:
        parser.error(str(exc))

    report = run(shapes, acts, quick=args.quick, peers=not args.no_peers,
                 settle=args.settle, epilogue=not args.no_epilogue, quiet_wait=args.quiet_wait,
                 retries=max(0, args.retries))
    info = report["machine"]
    print(
        f"fastdense {info.get('fastdense')} | numpy {info['numpy']} | scipy {info['scipy']} | "
        f"torch {info.get('torch', '-')} | onnxruntime {info.get('onnxruntime', '-')} | "
        f"{info['cpu_count']} cores | {report['wall_s']:.0f} s"
    )
    print(tables(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
