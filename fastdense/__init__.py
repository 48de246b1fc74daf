"""fastdense: the Keras Dense layer as a fused, compiled CPU inference kernel.

    >>> import numpy as np, fastdense
    >>> fastdense.ops.dense(np.array([[1., 2.], [3., 4.]]), np.array([[0.5, 0.75], [0.25, 0.5]]))
    array([[1.  , 1.75],
           [2.5 , 4.25]])
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import activations, ops
from ._threads import _init_from_env, get_num_threads, set_num_threads

__all__ = ["__version__", "activations", "ops", "show_config", "config_info",
           "get_num_threads", "set_num_threads", "Input", "Sequential", "Model", "layers",
           "models", "initializers", "regularizers", "constraints", "saving"]

_LAZY_MODULES = {"layers", "models", "initializers", "regularizers", "constraints", "saving"}
_LAZY_NAMES = {"Input": "layers", "Sequential": "models", "Model": "models"}


def __getattr__(name: str):
    import importlib
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'fastdense' has no attribute {name!r}")


# Linux's copy of an aarch64 core's MIDR_EL1 (its implementer and part numbers), in hex
_MIDR_PATH = "/sys/devices/system/cpu/cpu0/regs/identification/midr_el1"


def _cpu_name(vendor: str, family: int, model: int) -> str:
    """The CPU as x86's CPUID names it; on aarch64 (no vendor string) as MIDR_EL1 does, e.g.
    "aarch64 implementer 0x41 part 0xd0c" for Arm's Neoverse N1, or just the machine."""
    import platform

    if vendor:
        return f"{vendor} family {family} model {model}"
    machine = platform.machine() or "unknown"
    try:
        with open(_MIDR_PATH) as fh:
            midr = int(fh.read().strip(), 16)
    except (OSError, ValueError):
        return machine
    return f"{machine} implementer 0x{midr >> 24 & 0xFF:02x} part 0x{midr >> 4 & 0xFFF:03x}"


def config_info() -> dict:
    """Version, chosen CPU path, BLAS library and thread settings, as a dict."""
    import numpy
    import scipy

    from . import _kernels
    path, blas_config, blas_threads = _kernels.blas_info()
    cpu = _kernels.cpu_features()
    vendor, family, model = cpu.pop("vendor"), cpu.pop("family"), cpu.pop("model")
    return {
        "fastdense": __version__,
        "cpu_path": _kernels.cpu_path(),
        "cpu": _cpu_name(vendor, family, model),
        "cpu_features": " ".join(name for name, on in cpu.items() if on) or "none",
        "float32_gemm": (f"fastdense {_kernels.gemm_kernel_name()} (layers' packed weights; ops.dense "
                         "with 2+ rows), BLAS otherwise") if _kernels.packed_available() else "BLAS",
        "int8_kernel": _kernels.quant_isa(),   # amx: tiles where they win, avx512_vnni strips below
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas_library": path or "unknown",
        "blas_config": blas_config or "unknown",
        "blas_threads": blas_threads if blas_threads > 0 else "unknown",
        "fastdense_threads": _kernels.get_num_threads(),
        "thread_policy": "fastdense pool (BLAS single-threaded)" if _kernels.own_threading()
                         else "BLAS-threaded, concurrent GEMMs take turns (fastdense's own kernels: its pool)",
        "cpu_count": _kernels.cpu_count(),
        # csrc/fd_plan.c split_step: small batches (one block) thread each Dense by its cost
        "small_batch_steps": (f"a Dense estimated under {_kernels.FD_TUNE_STEP_SPLIT_NS / 1000:g} us on one core runs "
                              f"on the caller, a costlier one splits over the pool (L2 per core: "
                              f"{_kernels.plan_l2_bytes() >> 10} KiB)"),
    }


def show_config() -> None:
    """Print the version, the CPU path chosen at run time, the BLAS behind scipy and threads."""
    for key, value in config_info().items():
        print(f"{key:>18}: {value}")


_init_from_env()
