"""GFLOP/s per core of every float32 GEMM path this CPU runs, beside its FMA peak.

Builds tests/c/gemm_bench.c (with csrc/fd_gemm.c and csrc/fd_cpu.c) with the system's C
compiler and runs it once per path (FASTDENSE_CPU_PATH=avx2, avx512: a path the CPU lacks
falls back and is reported as not run; avx512 twice, under Intel's driver and AMD's, through
FASTDENSE_CPU_VENDOR), on one thread:

    peak      a register-only FMA loop per vector width (12 independent chains)
    packed    fd_gemm_packed_f32 on weights packed once (what a Dense layer runs)
    plain     fd_gemm_kblocks_f32 on row-major weights packed per call (ops.dense on an ndarray)

Times are this thread's CPU time, so time the host gives other processes is not counted; a
hypervisor's steal time still is, and so are other processes' effects on the clock and the
caches: the last line says how many cores they kept busy. Plain C, no Python in the timed loop:
the kernel's own speed, to compare with the peak (issue 15's target: >= 90 %, marked per row).
Two tables: "unpaired" (the peak measured once, best of 5, at the start; each GEMM the best of 7
rounds, later) and "paired" (the target's rule: the path's FMA loop timed right before each GEMM
sample, 10 ms each, 21 pairs; medians of the GEMM's GFLOP/s, of the loop's and of the ratio per
pair). A clock that drifts over the run (shared turbo, other tenants) moves the unpaired ratio,
much less the paired one. A third table, "peers", pairs the same loop with the single-threaded
float32 GEMM of the BLAS libraries a user has at hand, on the same shapes: numpy's matmul
(OpenBLAS in numpy's wheels) and torch's (oneMKL in torch's x86 wheels), each skipped when not
installed. They show what the best-tuned GEMMs reach of the same loop on this CPU.

    python bench/bench_paths.py                         # the default shapes
    python bench/bench_paths.py --shapes 288x1024x1024,64x784x512 --cc clang
    python bench/bench_paths.py --mlp                   # and the MLP's layers (batch 4096, plan blocks)
    python bench/bench_paths.py --no-peers              # without numpy's and torch's GEMMs
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["tests/c/gemm_bench.c", "csrc/fd_gemm.c", "csrc/fd_cpu.c"]


class PathRun(NamedTuple):
    """One path the harness runs: its row label, FASTDENSE_CPU_PATH, and FASTDENSE_CPU_VENDOR (the
    vendor whose driver runs the path's tiles: same tiles, same bits; None: the CPU's own)."""
    label: str
    path: str
    vendor: str | None = None


# avx512 under both vendors' drivers (Intel's packs x, AMD's reads it in place), so that a machine
# of either family shows which one its family should take (fd_gemm.c the_path, issue 15)
PATHS = [PathRun("avx2", "avx2"), PathRun("avx512/intel", "avx512", "intel"),
         PathRun("avx512/amd", "avx512", "amd")]
SHAPES = ["288x1024x1024", "1024x1024x1024", "32x512x512", "256x784x512", "4096x512x512"]
# the 784-512-512-10 MLP's three layers (`fastdense bench`) at batch 4096 (ops.dense on the whole
# batch) and in the 512-sample blocks its compiled plan runs them in at that batch: --mlp
MLP_SHAPES = ["4096x784x512", "4096x512x512", "4096x512x10", "512x784x512", "512x512x512", "512x512x10"]
TARGET = 0.90   # issue 15: GEMM GFLOP/s >= 90 % of the register-only FMA peak of its path


def busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has been busy (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


PAIRS = 21           # as tests/c/gemm_bench.c's time_paired
PEER_SECONDS = 0.01  # each peer sample: calls for at least this much of the thread's CPU time
# the peers run in a child process started with these set, so each library's GEMM is single-threaded
# from its first import (OPENBLAS_CORETYPE, if the machine sets it, is left alone)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def build(cc: str, out: Path, shared: bool = False) -> Path:
    """gemm_bench, or with shared=True the same sources as a library (its gemm_bench_loop, for the peers)."""
    target = out / ("libgemm_bench.so" if shared else "gemm_bench")
    subprocess.run([cc, "-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", f"-I{ROOT / 'csrc'}",
                    *(["-shared", "-fPIC"] if shared else []),
                    *(str(ROOT / s) for s in SOURCES), "-o", str(target), "-lpthread", "-lm"], check=True)
    return target


def peer_gemms() -> dict[str, Callable[[Any, Any], Callable[[], object]]]:
    """name -> prepare(x, w) for each installed peer: prepare takes float32 NumPy operands and
    returns the call that multiplies them in that library, single-threaded (child process only)."""
    peers: dict[str, Callable[[Any, Any], Callable[[], object]]] = {}
    try:
        import numpy as np
        peers[f"numpy {np.__version__}"] = lambda x, w: lambda: np.matmul(x, w)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(1)
        peers[f"torch {torch.__version__.split('+')[0]}"] = (
            lambda x, w: functools.partial(torch.mm, torch.from_numpy(x), torch.from_numpy(w)))
    except ImportError:
        pass
    return peers


def peer_worker(lib_path: str, shapes: list[list[str]]) -> None:
    """Child process: per peer and shape, PAIRS pairs of (gemm_bench_loop, then the peer's GEMM for
    PEER_SECONDS of thread CPU time) after one warm-up pair; prints "peer <name> M K N <GFLOP/s> <loop>
    <ratio>" with the medians, as gemm_bench's paired command does."""
    import numpy as np
    loop = ctypes.CDLL(lib_path).gemm_bench_loop
    loop.restype = ctypes.c_double
    rng = np.random.default_rng(0)
    for name, prepare in peer_gemms().items():
        for m, k, n in ((int(v) for v in shape) for shape in shapes):
            gemm = prepare(rng.uniform(-0.5, 0.5, (m, k)).astype(np.float32),
                           rng.uniform(-0.5, 0.5, (k, n)).astype(np.float32))
            gflops, loops, ratios = [], [], []
            for pair in range(-1, PAIRS):
                peak = loop()
                calls, t0 = 0, time.thread_time()
                while True:
                    gemm()
                    calls += 1
                    t = time.thread_time() - t0
                    if t >= PEER_SECONDS:
                        break
                if pair < 0:
                    continue
                g = 2.0 * m * k * n * calls / t * 1e-9
                gflops.append(g)
                loops.append(peak)
                ratios.append(g / peak if peak else 0.0)
            print(f"peer {name.replace(' ', '_')} {m} {k} {n} {statistics.median(gflops):.1f} "
                  f"{statistics.median(loops):.1f} {statistics.median(ratios):.3f}", flush=True)


def run(exe: Path, path: str, *args: str, vendor: str | None = None) -> list[list[str]]:
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    if vendor:
        env["FASTDENSE_CPU_VENDOR"] = vendor
    done = subprocess.run([str(exe), *args], env=env, check=True, capture_output=True, text=True)
    return [line.split() for line in done.stdout.splitlines()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated MxKxN")
    parser.add_argument("--mlp", action="store_true",
                        help=f"also the MLP's layers at batch 4096 and in its plan's blocks ({', '.join(MLP_SHAPES)})")
    parser.add_argument("--cc", default=os.environ.get("CC") or shutil.which("cc") or "gcc")
    parser.add_argument("--no-peers", action="store_true", help="skip numpy's and torch's GEMMs")
    parser.add_argument("--peer-worker", metavar="LIB", help=argparse.SUPPRESS)   # the peers' child process
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(args.peer_worker, [s.split("x") for s in args.shapes.split(",")])
        return
    shapes = [s.split("x") for s in args.shapes.split(",") + (MLP_SHAPES if args.mlp else [])]
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(args.cc, Path(tmp))
        wall0, busy0, kids0 = time.perf_counter(), busy_cpu_seconds(), os.times()
        peaks = {row[1]: float(row[2]) for row in run(exe, "avx512", "peak")}
        print(f"CPU: {cpu_name()} ({platform.machine()}), compiler {args.cc}, one thread, thread CPU time")
        own = run(exe, os.environ.get("FASTDENSE_CPU_PATH", "avx512"), "gemm", "6", "64", "64",
                  vendor=os.environ.get("FASTDENSE_CPU_VENDOR"))
        print(f"this CPU's own float32 path: {' '.join(own[0][1:-5]) if own and own[0][1] != 'none' else 'BLAS'}")
        for isa, gflops in peaks.items():
            print(f"FMA peak {isa:7s} {gflops:7.1f} GFLOP/s")
        best = max(peaks.values(), default=0.0)
        print("\nunpaired: the peak above against each GEMM's best round")
        print(f"{'path':12s} {'kernel':13s} {'entry':6s} {'M x K x N':>16s} {'GFLOP/s':>8s} "
              f"{'% path peak':>11s} {'% best peak':>11s}  target {TARGET:.0%} of path peak")
        for p in PATHS:
            rows = run(exe, p.path, "gemm", *(v for shape in shapes for v in shape), vendor=p.vendor)
            if rows and rows[0][:2] == ["gemm", "none"]:
                print(f"{p.label:12s} not run: no packed GEMM on this CPU")
                continue
            # the driver's name (before the entry), less its reasons in parentheses
            kernel = " ".join(rows[0][1:-5]).split(" (")[0] if rows else "?"
            if not kernel.startswith(p.path):
                print(f"{p.label:12s} not run: this CPU lacks it (FASTDENSE_CPU_PATH={p.path} runs {kernel})")
                continue
            for row in rows:
                entry, m, k, n, gflops = row[-5], row[-4], row[-3], row[-2], float(row[-1])
                peak = peaks.get(p.path, 0.0)
                met = "met" if peak and gflops >= TARGET * peak else "missed"
                print(f"{p.label:12s} {kernel:13s} {entry:6s} {m + 'x' + k + 'x' + n:>16s} {gflops:8.1f} "
                      f"{100 * gflops / peak if peak else 0:10.0f}% {100 * gflops / best if best else 0:10.0f}%  {met}")
        print("\npaired: the path's FMA loop right before each GEMM sample, medians of 21 pairs")
        print(f"{'path':12s} {'entry':6s} {'M x K x N':>16s} {'GFLOP/s':>8s} {'loop':>7s} {'ratio':>6s}  "
              f"target {TARGET:.0%}")
        for p in PATHS:
            rows = run(exe, p.path, "paired", *(v for shape in shapes for v in shape), vendor=p.vendor)
            if not rows or rows[0][:2] == ["paired", "none"] or not rows[0][1].startswith(p.path):
                continue
            for row in rows:
                entry, m, k, n = row[-7], row[-6], row[-5], row[-4]
                gflops, loop, ratio = float(row[-3]), float(row[-2]), float(row[-1])
                met = "met" if ratio >= TARGET else "missed"
                print(f"{p.label:12s} {entry:6s} {m + 'x' + k + 'x' + n:>16s} {gflops:8.1f} {loop:7.1f} "
                      f"{100 * ratio:5.0f}%  {met}")
        if not args.no_peers:
            print_peers(args.cc, Path(tmp), shapes)
        busy1, kids1 = busy_cpu_seconds(), os.times()
        if busy0 is not None and busy1 is not None:
            ours = kids1.children_user + kids1.children_system - kids0.children_user - kids0.children_system
            others = max(0.0, (busy1 - busy0 - ours) / (time.perf_counter() - wall0))
            print(f"\nother processes kept {others:.1f} of {os.cpu_count()} cores busy during the run (noise)")


def print_peers(cc: str, tmp: Path, shapes: list[list[str]]) -> None:
    """The peers' table: their GEMMs paired with the same FMA loop, in a single-threaded child process."""
    print("\npeers: the same loop right before each sample of another library's float32 GEMM, one thread")
    lib = build(cc, tmp, shared=True)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--peer-worker", str(lib),
                           "--shapes", ",".join("x".join(shape) for shape in shapes)],
                          env=dict(os.environ, **ONE_THREAD), capture_output=True, text=True)
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("peer ")]
    if done.returncode != 0:
        print(f"  failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    elif not rows:
        print("  not run: neither numpy nor torch is installed")
    if not rows:
        return
    print(f"{'library':16s} {'M x K x N':>16s} {'GFLOP/s':>8s} {'loop':>7s} {'ratio':>6s}")
    for row in rows:
        name, m, k, n, gflops, loop, ratio = row[1:8]
        print(f"{name.replace('_', ' '):16s} {m + 'x' + k + 'x' + n:>16s} {float(gflops):8.1f} {float(loop):7.1f} "
              f"{100 * float(ratio):5.0f}%")


if __name__ == "__main__":
    main()
