"""pid_kernels/triton/unembed_update.py: fused final layer + sampler step vs the seam's reference."""

import pytest
import torch

from kernel_testing import DEVICE, assert_within_eager_error, fused_decode_calls, maybe_compiled, with_dtypes
from pid_kernels.runtime import interpreting
from pid_kernels.triton import unembed_update
from tiny import TINY_V15, tiny_inputs, tiny_net


def update_args(batch=2, hw=(48, 80), dim=12, patch_size=16, last_step=False, seed=0):
    """Seam arguments: pixels [B*Li, P*P, Dp], final-layer weights, (H, W), P, x_t, t, t', noise."""
    gen = torch.Generator().manual_seed(seed)
    tokens = batch * (hw[0] // patch_size) * (hw[1] // patch_size)
    pixels = torch.randn(tokens, patch_size**2, dim, generator=gen)
    norm_weight = torch.rand(dim, generator=gen) + 0.5
    weight, bias = torch.randn(3, dim, generator=gen) / dim**0.5, torch.randn(3, generator=gen)
    x_t = torch.randn(batch, 3, *hw, generator=gen)
    noise = None if last_step else torch.randn(batch, 3, *hw, generator=gen)
    t, t_next = torch.tensor(0.866), torch.tensor(0.0 if last_step else 0.634)
    args = [pixels, norm_weight, weight, bias, hw, patch_size, x_t, t, t_next, noise]
    return [a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args]


def check(args, dtype, what):
    assert unembed_update.supports(*args) == []
    assert_within_eager_error(maybe_compiled(unembed_update.fused), unembed_update.reference, args, dtype, what)


@with_dtypes
@pytest.mark.parametrize("block_rows", [256, 1024], ids=["one-patch-blocks", "ragged-blocks"])
@pytest.mark.parametrize("last_step", [False, True], ids=["re-noise", "last-step"])
def test_update(monkeypatch, block_rows, last_step, dtype):
    monkeypatch.setenv("PID_TUNING_UNEMBED_UPDATE", f"BLOCK_ROWS={block_rows}")
    check(update_args(last_step=last_step), dtype, f"{block_rows} rows per program, last step {last_step}")


@with_dtypes
def test_patch8_strided_pixels(dtype):
    """Patch size 8, Dp = 16, and pixel tokens read through a strided view."""
    args = update_args(hw=(24, 40), dim=16, patch_size=8)
    args[0] = args[0].transpose(0, 1).contiguous().transpose(0, 1)  # pixel-major storage
    check(args, dtype, "P=8, pixel-major pixels")


def test_refusals(monkeypatch):
    args = update_args()
    pixels, norm_weight, weight, bias, hw, patch_size, x_t, t, t_next, noise = args
    assert "float64" in " ".join(unembed_update.supports(*[a.double() if isinstance(a, torch.Tensor) else a
                                                            for a in args]))
    assert "is not [B*Li, P*P, Dp]" in " ".join(
        unembed_update.supports(pixels[:-1], norm_weight, weight, bias, hw, patch_size, x_t, t, t_next, noise)
    )
    assert "must be contiguous" in " ".join(unembed_update.supports(
        pixels, norm_weight, weight, bias, hw, patch_size, x_t.transpose(2, 3).contiguous().transpose(2, 3), t,
        t_next, noise,
    ))
    assert "does not match x_t" in " ".join(
        unembed_update.supports(pixels, norm_weight, weight, bias, hw, patch_size, x_t, t, t_next, noise.half())
    )
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CPU tensor" in " ".join(unembed_update.supports(*[a.cpu() if isinstance(a, torch.Tensor) else a
                                                              for a in args]))


@pytest.mark.parametrize("config", [None, TINY_V15], ids=["v1", "v1.5"])
def test_enabled_in_tiny_decode(config):
    """Two steps: one re-noising update and the last step's x0."""
    net = tiny_net(config).to(DEVICE)
    inputs = [a.to(DEVICE) for a in tiny_inputs(net)]
    assert fused_decode_calls(net, inputs, ["unembed_update"], clamp=False)["unembed_update"] == 2


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("last_step", [False, True], ids=["re-noise", "last-step"])
def test_cuda_release_shapes(last_step, dtype):
    """The arch table's blocks at the release Dp=16 on a 512x512 image, both kinds of step."""
    assert not interpreting()
    check(update_args(batch=2, hw=(512, 512), dim=16, last_step=last_step), dtype, f"512x512, last step {last_step}")
