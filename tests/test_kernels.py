"""fastdense._kernels: the constants shared with C (cpdef enums of _kernels.pxd) and errors."""
import pytest

from fastdense import _kernels


def test_step_kinds_are_distinct_module_attributes():
    names = ["FD_STEP_DENSE", "FD_STEP_ACT", "FD_STEP_ADD", "FD_STEP_SUB", "FD_STEP_MUL", "FD_STEP_AVG",
             "FD_STEP_MAX", "FD_STEP_MIN", "FD_STEP_CONCAT", "FD_STEP_COPY",
             "FD_STEP_NORM", "FD_STEP_AFFINE", "FD_STEP_PRELU", "FD_STEP_GATHER", "FD_STEP_QDENSE", "FD_STEP_POOL"]
    values = [getattr(_kernels, n) for n in names]
    assert sorted(values) == list(range(len(names))) == sorted(set(values))
    assert _kernels.FD_STEP_KIND_COUNT == len(names)
    assert _kernels.FD_STEP_DENSE == _kernels.fd_step_kind.FD_STEP_DENSE


def test_dtype_and_status_codes():
    assert (_kernels.FD_F32, _kernels.FD_F64) == (0, 1)
    codes = [_kernels.FD_OK, _kernels.FD_ERR_NOMEM, _kernels.FD_ERR_ARG, _kernels.FD_ERR_LIMIT]
    assert codes[0] == 0 and len(set(codes)) == 4 and all(c < 0 for c in codes[1:])


def test_plan_limit_error_is_a_value_error():
    assert issubclass(_kernels.PlanLimitError, ValueError)
    assert not issubclass(_kernels.PlanLimitError, MemoryError)
    with pytest.raises(ValueError):
        raise _kernels.PlanLimitError("x")
