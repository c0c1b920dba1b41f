"""pid_kernels/cuda/gated_residual.py: x + gate * y, CPU fallback, fake shapes, kernel vs eager on GPU."""

import pytest
import torch

import pid_kernels
from kernel_testing import assert_within_eager_error, compiled_with_ops, maybe_compiled, residual_args, with_dtypes
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


# (batch, tokens, width, per-token gate): MM-DiT rows (16-byte path), widths that are not a
# multiple of 8 (element path), PiT pixels after the expand GEMM (per-pixel gate, one
# thread per pixel), and the widest fp32 row.
GPU_CASES = {
    "mmdit_c256": (2, 37, 256, False),
    "mmdit_c1536": (2, 19, 1536, False),
    "scalar_c100": (2, 33, 100, False),
    "scalar_c5": (2, 45, 5, False),
    "pit_pixels": (7, 37, 16, True),
    "wide_c4096": (2, 5, 4096, False),
}


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", GPU_CASES)
def test_kernel_within_eager_error(case, dtype):
    args = residual_args(*GPU_CASES[case], device="cuda", seed=len(case))
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
