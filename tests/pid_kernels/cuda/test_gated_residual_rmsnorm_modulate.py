"""pid_kernels/cuda/gated_residual_rmsnorm_modulate.py: x' = x + gate * y and the next adaLN of x'
in one pass: CPU fallback, fake shapes, kernel vs eager on GPU."""

import pytest
import torch

import pid_kernels
from kernel_testing import ROW_GPU_CASES, assert_within_eager_error, compiled_with_ops, maybe_compiled
from kernel_testing import residual_args, with_dtypes
from pid import seams
from pid_kernels.cuda import gated_residual_rmsnorm_modulate as module

NAME = "gated_residual_rmsnorm_modulate"


def fused(fn):
    def call(x, y, weight, modulation):
        shift, scale, gate = modulation.chunk(6, -1)[3:]
        return fn(x, gate, y, weight, shift, scale)

    return call


def test_cpu_falls_back_to_the_reference():
    """CPU tensors are refused with the reason and the seam runs its reference (the kernel
    itself is checked against eager on a GPU, in test_kernel_within_eager_error)."""
    args = residual_args()
    assert any("CPU tensor" in reason for reason in fused(module.supports)(*args))
    pid_kernels.enable([NAME], strict=False)
    try:
        before = dict(pid_kernels.CALLS[NAME])
        fused(seams.gated_residual_rmsnorm_modulate)(*args)
        assert pid_kernels.CALLS[NAME] == {"fused": before["fused"], "fallback": before["fallback"] + 1}
    finally:
        pid_kernels.disable([NAME])


def test_refuses_a_weight_of_another_width():
    x, y, weight, modulation = residual_args()
    assert any("weight must be" in r for r in fused(module.supports)(x, y, weight[:5], modulation))


@with_dtypes
def test_fake_shapes_under_compile(dtype):
    """Both outputs come out of the compiled graph's op with x's shape and dtype, equal to the
    reference on CPU (where the op's implementation is the reference)."""
    cast = [t.to(dtype) for t in residual_args(tokens=5, width=24)]
    (updated, modulated), used = compiled_with_ops(fused(module.gated_residual_rmsnorm_modulate), *cast)
    assert used and updated.shape == modulated.shape == cast[0].shape and modulated.dtype == dtype
    for ours, expected in zip((updated, modulated), fused(module.reference)(*cast)):
        assert torch.equal(ours, expected)


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", ROW_GPU_CASES)
def test_kernel_within_eager_error(case, dtype):
    args = residual_args(*ROW_GPU_CASES[case], device="cuda", seed=len(case))
    assert fused(module.supports)(*args) == []
    assert_within_eager_error(maybe_compiled(fused(module.gated_residual_rmsnorm_modulate)),
                              fused(module.reference), args, dtype, case)


@pytest.mark.gpu
@with_dtypes
def test_seam_runs_fused_in_strict_mode(dtype):
    args = residual_args(2, 9, 40, device="cuda")
    pid_kernels.enable([NAME], strict=True)  # a refusal would raise
    try:
        assert_within_eager_error(fused(seams.gated_residual_rmsnorm_modulate), fused(module.reference), args,
                                  dtype, "seam")
    finally:
        pid_kernels.disable([NAME])
