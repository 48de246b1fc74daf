"""What the scripts in bench/ share: the timing core of ``fastdense bench`` plus the pieces only
the scripts use.

The timing loop, paired ratios, table output, machine description, references and peer
builders live in :mod:`fastdense.benchmark` (``fastdense bench`` needs them in the installed
package); they are re-exported here so a script imports everything from one place::

    from harness import time_interleaved, paired_ratio, wait_for_quiet, torch_activation

A script run as ``python bench/bench_x.py`` finds this file next to it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from fastdense.benchmark import (  # noqa: F401  (re-exported for the scripts)
    PEERS,
    SETTLE,
    LoadMeter,
    Timing,
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
    reference,
    time_interleaved,
    torch_sequential,
)

def wait_for_quiet(max_wait: float, threshold: float = 0.25, window: float = 1.0) -> float | None:
    """Wait up to ``max_wait`` seconds for a ``window`` in which other processes keep fewer
    than ``threshold`` cores busy; return the last measured load (None off Linux)."""
    deadline = time.perf_counter() + max_wait
    load = None
    while True:
        meter = LoadMeter()
        time.sleep(window)
        load = meter.other_cores()
        if load is None or load < threshold or time.perf_counter() >= deadline:
            return load


TORCH_ACTIVATIONS = ("linear", "relu", "gelu", "sigmoid", "tanh", "softmax")


def torch_activation(torch: Any, name: str) -> Callable[[Any], Any]:
    """The torch.nn.functional call for ``name`` (gelu is the exact erf form)."""
    functional = torch.nn.functional
    table = {
        "linear": lambda y: y,
        "relu": functional.relu,
        "gelu": functional.gelu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda y: functional.softmax(y, dim=-1),
    }
    return table[name]
