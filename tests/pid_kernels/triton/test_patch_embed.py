"""pid_kernels/triton/patch_embed.py: the fused patch embedding vs the seam's reference."""

import pytest
import torch

from kernel_testing import DEVICE, assert_within_eager_error, fused_decode_calls, maybe_compiled, with_dtypes
from pid_kernels.runtime import interpreting
from pid_kernels.triton import patch_embed
from tiny import tiny_inputs, tiny_net

# Several ragged row, column and K tiles in an interpreter-sized problem.
SMALL_TILES = "BLOCK_M=16,BLOCK_N=32,BLOCK_K=32"


def image(batch=2, height=48, width=80, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def patch_args(batch=2, hw=(48, 80), width=40, patch_size=16, seed=0):
    """Seam arguments: image [B, 3, H, W], weight [C, 3*P*P], bias [C], P."""
    gen = torch.Generator().manual_seed(seed + 1)
    fan_in = 3 * patch_size**2
    weight = torch.randn(width, fan_in, generator=gen) / fan_in**0.5
    return [image(batch, *hw, seed), weight.to(DEVICE), torch.randn(width, generator=gen).to(DEVICE), patch_size]


def check(args, dtype, what):
    assert patch_embed.supports(*args) == []
    assert_within_eager_error(maybe_compiled(patch_embed.patch_embed), patch_embed.reference, args, dtype, what)


@with_dtypes
@pytest.mark.parametrize("tiles", [None, SMALL_TILES], ids=["arch-table", "small-tiles"])
def test_patch_embed(monkeypatch, tiles, dtype):
    if tiles:
        monkeypatch.setenv("PID_TUNING_PATCH_EMBED", tiles)
    check(patch_args(), dtype, f"patch embed, {tiles or 'arch table'}")


@with_dtypes
def test_patch_embed_patch8_strided_image(monkeypatch, dtype):
    """Patch size 8 (K = 192) and a channels-last image: the gather follows the strides."""
    monkeypatch.setenv("PID_TUNING_PATCH_EMBED", SMALL_TILES)
    args = patch_args(hw=(24, 40), width=24, patch_size=8)
    args[0] = args[0].to(memory_format=torch.channels_last)
    check(args, dtype, "patch embed, P=8, channels last")


def test_refusals(monkeypatch):
    img, weight, bias, patch_size = patch_args()
    assert "float64" in " ".join(patch_embed.supports(img.double(), weight.double(), bias.double(), 16))
    assert "not a multiple of the patch size" in " ".join(patch_embed.supports(img[..., :40], weight, bias, 16))
    assert "is not [C, 3*P*P]" in " ".join(patch_embed.supports(img, weight[:, :100], bias, 16))
    assert "is not [B, 3, H, W]" in " ".join(patch_embed.supports(img[:, :1], weight, bias, 16))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CPU tensor" in " ".join(patch_embed.supports(img.cpu(), weight.cpu(), bias.cpu(), 16))


def test_enabled_in_tiny_decode():
    net = tiny_net().to(DEVICE)
    inputs = [a.to(DEVICE) for a in tiny_inputs(net)]
    assert fused_decode_calls(net, inputs, ["patch_embed"])["patch_embed"] > 0


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_shapes(dtype):
    """The arch table's tiles at the release width C=1536 on a 512x512 image."""
    assert not interpreting()
    check(patch_args(batch=2, hw=(512, 512), width=1536), dtype, "patch embed 512x512")
