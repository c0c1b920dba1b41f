"""pid_kernels/patch_embed.py: fused patch and pixel embeddings vs the seams' references."""

import pytest
import torch

import pid
import pid_kernels
from kernel_testing import DTYPES, assert_within_eager_error, maybe_compiled
from pid_kernels.triton import patch_embed
from pid_kernels.runtime import interpreting
from tiny import tiny_inputs, tiny_net

# Compiled on a GPU where there is one, else run by the Triton interpreter on CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Several ragged row, column and K tiles in an interpreter-sized problem.
SMALL_TILES = "BLOCK_M=16,BLOCK_N=32,BLOCK_K=32"
# The decoded image through the fused ops vs the reference decode, both float32.
DECODE_TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-4)}


def image(batch=2, height=48, width=80, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def patch_args(batch=2, hw=(48, 80), width=40, patch_size=16, seed=0):
    """Seam arguments: image [B, 3, H, W], weight [C, 3*P*P], bias [C], P."""
    gen = torch.Generator().manual_seed(seed + 1)
    fan_in = 3 * patch_size**2
    weight = torch.randn(width, fan_in, generator=gen) / fan_in**0.5
    return [image(batch, *hw, seed), weight.to(DEVICE), torch.randn(width, generator=gen).to(DEVICE), patch_size]


def pixel_args(batch=2, hw=(48, 80), dim=12, patch_size=16, seed=0):
    """Seam arguments: image [B, 3, H, W], weight [Dp, 3], bias [Dp], position table [H*W, Dp], P."""
    gen = torch.Generator().manual_seed(seed + 1)
    weight, bias, positions = (torch.randn(*shape, generator=gen).to(DEVICE)
                               for shape in ((dim, 3), (dim,), (hw[0] * hw[1], dim)))
    return [image(batch, *hw, seed), weight, bias, positions, patch_size]


def check(fused, reference, supports, args, what):
    assert supports(*args) == []
    for dtype in DTYPES:
        assert_within_eager_error(maybe_compiled(fused), reference, args, dtype, what)


@pytest.mark.parametrize("tiles", [None, SMALL_TILES], ids=["arch-table", "small-tiles"])
def test_patch_embed(monkeypatch, tiles):
    if tiles:
        monkeypatch.setenv("PID_TUNING_PATCH_EMBED", tiles)
    args = patch_args()
    check(patch_embed.patch_embed, patch_embed.patch_embed_reference, patch_embed.patch_embed_supports, args,
          f"patch embed, {tiles or 'arch table'}")


def test_patch_embed_patch8_strided_image(monkeypatch):
    """Patch size 8 (K = 192) and a channels-last image: the gather follows the strides."""
    monkeypatch.setenv("PID_TUNING_PATCH_EMBED", SMALL_TILES)
    args = patch_args(hw=(24, 40), width=24, patch_size=8)
    args[0] = args[0].to(memory_format=torch.channels_last)
    check(patch_embed.patch_embed, patch_embed.patch_embed_reference, patch_embed.patch_embed_supports, args,
          "patch embed, P=8, channels last")


@pytest.mark.parametrize("block_rows", [256, 1024], ids=["one-patch-blocks", "ragged-blocks"])
def test_pixel_embed(monkeypatch, block_rows):
    monkeypatch.setenv("PID_TUNING_PIXEL_EMBED", f"BLOCK_ROWS={block_rows}")
    check(patch_embed.pixel_embed, patch_embed.pixel_embed_reference, patch_embed.pixel_embed_supports,
          pixel_args(), f"pixel embed, {block_rows} rows per program")


def test_pixel_embed_patch8_strided_image():
    args = pixel_args(hw=(24, 40), dim=16, patch_size=8)
    args[0] = args[0].to(memory_format=torch.channels_last)
    check(patch_embed.pixel_embed, patch_embed.pixel_embed_reference, patch_embed.pixel_embed_supports, args,
          "pixel embed, P=8, channels last")


def test_refusals(monkeypatch):
    img, weight, bias, patch_size = patch_args()
    _, pix_weight, pix_bias, positions, _ = pixel_args()
    assert "float64" in " ".join(patch_embed.patch_embed_supports(img.double(), weight.double(), bias.double(), 16))
    assert "not a multiple of the patch size" in " ".join(
        patch_embed.patch_embed_supports(img[..., :40], weight, bias, 16)
    )
    assert "is not [C, 3*P*P]" in " ".join(patch_embed.patch_embed_supports(img, weight[:, :100], bias, 16))
    assert "is not [B, 3, H, W]" in " ".join(patch_embed.patch_embed_supports(img[:, :1], weight, bias, 16))
    assert "is not [H*W, Dp]" in " ".join(
        patch_embed.pixel_embed_supports(img, pix_weight, pix_bias, positions[:-1], 16)
    )
    assert "is not [Dp, 3]" in " ".join(patch_embed.pixel_embed_supports(img, weight, bias, positions, 16))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    img, weight, bias, pix_weight, pix_bias, positions = (
        t.cpu() for t in (img, weight, bias, pix_weight, pix_bias, positions)
    )
    assert "CPU tensor" in " ".join(patch_embed.patch_embed_supports(img, weight, bias, 16))
    assert "CPU tensor" in " ".join(patch_embed.pixel_embed_supports(img, pix_weight, pix_bias, positions, 16))


def test_enabled_in_tiny_decode():
    net = tiny_net().to(DEVICE)
    latent, sigma, captions = (a.to(DEVICE) for a in tiny_inputs(net))
    expected = pid.Decoder(net).decode(latent, sigma, captions, seed=3, steps=2)
    names = ["patch_embed", "pixel_embed"]
    pid_kernels.enable(names, strict=True)
    try:
        before = [pid_kernels.CALLS[name]["fused"] for name in names]
        ours = pid.Decoder(net).decode(latent, sigma, captions, seed=3, steps=2)
        assert all(pid_kernels.CALLS[name]["fused"] > count for name, count in zip(names, before))
    finally:
        pid_kernels.disable(names)
    torch.testing.assert_close(ours, expected, **DECODE_TOLERANCE[torch.float32])


@pytest.mark.gpu
def test_cuda_release_shapes():
    """The arch table's tiles at the release widths (C=1536, Dp=16) on a 512x512 image."""
    assert not interpreting()
    check(patch_embed.patch_embed, patch_embed.patch_embed_reference, patch_embed.patch_embed_supports,
          patch_args(batch=2, hw=(512, 512), width=1536), "patch embed 512x512")
    check(patch_embed.pixel_embed, patch_embed.pixel_embed_reference, patch_embed.pixel_embed_supports,
          pixel_args(batch=2, hw=(512, 512), dim=16), "pixel embed 512x512")
