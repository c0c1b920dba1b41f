"""pid_kernels/cuda/to_image.py: [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], equal bytes to eager."""

import pytest
import torch

import pid_kernels
from kernel_testing import assert_within_eager_error, compiled_with_ops, maybe_compiled, with_dtypes
from pid.io import images as pid_images
from pid_kernels.cuda import to_image as module


def image_args(batch=2, height=37, width=41, channels_last=False, device="cpu", seed=0):
    """Random values past both ends of [-1, 1], plus every value that scales to k or k + 0.5
    (truncation and ties-to-even edges), laid out NCHW or channels-last."""
    gen = torch.Generator(device=device).manual_seed(seed)
    images = torch.rand(batch, 3, height, width, generator=gen, device=device) * 2.4 - 1.2
    edges = torch.arange(511, device=device) / 255.0 - 1.0
    flat = images.view(-1)
    flat[: min(flat.numel(), edges.numel())] = edges[: flat.numel()]
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return [images]


def test_cpu_falls_back_to_the_reference():
    """CPU tensors are refused with the reason, and pid.io.images.to_uint8 runs the seam's
    reference in both roundings (the kernel's bytes are compared with eager's on a GPU)."""
    (images,) = image_args()
    assert any("CPU tensor" in reason for reason in module.supports(images, False))
    pid_kernels.enable(["to_image"], strict=False)
    try:
        before = dict(pid_kernels.CALLS["to_image"])
        for rounding in pid_images.ROUNDINGS:
            pid_images.to_uint8(images, rounding)
        after = pid_kernels.CALLS["to_image"]
        assert after == {"fused": before["fused"], "fallback": before["fallback"] + len(pid_images.ROUNDINGS)}
    finally:
        pid_kernels.disable(["to_image"])


@with_dtypes
def test_fake_shapes_under_compile(dtype):
    (images,) = image_args(1, 5, 7)
    out, used = compiled_with_ops(module.to_image, images.to(dtype), True)
    assert "pid_cuda.to_image" in used and out.dtype == torch.uint8 and out.shape == (1, 5, 7, 3)
    assert torch.equal(out, module.reference(images.to(dtype), True))


# (batch, height, width, channels-last): planar 16-byte path (H*W a multiple of 8), ragged
# H*W (pixel path), channels-last strides (pixel path).
GPU_CASES = {"planar": (2, 32, 48, False), "ragged": (2, 37, 41, False), "channels_last": (2, 24, 40, True)}


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", GPU_CASES)
@pytest.mark.parametrize("round_to_nearest", [False, True], ids=["truncate", "nearest"])
def test_kernel_bytes_equal_eager(case, round_to_nearest, dtype):
    args = image_args(*GPU_CASES[case], device="cuda", seed=len(case)) + [round_to_nearest]
    assert module.supports(*args) == []
    # Integer outputs: assert_within_eager_error demands equality with eager.
    assert_within_eager_error(maybe_compiled(module.to_image), module.reference, args, dtype, case)


@pytest.mark.gpu
def test_images_to_uint8_runs_fused_in_strict_mode():
    (images,) = image_args(1, 16, 16, device="cuda")
    pid_kernels.enable(["to_image"], strict=True)  # a refusal would raise
    try:
        for rounding in pid_images.ROUNDINGS:
            assert torch.equal(pid_images.to_uint8(images, rounding), module.reference(images, rounding == "nearest"))
    finally:
        pid_kernels.disable(["to_image"])
