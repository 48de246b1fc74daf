"""Rows/s of ``fastdense.dask.predict`` on local Dask clusters against plain ``model.predict``.

The job: the ``fastdense bench`` default model (784-512-512-10 MLP, relu/relu/softmax, float32)
on 1M rows. Contenders, timed in interleaved rounds (one turn each per round) so that every
round gives a paired ratio against plain predict measured moments apart:

    plain          model.predict(x) on the whole NumPy array in this process (fastdense's
                   default threads: all cores)
    1w x 2t        LocalCluster(1 worker process, 2 threads), threads=1 (the default policy:
                   one Dask thread per core, fastdense single-threaded)
    1w x 1t pool   LocalCluster(1 worker process, 1 thread), threads=<cores> (the other
                   policy: one Dask thread, fastdense's pool of every core)
    2w x 1t        LocalCluster(2 worker processes, 1 thread each), threads=1

The Dask input is made on the workers, chunk by chunk (row i of the input is row i % 4096 of
a fixed random block, as in the plain array), and persisted in their memory before the turn,
as the plain array is made before its turn: a turn times the prediction (scheduling, the
model's trip to the workers, the predict tasks, gathering the 40 MB of outputs into this
process), not the making of 3 GB of input in fresh pages. Each cluster holds the input only
during its own turn. Every Dask result is compared bit for bit with the plain one.

    python bench/bench_dask.py                 # 1M rows, 3 rounds
    python bench/bench_dask.py --rows 200000 --rounds 2 --json out.json
    flock /work/coord/bench.lock python bench/bench_dask.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

BASE_ROWS = 4096


def build_model() -> Any:
    from fastdense.benchmark import mlp_weights
    from fastdense.layers import Dense
    from fastdense.models import Sequential

    layers = mlp_weights()
    model = Sequential([Dense(kernel.shape[1], activation=act) for kernel, _, act in layers])
    model.build((None, layers[0][0].shape[0]))
    model.set_weights([w for kernel, bias, _ in layers for w in (kernel, bias)])
    return model


def base_rows() -> np.ndarray:
    """The fixed block the input repeats (made from a seed, so workers need not be sent it)."""
    return np.random.default_rng(0).standard_normal((BASE_ROWS, 784)).astype(np.float32)


def make_rows(block_info: Any = None) -> np.ndarray:
    """Rows start..stop of the input: row i is base_rows()[i % BASE_ROWS]."""
    start, stop = block_info[None]["array-location"][0]
    return np.take(base_rows(), np.arange(start, stop) % BASE_ROWS, axis=0)


def dask_input(rows: int, chunk: int) -> Any:
    import dask.array as da

    chunks = ((chunk,) * (rows // chunk) + ((rows % chunk,) if rows % chunk else ()), (784,))
    return da.map_blocks(make_rows, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=25_000, help="rows per Dask chunk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each round, wait up to this many seconds for other processes to go quiet")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)

    import dask
    import distributed

    import fastdense
    import fastdense.dask as fdd
    from harness import LoadMeter, format_table, machine_info, wait_for_quiet

    cores = os.cpu_count() or 1
    model = build_model()
    x = np.take(base_rows(), np.arange(args.rows) % BASE_ROWS, axis=0)
    meter, meter_start = LoadMeter(), time.perf_counter()

    clusters = {
        "1w x 2t": (dict(n_workers=1, threads_per_worker=cores), 1),
        "1w x 1t pool": (dict(n_workers=1, threads_per_worker=1), cores),
        "2w x 1t": (dict(n_workers=cores, threads_per_worker=1), 1),
    }
    clients = {}
    for label, (kwargs, _) in clusters.items():
        cluster = distributed.LocalCluster(processes=True, dashboard_address=":0", silence_logs=50, **kwargs)
        clients[label] = distributed.Client(cluster, set_as_default=False)

    expected = model.predict(x)
    xd = dask_input(args.rows, args.chunk)
    warm = dask_input(2 * args.chunk, args.chunk)

    def run_dask(label: str, data: Any) -> np.ndarray:
        return clients[label].compute(fdd.predict(model, data, threads=clusters[label][1])).result()

    for label in clusters:                               # rebuild the model and compile its plan
        run_dask(label, warm)

    times: dict[str, list[float]] = {label: [] for label in ["plain", *clusters]}
    same = True
    for _ in range(args.rounds):
        wait_for_quiet(args.quiet_wait)
        start = time.perf_counter()
        model.predict(x)
        times["plain"].append(time.perf_counter() - start)
        for label in clusters:
            held = clients[label].persist(xd)
            with clients[label].as_current():
                distributed.wait(held)
            start = time.perf_counter()
            got = run_dask(label, held)
            times[label].append(time.perf_counter() - start)
            del held
            same = same and np.array_equal(got, expected)
    # the meter counts the clusters' worker and nanny processes as "other": take their CPU time out
    import psutil

    cluster_cpu = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times_ = child.cpu_times()
            cluster_cpu += times_.user + times_.system
    other = meter.other_cores()
    if other is not None:
        other = max(0.0, other - cluster_cpu / (time.perf_counter() - meter_start))
    for client in clients.values():
        cluster = client.cluster
        client.close()
        cluster.close()

    rows = []
    report: dict[str, Any] = {"rows": args.rows, "chunk": args.chunk, "rounds": args.rounds, "same_bits": same,
                              "other_cores_busy": other, "machine": machine_info(), "results": {}}
    for label, values in times.items():
        median = statistics.median(values)
        ratios = [v / p for v, p in zip(values, times["plain"])]
        ratio = statistics.median(ratios)
        best, best_ratio = min(values), min(values) / min(times["plain"])
        report["results"][label] = {"seconds": values, "median_s": median, "rows_per_s": args.rows / median,
                                    "paired_ratio_to_plain": ratio, "best_s": best, "best_ratio_to_plain": best_ratio}
        rows.append([label, f"{median:.2f} s", f"{args.rows / median / 1e3:,.0f}k",
                     "" if label == "plain" else f"{ratio:.2f}x", f"{best:.2f} s",
                     "" if label == "plain" else f"{best_ratio:.2f}x"])
    print(f"fastdense {fastdense.__version__}, dask {dask.__version__}, {cores} cores; {args.rows} rows of "
          f"784-512-512-10 float32, {args.chunk} rows per chunk, median of {args.rounds} rounds")
    print(format_table(["contender", "time", "rows/s", "time / plain (paired)", "best turn", "best / plain best"],
                       rows))
    print(f"Dask results bit-identical to plain predict: {'yes' if same else 'NO'}")
    if other is not None:
        print(f"other processes kept {other:.2f} cores busy on average during the run")
    worst = max(report["results"][label]["paired_ratio_to_plain"] for label in clusters)
    print(f"target: every Dask setup <= 1.2x plain: {'met' if worst <= 1.2 else 'missed'} (worst {worst:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
