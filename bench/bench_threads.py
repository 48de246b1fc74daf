"""Concurrency check (issue 2): total throughput of 1 vs 2 Python threads calling a GEMM.

For each shape it measures calls per second summed over all callers, for

    sgemm            sgemm from scipy's OpenBLAS (scipy.linalg.cython_blas, via ctypes so
                     the GIL is released), default threads
    sgemm 1-thread   the same with OpenBLAS limited to one thread (threadpoolctl)
    fastdense        fastdense.ops.dense(x, W, b, "relu") under its default policy
    fd pool          the same after fastdense.set_num_threads(cores) (fastdense's own pool)
    fd 1-core        the same after fastdense.set_num_threads(1)

each with 1 caller and with 2 callers, in rounds that rotate through the configurations
(median over rounds). Then it prints the ratios the issue asks about:

    sgemm 2 callers / 1 caller              (issue 2 saw 0.86x: two callers fight over one pool)
    sgemm 1-thread 2 callers / 1 caller     (issue 2 saw 1.79x)
    fastdense 2 callers / fd 1-core 1 caller    target >= 1.7x
    fastdense 2 callers / fastdense 1 caller    target >= 1.0x
    fastdense 1 caller / fd 1-core 1 caller     a lone caller should still get both cores

Each configuration is measured after a short settle pause and an untimed warm-up, so the
previous configuration's spinning BLAS threads are idle. On a shared machine use
``--quiet-wait 60 --retries 5``: two callers can only scale to 2x when nothing else runs.

    python bench/bench_threads.py [--quick] [--shapes 64x512x512,1024x1024x1024] [--json P]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

import fastdense
from harness import (
    SETTLE,
    LoadMeter,
    fastdense_threads,
    format_ratio,
    format_table,
    machine_info,
    wait_for_quiet,
)

SHAPES = [(64, 512, 512), (1024, 1024, 1024)]
NOISY = 0.3  # cores kept busy by other processes above which --retries measures a round again


def throughput(make_call: Callable[[], Callable[[], object]], callers: int, duration: float) -> float:
    """Calls per second summed over ``callers`` threads, each calling its own
    ``make_call()`` in a loop for ``duration`` seconds."""
    start = threading.Barrier(callers + 1)
    stop = threading.Event()
    counts = [0] * callers
    ends = [0.0] * callers

    def worker(i: int) -> None:
        call, n = make_call(), 0
        start.wait()
        while not stop.is_set():
            call()
            n += 1
        counts[i], ends[i] = n, time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (max(ends) - t0)


def scipy_sgemm(x: np.ndarray, W: np.ndarray) -> Callable[[], None]:
    """A call computing ``x @ W`` into its own buffer with scipy's OpenBLAS ``sgemm``,
    the GIL released (the BLAS fastdense uses, and the way fastdense calls it).

    ``scipy.linalg.blas.sgemm`` cannot be used for this: its f2py wrapper holds the GIL,
    so two Python threads calling it never overlap. The function pointer that
    ``scipy.linalg.cython_blas`` exports is called through ctypes instead (ctypes releases
    the GIL), row-major: out^T (N x M) = W^T (N x K) . x^T (K x M) in column-major terms.
    """
    import ctypes

    from scipy.linalg import cython_blas

    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    capsule = cython_blas.__pyx_capi__["sgemm"]
    pointer = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    sgemm = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(pointer)

    (m, k), n = x.shape, W.shape[1]
    assert x.dtype == W.dtype == np.float32 and x.flags.c_contiguous and W.flags.c_contiguous
    out = np.empty((m, n), np.float32)
    keep = [ctypes.c_char(b"N"), ctypes.c_int(n), ctypes.c_int(m), ctypes.c_int(k),
            ctypes.c_float(1.0), ctypes.c_int(n), ctypes.c_int(k), ctypes.c_float(0.0), ctypes.c_int(n)]
    trans, cm, cn, ck, one, lda, ldb, zero, ldc = (ctypes.addressof(v) for v in keep)
    args = (trans, trans, cm, cn, ck, one, W.ctypes.data, lda, x.ctypes.data, ldb, zero, out.ctypes.data, ldc)

    def call() -> None:
        sgemm(*args)

    call.buffers = (keep, x, W, out)  # type: ignore[attr-defined]  # alive as long as the call
    call()
    if not np.allclose(out, x.astype(np.float64) @ W, rtol=1e-3, atol=1e-3):
        raise SystemExit(f"scipy sgemm via ctypes disagrees with numpy at {(m, k, n)}")
    return call


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """OpenBLAS limited to ``n`` threads inside the block (None: leave as is)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(n, user_api="blas"):
        yield


def configurations(shape: tuple[int, int, int], seed: int = 0) -> list[tuple[str, int, Callable, Any]]:
    """(label, callers, call factory, context factory) for every measured configuration."""
    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    b = rng.normal(0.0, 0.1, n).astype(np.float32)
    expected = np.maximum(x.astype(np.float64) @ W + b, 0)
    got = fastdense.ops.dense(x, W, b, "relu")
    if not np.allclose(got, expected, rtol=1e-3, atol=1e-3):
        raise SystemExit(f"fastdense.ops.dense disagrees with numpy at {shape}: "
                         f"max abs error {np.abs(got - expected).max():.3g}")

    def gemm() -> Callable[[], None]:
        return scipy_sgemm(x, W)

    def fd() -> Callable[[], object]:
        return lambda: fastdense.ops.dense(x, W, b, "relu")

    cores = os.cpu_count() or 1
    configs = []
    for callers in (1, 2):
        configs += [
            ("sgemm", callers, gemm, lambda: blas_threads(None)),
            ("sgemm 1-thread", callers, gemm, lambda: blas_threads(1)),
            ("fastdense", callers, fd, lambda: fastdense_threads(None)),
            ("fd pool", callers, fd, lambda: fastdense_threads(cores)),
            ("fd 1-core", callers, fd, lambda: fastdense_threads(1)),
        ]
    return configs


def run(shapes: Sequence[tuple[int, int, int]], rounds: int, duration: float,
        quiet_wait: float = 0.0, retries: int = 0) -> dict[str, Any]:
    """Measure every configuration in rotating rounds. A round during which other processes
    kept more than ``NOISY`` cores busy is measured again (``retries`` times per shape)."""
    results = []
    for shape in shapes:
        meter = LoadMeter()
        configs = configurations(shape)
        samples: dict[str, list[float]] = {f"{c[0]} x{c[1]}": [] for c in configs}
        loads: list[float | None] = []
        r, retries_left = 0, retries
        while r < rounds:
            if quiet_wait:
                wait_for_quiet(quiet_wait)
            round_meter = LoadMeter()
            this_round: dict[str, float] = {}
            shift = r % len(configs)
            for label, callers, call, context in configs[shift:] + configs[:shift]:
                print(f"\r{'x'.join(map(str, shape))} round {r + 1}/{rounds}: {label} x{callers}    ",
                      end="", file=sys.stderr, flush=True)
                time.sleep(SETTLE)  # let the previous configuration's BLAS threads go idle
                with context():
                    throughput(call, callers, duration / 4)  # warm-up, wakes the pools
                    this_round[f"{label} x{callers}"] = throughput(call, callers, duration)
            load = round_meter.other_cores()
            if load is not None and load > NOISY and retries_left > 0:
                retries_left -= 1
                print(f"\n    other processes kept {load:.1f} cores busy: round again", file=sys.stderr)
                continue
            for key, value in this_round.items():
                samples[key].append(value)
            loads.append(load)
            r += 1
        print(file=sys.stderr)
        results.append(
            {
                "shape": list(shape),
                "calls_per_s": {k: statistics.median(v) for k, v in samples.items()},
                "samples": samples,
                "other_load_cores": meter.other_cores(),
                "other_load_cores_per_round": loads,
            }
        )
    return {"job": "threads", "rounds": rounds, "duration_s": duration,
            "machine": machine_info(), "results": results}


def report_text(report: dict[str, Any]) -> str:
    out = []
    for row in report["results"]:
        c = row["calls_per_s"]
        name = "x".join(map(str, row["shape"]))
        load = row.get("other_load_cores")
        noise = "" if load is None else f"; other processes busy on {load:.1f} cores"
        out.append(f"Throughput at {name} (calls/s summed over callers, median of "
                   f"{report['rounds']} rounds{noise})")
        labels = list(dict.fromkeys(k.rsplit(" x", 1)[0] for k in c))
        out.append(format_table(
            ["config", "1 caller", "2 callers", "2 / 1"],
            [[lab, f"{c[lab + ' x1']:.0f}", f"{c[lab + ' x2']:.0f}",
              format_ratio(c[lab + " x2"] / c[lab + " x1"])] for lab in labels],
        ))
        fd2, fd1, one = c["fastdense x2"], c["fastdense x1"], c["fd 1-core x1"]
        pool2, pool1 = c["fd pool x2"], c["fd pool x1"]
        out.append(format_table(
            ["ratio", "measured", "target / issue"],
            [
                ["sgemm: 2 callers / 1 caller", format_ratio(c["sgemm x2"] / c["sgemm x1"]), "issue saw 0.86x"],
                ["sgemm 1-thread: 2 callers / 1 caller", format_ratio(c["sgemm 1-thread x2"] / c["sgemm 1-thread x1"]), "issue saw 1.79x"],
                ["fastdense: 2 callers / 1 caller on 1 core", format_ratio(fd2 / one), ">= 1.70x"],
                ["fastdense: 2 callers / 1 caller", format_ratio(fd2 / fd1), ">= 1.00x"],
                ["fastdense: 1 caller / 1 caller on 1 core", format_ratio(fd1 / one), "~cores for big work"],
                ["fd pool: 2 callers / 1 caller on 1 core", format_ratio(pool2 / one), ">= 1.70x"],
                ["fd pool: 2 callers / 1 caller", format_ratio(pool2 / pool1), ">= 1.00x"],
                ["fd pool: 1 caller / 1 caller on 1 core", format_ratio(pool1 / one), "~cores for big work"],
            ],
        ))
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s (noisier)")
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES),
                        help="comma-separated MxKxN (default: %(default)s)")
    parser.add_argument("--rounds", type=int, help="rounds per configuration (default 5)")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                        help="before each round, wait up to S seconds for a second in which other "
                        "processes keep < 0.25 cores busy (shared machines)")
    parser.add_argument("--retries", type=int, default=0, metavar="N",
                        help=f"per shape, up to N rounds measured again when other processes kept "
                        f"more than {NOISY} cores busy meanwhile")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        assert all(len(s) == 3 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        parser.error(f"--shapes expects MxKxN items like 64x512x512, got {args.shapes!r}")
    rounds = args.rounds or (2 if args.quick else 5)
    duration = 0.3 if args.quick else 0.6
    report = run(shapes, rounds, duration, args.quiet_wait, max(0, args.retries))
    print(f"fastdense {fastdense.__version__} | {os.cpu_count()} cores | "
          f"default policy: {fastdense.config_info()['thread_policy']}")
    print(report_text(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
