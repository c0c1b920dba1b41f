"""pid_kernels/to_image.py (CUDA): [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], equal bytes to eager."""

import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager

import pid_kernels
from kernel_testing import DTYPES, assert_within_eager_error, maybe_compiled
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
    (images,) = image_args()
    assert any("CPU tensor" in reason for reason in module.supports(images, False))
    pid_kernels.enable(["to_image"], strict=False)
    try:
        for rounding in pid_images.ROUNDINGS:
            assert torch.equal(pid_images.to_uint8(images, rounding), module.reference(images, rounding == "nearest"))
    finally:
        pid_kernels.disable(["to_image"])


def test_fake_shapes_under_compile():
    (images,) = image_args(1, 5, 7)
    for dtype in DTYPES:
        torch._dynamo.reset()
        targets = []

        def backend(graph_module, example_inputs):
            targets.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
            return aot_eager(graph_module, example_inputs)

        out = torch.compile(module.to_image, fullgraph=True, backend=backend)(images.to(dtype), True)
        assert "pid_cuda.to_image" in targets and out.dtype == torch.uint8 and out.shape == (1, 5, 7, 3)
        assert torch.equal(out, module.reference(images.to(dtype), True))


# (batch, height, width, channels-last): planar 16-byte path (H*W a multiple of 8), ragged
# H*W (pixel path), channels-last strides (pixel path).
GPU_CASES = {"planar": (2, 32, 48, False), "ragged": (2, 37, 41, False), "channels_last": (2, 24, 40, True)}


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES)
@pytest.mark.parametrize("round_to_nearest", [False, True], ids=["truncate", "nearest"])
def test_kernel_bytes_equal_eager(case, round_to_nearest):
    args = image_args(*GPU_CASES[case], device="cuda", seed=len(case)) + [round_to_nearest]
    assert module.supports(*args) == []
    for dtype in DTYPES:  # integer outputs: assert_within_eager_error demands equality with eager
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
