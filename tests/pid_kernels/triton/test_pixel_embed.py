"""pid_kernels/triton/pixel_embed.py: the fused pixel embedding vs the seam's reference."""

import pytest
import torch

from kernel_testing import DEVICE, assert_within_eager_error, fused_decode_calls, maybe_compiled, with_dtypes
from pid_kernels.runtime import interpreting
from pid_kernels.triton import pixel_embed
from tiny import tiny_inputs, tiny_net


def pixel_args(batch=2, hw=(48, 80), dim=12, patch_size=16, seed=0):
    """Seam arguments: image [B, 3, H, W], weight [Dp, 3], bias [Dp], position table [H*W, Dp], P."""
    image = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    gen = torch.Generator().manual_seed(seed + 1)
    weight, bias, positions = (torch.randn(*shape, generator=gen).to(DEVICE)
                               for shape in ((dim, 3), (dim,), (hw[0] * hw[1], dim)))
    return [image, weight, bias, positions, patch_size]


def check(args, dtype, what):
    assert pixel_embed.supports(*args) == []
    assert_within_eager_error(maybe_compiled(pixel_embed.pixel_embed), pixel_embed.reference, args, dtype, what)


@with_dtypes
@pytest.mark.parametrize("block_rows", [256, 1024], ids=["one-patch-blocks", "ragged-blocks"])
def test_pixel_embed(monkeypatch, block_rows, dtype):
    monkeypatch.setenv("PID_TUNING_PIXEL_EMBED", f"BLOCK_ROWS={block_rows}")
    check(pixel_args(), dtype, f"pixel embed, {block_rows} rows per program")


@with_dtypes
def test_pixel_embed_patch8_strided_image(dtype):
    args = pixel_args(hw=(24, 40), dim=16, patch_size=8)
    args[0] = args[0].to(memory_format=torch.channels_last)
    check(args, dtype, "pixel embed, P=8, channels last")


def test_refusals(monkeypatch):
    img, weight, bias, positions, patch_size = pixel_args()
    assert "is not [H*W, Dp]" in " ".join(pixel_embed.supports(img, weight, bias, positions[:-1], 16))
    patch_weight = torch.randn(40, 3 * 16 * 16).to(DEVICE)
    assert "is not [Dp, 3]" in " ".join(pixel_embed.supports(img, patch_weight, bias, positions, 16))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CPU tensor" in " ".join(pixel_embed.supports(*(t.cpu() for t in (img, weight, bias, positions)), 16))


def test_enabled_in_tiny_decode():
    net = tiny_net().to(DEVICE)
    inputs = [a.to(DEVICE) for a in tiny_inputs(net)]
    assert fused_decode_calls(net, inputs, ["pixel_embed"])["pixel_embed"] > 0


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_shapes(dtype):
    """The arch table's blocks at the release Dp=16 on a 512x512 image."""
    assert not interpreting()
    check(pixel_args(batch=2, hw=(512, 512), dim=16), dtype, "pixel embed 512x512")
