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

What a turn times (the issue's question: is anything lost to overhead?). Both sides end with
the full NumPy result in this process's memory -- what ``y.compute()`` gives a user, and what
plain ``predict`` returns -- so both pay for materializing the 40 MB of outputs here. By default
neither side makes its input inside the turn: plain predict gets a ready array, and the Dask
input is made on the workers and persisted in their memory before the turn (row i is row
i % 4096 of a fixed random block on both sides). A Dask turn then times
``client.compute(predict(...)).result()``: building the graph, the model's trip to the workers,
scheduling, the predict tasks, the concatenation of the chunks on a worker (Dask's finalize
task, the same one ``y.compute()`` runs) and fetching the result. ``--with-input`` makes both
sides include making the input instead (plain: the NumPy array, 3 GB of fresh pages; Dask: the
chunks, made inside the predict tasks). Both sides are warm: plain predict ran the full job
once (``expected``) before its first timed call, and each cluster runs one untimed full-size
turn before its timed one (``--no-warm-turn`` skips it). Every round starts each cluster afresh,
with only that cluster alive (an idle cluster's event loops and heartbeats would slow every
other turn), and reports separately what a turn does not include: starting the cluster, and a
first predict of 1000 rows on each worker in turn (imports, the model rebuilt, its plan
compiled). ``--gather`` picks how the client fetches the result: through the scheduler (Dask's
default: two hops when the client is not on a worker), straight from the workers
(``Client(direct_to_workers=True)``), or both, on the same cluster in alternating order. Every
Dask result is compared bit for bit with plain predict.

Columns: "CPU" is the CPU time of this process and the cluster's during the turn: the wall-time
ratio is the target, the CPU ratio asks the same question (what did Dask add?) without the other
processes' noise. "busy" is the predict tasks' compute time over the turn's wall time times the
cluster's threads; "first task" the time from the call to the first task's start; "tail" from
the last predict task's end to the result in hand, split into "finalize" (to the end of the
concatenation task) and "fetch" (from there to the NumPy array in this process).

    python bench/bench_dask.py                 # 1M rows, 3 rounds
    python bench/bench_dask.py --rows 200000 --rounds 2 --json out.json
    python bench/bench_dask.py --gather both --setups "2w x 1t"
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
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

BASE_ROWS = 4096
TARGET = 1.2          # the bar: a Dask setup within 1.2x plain predict's time


class Setup(NamedTuple):
    """One local cluster and the fastdense thread policy its workers use."""

    workers: int
    threads_per_worker: int
    fastdense_threads: int


class Turn(NamedTuple):
    """One timed Dask predict and what happened inside it."""

    seconds: float
    busy: float           # predict tasks' compute time / (wall x cluster threads)
    first_task: float     # seconds from the call to the first task's start
    tail: float           # seconds from the last predict task's end to the result in hand
    finalize: float       # of the tail: the concatenation task on a worker (and its input transfers)
    fetch: float          # of the tail: from the concatenation's end to the NumPy result in this process
    tasks: int


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


def numpy_input(rows: int, base: np.ndarray) -> np.ndarray:
    return np.take(base, np.arange(rows) % BASE_ROWS, axis=0)


def make_rows(block_info: Any = None) -> np.ndarray:
    """Rows start..stop of the input: row i is base_rows()[i % BASE_ROWS]."""
    start, stop = block_info[None]["array-location"][0]
    return np.take(base_rows(), np.arange(start, stop) % BASE_ROWS, axis=0)


def dask_input(rows: int, chunk: int) -> Any:
    import dask.array as da

    chunks = ((chunk,) * (rows // chunk) + ((rows % chunk,) if rows % chunk else ()), (784,))
    return da.map_blocks(make_rows, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


class CpuMeter:
    """CPU time of this process and its children (the cluster) per timed turn, and the cores
    other processes kept busy meanwhile (Linux; None elsewhere)."""

    def __init__(self) -> None:
        self.available = os.path.exists("/proc/stat")
        self.others = self.wall = 0.0
        self.last: float | None = None      # CPU-seconds of ours in the last turn

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        import psutil

        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        ours = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                ours += times.user + times.system
        return time.perf_counter(), machine, ours

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        start = self._sample() if self.available else None
        yield
        if start is not None:
            end = self._sample()
            self.wall += end[0] - start[0]
            self.last = end[2] - start[2]
            self.others += max(0.0, (end[1] - start[1]) - self.last)

    def other_cores(self) -> float | None:
        return self.others / self.wall if self.available and self.wall > 0 else None


def timed_dask_turn(client: Any, model: Any, data: Any, fastdense_threads: int, cores: int) -> tuple[Turn, np.ndarray]:
    import distributed

    import fastdense.dask as fdd

    with distributed.get_task_stream(client) as stream:
        called = time.time()
        start = time.perf_counter()
        got = client.compute(fdd.predict(model, data, threads=fastdense_threads)).result()
        seconds = time.perf_counter() - start
        done = time.time()
    spans = [(s["start"], s["stop"]) for task in stream.data if "fastdense-predict" in str(task["key"])
             for s in task["startstops"] if s["action"] == "compute"]
    final = [(s["start"], s["stop"]) for task in stream.data if "finalize" in str(task["key"])
             for s in task["startstops"]]
    busy = sum(stop - begin for begin, stop in spans) / (seconds * cores)
    first = min(begin for begin, _ in spans) - called
    last = max(stop for _, stop in spans)
    final_end = max((stop for _, stop in final), default=last)
    return Turn(seconds, busy, first, done - last, final_end - last, done - final_end, len(spans)), got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=25_000, help="rows per Dask chunk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", help="comma-separated subset of: 1w x 2t, 1w x 1t pool, 2w x 1t")
    parser.add_argument("--with-input", action="store_true",
                        help="both sides make their input inside the timed turn")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each round, wait up to this many seconds for other processes to go quiet")
    parser.add_argument("--no-warm-turn", dest="warm_turn", action="store_false",
                        help="skip the untimed full-size Dask turn before the timed one")
    parser.add_argument("--gather", choices=["scheduler", "direct", "both"], default="scheduler",
                        help="how the client fetches the result: through the scheduler (Dask's default), "
                             "straight from the workers (Client(direct_to_workers=True)), or both in each round")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)

    import dask
    import distributed

    import fastdense
    import fastdense.dask
    from harness import format_table, machine_info, wait_for_quiet

    cores = os.cpu_count() or 1
    setups = {
        "1w x 2t": Setup(1, cores, 1),
        "1w x 1t pool": Setup(1, 1, cores),
        "2w x 1t": Setup(cores, 1, 1),
    }
    if args.setups:
        wanted = [name.strip() for name in args.setups.split(",")]
        unknown = [name for name in wanted if name not in setups]
        if unknown:
            parser.error(f"--setups: unknown {unknown}; choose from {list(setups)}")
        setups = {name: setups[name] for name in wanted}
    model = build_model()
    base = base_rows()
    expected = model.predict(numpy_input(args.rows, base))
    x = None if args.with_input else numpy_input(args.rows, base)
    xd = dask_input(args.rows, args.chunk)
    meter = CpuMeter()
    # contenders: every setup with each way of fetching the result (label -> setup, direct gather)
    gathers = ["scheduler", "direct"] if args.gather == "both" else [args.gather]
    contenders = {label if mode == gathers[0] and len(gathers) == 1 else f"{label}, {mode}": (label, mode == "direct")
                  for label in setups for mode in gathers}
    labels = ["plain", *contenders]
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    times: dict[str, list[float]] = {label: [] for label in labels}
    turns: dict[str, list[Turn]] = {label: [] for label in contenders}
    started: dict[str, list[float]] = {label: [] for label in setups}
    first: dict[str, list[float]] = {label: [] for label in setups}
    same = True
    for round_index in range(args.rounds):
        wait_for_quiet(args.quiet_wait)
        with meter.measure():
            start = time.perf_counter()
            model.predict(numpy_input(args.rows, base) if x is None else x)
            times["plain"].append(time.perf_counter() - start)
        cpu["plain"].append(meter.last or 0.0)
        for setup_label, setup in setups.items():
            start = time.perf_counter()
            cluster = distributed.LocalCluster(n_workers=setup.workers, threads_per_worker=setup.threads_per_worker,
                                               processes=True, dashboard_address=":0", silence_logs=50)
            clients = {direct: distributed.Client(cluster, set_as_default=False, direct_to_workers=direct)
                       for direct in sorted({d for name, d in contenders.values() if name == setup_label})}
            client = next(iter(clients.values()))
            started[setup_label].append(time.perf_counter() - start)
            try:
                start = time.perf_counter()              # the model rebuilt, its plan compiled, per worker
                warm = fastdense.dask.predict(model, dask_input(1000, 1000), threads=setup.fastdense_threads)
                for worker in client.scheduler_info()["workers"]:      # each worker, whatever the scheduler prefers
                    client.compute(warm, workers=[worker]).result()
                first[setup_label].append(time.perf_counter() - start)
                data = xd
                if x is not None:
                    data = client.persist(xd)
                    with client.as_current():
                        distributed.wait(data)
                if args.warm_turn:          # as plain predict made `expected` before its first timed call
                    for c in clients.values():
                        c.compute(fastdense.dask.predict(model, data, threads=setup.fastdense_threads)).result()
                mine = [label for label, (name, _) in contenders.items() if name == setup_label]
                if round_index % 2:
                    mine.reverse()                      # the gather modes take turns going first
                for label in mine:
                    with meter.measure():
                        turn, got = timed_dask_turn(clients[contenders[label][1]], model, data,
                                                    setup.fastdense_threads, setup.workers * setup.threads_per_worker)
                    cpu[label].append(meter.last or 0.0)
                    turns[label].append(turn)
                    times[label].append(turn.seconds)
                    same = same and np.array_equal(got, expected)
                    del got
                del data
            finally:
                for c in clients.values():
                    c.close()
                cluster.close()

    report: dict[str, Any] = {"rows": args.rows, "chunk": args.chunk, "rounds": args.rounds,
                              "gather": args.gather, "warm_turn": args.warm_turn,
                              "with_input": args.with_input, "same_bits": same, "other_cores_busy": meter.other_cores(),
                              "machine": machine_info(), "dask": dask.__version__, "results": {}}
    rows, verdicts = [], []
    for label, values in times.items():
        median = statistics.median(values)
        cpu_s = statistics.median(cpu[label])
        result: dict[str, Any] = {"seconds": values, "median_s": median, "rows_per_s": args.rows / median,
                                  "cpu_s": cpu[label]}
        row = [label, f"{median:.2f} s", f"{args.rows / median / 1e3:,.0f}k", f"{cpu_s:.2f} s"]
        if label == "plain":
            row += ["", "", "", "", "", "", ""]
        else:
            ratios = [v / p for v, p in zip(values, times["plain"])]
            ratio = statistics.median(ratios)
            med = {field: statistics.median(getattr(t, field) for t in turns[label])
                   for field in ("busy", "first_task", "tail", "finalize", "fetch")}
            cpu_ratio = statistics.median(c / p for c, p in zip(cpu[label], cpu["plain"]))
            result.update(paired_ratios=ratios, paired_ratio_to_plain=ratio, cpu_ratio_to_plain=cpu_ratio,
                          cluster_start_s=started[contenders[label][0]],
                          first_predict_s=first[contenders[label][0]], tasks=turns[label][0].tasks, **med)
            row += [f"{cpu_ratio:.2f}x", " ".join(f"{r:.2f}" for r in ratios), f"{ratio:.2f}x", f"{med['busy']:.0%}",
                    f"{med['first_task']:.2f} s / {med['tail']:.2f} s ({med['finalize']:.2f} + {med['fetch']:.2f})",
                    f"{statistics.median(started[contenders[label][0]]):.1f} s",
                    f"{statistics.median(first[contenders[label][0]]):.2f} s"]
            verdicts.append(f"{label} {ratio:.2f}x {'met' if ratio <= TARGET else 'MISSED'}")
        report["results"][label] = result
        rows.append(row)
    made = "both sides make the input in the turn" if args.with_input else "input made before the turn on both sides"
    print(f"fastdense {fastdense.__version__}, dask {dask.__version__}, {cores} cores; {args.rows} rows of "
          f"784-512-512-10 float32, {args.chunk} rows per chunk, {made}; {args.rounds} rounds, medians")
    print(format_table(["contender", "time", "rows/s", "CPU", "CPU / plain", "time / plain per round", "median", "busy",
                        "first task / tail (finalize + fetch)", "cluster start", "first predict"], rows))
    print(f"Dask results bit-identical to plain predict: {'yes' if same else 'NO'}")
    other = meter.other_cores()
    if other is not None:
        print(f"other processes kept {other:.2f} of {cores} cores busy on average during the timed turns")
    print(f"target <= {TARGET}x plain (median of the paired ratios): " + ", ".join(verdicts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
