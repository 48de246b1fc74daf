"""Benchmarks: fastdense against the libraries a user could pick instead.

``python -m fastdense bench`` runs the built-in default job, a 784-512-512-10 MLP
(relu, relu, softmax, float32, weights made in code from fixed seeds) at batch sizes
1, 32, 256 and 4096, timed against numpy layer by layer and, when installed, torch,
onnxruntime and Keras. It prints median times and ratios measured in the same run::

    python -m fastdense bench               # about 30 s
    python -m fastdense bench --quick       # about 10 s, noisier
    python -m fastdense bench --json mlp.json --plot mlp.png

This module holds what that command needs: the timing loop (:func:`time_interleaved`), paired
ratios, the table and plot, float64 references and one contender builder per peer (the
:data:`PEERS` table: a new peer is a function and a row). The scripts in ``bench/`` use the same
pieces through ``bench/harness.py``, which adds what only they need.

Method (:func:`time_interleaved`): contenders take turns of about 50 ms each, round-robin
with the order rotating every round, so a burst of load from elsewhere on the machine hits
all of them alike; before each turn the benchmark sleeps 0.15 s so that the previous
contender's spinning thread pool (OpenBLAS, OpenMP, onnxruntime) goes idle; a turn is
samples of back-to-back calls lasting about 10 ms each; the reported time is the median
time per call over all samples, and a ratio between two contenders is paired
(:func:`paired_ratio`): the median over rounds of their ratio within a round. Every
contender's result is checked against a float64 numpy reference before anything is timed,
and the report says how many cores other processes kept busy meanwhile (noise: on a shared
2-core machine, threaded BLAS slows down many-fold when another process takes a core).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
import timeit
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np

__all__ = [
    "LoadMeter",
    "SETTLE",
    "Timing",
    "time_interleaved",
    "format_table",
    "format_time",
    "fastdense_threads",
    "machine_info",
    "run_mlp",
    "PEERS",
    "main",
]

# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Per-call times of one contender: ``samples`` in seconds per call, one per sample."""

    name: str
    calls_per_sample: int
    samples: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round each sample was taken in

    @property
    def median(self) -> float:
        return float(np.median(self.samples)) if self.samples else math.nan

    @property
    def spent(self) -> float:
        """Seconds spent in timed calls so far."""
        return sum(self.samples) * self.calls_per_sample

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": min(self.samples) if self.samples else math.nan,
            "calls_per_sample": self.calls_per_sample,
            "samples_s": self.samples,
            "sample_rounds": self.rounds,
        }


def time_interleaved(
    contenders: Mapping[str, str | Callable[[], object]],
    namespace: Mapping[str, Any] | None = None,
    *,
    min_time: float = 0.2,
    min_samples: int = 7,
    sample_time: float = 0.01,
    turn_time: float = 0.05,
    settle: float = 0.0,
    warmup: float = 0.05,
    max_time: float = 30.0,
    contexts: Mapping[str, Callable[[], ContextManager[Any]]] | None = None,
    wake: float = 0.05,
) -> dict[str, Timing]:
    """Time several contenders in turns, round-robin; return a :class:`Timing` per name.

    A contender is a statement string run in ``namespace`` (inlined into the timing loop
    like :mod:`timeit` does, so no extra Python call is measured) or a zero-argument
    callable. A sample is ``n`` back-to-back calls, ``n`` chosen so it lasts about
    ``sample_time``; a turn is about ``turn_time`` of samples of one contender. Rounds give
    every contender one turn, in an order that rotates, until each contender has
    ``min_samples`` samples (3 for contenders slower than 50 ms a call) and ``min_time``
    seconds of timed calls, or ``max_time`` has passed.

    Fairness on a small shared machine: a burst of load from elsewhere hits all contenders
    alike, since their turns alternate. But thread pools of different libraries disturb
    each other: OpenBLAS workers spin for about 0.1 s after each call, on the cores the
    next contender needs. ``settle`` sleeps that long before every turn (use it when the
    contenders use different thread pools), and each turn begins with ``wake`` seconds of
    untimed calls (none for contenders slower than 5 ms a call): they wake the contender's
    own pool, and after a pause this host takes about 30 ms to run at full speed again
    (measured: the benchmark MLP at batch 1 goes from 120 to 40 us a call over its first
    30 ms, onnxruntime's from 100 to 60 us). Before any timing each contender runs untimed for
    ``warmup`` seconds (first-touch page faults, lazy set-up, allocator thresholds).
    ``contexts`` maps a name to a context-manager factory entered (untimed) around each of
    that contender's turns, for settings such as a thread count that apply to it alone.

    >>> import numpy as np
    >>> t = time_interleaved({"add": "a + a"}, {"a": np.ones(4)}, min_time=0.01)
    >>> t["add"].median > 0
    True
    """
    ns = dict(namespace or {})
    timers = {name: timeit.Timer(stmt, globals=ns) for name, stmt in contenders.items()}
    contexts = contexts or {}
    timings: dict[str, Timing] = {}
    wake_calls: dict[str, int] = {}
    for name, timer in timers.items():
        with contexts.get(name, contextlib.nullcontext)():
            per_call = _calibrate(timer, sample_time, warmup)
        timings[name] = Timing(name, max(1, int(sample_time / per_call)))
        wake_calls[name] = int(0.005 / per_call)  # about 5 ms of calls; none for slow ones

    def needs_more(t: Timing) -> bool:
        wanted = min_samples if not t.samples or t.median < 0.05 else 3
        return len(t.samples) < wanted or t.spent < min_time

    names = list(timers)
    start = time.perf_counter()
    rounds = 0
    while any(needs_more(t) for t in timings.values()):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            t, timer = timings[name], timers[name]
            if settle:
                time.sleep(settle)
            with contexts.get(name, contextlib.nullcontext)():
                if wake_calls[name]:
                    wake_end = time.perf_counter() + wake
                    while time.perf_counter() < wake_end:
                        timer.timeit(wake_calls[name])
                turn_start = time.perf_counter()
                while True:
                    t.samples.append(timer.timeit(t.calls_per_sample) / t.calls_per_sample)
                    t.rounds.append(rounds)
                    if time.perf_counter() - turn_start >= turn_time:
                        break
        rounds += 1
        if time.perf_counter() - start > max_time and all(len(t.samples) >= 3 for t in timings.values()):
            break
    return timings


def paired_ratio(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Time ratio a / b from two contenders' :meth:`Timing.to_dict` records of one
    :func:`time_interleaved` run: the median over rounds of (a's median sample in that round) /
    (b's median sample in that round).

    Both took a turn in every round, a second or two apart at most, so each round's ratio
    compares them under the same state of the machine; the median of those ratios is not
    moved by the host slowing down for a few rounds, which moves the median times of
    whichever contenders had more of their turns then. NaN if no round has samples of both
    (records without rounds, from older JSON files).

    >>> a = {"samples_s": [2.0, 4.0, 20.0], "sample_rounds": [0, 1, 2]}
    >>> b = {"samples_s": [1.0, 2.0, 10.0], "sample_rounds": [0, 1, 2]}
    >>> paired_ratio(a, b)
    2.0
    """

    def per_round(rec: Mapping[str, Any]) -> dict[int, float]:
        groups: dict[int, list[float]] = {}
        for value, r in zip(rec.get("samples_s", ()), rec.get("sample_rounds", ())):
            groups.setdefault(r, []).append(value)
        return {r: float(np.median(v)) for r, v in groups.items()}

    ra, rb = per_round(a), per_round(b)
    ratios = [ra[r] / rb[r] for r in ra if r in rb and rb[r] > 0]
    return float(np.median(ratios)) if ratios else math.nan


def _calibrate(timer: timeit.Timer, sample_time: float, warmup: float) -> float:
    """Seconds per call: the fastest per-call time of growing batches of calls, run for at
    least ``warmup`` seconds and until one batch lasts a tenth of ``sample_time``.

    The fastest batch, not the last one: a single slow batch (a cold first call, a burst of
    load) would make every sample of that contender a few calls long, and the median of short
    samples drops the slow calls that the median of long samples includes.
    """
    calls, spent, best = 1, 0.0, math.inf
    while True:
        elapsed = timer.timeit(calls)
        spent += elapsed
        best = min(best, elapsed / calls)
        if (elapsed >= sample_time / 10 and spent >= warmup) or calls >= 1 << 22:
            return max(best, 1e-9)
        if elapsed < sample_time / 10:
            calls *= 10 if elapsed < sample_time / 100 else 2


SETTLE = 0.15
"""Seconds to sleep before each turn when contenders use different thread pools: OpenBLAS
workers spin for 2**28 TSC ticks (about 0.11 s at 2.5 GHz) after a call before sleeping."""


# --------------------------------------------------------------------------- output


def format_time(seconds: float) -> str:
    """Human time with three significant digits: ``format_time(1.5e-6) == '1.50 us'``."""
    if seconds != seconds:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            break
    else:
        unit, scale = "ns", 1e-9
    return f"{seconds / scale:.3g} {unit}"


def format_ratio(ratio: float) -> str:
    return "-" if ratio != ratio else f"{ratio:.2f}x"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table: first column left-aligned, the rest right-aligned.

    >>> print(format_table(["a", "b"], [["x", 1]]))
    a  b
    -  -
    x  1
    """
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(cells[0]), line(rule)] + [line(r) for r in cells[1:]])


def machine_info() -> dict[str, Any]:
    """Versions and thread pools of everything that takes part in a benchmark."""
    import scipy

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    import fastdense

    info["fastdense"] = fastdense.__version__
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "filepath")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    for peer in PEERS:
        module = sys.modules.get(peer)
        if module is not None:
            info[peer] = getattr(module, "__version__", "?")
    return info


class LoadMeter:
    """How many cores other processes kept busy while a benchmark ran (Linux; else None).

    >>> meter = LoadMeter()
    >>> load = meter.other_cores()  # busy cores outside this process since creation
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(wall clock, busy CPU-seconds of the whole machine, CPU-seconds of this process)."""
        try:
            with open("/proc/stat") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:9]]
            hz = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(ticks) - ticks[3] - ticks[4]  # all minus idle and iowait
        own = os.times()
        return time.perf_counter(), busy / hz, own.user + own.system

    def other_cores(self) -> float | None:
        """Average number of cores busy with other processes since this meter started."""
        end = self._sample()
        if end is None or self._start is None or end[0] <= self._start[0]:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self._start))
        return max(0.0, (busy - own) / wall)


class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.label = ""

    def update(self, done: int | None = None, label: str | None = None) -> None:
        if done is not None:
            self.done = min(done, self.total)
        if label is not None:
            self.label = label
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {self.done}/{self.total} {self.label}"
        if self.tty:
            sys.stderr.write("\r" + text.ljust(78)[:110])
        elif label is not None:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


@contextlib.contextmanager
def fastdense_threads(n: int | None) -> Iterator[None]:
    """``fastdense.set_num_threads(n)`` inside the block, the default policy restored after
    (``n=None``: leave the policy alone)."""
    if n is None:
        yield
        return
    import fastdense

    fastdense.set_num_threads(n)
    try:
        yield
    finally:
        fastdense.set_num_threads(None)


# --------------------------------------------------------------------------- references


SQRT_HALF = math.sqrt(0.5)


def numpy_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The plain numpy/scipy form a user would write for ``name`` (new array out)."""
    from scipy.special import erf, expit

    def softmax(y: np.ndarray) -> np.ndarray:
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    table: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "linear": lambda y: y,
        "relu": lambda y: np.maximum(y, 0),
        "gelu": lambda y: 0.5 * y * (1.0 + erf(y * SQRT_HALF)),
        "sigmoid": expit,
        "tanh": np.tanh,
        "softmax": softmax,
    }
    if name not in table:
        raise ValueError(f"benchmarks know activations {sorted(table)}, got {name!r}")
    return table[name]


def reference(x: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> np.ndarray:
    """float64 forward pass through ``(kernel, bias, activation)`` layers."""
    h = x.astype(np.float64)
    for kernel, bias, act in layers:
        h = numpy_activation(act)(h @ kernel.astype(np.float64) + bias.astype(np.float64))
    return h


def agrees(result: Any, expected: np.ndarray, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    """True when ``result`` (numpy, torch tensor or a list holding one) matches ``expected``."""
    if isinstance(result, (list, tuple)):
        result = result[0]
    if hasattr(result, "detach"):
        result = result.detach().numpy()
    result = np.asarray(result)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    return result.shape == expected.shape and bool(
        np.allclose(result, expected, rtol=rtol, atol=atol * scale)
    )


# --------------------------------------------------------------------------- peers


def import_peer(name: str) -> Any | None:
    """Import an optional peer library, or None when it is missing or broken."""
    try:
        if name == "keras":
            os.environ.setdefault("KERAS_BACKEND", "torch")
        return __import__(name)
    except Exception:  # peers are optional; a broken install counts as missing
        return None


def torch_sequential(torch: Any, layers: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> Any:
    """An ``nn.Sequential`` of Linear + activation modules holding ``layers``' weights."""
    nn = torch.nn
    modules = []
    for kernel, bias, act in layers:
        linear = nn.Linear(kernel.shape[0], kernel.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            linear.bias.copy_(torch.from_numpy(bias))
        modules.append(linear)
        modules.append(
            {
                "linear": nn.Identity(),
                "relu": nn.ReLU(),
                "gelu": nn.GELU(),
                "sigmoid": nn.Sigmoid(),
                "tanh": nn.Tanh(),
                "softmax": nn.Softmax(dim=-1),
            }[act]
        )
    return nn.Sequential(*modules).eval()


def onnx_session(layers: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> Any | None:
    """An onnxruntime session running Gemm + activation nodes for ``layers``.

    Threads: ``intra_op_num_threads`` = cores. gelu uses the ``Gelu`` op (opset 20) and
    falls back to the erf formula when the runtime lacks it. Returns None without
    onnx/onnxruntime.
    """
    onnx = import_peer("onnx")
    ort = import_peer("onnxruntime")
    if onnx is None or ort is None:
        return None
    for native_gelu in (True, False):
        model = _onnx_model(onnx, layers, native_gelu)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception:
            if not native_gelu:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _onnx_model(onnx: Any, layers: Sequence[tuple[np.ndarray, np.ndarray, str]], native_gelu: bool) -> Any:
    helper, TensorProto = onnx.helper, onnx.TensorProto
    nodes, inits = [], []
    h = "x"
    for i, (kernel, bias, act) in enumerate(layers):
        inits.append(onnx.numpy_helper.from_array(kernel.astype(np.float32), f"W{i}"))
        inits.append(onnx.numpy_helper.from_array(bias.astype(np.float32), f"b{i}"))
        g = f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [g]))
        out = "y" if i == len(layers) - 1 else f"h{i}"
        if act == "linear":
            nodes.append(helper.make_node("Identity", [g], [out]))
        elif act == "softmax":
            nodes.append(helper.make_node("Softmax", [g], [out], axis=-1))
        elif act == "gelu" and not native_gelu:
            inits.append(onnx.numpy_helper.from_array(np.array(SQRT_HALF, np.float32), f"c{i}"))
            inits.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), f"one{i}"))
            inits.append(onnx.numpy_helper.from_array(np.array(0.5, np.float32), f"half{i}"))
            nodes += [
                helper.make_node("Mul", [g, f"c{i}"], [f"s{i}"]),
                helper.make_node("Erf", [f"s{i}"], [f"e{i}"]),
                helper.make_node("Add", [f"e{i}", f"one{i}"], [f"p{i}"]),
                helper.make_node("Mul", [g, f"p{i}"], [f"q{i}"]),
                helper.make_node("Mul", [f"q{i}", f"half{i}"], [out]),
            ]
        else:
            op = {"relu": "Relu", "gelu": "Gelu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[act]
            nodes.append(helper.make_node(op, [g], [out]))
        h = out
    k_in, n_out = layers[0][0].shape[0], layers[-1][0].shape[1]
    graph = helper.make_graph(
        nodes,
        "fastdense_bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9  # understood by every onnxruntime that knows opset 20
    return model


# --------------------------------------------------------------------------- the MLP job

MLP_UNITS = (784, 512, 512, 10)
MLP_ACTIVATIONS = ("relu", "relu", "softmax")
MLP_BATCHES = (1, 32, 256, 4096)


def mlp_weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The benchmark MLP's layers as ``(kernel, bias, activation)``: glorot-uniform kernels,
    small random biases, float32, the same numbers for the same ``seed``."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out, act in zip(MLP_UNITS[:-1], MLP_UNITS[1:], MLP_ACTIVATIONS):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        kernel = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        bias = rng.normal(0.0, 0.1, fan_out).astype(np.float32)
        layers.append((kernel, bias, act))
    return layers


def _fastdense_mlp(layers: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> tuple[str, str, dict[str, Any]]:
    """(label, statement, namespace) running the MLP through ``fastdense.models.Sequential.predict``."""
    from fastdense.layers import Dense
    from fastdense.models import Sequential

    model = Sequential([Dense(kernel.shape[1], activation=act) for kernel, _, act in layers])
    model.build((None, layers[0][0].shape[0]))
    model.set_weights([w for kernel, bias, _ in layers for w in (kernel, bias)])
    return "fastdense", "model.predict(x)", {"model": model}


def mlp_contenders(
    layers: Sequence[tuple[np.ndarray, np.ndarray, str]],
    x: np.ndarray,
    peers: bool = True,
) -> tuple[dict[str, str | Callable[[], object]], dict[str, Any]]:
    """Contenders for the MLP at one batch: statements and the namespace they run in."""
    label, stmt, ns = _fastdense_mlp(layers)
    contenders: dict[str, str | Callable[[], object]] = {label: stmt}
    ns["x"] = x

    h = "x"
    for i, (kernel, bias, act) in enumerate(layers):
        ns[f"nW{i}"], ns[f"nb{i}"] = kernel, bias
        ns[f"nact{i}"] = numpy_activation(act)
        h = f"nact{i}({h} @ nW{i} + nb{i})"
    contenders["numpy"] = h

    if not peers:
        return contenders, ns
    for name, build in PEERS.items():
        contender = build(layers, x)
        if contender is not None:
            stmt, peer_ns = contender
            ns.update(peer_ns)
            contenders[name] = stmt
    return contenders, ns


# --------------------------------------------------------------------------- peer contenders
# One function per peer: (statement, namespace) running the MLP given as (kernel, bias,
# activation) layers on x, or None when the peer is not installed. A new peer is a function
# here and a row in PEERS.


def torch_contender(layers: Sequence[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray
                    ) -> tuple[str, dict[str, Any]] | None:
    """torch: an ``nn.Sequential`` of Linear + activation modules (run under inference mode)."""
    torch = import_peer("torch")
    if torch is None:
        return None
    return "torch_model(tx)", {"torch_model": torch_sequential(torch, layers), "tx": torch.from_numpy(x)}


def onnxruntime_contender(layers: Sequence[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray
                          ) -> tuple[str, dict[str, Any]] | None:
    """onnxruntime: Gemm + activation nodes (see :func:`onnx_session`)."""
    session = onnx_session(layers)
    if session is None:
        return None
    return "ort.run(None, feed)", {"ort": session, "feed": {"x": x}}


def keras_contender(layers: Sequence[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray
                    ) -> tuple[str, dict[str, Any]] | None:
    """Keras 3 (torch backend unless KERAS_BACKEND says otherwise): ``Sequential.predict``."""
    keras = import_peer("keras")
    if keras is None:
        return None
    model = keras.Sequential(
        [keras.Input((layers[0][0].shape[0],))]
        + [keras.layers.Dense(kernel.shape[1], activation=act) for kernel, _, act in layers]
    )
    model.set_weights([w for kernel, bias, _ in layers for w in (kernel, bias)])
    return "keras_model.predict(x, batch_size=len(x), verbose=0)", {"keras_model": model}


#: The peers timed against fastdense, in table order: name -> contender builder.
PEERS: dict[str, Callable[..., tuple[str, dict[str, Any]] | None]] = {
    "torch": torch_contender,
    "onnxruntime": onnxruntime_contender,
    "keras": keras_contender,
}


def run_mlp(
    batches: Sequence[int] = MLP_BATCHES,
    *,
    quick: bool = False,
    peers: bool = True,
    progress: bool = True,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the benchmark MLP at each batch size; return the numbers as a JSON-ready dict.

    ``threads``: run the fastdense contender under ``fastdense.set_num_threads(threads)``
    (its own thread pool) instead of the default policy.
    """
    layers = mlp_weights(seed)
    rng = np.random.default_rng(seed + 1)
    min_time, turn_time, min_samples = (0.05, 0.025, 3) if quick else (0.5, 0.05, 7)
    results = []
    overall = LoadMeter()
    bar = Progress(len(batches), enabled=progress)
    torch = import_peer("torch") if peers else None
    guard = torch.inference_mode() if torch is not None else _NullContext()
    with guard:
        for i, batch in enumerate(batches):
            bar.update(i, f"batch {batch}: checking")
            x = rng.standard_normal((batch, MLP_UNITS[0])).astype(np.float32)
            contenders, ns = mlp_contenders(layers, x, peers)
            expected = reference(x, layers)
            agree = {}
            for name, stmt in contenders.items():
                with fastdense_threads(threads if name == "fastdense" else None):
                    result = eval(stmt, ns) if isinstance(stmt, str) else stmt()
                agree[name] = agrees(result, expected)
            bar.update(i, f"batch {batch}: timing {', '.join(contenders)}")
            meter = LoadMeter()
            timings = time_interleaved(
                contenders, ns, min_time=min_time, min_samples=min_samples,
                turn_time=turn_time, settle=SETTLE, max_time=4.0 if quick else 10.0,
                contexts={"fastdense": lambda: fastdense_threads(threads)},
            )
            results.append(
                {
                    "batch": batch,
                    "agree": agree,
                    "times": {name: t.to_dict() for name, t in timings.items()},
                    "other_load_cores": meter.other_cores(),
                }
            )
    bar.update(len(batches), "done")
    bar.close()
    return {
        "job": "mlp",
        "units": list(MLP_UNITS),
        "activations": list(MLP_ACTIVATIONS),
        "dtype": "float32",
        "fastdense_threads": threads,
        "machine": machine_info(),
        "other_load_cores": overall.other_cores(),
        "results": results,
    }


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def mlp_table(report: Mapping[str, Any]) -> str:
    """The MLP report as a table: median time per call, then fastdense / peer ratios."""
    names: list[str] = []
    for row in report["results"]:
        names += [n for n in row["times"] if n not in names]
    peers = [n for n in names if n != "fastdense"]
    headers = ["batch"] + names + [f"fd/{n}" for n in peers]
    rows = []
    for row in report["results"]:
        med = {n: row["times"][n]["median_s"] if n in row["times"] else math.nan for n in names}
        cells = [str(row["batch"])]
        for n in names:
            mark = "" if row["agree"].get(n, True) else " !"
            cells.append(format_time(med[n]) + mark)
        cells += [format_ratio(paired_ratio(row["times"]["fastdense"], row["times"][n])
                               if n in row["times"] else math.nan) for n in peers]
        rows.append(cells)
    threads = report.get("fastdense_threads")
    policy = "default thread policy" if threads is None else f"fastdense.set_num_threads({threads})"
    title = (
        f"MLP {'-'.join(map(str, report['units']))} ({', '.join(report['activations'])}), "
        f"{report['dtype']}, fastdense with its {policy}: median time per call; "
        "fd/x: median over rounds of the two times' ratio in a round (< 1: fastdense is faster)"
    )
    notes = []
    load = report.get("other_load_cores")
    if load is not None:
        notes.append(f"other processes kept {load:.1f} of {report['machine']['cpu_count']} cores "
                     "busy during the run (noise)")
    if any(not all(r["agree"].values()) for r in report["results"]):
        notes.append("! = result disagreed with the float64 reference (see JSON 'agree')")
    return "\n".join([title, format_table(headers, rows)] + notes)


def plot_mlp(report: Mapping[str, Any], path: str) -> None:
    """Save a grouped bar chart of per-call times (log scale) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = [r["batch"] for r in report["results"]]
    names: list[str] = []
    for row in report["results"]:
        names += [n for n in row["times"] if n not in names]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(batches))]
        ys = [r["times"].get(name, {}).get("median_s", math.nan) * 1e6 for r in report["results"]]
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("median time per call (us, log scale)")
    ax.set_yscale("log")
    ax.set_title(
        f"MLP {'-'.join(map(str, report['units']))}, {report['dtype']}, "
        f"{report['machine'].get('cpu_count')} cores"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Largest --batches entry (a bigger one failed with a MemoryError after allocating what it could).
MAX_BATCH = 1 << 20


def parse_batches(parser: Any, text: str) -> list[int]:
    """The ``--batches`` list ("1,32,256"), or a parser error naming what was given."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batches expects comma-separated integers, got {text!r}")
    if not batches or min(batches) < 1:
        parser.error(f"--batches expects positive batch sizes, got {text!r}")
    if max(batches) > MAX_BATCH:
        parser.error(f"--batches expects batch sizes up to {MAX_BATCH} (a batch's 784 float32 inputs alone "
                     f"take {MAX_BATCH * 784 * 4 >> 20} MiB), got {max(batches)}")
    return batches


def check_output_paths(parser: Any, *paths: str | None) -> None:
    """--json / --plot targets must be writable before the minutes of timing, not after."""
    for path in paths:
        if path is None:
            continue
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            parser.error(f"cannot write {path!r}: expected a file path in an existing, writable directory")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastdense bench``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--quantize" or a.startswith("--quantize=") for a in argv):
        from fastdense.benchmark_quant import main as quantized  # the quantized job (issue 14)

        return quantized(argv)
    parser = argparse.ArgumentParser(
        prog="python -m fastdense bench",
        description="Time a 784-512-512-10 MLP in fastdense against numpy, torch, "
        "onnxruntime and Keras (those installed). With --quantize int8|int4|int4-act: the MLP quantized "
        "by Model.quantize against its float32 self and the peers' dynamic int8 models.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a few seconds, noisier)")
    parser.add_argument(
        "--batches", default=",".join(map(str, MLP_BATCHES)),
        help="comma-separated batch sizes (default: %(default)s)",
    )
    parser.add_argument("--no-peers", action="store_true", help="fastdense and numpy only")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="time fastdense under fastdense.set_num_threads(N) (its own pool)")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    parser.add_argument("--plot", metavar="PNG", help="save a bar chart (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    batches = parse_batches(parser, args.batches)
    check_output_paths(parser, args.json, args.plot)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib (or drop --plot)")

    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads expects a positive integer, got {args.threads}")
    report = run_mlp(batches, quick=args.quick, peers=not args.no_peers,
                     progress=not args.no_progress, threads=args.threads)
    print(mlp_table(report))
    missing = [p for p in PEERS if p not in report["machine"]]
    if missing and not args.no_peers:
        print(f"(not installed, not timed: {', '.join(missing)})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot_mlp(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
