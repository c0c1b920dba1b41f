"""pid_kernels/cuda/gated_residual.py: x + gate * y, CPU fallback, fake shapes, kernel vs eager on GPU."""

import pytest
import torch

import pid_kernels
from kernel_testing import ROW_GPU_CASES, assert_within_eager_error, compiled_with_ops, maybe_compiled
from kernel_testing import residual_args, with_dtypes
from pid import seams
from pid_kernels.cuda import gated_residual as module


def residual(fn):
    return lambda x, y, weight, modulation: fn(x, modulation.chunk(6, -1)[2], y)


def test_cpu_falls_back_to_the_reference():
    """CPU tensors are refused with the reason and the seam runs its reference (the kernel
    itself is checked against eager on a GPU, in test_kernel_within_eager_error)."""
    x, y, _, modulation = residual_args()
    gate = modulation.chunk(6, -1)[2]
    assert any("CPU tensor" in reason for reason in module.supports(x, gate, y))
    pid_kernels.enable(["gated_residual"], strict=False)
    try:
        before = dict(pid_kernels.CALLS["gated_residual"])
        seams.gated_residual(x, gate, y)
        assert pid_kernels.CALLS["gated_residual"] == {"fused": before["fused"], "fallback": before["fallback"] + 1}
    finally:
        pid_kernels.disable(["gated_residual"])


@with_dtypes
def test_fake_shapes_under_compile(dtype):
    """The op is in the compiled graph; on CPU its implementation is the reference, so the result
    equals the reference called with the seam's arguments only if the wrapper passes them right."""
    cast = [t.to(dtype) for t in residual_args(tokens=5, width=24)]
    out, used = compiled_with_ops(residual(module.gated_residual), *cast)
    assert used == ["pid_cuda.gated_residual"] and out.dtype == dtype and out.shape == cast[0].shape
    assert torch.equal(out, residual(module.reference)(*cast))


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", ROW_GPU_CASES)
def test_kernel_within_eager_error(case, dtype):
    args = residual_args(*ROW_GPU_CASES[case], device="cuda", seed=len(case))
    x, y, _, modulation = args
    assert module.supports(x, modulation.chunk(6, -1)[2], y) == []
    assert_within_eager_error(maybe_compiled(residual(module.gated_residual)), residual(module.reference), args,
                              dtype, case)


@pytest.mark.gpu
@with_dtypes
def test_seam_runs_fused_in_strict_mode(dtype):
    args = residual_args(2, 9, 40, device="cuda")
    pid_kernels.enable(["gated_residual"], strict=True)  # a refusal would raise
    try:
        assert_within_eager_error(residual(seams.gated_residual), residual(module.reference), args, dtype, "seam")
    finally:
        pid_kernels.disable(["gated_residual"])
