"""pid_kernels/triton/patch_embed_fp8.py: quantized patches through the Triton fp8 GEMM with the
bias epilogue vs the seam's reference evaluated in float32."""

import pytest
import torch

from fp8_testing import OUTPUT_RTOL
from kernel_testing import DEVICE, maybe_compiled, with_dtypes
from pid.quant.fp8 import quantize_rows
from pid_kernels.runtime import interpreting
from pid_kernels.triton import patch_embed_fp8 as op


def patch_args(batch=2, hw=(48, 80), width=40, patch_size=16, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, *hw, generator=gen)
    fan_in = 3 * patch_size**2
    weight_q, weight_scale = quantize_rows(torch.randn(width, fan_in, generator=gen) / fan_in**0.5)
    return [image.to(DEVICE, dtype), weight_q.to(DEVICE), weight_scale.view(-1).to(DEVICE),
            torch.randn(width, generator=gen).to(DEVICE, dtype), patch_size]


def check(args, dtype, what):
    assert op.supports(*args) == [], what
    ours = maybe_compiled(op.patch_embed_fp8)(*args)
    image, weight, weight_scale, bias, patch_size = args
    truth = op.reference(image.float(), weight, weight_scale, bias.float(), patch_size)
    scale = truth.abs().max().item()
    assert ours.dtype == dtype and ours.shape == truth.shape, what
    torch.testing.assert_close(ours.float(), truth, rtol=OUTPUT_RTOL[dtype], atol=OUTPUT_RTOL[dtype] * scale, msg=what)


@with_dtypes
def test_matches_the_reference(dtype):
    check(patch_args(dtype=dtype), dtype, f"{dtype} P=16")


def test_patch8_channels_last():
    args = patch_args(batch=1, hw=(24, 40), width=24, patch_size=8)
    args[0] = args[0].to(memory_format=torch.channels_last)
    check(args, torch.float32, "P=8 channels last")


def test_refusals():
    image, weight, weight_scale, bias, patch_size = patch_args()
    assert "float8_e4m3fn" in " ".join(op.supports(image, weight.float(), weight_scale, bias, patch_size))
    assert "is not a contiguous [C, 3*P*P]" in " ".join(op.supports(image, weight[:, :100], weight_scale, bias, 16))
    assert "not a multiple of the patch size" in " ".join(op.supports(image[..., :40], weight, weight_scale, bias, 16))


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_width(dtype):
    assert not interpreting()
    check(patch_args(batch=2, hw=(512, 512), width=1536, dtype=dtype), dtype, f"cuda {dtype}")
