"""pid_kernels/cuda/pit_pixel_mlp.py: the PiT MLP half per pixel vs the seam's reference."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import pid_kernels
from kernel_testing import (
    assert_within_eager_error, compiled_with_ops, maybe_compiled, mlp_args, mlp_seam_args, per_pixel, with_dtypes,
)
from pid import seams
from pid_kernels.cuda import pit_pixel_mlp as module


@pytest.fixture
def cuda_backend(monkeypatch):
    """The op's CUDA C++ backend as the one `enable` installs (the tuning tables pick Triton's)."""
    monkeypatch.setitem(pid_kernels.REGISTRY, "pit_pixel_mlp", pid_kernels.BACKENDS_OF["pit_pixel_mlp"]["cuda"])


def test_cpu_falls_back_to_the_reference(cuda_backend):
    """CPU tensors are refused with the reason and the seam runs its reference (the kernel
    itself is checked against eager on a GPU, in test_kernel_within_eager_error)."""
    args = mlp_seam_args(mlp_args())
    assert any("CPU tensor" in reason for reason in module.supports(*args))
    pid_kernels.enable(["pit_pixel_mlp"], strict=False)
    try:
        before = dict(pid_kernels.CALLS["pit_pixel_mlp"])
        seams.pit_pixel_mlp(*args)
        assert pid_kernels.CALLS["pit_pixel_mlp"] == {"fused": before["fused"], "fallback": before["fallback"] + 1}
    finally:
        pid_kernels.disable(["pit_pixel_mlp"])


def test_refuses_other_widths():
    args = mlp_seam_args(mlp_args())
    args[0] = torch.randn(7, 37, 24)
    assert any("are not [B*Li, P2, 16]" in reason for reason in module.supports(*args))
    args = mlp_seam_args(mlp_args())
    args[5] = args[5][:32]
    assert any("fc1_weight must be" in reason for reason in module.supports(*args))


@with_dtypes
def test_fake_shapes_under_compile(dtype):
    """The op is in the compiled graph; on CPU its implementation is the reference, so the result
    equals the reference called with the seam's arguments only if the wrapper passes them right."""
    cast = [t.to(dtype) for t in mlp_args(tokens=3, pixels_per_patch=4)]
    out, used = compiled_with_ops(per_pixel(module.pit_pixel_mlp), *cast)
    assert "pid_cuda.pit_pixel_mlp" in used and out.dtype == dtype and out.shape == (3, 4, 16)
    assert torch.equal(out, per_pixel(module.reference)(*cast))


def test_fake_shapes_at_the_release_width():
    with FakeTensorMode():
        pixels = torch.empty(6, 256, 16, dtype=torch.bfloat16, device="cuda")
        shift, scale, gate = torch.empty(6, 256, 96, dtype=torch.bfloat16, device="cuda").chunk(6, -1)[3:]
        shapes = ((16,), (64, 16), (64,), (16, 64), (16,))
        weights = [torch.empty(*shape, dtype=torch.bfloat16, device="cuda") for shape in shapes]
        out = module.pit_pixel_mlp(pixels, weights[0], shift, scale, gate, *weights[1:])
        assert out.shape == pixels.shape and out.dtype == torch.bfloat16 and out.is_cuda


# (tokens, pixels per patch, misaligned pixels): the release's 256 pixels per patch, a pixel
# count that is not a multiple of the block, and a misaligned pixel tensor (element path).
GPU_CASES = {"p2_256": (3, 256, False), "ragged": (7, 37, False), "misaligned": (5, 19, True)}


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", GPU_CASES)
def test_kernel_within_eager_error(case, dtype):
    tokens, pixels_per_patch, misaligned = GPU_CASES[case]
    args = mlp_args(tokens, pixels_per_patch, misaligned, device="cuda", seed=len(case))
    assert per_pixel(module.supports)(*args) == []
    assert_within_eager_error(maybe_compiled(per_pixel(module.pit_pixel_mlp)), per_pixel(module.reference), args,
                              dtype, case)


@pytest.mark.gpu
@with_dtypes
def test_seam_runs_fused_in_strict_mode(cuda_backend, dtype):
    args = mlp_args(2, 256, device="cuda")
    pid_kernels.enable(["pit_pixel_mlp"], strict=True)  # a refusal would raise
    try:
        assert_within_eager_error(per_pixel(seams.pit_pixel_mlp), per_pixel(module.reference), args, dtype, "seam")
    finally:
        pid_kernels.disable(["pit_pixel_mlp"])
