"""Thread policy: how fastdense shares the machine's cores between calls (see README, "Threads")."""
from __future__ import annotations

import os
import threading

from . import _kernels

_lock = threading.Lock()
_saved_blas_threads: int | None = None


def get_num_threads() -> int:
    """The number of cores one fastdense call may use."""
    return _kernels.get_num_threads()


def set_num_threads(n: int | None) -> None:
    """Hand threading to fastdense's own pool of ``n`` cores, or give it back with ``None``.

    By default fastdense leaves scipy's OpenBLAS alone: a big call is threaded by OpenBLAS,
    and concurrent calls take turns in BLAS (two callers sharing OpenBLAS's pool would slow
    each other down) while their epilogues overlap.

    ``set_num_threads(n)`` is the explicit opt-in for services that call fastdense from
    several threads: it sets scipy's OpenBLAS to one thread -- a process-wide change, so
    scipy.linalg calls elsewhere in the process also become single-threaded -- and fastdense
    splits each call over up to ``n`` cores itself, taking only cores that no other fastdense
    call is using: a lone call gets all ``n`` cores, two concurrent calls get one core each.
    ``set_num_threads(None)`` restores the previous OpenBLAS thread count and the default.

    Example:
        >>> import fastdense
        >>> fastdense.set_num_threads(2)      # doctest: +SKIP
        >>> fastdense.get_num_threads()       # doctest: +SKIP
        2
    """
    global _saved_blas_threads
    with _lock:
        if n is None:
            if _saved_blas_threads is not None:
                _kernels.blas_set_threads(_saved_blas_threads)
                _saved_blas_threads = None
            _kernels.set_num_threads(0)
            _kernels.set_own_threading(-1)
            return
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_num_threads expects a positive int or None, got {n!r}")
        _kernels.set_num_threads(n)
        blas_threads = _kernels.blas_info()[2]
        if blas_threads > 1:
            if _saved_blas_threads is None:
                _saved_blas_threads = blas_threads
            _kernels.blas_set_threads(1)
        # with a BLAS fastdense cannot set, splitting would oversubscribe: keep its threading
        _kernels.set_own_threading(1 if _kernels.blas_info()[2] == 1 else -1)


def _init_from_env() -> None:
    value = os.environ.get("FASTDENSE_NUM_THREADS")
    if value:
        try:
            set_num_threads(int(value))
        except ValueError as exc:
            raise ValueError(f"FASTDENSE_NUM_THREADS must be a positive integer, got {value!r}") from exc
