"""csrc/fd_tune.h: the path-independent tuning constants, as _kernels.FD_TUNE_* attributes."""
from fastdense import _kernels


def test_plan_constants_are_exposed_with_their_values():
    # plan.py's block sizes: read from C (one source); these are the values it had as literals
    assert _kernels.FD_TUNE_PLAN_ROWS_PER_BLOCK == 256
    assert _kernels.FD_TUNE_PLAN_BLOCK_BYTES == 4 << 20
    assert _kernels.FD_TUNE_PLAN_BLOCK_BYTES_SMALL_L2 == 1 << 20
    assert _kernels.FD_TUNE_PLAN_BIG_L2 == 2 << 20
    assert _kernels.FD_TUNE_PLAN_BLAS_BLOCK_BYTES == 64 << 20
    assert _kernels.FD_TUNE_PLAN_SMALL_BATCH == 48
    assert _kernels.FD_TUNE_PLAN_SMALL_BATCH_WORK == 1 << 20


def test_every_tuning_constant_is_a_positive_int():
    names = [n for n in dir(_kernels) if n.startswith("FD_TUNE_")]
    assert len(names) == len(_kernels.fd_tune.__members__) >= 19
    assert all(isinstance(getattr(_kernels, n), int) and getattr(_kernels, n) > 0 for n in names)
    assert _kernels.FD_TUNE_SPLIT_WORK_FEW_ROWS < _kernels.FD_TUNE_SPLIT_WORK_OWN < _kernels.FD_TUNE_SPLIT_WORK


def test_plan_block_bytes_follow_the_l2():
    # 4 MiB blocks where one core's L2 holds 2 MiB (Sapphire Rapids), 1 MiB below (Zen 4)
    from fastdense.models import plan

    big = _kernels.plan_l2_bytes() >= _kernels.FD_TUNE_PLAN_BIG_L2
    expected = _kernels.FD_TUNE_PLAN_BLOCK_BYTES if big else _kernels.FD_TUNE_PLAN_BLOCK_BYTES_SMALL_L2
    assert _kernels.plan_block_bytes() == expected
    assert plan._BLOCK_BYTES == expected
