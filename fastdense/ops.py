"""The functional op: ``dense(x, kernel, bias, activation)`` -- the only door into the kernel.

Validation, dtype and shape handling live here; the arithmetic is one call into the compiled
kernel (BLAS GEMM + fused bias/activation epilogue, GIL released).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels, activations

__all__ = ["dense", "pack_kernel", "PackedKernel", "quantize_kernel", "QuantizedKernel"]

PackedKernel = _kernels.PackedKernel
QuantizedKernel = _kernels.QuantizedKernel
packed_available = _kernels.packed_available

# activation identifier -> its KernelActivation; strings are cached, they are the common case
_SPECS: dict[str, activations.KernelActivation] = {}


def _spec(activation: Any) -> activations.KernelActivation:
    """The :class:`~fastdense.activations.KernelActivation` of an activation identifier."""
    if type(activation) is str:
        spec = _SPECS.get(activation)
        if spec is not None:
            return spec
    spec = activations.resolve(activation).kernel
    if type(activation) is str:
        _SPECS[activation] = spec
    return spec


def _real_array(a: Any, what: str, allow_bool: bool) -> np.ndarray:
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind == "f" or kind in "iu" or (kind == "b" and allow_bool):
        return arr
    if kind == "b":
        raise TypeError(f"dense: {what} must be a real numeric array; bool {what} is refused "
                        f"(cast it explicitly if you mean 0/1 weights), got dtype bool")
    raise TypeError(f"dense: {what} must be a real numeric array (float32, float64, integer), "
                    f"got dtype {arr.dtype}")


def _compute_dtype(kernel: np.ndarray) -> np.dtype:
    """The one dtype rule: float64 (or wider) kernels compute in float64, all others in float32."""
    if kernel.dtype.kind == "f" and kernel.dtype.itemsize >= 8:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _blas_ready(a: np.ndarray) -> np.ndarray:
    return a if _kernels.blas_compatible(a) else np.ascontiguousarray(a)


def _overlaps(a: np.ndarray, b: np.ndarray | None) -> bool:
    if b is None or not np.may_share_memory(a, b):  # bounds only: cheap
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:
        return True


def pack_kernel(kernel: Any) -> PackedKernel:
    """Copy ``kernel`` once into the packed form that :func:`dense` multiplies fastest.

    For weights used in many calls (a layer's kernel): a BLAS re-packs the kernel in every
    call, which dominates batches of a few to a few hundred rows; a :class:`PackedKernel`
    is packed once. The copy is read-only, so it can never go stale. float64 kernels (and
    CPUs without AVX2 + FMA) keep the BLAS path; results agree with the unpacked kernel to
    rounding.

    Example:
        >>> import numpy as np
        >>> from fastdense.ops import dense, pack_kernel
        >>> w = pack_kernel(np.array([[0.5, 0.75], [0.25, 0.5]], np.float32))
        >>> dense(np.array([[1., 2.], [3., 4.]], np.float32), w).tolist()
        [[1.0, 1.75], [2.5, 4.25]]
    """
    if type(kernel) is PackedKernel:
        return kernel
    arr = _real_array(kernel, "kernel", allow_bool=False)
    if arr.ndim != 2:
        raise ValueError(f"pack_kernel: kernel must be 2-D (K, N), got shape {arr.shape}")
    arr = np.array(arr, dtype=_compute_dtype(arr), order="C", copy=True)
    arr.flags.writeable = False
    return PackedKernel(arr.view())   # a view of a read-only base can never be made writeable


def quantize_kernel(kernel: Any, mode: str = "int8", *, block_size: int | None = 128) -> QuantizedKernel:
    """Quantize a float ``(K, N)`` kernel as Keras 3's ``Dense.quantize(mode)`` does, packed for
    :func:`dense`: a read-only :class:`QuantizedKernel` holding Keras's variables.

    ``"int8"``: one scale per unit, inputs quantized per row when multiplied (exact integer
    products). ``"int4"``: ``block_size`` input rows per asymmetric scale (Keras's default 128),
    or one scale per unit for ``None`` / ``-1``; inputs stay float. See docs/quantization.md.

    Example:
        >>> import numpy as np
        >>> from fastdense.ops import dense, quantize_kernel
        >>> w = quantize_kernel(np.array([[0.5, 0.75], [0.25, 0.5]], np.float32), "int8")
        >>> w
        <QuantizedKernel int8 shape=(2, 2) (inputs quantized)>
        >>> y = dense(np.array([[1., 2.], [3., 4.]], np.float32), w)   # float: 1.75 and 2.5
        >>> np.round(y.astype(float), 3).tolist()
        [[1.0, 1.76], [2.488, 4.252]]
    """
    from . import quantizers

    arr = _real_array(kernel, "kernel", allow_bool=False)
    if arr.ndim != 2:
        raise ValueError(f"quantize_kernel: kernel must be 2-D (K, N), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"quantize_kernel: kernel must not be empty, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("quantize_kernel: kernel holds NaN or inf, which have no quantized value")
    if mode == "int8":
        q, scale = quantizers.quantize_int8(arr)
        return QuantizedKernel("int8", q, scale)
    if mode == "int4":
        w = quantizers.quantize_int4(arr, block_size)
        return QuantizedKernel("int4", quantizers.pack_int4(w.q), w.scale, w.zero, w.block_size, False)
    raise ValueError(f"quantize_kernel: mode must be 'int8' or 'int4', got {mode!r}")


def dense(x: Any, kernel: Any, bias: Any = None, activation: Any = "linear", *,
          out: np.ndarray | None = None) -> np.ndarray:
    """Return ``activation(x @ kernel + bias)``, computed as one fused kernel call.

    Args:
        x: array of shape ``(..., K)``; rank 1 means one sample. Any memory layout.
        kernel: array of shape ``(K, N)``, or a :class:`PackedKernel` from
            :func:`pack_kernel` (faster for weights used in many calls), or a
            :class:`QuantizedKernel` from :func:`quantize_kernel` (int8 / int4, computed in
            float32 as Keras computes a quantized Dense).
        bias: array of shape ``(N,)`` or None.
        activation: a Keras activation name (``"relu"``, ``"gelu"``, ``"softmax"``, ...), a
            function from :mod:`fastdense.activations`, or ``functools.partial`` of one with
            parameters (``partial(activations.leaky_relu, negative_slope=0.1)``). ``"glu"``
            halves the last axis.
        out: optional C-contiguous array of the result's shape and dtype, written in place.

    Dtypes: the computation runs in the kernel's dtype -- float64 for a float64 kernel, float32
    for every other kernel (float32, float16, integers); x and bias are cast to it. Complex,
    object, string and bool weights are refused with TypeError.

    Returns:
        The result, shape ``(..., N)`` (``(..., N // 2)`` for glu); ``out`` when given.

    Example:
        >>> import numpy as np
        >>> from fastdense.ops import dense
        >>> dense(np.array([[1., 2.], [3., 4.]]), np.array([[0.5, 0.75], [0.25, 0.5]]))
        array([[1.  , 1.75],
               [2.5 , 4.25]])
    """
    spec = _SPECS.get(activation) if type(activation) is str else None  # inline: the hot path
    if spec is None:
        spec = _spec(activation)
    y = _kernels.dense_fast(x, kernel, bias, spec, out)
    if y is not None:
        return y
    return _dense_checked(x, kernel, bias, spec, activation, out)


def _dense_checked(x: Any, kernel: Any, bias: Any, spec: activations.KernelActivation, activation: Any,
                   out: np.ndarray | None) -> np.ndarray:
    """The validating path: every check, cast and layout fix, then the kernel."""
    if type(kernel) is QuantizedKernel:
        return _dense_quantized(x, kernel, bias, spec, activation, out)
    packed = None
    if type(kernel) is PackedKernel:
        packed, kernel = kernel, kernel.kernel
    kernel = _real_array(kernel, "kernel", allow_bool=False)
    if kernel.ndim != 2:
        raise ValueError(f"dense: kernel must be 2-D (K, N), got shape {kernel.shape}")
    dtype = _compute_dtype(kernel)
    kernel = kernel.astype(dtype, copy=False)
    k, n = kernel.shape
    x = _real_array(x, "x", allow_bool=True)
    if x.ndim < 1:
        raise ValueError(f"dense: x must have at least 1 dimension (..., {k}), got a scalar")
    if x.shape[-1] != k:
        raise ValueError(f"dense: x must have last dimension {k} to match kernel of shape "
                         f"{kernel.shape}, got x of shape {x.shape}")
    x = x.astype(dtype, copy=False)
    if bias is not None:
        bias = _real_array(bias, "bias", allow_bool=False)
        if bias.shape != (n,):
            raise ValueError(f"dense: bias must have shape ({n},) to match kernel of shape "
                             f"{kernel.shape}, got shape {bias.shape}")
        bias = np.ascontiguousarray(bias, dtype=dtype)
    halves = spec.halves
    if halves and n % 2:
        raise ValueError(f"dense: activation {activation!r} halves the last axis, which needs an "
                         f"even number of units, got kernel of shape {kernel.shape}")
    n_out = n // 2 if halves else n
    shape = x.shape[:-1] + (n_out,)
    if out is not None:
        _check_out(out, shape, dtype, x, kernel, bias)
        result = out
    else:
        result = np.empty(shape, dtype=dtype)
    if result.size == 0:
        return result
    if k == 0:  # an empty sum: activation(bias); give the kernel one zero term instead
        x, kernel = np.zeros(x.shape[:-1] + (1,), dtype), np.zeros((1, n), dtype)
        k = 1
    x2 = _blas_ready(x.reshape(-1, k))
    kernel = _blas_ready(kernel)
    _kernels.dense2d(x2, kernel, bias, result.reshape(-1, n_out), spec.code, spec.p0, spec.p1, spec.p2,
                     packed)
    return result


def _dense_quantized(x: Any, kernel: Any, bias: Any, spec: tuple, activation: Any,
                     out: np.ndarray | None) -> np.ndarray:
    """dense() for a QuantizedKernel (typed Any: the extension has no stubs): float32 throughout,
    as Keras computes a quantized layer."""
    from . import quantizers

    k, n = kernel.shape
    dtype = np.dtype(np.float32)
    x = _real_array(x, "x", allow_bool=True)
    if x.ndim < 1:
        raise ValueError(f"dense: x must have at least 1 dimension (..., {k}), got a scalar")
    if x.shape[-1] != k:
        raise ValueError(f"dense: x must have last dimension {k} to match the quantized kernel of shape "
                         f"{(k, n)}, got x of shape {x.shape}")
    if bias is not None:
        bias = _real_array(bias, "bias", allow_bool=False)
        if bias.shape != (n,):
            raise ValueError(f"dense: bias must have shape ({n},) to match the quantized kernel of shape "
                             f"{(k, n)}, got shape {bias.shape}")
        bias = np.ascontiguousarray(bias, dtype=dtype)
    code, p0, p1, p2, halves = spec
    if halves and n % 2:
        raise ValueError(f"dense: activation {activation!r} halves the last axis, which needs an "
                         f"even number of units, got a quantized kernel of shape {(k, n)}")
    shape = x.shape[:-1] + (n // 2 if halves else n,)
    if out is not None:
        _check_out(out, shape, dtype, x, kernel.kernel, bias)
        result = out
    else:
        result = np.empty(shape, dtype=dtype)
    if result.size == 0:
        return result
    x2 = np.ascontiguousarray(x.reshape(-1, k), dtype=dtype)
    if kernel.native:
        _kernels.qdense(x2, kernel, bias, result.reshape(-1, shape[-1]), code, p0, p1, p2)
        return result
    # Keras configurations the integer kernels do not run (int8 with float inputs, per-unit
    # int4 with quantized inputs): the NumPy reference, then the activation
    if kernel.mode == "int8":
        z = quantizers.int8_dense_reference(x2, kernel.kernel, kernel.kernel_scale, bias, kernel.quantize_inputs)
    else:
        q = quantizers.unpack_int4(kernel.kernel, n)
        z = quantizers.int8_dense_reference(x2, q, kernel.kernel_scale, bias, True)
    result.reshape(-1, shape[-1])[...] = _kernels.apply_activation(np.ascontiguousarray(z), code, p0, p1, p2)
    return result


def _check_out(out: Any, shape: tuple, dtype: np.dtype, x: np.ndarray, kernel: np.ndarray,
               bias: np.ndarray | None) -> None:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"dense: out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"dense: out must have shape {shape} and dtype {dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("dense: out must be C-contiguous, got a non-contiguous array")
    if not out.flags.writeable:
        raise ValueError("dense: out must be writeable, got a read-only array")
    for name, other in (("x", x), ("kernel", kernel), ("bias", bias)):
        if _overlaps(out, other):
            raise ValueError(f"dense: out must not overlap the inputs, but it shares memory with {name}")
